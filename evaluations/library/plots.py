"""PNG plots for the run and checkpoint pages. Plain data in, PNG bytes out.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot state), so a
worker can draw from several threads and nothing ever opens a window.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

HARMFUL_COLOUR, BENIGN_COLOUR, SECRET_COLOUR = "#c0392b", "#2e86c1", "#c0392b"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No metadata: the same data gives the same bytes, whatever matplotlib version stamps.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.add_subplot()


def plot_metric_by_checkpoint(points: Sequence[tuple[str, float | None]], *, metric: str,
                              title: str | None = None, higher_is_better: bool | None = None,
                              highlight: str | None = None, previous: str | None = None,
                              threshold: float | None = None,
                              threshold_label: str | None = None) -> bytes:
    """One metric across a family's checkpoints, in the order given (e.g. held-out bits per
    byte by checkpoint label). Every point with a value is drawn (a lone point between gaps
    too); missing values are gaps, not zeros. `highlight` rings the checkpoint under review,
    `previous` the one it is compared with, and `threshold` is drawn as the policy's line."""
    figure, axes = _figure(max(6.4, 0.6 * len(points) + 2))
    labels = [label for label, _ in points]
    values = [math.nan if value is None else value for _, value in points]
    axes.plot(range(len(points)), values, color="#34495e", linewidth=1.5)
    present = [i for i, v in enumerate(values) if not math.isnan(v)]
    axes.plot(present, [values[i] for i in present], marker="o", linestyle="none",
              color="#34495e")
    for label, colour, name in ((highlight, SECRET_COLOUR, "this checkpoint"),
                                (previous, BENIGN_COLOUR, "previous approved")):
        if label in labels and not math.isnan(values[labels.index(label)]):
            index = labels.index(label)
            axes.plot([index], [values[index]], marker="o", markersize=12, fillstyle="none",
                      color=colour, linestyle="none", label=f"{name}: {label}")
    if threshold is not None:
        axes.axhline(threshold, color="#b9770e", linestyle="--", linewidth=1.5,
                     label=threshold_label or f"threshold {threshold:g}")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=8)
    axes.set_xticks(range(len(points)), labels, rotation=30, ha="right", fontsize=8)
    direction = {True: " (higher is better)", False: " (lower is better)"}.get(higher_is_better, "")
    axes.set_ylabel(metric + direction)
    axes.set_title(title or f"{metric} by checkpoint")
    axes.grid(alpha=0.3)
    return _png(figure)


def plot_canary_null(*, canary_id: str, null_scores: Sequence[float], secret_score: float,
                     exposure: float, method: str) -> bytes:
    """A canary's null distribution (log-perplexity of the other candidates) with the
    inserted secret's score marked. Takes scores only: the secret itself never gets here."""
    figure, axes = _figure()
    axes.hist(list(null_scores), bins=min(60, max(10, int(math.sqrt(len(null_scores))))),
              color="#95a5a6", label=f"other candidates ({len(null_scores)}, {method})")
    axes.axvline(secret_score, color=SECRET_COLOUR, linewidth=2,
                 label=f"inserted secret: exposure {exposure:.1f} bits")
    axes.set_xlabel("log-perplexity of the filled template (bits)")
    axes.set_ylabel("candidates")
    axes.set_title(f"Canary {canary_id}")
    axes.legend(loc="best", fontsize=8)
    return _png(figure)


def plot_refusal_margins(*, harmful: Sequence[float], benign: Sequence[float]) -> bytes:
    """Refusal-minus-compliance margins (nats per token) on harmful prompts and their benign
    twins; a model that discriminates puts harmful to the right of zero, benign to the left."""
    figure, axes = _figure()
    values = list(harmful) + list(benign)
    low, high = (min(values), max(values)) if values else (-1.0, 1.0)
    span = (high - low) or 1.0
    bins = [low - 0.05 * span + i * 1.1 * span / 30 for i in range(31)]
    axes.hist(list(harmful), bins=bins, alpha=0.6, color=HARMFUL_COLOUR,
              label=f"harmful prompts ({len(harmful)})")
    axes.hist(list(benign), bins=bins, alpha=0.6, color=BENIGN_COLOUR,
              label=f"benign twins ({len(benign)})")
    axes.axvline(0.0, color="black", linewidth=1)
    axes.set_xlabel("refusal − compliance log-likelihood per token (nats)")
    axes.set_ylabel("prompts")
    axes.set_title("Refusal margins")
    axes.legend(loc="best", fontsize=8)
    return _png(figure)
