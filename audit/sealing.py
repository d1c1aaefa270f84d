"""Sealing: events are appended without a lock, then chained in a fixed order after commit.

`record_event` inserts an event in the caller's transaction with only an id from a database
sequence: no row every writer must lock, so a long transaction (a large submission) stalls no
other audited write. Ids are handed out in the order writers asked, not the order they commit,
so the chain is not built from them: after each commit, the sealer takes the committed events
nobody has sealed yet, in id order, and gives each its `seq`, `prev_hash`, `seal` and `hash`
under the chain head's row lock, which only sealers take. This is how transparency logs work:
entries are queued, then integrated into the tree shortly after.

The sealer runs on commit of every audited transaction (skipping when another process holds
the head: that one seals what is committed), and every STAGEGATE_AUDIT_SEAL_SECONDS from celery
beat to catch an event committed just as a sealer finished. `verify_audit` and the anchored
heads cover sealed events; the audit page and /metrics show how far sealing lags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from audit import heads
from audit.models import AuditChainHead, AuditEvent

log = logging.getLogger(__name__)
BATCH = 500


def seal_pending(*, wait: bool = True) -> int:
    """Chain every committed, unsealed event; return how many were sealed. With wait=False a
    sealer already at work is left to it (it seals what this caller committed, or the next
    periodic pass does)."""
    sealed = 0
    while True:
        count = _seal_batch(wait=wait)
        if count is None:
            return sealed
        sealed += count
        if count < BATCH:
            return sealed


def _seal_batch(*, wait: bool) -> int | None:
    with transaction.atomic():
        AuditChainHead.objects.get_or_create(pk=1)
        locked = AuditChainHead.objects.select_for_update(skip_locked=not wait).filter(pk=1)
        head = locked.first()
        if head is None:
            return None
        events = list(AuditEvent.objects.filter(seq__isnull=True).order_by("id")[:BATCH])
        seq, prev_hash = head.seq, head.hash
        for event in events:
            seq += 1
            event.chain_after(seq=seq, prev_hash=prev_hash)
            prev_hash = event.hash
        if not events:
            return 0
        AuditEvent.objects.bulk_update(events, ["seq", "prev_hash", "seal", "hash"])
        head.seq, head.hash = seq, prev_hash
        head.save(update_fields=["seq", "hash"])
        if heads.due(head):
            transaction.on_commit(_export_head, robust=True)
    return len(events)


def seal_after_commit() -> None:
    """The on-commit hook of every audited transaction: a failure here loses nothing (the event
    is committed, and the periodic pass seals it)."""
    try:
        seal_pending(wait=False)
    except Exception:  # noqa: BLE001 - logged; the beat task seals it
        log.exception("could not seal the audit events just committed")


def _export_head() -> None:
    """After the seal that made the chain N events longer: sign and export its head. A failure
    (no key yet, a sink down) never undoes the seal; the periodic export retries."""
    try:
        heads.export_head()
    except Exception:  # noqa: BLE001 - logged; the beat task and the next seal try again
        log.exception("could not export the audit chain head")


@dataclass(frozen=True)
class Lag:
    unsealed: int
    oldest: datetime | None

    @property
    def seconds(self) -> float:
        return (timezone.now() - self.oldest).total_seconds() if self.oldest else 0.0

    def sentence(self) -> str:
        if not self.unsealed:
            return "every event is sealed"
        return (f"{self.unsealed} event(s) not sealed yet, the oldest {self.seconds:.0f} s ago: "
                "sealing runs after each commit and every STAGEGATE_AUDIT_SEAL_SECONDS on "
                "celery beat; if this grows, check that a worker runs with beat")


def lag() -> Lag:
    pending = AuditEvent.objects.filter(seq__isnull=True).aggregate(
        oldest=Min("created_at"), n=Count("id"))
    return Lag(pending["n"], pending["oldest"])



def chain_position(event_id: int) -> dict:
    """An event's place in the chain, {"seq", "hash"}, for telling the world about it (a
    webhook); sealed first if the sealer has not got to it yet. Empty for an unknown id."""
    event = AuditEvent.objects.filter(pk=event_id).first()
    if event is not None and not event.sealed:
        seal_pending()
        event.refresh_from_db()
    return {"seq": event.seq, "hash": event.hash} if event is not None else {}
