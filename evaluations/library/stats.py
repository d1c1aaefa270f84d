"""Small statistics the evals share: means with standard errors, AUROC, and the skew-normal
fit that extrapolates a canary's rank when its randomness space is too large to enumerate.

numpy and torch only (torch for log Φ, which must stay accurate far into the tail, where the
secrets of well-memorised canaries sit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def stderr_of_mean(values: Sequence[float]) -> float | None:
    """lm-eval's sample stderr: sample standard deviation (ddof=1) over sqrt(n)."""
    if len(values) < 2:
        return None
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting one half
    (the Mann-Whitney U statistic over n_pos * n_neg)."""
    if not len(positives) or not len(negatives):
        return None
    pos = np.asarray(positives, dtype=float)[:, None]
    neg = np.asarray(negatives, dtype=float)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


@dataclass(frozen=True)
class SkewNormal:
    """Skew-normal distribution with location xi, scale omega and shape alpha."""

    xi: float
    omega: float
    alpha: float

    @classmethod
    def fit_moments(cls, samples: Sequence[float]) -> "SkewNormal":
        """Method-of-moments fit (Azzalini): matches mean, variance and skewness. The sample
        skewness is clipped to the skew-normal's attainable range (|γ| < 0.9953)."""
        x = np.asarray(samples, dtype=float)
        if x.size < 3:
            raise ValueError("need at least 3 samples to fit a skew-normal")
        m, s = float(x.mean()), float(x.std(ddof=1))
        if s == 0.0:
            raise ValueError("all samples are equal; no distribution to fit")
        gamma = float(np.mean(((x - m) / s) ** 3))
        gamma = max(-0.99, min(0.99, gamma))
        g23 = abs(gamma) ** (2 / 3)
        delta = math.copysign(math.sqrt((math.pi / 2) * g23 / (g23 + ((4 - math.pi) / 2) ** (2 / 3))),
                              gamma)
        delta = max(-0.9999, min(0.9999, delta))
        alpha = delta / math.sqrt(1 - delta ** 2)
        omega = s / math.sqrt(1 - 2 * delta ** 2 / math.pi)
        xi = m - omega * delta * math.sqrt(2 / math.pi)
        return cls(xi=xi, omega=omega, alpha=alpha)

    def log_pdf_std(self, z: np.ndarray) -> np.ndarray:
        """log of the standardised density 2 φ(z) Φ(αz)."""
        zt = torch.as_tensor(z, dtype=torch.float64)
        log_phi = -0.5 * zt ** 2 - 0.5 * math.log(2 * math.pi)
        return (math.log(2) + log_phi + torch.special.log_ndtr(self.alpha * zt)).numpy()

    def log_cdf(self, x: float) -> float:
        """log F(x), by integrating the log-density on a grid (trapezoid in log space).

        The closed form Φ(z) − 2T(z, α) loses all precision in the far left tail, where both
        terms are tiny; integrating the density directly does not. The density is log-concave,
        so beyond `width` standard units below z it contributes nothing measurable.
        """
        z = (x - self.xi) / self.omega
        if z > 8:
            return float(math.log1p(-math.exp(self.log_sf_std(z))))
        width = 40.0 if z > -1 else max(40.0 / abs(z), 0.25)
        grid = np.linspace(z - width, z, 8001)
        log_f = self.log_pdf_std(grid)
        step = grid[1] - grid[0]
        weights = np.full(grid.size, math.log(step))
        weights[[0, -1]] += math.log(0.5)
        total = log_f + weights
        peak = float(total.max())
        return min(0.0, peak + math.log(float(np.exp(total - peak).sum())))

    def log_sf_std(self, z: float) -> float:
        grid = np.linspace(z, z + 40.0, 8001)
        log_f = self.log_pdf_std(grid)
        step = grid[1] - grid[0]
        total = log_f + math.log(step)
        peak = float(total.max())
        return peak + math.log(float(np.exp(total - peak).sum()))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draws via the δ|Z0| + sqrt(1−δ²) Z1 construction (used by tests of the fit)."""
        delta = self.alpha / math.sqrt(1 + self.alpha ** 2)
        z0, z1 = np.abs(rng.standard_normal(n)), rng.standard_normal(n)
        return self.xi + self.omega * (delta * z0 + math.sqrt(1 - delta ** 2) * z1)
