"""The append-only, hash-chained audit log.

Each event's `hash` is sha256(previous event's hash + canonical JSON of the event), so editing,
inserting or deleting any row breaks every hash after it, and `verify_audit` names the first
broken link. This app imports no other Stagegate app; every app writes here through
`audit.services.record_event`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Columns the hash does not take as payload: `hash` is the seal itself, `prev_hash` is chained in
# front of the payload, and `seal` is derived from the payload (verified by recomputing it).
# Every other concrete column, including any added later, is covered without a change here.
UNHASHED = ("hash", "prev_hash", "seal")
PAYLOAD_FORMAT = 2


def _column_value(event: "AuditEvent", field) -> Any:
    value = getattr(event, field.attname)
    if field.name == "created_at" and value is not None:
        return value.isoformat(timespec="microseconds")
    return value


def column_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


class AuditEvent(models.Model):
    # The id is the order writers appended in (a database sequence, no lock); seq is the
    # position the sealer gave the event in the chain (audit/sealing.py). Both are hashed.
    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField(unique=True, null=True, blank=True,
                                 help_text="Position in the hash chain, from 1; empty until "
                                           "the event is sealed.")
    created_at = models.DateTimeField(db_index=True)
    # No database constraint and no SET NULL: the actor's id is part of the sealed event, so
    # deleting the user must not rewrite it (actor_username keeps the name readable).
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    actor_username = models.CharField(max_length=150, blank=True,
                                      help_text="Kept as text so the chain survives user deletion.")
    verb = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    # Stored as the exact canonical text that was hashed: a JSON column would let the database
    # re-encode numbers (PostgreSQL turns 1e15 into 1000000000000000) and break verification.
    data_json = models.TextField(default="{}")
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # A short digest of each hashed column, so that verification can say which column of an
    # altered event was changed (the row's hash alone only says that one was).
    seal = models.TextField(default="{}")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["object_type", "object_id", "seq"]),
                   models.Index(fields=["id"], condition=models.Q(seq__isnull=True),
                                name="audit_event_unsealed")]

    def __str__(self) -> str:
        return f"#{self.seq or '?'} {self.verb} {self.object_repr}"

    @property
    def sealed(self) -> bool:
        return self.seq is not None

    @property
    def data(self) -> dict:
        return json.loads(self.data_json)

    @property
    def object_key(self) -> str:
        return f"{self.object_type}:{self.object_id}" if self.object_type else ""

    @classmethod
    def hashed_fields(cls) -> list:
        return [f for f in cls._meta.concrete_fields if f.name not in UNHASHED]

    def payload(self) -> dict:
        return {f.attname: _column_value(self, f) for f in self.hashed_fields()}

    def canonical_payload(self) -> str:
        return canonical_json({"format": PAYLOAD_FORMAT, **self.payload()})

    def compute_hash(self) -> str:
        return hashlib.sha256((self.prev_hash + self.canonical_payload()).encode()).hexdigest()

    def compute_seal(self) -> str:
        return canonical_json({name: column_digest(value) for name, value in self.payload().items()})

    def altered_columns(self) -> list[str]:
        """The hashed columns whose values no longer match the event's seal."""
        try:
            sealed = json.loads(self.seal)
        except ValueError:
            sealed = {}
        return [name for name, value in self.payload().items()
                if sealed.get(name) != column_digest(value)]

    def chain_after(self, *, seq: int, prev_hash: str) -> None:
        """Give the (stored) event its place in the chain and seal it; the sealer writes it."""
        self.seq = seq
        self.prev_hash = prev_hash
        self.seal = self.compute_seal()
        self.hash = self.compute_hash()

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RuntimeError("audit events are append-only")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")


class AuditChainHead(models.Model):
    """One row, locked by the sealer (never by a writer), so that events are chained one at a
    time."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)
    # The last seq a signed head was exported for (audit/heads.py), read under the same lock.
    anchored_seq = models.BigIntegerField(default=0)


class AuditHead(models.Model):
    """A signed chain head, as exported to the sinks (audit/heads.py). The copy here is for the
    operator's pages only: verification reads the exported copy, which the database cannot
    rewrite."""

    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    record = models.TextField(help_text="The exported JSON: the signed payload and signature.")
    deliveries = models.JSONField(default=dict, help_text="sink -> 'ok' or the last error.")

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"head #{self.seq} {self.hash[:12]}"
