"""Releases: policy versions, the release state machine's rows, reviews and stage history.

Statuses and stages are defined here once; every change of them is in releases/workflow.py.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.db import models
from django.urls import reverse

from models.models import Checkpoint


class PolicyVersion(models.Model):
    """A policy's exact YAML text, loaded once; releases pin the version they were submitted
    under. The newest version is the one new releases get."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=40)
    content_hash = models.CharField(max_length=64, unique=True)
    text = models.TextField()
    source = models.CharField(max_length=300, blank=True)
    loaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                  on_delete=models.SET_NULL, related_name="+")
    loaded_at = models.DateTimeField(auto_now_add=True)
    evidence = models.JSONField(
        default=dict, blank=True,
        help_text="Pinned at load time, for every eval the policy reads: the exact parameters and "
                  "the sha256 of every pack that count ({eval: {params, packs}}). Runs with any "
                  "other key are exploratory.")

    class Meta:
        ordering = ["-loaded_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.content_hash[:10]})"

    @property
    def evidence_spec(self) -> dict:
        """The pinned evidence; a version loaded before evidence was pinned pins it on first
        use (once: the row is updated)."""
        if not self.evidence:
            from releases.policies_service import resolve_evidence

            self.evidence = resolve_evidence(self.policy)
            PolicyVersion.objects.filter(pk=self.pk, evidence={}).update(evidence=self.evidence)
        return self.evidence

    @property
    def policy(self):
        return parsed_policy(self.content_hash, self.text, self.source or f"{self.name}.yaml")


@lru_cache(maxsize=32)
def parsed_policy(content_hash: str, text: str, source: str):
    """Policies are immutable and keyed by their hash, so each is parsed once per process,
    however many releases (each with its own PolicyVersion instance) ask."""
    from releases.policy import load_policy

    return load_policy(text, source=source)


class Release(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        SUBMITTED = "submitted", "submitted"
        EVALUATING = "evaluating", "evaluating"
        IN_REVIEW = "in_review", "in review"
        CHANGES_REQUESTED = "changes_requested", "changes requested"
        APPROVED = "approved", "approved"
        PUBLISHED = "published", "published"
        REJECTED = "rejected", "rejected"
        WITHDRAWN = "withdrawn", "withdrawn"

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="releases")
    manifest_digest = models.CharField(max_length=64, help_text="Pinned: the bytes under review.")
    published_checkpoint = models.ForeignKey(
        Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The bytes every published stage serves, pinned at the first publication; "
                  "from then on the release's checkpoint can never change (new bytes are a new "
                  "release).")
    supersedes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="superseded_by",
                                   help_text="The release whose bytes this one replaces.")
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT,
                                       related_name="releases")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                     related_name="releases")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    target_stage = models.CharField(max_length=20, blank=True,
                                    help_text="The stage this release is asking for next.")
    current_stage = models.CharField(max_length=20, blank=True,
                                     help_text="The widest stage published; empty before any.")
    stage_entered_at = models.DateTimeField(null=True, blank=True)
    tier = models.CharField(max_length=40, blank=True)
    awaiting_roles = models.CharField(
        max_length=200, blank=True, db_index=True,
        help_text="While in review: the roles whose approvals are still needed, as ',a,b,'. "
                  "Kept by the workflow so the review queue is one indexed query.")
    failed_evals = models.JSONField(
        default=list, blank=True,
        help_text="Required evals that failed or errored, [{eval, error}], kept by the workflow "
                  "so the review queue can say why without re-reading every run.")
    assessment = models.JSONField(default=dict)
    withdrawn_reason = models.TextField(blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "updated_at"])]
        constraints = [models.CheckConstraint(
            # The database itself refuses new bytes behind a published stage.
            condition=models.Q(published_checkpoint__isnull=True)
            | models.Q(published_checkpoint=models.F("checkpoint")),
            name="published_bytes_never_change")]

    def __str__(self) -> str:
        return f"release {self.pk} of {self.checkpoint}"

    @property
    def served_checkpoint(self) -> Checkpoint | None:
        """What the release's audiences get: the pinned checkpoint, never the current one."""
        return self.published_checkpoint
    @property
    def is_terminal(self) -> bool:
        return self.status in (self.Status.REJECTED, self.Status.WITHDRAWN)

    def get_absolute_url(self) -> str:
        return reverse("releases:release-detail", args=[self.pk])


class Review(models.Model):
    """One reviewer's decision (or comment) on one stage of a release. It counts toward a
    quorum only while the release's bytes and policy are the ones it was given for."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "approve"
        REJECT = "reject", "reject"
        REQUEST_CHANGES = "request_changes", "request changes"
        COMMENT = "comment", "comment"

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="reviews")
    stage = models.CharField(max_length=20)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="reviews")
    roles = models.JSONField(default=list, help_text="The reviewer's roles when deciding.")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    comment = models.TextField(blank=True)
    manifest_digest = models.CharField(max_length=64)
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.decision} {self.stage}"

    def standing(self, release: Release) -> str:
        """'' while it counts; else why not, in words (for the release page)."""
        if self.decision == self.Decision.COMMENT:
            return ""
        if self.stage != release.target_stage:
            return f"for {self.stage}"
        if self.manifest_digest != release.manifest_digest:
            return "void: given for other bytes"
        if self.policy_version_id != release.policy_version_id:
            return "void: given under an earlier policy"
        return ""

    def binds(self, release: Release) -> bool:
        """Still valid: same stage sought, same bytes, same policy."""
        return (self.stage == release.target_stage
                and self.manifest_digest == release.manifest_digest
                and self.policy_version_id == release.policy_version_id)


class StagePublication(models.Model):
    """The history of a release's stages: who opened which stage, when, for which bytes, under
    which tier (the stage's access rules are that tier's, whatever evals run later)."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="publications")
    stage = models.CharField(max_length=20)
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    manifest_digest = models.CharField(max_length=64)
    tier = models.CharField(max_length=40, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                     related_name="+")
    published_at = models.DateTimeField()
    decision = models.JSONField(default=dict, blank=True,
                                help_text="What the decision read (releases/attestation.py), "
                                          "taken in the publish transition; signed after it.")

    class Meta:
        ordering = ["published_at", "id"]


class PublicationSignature(models.Model):
    """The lab's signatures of one published stage (releases/signatures.py): the OpenSSF model
    signature of its files and the signed release attestation, both blobs, served in the Hub
    tree as model.sig and release.intoto.json. `mirror_signature` is the model signature for a
    gated Hub target, whose README.md carries the Hub's access form: it declares README.md
    unsigned."""

    publication = models.OneToOneField(StagePublication, on_delete=models.PROTECT,
                                       related_name="signature")
    key_id = models.CharField(max_length=64)
    model_signature = models.ForeignKey("registry.Blob", on_delete=models.PROTECT,
                                        related_name="+")
    attestation = models.ForeignKey("registry.Blob", on_delete=models.PROTECT, related_name="+")
    mirror_signature = models.ForeignKey("registry.Blob", null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"signature of {self.publication.stage} (key {self.key_id[:12]})"


class BytesReopening(models.Model):
    """A reviewer's decision that bytes a release was rejected (or withdrawn) for may start a
    new release after all. Without one, those bytes cannot be released again."""

    release = models.OneToOneField(Release, on_delete=models.PROTECT, related_name="reopening",
                                   help_text="The rejected or withdrawn release this lifts.")
    manifest_digest = models.CharField(max_length=64, db_index=True)
    reason = models.TextField()
    reopened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"bytes {self.manifest_digest[:12]} reopened by {self.reopened_by}"


class WebhookEndpoint(models.Model):
    """Where `release.*` events are POSTed, signed with HMAC-SHA256 of the body."""

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200)
    events = models.CharField(max_length=200, default="release.*",
                              help_text="Comma-separated event patterns, e.g. release.*")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    event = models.CharField(max_length=100)
    audit_event = models.BigIntegerField(help_text="The id of the audit event this delivery "
                                                   "announces.")
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When the last attempt began.")
    requeued_attempt = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="The attempt count at which the reconciler re-queued it: once per attempt.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "audit_event"],
                                               name="one_delivery_per_event_and_endpoint")]

    def __str__(self) -> str:
        return f"{self.event} (audit event {self.audit_event}) to {self.endpoint_id}"


class AccessRequest(models.Model):
    """Someone asking for a gated release: the policy's form answers and the licence they
    accepted. Approved at once when the policy says `automatic`, else by a release manager."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        CANCELLED = "cancelled", "cancelled"

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="access_requests")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="access_requests")
    stage = models.CharField(max_length=20, default="gated")
    answers = models.JSONField(default=dict)
    licence_version = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.user} → release {self.release_id} ({self.status})"


class AccessGrant(models.Model):
    """Access to a release's weights for one person: a named partner (with an agreement and an
    expiry) or a gated user whose request was approved. Revocable; never deleted."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="access_grants")
    stage = models.CharField(max_length=20)
    licence_version = models.CharField(max_length=100)
    agreement_note = models.TextField(blank=True)
    request = models.OneToOneField(AccessRequest, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="grant")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    revoke_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-granted_at", "-id"]
        indexes = [models.Index(fields=["release", "user"])]

    def __str__(self) -> str:
        return f"{self.user} may download release {self.release_id} ({self.stage})"

    def is_active_at(self, when) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > when)


class PublicReference(models.Model):
    """A checkpoint the lab marks as already public (say, the best open model of similar size
    it has evaluated with the same evals and packs): a policy's relative thresholds
    (`max_above_reference`, `reference: org/name@label`) compare a release with its results.
    Marking and unmarking go through releases/references.py (audited)."""

    checkpoint = models.OneToOneField(Checkpoint, on_delete=models.PROTECT,
                                      related_name="public_reference")
    note = models.TextField(help_text="Where and since when it is public, in words.")
    marked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                  on_delete=models.SET_NULL, related_name="+")
    marked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-marked_at", "-id"]

    def __str__(self) -> str:
        return f"{self.checkpoint} (already public)"
