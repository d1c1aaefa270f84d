"""Refusal events: one writer, aggregated so that a scanner cannot flood the log, and a request
scope that records every refusal raised during a request even when a view caught it.

Aggregation: the first refusal of a kind (same actor or address, same verb, action and object)
is written at once; repeats within STAGEGATE_REFUSAL_WINDOW_SECONDS are counted, not written,
and the next event of that kind carries the count (`repeats_folded`). Past
STAGEGATE_REFUSAL_BURST events from one actor or address in a window, further kinds are folded
too, and the next event written for that actor or address says how many (`others_folded`). So
every refusal is counted in the log, and a flood costs at most BURST rows per window.

The counters live in Django's cache (Redis when configured, so every web process shares them).
This module imports no other Stagegate app.
"""

from __future__ import annotations

import contextvars
import hashlib

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

_pending: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "stagegate_pending_refusals", default=None)


def window() -> int:
    return getattr(settings, "STAGEGATE_REFUSAL_WINDOW_SECONDS", 60)


def burst() -> int:
    return getattr(settings, "STAGEGATE_REFUSAL_BURST", 20)


def _incr(key: str, timeout: int) -> int:
    if cache.add(key, 1, timeout):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout)
        return 1


def _take(key: str) -> int:
    value = cache.get(key) or 0
    if value:
        cache.delete(key)
    return int(value)


def record_refusal_event(*, actor, verb: str, action: str, reason: str, obj=None,
                         who: str | None = None, data: dict | None = None):
    """Write (or fold into the next one) a refusal event. `who` is the caller's address for an
    anonymous caller; signed-in callers are keyed by their id. Returns the event, or None when
    it was folded."""
    from audit.services import _object_fields, record_event

    user_id = getattr(actor, "pk", None) if getattr(actor, "is_authenticated", False) else None
    who = f"user:{user_id}" if user_id else f"addr:{who or 'unknown'}"
    object_key = ":".join(_object_fields(obj)[:2])
    kind = hashlib.sha256("\x1f".join((who, verb, action, object_key, reason)).encode()
                          ).hexdigest()[:32]
    prefix = "stagegate:refusal"
    seconds = window()
    if not cache.add(f"{prefix}:open:{kind}", 1, seconds):
        _incr(f"{prefix}:repeats:{kind}", seconds * 10)
        return None
    if _incr(f"{prefix}:burst:{who}", seconds) > burst():
        _incr(f"{prefix}:others:{who}", seconds * 10)
        return None
    payload = {"action": action, "reason": reason, **(data or {})}
    repeats = _take(f"{prefix}:repeats:{kind}")
    others = _take(f"{prefix}:others:{who}")
    if repeats:
        payload["repeats_folded"] = repeats
    if others:
        payload["others_folded"] = others
    with transaction.atomic():
        return record_event(actor=actor, verb=verb, obj=obj, data=payload)


# --- the request scope -----------------------------------------------------------------------

class RequestScope:
    """Collects the refusals (audit.services.Refused) raised while a request is handled, so that
    the middleware can record those a view caught and turned into a message."""

    def __enter__(self):
        self.raised: list = []
        self._token = _pending.set(self.raised)
        return self

    def __exit__(self, *exc):
        _pending.reset(self._token)
        return False


def note(refusal) -> None:
    """Called by every Refused as it is made; kept when a request scope is open."""
    pending = _pending.get()
    if pending is not None:
        pending.append(refusal)
