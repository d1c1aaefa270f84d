"""The reconciler and webhook deliveries left behind: re-queued once, then delivered by a real
worker; one whose attempts are used up is failed with the reason (issue 17)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent
from releases import workflow
from releases.deliveries import max_attempts, reconcile_webhook_deliveries
from releases.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import make_persona
from tests.registry.test_tasks import wait_for
from tests.releases.conftest import ASSESSMENT, submit_checkpoint
from tests.releases.test_notifications import Receiver, receiver  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def delivery_events(delivery: WebhookDelivery):
    return AuditEvent.objects.filter(object_type="releases.webhookdelivery",
                                     object_id=str(delivery.pk))


def left_behind(receiver_url: str) -> WebhookDelivery:  # noqa: F811
    """A delivery whose task message was lost (the broker emptied) long ago."""
    WebhookEndpoint.objects.create(url=receiver_url, secret="k", events="release.created")
    alice = make_persona("alice")
    workflow.create_release(actor=alice, checkpoint=submit_checkpoint(alice, label="hook"),
                            assessment=ASSESSMENT)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    delivery = WebhookDelivery.objects.get()
    long_ago = timezone.now() - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS + 1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=long_ago)
    return delivery


def test_a_lost_delivery_is_requeued_once_and_delivered(receiver, start_worker,  # noqa: F811
                                                       simple_policy):
    delivery = left_behind(receiver)
    assert reconcile_webhook_deliveries() == {"requeued": 1, "failed": 0}
    assert reconcile_webhook_deliveries() == {"requeued": 0, "failed": 0}
    start_worker("hooks", queues="default")
    delivered = wait_for(lambda: WebhookDelivery.objects.filter(pk=delivery.pk,
                                                                status="delivered").first())
    assert delivered.attempts == 1 and len(Receiver.received) == 1
    event = delivery_events(delivery).get(verb="webhook.requeued")
    assert event.data["attempts"] == 0 and "lost" in event.data["reason"]


def test_a_lost_delivery_that_used_its_attempts_is_failed_with_the_reason(
        receiver, simple_policy):  # noqa: F811
    delivery = left_behind(receiver)
    long_ago = timezone.now() - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS + 1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=max_attempts(), attempted_at=long_ago, last_error="HTTP 503")

    assert reconcile_webhook_deliveries() == {"requeued": 0, "failed": 1}
    assert reconcile_webhook_deliveries() == {"requeued": 0, "failed": 0}
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.last_error.startswith(f"gave up after {max_attempts()} attempts")
    assert "HTTP 503" in delivery.last_error
    assert delivery_events(delivery).filter(verb="webhook.failed").count() == 1
    assert not Receiver.received
