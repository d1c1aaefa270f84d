"""The stored result record has lm-evaluation-harness's shape, plus Stagegate's own key."""

from __future__ import annotations

import json

import pytest

from evaluations.library import (EvalOutput, build_result_record, flatten_results, get_eval,
                                 merge_result_records, metric_value)

MANIFEST = [{"path": "model.safetensors", "sha256": "a" * 64, "size": 10}]
DIGEST = "d" * 64


def record_for(name: str, output: EvalOutput, params: dict | None = None, **kwargs) -> dict:
    spec = get_eval(name)
    return build_result_record(spec=spec, output=output, params=spec.resolve_params(params),
                               checkpoint_digest=DIGEST, manifest=MANIFEST, cache_key="k" * 64,
                               **kwargs)


@pytest.fixture
def record() -> dict:
    output = EvalOutput(metrics={"exposure_max": 3.5, "exposure_mean": 2.0, "n_canaries": 2.0,
                                 "exposure_c1": 3.5, "exposure_c2": 0.5},
                        samples=[{"canary_id": "c1", "exposure": 3.5}], n_samples=2,
                        stderr={"exposure_mean": 1.5},
                        runtime={"device": "cpu", "dtype": "float32"})
    return record_for("canary_exposure", output)


def test_results_are_keyed_by_eval_then_metric_comma_filter(record):
    assert record["results"]["canary_exposure"]["exposure_max,none"] == 3.5
    assert record["results"]["canary_exposure"]["exposure_mean_stderr,none"] == 1.5
    # No stderr is written where there is none (lm-eval's schema admits no "N/A").
    assert "exposure_max_stderr,none" not in record["results"]["canary_exposure"]
    assert record["results"]["canary_exposure"]["alias"] == "canary_exposure"
    assert record["results"]["canary_exposure"]["name"] == "canary_exposure"
    assert record["results"]["canary_exposure"]["sample_len"] == 2


def test_the_record_has_every_top_level_key_lm_eval_writes(record):
    assert {"results", "higher_is_better", "versions", "configs", "n-samples", "task_hashes",
            "config", "n-shot", "group_subtasks"} <= set(record)
    assert record["versions"] == {"canary_exposure": 1.0}
    assert record["n-samples"] == {"canary_exposure": {"original": 2, "effective": 2}}
    assert len(record["task_hashes"]["canary_exposure"]) == 64
    assert record["config"]["model_sha"] == DIGEST[:40]


def test_directions_cover_per_canary_metrics_through_patterns(record):
    assert record["higher_is_better"]["canary_exposure"] == {
        "exposure_max": False, "exposure_mean": False, "n_canaries": True,
        "exposure_c1": False, "exposure_c2": False}


def test_stagegate_fields_live_under_one_extension_key(record):
    stagegate = record["stagegate"]
    assert stagegate["checkpoint_digest"] == DIGEST and stagegate["manifest"] == MANIFEST
    assert stagegate["cache_key"] == "k" * 64
    assert (stagegate["device"], stagegate["dtype"]) == ("cpu", "float32")
    assert stagegate["samples_sha256"] == EvalOutput(
        metrics={}, samples=[{"canary_id": "c1", "exposure": 3.5}]).samples_sha256()
    assert stagegate["eval"]["code_hash"] == get_eval("canary_exposure").code_hash


def test_the_caller_can_set_device_dtype_samples_hash_and_extra_fields():
    record = record_for("integrity", EvalOutput(metrics={"passed": 1.0}), device="cuda:0",
                        dtype="bfloat16", samples_sha256="s" * 64, extra={"run_id": 7})
    assert record["stagegate"]["device"] == "cuda:0" and record["config"]["device"] == "cuda:0"
    assert record["stagegate"]["samples_sha256"] == "s" * 64
    assert record["stagegate"]["run_id"] == 7


def test_the_record_is_plain_json_with_missing_values_as_null():
    output = EvalOutput(metrics={"kl_mean": None, "kl_max_text": float("nan"),
                                 "top1_agreement": None, "has_parent": 0.0})
    record = record_for("drift_vs_parent", output)
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text)["results"]["drift_vs_parent"]["kl_mean,none"] is None
    assert json.loads(text)["results"]["drift_vs_parent"]["kl_max_text,none"] is None


def test_packs_read_are_recorded_with_their_hashes():
    from evaluations.library import load_builtin_pack

    pack = load_builtin_pack("heldout-en")
    record = record_for("heldout_lm", EvalOutput(metrics={"bits_per_byte": 1.0}),
                        packs={"heldout-en": pack})
    assert record["configs"]["heldout_lm"]["metadata"]["packs"] == [pack.ref]
    assert record["configs"]["heldout_lm"]["dataset_path"] == "heldout-en"


def test_records_merge_into_one_and_flatten_back_to_values(record):
    other = record_for("integrity", EvalOutput(metrics={"passed": 1.0}))
    merged = merge_result_records([record, other])
    assert set(merged["results"]) == {"canary_exposure", "integrity"}
    assert merged["stagegate"]["integrity"]["cache_key"] == "k" * 64
    flat = flatten_results(merged)
    assert flat["canary_exposure"]["exposure_max"] == 3.5 and flat["integrity"]["passed"] == 1.0
    assert "exposure_mean_stderr" not in flat["canary_exposure"]
    assert metric_value(merged, "canary_exposure", "exposure_max") == 3.5
    assert metric_value(merged, "canary_exposure", "missing") is None
