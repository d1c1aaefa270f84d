"""The audit hash covers every stored column of an event: editing any one of them (the actor's
id included) is detected, and verify_audit names the event and the column. Migration 0003
re-seals chains written under the old format, and refuses to re-seal one that was broken."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.models import AuditEvent
from audit.sealing import seal_pending
from audit.services import record_event, verify_chain

# One SQL edit per column of audit_auditevent. A column added to the model without an edit here
# fails test_every_column_has_a_tampering_test, so no column can be left uncovered.
EDITS = {
    "id": ("id = id + 1000", "id"),
    "seq": ("seq = seq + 1000", "seq"),
    "created_at": ("created_at = created_at + interval '1 second'", "created_at"),
    "actor": ("actor_id = %(mallory)s", "actor_id"),
    "actor_username": ("actor_username = 'mallory'", "actor_username"),
    "verb": ("verb = 'release.rewritten'", "verb"),
    "object_type": ("object_type = 'registry.checkpoint'", "object_type"),
    "object_id": ("object_id = '999'", "object_id"),
    "object_repr": ("object_repr = 'something else'", "object_repr"),
    "data_json": ("data_json = '{\"n\":99}'", "data_json"),
    "prev_hash": ("prev_hash = repeat('f', 64)", "prev_hash"),
    "hash": ("hash = repeat('e', 64)", "hash"),
    "seal": ("seal = '{}'", "seal"),
}


@pytest.fixture
def chain(personas):
    written = [record_event(actor=personas.alice, verb="release.approved",
                            data={"n": i, "big": 1e15}) for i in range(5)]
    seal_pending()
    return [AuditEvent.objects.get(pk=event.pk) for event in written]


def test_every_column_has_a_tampering_test():
    assert {f.name for f in AuditEvent._meta.concrete_fields} == set(EDITS)


def test_the_hash_covers_every_column_but_the_chain_fields():
    assert {f.attname for f in AuditEvent.hashed_fields()} == {
        "id", "seq", "created_at", "actor_id", "actor_username", "verb", "object_type",
        "object_id", "object_repr", "data_json"}


@pytest.mark.django_db
@pytest.mark.parametrize("column", sorted(EDITS))
def test_editing_a_column_is_detected_and_named(chain, personas, column):
    target = chain[2]
    sql, named = EDITS[column]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE audit_auditevent SET {sql % {'mallory': personas.mallory.pk}} "
                       "WHERE id = %s", [target.pk])
    broken = verify_chain()
    assert broken is not None, f"editing {column} went unnoticed"
    assert broken.seq == target.seq
    assert named in broken.reason
    with pytest.raises(CommandError, match=f"event #{target.seq} "):
        call_command("verify_audit")


@pytest.mark.django_db
def test_rewriting_who_downloaded_is_detected(chain, personas):
    """The attack of the issue: past_downloaders reads actor_id, so pointing a download at
    someone else must break the chain."""
    event = record_event(actor=personas.erin, verb="weights.downloaded", data={"path": "x"})
    seal_pending()
    event.refresh_from_db()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_id = %s WHERE id = %s",
                       [personas.mallory.pk, event.pk])
    broken = verify_chain()
    assert broken is not None and "actor_id" in broken.reason and broken.seq == event.seq


@pytest.mark.django_db
def test_deleting_the_actor_keeps_the_chain_intact(chain, personas):
    personas.alice.delete()
    assert verify_chain() is None
    assert AuditEvent.objects.get(pk=chain[0].pk).actor_id is not None


# --- the re-sealing migration -------------------------------------------------------------------

def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def _v1_chain(apps, user, count=4, tamper_at=None):
    """Events as format 1 wrote them, with ids that skip (as rolled-back writes make them)."""
    migration = __import__("audit.migrations.0003_seal_every_column", fromlist=["_v1_hash"])
    from django.utils import timezone

    Event = apps.get_model("audit", "AuditEvent")
    Head = apps.get_model("audit", "AuditChainHead")
    prev = "0" * 64
    for seq in range(1, count + 1):
        event = Event(id=seq * 3, seq=seq, created_at=timezone.now(), actor_id=user.pk,
                      actor_username=user.username, verb="release.approved",
                      data_json=json.dumps({"n": seq}, separators=(",", ":")), prev_hash=prev)
        event.hash = migration._v1_hash(event)
        if seq == tamper_at:
            event.verb = "release.rewritten"
        event.save()
        prev = event.hash
    Head.objects.update_or_create(pk=1, defaults={"seq": count, "hash": prev})


LATEST = [("audit", "0005_append_by_sequence_seal_after")]
BEFORE = [("audit", "0002_chain_head")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_reseals_an_old_chain(personas):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent")
    try:
        old = _migrate(BEFORE)
        _v1_chain(old, personas.alice)
        _migrate(LATEST)
    finally:
        _migrate(LATEST)
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(e.pk == e.seq for e in events)
    assert events[-1].verb == "audit.resealed"
    assert events[-1].data["events"] == 4 and events[-1].data["from_format"] == 1
    assert verify_chain() is None
    # The new chain goes on from the re-seal, and now covers actor_id. New ids come from the
    # sequence, which migration 0005 started after the highest existing id.
    new = record_event(actor=personas.bob, verb="release.approved")
    new.refresh_from_db()
    assert new.pk > events[-1].pk and new.seq == 6 and new.prev_hash == events[-1].hash
    assert verify_chain() is None
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_id = %s WHERE seq = 2",
                       [personas.mallory.pk])
    assert "actor_id" in verify_chain().reason


@pytest.mark.django_db(transaction=True)
def test_the_migration_refuses_to_reseal_a_broken_chain(personas):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent")
    try:
        old = _migrate(BEFORE)
        _v1_chain(old, personas.alice, tamper_at=2)
        with pytest.raises(RuntimeError, match="broken at event #2"):
            _migrate(LATEST)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent")
            cursor.execute("UPDATE audit_auditchainhead SET seq = 0, hash = repeat('0', 64)")
        _migrate(LATEST)
