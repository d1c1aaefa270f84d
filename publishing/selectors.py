"""Reads of publishing: targets and their mirrors, for the release page and the family page."""

from __future__ import annotations

from publishing.models import Mirror, PublicationTarget
from releases.access import can_manage_access

CSS = {Mirror.State.IN_SYNC: "pass", Mirror.State.QUEUED: "status-queued",
       Mirror.State.SYNCING: "status-running", Mirror.State.DRIFTED: "fail",
       Mirror.State.FAILED: "fail", Mirror.State.ALARM: "fail",
       Mirror.State.WITHDRAWN: "status-withdrawn", Mirror.State.NOT_MIRRORED: "status-queued"}


def release_targets(user, release) -> list[dict]:
    """One row per target of the release's family: the target, this release's mirror on it (or
    None), whether the remote holds this release, and whether `user` may ask for a sync."""
    targets = list(PublicationTarget.objects.filter(family_id=release.checkpoint.family_id)
                   .order_by("endpoint", "remote_repo"))
    mirrors = {m.target_id: m for m in Mirror.objects.filter(release=release, target__in=targets)}
    may_sync = can_manage_access(user, release)
    rows = []
    for target in targets:
        mirror = mirrors.get(target.pk)
        rows.append({"target": target, "mirror": mirror,
                     "css": CSS.get(mirror.state, "") if mirror else "",
                     "carried": target.carried_release_id == release.pk,
                     "can_sync": may_sync and target.active})
    return rows


def family_targets(family) -> list[PublicationTarget]:
    return list(PublicationTarget.objects.filter(family=family)
                .select_related("carried_release__published_checkpoint", "created_by"))
