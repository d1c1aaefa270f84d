"""Every write to the registry: families, checkpoint submission and upload sessions."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Iterable

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import CASCADE
from django.utils import timezone

from accounts.roles import RESEARCHERS, has_role, in_group
from audit.services import deny, record_event, records_refusals
from models import blobstore
from models.blobstore import StagedFile
from models.census import CensusInput, take_census
from models.provenance import read_submitted_signature, record_submitted_signature
from models.errors import LabelTaken, SessionNotFound, SubmissionError, TooLarge
from models.formats import FormatError
from models.formats.layout import (FileKind, check_unique, classify, normalize_path,
                                   sniff_pickle_carrier)
from models.manifest import manifest_digest
from models.signals import send_ready_after_commit
from models.models import (
    FAMILY_NAME_RE,
    LABEL_RE,
    Blob,
    Checkpoint,
    CheckpointFile,
    ModelFamily,
    UploadSession,
    UploadSessionFile,
)

log = logging.getLogger(__name__)


# --- permissions --------------------------------------------------------------------------------

def can_submit_to(user, family: ModelFamily | None) -> bool:
    """Researchers submit; into an existing family only its owners (or a superuser) may."""
    if not has_role(user, RESEARCHERS):
        return False
    if family is None or user.is_superuser:
        return True
    return in_group(user, family.owners_id)


def namespace_refusal(user, org: str) -> str | None:
    """Why `user` may not create a family in `org`, or None when they may: a researcher may in
    their own namespace (their user name), in an organisation they belong to (they own one of
    its families), and in a new organisation, which they then own; never in another user's."""
    if not has_role(user, RESEARCHERS):
        return f"{user} may not create families: that needs the researchers role"
    if user.is_superuser or org.lower() == user.get_username().lower():
        return None
    owners = list(ModelFamily.objects.filter(org__iexact=org).values_list("owners_id", flat=True))
    if owners:
        if any(in_group(user, group_id) for group_id in owners):
            return None
        return (f"{user} may not create families in {org}: only members of the organisation "
                "(owners of one of its families) may")
    from django.contrib.auth import get_user_model

    if get_user_model().objects.filter(username__iexact=org).exists():
        return f"{org} is another user's namespace; use {user} or an organisation"
    return None


# --- families -----------------------------------------------------------------------------------

# Top-level paths of the site: an org with one of these names would shadow its Hub URLs.
RESERVED_ORGS = {"api", "admin", "static", "accounts", "families", "checkpoints", "releases",
                 "reviews", "audit", "evals", "models", "login", "logout", "submit"}


def parse_family_name(family_name: str) -> tuple[str, str]:
    match = FAMILY_NAME_RE.match(family_name or "")
    if not match or "--" in family_name or ".." in family_name:
        raise SubmissionError(
            f"family {family_name!r} is not of the form org/name (letters, digits, '.', '_' "
            "and '-', starting with a letter or digit), e.g. eleuther/pythia-70m")
    if match["org"].lower() in RESERVED_ORGS:
        raise SubmissionError(f"{match['org']!r} is reserved for the site's own pages; choose "
                              "another organisation name")
    return match["org"], match["name"]


def check_label(label: str) -> str:
    if not LABEL_RE.match(label or ""):
        raise SubmissionError(
            f"label {label!r} is not valid: use letters, digits, '.', '_' and '-' "
            "(up to 128, starting with a letter or digit), e.g. step143000 or v1")
    if len(label) == 40 and all(c in "0123456789abcdef" for c in label):
        raise SubmissionError(f"label {label!r} looks like a commit hash; choose a readable name")
    return label


def _get_or_create_family(*, actor, org: str, name: str) -> tuple[ModelFamily, bool]:
    family = ModelFamily.objects.select_for_update().filter(org=org, name=name).first()
    if family is not None:
        return family, False
    try:
        with transaction.atomic():
            owners, _ = Group.objects.get_or_create(name=f"owners:{org}/{name}")
            family = ModelFamily.objects.create(org=org, name=name, owners=owners,
                                                created_by=actor)
    except IntegrityError:
        # A concurrent submission created it first: this one goes into it only if the actor
        # may submit there, which was checked when the family did not exist yet.
        family = ModelFamily.objects.select_for_update().get(org=org, name=name)
        if not can_submit_to(actor, family):
            raise deny(actor=actor, action="checkpoint.submit", obj=family,
                       reason=f"{family.repo_id} was just created by someone else; only its "
                              "owners may submit to it: choose another family name") from None
        return family, False
    actor.groups.add(owners)
    record_event(actor=actor, verb="family.created", obj=family, data={"repo_id": family.repo_id})
    return family, True


# --- submission ---------------------------------------------------------------------------------

@records_refusals
def submit_checkpoint(*, actor, family_name: str, label: str, files: list[StagedFile],
                      converted_from: Checkpoint | None = None) -> Checkpoint:
    """Register `files` (already hashed and staged) as a new checkpoint of `family_name`.

    Guard: the actor may submit to the family; the family name, label, paths and every file the
    registry knows how to read are valid; the label is new in the family. Side effects: blobs are
    stored (deduplicated), one `checkpoint.submitted` audit event (and `family.created` for a new
    family). On any failure nothing is left behind: no rows, no blob that this call created, no
    temporary file. A checkpoint with pickle-based files waits for the scanner ("scan pending").
    """
    created_blobs: list[str] = []
    try:
        org, name = check_submission_target(actor=actor, family_name=family_name, label=label)
        prepared = _prepare(files)
        census = take_census([CensusInput(path=f.path, kind=kind, size=f.size, open=f.open)
                              for f, kind in prepared])
        digest = manifest_digest((f.path, f.sha256, f.size) for f, _ in prepared)
        pickles = census.census["scan_pending"]
        status = Checkpoint.Status.SCANNING if pickles else Checkpoint.Status.READY
        # The bytes are stored (one multi-GB S3 upload at scale) before the transaction: what
        # it writes (a new family, the label's unique row) makes others wait until it commits,
        # so nothing slow runs inside it.
        created_blobs += store_staged(f for f, _ in prepared)
        submitted_signature = read_submitted_signature(f for f, _ in prepared)

        with transaction.atomic():
            family, _ = _get_or_create_family(actor=actor, org=org, name=name)
            try:
                with transaction.atomic():
                    checkpoint = Checkpoint.objects.create(
                        family=family, label=label, manifest_digest=digest, status=status,
                        census=census.census, submitted_by=actor, converted_from=converted_from)
            except IntegrityError:
                raise LabelTaken(f"{family_name} already has a checkpoint labelled {label!r}; "
                                 "choose another label") from None
            for staged, kind in prepared:
                blob, _ = Blob.objects.get_or_create(sha256=staged.sha256,
                                                     defaults={"size": staged.size})
                CheckpointFile.objects.create(
                    checkpoint=checkpoint, path=staged.path, blob=blob, size=staged.size,
                    kind=kind, header=census.file_headers.get(staged.path, {}))
            signature = record_submitted_signature(checkpoint, submitted_signature)
            record_event(actor=actor, verb="checkpoint.submitted", obj=checkpoint, data={
                "family": family.repo_id, "label": label, "manifest_digest": digest,
                "parameters": census.census["parameters"]["total"], "files": len(prepared),
                "bytes": census.census["bytes"]["total"], "status": status,
                "signature": signature["status"]})
            if status == Checkpoint.Status.SCANNING:
                transaction.on_commit(lambda: _queue_scan(checkpoint.pk))
            else:
                send_ready_after_commit(checkpoint.pk)
        return checkpoint
    except FormatError as exc:
        _forget(created_blobs)
        raise SubmissionError(str(exc)) from None
    except blobstore.FileTooLarge as exc:
        _forget(created_blobs)
        raise TooLarge(str(exc)) from None
    except BaseException:
        _forget(created_blobs)
        raise
    finally:
        for staged in files:
            staged.discard()


def _queue_scan(checkpoint_id: int) -> None:
    from models.tasks import scan_checkpoint

    scan_checkpoint.delay(checkpoint_id)


def _prepare(files: list[StagedFile]) -> list[tuple[StagedFile, str]]:
    if not files:
        raise SubmissionError("empty upload: no files were received; choose a checkpoint "
                              "file or a model folder")
    if len(files) > settings.STAGEGATE_MAX_FILES:
        raise SubmissionError(f"{len(files)} files is more than the limit of "
                              f"{settings.STAGEGATE_MAX_FILES} (STAGEGATE_MAX_FILES)")
    originals = [staged.path for staged in files]
    for staged in files:
        staged.path = normalize_path(staged.path)
        if staged.size > settings.STAGEGATE_MAX_FILE_SIZE:
            raise TooLarge(f"{staged.path}: {blobstore.format_size(staged.size)} is larger than "
                           f"the {blobstore.format_size(settings.STAGEGATE_MAX_FILE_SIZE)} "
                           "limit (STAGEGATE_MAX_FILE_SIZE)")
    check_unique([f.path for f in files], originals)
    total = sum(f.size for f in files)
    if total > settings.STAGEGATE_MAX_CHECKPOINT_SIZE:
        raise TooLarge(f"the checkpoint's files add up to {blobstore.format_size(total)}, more "
                       f"than the {blobstore.format_size(settings.STAGEGATE_MAX_CHECKPOINT_SIZE)} "
                       "limit (STAGEGATE_MAX_CHECKPOINT_SIZE)")
    if all(f.size == 0 for f in files):
        raise SubmissionError("empty upload: every file received is 0 bytes")
    return [(f, _kind_of(f)) for f in files]


def _kind_of(staged: StagedFile) -> str:
    """The kind its name says; a file that does not say it is weights but starts like a pickle
    (or an archive that may hold one) is scanned like one rather than trusted by its name."""
    kind = classify(staged.path)
    if kind in (FileKind.OTHER, FileKind.TOKENIZER, FileKind.MODEL_CARD) and staged.size >= 2:
        with staged.open() as stream:
            if sniff_pickle_carrier(stream.read(512)):
                return FileKind.PICKLE
    return kind


def store_staged(files: Iterable[StagedFile]) -> list[str]:
    """Store the bytes of every staged file that still has them locally; returns the blobs this
    call created (for `_forget` when what follows fails). Call it before any transaction that
    writes an audit event, never inside one. On a failure part-way, the blobs it created are
    deleted again and the error propagates."""
    created: list[str] = []
    try:
        for staged in files:
            if staged.local_path is not None and blobstore.store(staged):
                created.append(staged.sha256)
    except BaseException:
        _forget(created)
        raise
    return created


def _forget(shas: Iterable[str]) -> None:
    """Delete blobs this call wrote, unless a committed row refers to them after all."""
    for sha in shas:
        if not Blob.objects.filter(sha256=sha).exists():
            blobstore.delete_blob(sha)


# --- upload sessions (one streaming PUT per file) -----------------------------------------------

@records_refusals
def check_submission_target(*, actor, family_name: str, label: str) -> tuple[str, str]:
    """What submit_checkpoint will refuse for who and where, asked before any bytes are
    staged: the names, the permission and the label. Returns (org, name)."""
    org, name = parse_family_name(family_name)
    check_label(label)
    family = ModelFamily.objects.filter(org=org, name=name).first()
    if family is None and has_role(actor, RESEARCHERS) and namespace_refusal(actor, org):
        raise deny(actor=actor, action="family.create", reason=namespace_refusal(actor, org))
    if not can_submit_to(actor, family):
        reason = (f"{actor} may not submit checkpoints to {family_name}: "
                  + ("only the family's owners may" if family and has_role(actor, RESEARCHERS)
                     else "submitting needs the researchers role"))
        raise deny(actor=actor, action="checkpoint.submit", obj=family, reason=reason)
    if family and Checkpoint.objects.filter(family=family, label=label).exists():
        raise LabelTaken(f"{family_name} already has a checkpoint labelled {label!r}; "
                         "choose another label")
    return org, name


def check_upload_file(*, actor, session_id: int, path: str) -> str:
    """Before a PUT's body is read: the session is the caller's, open and unexpired, and the
    path is one a checkpoint may hold. Returns the normalised path."""
    try:
        normalized = normalize_path(path)
    except FormatError as exc:
        raise SubmissionError(str(exc)) from None
    session = UploadSession.objects.filter(pk=session_id).first()
    _check_session(actor, session_id, session)
    return normalized


@records_refusals
def create_upload_session(*, actor, family_name: str, label: str) -> UploadSession:
    """Open a session; validates names and permission now so a client learns early."""
    org, name = check_submission_target(actor=actor, family_name=family_name, label=label)
    hours = settings.STAGEGATE_UPLOAD_SESSION_HOURS
    with transaction.atomic():
        session = UploadSession.objects.create(
            family_name=f"{org}/{name}", label=label, created_by=actor,
            expires_at=timezone.now() + timedelta(hours=hours))
        record_event(actor=actor, verb="upload.opened", obj=session,
                     data={"family": session.family_name, "label": label})
    return session


def _open_session(actor, session_id) -> UploadSession:
    session = UploadSession.objects.select_for_update().filter(pk=session_id).first()
    _check_session(actor, session_id, session)
    return session


def _check_session(actor, session_id, session: UploadSession | None) -> None:
    # Someone else's session answers exactly like one that does not exist.
    if session is None or session.created_by_id != actor.pk:
        raise SessionNotFound(f"no open upload session {session_id} of yours") from None
    if session.status != UploadSession.Status.OPEN:
        raise SubmissionError(f"upload session {session_id} is {session.status}")
    if session.expires_at < timezone.now():
        raise SubmissionError(f"upload session {session_id} expired; open a new one")


def put_upload_file(*, actor, session_id: int, path: str, staged: StagedFile,
                    expected_sha256: str | None = None) -> UploadSessionFile:
    """Add (or replace) one file of an open session; its bytes become a blob at once."""
    created = False
    try:
        staged.path = normalize_path(path)
        if expected_sha256 and expected_sha256.lower() != staged.sha256:
            raise SubmissionError(f"{staged.path}: received bytes hash to {staged.sha256}, "
                                  f"not the {expected_sha256} you sent; upload it again")
        _check_session(actor, session_id, UploadSession.objects.filter(pk=session_id).first())
        # Stored before the session's row is locked: a slow upload to the blob store holds
        # no lock (checked again under the lock; a blob nobody took is deleted below).
        created = bool(store_staged([staged]))
        with transaction.atomic():
            session = _open_session(actor, session_id)
            blob, _ = Blob.objects.get_or_create(sha256=staged.sha256, defaults={"size": staged.size})
            previous = session.files.filter(path=staged.path).first()
            if previous:
                previous.delete()
            entry = UploadSessionFile.objects.create(session=session, path=staged.path, blob=blob,
                                                     size=staged.size)
            if previous:
                _drop_unreferenced_blob_rows([previous.blob_id])
        return entry
    except FormatError as exc:
        raise SubmissionError(str(exc)) from None
    except BaseException:
        if created:
            _forget([staged.sha256])
        raise
    finally:
        staged.discard()


@records_refusals
def commit_upload_session(*, actor, session_id: int) -> Checkpoint:
    """Turn an open session into a checkpoint (all of submit_checkpoint's guards apply)."""
    with transaction.atomic():
        session = _open_session(actor, session_id)
        staged = [StagedFile(path=f.path, sha256=f.blob_id, size=f.size)
                  for f in session.files.all()]
        checkpoint = submit_checkpoint(actor=actor, family_name=session.family_name,
                                       label=session.label, files=staged)
        session.status = UploadSession.Status.COMMITTED
        session.checkpoint = checkpoint
        session.save(update_fields=["status", "checkpoint"])
        session.files.all().delete()
    return checkpoint


def abort_upload_session(*, actor, session_id: int) -> None:
    """Abort a session and delete the blobs only it referred to. Idempotent."""
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().filter(
            pk=session_id, created_by=actor).first()
        if session is None or session.status != UploadSession.Status.OPEN:
            return
        _discard_session(session)
        record_event(actor=actor, verb="upload.aborted", obj=session, data={})


def purge_expired_upload_sessions(*, now=None) -> int:
    now = now or timezone.now()
    count = 0
    for session_id in UploadSession.objects.filter(status=UploadSession.Status.OPEN,
                                                   expires_at__lt=now).values_list("pk", flat=True):
        with transaction.atomic():
            session = UploadSession.objects.select_for_update().get(pk=session_id)
            if session.status == UploadSession.Status.OPEN:
                _discard_session(session)
                record_event(actor=None, verb="upload.expired", obj=session, data={})
                count += 1
    return count


def _discard_session(session: UploadSession) -> None:
    shas = list(session.files.values_list("blob_id", flat=True))
    session.files.all().delete()
    session.status = UploadSession.Status.ABORTED
    session.save(update_fields=["status"])
    _drop_unreferenced_blob_rows(shas)


def _blob_referenced(sha: str) -> bool:
    """Whether a row that protects its blob points at this one: checkpoint files, upload
    sessions, eval samples, and any foreign key to Blob added later (hidden ones included), so
    this never needs to know the other apps. Cascading ones (scan reports) are caches."""
    return any(rel.related_model._base_manager.filter(**{rel.field.name: sha}).exists()
               for rel in Blob._meta.get_fields(include_hidden=True)
               if rel.auto_created and not rel.concrete and rel.is_relation
               and rel.on_delete is not CASCADE)


def _drop_unreferenced_blob_rows(shas: list[str]) -> None:
    """Delete Blob rows (and, after commit, their bytes) that nothing refers to any more."""
    for sha in set(shas):
        if not _blob_referenced(sha):
            Blob.objects.filter(sha256=sha).delete()
            transaction.on_commit(lambda sha=sha: _delete_if_still_unreferenced(sha))


def _delete_if_still_unreferenced(sha: str) -> None:
    if not Blob.objects.filter(sha256=sha).exists():
        blobstore.delete_blob(sha)
