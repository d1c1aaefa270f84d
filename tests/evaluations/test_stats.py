"""The statistics behind exposure extrapolation and discrimination."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluations.library.stats import SkewNormal, auroc, stderr_of_mean


def test_the_moment_fit_recovers_a_skew_normal():
    truth = SkewNormal(xi=40.0, omega=3.0, alpha=4.0)
    fit = SkewNormal.fit_moments(truth.sample(200_000, np.random.default_rng(0)))
    assert fit.xi == pytest.approx(40.0, abs=0.1)
    assert fit.omega == pytest.approx(3.0, abs=0.1)
    assert fit.alpha == pytest.approx(4.0, rel=0.15)


@pytest.mark.parametrize("alpha", [-3.0, 0.0, 2.5])
def test_the_cdf_matches_the_empirical_one_into_the_tail(alpha):
    dist = SkewNormal(xi=10.0, omega=2.0, alpha=alpha)
    draws = dist.sample(1_000_000, np.random.default_rng(1))
    for q in (1e-3, 1e-2, 0.5, 0.9):
        x = float(np.quantile(draws, q))
        assert math.exp(dist.log_cdf(x)) == pytest.approx(q, rel=0.1)


def test_with_no_skew_it_is_the_normal_cdf_far_into_the_tail():
    dist = SkewNormal(xi=0.0, omega=1.0, alpha=0.0)
    for z in (-30.0, -8.0, -1.0, 0.0, 3.0):
        expected = float(torch.special.log_ndtr(torch.tensor(z, dtype=torch.float64)))
        assert dist.log_cdf(z) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_auroc_counts_ties_as_half_and_needs_both_groups():
    assert auroc([1, 2], [0, 0]) == 1.0
    assert auroc([0], [0]) == 0.5
    assert auroc([0, 3], [1, 2]) == 0.5
    assert auroc([], [1]) is None


def test_stderr_is_the_sample_standard_deviation_over_root_n():
    assert stderr_of_mean([1.0, 3.0]) == pytest.approx(1.0)
    assert stderr_of_mean([1.0]) is None
