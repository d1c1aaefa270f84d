"""The reconciler's part for eval runs (config/reconciler.py runs it on Celery beat).

A run is left behind when its worker died (running, its heartbeat stale) or its message was
lost (queued for longer than STAGEGATE_RECONCILE_AFTER_SECONDS and never claimed). Each is
re-queued once per attempt (`requeued_attempt` remembers the attempt, so a second pass or a
second beat does nothing), or, when its attempts (STAGEGATE_EVAL_MAX_ATTEMPTS) are used up,
errored with the reason. The claim in runner.py keeps the run itself exactly-once, however many
messages for it are delivered.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import record_event
from config.reconciler import decide_each
from evaluations.models import EvalRun
from evaluations.runner import _attempts_used, _end

S = EvalRun.Status


def _left_behind(now: datetime) -> Q:
    stale = now - timedelta(seconds=settings.STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS)
    lost = now - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS)
    return ((Q(status=S.RUNNING) & (Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)))
            | Q(status=S.QUEUED, created_at__lt=lost, heartbeat_at__isnull=True)) & (
        Q(requeued_attempt__isnull=True) | ~Q(requeued_attempt=F("attempt")))


def reconcile_eval_runs(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue (once) or error (with the reason) every eval run left behind. Returns the
    counts. Safe to run twice, and concurrently: each run is decided under its row lock."""
    now = now or timezone.now()
    return decide_each(EvalRun.objects.filter(_left_behind(now)).values_list("pk", flat=True),
                       lambda run_id: _reconcile_one(run_id, now), ("requeued", "errored"))


def _reconcile_one(run_id: int, now: datetime) -> str | None:
    from evaluations.services import enqueue

    with transaction.atomic():
        run = EvalRun.objects.select_for_update().filter(_left_behind(now), pk=run_id).first()
        if run is None:  # claimed, finished or re-queued since the list was read
            return None
        lost = run.status == S.RUNNING
        why = (f"its worker ({run.claimed_by or 'unknown'}) stopped sending a heartbeat"
               if lost else "it was queued but no worker ever took it")
        limit = settings.STAGEGATE_EVAL_MAX_ATTEMPTS
        if _attempts_used(run) >= limit:
            _end(run, S.ERRORED,
                 error=f"gave up after {limit} attempts: {why}; ask for it again once the "
                       "workers are healthy (STAGEGATE_EVAL_MAX_ATTEMPTS bounds the attempts)")
            return "errored"
        run.requeued_attempt, run.requeued_at = run.attempt, now
        run.save(update_fields=["requeued_attempt", "requeued_at"])
        record_event(actor=None, verb="eval.requeued", obj=run, data={
            "eval": run.eval_name, "attempt": run.attempt, "reason": why,
            "worker": run.claimed_by, "heartbeat_at": run.heartbeat_at})
        transaction.on_commit(lambda: enqueue(run))
        return "requeued"
