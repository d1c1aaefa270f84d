"""Scanning pickle-based files before anything loads them (issue: model-file security).

A checkpoint with pickle-carrying files waits in `scanning` until the static scanner (the
models.scanner package) has a verdict on each. All safe: `ready`, with the tensors the scanner
read from the pickles added to the census. Anything else: `quarantined`, and nothing may load,
evaluate, review or publish it — unless a safety reviewer accepts the risk of an `unknown`
verdict, file by file, with a written justification. An `unsafe` verdict can never be accepted.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.roles import SAFETY, has_role
from audit.services import deny, record_event, records_refusals
from models import blobstore
from models.census import merge_pickle_tensors
from models.errors import SubmissionError
from models.models import Checkpoint, CheckpointFile, ScanReport
from models.signals import send_ready_after_commit

MIN_JUSTIFICATION = 20


class ScanError(SubmissionError):
    status = 409


@lru_cache(maxsize=1)
def scanner_version() -> str:
    """A hash of the scanner's source: a new scanner rescans instead of trusting old verdicts."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent / "scanner"
    for path in sorted(root.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def report_for(file: CheckpointFile) -> ScanReport:
    """The scan report of this file's bytes, scanning them (streaming, via the Storage API)
    only when no report exists for this scanner version."""
    from models.scanner import scan_stream

    version = scanner_version()
    existing = ScanReport.objects.filter(blob_id=file.blob_id, scanner_version=version).first()
    if existing:
        return existing
    with blobstore.open_blob(file.blob_id) as stream:
        result = scan_stream(stream, file.path)
    data = result.to_json()
    try:
        with transaction.atomic():
            return ScanReport.objects.create(
                blob_id=file.blob_id, scanner_version=version, verdict=data["verdict"],
                format=data["format"], findings=data["findings"], globals=data["globals"],
                tensors=data["tensors"], bytes_scanned=data["bytes_scanned"])
    except IntegrityError:  # another worker scanned the same bytes at the same time
        return ScanReport.objects.get(blob_id=file.blob_id, scanner_version=version)


def scan_checkpoint(*, checkpoint_id: int) -> Checkpoint:
    """Scan a checkpoint's pickle-carrying files and settle its status.

    Guard: the checkpoint is `scanning` (otherwise this returns it unchanged, so a task that
    runs twice does nothing the second time). Scanning happens outside the transaction (it
    reads whole files); the status change and its `checkpoint.scanned` audit event are one
    transaction under a row lock.
    """
    checkpoint = Checkpoint.objects.get(pk=checkpoint_id)
    if checkpoint.status != Checkpoint.Status.SCANNING:
        return checkpoint
    files = [f for f in checkpoint.files.all() if f.needs_scan]
    reports = {f.path: report_for(f) for f in files}
    with transaction.atomic():
        checkpoint = Checkpoint.objects.select_for_update().get(pk=checkpoint_id)
        if checkpoint.status != Checkpoint.Status.SCANNING:
            return checkpoint
        _settle(checkpoint, files, reports)
        if checkpoint.status == Checkpoint.Status.READY:
            send_ready_after_commit(checkpoint.pk)
        record_event(actor=None, verb="checkpoint.scanned", obj=checkpoint, data={
            "status": checkpoint.status, "scanner_version": scanner_version(),
            "verdicts": {path: r.verdict for path, r in sorted(reports.items())}})
    return checkpoint


def _settle(checkpoint: Checkpoint, files: list[CheckpointFile],
            reports: dict[str, ScanReport]) -> None:
    """ready when every file is safe or risk-accepted; quarantined otherwise."""
    cleared = all(reports[f.path].verdict == ScanReport.Verdict.SAFE
                  or (reports[f.path].verdict == ScanReport.Verdict.UNKNOWN and f.risk_accepted_at)
                  for f in files)
    if cleared:
        tensors = {f.path: (reports[f.path].tensors if reports[f.path].verdict == "safe" else None)
                   for f in files}
        checkpoint.census = merge_pickle_tensors(checkpoint.census, tensors)
        checkpoint.status = Checkpoint.Status.READY
    else:
        checkpoint.status = Checkpoint.Status.QUARANTINED
    checkpoint.save(update_fields=["status", "census"])


@records_refusals
def accept_scan_risk(*, actor, file: CheckpointFile, justification: str) -> CheckpointFile:
    """A safety reviewer accepts the risk of one file the scanner could not prove safe.

    Guard: the actor has the safety role and did not submit the checkpoint; the file's verdict is
    `unknown` (never `unsafe`); the justification says why in at least 20 characters. Side
    effects: `scan.risk_accepted` audit event; the checkpoint becomes `ready` once no file is
    left uncleared. Idempotent: accepting an accepted file changes nothing.
    """
    justification = (justification or "").strip()
    checkpoint = file.checkpoint
    if not has_role(actor, SAFETY):
        raise deny(actor=actor, action="scan.accept_risk", obj=checkpoint,
                   reason="accepting scan risk needs the safety role")
    if checkpoint.submitted_by_id == actor.pk:
        raise deny(actor=actor, action="scan.accept_risk", obj=checkpoint,
                   reason="you submitted this checkpoint; another safety reviewer must decide")
    report = report_for(file) if file.needs_scan else None
    if report is None:
        raise ScanError(f"{file.path} is not a pickle-based file; there is no scan risk to accept")
    if report.verdict == ScanReport.Verdict.UNSAFE:
        raise ScanError(f"{file.path} is unsafe: a known-dangerous global is imported. Unsafe "
                        "files can never be accepted; ask for a safetensors export instead")
    if report.verdict == ScanReport.Verdict.SAFE:
        raise ScanError(f"{file.path} was proven safe; there is no risk to accept")
    if len(justification) < MIN_JUSTIFICATION:
        raise ScanError(f"write a justification of at least {MIN_JUSTIFICATION} characters: "
                        "why is loading this file acceptable?")
    # Every scan this may need happens now, before the transaction: it locks the file's row
    # until it commits, and a scan reads whole files.
    others = {f.pk: report_for(f) for f in checkpoint.files.all() if f.needs_scan}
    with transaction.atomic():
        file = CheckpointFile.objects.select_for_update().get(pk=file.pk)
        if file.risk_accepted_at:
            return file
        checkpoint = Checkpoint.objects.select_for_update().get(pk=file.checkpoint_id)
        file.risk_accepted_by = actor
        file.risk_accepted_at = timezone.now()
        file.risk_justification = justification
        file.save(update_fields=["risk_accepted_by", "risk_accepted_at", "risk_justification"])
        record_event(actor=actor, verb="scan.risk_accepted", obj=checkpoint, data={
            "path": file.path, "sha256": file.blob_id, "verdict": report.verdict,
            "justification": justification})
        if checkpoint.status == Checkpoint.Status.QUARANTINED:
            files = [f for f in checkpoint.files.all() if f.needs_scan]
            _settle(checkpoint, files, {f.path: others[f.pk] for f in files})
            if checkpoint.status == Checkpoint.Status.READY:
                send_ready_after_commit(checkpoint.pk)
                record_event(actor=actor, verb="checkpoint.released_from_quarantine",
                             obj=checkpoint, data={"status": checkpoint.status})
    return file


def scan_reports(checkpoint: Checkpoint) -> dict[str, ScanReport]:
    """The current scanner version's reports for a checkpoint's scanned files, by path."""
    files = [f for f in checkpoint.files.all() if f.needs_scan]
    reports = {r.blob_id: r for r in ScanReport.objects.filter(
        blob_id__in=[f.blob_id for f in files], scanner_version=scanner_version())}
    return {f.path: reports[f.blob_id] for f in files if f.blob_id in reports}


