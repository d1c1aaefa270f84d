"""Safetensors conversion of PyTorch checkpoints the scanner proved safe.

The conversion is a new checkpoint of the same family (label `<label>-safetensors`) whose
`converted_from` points at the original, so both manifest digests stay on record and the
converted one can be released instead: nothing downstream ever unpickles. The loading itself
happens in a separate, resource-limited process (models.torchfiles), on a worker, never in the
web process; every converted tensor is checked equal to the original before anything is stored.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from audit.services import deny, record_event, records_refusals
from config import untrusted
from models import blobstore, scanning
from models.errors import SubmissionError
from models.formats.layout import FileKind
from models.localfiles import collect_files
from models.materialize import materialized
from models.models import Checkpoint, ScanReport
from models.services import can_submit_to, submit_checkpoint


class ConversionRefused(SubmissionError):
    status = 409


def conversion_label(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.label}-safetensors"[:128]


def existing_conversion(checkpoint: Checkpoint) -> Checkpoint | None:
    return checkpoint.conversions.order_by("created_at").first()


def convertible_refusal(checkpoint: Checkpoint, files=None, reports=None) -> str | None:
    """Why this checkpoint cannot be converted, or None: it has PyTorch files, it is ready, and
    the scanner proved every one of them safe (accepted risk is not enough to load it)."""
    pickles = [f for f in (files if files is not None else checkpoint.files.all()) if f.needs_scan]
    if not pickles:
        return f"{checkpoint} has no PyTorch files: it is safetensors already"
    if checkpoint.status != Checkpoint.Status.READY:
        return (f"{checkpoint} is {checkpoint.get_status_display()}: only a checkpoint whose scan "
                "proved it safe can be converted")
    reports = reports if reports is not None else scanning.scan_reports(checkpoint)
    unsafe = [f.path for f in pickles
              if f.path not in reports or reports[f.path].verdict != ScanReport.Verdict.SAFE]
    if unsafe:
        return (f"{', '.join(unsafe)} not proven safe by the scanner (accepted risk is not "
                "enough to load it for conversion)")
    return None


def check_convertible(checkpoint: Checkpoint) -> None:
    reason = convertible_refusal(checkpoint)
    if reason:
        raise ConversionRefused(reason)


@records_refusals
def request_conversion(*, actor, checkpoint: Checkpoint) -> Checkpoint | None:
    """Queue the conversion. Guard: the actor owns the family; every PyTorch file scanned
    safe. Idempotent: returns the conversion when one exists (and queues nothing). One
    `checkpoint.conversion_requested` event."""
    if not can_submit_to(actor, checkpoint.family):
        raise deny(actor=actor, action="checkpoint.convert", obj=checkpoint,
                   reason="only the family's owners may convert its checkpoints")
    done = existing_conversion(checkpoint)
    if done:
        return done
    check_convertible(checkpoint)
    with transaction.atomic():
        record_event(actor=actor, verb="checkpoint.conversion_requested", obj=checkpoint,
                     data={"manifest_digest": checkpoint.manifest_digest})
        transaction.on_commit(lambda: _queue(checkpoint.pk, actor.pk))
    return None


def _queue(checkpoint_id: int, actor_id: int) -> None:
    from models.tasks import convert_checkpoint

    convert_checkpoint.delay(checkpoint_id, actor_id)


def _convert_layout(folder: Path, out: Path, files, limits: dict) -> tuple[dict, set[str]]:
    """Convert every PyTorch file into `out`, each next to where it was: a sharded set through
    its index (shards and index replaced), any other pickle on its own (`model.safetensors` when
    it is alone in its folder). Returns the converter's outcome and the paths it replaced; two
    pickles that would become the same file are refused rather than one silently lost."""
    from models.torchfiles import convert_to_safetensors

    outcome: dict = {"inputs": [], "outputs": []}
    replaced: set[str] = set()
    for index in (f for f in files if f.kind == FileKind.PICKLE_INDEX):
        parent = PurePosixPath(index.path).parent
        try:
            shards = set(untrusted.loads((folder / index.path).read_bytes(),
                                         what=index.path)["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConversionRefused(f"{index.path}: not a readable pickle index ({exc})") from None
        result = convert_to_safetensors(folder / index.path, out / parent, **limits)
        replaced |= {index.path} | {(parent / shard).as_posix() for shard in shards}
        outcome["inputs"] += result.get("inputs", [])
        outcome["outputs"] += result.get("outputs", [])
    alone = [f for f in files if f.needs_scan and f.path not in replaced]
    per_folder: dict[PurePosixPath, int] = {}
    for f in alone:
        per_folder[PurePosixPath(f.path).parent] = per_folder.get(PurePosixPath(f.path).parent, 0) + 1
    for f in alone:
        source = PurePosixPath(f.path)
        name = ("model.safetensors" if per_folder[source.parent] == 1
                else source.with_suffix(".safetensors").name)
        target = out / source.parent / name
        if target.exists():
            raise ConversionRefused(f"{f.path} would become {(source.parent / name).as_posix()}, "
                                    "which another file of this checkpoint already becomes")
        target.parent.mkdir(parents=True, exist_ok=True)
        result = convert_to_safetensors(folder / f.path, target, **limits)
        replaced.add(f.path)
        outcome["inputs"] += result.get("inputs", [])
        outcome["outputs"] += result.get("outputs", [])
    return outcome, replaced


def convert_checkpoint(*, checkpoint_id: int, actor_id: int) -> Checkpoint:
    """Run the conversion (worker side) and register the result as a new checkpoint.
    Safe to run twice: an existing conversion is returned."""
    checkpoint = Checkpoint.objects.select_related("family").get(pk=checkpoint_id)
    actor = get_user_model().objects.get(pk=actor_id)
    done = existing_conversion(checkpoint)
    if done:
        return done
    check_convertible(checkpoint)
    work = Path(tempfile.mkdtemp(prefix="convert-", dir=blobstore.temp_dir()))
    try:
        out = work / "out"
        out.mkdir()
        with materialized(checkpoint) as folder:
            files = list(checkpoint.files.all())
            limits = {"timeout_s": settings.STAGEGATE_CONVERT_TIMEOUT_SECONDS,
                      "memory_limit_bytes": max(settings.STAGEGATE_CONVERT_MEMORY_LIMIT,
                                                3 * max(f.size for f in files if f.needs_scan)
                                                + 2 * 1024**3)}
            outcome, converted_paths = _convert_layout(folder, out, files, limits)
        # Config, tokenizer, card: carried over as the blobs they already are (nothing to copy
        # or hash again); the new safetensors files are staged from the output folder.
        carried = [blobstore.StagedFile(path=f.path, sha256=f.blob_id, size=f.size)
                   for f in files if f.path not in converted_paths]
        staged = carried + [blobstore.stage_local_file(rel, local)
                            for rel, local in collect_files(out)[0]]
        result = submit_checkpoint(actor=actor, family_name=checkpoint.family.repo_id,
                                   label=conversion_label(checkpoint), files=staged,
                                   converted_from=checkpoint)
        with transaction.atomic():
            record_event(actor=actor, verb="checkpoint.converted", obj=checkpoint, data={
                "from": checkpoint.manifest_digest, "to": result.manifest_digest,
                "converted_checkpoint": result.pk, "inputs": outcome.get("inputs", []),
                "outputs": outcome.get("outputs", [])})
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
