"""The audit log is hash-chained: any edit makes verify_audit fail and name the row."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditEvent
from audit.sealing import seal_pending
from audit.services import record_event, verify_chain


@pytest.fixture
def events(alice):
    """Five events, sealed (the `db` fixture's transaction never commits, so the on-commit
    sealer is called as the beat task would)."""
    written = [record_event(actor=alice, verb="test.happened", data={"n": i, "big": 1e15})
               for i in range(5)]
    assert not any(event.sealed for event in written)
    assert seal_pending() == 5
    return [AuditEvent.objects.get(pk=event.pk) for event in written]


@pytest.mark.django_db
def test_an_untouched_chain_verifies(events):
    assert verify_chain() is None
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert "intact" in out.getvalue()


@pytest.mark.django_db
def test_each_event_links_to_the_previous(events):
    for previous, event in zip(events, events[1:]):
        assert event.prev_hash == previous.hash
        assert event.seq == previous.seq + 1


@pytest.mark.django_db
@pytest.mark.parametrize("column,value", [
    ("verb", "'test.rewritten'"),
    ("data_json", "'{\"n\":99}'"),
    ("actor_username", "'mallory'"),
    ("created_at", "created_at + interval '1 second'"),
])
def test_editing_any_row_breaks_the_chain_at_that_row(events, column, value):
    target = events[2]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE audit_auditevent SET {column} = {value} WHERE id = %s", [target.pk])
    broken = verify_chain()
    assert broken is not None and broken.seq == target.seq and broken.event_id == target.pk
    with pytest.raises(CommandError, match=f"event #{target.seq} \\(id {target.pk}"):
        call_command("verify_audit")


@pytest.mark.django_db
def test_deleting_a_row_is_detected(events):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    broken = verify_chain()
    assert broken is not None and broken.seq == events[1].seq


@pytest.mark.django_db
def test_deleting_the_last_row_is_detected(events):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[-1].pk])
    assert verify_chain() is not None


@pytest.mark.django_db
def test_events_cannot_be_changed_through_the_orm(events):
    event = AuditEvent.objects.get(pk=events[0].pk)
    event.verb = "x"
    with pytest.raises(RuntimeError):
        event.save()
    with pytest.raises(RuntimeError):
        event.delete()
