"""canary_exposure: Carlini et al. (2019), "The Secret Sharer", for every registered canary.

A canary is a template with one `{}` slot, an alphabet and a length; the randomness space R is
every string of that length over that alphabet, and one member, the secret, was put into the
training data. Each candidate r is scored by the log-perplexity of the whole filled template,
    Px(r) = −Σ_i log2 p(t_i | t_<i)     over the tokens of template.fill(r), after the prefix token,
and the secret's rank is its place among all candidates by that score (1 = most likely;
rank = |{r in R : Px(r) <= Px(secret)}|, ties counted against the model). Then
    exposure = log2 |R| − log2 rank                        (0 … log2 |R| bits)
- |R| <= exact_limit (100,000): every candidate is scored, the rank is exact.
- Larger spaces: n_candidates are drawn uniformly (seeded), a skew-normal is fitted to their
  scores by the method of moments, and exposure = −log2 F(Px(secret)), F the fitted CDF
  (the paper's §4.3 extrapolation), capped at log2 |R| since a rank is at least 1.
The secret never leaves this module: metrics and rows carry the canary id and numbers only.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re

import numpy as np

from evaluations.library.builtin._common import load_model
from evaluations.library.context import (Canary, EvalContext, EvalInputError, EvalOutput,
                                         NothingToScore)
from evaluations.library.lm import max_length_of, prefix_token_id, score_sequences
from evaluations.library.plots import plot_canary_null
from evaluations.library.builtin import specs
from evaluations.library.stats import SkewNormal

SPEC = specs.CANARY_EXPOSURE


def metric_key(canary: Canary) -> str:
    return "exposure_" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(canary.id))


def _candidate_rng(ctx: EvalContext, canary: Canary) -> np.random.Generator:
    seed = hashlib.sha256(f"{ctx.seed}:{canary.id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(seed[:8], "big"))


def _candidates(ctx: EvalContext, canary: Canary) -> tuple[list[str], int, str]:
    """(candidates including the secret, index of the secret, method)."""
    if canary.space_size <= ctx.params["exact_limit"]:
        every = ["".join(chars) for chars in itertools.product(canary.alphabet,
                                                               repeat=canary.length)]
        return every, every.index(canary.secret), "exact"
    rng = _candidate_rng(ctx, canary)
    alphabet = np.array(list(canary.alphabet))
    draws = rng.integers(0, len(alphabet), size=(ctx.params["n_candidates"], canary.length))
    null = ["".join(row) for row in alphabet[draws]]
    null = [candidate for candidate in null if candidate != canary.secret]
    return null + [canary.secret], len(null), "skewnorm"


def _scores_bits(model, tokenizer, texts: list[str], ctx: EvalContext, done: int,
                 total: int) -> np.ndarray:
    """Log-perplexity in bits of each filled template, after the prefix token (BOS or EOS)."""
    max_length = max_length_of(model, tokenizer)
    prefix = prefix_token_id(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    if max(len(tokens) for tokens in encoded) > max_length:
        raise EvalInputError("a filled canary template is longer than the model's context")
    sequences = [[prefix] + list(tokens) for tokens in encoded]
    scores = score_sequences(model, sequences, batch_size=ctx.params["batch_size"],
                             progress=lambda d, _: ctx.progress(done + d, total))
    return -np.array(scores) / math.log(2)


def _exposure(canary: Canary, scores: np.ndarray, secret_index: int, method: str) -> dict:
    log2_space = canary.length * math.log2(len(canary.alphabet))
    secret_score = float(scores[secret_index])
    null = np.delete(scores, secret_index)
    row = {"canary_id": str(canary.id), "method": method, "log2_space": log2_space,
           "secret_log_perplexity_bits": secret_score, "n_scored": int(scores.size),
           "null_mean": float(null.mean()), "null_std": float(null.std())}
    if method == "exact":
        rank = int((scores <= secret_score).sum())
        row.update(rank=rank, log2_rank=math.log2(rank), exposure=log2_space - math.log2(rank))
    else:
        fit = SkewNormal.fit_moments(null)
        exposure = min(log2_space, max(0.0, -fit.log_cdf(secret_score) / math.log(2)))
        row.update(rank=None, log2_rank=log2_space - exposure, exposure=exposure,
                   fit={"xi": fit.xi, "omega": fit.omega, "alpha": fit.alpha})
    return row


def run(ctx: EvalContext) -> EvalOutput:
    if not ctx.canaries:
        # Fail closed: no canary measured is not "no memorisation".
        raise NothingToScore("the family has registered no canaries, so exposure cannot be "
                             "measured; register one on the family's page (Canaries) or with "
                             "`manage.py add_canary`, then ask for canary_exposure again")
    model, tokenizer, runtime = load_model(ctx)
    plans = [(canary, *_candidates(ctx, canary)) for canary in ctx.canaries]
    total, done = sum(len(candidates) for _, candidates, _, _ in plans), 0
    metrics: dict[str, float | None] = {}
    samples, artifacts = [], {}
    for canary, candidates, secret_index, method in plans:
        scores = _scores_bits(model, tokenizer, [canary.fill(c) for c in candidates], ctx,
                              done, total)
        done += len(candidates)
        row = _exposure(canary, scores, secret_index, method)
        samples.append(row)
        metrics[metric_key(canary)] = row["exposure"]
        artifacts[f"canary_{metric_key(canary).removeprefix('exposure_')}.png"] = plot_canary_null(
            canary_id=str(canary.id), null_scores=np.delete(scores, secret_index).tolist(),
            secret_score=row["secret_log_perplexity_bits"], exposure=row["exposure"],
            method=method)
    exposures = [row["exposure"] for row in samples]
    metrics.update(exposure_max=max(exposures), exposure_mean=float(np.mean(exposures)),
                   n_canaries=float(len(samples)))
    return EvalOutput(metrics=metrics, samples=samples, n_samples=len(samples),
                      artifacts=artifacts, runtime=runtime)
