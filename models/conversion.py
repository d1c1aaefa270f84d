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
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from audit.services import deny, record_event, records_refusals
from models import blobstore, scanning
from models.errors import SubmissionError
from models.formats.layout import FileKind
from models.localfiles import collect_files
from models.materialize import materialized
from models.models import Checkpoint, ScanReport
from models.services import can_submit_to, submit_checkpoint

PICKLE_INDEX_SUFFIXES = (".bin.index.json", ".pt.index.json", ".pth.index.json")


class ConversionRefused(SubmissionError):
    status = 409


def conversion_label(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.label}-safetensors"[:128]


def existing_conversion(checkpoint: Checkpoint) -> Checkpoint | None:
    return checkpoint.conversions.order_by("created_at").first()


def check_convertible(checkpoint: Checkpoint) -> None:
    pickles = [f for f in checkpoint.files.all() if f.needs_scan]
    if not pickles:
        raise ConversionRefused(f"{checkpoint} has no PyTorch files: it is safetensors already")
    if checkpoint.status != Checkpoint.Status.READY:
        raise ConversionRefused(f"{checkpoint} is {checkpoint.get_status_display()}: only a "
                                "checkpoint whose scan proved it safe can be converted")
    reports = scanning.scan_reports(checkpoint)
    unsafe = [f.path for f in pickles
              if f.path not in reports or reports[f.path].verdict != ScanReport.Verdict.SAFE]
    if unsafe:
        raise ConversionRefused(f"{', '.join(unsafe)} not proven safe by the scanner (accepted "
                                "risk is not enough to load it for conversion)")


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


def convert_checkpoint(*, checkpoint_id: int, actor_id: int) -> Checkpoint:
    """Run the conversion (worker side) and register the result as a new checkpoint.
    Safe to run twice: an existing conversion is returned."""
    from models.torchfiles import convert_to_safetensors

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
            weights_bytes = sum(f.size for f in files if f.needs_scan)
            limits = {"timeout_s": settings.STAGEGATE_CONVERT_TIMEOUT_SECONDS,
                      "memory_limit_bytes": max(settings.STAGEGATE_CONVERT_MEMORY_LIMIT,
                                                3 * weights_bytes + 2 * 1024**3)}
            index = next((f for f in files if f.path.endswith(PICKLE_INDEX_SUFFIXES)), None)
            pickles = [f for f in files if f.needs_scan]
            if index is not None:
                outcome = convert_to_safetensors(folder / index.path, out, **limits)
                converted = {p.path for p in pickles} | {index.path}
            else:
                outcome = {"inputs": [], "outputs": []}
                for f in pickles:
                    name = ("model.safetensors" if len(pickles) == 1
                            else Path(f.path).with_suffix(".safetensors").name)
                    result = convert_to_safetensors(folder / f.path, out / name, **limits)
                    outcome["inputs"] += result.get("inputs", [])
                    outcome["outputs"] += result.get("outputs", [])
                converted = {p.path for p in pickles}
            for f in files:  # config, tokenizer, card: carried over as they are
                if f.path not in converted and f.kind != FileKind.PICKLE_INDEX:
                    target = out / f.path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(folder / f.path, target)
        staged = [blobstore.stage_local_file(rel, local) for rel, local in collect_files(out)[0]]
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
