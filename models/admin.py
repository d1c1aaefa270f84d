from django.contrib import admin

from config.admin import ReadOnlyAdmin
from models.models import Blob, Checkpoint, CheckpointFile, ModelFamily, TrustedSigner


@admin.register(ModelFamily)
class ModelFamilyAdmin(admin.ModelAdmin):
    list_display = ["org", "name", "owners", "created_at"]
    search_fields = ["org", "name"]


class CheckpointFileInline(admin.TabularInline):
    model = CheckpointFile
    fields = ["path", "kind", "size", "blob"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["family", "label", "status", "manifest_digest", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["family", "label", "manifest_digest", "status", "census", "submitted_by"]
    inlines = [CheckpointFileInline]


@admin.register(Blob)
class BlobAdmin(admin.ModelAdmin):
    list_display = ["sha256", "size", "created_at"]


@admin.register(TrustedSigner)
class TrustedSignerAdmin(ReadOnlyAdmin):
    """Read-only: keys are trusted through `manage.py add_trusted_signer` (audited)."""

    list_display = ["family", "name", "key_id", "added_by", "created_at"]
