"""Mail about a target: to the release managers, when what the Hub holds is not what Stagegate
decided (drift found, a sha256 mismatch). Sent after commit, by the releases mail task."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model

from accounts.roles import RELEASE_MANAGERS


def _send(subject: str, body: str) -> None:
    from releases.tasks import send_email

    managers = get_user_model().objects.filter(groups__name=RELEASE_MANAGERS, is_active=True)
    addresses = sorted({u.email for u in managers if u.email})
    if addresses:
        send_email.delay(addresses, f"[Stagegate] {subject}", body)


def _mirror(mirror_id: int):
    from publishing.models import Mirror

    return Mirror.objects.select_related("target", "release__checkpoint__family").get(pk=mirror_id)


def drift(mirror_id: int, findings: list[str]) -> None:
    mirror = _mirror(mirror_id)
    link = f"{settings.SITE_URL}{mirror.release.get_absolute_url()}"
    _send(f"{mirror.target.remote_url} changed outside Stagegate",
          f"The publication target {mirror.target.remote_url} of release {mirror.release_id} "
          f"({mirror.release.checkpoint}) was changed outside Stagegate:\n\n"
          + "".join(f"- {line}\n" for line in findings)
          + f"\nStagegate is putting it back as the release's {mirror.stage} stage says; the "
          f"release page shows whether that worked.\n\n{link}\n")


def mismatch(mirror_id: int, mismatches: list[str]) -> None:
    mirror = _mirror(mirror_id)
    link = f"{settings.SITE_URL}{mirror.release.get_absolute_url()}"
    _send(f"ALARM: {mirror.target.remote_url} does not hold the approved bytes",
          f"After mirroring release {mirror.release_id} ({mirror.release.checkpoint}), the Hub "
          f"{mirror.target.remote_url} holds files whose sha256 is not the manifest's:\n\n"
          + "".join(f"- {line}\n" for line in mismatches)
          + "\nThe remote repo has been made private. Find out why before syncing again.\n\n"
          + f"{link}\n")
