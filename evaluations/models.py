"""Evaluation runs and what they read that is not in the repo: uploaded packs, canaries and
extraction prefixes registered per family."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from models.models import Blob, Checkpoint, ModelFamily


class EvalPack(models.Model):
    """A pack uploaded by a lab (built-in packs ship in evaluations/packs/). Immutable: a new
    version is a new row."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=40)
    type = models.CharField(max_length=40)
    description = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64)
    content = models.TextField(help_text="The pack's JSONL text, exactly as uploaded.")
    items = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_pack_version")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class Canary(models.Model):
    """A secret inserted into a family's training data on purpose. The secret is stored because
    exposure needs it, and is never rendered, logged, or returned by the API."""

    family = models.ForeignKey(ModelFamily, on_delete=models.CASCADE, related_name="canaries")
    template = models.CharField(max_length=500)
    alphabet = models.CharField(max_length=200)
    length = models.PositiveSmallIntegerField()
    secret = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.label} ({self.family})"

    @property
    def label(self) -> str:
        return f"canary-{self.pk}"


class ExtractionPrefix(models.Model):
    """A (prefix, continuation) pair from a family's training data, for verbatim_extraction.
    The continuation is what an attacker would extract: never shown after registration."""

    family = models.ForeignKey(ModelFamily, on_delete=models.CASCADE,
                               related_name="extraction_prefixes")
    prefix = models.TextField()
    continuation = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    @property
    def label(self) -> str:
        return f"prefix-{self.pk}"


class EvalRun(models.Model):
    """One evaluation of one checkpoint's bytes, unique on its cache key: a second request
    for the same (manifest digest, eval, version, code, packs, params, other inputs) reuses it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"      # the eval ran and refused (e.g. integrity mismatch)
        ERRORED = "errored", "errored"  # the machinery broke; a person may ask again

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.ERRORED)

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="eval_runs")
    manifest_digest = models.CharField(max_length=64, db_index=True)
    eval_name = models.CharField(max_length=64)
    eval_version = models.PositiveIntegerField()
    code_hash = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    inputs = models.JSONField(default=dict, help_text="What the cache key covers (no secrets).")
    context = models.JSONField(default=dict,
                               help_text="Ids and snapshots the run reads: packs, canaries, parent.")
    cache_key = models.CharField(max_length=64, unique=True)
    queue = models.CharField(max_length=16, default="evals")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    attempt = models.PositiveIntegerField(default=0)
    claimed_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="One sentence a person can act on.")
    error_detail = models.TextField(blank=True, help_text="The traceback, for operators (admin "
                                                          "and worker log), never on the page.")
    attempts_before_retry = models.PositiveIntegerField(
        default=0, help_text="`attempt` when a person last asked again: the attempt bound counts "
                             "from here.")
    metrics = models.JSONField(default=dict)
    result = models.JSONField(default=dict, help_text="lm-evaluation-harness shaped record.")
    samples = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+", help_text="Per-sample rows, JSONL.")
    artifacts = models.JSONField(default=dict, help_text="file name -> blob sha256 (plots).")
    device = models.CharField(max_length=32, blank=True)
    dtype = models.CharField(max_length=32, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    requeued_attempt = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="The attempt the reconciler last re-queued this run for: once per attempt.")
    requeued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["manifest_digest", "eval_name", "status"])]

    def __str__(self) -> str:
        return f"{self.eval_name} on {self.manifest_digest[:12]} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def can_retry(self) -> bool:
        """A person may ask again for a run that failed or errored (nothing else re-queues it)."""
        return self.status in (self.Status.FAILED, self.Status.ERRORED)

    @property
    def progress_percent(self) -> int:
        if not self.progress_total:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return min(100, int(100 * self.progress_done / self.progress_total))

    def get_absolute_url(self) -> str:
        return reverse("evaluations:run-detail", args=[self.pk])


class HarnessTask(models.Model):
    """A task a lab already has for an evaluation framework (an lm-evaluation-harness YAML
    task or an Inspect task file), registered with its data files as an eval under the task's own name. Immutable: a
    new version is a new row; its identity is the sha256 of the config and files together."""

    class Kind(models.TextChoices):
        LM_EVAL = "lm_eval", "lm-evaluation-harness task"
        INSPECT = "inspect", "Inspect task"

    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    version = models.CharField(max_length=40)
    sha256 = models.CharField(max_length=64)
    config = models.TextField(help_text="The task's YAML (lm-eval) or Python file (Inspect), "
                                        "exactly as uploaded.")
    files = models.JSONField(default=dict, help_text="Data files: relative path -> UTF-8 text.")
    metrics = models.JSONField(default=dict, help_text="metric -> higher is better, from the "
                                                       "task's metric_list.")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "sha256"],
                                               name="unique_task_content")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, {self.sha256[:12]})"
