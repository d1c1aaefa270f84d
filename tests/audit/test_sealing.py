"""Audit events are appended without a shared lock and sealed into the chain after commit.

A writer's transaction that is still open (a large submission, a slow approval) makes no other
audited write wait: the second writer runs with a lock timeout, so any lock the first one held
would fail it at once, with no sleep and no timing. The chain is built in commit order by the
sealer, and what the on-commit sealer missed waits, visibly (page, /metrics, verify_audit),
for the periodic pass.
"""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from audit.models import AuditChainHead, AuditEvent
from audit.sealing import lag, seal_pending
from audit.services import record_event, verify_chain
from audit.tasks import seal_task

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql",
                                reason="concurrent writers need PostgreSQL (SQLite has one)")


class OpenTransaction(threading.Thread):
    """In its own connection: run `work` in a transaction and keep it open until `finish`."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None
        self.ready, self.finish, self.done = threading.Event(), threading.Event(), threading.Event()

    def run(self) -> None:
        try:
            with transaction.atomic():
                self.result = self.work()
                self.ready.set()
                assert self.finish.wait(timeout=60), "the test never let the transaction end"
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self.ready.set()
        finally:
            connections.close_all()
            self.done.set()


def with_lock_timeout(work):
    """Run `work` in a transaction that fails at once if it has to wait for any lock."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '200ms'")
        return work()


@pytest.mark.django_db(transaction=True)
def test_an_open_audited_transaction_makes_no_other_audited_write_wait(personas):
    first = OpenTransaction(lambda: record_event(actor=personas.alice, verb="test.slow",
                                                 data={"n": 1}))
    first.start()
    try:
        assert first.ready.wait(timeout=30) and first.error is None, first.error
        # The first event has its id (from the sequence) but is not committed: nothing seals it.
        second = with_lock_timeout(lambda: record_event(actor=personas.bob, verb="test.quick"))
        third = with_lock_timeout(lambda: record_event(actor=personas.carol, verb="test.quick"))
        assert first.result.pk < second.pk < third.pk
        sealed = {e.verb + str(e.pk): e.seq for e in AuditEvent.objects.filter(seq__isnull=False)}
        assert len(sealed) == 2, "the committed events were sealed after their commits"
        assert lag().unsealed == 0, "an uncommitted event is invisible, so not waiting to be sealed"
    finally:
        first.finish.set()
        first.done.wait(timeout=30)
    assert first.error is None, first.error
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 0
    chain = list(AuditEvent.objects.order_by("seq"))
    # Chained in commit order: the first writer's event comes after the two that committed
    # while it was open, though its id is the smallest.
    assert [e.verb for e in chain] == ["test.quick", "test.quick", "test.slow"]
    assert [e.seq for e in chain] == [1, 2, 3]
    assert chain[2].prev_hash == chain[1].hash and chain[1].prev_hash == chain[0].hash
    assert verify_chain() is None
    assert AuditChainHead.objects.get(pk=1).seq == 3


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_write_leaves_no_event_and_no_hole_in_the_chain(personas):
    record_event(actor=personas.alice, verb="test.kept")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            record_event(actor=personas.alice, verb="test.rolled_back")
            raise RuntimeError("the state change failed")
    record_event(actor=personas.alice, verb="test.kept")
    assert list(AuditEvent.objects.order_by("seq").values_list("verb", "seq")) == [
        ("test.kept", 1), ("test.kept", 2)]
    assert verify_chain() is None


@pytest.mark.django_db(transaction=True)
def test_an_event_the_on_commit_sealer_missed_is_shown_waiting_then_sealed_by_beat(
        personas, client, settings):
    """Another sealer holds the head (it took its snapshot before this commit): the commit's own
    pass skips, the event waits, and the page, /metrics and verify_audit say so until the
    periodic task seals it."""
    record_event(actor=personas.alice, verb="test.before")
    sealer = OpenTransaction(
        lambda: AuditChainHead.objects.select_for_update().filter(pk=1).first())
    sealer.start()
    try:
        assert sealer.ready.wait(timeout=30) and sealer.error is None, sealer.error
        event = with_lock_timeout(lambda: record_event(actor=personas.bob, verb="test.missed"))
        event.refresh_from_db()
        assert not event.sealed
        assert lag().unsealed == 1
    finally:
        sealer.finish.set()
        sealer.done.wait(timeout=30)
    metrics = client.get("/metrics").content.decode()
    assert "stagegate_audit_events_unsealed 1.0" in metrics
    assert "stagegate_audit_sealing_lag_seconds " in metrics
    client.force_login(personas.bob)  # a reviewer reads the audit log
    page = client.get("/audit/").content.decode()
    assert "Sealed through #1; 1 newer event not chained yet" in page and "sealing…" in page
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert "intact: 1 events; 1 event(s) not sealed yet" in out.getvalue()

    assert seal_task() == 1
    event.refresh_from_db()
    assert event.seq == 2 and verify_chain() is None
    assert "stagegate_audit_events_unsealed 0.0" in client.get("/metrics").content.decode()
    assert "Every event is sealed" in client.get("/audit/").content.decode()
    assert seal_pending() == 0, "sealing twice seals nothing twice"
