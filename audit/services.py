"""The one writer of audit events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from audit import sealing
from audit.models import (GENESIS_HASH, AuditChainHead, AuditEvent, canonical_json,
                          column_digest)


def _object_fields(obj: Any) -> tuple[str, str, str]:
    if obj is None:
        return "", "", ""
    if isinstance(obj, models.Model):
        return obj._meta.label_lower, str(obj.pk), str(obj)[:300]
    raise TypeError(f"audit object must be a model instance, not {type(obj).__name__}")


def record_event(*, actor, verb: str, obj: Any = None, data: dict | None = None) -> AuditEvent:
    """Append one event, in the caller's transaction: it commits or rolls back with the state
    change it records. The insert takes no lock another writer waits for (the id comes from a
    database sequence); the event is chained (seq, prev_hash, hash) by the sealer right after
    the commit (audit/sealing.py)."""
    object_type, object_id, object_repr = _object_fields(obj)
    # Round-trip through the encoder so what is stored is exactly what will be hashed.
    data_json = canonical_json(json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder)))
    user = actor if getattr(actor, "is_authenticated", False) else None
    event = AuditEvent(
        created_at=timezone.now(),
        actor=user,
        actor_username=user.get_username() if user else "",
        verb=verb,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        data_json=data_json,
    )
    event.save()
    # One sealing pass per transaction, however many events it writes.
    connection = transaction.get_connection()
    if not any(hook is sealing.seal_after_commit for _, hook, _ in connection.run_on_commit):
        transaction.on_commit(sealing.seal_after_commit, robust=True)
    return event


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    event_id: int | None
    reason: str


def verify_chain(*, batch_size: int = 2000) -> ChainBreak | None:
    """Recompute the chain in order; return the first broken link, or None when intact. An
    altered event is named with the columns that no longer match its seal."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    for event in _iterate(batch_size):
        if event.seq != expected_seq:
            moved = _sealed_at(expected_seq)
            if moved is not None:
                return ChainBreak(expected_seq, moved.pk,
                                  f"event #{expected_seq} (id {moved.pk}, {moved.verb}) was "
                                  f"altered: its seq column says {moved.seq}")
            return ChainBreak(expected_seq, None, f"event #{expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return ChainBreak(event.seq, event.pk,
                              f"event #{event.seq} (id {event.pk}) does not link to event "
                              f"#{event.seq - 1}: its prev_hash column was altered, or the event "
                              "before it was")
        if event.compute_hash() != event.hash:
            columns = event.altered_columns()
            what = (f"altered column(s): {', '.join(columns)}" if columns else
                    "its hash or seal column was rewritten")
            return ChainBreak(event.seq, event.pk,
                              f"event #{event.seq} (id {event.pk}, {event.verb}) was altered: "
                              f"its contents no longer match its hash ({what})")
        if event.altered_columns():
            return ChainBreak(event.seq, event.pk,
                              f"event #{event.seq} (id {event.pk}, {event.verb}) was altered: "
                              "its seal column no longer matches its contents")
        prev_hash = event.hash
        expected_seq += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head and head.seq != expected_seq - 1:
        return ChainBreak(expected_seq, None,
                          f"the chain ends at event #{expected_seq - 1} but {head.seq} were written")
    return None


def _sealed_at(seq: int) -> AuditEvent | None:
    """The event whose seal says it was sealed at `seq`, wherever its seq column now points."""
    digest = canonical_json({"seq": column_digest(seq)})[1:-1]
    return AuditEvent.objects.filter(seal__contains=digest).first()


def _iterate(batch_size: int) -> Iterator[AuditEvent]:
    last = 0
    while True:
        batch = list(AuditEvent.objects.filter(seq__gt=last).order_by("seq")[:batch_size])
        if not batch:
            return
        yield from batch
        last = batch[-1].seq


# --- permission refusals ---------------------------------------------------------------------
# A refusal must be in the audit log even though the action it refused rolls back. Services
# raise Refused (a PermissionDenied) from inside their transactions; the outermost service
# decorated with @records_refusals writes the `permission.denied` event after every transaction
# of the action has unwound, so nothing rolls it back. During a web request every Refused is
# also noted in the request's scope (audit.refusals), and the refusal middleware records those
# that nothing recorded, e.g. one a view caught and showed as a message: no action can forget.

import contextvars  # noqa: E402
import functools  # noqa: E402

from django.core.exceptions import PermissionDenied  # noqa: E402

from audit import refusals  # noqa: E402

_depth = contextvars.ContextVar("stagegate_refusal_depth", default=0)


class Refused(PermissionDenied):
    def __init__(self, *, actor, action: str, obj=None, reason: str):
        super().__init__(reason)
        self.actor, self.action, self.obj, self.reason = actor, action, obj, reason
        self.recorded = False
        refusals.note(self)


def deny(*, actor, action: str, obj=None, reason: str) -> Refused:
    """The exception to raise when `actor` may not do `action`; it is recorded on its way out."""
    return Refused(actor=actor, action=action, obj=obj, reason=reason)


def record_refusal(exc: Refused, *, who: str | None = None) -> None:
    if exc.recorded:
        return
    exc.recorded = True
    refusals.record_refusal_event(actor=exc.actor, verb="permission.denied", action=exc.action,
                                  reason=exc.reason, obj=exc.obj, who=who)


def records_refusals(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        token = _depth.set(_depth.get() + 1)
        try:
            return fn(*args, **kwargs)
        except Refused as exc:
            if _depth.get() == 1:
                record_refusal(exc)
            raise
        finally:
            _depth.reset(token)

    return wrapper


def record_refusal_of(exc, request) -> None:
    """A service's Refused that reached a view or the API unrecorded. Every other refusal (any
    401, 403, or 404 from an object lookup) is recorded from its response by the refusal
    middleware (config/refusals.py)."""
    if isinstance(exc, Refused):
        record_refusal(exc)
