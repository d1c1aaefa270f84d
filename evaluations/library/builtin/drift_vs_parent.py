"""drift_vs_parent: how far this checkpoint moved from its parent (the family's previous
approved checkpoint), on a probe text pack, and how every other eval's metrics moved.

Both models read the same token windows (lm-eval's rolling windows over [prefix] + tokens of each
probe text). At every predicted position t, with P the parent's and Q the child's next-token
distribution,
    KL_t(P || Q) = Σ_v P(v) (log P(v) − log Q(v))        (nats)
    kl_mean        = mean over all positions of all texts
    kl_max_text    = the largest per-text mean
    top1_agreement = share of positions where both models' argmax agree
Without a parent (or with a parent whose tokenizer differs) the run fails, saying so:
there is no number to report, and none is made up.
Each metric m of each other eval e also has delta.<e>.<m> = current − parent (direction:
that of m), derived where results are read (results.metric_deltas, via
evaluations.selectors.flat_results), so the deltas always compare the results that exist now.
"""

from __future__ import annotations

import torch

from evaluations.library.builtin._common import load_model, the_pack
from evaluations.library.context import EvalContext, EvalOutput, NothingToScore
from evaluations.library.lm import (encode, log_probs, max_length_of, prefix_token_id,
                                    rolling_windows)
from evaluations.library.builtin import specs

SPEC = specs.DRIFT_VS_PARENT


def _windows(tokenizer, texts: list[str], max_length: int) -> list[tuple[int, list[int], int]]:
    """(text index, input tokens, number of predicted positions at the end) per window."""
    prefix, windows = prefix_token_id(tokenizer), []
    for index, text in enumerate(texts):
        for context, predicted in rolling_windows(encode(tokenizer, text), prefix, max_length):
            tokens = (context + predicted)[-(max_length + 1):][:-1]
            windows.append((index, tokens, len(predicted)))
    return windows


@torch.inference_mode()
def _kl(parent, child, windows, batch_size: int, progress) -> tuple[list[list[float]], int, int]:
    per_text: dict[int, list[float]] = {}
    agree = positions = 0
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i][1]))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = len(windows[batch[0]][1])
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, index in enumerate(batch):
            tokens = windows[index][1]
            ids[row, :len(tokens)], mask[row, :len(tokens)] = torch.tensor(tokens), 1
        lp = log_probs(parent, ids.to(parent.device), mask.to(parent.device)).cpu()
        lq = log_probs(child, ids.to(child.device), mask.to(child.device)).cpu()
        kl = (lp.exp() * (lp - lq)).sum(-1)
        same = lp.argmax(-1) == lq.argmax(-1)
        for row, index in enumerate(batch):
            text, tokens, n_pred = windows[index]
            span = slice(len(tokens) - n_pred, len(tokens))
            per_text.setdefault(text, []).extend(kl[row, span].double().clamp_min(0).tolist())
            agree += int(same[row, span].sum())
            positions += n_pred
        progress(min(start + batch_size, len(order)), len(order))
    return [per_text.get(i, []) for i in range(max(per_text) + 1)], agree, positions


def run(ctx: EvalContext) -> EvalOutput:
    pack = the_pack(ctx, SPEC.pack_types)
    if ctx.parent_model_dir is None:
        raise NothingToScore("this checkpoint has no approved parent in its family, so drift "
                             "cannot be measured; it is measured once an earlier checkpoint of "
                             "the family has been approved")
    child, tokenizer, runtime = load_model(ctx)
    parent, parent_tokenizer, _ = load_model(ctx, ctx.parent_model_dir)
    if parent_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise NothingToScore("the parent's tokenizer differs from this checkpoint's, so a "
                             "per-token KL between them is not defined; drift cannot be "
                             "measured against this parent")
    texts = [item["text"] for item in pack.items]
    max_length = ctx.params["max_length"] or min(max_length_of(child, tokenizer),
                                                 max_length_of(parent, parent_tokenizer))
    windows = _windows(tokenizer, texts, max_length)
    per_text, agree, positions = _kl(parent, child, windows, ctx.params["batch_size"],
                                     ctx.progress)
    text_means = [sum(values) / len(values) for values in per_text if values]
    total = sum(sum(values) for values in per_text)
    output = EvalOutput(metrics={"kl_mean": total / positions, "kl_max_text": max(text_means),
                                 "top1_agreement": agree / positions, "has_parent": 1.0},
                        samples=[{"id": item["id"], "kl_mean": sum(v) / len(v), "positions": len(v)}
                                 for item, v in zip(pack.items, per_text) if v],
                        runtime=runtime)
    output.n_samples = len(output.samples)
    return output
