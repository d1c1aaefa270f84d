"""The reconciler (Celery beat, every STAGEGATE_RECONCILE_SECONDS): work that a lost worker or
a lost message left behind is re-queued exactly once, or marked failed with the reason, with an
audit event for each. Eval runs whose heartbeat went stale, conversions, webhook deliveries and
mirror jobs; each app decides its own (their `reconcile_*` functions), this only runs them, so
one failing does not stop the others."""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from celery import shared_task

log = logging.getLogger(__name__)


def decide_each(ids: Iterable, decide: Callable[[object], str | None],
                outcomes: tuple[str, ...] = ("requeued", "failed")) -> dict[str, int]:
    """Each app's pass: `decide(id)` settles one piece of work under its row lock and says what
    it did (one of `outcomes`, or None when another pass got there first); returns the counts."""
    counts = dict.fromkeys(outcomes, 0)
    for pk in ids:
        outcome = decide(pk)
        if outcome:
            counts[outcome] += 1
    return counts


def reconcile_left_behind() -> dict[str, dict[str, int]]:
    from evaluations.reconcile import reconcile_eval_runs
    from models.conversion_reconcile import reconcile_conversions
    from publishing.reconcile import reconcile_mirror_jobs
    from releases.deliveries import reconcile_webhook_deliveries

    parts = {"eval_runs": reconcile_eval_runs, "conversions": reconcile_conversions,
             "webhook_deliveries": reconcile_webhook_deliveries,
             "mirror_jobs": reconcile_mirror_jobs}
    outcome: dict[str, dict[str, int]] = {}
    failures: list[BaseException] = []
    for name, reconcile in parts.items():
        try:
            outcome[name] = reconcile()
        except Exception as exc:  # the others still run; the error is raised at the end
            log.exception("reconciling %s failed", name)
            failures.append(exc)
    if any(sum(counts.values()) for counts in outcome.values()):
        log.info("reconciled work left behind: %s", outcome)
    if failures:
        raise failures[0]
    return outcome


@shared_task(name="stagegate.reconcile_left_behind")
def reconcile_left_behind_task() -> dict[str, dict[str, int]]:
    """Periodic (celery beat). Safe to run twice, and on two beats at once: every decision is
    taken under the row's lock and is recorded, so nothing is re-queued twice."""
    return reconcile_left_behind()
