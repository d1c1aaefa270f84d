"""The stored result record, in lm-evaluation-harness's results JSON shape.

    {"results": {"canary_exposure": {"name": ..., "alias": ..., "sample_len": 3,
                                     "exposure_max,none": 3.2,
                                     "exposure_mean_stderr,none": 0.4, ...}},
     "higher_is_better": {...}, "versions": {...}, "configs": {...}, "n-shot": {...},
     "n-samples": {...}, "task_hashes": {...}, "config": {...},
     "stagegate": {checkpoint digest and manifest, cache key, device, dtype, samples hash, ...}}

Tools that read lm-eval output read ours; Stagegate's own fields live under one key. The
record validates against lm-eval's own result schema (conformance.py, tested for every
built-in): a stderr is written only where there is one (lm-eval's "N/A" is not a number its
schema admits), versions are floats, batch_size is text, each metric names its aggregation
(lm-eval's where it is one of the harness's, Stagegate's own otherwise), output_type is one
of the harness's four request types.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Mapping

from evaluations.library.context import EvalOutput
from evaluations.library.packs import Pack
from evaluations.library.registry import EvalSpec, eval_inputs, inputs_hash

FILTER = "none"
# The fixed keys of lm-eval's per-task results beside the `metric,filter` pairs.
TASK_FIELDS = ("name", "alias", "sample_len", "sample_count")  # lm-eval's filter suffix; Stagegate applies no output filters
# lm-eval's request type of each built-in; integrity asks the model nothing, so it names none
# (its metadata says it reads bytes).
OUTPUT_TYPES = {"heldout_lm": "loglikelihood_rolling", "drift_vs_parent": "loglikelihood_rolling",
                "verbatim_extraction": "generate_until", "mc_knowledge": "multiple_choice",
                "pairwise_bias": "loglikelihood", "canary_exposure": "loglikelihood",
                "refusal_preference": "loglikelihood", "finetune_attack": "loglikelihood",
                "integrity": None}
# How each metric is aggregated over items, where it is not lm-eval's `mean`: lm-eval's own
# aggregation names for the corpus-weighted metrics (as its wikitext task), Stagegate's
# (max, sum, auroc, all, token_mean, value) for the rest.
AGGREGATIONS: dict[str, dict[str, str]] = {
    "heldout_lm": {"bits_per_byte": "bits_per_byte", "byte_perplexity": "weighted_perplexity",
                   "word_perplexity": "weighted_perplexity"},
    "integrity": {"files_checked": "sum", "bytes_checked": "sum", "passed": "all"},
    "canary_exposure": {"exposure_max": "max", "n_canaries": "sum", "exposure_*": "value"},
    "verbatim_extraction": {"n_prefixes": "sum"},
    "refusal_preference": {"discrimination_auroc": "auroc"},
    "finetune_attack": {"pre_attack": "value", "post_attack": "value",
                        "steps_to_threshold": "value", "crossed": "value", "drop": "value"},
    "drift_vs_parent": {"kl_mean": "token_mean", "kl_max_text": "max",
                        "top1_agreement": "token_mean", "has_parent": "value",
                        "delta.*": "value"},
}
STAGEGATE_AGGREGATIONS = ("max", "sum", "auroc", "all", "token_mean", "value")


def aggregation_of(eval_name: str, metric: str) -> str:
    import fnmatch

    for pattern, aggregation in AGGREGATIONS.get(eval_name, {}).items():
        if fnmatch.fnmatchcase(metric, pattern):
            return aggregation
    return "mean"


def _clean(value: Any) -> Any:
    """Metric values as JSON can hold them: floats, or None for "not measured"."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def metric_key(metric: str) -> str:
    return f"{metric},{FILTER}"


def build_result_record(*, spec: EvalSpec, output: EvalOutput, params: Mapping[str, Any],
                        checkpoint_digest: str, manifest: list[dict], cache_key: str,
                        packs: Mapping[str, Pack] | None = None, device: str | None = None,
                        dtype: str | None = None, samples_sha256: str | None = None,
                        seed: int = 0, inputs: Mapping[str, Any] | None = None,
                        extra: Mapping[str, Any] | None = None) -> dict:
    """One eval run's result record.

    `inputs` is registry.eval_inputs(...) for the run (it defaults to the spec, params and
    packs alone); its hash is the task hash. device and dtype default to what the model ran in;
    samples_sha256 defaults to the hash of output.samples_jsonl(). `extra` is merged into the
    `stagegate` key.
    """
    packs = dict(packs or {})
    name = spec.name
    inputs = dict(inputs or eval_inputs(spec, params=params, packs=packs))
    directions = {metric: spec.direction(metric) for metric in output.metrics}
    directions.update(output.higher_is_better)
    scores: dict[str, Any] = {"name": name, "alias": name, "sample_len": output.n_samples}
    for metric, value in output.metrics.items():
        scores[metric_key(metric)] = _clean(value)
        stderr = _clean(output.stderr.get(metric))
        if stderr is not None:
            scores[metric_key(f"{metric}_stderr")] = stderr
    pack_refs = [packs[p].ref for p in spec.pack_names(params) if p in packs]
    device = device or output.runtime.get("device")
    dtype = dtype or output.runtime.get("dtype")
    task_config = {
        "task": name,
        "tag": ["stagegate"],
        "description": spec.description,
        "dataset_path": pack_refs[0]["name"] if pack_refs else None,
        "num_fewshot": 0,
        "metric_list": [{"metric": metric, "aggregation": aggregation_of(name, metric),
                         "higher_is_better": directions.get(metric)}
                        for metric in output.metrics],
        "metadata": {"version": float(spec.version), "code_hash": spec.code_hash,
                     "params": dict(inputs.get("params", params)), "packs": pack_refs,
                     **({} if OUTPUT_TYPES.get(name, "") is not None else {"reads": "bytes"})},
    }
    output_type = OUTPUT_TYPES.get(name, "loglikelihood")
    if output_type is not None:
        task_config["output_type"] = output_type
    config = {
        "model": "hf",
        "model_args": f"pretrained={checkpoint_digest}" + (f",dtype={dtype}" if dtype else ""),
        "model_sha": checkpoint_digest[:40],
        "batch_size": None if params.get("batch_size") is None else str(params["batch_size"]),
        "device": device,
        "use_cache": None,
        "limit": None,
        "bootstrap_iters": 0,
        "gen_kwargs": None,
        "random_seed": seed,
        "numpy_seed": seed,
        "torch_seed": seed,
        "fewshot_seed": seed,
    }
    if dtype:
        config["model_dtype"] = dtype
    return {
        "results": {name: scores},
        # lm-eval lists only groups here; a lone task is in none.
        "group_subtasks": {},
        "configs": {name: task_config},
        "versions": {name: float(spec.version)},
        "n-shot": {name: 0},
        "higher_is_better": {name: {metric: better for metric, better in directions.items()
                                    if better is not None}},
        "n-samples": {name: {"original": output.n_samples, "effective": output.n_samples}},
        "config": config,
        "task_hashes": {name: inputs_hash(inputs)},
        "date": dt.datetime.now(dt.timezone.utc).timestamp(),
        "stagegate": {
            "checkpoint_digest": checkpoint_digest,
            "manifest": list(manifest),
            "cache_key": cache_key,
            "device": device,
            "dtype": dtype,
            "samples_sha256": samples_sha256 or output.samples_sha256(),
            "eval": {"name": name, "version": spec.version, "code_hash": spec.code_hash},
            "inputs": inputs,
            "notes": list(output.notes),
            "artifacts": sorted(output.artifacts),
            **dict(extra or {}),
        },
    }


def merge_result_records(records: list[dict]) -> dict:
    """Several runs' records as one lm-eval-shaped record (e.g. for `evaluate --json`).
    Per-eval keys are merged; `config` and `stagegate` become per-eval under `stagegate`."""
    merged: dict[str, Any] = {key: {} for key in ("results", "group_subtasks", "configs",
                                                  "versions", "n-shot", "higher_is_better",
                                                  "n-samples", "task_hashes")}
    merged["stagegate"] = {}
    for record in records:
        for key in merged:
            if key != "stagegate":
                merged[key].update(record.get(key, {}))
        for name in record.get("results", {}):
            merged["stagegate"][name] = {**record.get("stagegate", {}),
                                         "config": record.get("config", {})}
    if records:
        merged["config"] = records[0].get("config", {})
    return merged


def flatten_results(record: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """{eval: {metric: value}} from an lm-eval-shaped record or an already-flat mapping;
    stderr entries and aliases are dropped."""
    source = record.get("results", record) if isinstance(record, Mapping) else {}
    flat: dict[str, dict[str, float | None]] = {}
    for eval_name, metrics in source.items():
        if not isinstance(metrics, Mapping):
            continue
        values: dict[str, float | None] = {}
        for key, value in metrics.items():
            metric = key.rsplit(",", 1)[0] if "," in key else key
            if key in TASK_FIELDS or metric.endswith("_stderr"):
                continue
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                values[metric] = _clean(value)
        flat[eval_name] = values
    return flat


def metric_deltas(parent: Mapping[str, Any], current: Mapping[str, Any], *,
                  exclude: tuple[str, ...] = ("drift_vs_parent",)
                  ) -> tuple[dict[str, float | None], dict[str, bool]]:
    """drift_vs_parent's deltas: for every metric m of every eval e that both result sets have
    (records or flat mappings), `delta.<e>.<m> = current − parent` (None when either is None),
    and each delta's direction, that of m. Derived where results are read, so they always
    compare the results that exist now."""
    from evaluations.library.registry import all_evals

    before_all, after_all = flatten_results(parent), flatten_results(current)
    specs = all_evals()
    deltas: dict[str, float | None] = {}
    directions: dict[str, bool] = {}
    for eval_name in sorted(set(before_all) & set(after_all) - set(exclude)):
        for metric in sorted(set(before_all[eval_name]) & set(after_all[eval_name])):
            before, after = before_all[eval_name][metric], after_all[eval_name][metric]
            key = f"delta.{eval_name}.{metric}"
            deltas[key] = None if before is None or after is None else after - before
            direction = specs[eval_name].direction(metric) if eval_name in specs else None
            if direction is not None:
                directions[key] = direction
    return deltas, directions


def metric_value(record: Mapping[str, Any], eval_name: str, metric: str) -> float | None:
    """One metric from a record, None when absent (policy: missing counts as failing)."""
    return flatten_results(record).get(eval_name, {}).get(metric)
