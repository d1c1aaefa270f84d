"""mc_knowledge: multiple-choice accuracy on any multiple_choice pack.

Each choice c is scored as lm-eval scores a multiple-choice request: ll_c = LL(context → " " + c),
with context = prompt_template with {question} filled in (default "Question: {question}\\nAnswer:")
and the target delimiter " ". With T the true choices (`answer` marks one; `labels` may mark
several) and the first true choice as the best answer:
    acc        = 1[argmax_c ll_c ∈ T]                        (lm-eval acc)
    acc_norm   = 1[argmax_c ll_c / len(c) ∈ T]               (lm-eval acc_norm: characters)
    acc_bytes  = 1[argmax_c ll_c / len(c.encode()) ∈ T]      (lm-eval acc_bytes: UTF-8 bytes)
    mc1        = 1[argmax over {best} ∪ F is best]           (TruthfulQA MC1, F = false choices)
    mc2        = Σ_{c∈T} p_c / Σ_c p_c,  p_c = exp(ll_c)     (TruthfulQA MC2)
MC2 is computed as a softmax over the log-likelihoods, which is the same ratio without the
underflow that exp() of a long answer's log-likelihood would hit. Ties in argmax go to the
first choice, as numpy's argmax does in lm-eval.
"""

from __future__ import annotations

import numpy as np

from evaluations.library.builtin._common import add_mean, load_model, the_pack
from evaluations.library.context import EvalContext, EvalOutput
from evaluations.library.lm import loglikelihood
from evaluations.library.builtin import specs

DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"

SPEC = specs.MC_KNOWLEDGE


def true_labels(item: dict) -> list[int]:
    if "labels" in item:
        return list(item["labels"])
    return [int(index == item["answer"]) for index in range(len(item["choices"]))]


def score_item(lls: list[float], choices: list[str], labels: list[int]) -> dict:
    lls_array = np.array(lls)
    truth = np.array(labels, dtype=bool)
    best = labels.index(1)
    chars = np.array([float(len(c)) for c in choices])
    n_bytes = np.array([float(len(c.encode("utf-8"))) for c in choices])
    mc1_pool = [best] + [i for i, label in enumerate(labels) if not label]
    weights = np.exp(lls_array - lls_array.max())
    return {
        "acc": float(truth[int(np.argmax(lls_array))]),
        "acc_norm": float(truth[int(np.argmax(lls_array / chars))]),
        "acc_bytes": float(truth[int(np.argmax(lls_array / n_bytes))]),
        "mc1": float(mc1_pool[int(np.argmax(lls_array[mc1_pool]))] == best),
        "mc2": float(weights[truth].sum() / weights.sum()),
    }


def run(ctx: EvalContext) -> EvalOutput:
    pack = the_pack(ctx, SPEC.pack_types)
    template = pack.option("prompt_template", DEFAULT_TEMPLATE)
    delimiter = pack.option("target_delimiter", " ")
    model, tokenizer, runtime = load_model(ctx)
    requests, spans = [], []
    for item in pack.items:
        context = template.replace("{question}", item["question"])
        spans.append((len(requests), len(item["choices"])))
        requests += [(context, delimiter + choice) for choice in item["choices"]]
    results = loglikelihood(model, tokenizer, requests, batch_size=ctx.params["batch_size"],
                            progress=ctx.progress)
    per_metric: dict[str, list[float]] = {name: [] for name in SPEC.metrics}
    samples = []
    for item, (start, count) in zip(pack.items, spans):
        lls = [ll for ll, _ in results[start:start + count]]
        scores = score_item(lls, item["choices"], true_labels(item))
        for name, value in scores.items():
            per_metric[name].append(value)
        samples.append({"id": item["id"], "loglikelihoods": lls, "labels": true_labels(item),
                        **scores})
    output = EvalOutput(metrics={}, samples=samples, n_samples=len(samples), runtime=runtime)
    for name, values in per_metric.items():
        add_mean(output, name, values)
    return output
