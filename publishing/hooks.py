"""Receivers of the releases signals (sent after commit): each queues mirror runs, nothing more.

Every target of the release's family gets a run, not only the one carrying the release: a run
works out what the target should be when it runs, and runs of one target are serialised (its
claim), so a withdrawal during a publication's run is applied right after that run."""

from __future__ import annotations


def _queue(release_id: int, trigger: str) -> None:
    from publishing.services import queue_family_mirrors
    from releases.models import Release

    release = Release.objects.select_related("checkpoint__family").filter(pk=release_id).first()
    if release is not None and release.current_stage not in ("", "internal"):
        queue_family_mirrors(release=release, trigger=trigger)


def stage_published(sender, release_id: int, stage: str, **kwargs) -> None:
    _queue(release_id, "publish")


def release_withdrawn(sender, release_id: int, **kwargs) -> None:
    _queue(release_id, "withdraw")


def access_changed(sender, release_id: int, **kwargs) -> None:
    _queue(release_id, "access")
