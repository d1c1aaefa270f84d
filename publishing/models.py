"""Publication targets: where a family's published stages are mirrored (a repo on a Hugging Face
Hub), the state of each mirror, and the Hub account names of Stagegate's people.

Stagegate decides who may download what; a target only follows. Every change of these rows goes
through publishing/services.py (and the audit log)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from models.models import ModelFamily
from releases.models import Release


class PublicationTarget(models.Model):
    """One family's repo on one Hub. The token is named by an environment variable of the
    workers (`token_env`), or stored encrypted (publishing/tokens.py), never in clear."""

    family = models.ForeignKey(ModelFamily, on_delete=models.PROTECT,
                               related_name="publication_targets")
    endpoint = models.URLField(max_length=300, help_text="e.g. https://huggingface.co")
    remote_repo = models.CharField(max_length=200, help_text="REMOTE_ORG/NAME on that Hub")
    token_env = models.CharField(max_length=100, blank=True,
                                 help_text="The workers' environment variable holding the token")
    token_encrypted = models.TextField(blank=True, help_text="Fernet token (never shown)")
    active = models.BooleanField(default=True)
    carried_release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The release whose bytes the remote repo's main holds now.")
    remote_snapshot = models.JSONField(
        default=dict, blank=True,
        help_text="The remote as the last run that succeeded left it; whatever differs from it "
                  "at the next run changed outside Stagegate (drift).")
    claimed_until = models.DateTimeField(null=True, blank=True,
                                         help_text="A mirror run holds the target until then.")
    claimed_by = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["family__org", "family__name", "endpoint", "remote_repo"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "remote_repo"],
                                               name="one_family_per_remote_repo")]

    def __str__(self) -> str:
        return f"{self.family.repo_id} → {self.endpoint.rstrip('/')}/{self.remote_repo}"

    @property
    def remote_url(self) -> str:
        return f"{self.endpoint.rstrip('/')}/{self.remote_repo}"

    @property
    def token_source(self) -> str:
        if self.token_env:
            return f"environment variable {self.token_env}"
        return "stored encrypted" if self.token_encrypted else "none"


class Mirror(models.Model):
    """What Stagegate knows of one release on one target: the state of the last run and why."""

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        SYNCING = "syncing", "syncing"
        IN_SYNC = "in_sync", "in sync"
        DRIFTED = "drifted", "drifted"
        FAILED = "failed", "failed"
        ALARM = "alarm", "sha256 mismatch"
        WITHDRAWN = "withdrawn", "withdrawn (private)"
        NOT_MIRRORED = "not_mirrored", "not mirrored"

    target = models.ForeignKey(PublicationTarget, on_delete=models.CASCADE, related_name="mirrors")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="mirrors")
    stage = models.CharField(max_length=20, blank=True, help_text="The stage last mirrored.")
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    detail = models.TextField(blank=True, help_text="Why, in words (the reason of a failure).")
    notes = models.JSONField(default=list, blank=True,
                             help_text="What the last run did or could not do, one line each.")
    remote_commit = models.CharField(max_length=64, blank=True)
    verified = models.JSONField(default=dict, blank=True,
                                help_text="{path: sha256 read back from the remote}")
    attempts = models.PositiveIntegerField(default=0)
    requeued_attempt = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="The attempt count at which the reconciler re-queued it: once per attempt.")
    checked_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["target_id", "-release_id"]
        constraints = [models.UniqueConstraint(fields=["target", "release"],
                                               name="one_mirror_per_target_and_release")]

    def __str__(self) -> str:
        return f"release {self.release_id} on {self.target}: {self.state}"


class HubAccount(models.Model):
    """Who a Stagegate user is on a Hub: the name grants are made to. Recorded by a release
    manager (from a partner's agreement), never by the user: a self-declared name would let
    anyone have a partner's access granted to an account of their choosing."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="hub_accounts")
    endpoint = models.URLField(max_length=300)
    username = models.CharField(max_length=100)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["endpoint", "username"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "user"], name="one_hub_account_per_user"),
            models.UniqueConstraint(fields=["endpoint", "username"],
                                    name="one_user_per_hub_account")]

    def __str__(self) -> str:
        return f"{self.user} is {self.username} on {self.endpoint}"
