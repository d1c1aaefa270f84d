"""A Hub commit (`POST /api/models/{repo}/commit/main`) becomes a checkpoint of the family.

The commit's operations apply, in order, to the files of the family's head (write_head): files
it does not touch carry over, as in git. Every file it adds must be bytes the committer sent
(an LFS upload, a Xet file rebuilt here and checked against its sha256, or inline content) or
bytes already in a checkpoint the committer can see. The result goes through submit_checkpoint,
so census, scanning and evals are as for any submission, and a refusal leaves nothing behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.services import record_event, records_refusals
from models import blobstore, services
from models.blobstore import StagedFile
from models.errors import LabelTaken, SubmissionError
from models.formats import FormatError
from models.formats.layout import normalize_path
from models.hub_services import writable_family, write_head
from models.manifest import manifest_digest
from models.models import Blob, Checkpoint, CheckpointFile, HubUpload, ModelFamily
from models.selectors import checkpoints_visible_to
from models.xet.store import RebuildError, rebuild_file

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class CommitConflict(SubmissionError):
    status = 409


class EntryMissing(SubmissionError):
    status = 404


@dataclass
class Operation:
    kind: str                  # file | lfsFile | deletedFile | deletedFolder
    path: str
    content: bytes | None = None
    oid: str | None = None
    size: int | None = None


@dataclass
class CommitOutcome:
    checkpoint: Checkpoint
    created: bool


def _path(raw) -> str:
    try:
        return normalize_path(raw)
    except FormatError as exc:
        raise SubmissionError(str(exc)) from None


def _visible_blob(actor, sha256: str) -> Blob | None:
    if not CheckpointFile.objects.filter(blob_id=sha256,
                                         checkpoint__in=checkpoints_visible_to(actor)).exists():
        return None
    return Blob.objects.filter(sha256=sha256).first()


def _stage(actor, op: Operation) -> StagedFile:
    """The bytes an added file will have, staged; SubmissionError when they are not the
    committer's to commit or not what the commit says."""
    if op.kind == "file":
        return blobstore.stage_chunks(op.path, iter([op.content or b""]))
    oid = op.oid or ""
    if not SHA256_RE.match(oid):
        raise SubmissionError(f"{op.path}: lfsFile oid {oid!r} is not a sha256 (64 lowercase "
                              "hex digits)")
    if op.size is not None and (not isinstance(op.size, int) or op.size < 0):
        raise SubmissionError(f"{op.path}: size {op.size!r} is not a byte count")
    receipts = HubUpload.objects.filter(user=actor, sha256=oid, expires_at__gt=timezone.now())
    blob = _visible_blob(actor, oid)
    if blob is None:
        receipt = receipts.filter(blob__isnull=False).select_related("blob").first()
        blob = receipt.blob if receipt else None
    if blob is not None:
        if op.size is not None and op.size != blob.size:
            raise SubmissionError(f"{op.path}: the commit says {op.size} bytes, object {oid} has "
                                  f"{blob.size}")
        return StagedFile(path=op.path, sha256=oid, size=blob.size)
    receipt = receipts.filter(xet_file__isnull=False).select_related("xet_file").first()
    if receipt is None:
        raise SubmissionError(f"{op.path}: no uploaded file has sha256 {oid}; upload it (the "
                              "client does so before it commits) and commit again")
    size = receipt.xet_file.size if op.size is None else op.size
    try:
        return rebuild_file(xet_file=receipt.xet_file, path=op.path, sha256=oid, size=size)
    except RebuildError as exc:
        raise SubmissionError(str(exc)) from None


def _label(family: ModelFamily, summary: str, digest: str) -> str:
    """The commit summary when it is a valid label (`--commit-message step1000`), else a name
    derived from the digest."""
    summary = (summary or "").strip()
    try:
        label = services.check_label(summary)
    except SubmissionError:
        label = None
    if label:
        if Checkpoint.objects.filter(family=family, label=label).exists():
            raise LabelTaken(f"{family.repo_id} already has a checkpoint labelled {label!r}; "
                             "commit with another message")
        return label
    base = label = f"hub-{digest[:12]}"
    n = 1
    while Checkpoint.objects.filter(family=family, label=label).exists():
        n += 1
        label = f"{base}-{n}"
    return label


def _apply(files: dict[str, StagedFile], op: Operation, staged: StagedFile | None) -> None:
    if op.kind in ("file", "lfsFile"):
        files[op.path] = staged
    elif op.kind == "deletedFile":
        if files.pop(op.path, None) is None:
            raise EntryMissing(f"A file with this name doesn't exist: {op.path}")
    else:
        prefix = op.path.rstrip("/") + "/"
        inside = [p for p in files if p.startswith(prefix)]
        if not inside:
            raise EntryMissing(f"A folder with this name doesn't exist: {op.path}")
        for p in inside:
            del files[p]


@records_refusals
def commit_to_repo(*, actor, repo_id: str, summary: str, description: str = "",
                   parent_commit: str | None = None,
                   operations: list[Operation]) -> CommitOutcome:
    """Guard: the actor may write to the repo (writable_family); parent_commit, when given, is
    the head's commit; every added object is theirs to commit and hashes as it says. Side
    effects: a checkpoint through submit_checkpoint (its events and scans) and one `hub.commit`
    event. A commit whose files equal an existing checkpoint of the family makes none and
    answers with that one, so re-sending a commit is harmless."""
    family = writable_family(actor=actor, repo_id=repo_id, action="hub.commit")
    if parent_commit is not None and not COMMIT_RE.match(parent_commit):
        raise SubmissionError(f"parentCommit {parent_commit!r} is not a 40-hex commit")
    if not operations:
        raise SubmissionError("the commit has no operations")
    staged: list[StagedFile | None] = []
    try:
        for op in operations:
            if op.kind not in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                raise SubmissionError(f"unknown commit operation {op.kind!r}")
            op.path = _path(op.path.rstrip("/") if op.kind == "deletedFolder" else op.path)
            staged.append(_stage(actor, op) if op.kind in ("file", "lfsFile") else None)
        # New bytes (inline files, files rebuilt from Xet chunks) are stored before the
        # transaction, which locks the family's row until it commits.
        created = services.store_staged(item for item in staged if item is not None)
        try:
            return _commit(actor=actor, family=family, repo_id=repo_id, summary=summary,
                           description=description, parent_commit=parent_commit,
                           operations=operations, staged=staged)
        finally:
            services._forget(created)  # only what no committed row refers to
    finally:
        for item in staged:
            if item is not None:
                item.discard()


def _commit(*, actor, family: ModelFamily, repo_id: str, summary: str, description: str,
            parent_commit: str | None, operations: list[Operation],
            staged: list[StagedFile | None]) -> CommitOutcome:
    with transaction.atomic():
        family = ModelFamily.objects.select_for_update().get(pk=family.pk)
        head = write_head(family)
        if parent_commit and (head is None or head.commit != parent_commit):
            raise CommitConflict(f"{repo_id} moved on: main is at "
                                 f"{head.commit if head else 'no commit'}, not "
                                 f"{parent_commit}; pull and commit again")
        files = {f.path: StagedFile(path=f.path, sha256=f.blob_id, size=f.size)
                 for f in head.files.all()} if head else {}
        for op, item in zip(operations, staged):
            _apply(files, op, item)
        if not files:
            raise SubmissionError("the commit would leave the repo empty; a checkpoint "
                                  "needs at least one file")
        digest = manifest_digest((f.path, f.sha256, f.size) for f in files.values())
        existing = Checkpoint.objects.filter(family=family, manifest_digest=digest).first()
        if existing is not None:
            return CommitOutcome(checkpoint=existing, created=False)
        checkpoint = services.submit_checkpoint(
            actor=actor, family_name=family.repo_id, label=_label(family, summary, digest),
            files=list(files.values()))
        record_event(actor=actor, verb="hub.commit", obj=checkpoint, data={
            "repo": repo_id, "summary": summary[:500], "description": description[:2000],
            "parent": head.commit if head else None, "manifest_digest": digest,
            "added": sum(1 for op in operations if op.kind in ("file", "lfsFile")),
            "deleted": sum(1 for op in operations if op.kind.startswith("deleted"))})
    return CommitOutcome(checkpoint=checkpoint, created=True)
