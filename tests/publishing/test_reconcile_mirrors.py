"""The reconciler and mirror jobs left behind: a mirror whose task was lost is re-queued once and
brought in sync by a real worker against the stand-in Hub; one whose attempts are used up is
failed with the reason (issue 17)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent
from publishing.models import Mirror
from publishing.reconcile import reconcile_mirror_jobs
from tests.publishing.conftest import FAMILY, add_target, link_accounts, wait_for_mirror
from tests.releases.conftest import submit_checkpoint
from tests.releases.stages import release_at

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def left_behind(personas, hub, allow, **mirror_fields):
    """A published release whose mirror task was lost (the broker emptied) long ago."""
    allow(hub)
    checkpoint = submit_checkpoint(personas.alice)
    target = add_target(personas, hub)
    link_accounts(personas, hub)
    release = release_at(personas, "partners", family=FAMILY, checkpoint=checkpoint)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    mirror = Mirror.objects.get(target=target, release=release)
    long_ago = timezone.now() - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS + 1)
    Mirror.objects.filter(pk=mirror.pk).update(updated_at=long_ago, **mirror_fields)
    return release, target, mirror


def requeued_events(release):
    return AuditEvent.objects.filter(object_type="releases.release", object_id=str(release.pk),
                                     verb="publication.requeued")


def test_a_lost_mirror_job_is_requeued_once_and_synced(personas, simple_policy, hub, allow,
                                                       start_worker):
    release, target, mirror = left_behind(personas, hub, allow)
    assert mirror.state == "queued"
    assert reconcile_mirror_jobs() == {"requeued": 1, "failed": 0}
    assert reconcile_mirror_jobs() == {"requeued": 0, "failed": 0}
    start_worker("publishing", extra_env={
        "STAGEGATE_PUBLICATION_ENDPOINTS": hub.url, "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1"})
    synced = wait_for_mirror(release, target, stage="partners")
    assert synced.state == "in_sync", synced.detail
    event = requeued_events(release).get()
    assert event.data["state"] == "queued" and "lost" in event.data["reason"]


def test_a_lost_mirror_job_that_used_its_attempts_is_failed_with_the_reason(
        personas, simple_policy, hub, allow):
    spent = settings.STAGEGATE_PUBLICATION_MAX_RETRIES + 1
    release, target, mirror = left_behind(personas, hub, allow, state="syncing", attempts=spent)
    assert reconcile_mirror_jobs() == {"requeued": 0, "failed": 1}
    assert reconcile_mirror_jobs() == {"requeued": 0, "failed": 0}
    mirror.refresh_from_db()
    assert mirror.state == "failed"
    assert mirror.detail.startswith(f"gave up after {spent} attempts")
    failed = AuditEvent.objects.get(object_type="releases.release", object_id=str(release.pk),
                                    verb="publication.failed")
    assert failed.data["trigger"] == "reconcile" and not requeued_events(release).exists()
