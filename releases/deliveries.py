"""The reconciler's part for webhook deliveries (config/reconciler.py runs it on Celery beat).

A delivery is left behind when it is still pending long after its last attempt began (or after
it was made, if none did): longer than STAGEGATE_RECONCILE_AFTER_SECONDS, which is above the
task's longest back-off, so its worker or its message was lost. It is re-queued once per
attempt count, or marked failed with the reason once its attempts are used up. One audit event
for each. Delivering is exactly-once on its own (a delivered event is never sent again).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.services import record_event
from config.reconciler import decide_each
from releases.models import WebhookDelivery

S = WebhookDelivery.Status


def max_attempts() -> int:
    from releases.tasks import deliver_webhook

    return deliver_webhook.max_retries + 1


def _left_behind(now: datetime):
    lost = now - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS)
    return (WebhookDelivery.objects.filter(status=S.PENDING)
            .annotate(last_touched=Coalesce("attempted_at", "created_at"))
            .filter(last_touched__lt=lost)
            .filter(Q(requeued_attempt__isnull=True) | ~Q(requeued_attempt=F("attempts"))))


def reconcile_webhook_deliveries(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue (once) or fail (with the reason) every webhook delivery left behind. Safe to
    run twice, and concurrently: each delivery is decided under its row lock."""
    now = now or timezone.now()
    return decide_each(_left_behind(now).values_list("pk", flat=True),
                       lambda delivery_id: _reconcile_one(delivery_id, now))


def _reconcile_one(delivery_id: int, now: datetime) -> str | None:
    from releases.notifications import _queue_delivery

    with transaction.atomic():
        delivery = (_left_behind(now).select_for_update(of=("self",))
                    .select_related("endpoint").filter(pk=delivery_id).first())
        if delivery is None:
            return None
        data = {"event": delivery.event, "audit_event": delivery.audit_event,
                "endpoint": delivery.endpoint.url, "attempts": delivery.attempts}
        if delivery.attempts >= max_attempts():
            reason = (f"gave up after {delivery.attempts} attempts: the last one never finished "
                      f"(its worker was lost); last error: {delivery.last_error or 'none'}")
            delivery.status, delivery.last_error = S.FAILED, reason[:2000]
            delivery.save(update_fields=["status", "last_error"])
            record_event(actor=None, verb="webhook.failed", obj=delivery,
                         data={**data, "reason": reason[:500]})
            return "failed"
        delivery.requeued_attempt = delivery.attempts
        delivery.save(update_fields=["requeued_attempt"])
        record_event(actor=None, verb="webhook.requeued", obj=delivery, data={
            **data, "reason": "still pending long after its last attempt began: its worker "
                              "or its message was lost"})
        transaction.on_commit(lambda: _queue_delivery(delivery.pk))
        return "requeued"
