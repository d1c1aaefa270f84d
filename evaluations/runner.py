"""Running one EvalRun on a worker: claim it, lay out the checkpoint's bytes, verify them, run
the eval, store the result. Called by the `evaluations.run_eval` task (tasks.py).

Work done once per worker: the bytes are copied and verified once per machine
(checkpoint_cache), and the model loaded once per process (worker_models), for every eval the
worker runs on that checkpoint.

Exactly once: a run is claimed under a row lock by bumping its `attempt`; only a run that is
queued, or running with a stale heartbeat (its worker died), can be claimed; the result is
written only if the attempt is still the current one. A re-delivered task for a run that a live
worker holds finds it "busy" and looks again later.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
import traceback
from contextlib import ExitStack
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from audit.services import record_event
from evaluations import catalogue, checkpoint_cache
from evaluations.checkpoint_cache import VerifiedCopy
from evaluations.library.builtin import integrity
from evaluations.library.context import EvalContext, EvalError, open_from_dir
from evaluations.library.model_cache import ModelCache
from evaluations.library.registry import run_eval
from evaluations.library.results import build_result_record
from models.materialize import copy_blob, materialized
from evaluations.models import Canary, EvalRun, ExtractionPrefix
from evaluations.planning import as_library_canary, as_library_prefix, load_pack_version
from evaluations.signals import send_finished_after_commit
from models import blobstore
from models.models import Blob, Checkpoint

log = logging.getLogger(__name__)
PROGRESS_EVERY = 0.5  # seconds between progress writes


class RunFailed(EvalError):
    pass


# The only errors worth another attempt: the database or the blob store was briefly out of
# reach. Everything else is a result (failed) or a bug (errored), and retrying either would
# only repeat it.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


class TransientRunError(Exception):
    """A run hit a transient error; its claim was released so that a retry can take it."""


def _attempts_used(run: EvalRun) -> int:
    return run.attempt - run.attempts_before_retry


def claim(run_id: int, worker: str) -> int | None:
    """The new attempt number if this worker now owns the run, else None. A run that has used
    its attempts (workers lost, transient errors) is errored for good instead."""
    stale = timedelta(seconds=settings.STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS)
    now = timezone.now()
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return None
        claimable = (run.status == EvalRun.Status.QUEUED or
                     (run.status == EvalRun.Status.RUNNING
                      and (run.heartbeat_at is None or now - run.heartbeat_at > stale)))
        if not claimable:
            return None
        lost = run.status == EvalRun.Status.RUNNING
        limit = settings.STAGEGATE_EVAL_MAX_ATTEMPTS
        if _attempts_used(run) >= limit:
            why = ("its worker was lost" if lost else run.error.removesuffix(".")
                   or "it could not finish")
            _end(run, EvalRun.Status.ERRORED,
                 error=f"gave up after {limit} attempts: {why}; ask for it again once the "
                       "workers (or the database and blob store) are healthy")
            return None
        run.status = EvalRun.Status.RUNNING
        run.attempt += 1
        run.claimed_by = worker
        run.started_at = run.heartbeat_at = now
        run.progress_done = 0
        run.save(update_fields=["status", "attempt", "claimed_by", "started_at", "heartbeat_at",
                                "progress_done"])
        record_event(actor=None, verb="eval.started", obj=run, data={
            "eval": run.eval_name, "attempt": run.attempt, "worker": worker,
            **({"previous_worker_lost": True} if lost else {})})
        return run.attempt


def execute_run(*, run_id: int, worker: str | None = None) -> str:
    """Run one eval run; returns "done", "busy" (a live worker holds it) or "noop" (finished).
    Raises TransientRunError (the claim released) when the database or the blob store was out
    of reach, for the task to retry a bounded number of times."""
    worker = worker or socket.gethostname()
    attempt = claim(run_id, worker)
    if attempt is None:
        run = EvalRun.objects.filter(pk=run_id).first()
        return "busy" if run is not None and run.status == EvalRun.Status.RUNNING else "noop"
    run = EvalRun.objects.select_related("checkpoint__family").get(pk=run_id)
    log.info("eval run %s (%s on %s) attempt %s started on %s", run_id, run.eval_name,
             run.checkpoint, attempt, worker)
    try:
        outcome = _evaluate(run, attempt)
    except (EvalError, RunFailed) as exc:
        _finish(run, attempt, EvalRun.Status.FAILED, error=_sentence(str(exc)))
    except SoftTimeLimitExceeded:
        _finish(run, attempt, EvalRun.Status.ERRORED,
                error=f"the run exceeded its time limit of "
                      f"{settings.STAGEGATE_EVAL_TIME_LIMIT_SECONDS} s; raise "
                      "STAGEGATE_EVAL_TIME_LIMIT_SECONDS or run it on a faster worker, then ask "
                      "for it again")
    except TRANSIENT_ERRORS as exc:
        log.warning("eval run %s attempt %s: transient %s: %s", run_id, attempt,
                    type(exc).__name__, exc)
        _release(run, attempt, f"{type(exc).__name__} (database or blob store out of reach)")
        raise TransientRunError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # the machinery broke: the operator gets the traceback, the page a sentence
        log.exception("eval run %s errored", run_id)
        _finish(run, attempt, EvalRun.Status.ERRORED,
                error=f"the eval could not run ({type(exc).__name__}: "
                      f"{_sentence(str(exc), 160)}); the details are in the worker log and the "
                      "admin; ask for it again once the cause is fixed",
                error_detail=traceback.format_exc())
    else:
        _finish(run, attempt, EvalRun.Status.SUCCEEDED, **outcome)
    return "done"


def _sentence(text: str, limit: int = 600) -> str:
    """The first line of a message, bounded: what a page shows, never a traceback."""
    lines = (text or "").strip().splitlines()
    first = lines[0] if lines else "no reason given"
    return first if len(first) <= limit else first[:limit - 1] + "…"


def _release(run: EvalRun, attempt: int, why: str) -> None:
    """Give a claimed run back to the queue after a transient error (if the claim is still
    ours), so the task's next try can claim it."""
    EvalRun.objects.filter(pk=run.pk, attempt=attempt, status=EvalRun.Status.RUNNING).update(
        status=EvalRun.Status.QUEUED, error=why, claimed_by="", heartbeat_at=None)


def give_up(*, run_id: int, reason: str) -> None:
    """The task ran out of retries on transient errors: the run is errored for good."""
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished or run.status == EvalRun.Status.RUNNING:
            return
        _end(run, EvalRun.Status.ERRORED,
             error=f"gave up after repeated transient errors ({_sentence(reason, 200)}); ask for "
                   "it again once the database and blob store are reachable")


def _end(run: EvalRun, status: str, *, error: str) -> None:
    """Inside a transaction holding the run's row: finish it without a result."""
    run.status = status
    run.error, run.error_detail = error, ""
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "error_detail", "finished_at"])
    record_event(actor=None, verb=f"eval.{status}", obj=run, data={
        "eval": run.eval_name, "attempt": run.attempt, "error": error[:500]})
    send_finished_after_commit(run)


def _progress_writer(run: EvalRun, attempt: int, *, heartbeat_only: bool = False):
    """A throttled progress callback that also keeps the run's heartbeat fresh. The integrity
    pre-check counts bytes, not samples, so it only beats the heart."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY and done < total:
            return
        last[0] = now
        fields = {"heartbeat_at": timezone.now()}
        if not heartbeat_only:
            fields.update(progress_done=done, progress_total=total)
        EvalRun.objects.filter(pk=run.pk, attempt=attempt,
                               status=EvalRun.Status.RUNNING).update(**fields)

    return progress


def _manifest(checkpoint: Checkpoint) -> list[dict]:
    return [{"path": f.path, "sha256": f.blob_id, "size": f.size} for f in checkpoint.files.all()]


def _check_loadable(checkpoint: Checkpoint) -> None:
    if not checkpoint.is_loadable:
        raise RunFailed(f"{checkpoint} is {checkpoint.get_status_display()}; it may not be loaded")


def _verified_copy(stack: ExitStack, checkpoint: Checkpoint, run: EvalRun,
                   attempt: int) -> VerifiedCopy | None:
    """This machine's verified copy of the checkpoint (made now, hashing the blob store's
    bytes against the manifest, if there is none), held until the run ends; None when copies
    are off or it does not fit (the caller then verifies for itself)."""
    return stack.enter_context(checkpoint_cache.verified_copy(
        root=settings.STAGEGATE_EVAL_CACHE_DIR, cap_bytes=settings.STAGEGATE_EVAL_CACHE_BYTES,
        manifest_digest=checkpoint.manifest_digest, manifest=_manifest(checkpoint),
        fetch=copy_blob, progress=_progress_writer(run, attempt, heartbeat_only=True)))


def _loadable_folder(stack: ExitStack, checkpoint: Checkpoint, run: EvalRun, attempt: int,
                     *, verify: bool) -> Path:
    """The checkpoint's files as a local folder, refused unless the checkpoint may be loaded;
    with `verify`, fail closed: every byte about to be loaded was hashed against the manifest,
    either when this machine's copy was made (and the copy is unchanged since), or now."""
    _check_loadable(checkpoint)
    if verify:
        copy = _verified_copy(stack, checkpoint, run, attempt)
        if copy is not None:
            return copy.folder
    folder = stack.enter_context(materialized(checkpoint))
    if verify:
        run_eval("integrity", EvalContext(
            manifest=_manifest(checkpoint), open_file=open_from_dir(folder),
            progress=_progress_writer(run, attempt, heartbeat_only=True)))
    return folder


_models: ModelCache | None = None


def worker_models() -> ModelCache:
    """The models this worker process keeps loaded between runs (STAGEGATE_EVAL_MODEL_CACHE_MODELS)."""
    global _models
    if _models is None or _models.capacity != settings.STAGEGATE_EVAL_MODEL_CACHE_MODELS:
        _models = ModelCache(settings.STAGEGATE_EVAL_MODEL_CACHE_MODELS)
    return _models


def _evaluate(run: EvalRun, attempt: int) -> dict:
    checkpoint = Checkpoint.objects.get(pk=run.checkpoint_id)
    task_id = run.context.get("task_id")
    # A task runs at the exact version the run was planned with (its hash is in the key).
    entry = catalogue.task_entry_by_id(task_id) if task_id else catalogue.lookup(run.eval_name)
    spec = entry.spec
    manifest = _manifest(checkpoint)
    # The exact pack versions the run was planned with (its cache key covers their hashes).
    packs = {name: load_pack_version(name, ref["sha256"])
             for name, ref in run.context.get("packs", {}).items()}
    progress = _progress_writer(run, attempt)
    with ExitStack() as stack:
        if spec.name == integrity.SPEC.name and not task_id:
            # Integrity is what a verified copy proves: making the copy (or finding the one
            # made earlier on this machine, unchanged) hashed every byte of the blob store
            # against the manifest, so the bytes are not read a second time for it.
            _check_loadable(checkpoint)
            copy = _verified_copy(stack, checkpoint, run, attempt)
            if copy is not None:
                verified_at = datetime.fromtimestamp(copy.record["verified_at"],
                                                     tz=dt_timezone.utc).isoformat("T", "seconds")
                output = integrity.passed_when_copied(manifest, verified_at=verified_at)
                return _outcome(run, entry, spec, output, manifest, packs, attempt)
        folder = _loadable_folder(stack, checkpoint, run, attempt, verify=spec.needs_model)
        parent = None
        parent_id = run.context.get("parent_checkpoint_id")
        if parent_id and "parent" in spec.reads:
            # The parent is loaded too: the same checks as the checkpoint itself.
            parent = Checkpoint.objects.get(pk=parent_id)
        parent_dir = (_loadable_folder(stack, parent, run, attempt, verify=True)
                      if parent else None)
        if task_id:
            output = _run_task(task_id, folder, run, progress)
            return _outcome(run, entry, spec, output, manifest, packs, attempt)
        ctx = EvalContext(
            model_dir=folder if spec.needs_model else None,
            manifest=manifest, open_file=open_from_dir(folder), params=dict(run.params),
            packs=packs,
            canaries=[as_library_canary(c) for c in
                      Canary.objects.filter(pk__in=run.context.get("canary_ids", []))],
            extraction_prefixes=[as_library_prefix(p) for p in ExtractionPrefix.objects.filter(
                pk__in=run.context.get("prefix_ids", []))],
            parent_model_dir=parent_dir, progress=progress,
            model_cache=worker_models(), model_digest=checkpoint.manifest_digest,
            parent_model_digest=parent.manifest_digest if parent else None,
            # Pickle weights only where the scanner cleared them (both models are loadable).
            allow_pickle_weights=any(f.needs_scan for c in filter(None, (checkpoint, parent))
                                     for f in c.files.all()))
        output = run_eval(spec.name, ctx)
    return _outcome(run, entry, spec, output, manifest, packs, attempt)


def _run_task(task_id: int, folder: Path, run: EvalRun, progress):
    """A registered task, run by its own framework on the materialised folder: the harness for
    an lm-eval task, inspect-ai (in a child process) for an Inspect task."""
    from evaluations.library.harness import TaskBundle, run_lm_eval_task
    from evaluations.library.lm import dtype_for, pick_device
    from evaluations.models import HarnessTask

    task = HarnessTask.objects.get(pk=task_id)
    bundle = TaskBundle(name=task.name, config=task.config, files=task.files,
                        metrics=task.metrics)
    device = pick_device()
    if task.kind == HarnessTask.Kind.INSPECT:
        from evaluations.library.inspect_tasks import run_inspect_task

        return run_inspect_task(bundle, folder, params=run.params, device=device,
                                timeout=max(settings.STAGEGATE_EVAL_TIME_LIMIT_SECONDS - 90, 30),
                                progress=progress)
    dtype = str(dtype_for(device)).removeprefix("torch.")
    return run_lm_eval_task(bundle, folder, params=run.params, device=device, dtype=dtype,
                            progress=progress)


def _outcome(run: EvalRun, entry, spec, output, manifest, packs, attempt) -> dict:
    samples = output.samples_jsonl()  # serialised once: stored, and hashed into the record
    record = build_result_record(spec=spec, output=output, params=run.params,
                                 checkpoint_digest=run.manifest_digest, manifest=manifest,
                                 cache_key=run.cache_key, packs=packs, inputs=run.inputs,
                                 samples_sha256=hashlib.sha256(samples).hexdigest(),
                                 extra={"run_id": run.pk, "attempt": attempt})
    if entry.name != spec.name:
        record = _renamed(record, spec.name, entry.name)
    if entry.task_ref is not None:
        record["configs"][entry.name]["metadata"]["task"] = entry.task_ref
    return {"metrics": {k: v for k, v in record["results"][entry.name].items()
                        if "," in k and not k.endswith("_stderr,none")},
            "result": record, "samples": samples, "artifacts": output.artifacts,
            "device": str(output.runtime.get("device") or ""),
            "dtype": str(output.runtime.get("dtype") or "")}


def _renamed(record: dict, old: str, new: str) -> dict:
    """A pack eval's record is keyed by the pack's name, like a built-in's by its own."""
    for key in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                "n-samples", "task_hashes"):
        if key in record and old in record[key]:
            record[key][new] = record[key].pop(old)
    record["results"][new]["alias"] = record["results"][new]["name"] = new
    record["configs"][new]["task"] = new
    return record


def _store_bytes(name: str, data: bytes) -> str:
    staged = blobstore.stage_chunks(name, [data], max_size=len(data))
    Blob.objects.get_or_create(sha256=staged.sha256, defaults={"size": staged.size})
    blobstore.store(staged)
    return staged.sha256


def _finish(run: EvalRun, attempt: int, status: str, *, error: str = "", error_detail: str = "",
            metrics=None, result=None, samples: bytes | None = None, artifacts=None, device="",
            dtype="") -> None:
    with transaction.atomic():
        current = EvalRun.objects.select_for_update().get(pk=run.pk)
        if current.attempt != attempt or current.status != EvalRun.Status.RUNNING:
            log.warning("eval run %s attempt %s lost its claim; result discarded", run.pk, attempt)
            return
        current.status = status
        current.error = error[:2000]
        current.error_detail = error_detail[:50000]
        current.finished_at = timezone.now()
        current.metrics = {k.removesuffix(",none"): v for k, v in (metrics or {}).items()}
        current.result = result or {}
        current.device, current.dtype = device, dtype
        if samples is not None:
            current.samples_id = _store_bytes(f"{run.eval_name}-samples.jsonl", samples)
        current.artifacts = {name: _store_bytes(name, data)
                             for name, data in (artifacts or {}).items()}
        if status == EvalRun.Status.SUCCEEDED:
            current.progress_done = max(current.progress_done, current.progress_total)
        current.save()
        record_event(actor=None, verb=f"eval.{status}", obj=current, data={
            "eval": current.eval_name, "attempt": attempt, "metrics": current.metrics,
            **({"error": error.splitlines()[0][:500]} if error else {})})
        send_finished_after_commit(current)
