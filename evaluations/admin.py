from django.contrib import admin

from evaluations.models import Canary, EvalPack, EvalRun, ExtractionPrefix


@admin.register(EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    list_display = ["eval_name", "checkpoint", "status", "attempt", "created_at", "finished_at"]
    list_filter = ["status", "eval_name"]
    readonly_fields = [f.name for f in EvalRun._meta.fields]  # error_detail: the traceback

    def has_add_permission(self, request):
        return False


@admin.register(EvalPack)
class EvalPackAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "type", "items", "uploaded_by", "created_at"]
    readonly_fields = [f.name for f in EvalPack._meta.fields]

    def has_add_permission(self, request):
        return False  # packs are validated on upload (Evals page, API, add_eval_pack)


@admin.register(Canary)
class CanaryAdmin(admin.ModelAdmin):
    # The secret is never shown, not even here.
    list_display = ["label", "family", "template", "alphabet", "length", "created_at"]
    fields = ["family", "template", "alphabet", "length", "created_by", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


@admin.register(ExtractionPrefix)
class ExtractionPrefixAdmin(admin.ModelAdmin):
    list_display = ["label", "family", "created_at"]
    fields = ["family", "prefix", "created_by", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False
