"""heldout_lm: how well the model predicts text it was not trained on.

lm-eval's wikitext metrics over a scored_text pack, with loglikelihood_rolling per text:
    LL = Σ_texts loglikelihood_rolling(text)              (natural log)
    bits_per_byte   = −LL / (Σ bytes · ln 2)              bytes = len(text.encode("utf-8"))
    byte_perplexity = exp(−LL / Σ bytes)
    word_perplexity = exp(−LL / Σ words)                  words = len(re.split(r"\\s+", text))
Corpus-level (weighted) aggregates, exactly as lm-eval's weighted_perplexity and bits_per_byte.
"""

from __future__ import annotations

import math
import re

from evaluations.library.builtin._common import load_model, the_pack
from evaluations.library.context import EvalContext, EvalOutput
from evaluations.library.lm import loglikelihood_rolling
from evaluations.library.builtin import specs

SPEC = specs.HELDOUT_LM


def run(ctx: EvalContext) -> EvalOutput:
    pack = the_pack(ctx, SPEC.pack_types)
    model, tokenizer, runtime = load_model(ctx)
    texts = [item["text"] for item in pack.items]
    lls = loglikelihood_rolling(model, tokenizer, texts, max_length=ctx.params["max_length"],
                                batch_size=ctx.params["batch_size"], progress=ctx.progress)
    n_bytes = [len(text.encode("utf-8")) for text in texts]
    n_words = [len(re.split(r"\s+", text)) for text in texts]
    total_ll = sum(lls)
    metrics = {
        "bits_per_byte": -total_ll / sum(n_bytes) / math.log(2),
        "byte_perplexity": math.exp(-total_ll / sum(n_bytes)),
        "word_perplexity": math.exp(-total_ll / sum(n_words)),
    }
    samples = [{"id": item["id"], "loglikelihood": ll, "bytes": b, "words": w,
                "bits_per_byte": -ll / b / math.log(2)}
               for item, ll, b, w in zip(pack.items, lls, n_bytes, n_words)]
    return EvalOutput(metrics=metrics, samples=samples, n_samples=len(samples), runtime=runtime)
