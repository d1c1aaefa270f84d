"""The periodic reconcilers of publishing: one mirror run per active target, for the release
Stagegate says the target carries (or should; finding drift is the run's job, publishing/
mirror.py); and mirror jobs left behind by a lost worker, re-queued once or failed."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import record_event
from config.reconciler import decide_each
from publishing import services
from publishing.desired import leading_release
from publishing.models import Mirror, PublicationTarget


def queue_reconciliation() -> int:
    queued = 0
    for target in PublicationTarget.objects.filter(active=True).select_related(
            "family", "carried_release"):
        release = target.carried_release
        if release is None or release.status != release.Status.WITHDRAWN:
            release = leading_release(target.family) or release
        if release is None:
            continue
        services.queue_mirror(release=release, target=target, trigger="reconcile")
        queued += 1
    return queued


# --- mirror jobs left behind ---------------------------------------------------------------------
# A mirror `queued` or `syncing` for longer than STAGEGATE_RECONCILE_AFTER_SECONDS whose target
# no run holds (no claim, or a lapsed one) was left behind by a lost worker or message. It is
# re-queued once per attempt count, or failed with the reason once its retries are used up.

def _left_behind(now: datetime):
    lost = now - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS)
    return (Mirror.objects.filter(state__in=[Mirror.State.QUEUED, Mirror.State.SYNCING],
                                  updated_at__lt=lost, target__active=True)
            .filter(Q(target__claimed_until__isnull=True) | Q(target__claimed_until__lt=now))
            .filter(Q(requeued_attempt__isnull=True) | ~Q(requeued_attempt=F("attempts"))))


def reconcile_mirror_jobs(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue (once) or fail (with the reason) every mirror job left behind. Safe to run
    twice, and concurrently: each mirror is decided under its row lock."""
    now = now or timezone.now()
    return decide_each(_left_behind(now).values_list("pk", flat=True),
                       lambda mirror_id: _reconcile_one(mirror_id, now))


def _reconcile_one(mirror_id: int, now: datetime) -> str | None:
    with transaction.atomic():
        mirror = (_left_behind(now).select_for_update(of=("self",))
                  .select_related("target__family", "release").filter(pk=mirror_id).first())
        if mirror is None:
            return None
        target = mirror.target
        limit = settings.STAGEGATE_PUBLICATION_MAX_RETRIES + 1
        if mirror.attempts >= limit:
            services.record_failure(
                target=target, mirror=mirror, trigger="reconcile",
                reason=f"gave up after {mirror.attempts} attempts: the last run never finished "
                       f"(its worker was lost while the mirror was {mirror.state}); sync again "
                       "from the release page once the workers are healthy")
            return "failed"
        Mirror.objects.filter(pk=mirror.pk).update(requeued_attempt=mirror.attempts)
        record_event(actor=None, verb="publication.requeued", obj=mirror.release, data={
            "target": target.pk, "remote": target.remote_url, "stage": mirror.stage,
            "state": mirror.state, "attempts": mirror.attempts,
            "reason": f"{mirror.state} for longer than {settings.STAGEGATE_RECONCILE_AFTER_SECONDS}"
                      " s with no run holding the target: its worker or its message was lost"})
        services.queue_mirror(release=mirror.release, target=target, trigger="reconcile")
        return "requeued"
