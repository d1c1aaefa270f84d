"""The reconciler and conversions left behind: a request whose task was lost is re-queued once
and converted by a real worker; one that the re-queue did not bring about either is failed with
the reason (issue 17). A conversion has no row: its request is an audit event, so the tests move
the reconciler's clock (`now`) rather than the event's time (the chain seals every column)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent
from models import conversion
from models.conversion_reconcile import reconcile_conversions
from models.models import Checkpoint
from tests.conftest import make_persona
from tests.registry.test_conversion import submit_pt
from tests.registry.test_tasks import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def lost_request(label: str) -> Checkpoint:
    alice = make_persona("alice")
    source = submit_pt(alice, label=label)
    conversion.request_conversion(actor=alice, checkpoint=source)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # the message is lost
    return source


def later(times: int = 1):
    return timezone.now() + times * timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS + 1)


def events(checkpoint: Checkpoint, verb: str):
    return AuditEvent.objects.filter(object_type="registry.checkpoint",
                                     object_id=str(checkpoint.pk), verb=verb)


def test_a_lost_conversion_is_requeued_once_and_converted(start_worker):
    source = lost_request("lost")
    assert reconcile_conversions() == {"requeued": 0, "failed": 0}  # not yet overdue
    assert reconcile_conversions(now=later()) == {"requeued": 1, "failed": 0}
    assert reconcile_conversions() == {"requeued": 0, "failed": 0}
    start_worker("convert", queues="default")
    converted = wait_for(lambda: Checkpoint.objects.filter(converted_from=source).first(),
                         timeout=120)
    assert converted.status == "ready"
    assert reconcile_conversions(now=later(2)) == {"requeued": 0, "failed": 0}
    assert events(source, "checkpoint.conversion_requeued").count() == 1
    assert not events(source, "checkpoint.conversion_failed").exists()


def test_a_conversion_the_requeue_did_not_bring_about_is_failed_with_the_reason():
    source = lost_request("lost-twice")
    assert reconcile_conversions(now=later()) == {"requeued": 1, "failed": 0}
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # lost again
    assert reconcile_conversions() == {"requeued": 0, "failed": 0}  # the re-queue has time
    assert reconcile_conversions(now=later(2)) == {"requeued": 0, "failed": 1}
    assert reconcile_conversions(now=later(3)) == {"requeued": 0, "failed": 0}
    failed = events(source, "checkpoint.conversion_failed").get()
    assert "re-queued once and still made nothing" in failed.data["reason"]
    assert events(source, "checkpoint.conversion_requeued").count() == 1
