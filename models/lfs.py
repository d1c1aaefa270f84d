"""The Git LFS batch API the Hub client uses when Xet is off (`HF_HUB_DISABLE_XET=1`).

The batch answer gives each object a signed upload URL (the client sends no Authorization header
to it): one PUT (basic), or, above STAGEGATE_LFS_PART_SIZE, one PUT per part and a completion
POST (multipart). The bytes stream once into a temporary file while they are hashed (parts are
written at their offsets in one file), and become a blob only when they hash to the object's
oid. The uploader then holds a receipt (HubUpload) that lets them commit the object.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken
from models import blobstore
from models.blobstore import StagedFile
from models.errors import IncompleteUpload, SubmissionError
from models.hub_commit import _visible_blob
from models.hub_services import writable_family
from models.models import Blob, HubUpload, ModelFamily

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SIGNING_SALT = "stagegate.hub.lfs"
READ_SIZE = 1024 * 1024
log = logging.getLogger("stagegate.lfs")


class BadUploadUrl(SubmissionError):
    status = 403


def batch(*, actor, token: ApiToken | None, repo_id: str, body: dict, base_url: str) -> dict:
    """Answer a batch request: objects the actor may already commit need no upload; the others
    get signed URLs."""
    family = writable_family(actor=actor, repo_id=repo_id, action="lfs.upload")
    if body.get("operation") != "upload":
        raise SubmissionError("only the upload operation is served here; download files "
                              "through /{repo}/resolve/{revision}/{path}")
    objects = body.get("objects")
    if not isinstance(objects, list) or not objects:
        raise SubmissionError("the batch request needs a non-empty `objects` list")
    transfers = body.get("transfers") or ["basic"]
    multipart = "multipart" in transfers
    part_size = settings.STAGEGATE_LFS_PART_SIZE
    answer = []
    for item in objects:
        oid, size = (item or {}).get("oid"), (item or {}).get("size")
        if not isinstance(oid, str) or not SHA256_RE.match(oid) or not isinstance(size, int) \
                or size < 0:
            raise SubmissionError(f"object {item!r}: needs a sha256 `oid` and a byte `size`")
        if size > settings.STAGEGATE_MAX_FILE_SIZE:
            answer.append({"oid": oid, "size": size, "error": {
                "code": 422, "message": f"{blobstore.format_size(size)} is larger than the "
                f"{blobstore.format_size(settings.STAGEGATE_MAX_FILE_SIZE)} limit "
                "(STAGEGATE_MAX_FILE_SIZE)"}})
            continue
        if _already_committable(actor, oid, size):
            answer.append({"oid": oid, "size": size})
            continue
        signed = signing.dumps({"u": actor.pk, "f": family.pk, "o": oid, "s": size,
                                "t": token.pk if token else None}, salt=SIGNING_SALT)
        href = f"{base_url}/api/lfs/objects/{signed}"
        upload: dict = {"href": href}
        if multipart and size > part_size:
            parts = math.ceil(size / part_size)
            upload["header"] = {"chunk_size": str(part_size),
                                **{str(n): f"{href}/parts/{n}" for n in range(1, parts + 1)}}
        answer.append({"oid": oid, "size": size, "authenticated": True, "actions": {
            "upload": upload,
            "verify": {"href": f"{base_url}/{family.repo_id}.git/info/lfs/objects/verify"}}})
    return {"transfer": "multipart" if multipart else "basic", "objects": answer,
            "hash_algo": "sha256"}


def _already_committable(actor, oid: str, size: int) -> bool:
    if HubUpload.objects.filter(user=actor, sha256=oid, size=size, blob__isnull=False,
                                expires_at__gt=timezone.now()).exists():
        return True
    blob = _visible_blob(actor, oid)
    return blob is not None and blob.size == size


def _signed(signed: str) -> tuple[object, ModelFamily, str, int]:
    """The (user, family, oid, size) a signed upload URL is for; refused when it has expired,
    its token was revoked, or its user may no longer write to the family."""
    max_age = settings.STAGEGATE_UPLOAD_SESSION_HOURS * 3600
    try:
        claim = signing.loads(signed, salt=SIGNING_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise BadUploadUrl("this upload URL has expired; run the upload again") from None
    except signing.BadSignature:
        raise BadUploadUrl("this upload URL is not one Stagegate signed") from None
    if claim.get("t") is not None and not ApiToken.objects.filter(
            pk=claim["t"], revoked_at__isnull=True).exists():
        raise BadUploadUrl("the token this upload was authorised with has been revoked")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=claim["u"], is_active=True).first()
    family = ModelFamily.objects.filter(pk=claim["f"]).first()
    if user is None or family is None:
        raise BadUploadUrl("this upload URL's user or repo no longer exists")
    family = writable_family(actor=user, repo_id=family.repo_id, action="lfs.upload")
    return user, family, claim["o"], claim["s"]


def _keep(user, family: ModelFamily, staged: StagedFile, oid: str, size: int) -> None:
    """Make verified bytes a blob and give the uploader a receipt for them."""
    if staged.sha256 != oid or staged.size != size:
        staged.discard()
        raise SubmissionError(f"the bytes received hash to {staged.sha256} ({staged.size} "
                              f"bytes), not the {oid} ({size} bytes) announced; upload again")
    created = False
    try:
        created = blobstore.store(staged)  # before the transaction: a slow upload holds no lock
        with transaction.atomic():
            blob, _ = Blob.objects.get_or_create(sha256=oid, defaults={"size": size})
            HubUpload.objects.create(
                user=user, family=family, sha256=oid, size=size, via=HubUpload.Via.LFS,
                blob=blob, expires_at=timezone.now() + timedelta(
                    hours=settings.STAGEGATE_UPLOAD_SESSION_HOURS))
    except BaseException:
        if created and not Blob.objects.filter(sha256=oid).exists():
            blobstore.delete_blob(oid)
        raise
    finally:
        staged.discard()


def _body_chunks(stream, length: int):
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(READ_SIZE, remaining))
        if not chunk:
            raise IncompleteUpload(f"the body ended {remaining} bytes early; upload again")
        remaining -= len(chunk)
        yield chunk


def receive_object(*, signed: str, stream, length: int) -> None:
    """A basic-transfer PUT: the whole object as the body."""
    user, family, oid, size = _signed(signed)
    if length != size:
        raise SubmissionError(f"the body has {length} bytes, the object {size}")
    try:
        staged = blobstore.stage_chunks(oid, _body_chunks(stream, length))
    except OSError as exc:
        raise IncompleteUpload(f"the upload was interrupted ({exc}); upload again") from None
    log.info("lfs object %s received: %d bytes", oid, length)
    _keep(user, family, staged, oid, size)


def _part_file(signed: str) -> Path:
    name = hashlib.sha256(signed.encode()).hexdigest()[:40]
    return blobstore.temp_dir() / f"lfs-multipart-{name}"


def receive_part(*, signed: str, number: int, stream, length: int) -> str:
    """One part of a multipart transfer, written at its offset; returns its ETag."""
    _user, _family, _oid, size = _signed(signed)
    part_size = settings.STAGEGATE_LFS_PART_SIZE
    parts = math.ceil(size / part_size)
    if not 1 <= number <= parts:
        raise SubmissionError(f"part {number} does not exist; this object has {parts}")
    expected = min(part_size, size - (number - 1) * part_size)
    if length != expected:
        raise SubmissionError(f"part {number} must be {expected} bytes, the body has {length}")
    # Opened without truncating: other parts, from other requests, fill the rest of the file.
    handle = os.fdopen(os.open(_part_file(signed), os.O_WRONLY | os.O_CREAT, 0o600), "wb")
    writer = blobstore.BulkWriter(handle)
    try:
        with handle:
            handle.seek((number - 1) * part_size)
            for chunk in _body_chunks(stream, length):
                writer.put(chunk)
            etag = writer.finish()
    except BaseException as exc:
        writer.abort()
        if isinstance(exc, OSError):
            raise IncompleteUpload(f"part {number} was interrupted ({exc}); upload it again") \
                from None
        raise
    log.info("lfs part %d of %s received: %d bytes", number, _oid, length)
    return etag


def complete_multipart(*, signed: str, body: dict) -> None:
    """The completion POST: every part arrived, the assembled file hashes to the oid."""
    user, family, oid, size = _signed(signed)
    path = _part_file(signed)
    parts = math.ceil(size / settings.STAGEGATE_LFS_PART_SIZE)
    try:
        listed = body.get("parts") if isinstance(body, dict) else None
        if body.get("oid") != oid or not isinstance(listed, list) or len(listed) != parts:
            raise SubmissionError(f"the completion must name oid {oid} and its {parts} parts")
        if not path.exists() or path.stat().st_size != size:
            raise IncompleteUpload("not every part arrived; upload the missing parts again")
        sha256, _ = blobstore.hash_file(path)
        staged = StagedFile(path=oid, sha256=sha256, size=size, local_path=path)
        _keep(user, family, staged, oid, size)
    finally:
        path.unlink(missing_ok=True)


def verify(*, actor, repo_id: str, body: dict) -> None:
    writable_family(actor=actor, repo_id=repo_id, action="lfs.verify")
    oid, size = body.get("oid"), body.get("size")
    if not _already_committable(actor, oid or "", size if isinstance(size, int) else -1):
        raise SubmissionError(f"object {oid} ({size} bytes) was not uploaded; upload it again")


def purge_stale_parts(*, older_than: timedelta) -> int:
    """Delete multipart files nobody completed (their URLs have expired)."""
    cutoff = timezone.now().timestamp() - older_than.total_seconds()
    count = 0
    for path in blobstore.temp_dir().glob("lfs-multipart-*"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            count += 1
    return count
