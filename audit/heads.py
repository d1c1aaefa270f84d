"""Anchored audit heads: the chain's history made checkable from outside the database.

Every STAGEGATE_AUDIT_HEAD_EVERY_EVENTS events (and every STAGEGATE_AUDIT_HEAD_EVERY_MINUTES
minutes when events were written since), Stagegate signs the chain head with the lab's key
(signing/keys.py): its seq and hash, the time, the key id, and the hash of every event since the
previous head. The signed record goes to the configured sinks (a file, an S3 object, a
webhook), out of a database administrator's reach. `verify_audit --heads FILE` then checks the
database against them: an event changed, removed or reordered after its head was exported no
longer has the hash the head recorded for it, even when every later hash was recomputed.

An export is recorded by the head itself (its row and every sink's copy), not by an audit
event: an event about each anchor would itself wait for the next anchor, forever.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditChainHead, AuditEvent, AuditHead, canonical_json
from signing import keys

log = logging.getLogger(__name__)
HEAD_FORMAT = "stagegate-audit-head/1"


class SinkError(Exception):
    """A sink could not take the head (worth another try)."""


def due(head: AuditChainHead) -> bool:
    every = settings.STAGEGATE_AUDIT_HEAD_EVERY_EVENTS
    return every > 0 and head.seq - head.anchored_seq >= every


def signed_bytes(payload: dict) -> bytes:
    return canonical_json(payload).encode()


def export_head() -> AuditHead | None:
    """Sign the current chain head and send it to the sinks; None when nothing was written
    since the last head. Safe to run twice and concurrently (the chain head row's lock)."""
    if settings.STAGEGATE_AUDIT_HEAD_EVERY_EVENTS <= 0 and \
            settings.STAGEGATE_AUDIT_HEAD_EVERY_MINUTES <= 0:
        return None
    key = keys.current_key()
    with transaction.atomic():
        chain, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        if chain.seq <= chain.anchored_seq:
            return None
        event_hashes = list(AuditEvent.objects.filter(seq__gt=chain.anchored_seq,
                                                      seq__lte=chain.seq)
                            .order_by("seq").values_list("hash", flat=True))
        now = timezone.now()
        payload = {"format": HEAD_FORMAT, "seq": chain.seq, "hash": chain.hash,
                   "time": now.isoformat(timespec="seconds"), "key_id": key.key_id,
                   "from_seq": chain.anchored_seq + 1, "event_hashes": event_hashes}
        signature = key.private_key.sign(signed_bytes(payload), ec.ECDSA(hashes.SHA256()))
        record = {**payload, "signature": base64.b64encode(signature).decode()}
        head = AuditHead.objects.create(seq=chain.seq, hash=chain.hash, created_at=now,
                                        key_id=key.key_id, record=canonical_json(record))
        chain.anchored_seq = chain.seq
        chain.save(update_fields=["anchored_seq"])
    transaction.on_commit(lambda: deliver_head(head_id=head.pk))
    return head


def deliver_head(*, head_id: int, sinks: list[str] | None = None) -> dict:
    """Send one head to each sink (default: all configured); a sink that fails is retried by
    the audit.deliver_head task. Returns sink -> 'ok' or the error."""
    head = AuditHead.objects.get(pk=head_id)
    outcome = {}
    for sink in sinks if sinks is not None else settings.STAGEGATE_AUDIT_HEAD_SINKS:
        try:
            _send(sink, head)
            outcome[sink] = "ok"
        except SinkError as exc:
            outcome[sink] = str(exc)[:500]
            log.warning("audit head #%s not delivered to %s: %s", head.seq, sink, exc)
            from audit.tasks import deliver_head_task

            deliver_head_task.apply_async((head.pk, sink), countdown=30)
    AuditHead.objects.filter(pk=head.pk).update(deliveries={**head.deliveries, **outcome})
    return outcome


def _send(sink: str, head: AuditHead) -> None:
    url = urlparse(sink)
    line = head.record + "\n"
    try:
        if url.scheme == "file":
            path = Path(url.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if head.record in _existing_lines(path):
                return  # delivered already (a retry)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line)
        elif url.scheme == "s3":
            import boto3

            client = boto3.client("s3", **settings.STAGEGATE_AUDIT_HEAD_S3)
            prefix = url.path.strip("/")
            for name in (f"{head.seq:012d}.json", "latest.json"):
                client.put_object(Bucket=url.netloc, Key=f"{prefix}/{name}" if prefix else name,
                                  Body=line.encode(), ContentType="application/json")
        elif url.scheme in ("http", "https"):
            import requests

            response = requests.post(sink, data=head.record.encode(), timeout=10,
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "Stagegate-AuditHeads/1"})
            if response.status_code >= 300:
                raise SinkError(f"HTTP {response.status_code}")
        else:
            raise SinkError(f"unknown sink {sink!r}: use file://, s3:// or https://")
    except SinkError:
        raise
    except Exception as exc:  # network, storage and filesystem errors are all worth a retry
        raise SinkError(f"{type(exc).__name__}: {exc}") from exc


def _existing_lines(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}


# --- verification ------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadsProblem:
    seq: int
    reason: str


def read_heads(text: str, *, source: str) -> list[dict]:
    """Heads from a file: JSON lines (the file sink), one object, or an array of them."""
    text = text.strip()
    if not text:
        raise ValueError(f"{source} holds no heads")
    try:
        parsed = json.loads(text)
        heads = parsed if isinstance(parsed, list) else [parsed]
    except ValueError:
        try:
            heads = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ValueError(f"{source} is neither JSON nor JSON lines ({exc}): give the file "
                             "sink's heads.jsonl or the S3 objects' contents") from None
    for index, head in enumerate(heads, 1):
        if not isinstance(head, dict) or head.get("format") != HEAD_FORMAT:
            raise ValueError(f"entry {index} of {source} is not a Stagegate audit head "
                             f"(format {HEAD_FORMAT})")
    return sorted(heads, key=lambda h: h.get("seq", 0))


def check_head_signature(head: dict, public_keys) -> str | None:
    """None when the head is signed by one of the keys, else why not."""
    payload = {k: v for k, v in head.items() if k != "signature"}
    try:
        signature = base64.b64decode(head["signature"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        return f"head #{head.get('seq')} has no readable signature"
    for public in public_keys:
        if public.key_id != head.get("key_id"):
            continue
        try:
            public.key.verify(signature, signed_bytes(payload), ec.ECDSA(hashes.SHA256()))
            return None
        except InvalidSignature:
            return (f"head #{head.get('seq')} does not verify with key "
                    f"{public.key_id[:16]}…: the head file was altered")
    return (f"head #{head.get('seq')} names key {str(head.get('key_id'))[:16]}…, which is not "
            "one of the lab's keys (give it with --public-key)")


def verify_heads(heads: list[dict], public_keys) -> HeadsProblem | None:
    """The first event (lowest seq) that differs from what an exported head recorded."""
    for head in heads:
        problem = check_head_signature(head, public_keys)
        if problem:
            return HeadsProblem(int(head.get("seq") or 0), problem)
    first: HeadsProblem | None = None
    for head in heads:
        seq, hashes_ = int(head["seq"]), list(head.get("event_hashes") or [])
        start = int(head.get("from_seq") or seq - len(hashes_) + 1)
        expected = dict(zip(range(start, start + len(hashes_)), hashes_))
        expected[seq] = head["hash"]
        stored = dict(AuditEvent.objects.filter(seq__in=list(expected))
                      .values_list("seq", "hash"))
        for number in sorted(expected):
            if number not in stored:
                problem = HeadsProblem(number, f"event #{number} is missing, but head #{seq} "
                                               f"(signed {head['time']}) recorded it: it was "
                                               "removed after the head was exported")
            elif stored[number] != expected[number]:
                problem = HeadsProblem(number, f"event #{number} is not the event head #{seq} "
                                               f"(signed {head['time']}) recorded: it was changed, "
                                               "replaced or reordered after the head was exported")
            else:
                continue
            if first is None or problem.seq < first.seq:
                first = problem
            break
    return first
