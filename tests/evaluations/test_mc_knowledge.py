"""mc_knowledge: a model trained on the answers beats one trained on other facts."""

from __future__ import annotations

import pytest

from evaluations.library.builtin.mc_knowledge import score_item
from tests.evaluations.zoo import SEEDS

PARAMS = {"pack": "test-mc"}


@pytest.fixture(scope="module")
def runs(zoo, evaluate):
    return {seed: (evaluate("mc_knowledge", zoo.variant("facts", seed), params=PARAMS),
                   evaluate("mc_knowledge", zoo.variant("other_facts", seed), params=PARAMS))
            for seed in SEEDS}


def test_a_model_trained_on_the_answers_beats_one_that_was_not_for_every_seed(runs):
    for seed, (trained, untrained) in runs.items():
        for metric in ("acc", "acc_norm", "mc1", "mc2"):
            gap = trained.metrics[metric] - untrained.metrics[metric]
            assert gap >= 0.4, f"seed {seed}: {metric} gap {gap:.2f}"


def test_acc_picks_the_highest_loglikelihood_and_acc_norm_divides_by_characters():
    # The long true answer loses on the raw sum but wins per character.
    scores = score_item([-12.0, -5.0], ["a long true answer", "no"], [1, 0])
    assert scores["acc"] == 0.0 and scores["acc_norm"] == 1.0 and scores["acc_bytes"] == 1.0


def test_acc_bytes_counts_utf8_bytes_where_acc_norm_counts_characters():
    # 'é' is one character but two bytes: per character the true choice wins (-2.0 against
    # -2.25), per byte the false one does (-2.0 against -1.125).
    scores = score_item([-4.0, -4.5], ["ab", "éé"], [1, 0])
    assert scores["acc_norm"] == 1.0 and scores["acc_bytes"] == 0.0


def test_mc1_pits_the_best_answer_against_the_false_ones_only():
    # Two true answers; the second true one has the highest likelihood.
    scores = score_item([-3.0, -1.0, -2.0], ["best", "also true", "false"], [1, 1, 0])
    assert scores["acc"] == 1.0  # argmax is a true choice
    assert scores["mc1"] == 0.0  # but among {best, false}, false wins


def test_mc2_is_the_normalised_probability_mass_on_true_answers():
    import math

    lls = [-1.0, -2.0, -3.0]
    scores = score_item(lls, ["t1", "t2", "f"], [1, 1, 0])
    p = [math.exp(x) for x in lls]
    assert scores["mc2"] == pytest.approx((p[0] + p[1]) / sum(p))
    # No underflow for long answers whose log-likelihoods are far below -745.
    assert score_item([-2000.0, -2001.0], ["t", "f"], [1, 0])["mc2"] == pytest.approx(
        1 / (1 + math.exp(-1)))
