"""The registry's writes through the Hub protocol: repos are families, a commit is a checkpoint.

Who may write: a repo's owners (its family's owners group), with the researchers role, as in
submit_checkpoint. Who may create a repo `org/name`: a researcher, in their own namespace (their
user name), in an organisation they belong to (they own a family of that org), or in a new
organisation, which they then own. Every refusal is an audit event (`permission.denied`).
"""

from __future__ import annotations

import logging

from django.db import transaction

from audit.services import deny, records_refusals
from models import services
from models.errors import SubmissionError
from models.formats import FormatError
from models.formats.layout import normalize_path
from models.models import Checkpoint, ModelFamily
from models.selectors import families_visible_to
from models.xet import store as xet_store

log = logging.getLogger("stagegate.registry")

GIT_EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's oid of a 0-byte file


class RepoExists(SubmissionError):
    status = 409


class NotWritable(SubmissionError):
    """The caller may not write here; `hidden` when they may not even know the repo exists."""

    status = 403

    def __init__(self, message: str, *, hidden: bool = False):
        super().__init__(message)
        self.hidden = hidden


# --- namespaces and permissions -----------------------------------------------------------------

def organisations_of(user) -> list[str]:
    """The organisations a user belongs to: the orgs of the families they own."""
    if not getattr(user, "is_authenticated", False):
        return []
    return sorted(set(ModelFamily.objects.filter(owners__user=user)
                      .values_list("org", flat=True)))


@records_refusals
def create_repo(*, actor, family_name: str, visibility: str | None = None) -> ModelFamily:
    """Create a family through the Hub API (`hf repo create`). Guard: services.namespace_refusal; the
    family must be new (RepoExists otherwise, which the client ignores with exist_ok). Side
    effects: the owners group with the actor in it, `family.created`."""
    org, name = services.parse_family_name(family_name)
    reason = services.namespace_refusal(actor, org)
    if reason:
        raise deny(actor=actor, action="repo.create", reason=reason)
    if visibility not in (None, "private"):
        raise SubmissionError(f"visibility {visibility!r}: Stagegate repos stay private until a "
                              "reviewed release publishes a checkpoint; create it without "
                              "--public (or with private=True)")
    with transaction.atomic():
        if ModelFamily.objects.filter(org__iexact=org, name__iexact=name).exists():
            raise RepoExists(f"You already created this model repo: {org}/{name}")
        family, _ = services._get_or_create_family(actor=actor, org=org, name=name)
    return family


def writable_family(*, actor, repo_id: str, action: str) -> ModelFamily:
    """The family `actor` may commit to, or a Refused (audit event) saying why not. To someone
    who cannot see the family in the registry, it does not exist, exactly as a missing one."""
    org, _, name = repo_id.partition("/")
    family = ModelFamily.objects.filter(org=org, name=name).first()
    if family is not None and services.can_submit_to(actor, family):
        return family
    visible = family is not None and families_visible_to(actor).filter(pk=family.pk).exists()
    reason = (f"{actor} may not write to {repo_id}: only its owners may"
              if visible else f"{actor} may not write to {repo_id}: no such repo")
    refusal = deny(actor=actor, action=action, obj=family if visible else None, reason=reason)
    refusal.hidden = not visible
    raise refusal


def write_head(family: ModelFamily) -> Checkpoint | None:
    """The checkpoint a new commit builds on (the Hub's `main` for writers): the family's newest
    one that is not an automatic conversion."""
    return (Checkpoint.objects.filter(family=family, converted_from__isnull=True)
            .order_by("-created_at", "-id").first())


def upload_modes(*, family: ModelFamily, files: list[dict]) -> list[dict]:
    """The preupload answer: every non-empty file goes through LFS or Xet (it becomes a blob
    either way, and chunk dedup only works there); `oid` is the file's at main, so the client
    skips files that did not change (and resumes an interrupted upload)."""
    head = write_head(family)
    at_head = {f.path: f for f in head.files.all()} if head else {}
    answer = []
    for item in files:
        path = item.get("path")
        if not isinstance(path, str):
            raise SubmissionError("preupload: every file needs a string `path`")
        try:
            normalize_path(path)  # refuse a bad path before any byte is sent
        except FormatError as exc:
            raise SubmissionError(str(exc)) from None
        size = item.get("size")
        entry = {"path": path, "uploadMode": "regular" if size == 0 else "lfs",
                 "shouldIgnore": False}
        current = at_head.get(path)
        if current is not None:
            entry["oid"] = GIT_EMPTY_BLOB if current.size == 0 else current.blob_id
        answer.append(entry)
    return answer


def purge_expired_hub_uploads(*, now=None) -> int:
    """Forget receipts past their expiry (STAGEGATE_UPLOAD_SESSION_HOURS) and delete blobs that
    only an uncommitted LFS upload kept, and multipart files nobody completed; then let the Xet
    CAS collect (models/xet/store.py, collect). Safe to run twice: a receipt is deleted once, a
    blob only when nothing refers to it."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from models import lfs
    from models.models import HubUpload

    now = now or timezone.now()
    count = 0
    with transaction.atomic():
        expired = HubUpload.objects.select_for_update(skip_locked=True).filter(expires_at__lt=now)
        shas = [sha for sha in expired.exclude(blob__isnull=True).values_list("blob_id", flat=True)]
        count, _ = expired.delete()
        services._drop_unreferenced_blob_rows(shas)
    lfs.purge_stale_parts(older_than=timedelta(hours=settings.STAGEGATE_UPLOAD_SESSION_HOURS))
    collected = xet_store.collect(now=now)
    if any(collected.values()):
        log.info("Xet CAS collected: %(files)d uncommitted file(s) forgotten, %(xorbs_dropped)d "
                 "xorb(s) now read from committed files, %(xorbs_deleted)d unused xorb(s) "
                 "deleted", collected)
    return count
