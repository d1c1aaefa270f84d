"""The periodic reconciler: one mirror run per active target, for the release Stagegate says
the target carries (or should). Finding drift is the run's job (publishing/mirror.py)."""

from __future__ import annotations

from publishing import services
from publishing.desired import leading_release
from publishing.models import PublicationTarget


def queue_reconciliation() -> int:
    queued = 0
    for target in PublicationTarget.objects.filter(active=True).select_related(
            "family", "carried_release"):
        release = target.carried_release
        if release is None or release.status != release.Status.WITHDRAWN:
            release = leading_release(target.family) or release
        if release is None:
            continue
        services.queue_mirror(release=release, target=target, trigger="reconcile")
        queued += 1
    return queued
