"""drift_vs_parent: zero for a copy, positive after fine-tuning, honest without a parent."""

from __future__ import annotations

import shutil

import pytest

from evaluations.library.context import NothingToScore
from evaluations.library.results import metric_deltas
from tests.evaluations.zoo import SEEDS

PARAMS = {"pack": "test-probe"}


def test_a_byte_identical_copy_has_zero_kl_and_a_fine_tuned_child_does_not(zoo, evaluate,
                                                                           tmp_path):
    for seed in SEEDS:
        parent = zoo.base(seed)
        copy = shutil.copytree(parent, tmp_path / f"copy-{seed}")
        same = evaluate("drift_vs_parent", copy, parent_model_dir=parent, params=PARAMS)
        tuned = evaluate("drift_vs_parent", zoo.variant("plain", seed), parent_model_dir=parent,
                         params=PARAMS)
        assert same.metrics["kl_mean"] == 0.0 and same.metrics["top1_agreement"] == 1.0
        assert tuned.metrics["kl_mean"] > 0.01, f"seed {seed}: {tuned.metrics['kl_mean']}"
        assert tuned.metrics["top1_agreement"] < 1.0


def test_without_a_parent_no_kl_is_invented_the_run_fails(zoo, evaluate):
    with pytest.raises(NothingToScore, match="no approved parent in its family, so drift "
                                             "cannot be measured"):
        evaluate("drift_vs_parent", zoo.base(0), params=PARAMS)


def test_every_other_evals_metrics_get_a_delta_with_their_direction():
    parent_results = {"results": {"heldout_lm": {"alias": "heldout_lm",
                                                 "bits_per_byte,none": 1.5,
                                                 "bits_per_byte_stderr,none": "N/A"},
                                  "canary_exposure": {"exposure_max,none": 2.0}}}
    current_results = {"heldout_lm": {"bits_per_byte": 1.25},
                       "canary_exposure": {"exposure_max": None}}
    deltas, directions = metric_deltas(parent_results, current_results)
    assert deltas["delta.heldout_lm.bits_per_byte"] == pytest.approx(-0.25)
    assert deltas["delta.canary_exposure.exposure_max"] is None
    assert directions["delta.heldout_lm.bits_per_byte"] is False


def test_a_parent_with_another_tokenizer_gives_no_kl_and_says_why(zoo, evaluate, tmp_path):
    from transformers import AutoTokenizer

    parent = shutil.copytree(zoo.base(0), tmp_path / "other-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(parent, local_files_only=True)
    tokenizer.add_tokens(["<extra-token>"])
    tokenizer.save_pretrained(parent)
    with pytest.raises(NothingToScore, match="the parent's tokenizer differs"):
        evaluate("drift_vs_parent", zoo.base(0), parent_model_dir=parent, params=PARAMS)
