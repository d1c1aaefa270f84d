"""Every built-in's result record validates against lm-evaluation-harness's own result schema
(lm_eval.result_schema.EvalResults, through evaluations.library.conformance)."""

from __future__ import annotations

import copy

import pytest

from evaluations.library import ExtractionPrefix, build_result_record, get_eval
from evaluations.library.conformance import schema_problems
from evaluations.library.context import open_from_dir
from evaluations.library.registry import BUILTIN_NAMES
from evaluations.library.results import AGGREGATIONS, STAGEGATE_AGGREGATIONS, aggregation_of
from tests.evaluations import corpora

PARAMS = {"heldout_lm": {"pack": "test-heldout"}, "mc_knowledge": {"pack": "test-mc"},
          "refusal_preference": {"pack": "test-refusal"}, "pairwise_bias": {"pack": "test-bias"},
          "drift_vs_parent": {"pack": "test-probe"},
          "finetune_attack": {"pack": "test-attack", "measure_pack": "test-refusal", "steps": 2,
                              "every": 1}, "canary_exposure": {"n_candidates": 500,
                                                                          "exact_limit": 1000}}


def _manifest(folder):
    import hashlib

    return [{"path": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
             "size": p.stat().st_size} for p in sorted(folder.iterdir()) if p.is_file()]


@pytest.fixture(scope="module")
def records(zoo, evaluate) -> dict[str, dict]:
    model = zoo.variant("plain", 0)
    manifest = _manifest(model)
    context = {
        "integrity": {"manifest": manifest, "open_file": open_from_dir(model)},
        "canary_exposure": {"canaries": [corpora.secret_canary()]},
        "verbatim_extraction": {"extraction_prefixes": [
            ExtractionPrefix(id=f"s{i}", prefix=p, continuation=c)
            for i, (p, c) in enumerate(corpora.extraction_pairs())]},
        "drift_vs_parent": {"parent_model_dir": zoo.base(0)},
    }
    built = {}
    for name in BUILTIN_NAMES:
        spec = get_eval(name)
        output = evaluate(name, model, params=PARAMS.get(name), **context.get(name, {}))
        built[name] = build_result_record(
            spec=spec, output=output, params=spec.resolve_params(PARAMS.get(name)),
            checkpoint_digest="d" * 64, manifest=manifest, cache_key="k" * 64)
    return built


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_built_in_record_validates_against_lm_evals_result_schema(records, name):
    record = records[name]
    assert schema_problems(record) == []
    scores = record["results"][name]
    assert scores["name"] == scores["alias"] == name
    assert scores["sample_len"] == record["n-samples"][name]["effective"] > 0
    assert record["group_subtasks"] == {}
    assert isinstance(record["versions"][name], float)


def test_the_schema_check_names_each_departure_the_records_used_to_have(records):
    old = copy.deepcopy(records["heldout_lm"])
    scores = old["results"]["heldout_lm"]
    del scores["name"], scores["sample_len"]
    scores["bits_per_byte_stderr,none"] = "N/A"
    old["config"]["batch_size"] = 16
    old["configs"]["heldout_lm"]["output_type"] = "bytes"
    problems = "\n".join(schema_problems(old))
    for expected in ("results.heldout_lm.name", "results.heldout_lm.sample_len",
                     "bits_per_byte_stderr,none", "config.batch_size",
                     "configs.heldout_lm.output_type"):
        assert expected in problems


def test_corpus_weighted_metrics_name_lm_evals_aggregation_not_mean(records):
    import lm_eval.api.metrics  # noqa: F401 (registers the harness's aggregations)
    from lm_eval.api.registry import AGGREGATION_REGISTRY

    metric_list = {m["metric"]: m["aggregation"]
                   for m in records["heldout_lm"]["configs"]["heldout_lm"]["metric_list"]}
    assert metric_list == {"bits_per_byte": "bits_per_byte",
                           "byte_perplexity": "weighted_perplexity",
                           "word_perplexity": "weighted_perplexity"}
    for name, record in records.items():
        for entry in record["configs"][name]["metric_list"]:
            assert (entry["aggregation"] in AGGREGATION_REGISTRY
                    or entry["aggregation"] in STAGEGATE_AGGREGATIONS), (name, entry)
    assert aggregation_of("canary_exposure", "exposure_c-7") == "value"
    assert set(AGGREGATIONS) <= set(BUILTIN_NAMES)


def test_mc_knowledge_says_it_is_a_multiple_choice_task(records):
    assert records["mc_knowledge"]["configs"]["mc_knowledge"]["output_type"] == "multiple_choice"
    assert "output_type" not in records["integrity"]["configs"]["integrity"]
