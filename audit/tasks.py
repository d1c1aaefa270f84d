"""Celery tasks of the audit log: ids in, one call, safe to run twice."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="audit.seal")
def seal_task() -> int:
    """Periodic (celery beat, every STAGEGATE_AUDIT_SEAL_SECONDS): chain any committed event
    the on-commit sealer missed (one committed just as another sealer finished)."""
    from audit.sealing import seal_pending

    return seal_pending()


@shared_task(name="audit.export_head")
def export_head_task() -> int | None:
    """Periodic (celery beat, every STAGEGATE_AUDIT_HEAD_EVERY_MINUTES): sign and export the
    chain head if events were written since the last one."""
    from audit.heads import export_head

    head = export_head()
    return head.seq if head else None


@shared_task(name="audit.deliver_head", bind=True, max_retries=8)
def deliver_head_task(self, head_id: int, sink: str) -> str:
    """Send one head to one sink again; a sink that already holds it takes it as a no-op."""
    from audit.heads import SinkError, _send
    from audit.models import AuditHead

    head = AuditHead.objects.filter(pk=head_id).first()
    if head is None or head.deliveries.get(sink) == "ok":
        return "noop"
    try:
        _send(sink, head)
    except SinkError as exc:
        AuditHead.objects.filter(pk=head_id).update(
            deliveries={**head.deliveries, sink: str(exc)[:500]})
        raise self.retry(exc=exc, countdown=min(3600, 30 * 2 ** self.request.retries))
    AuditHead.objects.filter(pk=head_id).update(deliveries={**head.deliveries, sink: "ok"})
    return "delivered"
