"""Celery tasks of releases: ids in, one call, safe to run twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib

import requests
from celery import shared_task
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from django.conf import settings


class WebhookRefused(Exception):
    """The endpoint answered with an error status; worth another try."""


@shared_task(name="releases.send_email", autoretry_for=(smtplib.SMTPException, ConnectionError),
             retry_backoff=30, max_retries=5)
def send_email(recipients: list[str], subject: str, body: str) -> int:
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@shared_task(name="releases.deliver_webhook", bind=True,
             autoretry_for=(requests.RequestException, WebhookRefused),
             retry_backoff=10, retry_backoff_max=3600, retry_jitter=True, max_retries=8)
def deliver_webhook(self, delivery_id: int) -> str:
    """POST one event, signed: X-Stagegate-Signature: sha256=HMAC(secret, body). A delivered
    event is never sent again; a failure is retried with back-off, then marked failed."""
    from audit.sealing import chain_position
    from releases.models import WebhookDelivery

    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update().select_related("endpoint")
                    .filter(pk=delivery_id).first())
        if delivery is None or delivery.status == WebhookDelivery.Status.DELIVERED:
            return "noop"
        delivery.attempts += 1
        delivery.attempted_at = timezone.now()
        delivery.save(update_fields=["attempts", "attempted_at"])
    body = json.dumps({**delivery.payload, **chain_position(delivery.audit_event)},
                      sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Stagegate-Webhooks/1",
               "X-Stagegate-Event": delivery.event, "X-Stagegate-Delivery": str(delivery.pk),
               "X-Stagegate-Signature": signature(delivery.endpoint.secret, body)}
    try:
        response = requests.post(delivery.endpoint.url, data=body, headers=headers, timeout=10)
        if response.status_code >= 300:
            raise WebhookRefused(f"HTTP {response.status_code}")
    except (requests.RequestException, WebhookRefused) as exc:
        final = self.request.retries >= self.max_retries
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            last_error=str(exc)[:2000],
            status=WebhookDelivery.Status.FAILED if final else WebhookDelivery.Status.PENDING)
        raise
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=WebhookDelivery.Status.DELIVERED, delivered_at=timezone.now(),
        response_status=response.status_code, last_error="")
    return "delivered"


class SigningFailed(Exception):
    """Signing met a transient error (storage, database); worth another try."""


@shared_task(name="releases.sign_publication", bind=True, max_retries=10)
def sign_publication_task(self, publication_id: int) -> str:
    """Sign one published stage (releases/signatures.py); a signed one is a no-op. Retried with
    back-off: a missing key or storage trouble is fixed by a person, then this succeeds."""
    from releases import signals
    from releases.signatures import sign_publication

    try:
        signature = sign_publication(publication_id=publication_id)
    except Exception as exc:  # noqa: BLE001 - retried; the last error is in the worker log
        raise self.retry(exc=SigningFailed(str(exc)),
                         countdown=min(3600, 30 * 2 ** self.request.retries))
    if signature is None:
        return "noop"
    publication = signature.publication
    signals.stage_published.send(sender=None, release_id=publication.release_id,
                                 stage=publication.stage)
    return "signed"
