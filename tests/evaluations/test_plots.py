"""Plots: plain data in, PNG bytes out, the same bytes for the same data."""

from __future__ import annotations

from evaluations.library.plots import (plot_canary_null, plot_metric_by_checkpoint,
                                       plot_refusal_margins)

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_metric_is_plotted_across_a_familys_checkpoints_with_gaps_for_missing_values():
    png = plot_metric_by_checkpoint([("step1000", 2.1), ("step2000", None), ("step3000", 1.4)],
                                    metric="bits_per_byte", higher_is_better=False,
                                    highlight="step3000")
    assert png.startswith(PNG)


def test_a_canary_is_plotted_against_its_null_distribution():
    png = plot_canary_null(canary_id="c1", null_scores=[30.0 + i % 7 for i in range(500)],
                           secret_score=21.5, exposure=9.0, method="exact")
    assert png.startswith(PNG)


def test_refusal_margins_are_plotted_for_harmful_and_benign_prompts():
    assert plot_refusal_margins(harmful=[0.5, 1.2, -0.1], benign=[-0.8, -0.3]).startswith(PNG)
    assert plot_refusal_margins(harmful=[], benign=[]).startswith(PNG)


def test_the_same_data_gives_the_same_bytes():
    first = plot_refusal_margins(harmful=[0.5, 1.0], benign=[-1.0])
    assert first == plot_refusal_margins(harmful=[0.5, 1.0], benign=[-1.0])
