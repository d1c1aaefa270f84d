"""Celery tasks of the evaluations app: ids in, one service call (STYLE.md §4)."""

from __future__ import annotations

import math

from celery import shared_task
from django.conf import settings

from evaluations import runner
from evaluations.limits import address_space_limit, torch_threads


def _busy_checks() -> int:
    """How often a task may look again at a run another worker holds: enough to outlast the
    longest run that worker could still be on, then it stops (the run's own attempt bound
    covers a worker that died)."""
    stale = max(settings.STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS, 1)
    return math.ceil(settings.STAGEGATE_EVAL_TIME_LIMIT_SECONDS / stale) + 2


@shared_task(bind=True, name="evaluations.run_eval", acks_late=True,
             reject_on_worker_lost=True, max_retries=None)
def run_eval(self, run_id: int) -> str:
    """Run one EvalRun. Safe to deliver twice: the claim lets one attempt run at a time, and a
    finished run is a no-op. Retries only on transient database or blob-store errors, with
    back-off, at most STAGEGATE_EVAL_MAX_ATTEMPTS times in all; eval failures are results, not
    retries, and nothing re-queues a run that errored for good."""
    try:
        with address_space_limit(settings.STAGEGATE_EVAL_MEMORY_LIMIT), \
                torch_threads(settings.STAGEGATE_EVAL_TORCH_THREADS):
            outcome = runner.execute_run(run_id=run_id, worker=self.request.hostname)
    except runner.TransientRunError as exc:
        tries = self.request.retries + 1
        if tries >= settings.STAGEGATE_EVAL_MAX_ATTEMPTS:
            runner.give_up(run_id=run_id, reason=str(exc))
            return "errored"
        raise self.retry(countdown=min(5 * 2 ** tries, 300)) from exc
    if outcome == "busy":
        # Another worker holds the run. Look again once its heartbeat could have gone stale, so
        # that if that worker dies the run is still finished.
        if self.request.retries >= _busy_checks():
            return "busy"
        raise self.retry(countdown=settings.STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS)
    return outcome
