"""The checkpoint registry: families, checkpoints, their files and the blobs behind them."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.urls import reverse
from django.utils import timezone

from models.formats.layout import FileKind

FAMILY_NAME_RE = re.compile(r"^(?P<org>[A-Za-z0-9][A-Za-z0-9._-]{0,95})/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,95})$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelFamily(models.Model):
    """`org/name`, which is also the family's repo id on the hub."""

    org = models.CharField(max_length=96)
    name = models.CharField(max_length=96)
    description = models.TextField(blank=True)
    owners = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="owned_family")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["org", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="unique_family_name")]
        verbose_name_plural = "model families"

    def __str__(self) -> str:
        return self.repo_id

    @property
    def repo_id(self) -> str:
        return f"{self.org}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("registry:family-detail", args=[self.org, self.name])


class Blob(models.Model):
    """Content-addressed bytes, stored once at `blobs/ab/cd/<sha256>` (see blobstore.py)."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256


class Checkpoint(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", "received"
        SCANNING = "scanning", "scan pending"
        READY = "ready", "ready"
        QUARANTINED = "quarantined", "quarantined"

    family = models.ForeignKey(ModelFamily, on_delete=models.PROTECT, related_name="checkpoints")
    label = models.CharField(max_length=128)
    manifest_digest = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    census = models.JSONField(default=dict)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                     on_delete=models.SET_NULL, related_name="submitted_checkpoints")
    converted_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="conversions",
        help_text="For a safetensors conversion: the PyTorch checkpoint it was made from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["family", "label"],
                                               name="unique_label_per_family")]

    def __str__(self) -> str:
        return f"{self.family.repo_id}@{self.label}"

    @property
    def commit(self) -> str:
        """The hub "commit": the manifest digest's first 40 hex characters."""
        return self.manifest_digest[:40]

    @property
    def is_loadable(self) -> bool:
        """Only a ready checkpoint may be loaded, evaluated, reviewed or published."""
        return self.status == self.Status.READY

    @property
    def parameters(self) -> int:
        return int(self.census.get("parameters", {}).get("total", 0))

    def get_absolute_url(self) -> str:
        return reverse("registry:checkpoint-detail", args=[self.pk])


class CheckpointFile(models.Model):
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=512)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="checkpoint_files")
    size = models.BigIntegerField()
    kind = models.CharField(max_length=24, choices=FileKind.CHOICES)
    header = models.JSONField(default=dict, blank=True,
                              help_text="For safetensors: tensors (dtype, shape) and __metadata__.")
    risk_accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+")
    risk_accepted_at = models.DateTimeField(null=True, blank=True)
    risk_justification = models.TextField(blank=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["checkpoint", "path"],
                                               name="unique_path_per_checkpoint")]

    def __str__(self) -> str:
        return self.path

    @property
    def sha256(self) -> str:
        return self.blob_id

    @property
    def needs_scan(self) -> bool:
        return self.kind == FileKind.PICKLE


class ScanReport(models.Model):
    """The static scanner's verdict on one blob, for one version of the scanner. Keyed by bytes,
    not by checkpoint: the same bytes submitted twice are scanned once."""

    class Verdict(models.TextChoices):
        SAFE = "safe", "safe"
        UNSAFE = "unsafe", "unsafe"
        UNKNOWN = "unknown", "unknown"

    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name="scan_reports")
    scanner_version = models.CharField(max_length=64)
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    format = models.CharField(max_length=32)
    findings = models.JSONField(default=list)
    globals = models.JSONField(default=list)
    tensors = models.JSONField(null=True, blank=True)
    bytes_scanned = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["blob", "scanner_version"],
                                               name="one_report_per_blob_and_scanner")]

    def __str__(self) -> str:
        return f"{self.blob_id[:12]} {self.verdict}"


class UploadSession(models.Model):
    """A checkpoint being uploaded one streaming PUT per file, committed in one request.

    Its files are already blobs (so any web process can take the next request); an abandoned
    session is purged with its unreferenced blobs after STAGEGATE_UPLOAD_SESSION_HOURS.
    """

    class Status(models.TextChoices):
        OPEN = "open", "open"
        COMMITTED = "committed", "committed"
        ABORTED = "aborted", "aborted"

    family_name = models.CharField(max_length=193)
    label = models.CharField(max_length=128)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                   related_name="upload_sessions")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"upload {self.pk} {self.family_name}@{self.label}"


class UploadSessionFile(models.Model):
    session = models.ForeignKey(UploadSession, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=512)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="+")
    size = models.BigIntegerField()

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["session", "path"],
                                               name="unique_path_per_upload")]


# --- uploads through the Hub client (LFS and Xet) ------------------------------------------------

class Xorb(models.Model):
    """A xorb the Xet client uploaded: its bytes sit in the blob storage at `xorbs/ab/cd/<hash>`
    (as uploaded: chunk headers and compressed data), its chunk table here, every chunk hash
    verified against the bytes on the way in."""

    hash = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField(help_text="Serialized bytes, as stored.")
    unpacked_size = models.BigIntegerField()
    chunk_count = models.IntegerField()
    chunk_table = models.BinaryField(help_text="Per chunk: hash, header offset, unpacked size.")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                    on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(default=timezone.now, help_text=(
        "When a dedup answer offered it or a shard used it last: a client may name it until "
        "well after that, so it is kept."))
    bytes_dropped_at = models.DateTimeField(null=True, blank=True, help_text=(
        "Set when every chunk is in a committed file: the bytes are deleted and chunks are read "
        "from those files' blobs (models/xet/store.py, collect)."))

    def __str__(self) -> str:
        return f"xorb {self.hash[:12]}"


class XetChunk(models.Model):
    """The global-dedup index: chunks the client may ask about (a file's first chunk, and those
    whose hash is 0 mod 1024), and the xorb that holds each."""

    chunk_hash = models.CharField(max_length=64, db_index=True)
    xorb = models.ForeignKey(Xorb, on_delete=models.CASCADE, related_name="indexed_chunks")
    index = models.IntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chunk_hash", "xorb"],
                                               name="one_index_row_per_chunk_and_xorb")]


class XetFile(models.Model):
    """A file a shard registered: how to rebuild it from xorb chunks, and the sha256 the
    uploader says it has (checked when a commit rebuilds it)."""

    file_hash = models.CharField(max_length=64, primary_key=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True, help_text=(
        "When a commit rebuilt it from its chunks and the bytes hashed to its sha256: only then "
        "may its blob stand in for the chunks."))

    def __str__(self) -> str:
        return f"xet file {self.file_hash[:12]}"


class XetTerm(models.Model):
    file = models.ForeignKey(XetFile, on_delete=models.CASCADE, related_name="terms")
    position = models.IntegerField()
    xorb = models.ForeignKey(Xorb, on_delete=models.PROTECT, related_name="terms")
    start = models.IntegerField()
    end = models.IntegerField()
    unpacked = models.BigIntegerField()

    class Meta:
        ordering = ["file", "position"]
        constraints = [models.UniqueConstraint(fields=["file", "position"],
                                               name="one_term_per_file_position")]


class HubUpload(models.Model):
    """Bytes a user sent for a repo through LFS or Xet, which that user may now name in a
    commit. Naming a sha256 is not enough to commit it: the committer must have uploaded the
    bytes (or see them in a checkpoint already), so knowing a digest never grants its content.
    Expired receipts are purged with any blob only they kept."""

    class Via(models.TextChoices):
        LFS = "lfs", "LFS"
        XET = "xet", "Xet"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="hub_uploads")
    family = models.ForeignKey(ModelFamily, on_delete=models.CASCADE, related_name="hub_uploads")
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    via = models.CharField(max_length=3, choices=Via.choices)
    blob = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+")
    xet_file = models.ForeignKey(XetFile, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "sha256"], name="hub_upload_user_sha")]

    def __str__(self) -> str:
        return f"{self.via} upload {self.sha256[:12]} by {self.user}"


class TrustedSigner(models.Model):
    """A key whose OpenSSF model signatures a family trusts on the checkpoints submitted to it
    (models/provenance.py): a submitted `model.sig` by this key over exactly the submitted
    files is "signed by <name>"."""

    family = models.ForeignKey(ModelFamily, on_delete=models.CASCADE,
                               related_name="trusted_signers")
    name = models.CharField(max_length=200, help_text="Who holds the key, e.g. 'training-ci'.")
    key_id = models.CharField(max_length=64, help_text="sha256 of the public key's PEM.")
    public_pem = models.TextField()
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["family", "key_id"],
                                               name="one_trusted_signer_per_key")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id[:12]}) for {self.family}"
