from django.contrib import admin

from models.models import Blob, Checkpoint, CheckpointFile, ModelFamily


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
