"""Mail to the roles a release waits for and to the submitter; signed webhooks for release.*,
both delivered by a real worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.conf import settings

from audit.models import AuditEvent
from releases import workflow
from releases.models import Release, WebhookDelivery, WebhookEndpoint
from releases.policies_service import load_policy_version
from tests.conftest import make_persona
from tests.registry.test_tasks import wait_for
from tests.releases.conftest import ASSESSMENT, POLICIES, submit_checkpoint


class Receiver(BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


# Django's file backend names a file by the second and the id() of the backend object, and
# appends: two messages sent by one worker in the same second can share a file. Each message
# ends with a line of 79 dashes.
SEPARATOR = b"\n" + b"-" * 79 + b"\n"


def _written() -> list[tuple[tuple[str, int], bytes]]:
    """Every message the file backend wrote, keyed by (file, position in file), oldest first."""
    folder = Path(settings.EMAIL_FILE_PATH)
    files = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    return [((path.name, i), raw) for path in files
            for i, raw in enumerate(path.read_bytes().split(SEPARATOR)) if raw.strip()]


def mails(since: set | None = None) -> list:
    """Messages the file backend wrote, leaving out those in `since` (from `mail_keys`)."""
    return [message_from_bytes(raw) for key, raw in _written() if key not in (since or set())]


def mail_keys() -> set:
    return {key for key, _ in _written()}


@pytest.mark.django_db(transaction=True)
def test_reviewers_and_submitter_are_mailed_and_webhooks_are_signed(celery_worker_process,
                                                                    receiver):
    load_policy_version(actor=None, text=(POLICIES / "reviewed.yaml").read_text(),
                        source="reviewed.yaml")
    endpoint = WebhookEndpoint.objects.create(url=receiver, secret="s3cret", events="release.*")
    alice, bob, carol = (make_persona(n) for n in ("alice", "bob", "carol"))
    already = mail_keys()
    checkpoint = submit_checkpoint(alice, label="mail")
    release = workflow.create_release(actor=alice, checkpoint=checkpoint, assessment=ASSESSMENT)
    workflow.submit_release(actor=alice, release=release)
    wait_for(lambda: Release.objects.get(pk=release.pk).status == "in_review")

    def to(address):
        return [m for m in mails(since=already) if address in m["To"]]

    wait_for(lambda: to("bob@example.org") and to("carol@example.org"))
    assert "waits for your review" in to("bob@example.org")[0]["Subject"]
    workflow.request_changes(actor=bob, release=release, stage="internal",
                             comment="the model card lacks the training data")
    wait_for(lambda: any("request changes" in m["Subject"] for m in to("alice@example.org")))

    def received_events():
        return {json.loads(body)["event"] for _, body in Receiver.received}

    wait_for(lambda: {"release.created", "release.submitted",
                      "release.review.request_changes"} <= received_events())
    wait_for(lambda: not WebhookDelivery.objects.exclude(status="delivered").exists())
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == len(Receiver.received)
    for headers, body in Receiver.received:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["X-Stagegate-Signature"] == expected
        assert headers["X-Stagegate-Event"] == json.loads(body)["event"]
        # The event's place in the sealed chain, as the audit log has it.
        sent = json.loads(body)
        event = AuditEvent.objects.get(pk=sent["audit_event"])
        assert event.verb == sent["event"] and event.object_id == str(release.pk)
        assert (sent["seq"], sent["hash"]) == (event.seq, event.hash) and event.sealed


@pytest.mark.django_db(transaction=True)
def test_a_failing_endpoint_is_retried_until_it_answers(celery_worker_process, receiver,
                                                        settings):
    Receiver.fail_first = 1
    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")
    WebhookEndpoint.objects.create(url=receiver, secret="k", events="release.created")
    alice = make_persona("alice")
    checkpoint = submit_checkpoint(alice, label="retry")
    workflow.create_release(actor=alice, checkpoint=checkpoint, assessment=ASSESSMENT)
    delivery = wait_for(lambda: WebhookDelivery.objects.filter(status="delivered").first(),
                        timeout=90)
    assert delivery.attempts == 2 and delivery.event == "release.created"


@pytest.mark.django_db(transaction=True)
def test_withdrawal_mails_everyone_who_downloaded(celery_worker_process, client, personas,
                                                  simple_policy):
    from releases.models import AccessGrant
    from tests.conftest import token_for
    from tests.releases.stages import release_at

    people = personas
    release = release_at(people, "open", family="lab/withdrawn")
    response = client.get("/lab/withdrawn/resolve/main/model.safetensors",
                          HTTP_AUTHORIZATION=f"Bearer {token_for(people.erin, 'read')}")
    b"".join(response.streaming_content)
    workflow.withdraw_release(actor=people.dave, release=release,
                              reason="it reproduces a private dataset")

    def withdrawal_mail_to(address):
        return [m for m in mails() if address in m["To"] and "has been withdrawn" in m["Subject"]]

    wait_for(lambda: withdrawal_mail_to("erin@example.org"))
    body = withdrawal_mail_to("erin@example.org")[0].get_payload()
    assert "it reproduces a private dataset" in body and "delete them" in body
    assert not AccessGrant.objects.filter(release=release, revoked_at__isnull=True).exists()
