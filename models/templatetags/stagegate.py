from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def human_count(value) -> str:
    """1234567 -> 1.23M; keeps small numbers exact."""
    try:
        n = float(value)
    except (TypeError, ValueError):
        return ""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{int(n)}"


@register.filter
def shape(value) -> str:
    if not isinstance(value, (list, tuple)):
        return ""
    return "[" + ", ".join(str(d) for d in value) + "]"


@register.filter
def short_hash(value, length: int = 12) -> str:
    return str(value or "")[: int(length)]


@register.filter
def get_item(mapping, key):
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.filter
def percent(part, whole) -> str:
    try:
        return f"{100 * float(part) / float(whole):.1f}%"
    except (TypeError, ValueError, ZeroDivisionError):
        return ""


@register.filter
def metric(value, name: str) -> str:
    """{{ value|metric:"bits_per_byte" }} -> 4.123 bits/byte (evaluations/formatting.py)."""
    from evaluations.formatting import format_metric

    return format_metric(str(name), value)


@register.simple_tag
def threshold(metric_name: str, bound: str, limit) -> str:
    """{% threshold row.metric row.bound row.limit %} -> at most 8.000 bits/byte"""
    from evaluations.formatting import format_threshold

    return format_threshold(str(metric_name), str(bound), float(limit))


@register.filter
def ticks(value) -> str:
    """Scanner and eval messages mark names with `backticks`: show them as code, escaped."""
    import re

    from django.utils.html import escape
    from django.utils.safestring import mark_safe

    return mark_safe(re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(str(value or ""))))
