"""Background work of the registry. Tasks take ids and call one service (STYLE.md §4)."""

from __future__ import annotations

from celery import shared_task

from models import services


@shared_task(name="registry.purge_expired_upload_sessions")
def purge_expired_upload_sessions() -> int:
    """Abort upload sessions (and forget Hub upload receipts) past their expiry and delete the
    blobs only they referred to.
    Safe to run twice: a session is purged once, under a row lock."""
    from models.hub_services import purge_expired_hub_uploads

    return services.purge_expired_upload_sessions() + purge_expired_hub_uploads()


@shared_task(name="registry.scan_checkpoint", acks_late=True)
def scan_checkpoint(checkpoint_id: int) -> str:
    """Scan one checkpoint's pickle-carrying files. Safe to run twice (a settled checkpoint is
    returned unchanged)."""
    from models.scanning import scan_checkpoint as scan

    return scan(checkpoint_id=checkpoint_id).status


@shared_task(name="registry.convert_checkpoint", acks_late=True, time_limit=4 * 3600)
def convert_checkpoint(checkpoint_id: int, actor_id: int) -> int:
    """Convert a scanned-safe PyTorch checkpoint to safetensors; returns the new checkpoint's
    id. Safe to run twice (an existing conversion is returned)."""
    from models.conversion import convert_checkpoint as convert

    return convert(checkpoint_id=checkpoint_id, actor_id=actor_id).pk
