from django.contrib import admin

from audit.models import AuditEvent, AuditHead
from config.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "actor_username", "verb", "object_repr"]
    list_filter = ["verb"]
    search_fields = ["object_repr", "actor_username", "verb"]


@admin.register(AuditHead)
class AuditHeadAdmin(ReadOnlyAdmin):
    """The signed heads exported to the sinks (audit/heads.py), and where each was delivered."""

    list_display = ["seq", "created_at", "key_id", "deliveries"]
    readonly_fields = ["seq", "hash", "created_at", "key_id", "record", "deliveries"]
