"""What a family's owners read through the Hub API about checkpoints no release publishes yet:
the head they commit on (`main`), or a checkpoint by label or commit. Everyone else reads the
Hub only through releases (releases.hub); downloads (`/resolve`) always go through releases."""

from __future__ import annotations

import re

from models import services
from models.hub_http import git_oid, lfs_pointer
from models.hub_services import write_head
from models.models import Checkpoint, ModelFamily

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def unreleased_checkpoint(user, org: str, name: str, rev: str | None) -> Checkpoint | None:
    family = ModelFamily.objects.filter(org=org, name=name).first()
    if family is None or user is None or not services.can_submit_to(user, family):
        return None
    rev = rev or "main"
    if rev == "main":
        return write_head(family)
    checkpoints = Checkpoint.objects.filter(family=family)
    if COMMIT_RE.match(rev):
        return checkpoints.filter(manifest_digest__startswith=rev).first()
    return checkpoints.filter(label=rev).first()


def _zulu(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def unreleased_info_json(checkpoint: Checkpoint, *, blobs: bool) -> dict:
    family = checkpoint.family
    siblings = []
    for f in checkpoint.files.all():
        entry = {"rfilename": f.path}
        if blobs:
            pointer = lfs_pointer(f.blob_id, f.size)
            entry.update({"size": f.size, "blobId": git_oid(pointer),
                          "lfs": {"sha256": f.blob_id, "size": f.size,
                                  "pointerSize": len(pointer)}})
        siblings.append(entry)
    return {
        "_id": f"stagegate-checkpoint-{checkpoint.pk}", "id": family.repo_id,
        "modelId": family.repo_id, "author": family.org, "sha": checkpoint.commit,
        "lastModified": _zulu(checkpoint.created_at), "createdAt": _zulu(family.created_at),
        "private": True, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
        "tags": ["stagegate", "unreleased"], "siblings": siblings, "spaces": [],
        "usedStorage": sum(f.size for f in checkpoint.files.all()),
        "stagegate": {"checkpoint": checkpoint.pk, "label": checkpoint.label,
                      "status": checkpoint.status, "released": False,
                      "manifest_digest": checkpoint.manifest_digest},
    }
