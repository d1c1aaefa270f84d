"""What a release event tells the world: the audit log (always, in the same transaction),
e-mail to the people it concerns, and signed webhooks for `release.*` events."""

from __future__ import annotations

import fnmatch

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.roles import RELEASE_MANAGERS
from audit.services import record_event


def record(*, actor, verb: str, release, data: dict) -> None:
    """The audit event of a release action, and a webhook delivery per matching endpoint."""
    from releases.models import WebhookDelivery, WebhookEndpoint

    event = record_event(actor=actor, verb=verb, obj=release, data=data)
    # The event's place in the chain (seq, hash) is added when the delivery is sent: it is
    # sealed after this transaction commits (audit/sealing.py).
    payload = {"event": verb, "audit_event": event.pk,
               "time": event.created_at.isoformat(), "actor": event.actor_username or None,
               "release": {"id": release.pk, "family": release.checkpoint.family.repo_id,
                           "checkpoint": release.checkpoint.label, "status": release.status,
                           "stage": release.current_stage or None,
                           "target_stage": release.target_stage or None,
                           "url": f"{settings.SITE_URL}{release.get_absolute_url()}"},
               "data": data}
    for endpoint in WebhookEndpoint.objects.filter(active=True):
        patterns = [p.strip() for p in endpoint.events.split(",") if p.strip()]
        if any(fnmatch.fnmatchcase(verb, p) for p in patterns):
            delivery = WebhookDelivery.objects.create(endpoint=endpoint, event=verb,
                                                      audit_event=event.pk, payload=payload)
            transaction.on_commit(lambda pk=delivery.pk: _queue_delivery(pk))


def _queue_delivery(delivery_id: int) -> None:
    from releases.tasks import deliver_webhook

    deliver_webhook.delay(delivery_id)


def _mail(recipients, subject: str, body: str) -> None:
    from releases.tasks import send_email

    addresses = sorted({u.email for u in recipients if u.email})
    if addresses:
        send_email.delay(addresses, f"[Stagegate] {subject}", body)


def _release(release_id: int):
    from releases.models import Release

    return Release.objects.select_related("checkpoint__family", "submitted_by").get(pk=release_id)


def _link(release) -> str:
    return f"{settings.SITE_URL}{release.get_absolute_url()}"


def waiting_for_review(release_id: int) -> None:
    """Mail the members of each role the release still needs an approval from."""
    from releases.selectors import needed_roles

    release = _release(release_id)
    roles = needed_roles(release)
    users = get_user_model().objects.filter(groups__name__in=roles, is_active=True).exclude(
        pk=release.submitted_by_id).distinct()
    _mail(users, f"{release.checkpoint} waits for your review ({release.target_stage})",
          f"Release {release.pk} of {release.checkpoint} asks for the stage "
          f"{release.target_stage} and needs approval from: {', '.join(roles)}.\n\n{_link(release)}\n")


def decided(release_id: int, decision: str, reviewer: str) -> None:
    release = _release(release_id)
    _mail([release.submitted_by], f"{reviewer}: {decision.replace('_', ' ')} on {release.checkpoint}",
          f"{reviewer} decided '{decision.replace('_', ' ')}' on release {release.pk} "
          f"({release.target_stage}). It is now {release.get_status_display()}.\n\n{_link(release)}\n")


def approved(release_id: int) -> None:
    release = _release(release_id)
    managers = get_user_model().objects.filter(groups__name=RELEASE_MANAGERS, is_active=True)
    _mail([release.submitted_by, *managers], f"{release.checkpoint} approved for {release.target_stage}",
          f"Release {release.pk} has every approval it needs for {release.target_stage}; a release "
          f"manager can publish it.\n\n{_link(release)}\n")


def published(release_id: int) -> None:
    release = _release(release_id)
    _mail([release.submitted_by], f"{release.checkpoint} published to {release.current_stage}",
          f"Release {release.pk} is now open to its {release.current_stage} audience.\n\n"
          f"{_link(release)}\n")


def withdrawn(release_id: int) -> None:
    release = _release(release_id)
    from releases.access import past_downloaders

    recipients = [release.submitted_by, *past_downloaders(release)]
    _mail(recipients, f"{release.checkpoint} has been withdrawn",
          f"Release {release.pk} of {release.checkpoint} was withdrawn: {release.withdrawn_reason}\n"
          f"Access to it has been revoked. If you downloaded its weights, please delete them.\n\n"
          f"{_link(release)}\n")
