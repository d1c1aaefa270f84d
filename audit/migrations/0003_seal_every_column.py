"""Re-seal the audit chain so that its hash covers every stored column (the actor's id and the
event's id included), and give each event a per-column seal.

Format 1 hashed seq, created_at, actor_username, verb, object_*, data; rewriting `actor_id`
went unnoticed. Before re-sealing, the whole chain is verified under format 1: a chain that was
already broken is refused (re-sealing it would launder the tampering), with the first broken
link named. The re-seal itself is the chain's last event, `audit.resealed`, which records the
format-1 head hash so anyone who kept it can tie the old chain to the new one.

The functions are frozen copies (a migration must not follow later changes to the model).
"""

import hashlib
import json

from django.conf import settings
from django.db import migrations, models
from django.db.models import F
from django.utils import timezone

GENESIS_HASH = "0" * 64
V2_COLUMNS = ["id", "seq", "created_at", "actor_id", "actor_username", "verb", "object_type",
              "object_id", "object_repr", "data_json"]


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _v1_hash(event) -> str:
    payload = _canonical({
        "seq": event.seq,
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor": event.actor_username or None,
        "verb": event.verb,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "data": json.loads(event.data_json),
    })
    return hashlib.sha256((event.prev_hash + payload).encode()).hexdigest()


def _v2_payload(event) -> dict:
    values = {}
    for name in V2_COLUMNS:
        value = getattr(event, name)
        if name == "created_at":
            value = value.isoformat(timespec="microseconds")
        values[name] = value
    return values


def _v2_seal(event) -> None:
    payload = _v2_payload(event)
    event.seal = _canonical({name: hashlib.sha256(_canonical(value).encode()).hexdigest()[:16]
                             for name, value in payload.items()})
    event.hash = hashlib.sha256(
        (event.prev_hash + _canonical({"format": 2, **payload})).encode()).hexdigest()


def _in_order(AuditEvent, batch_size=2000):
    last = 0
    while True:
        batch = list(AuditEvent.objects.filter(seq__gt=last).order_by("seq")[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1].seq


def reseal(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditChainHead = apps.get_model("audit", "AuditChainHead")
    prev, expected = GENESIS_HASH, 1
    for batch in _in_order(AuditEvent):
        for event in batch:
            if event.seq != expected or event.prev_hash != prev or _v1_hash(event) != event.hash:
                raise RuntimeError(
                    f"audit chain broken at event #{expected} before re-sealing; run "
                    "`manage.py verify_audit` on the previous release and restore the log from "
                    "a backup: re-sealing a broken chain would hide the tampering")
            prev, expected = event.hash, expected + 1
    old_head, count = prev, expected - 1
    head, _ = AuditChainHead.objects.get_or_create(pk=1)
    if head.seq != count:
        raise RuntimeError(f"audit chain ends at event #{count} but the head says {head.seq}: "
                           "an event was deleted; restore the log from a backup")

    # id == seq from now on (ids were assigned by a sequence that rolled-back writes skipped).
    AuditEvent.objects.update(id=-F("seq"))
    AuditEvent.objects.update(id=F("seq"))

    prev = GENESIS_HASH
    for batch in _in_order(AuditEvent):
        for event in batch:
            event.prev_hash = prev
            _v2_seal(event)
            prev = event.hash
        AuditEvent.objects.bulk_update(batch, ["prev_hash", "hash", "seal"])
    if count == 0:
        return  # a fresh install: nothing was re-sealed, nothing to record
    event = AuditEvent(id=count + 1, seq=count + 1, created_at=timezone.now(), actor_id=None,
                       actor_username="", verb="audit.resealed", object_type="", object_id="",
                       object_repr="",
                       data_json=_canonical({"events": count, "from_format": 1, "to_format": 2,
                                             "format_1_head": old_head}),
                       prev_hash=prev)
    _v2_seal(event)
    event.save(force_insert=True)
    head.seq, head.hash = event.seq, event.hash
    head.save(update_fields=["seq", "hash"])


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_chain_head"),
                    migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.AddField("auditevent", "seal", models.TextField(default="{}")),
        migrations.AlterField("auditevent", "id", models.BigIntegerField(primary_key=True,
                                                                         serialize=False)),
        migrations.AlterField("auditevent", "actor", models.ForeignKey(
            blank=True, db_constraint=False, null=True, on_delete=models.DO_NOTHING,
            related_name="+", to=settings.AUTH_USER_MODEL)),
        migrations.RunPython(reseal, migrations.RunPython.noop),
    ]
