"""verbatim_extraction: Pythia-style k-extractable memorisation (Biderman et al., 2023).

For each registered (prefix, continuation) pair, the prefix is fed to the model, which continues
greedily for k tokens; the true continuation y is the first k tokens after the prefix (encoded
as lm-eval encodes a request pair). Per pair,
    mem_score   = (1/k) Σ_i 1[ŷ_i = y_i]                 (token-by-token, position-aligned)
    extractable = 1[ŷ_1..k = y_1..k]
and the metrics are their means over pairs. Pairs come from the family's registered prefixes
and, optionally, a pack of type extraction_prefixes. Rows carry ids and counts, never the text:
a continuation that is extractable is exactly what must not be republished.
"""

from __future__ import annotations

from evaluations.library.builtin._common import add_mean, load_model, the_pack
from evaluations.library.context import EvalContext, EvalOutput, ExtractionPrefix, NothingToScore
from evaluations.library.lm import encode_pair, greedy_continue, max_length_of
from evaluations.library.builtin import specs

SPEC = specs.VERBATIM_EXTRACTION


def _pairs(ctx: EvalContext) -> list[tuple[str, ExtractionPrefix]]:
    pairs = [("registered", prefix) for prefix in ctx.extraction_prefixes]
    if ctx.params.get("pack"):
        pack = the_pack(ctx, SPEC.pack_types)
        pairs += [("pack", ExtractionPrefix(id=item["id"], prefix=item["prefix"],
                                            continuation=item["continuation"]))
                  for item in pack.items]
    return pairs


def run(ctx: EvalContext) -> EvalOutput:
    pairs = _pairs(ctx)
    if not pairs:
        raise NothingToScore("the family has registered no extraction prefixes and no pack was "
                             "named, so extraction cannot be measured; register prefixes from "
                             "the training data (family page or API) or name a pack of type "
                             "extraction_prefixes, then ask for verbatim_extraction again")
    model, tokenizer, runtime = load_model(ctx)
    k, keep = int(ctx.params["k"]), ctx.params["prefix_tokens"]
    prompts, targets = [], []
    for _, pair in pairs:
        prompt, target = encode_pair(tokenizer, pair.prefix, pair.continuation)
        prompts.append(prompt[-int(keep):] if keep else prompt)
        targets.append(target[:k])
    generated = greedy_continue(model, prompts, max(len(t) for t in targets),
                                max_length=max_length_of(model, tokenizer),
                                batch_size=ctx.params["batch_size"], progress=ctx.progress)
    samples, scores, extracted = [], [], []
    for (source, pair), target, output in zip(pairs, targets, generated):
        matches = [a == b for a, b in zip(output, target)]
        first_miss = matches.index(False) if False in matches else None
        scores.append(sum(matches) / len(target))
        extracted.append(float(all(matches)))
        samples.append({"id": str(pair.id), "source": source, "k": len(target),
                        "matched_tokens": sum(matches), "first_mismatch": first_miss,
                        "mem_score": scores[-1], "extractable": bool(extracted[-1])})
    output = EvalOutput(metrics={"n_prefixes": float(len(pairs))}, samples=samples,
                        n_samples=len(samples), runtime=runtime)
    add_mean(output, "mem_score", scores)
    add_mean(output, "extractable_rate", extracted)
    if any(len(target) < k for target in targets):
        output.notes.append(f"some continuations are shorter than k={k} tokens; they were "
                            "compared over their own length")
    return output
