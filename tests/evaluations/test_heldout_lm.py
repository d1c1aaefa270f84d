"""heldout_lm: a trained model predicts held-out text better than its random init."""

from __future__ import annotations

import math

import pytest

from tests.evaluations.zoo import SEEDS

PARAMS = {"pack": "test-heldout"}


@pytest.fixture(scope="module")
def runs(zoo, evaluate):
    return {seed: (evaluate("heldout_lm", zoo.variant("plain", seed), params=PARAMS),
                   evaluate("heldout_lm", zoo.random_init(seed), params=PARAMS))
            for seed in SEEDS}


def test_trained_models_beat_their_random_init_on_held_out_text_for_every_seed(runs):
    for seed, (trained, random_init) in runs.items():
        gap = random_init.metrics["bits_per_byte"] - trained.metrics["bits_per_byte"]
        assert gap > 0.5, f"seed {seed}: bits-per-byte gap {gap:.3f}"
        assert random_init.metrics["word_perplexity"] > 2 * trained.metrics["word_perplexity"]


def test_metrics_are_lm_eval_corpus_aggregates_of_the_rows(runs):
    trained, _ = runs[SEEDS[0]]
    total_ll = sum(row["loglikelihood"] for row in trained.samples)
    total_bytes = sum(row["bytes"] for row in trained.samples)
    total_words = sum(row["words"] for row in trained.samples)
    assert trained.metrics["bits_per_byte"] == pytest.approx(-total_ll / total_bytes / math.log(2))
    assert trained.metrics["byte_perplexity"] == pytest.approx(math.exp(-total_ll / total_bytes))
    assert trained.metrics["word_perplexity"] == pytest.approx(math.exp(-total_ll / total_words))
    assert trained.n_samples == 16 and trained.runtime == {"device": "cpu", "dtype": "float32"}


def test_progress_is_reported_up_to_the_total(zoo, evaluate):
    calls = []
    evaluate("heldout_lm", zoo.base(0), params=PARAMS, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
