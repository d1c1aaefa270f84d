"""The reconciler's part for conversions (config/reconciler.py runs it on Celery beat).

A conversion has no row of its own: its request is the `checkpoint.conversion_requested` audit
event, and its result is the converted checkpoint. The audit log is then the queue: a request
older than STAGEGATE_RECONCILE_AFTER_SECONDS whose checkpoint has no conversion was left behind
(its worker or its message was lost, or it failed on the worker). It is re-queued once
(`checkpoint.conversion_requeued`); if that one makes nothing either within the same time, it is
marked failed with the reason (`checkpoint.conversion_failed`). Only the latest request of a
checkpoint counts, and each decision is taken under the checkpoint's row lock, so a second pass
(or a second reconciler) does nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record_event
from config.reconciler import decide_each
from models.models import Checkpoint

REQUESTED = "checkpoint.conversion_requested"
REQUEUED = "checkpoint.conversion_requeued"
FAILED = "checkpoint.conversion_failed"
OBJECT_TYPE = Checkpoint._meta.label_lower


def reconcile_conversions(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue (once) or fail (with the reason) every conversion left behind."""
    now = now or timezone.now()
    lost = now - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS)
    waiting = set(AuditEvent.objects.filter(verb=REQUESTED, object_type=OBJECT_TYPE,
                                            created_at__lt=lost)
                  .order_by().values_list("object_id", flat=True).distinct())
    done = set(Checkpoint.objects.filter(converted_from__isnull=False)
               .values_list("converted_from_id", flat=True))
    left = [int(object_id) for object_id in sorted(waiting, key=int) if int(object_id) not in done]
    return decide_each(left, lambda checkpoint_id: _reconcile_one(checkpoint_id, lost))


def _reconcile_one(checkpoint_id: int, lost: datetime) -> str | None:
    from models.conversion import _queue, existing_conversion

    with transaction.atomic():
        checkpoint = Checkpoint.objects.select_for_update().filter(pk=checkpoint_id).first()
        if checkpoint is None or existing_conversion(checkpoint):
            return None
        events = AuditEvent.objects.filter(object_type=OBJECT_TYPE, object_id=str(checkpoint_id))
        request = events.filter(verb=REQUESTED).order_by("-id").first()
        after = {e.verb: e for e in events.filter(verb__in=[REQUEUED, FAILED], id__gt=request.pk)}
        if FAILED in after or request.created_at >= lost:
            return None
        requeue = after.get(REQUEUED)
        actor = (get_user_model().objects.filter(pk=request.actor_id, is_active=True).first()
                 if request.actor_id else None)
        data = {"request_event": request.pk, "manifest_digest": checkpoint.manifest_digest}
        if requeue is None and actor is not None:
            record_event(actor=None, verb=REQUEUED, obj=checkpoint, data={
                **data, "reason": "no conversion came of the request: its worker or its "
                                  "message was lost"})
            transaction.on_commit(lambda: _queue(checkpoint.pk, actor.pk))
            return "requeued"
        if requeue is not None and requeue.created_at >= lost:
            return None  # the re-queued one still has time
        reason = ("the conversion was re-queued once and still made nothing; see the worker "
                  "log, then ask for the conversion again" if requeue is not None else
                  "the user who asked for it is no longer active; ask for it again")
        record_event(actor=None, verb=FAILED, obj=checkpoint, data={**data, "reason": reason})
        return "failed"
