from django.contrib import admin

from audit.models import AuditEvent, AuditHead


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["seq", "created_at", "actor_username", "verb", "object_repr"]
    list_filter = ["verb"]
    search_fields = ["object_repr", "actor_username", "verb"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditHead)
class AuditHeadAdmin(admin.ModelAdmin):
    """The signed heads exported to the sinks (audit/heads.py), and where each was delivered."""

    list_display = ["seq", "created_at", "key_id", "deliveries"]
    readonly_fields = ["seq", "hash", "created_at", "key_id", "record", "deliveries"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
