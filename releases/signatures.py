"""Signing a published stage: the side effect of publish_release, after its commit.

For each StagePublication, once: the OpenSSF model signature (OMS v1.0) of its pinned
checkpoint's files, made from their sha256 digests (no byte is read again), and the release
attestation (releases/attestation.py) in a DSSE envelope; for a gated stage, also the model
signature a gated Hub target serves beside its rewritten README.md. All are blobs; the Hub tree
of the release's revisions lists them (model.sig, release.intoto.json) and /resolve serves them.

Idempotent: a publication signed already is returned as it is (the row is the claim, taken
under the publication's row lock; the blobs are made before it, outside any transaction). A failure after commit is retried by the
releases.sign_publication task; the publication's mirrors are queued once it is signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.services import record_event
from models import blobstore
from models.models import Blob
from releases.attestation import statement
from releases.models import PublicationSignature, StagePublication
from signing import dsse, keys, oms


@dataclass(frozen=True)
class SignedFile:
    """A file Stagegate adds to a published revision; shaped like a CheckpointFile for the Hub
    views (path, blob_id, size)."""

    path: str
    blob_id: str
    size: int
    kind: str = "stagegate_signature"


def _store(path: str, content: bytes) -> Blob:
    staged = blobstore.stage_chunks(path, [content])
    blobstore.store(staged)
    blob, _ = Blob.objects.get_or_create(sha256=staged.sha256, defaults={"size": staged.size})
    return blob


def sign_publication(*, publication_id: int) -> PublicationSignature | None:
    """Sign one published stage (system action). Guard: the publication exists and a signing
    key is configured (SigningKeyMissing otherwise, saying how to set one). One
    `release.signed` event. Idempotent: signed once."""
    key = keys.current_key()
    publication = (StagePublication.objects.select_related("release", "checkpoint__family")
                   .filter(pk=publication_id).first())
    if publication is None:
        return None
    existing = PublicationSignature.objects.filter(publication=publication).first()
    if existing is not None:
        return existing
    # Made and stored before the transaction (one S3 upload each at scale): it writes an audit
    # event, and nothing slow may run while it holds the audit chain's lock.
    files = [(f.path, f.blob_id) for f in publication.checkpoint.files.all()]
    repo = publication.checkpoint.family.repo_id
    model_sig = _store(oms.SIGNATURE_PATH, oms.sign_files(files, key=key, model_name=repo))
    attestation = _store(oms.ATTESTATION_PATH, dsse.sign_statement(
        statement(publication, key_id=key.key_id), key))
    mirror_sig = None
    if publication.stage == "gated":
        mirror_sig = _store(oms.SIGNATURE_PATH, oms.sign_files(
            files, key=key, model_name=repo, extra_ignored=["README.md"]))
    with transaction.atomic():
        StagePublication.objects.select_for_update().get(pk=publication.pk)
        existing = PublicationSignature.objects.filter(publication=publication).first()
        if existing is not None:  # another run signed it meanwhile: ours are not needed
            from models.services import _drop_unreferenced_blob_rows

            _drop_unreferenced_blob_rows([b.sha256 for b in (model_sig, attestation, mirror_sig)
                                          if b is not None])
            return existing
        signature = PublicationSignature.objects.create(
            publication=publication, key_id=key.key_id, model_signature=model_sig,
            attestation=attestation, mirror_signature=mirror_sig, signed_at=timezone.now())
        record_event(actor=None, verb="release.signed", obj=publication.release, data={
            "stage": publication.stage, "manifest_digest": publication.manifest_digest,
            "key_id": key.key_id, "model_sig_sha256": model_sig.sha256,
            "attestation_sha256": attestation.sha256,
            "mirror_sig_sha256": mirror_sig.sha256 if mirror_sig else None})
    return signature


def sign_after_publication(publication_id: int) -> None:
    """publish_release's on-commit side effect: sign now (it takes milliseconds: digests, not
    bytes), and leave anything that fails to the retrying task; then tell the mirrors."""
    from releases import signals
    from releases.tasks import sign_publication_task

    try:
        signature = sign_publication(publication_id=publication_id)
    except Exception:  # noqa: BLE001 - storage or key trouble: the task retries with back-off
        import logging

        logging.getLogger(__name__).exception("signing publication %s failed; retrying",
                                              publication_id)
        sign_publication_task.apply_async((publication_id,), countdown=10)
        return
    if signature is not None:
        publication = signature.publication
        signals.stage_published.send(sender=None, release_id=publication.release_id,
                                     stage=publication.stage)


def served_signature(release) -> PublicationSignature | None:
    """The signature a revision of `release` serves: its newest signed stage's."""
    return (PublicationSignature.objects.filter(publication__release=release)
            .select_related("publication", "model_signature", "attestation", "mirror_signature")
            .order_by("-publication__published_at", "-publication_id").first())


def signed_files(release, *, for_mirror: bool = False) -> list[SignedFile]:
    signature = served_signature(release)
    if signature is None:
        return []
    model_sig = signature.mirror_signature if for_mirror and signature.mirror_signature \
        else signature.model_signature
    return [SignedFile(oms.SIGNATURE_PATH, model_sig.sha256, model_sig.size),
            SignedFile(oms.ATTESTATION_PATH, signature.attestation.sha256,
                       signature.attestation.size)]
