"""Targets are added and changed through publishing.services (validated, audited); the admin
form takes a new token and never shows a stored one."""

from django import forms
from django.contrib import admin, messages
from django.db import models

from publishing import services, tokens
from publishing.models import HubAccount, Mirror, PublicationTarget


URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


class TargetForm(forms.ModelForm):
    token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                            help_text="A new token to store encrypted (leave empty to keep the "
                                      "current one, or name an environment variable instead).")

    class Meta:
        model = PublicationTarget
        fields = ["family", "remote_repo", "token_env", "active"]  # + endpoint, by the admin


@admin.register(PublicationTarget)
class PublicationTargetAdmin(admin.ModelAdmin):
    form = TargetForm
    formfield_overrides = URL_FIELDS
    fields = ["family", "endpoint", "remote_repo", "token_env", "token", "active",
              "carried_release", "created_by", "created_at"]
    list_display = ["family", "endpoint", "remote_repo", "token_source", "active",
                    "carried_release"]
    readonly_fields = ["carried_release", "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        # A target's place never changes: another remote repo is another target.
        fixed = ["family", "endpoint", "remote_repo"] if obj is not None else []
        return [*fixed, *self.readonly_fields]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        token = data.get("token") or ""
        token_env = data.get("token_env") or ""
        if change and not token and not token_env and obj.token_encrypted:
            stored = PublicationTarget.objects.get(pk=obj.pk).token_encrypted
            token = tokens.decrypt_token(stored) if stored else ""
        try:
            saved = services.add_publication_target(
                actor=request.user, family=obj.family, endpoint=obj.endpoint,
                remote_repo=obj.remote_repo, token_env=token_env, token=token)
            services.set_target_active(actor=request.user, target=saved, active=data["active"])
        except (services.PublicationInputError, tokens.TokenUnavailable) as exc:
            messages.error(request, str(exc))
            return
        obj.pk = saved.pk
        obj.refresh_from_db()

    def has_delete_permission(self, request, obj=None):
        return False  # pause a target instead: its mirrors are the record of what was published


@admin.register(Mirror)
class MirrorAdmin(admin.ModelAdmin):
    list_display = ["release", "target", "stage", "state", "checked_at", "synced_at"]
    list_filter = ["state"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(HubAccount)
class HubAccountAdmin(admin.ModelAdmin):
    list_display = ["user", "endpoint", "username", "recorded_by", "recorded_at"]
    fields = ["user", "endpoint", "username"]
    formfield_overrides = URL_FIELDS

    def save_model(self, request, obj, form, change):
        try:
            saved = services.link_hub_account(actor=request.user, user=obj.user,
                                              endpoint=obj.endpoint, username=obj.username)
        except services.PublicationInputError as exc:
            messages.error(request, str(exc))
            return
        obj.pk = saved.pk
