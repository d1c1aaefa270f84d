from django.contrib import admin

from config.admin import ReadOnlyAdmin
from releases.models import (AccessGrant, AccessRequest, PolicyVersion, PublicationSignature,
                             PublicReference, Release, Review, StagePublication,
                             WebhookDelivery, WebhookEndpoint)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "content_hash", "loaded_by", "loaded_at"]


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["pk", "checkpoint", "status", "current_stage", "target_stage", "tier",
                    "submitted_by", "updated_at"]
    list_filter = ["status", "current_stage"]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["release", "stage", "reviewer", "decision", "created_at"]


@admin.register(StagePublication)
class StagePublicationAdmin(ReadOnlyAdmin):
    list_display = ["release", "stage", "published_by", "published_at"]


@admin.register(PublicationSignature)
class PublicationSignatureAdmin(ReadOnlyAdmin):
    list_display = ["publication", "key_id", "model_signature", "attestation", "signed_at"]


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    list_display = ["release", "user", "status", "licence_version", "created_at"]
    list_filter = ["status"]


@admin.register(AccessGrant)
class AccessGrantAdmin(ReadOnlyAdmin):
    list_display = ["release", "user", "stage", "granted_at", "expires_at", "revoked_at"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Where release.* events are POSTed, signed with the secret (HMAC-SHA256)."""

    list_display = ["url", "events", "active", "created_at"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["endpoint", "event", "status", "attempts", "response_status", "created_at"]
    list_filter = ["status"]


@admin.register(PublicReference)
class PublicReferenceAdmin(ReadOnlyAdmin):
    """Marked and unmarked with `manage.py mark_public_reference` (audited)."""

    list_display = ["checkpoint", "note", "marked_by", "marked_at"]
