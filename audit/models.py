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


class AuditEvent(models.Model):
    seq = models.BigIntegerField(unique=True, help_text="Position in the hash chain, from 1.")
    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    actor_username = models.CharField(max_length=150, blank=True,
                                      help_text="Kept as text so the chain survives user deletion.")
    verb = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    # Stored as the exact canonical text that was hashed: a JSON column would let the database
    # re-encode numbers (PostgreSQL turns 1e15 into 1000000000000000) and break verification.
    data_json = models.TextField(default="{}")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id", "seq"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.verb} {self.object_repr}"

    @property
    def data(self) -> dict:
        return json.loads(self.data_json)

    @property
    def object_key(self) -> str:
        return f"{self.object_type}:{self.object_id}" if self.object_type else ""

    def canonical_payload(self) -> str:
        return canonical_json({
            "seq": self.seq,
            "created_at": self.created_at.isoformat(timespec="microseconds"),
            "actor": self.actor_username or None,
            "verb": self.verb,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "data": json.loads(self.data_json),
        })

    def compute_hash(self) -> str:
        return hashlib.sha256((self.prev_hash + self.canonical_payload()).encode()).hexdigest()

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")


class AuditChainHead(models.Model):
    """One row, locked by every writer, so that events are chained one at a time."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)
