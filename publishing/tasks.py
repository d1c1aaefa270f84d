"""Celery tasks of publishing: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from publishing.remote import TransientRemoteError


@shared_task(name="publishing.mirror_release", bind=True, autoretry_for=(TransientRemoteError,),
             retry_backoff=settings.STAGEGATE_PUBLICATION_RETRY_SECONDS, retry_backoff_max=3600,
             retry_jitter=False, max_retries=settings.STAGEGATE_PUBLICATION_MAX_RETRIES)
def mirror_release(self, release_id: int, stage: str, target_id: int,
                   trigger: str = "publish") -> str:
    """Mirror one (release, stage) to one target. Retried only on TransientRemoteError (the
    network, 408/412/429/5xx, a busy target); the last attempt records the failure."""
    from publishing.runs import run_mirror

    return run_mirror(release_id=release_id, stage=stage, target_id=target_id, trigger=trigger,
                      final_attempt=self.request.retries >= self.max_retries)


@shared_task(name="publishing.reconcile_targets")
def reconcile_targets() -> int:
    """Periodic (celery beat): compare every active target with what Stagegate says it should
    be; a run finds drift, reports it and repairs it."""
    from publishing.reconcile import queue_reconciliation

    return queue_reconciliation()
