"""Reading the audit log: who may, and filters."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.dateparse import parse_date

from accounts.roles import user_roles
from audit.models import AuditEvent


def can_read_audit(user) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser or user.is_staff:
        return True
    return bool(user_roles(user) & set(settings.STAGEGATE_AUDIT_READER_GROUPS))


def filtered_events(params) -> QuerySet[AuditEvent]:
    """Filters: verb (prefix, e.g. `release.`), actor (username), object (`type:id`, e.g.
    `releases.release:12`), since / until (ISO dates)."""
    events = AuditEvent.objects.all().order_by("-id")
    if params.get("verb"):
        events = events.filter(verb__startswith=params["verb"])
    if params.get("actor"):
        events = events.filter(actor_username=params["actor"])
    if params.get("object"):
        object_type, _, object_id = params["object"].partition(":")
        events = events.filter(object_type=object_type)
        if object_id:
            events = events.filter(object_id=object_id)
    if params.get("since"):
        events = events.filter(created_at__date__gte=_date(params, "since"))
    if params.get("until"):
        events = events.filter(created_at__date__lte=_date(params, "until"))
    return events


def _date(params, key: str):
    try:
        value = parse_date(params[key])
    except ValueError:  # well formed but impossible, e.g. 2026-02-30
        value = None
    if value is None:
        raise ValidationError(f"{key}={params[key]!r} is not a date: write it as YYYY-MM-DD, "
                              f"e.g. 2026-11-29")
    return value


def event_json(event: AuditEvent) -> dict:
    return {"id": event.pk, "seq": event.seq, "created_at": event.created_at.isoformat(),
            "actor": event.actor_username or None, "verb": event.verb,
            "object": event.object_key or None, "object_repr": event.object_repr,
            "data": event.data, "prev_hash": event.prev_hash, "hash": event.hash}
