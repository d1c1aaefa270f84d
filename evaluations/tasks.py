"""Celery tasks of the evaluations app: ids in, one service call (STYLE.md §4)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from evaluations import runner
from evaluations.limits import address_space_limit, torch_threads


@shared_task(bind=True, name="evaluations.run_eval", acks_late=True,
             reject_on_worker_lost=True, autoretry_for=(OperationalError, InterfaceError),
             retry_backoff=5, retry_jitter=True, max_retries=5)
def run_eval(self, run_id: int) -> str:
    """Run one EvalRun. Safe to deliver twice: the claim lets one attempt run at a time, and a
    finished run is a no-op. Retries only on database connection errors; eval failures are
    results, not retries."""
    with address_space_limit(settings.STAGEGATE_EVAL_MEMORY_LIMIT), \
            torch_threads(settings.STAGEGATE_EVAL_TORCH_THREADS):
        outcome = runner.execute_run(run_id=run_id, worker=self.request.hostname)
    if outcome == "busy":
        # Another worker holds the run. Look again once its heartbeat could have gone stale, so
        # that if that worker dies the run is still finished.
        raise self.retry(countdown=settings.STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS,
                         max_retries=None)
    return outcome
