"""Numbers people read: each metric with its unit and a sensible precision.

`word_perplexity=194464250739.4196` and `bytes_checked=548698.0000` are what a dump shows; a
reviewer needs `1.94e11` and `536 KB`. Pure functions (no Django), used by the pages' template
filter and the plots' axis labels.
"""

from __future__ import annotations

import fnmatch
import math

# (pattern, kind): the first match wins. Kinds decide unit and precision.
KINDS = (
    ("passed", "yesno"),
    ("has_parent", "yesno"),
    ("bytes_checked", "bytes"),
    ("files_checked", "count"),
    ("n_*", "count"),
    ("bits_per_byte", "bits_per_byte"),
    ("*perplexity", "perplexity"),
    ("exposure_*", "bits"),
    ("kl_*", "nats"),
    ("*_rate", "share"),
    ("pct_*", "share"),
    ("acc", "share"),
    ("acc_norm", "share"),
    ("mc1", "share"),
    ("mc2", "share"),
    ("mem_score", "share"),
    ("top1_agreement", "share"),
)
UNITS = {"bits_per_byte": "bits/byte", "bits": "bits", "nats": "nats"}


def metric_kind(metric: str) -> str:
    name = metric.rsplit(".", 1)[-1]  # delta.heldout_lm.bits_per_byte -> bits_per_byte
    for pattern, kind in KINDS:
        if fnmatch.fnmatchcase(name, pattern):
            return kind
    return "number"


def _significant(value: float, digits: int = 4) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.{digits - 1}e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def _bytes(value: float) -> str:
    for unit, scale in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} bytes"


def format_metric(metric: str, value) -> str:
    """`value` of `metric` as a person reads it: units, precision, "—" when there is none."""
    if value is None or isinstance(value, str):
        return "—" if value is None else value
    if isinstance(value, float) and math.isnan(value):
        return "—"
    kind = metric_kind(metric)
    delta = metric.startswith("delta.")
    sign = "+" if delta and value > 0 else ""
    if kind == "yesno" and not delta:
        return "yes" if value else "no"
    if kind == "count":
        return f"{sign}{int(round(value)):,}"
    if kind == "bytes":
        return sign + _bytes(value)
    if kind == "share":
        return f"{sign}{100 * value:.1f}" + (" pts" if delta else "%")
    text = sign + _significant(float(value))
    return f"{text} {UNITS[kind]}" if kind in UNITS else text


def format_threshold(metric: str, bound: str, limit: float) -> str:
    """`at most 8.000 bits/byte`; a pass/fail metric reads `must be yes`."""
    if metric_kind(metric) == "yesno":
        passing = limit > 0 if bound == "at least" else limit >= 1
        return f"must be {'yes' if passing else 'no'}"
    return f"{bound} {format_metric(metric, limit)}"
