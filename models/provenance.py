"""Verification at submission: a checkpoint that arrives with a `model.sig` (an OpenSSF model
signature) is checked against its family's trusted signer keys, from the digests the registry
already computed (no byte is read again but the signature's own).

The outcome is part of the census (`census["signature"]`): `{"status": "valid", "signer",
"key_id"}`, `{"status": "invalid", "reason"}` or `{"status": "unsigned"}`. A policy may require
a valid one for a stage (`require_signature: true`, docs/policy.md).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import deny, record_event, records_refusals
from models import blobstore
from models.models import Checkpoint, ModelFamily, TrustedSigner
from signing import keys, oms

MAX_SIGNATURE_BYTES = 16 * 1024 * 1024
UNSIGNED = {"status": "unsigned"}


def read_submitted_signature(staged_files) -> bytes | None:
    """The bytes of a submission's model.sig (read before the submission's transaction: nothing
    slow may run while it holds the audit chain's lock), or None."""
    for staged in staged_files:
        if staged.path == oms.SIGNATURE_PATH:
            with staged.open() as stream:
                return stream.read(MAX_SIGNATURE_BYTES + 1)
    return None


def _stored_signature(checkpoint: Checkpoint) -> bytes | None:
    signature = checkpoint.files.filter(path=oms.SIGNATURE_PATH).first()
    if signature is None:
        return None
    with blobstore.open_blob(signature.blob_id) as stream:
        return stream.read(MAX_SIGNATURE_BYTES + 1)


def check_signature(checkpoint: Checkpoint, data: bytes | None) -> dict:
    """The census entry for the checkpoint's submitted signature (`data`: its bytes)."""
    files = {f.path: f.blob_id for f in checkpoint.files.all()}
    if data is None:
        return dict(UNSIGNED)
    if len(data) > MAX_SIGNATURE_BYTES:
        return {"status": "invalid", "reason": f"model.sig is larger than "
                                               f"{MAX_SIGNATURE_BYTES // 2**20} MB"}
    signers = {s.key_id: s for s in checkpoint.family.trusted_signers.all()}
    trusted = []
    for signer in signers.values():
        trusted += keys.load_public_pems(signer.public_pem.encode(), source=signer.name)
    if not trusted:
        return {"status": "invalid",
                "reason": f"{checkpoint.family} trusts no signer yet: a release manager adds "
                          "one (manage.py add_trusted_signer)"}
    outcome = oms.check_files(data, files, trusted)
    if outcome.status != "valid":
        return {"status": "invalid", "reason": outcome.reason,
                **({"key_id": outcome.key_id} if outcome.key_id else {})}
    return {"status": "valid", "signer": signers[outcome.key_id].name, "key_id": outcome.key_id,
            "files": len(outcome.files)}


def record_submitted_signature(checkpoint: Checkpoint, data: bytes | None) -> dict:
    """Check the signature and keep the outcome in the census (in the caller's transaction;
    database reads only)."""
    outcome = check_signature(checkpoint, data)
    census = {**(checkpoint.census or {}), "signature": outcome}
    Checkpoint.objects.filter(pk=checkpoint.pk).update(census=census)
    checkpoint.census = census
    return outcome


def may_manage_signers(actor) -> bool:
    from accounts.roles import RELEASE_MANAGERS, has_role

    return bool(getattr(actor, "is_superuser", False)) or has_role(actor, RELEASE_MANAGERS)


@records_refusals
def add_trusted_signer(*, actor, family: ModelFamily, name: str,
                       public_pem: str) -> TrustedSigner:
    """Trust a key's model signatures on `family`'s checkpoints.

    Guard: a release manager or superuser (the family's submitters cannot vouch for their own
    bytes); an EC P-256 public key in PEM; a name. Checkpoints of the family that carry a
    signature are checked again. One `family.signer_trusted` event. Idempotent per key."""
    if not may_manage_signers(actor):
        raise deny(actor=actor, action="family.trust_signer", obj=family,
                   reason="only a release manager may choose whose signatures a family trusts")
    name = (name or "").strip()
    if not name:
        raise ValidationError("name the signer (who holds the key, e.g. training-ci)")
    try:
        [public] = keys.load_public_pems(public_pem.encode(), source="the public key")
    except keys.SigningKeyMissing as exc:
        raise ValidationError(str(exc)) from None
    except ValueError:
        raise ValidationError("give exactly one PEM public key") from None
    signatures = _signatures_of(family)
    with transaction.atomic():
        signer, created = TrustedSigner.objects.get_or_create(
            family=family, key_id=public.key_id,
            defaults={"name": name[:200], "public_pem": public.pem, "added_by": actor})
        if not created:
            return signer
        record_event(actor=actor, verb="family.signer_trusted", obj=family,
                     data={"name": signer.name, "key_id": signer.key_id})
        _recheck(family, signatures)
    return signer


@records_refusals
def remove_trusted_signer(*, actor, signer: TrustedSigner) -> None:
    """Stop trusting a key; checkpoints it signed are checked again (now invalid)."""
    if not may_manage_signers(actor):
        raise deny(actor=actor, action="family.distrust_signer", obj=signer.family,
                   reason="only a release manager may choose whose signatures a family trusts")
    family = signer.family
    signatures = _signatures_of(family)
    with transaction.atomic():
        record_event(actor=actor, verb="family.signer_removed", obj=family,
                     data={"name": signer.name, "key_id": signer.key_id})
        signer.delete()
        _recheck(family, signatures)


def _signatures_of(family: ModelFamily) -> dict[int, bytes | None]:
    """The submitted signatures of the family's checkpoints, read before any transaction."""
    return {checkpoint.pk: _stored_signature(checkpoint) for checkpoint in
            Checkpoint.objects.filter(family=family, files__path=oms.SIGNATURE_PATH).distinct()}


def _recheck(family: ModelFamily, signatures: dict[int, bytes | None]) -> None:
    for checkpoint in Checkpoint.objects.filter(pk__in=list(signatures)):
        before = (checkpoint.census or {}).get("signature")
        after = record_submitted_signature(checkpoint, signatures[checkpoint.pk])
        if before != after:
            record_event(actor=None, verb="checkpoint.signature_checked", obj=checkpoint,
                         data={"signature": after})
