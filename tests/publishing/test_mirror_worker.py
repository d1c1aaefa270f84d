"""The mirror as it runs in production: publishing a stage (and withdrawing) queues a task
after commit, a real Celery worker process runs it with the stock client against the stand-in
Hub on its own socket, mail goes out from the worker, and the beat task reconciles."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.utils import timezone
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from audit.models import AuditEvent
from publishing.models import Mirror
from releases import workflow
from releases.models import Release
from tests.hubstandin.process import USERS
from tests.publishing.conftest import (FAMILY, REMOTE, add_target, climb, link_accounts,
                                       start_standin, wait_for_mirror)
from tests.releases.conftest import submit_checkpoint
from tests.releases.stages import grant, release_at
from tests.releases.test_notifications import mails

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def bot(hub) -> HfApi:
    return HfApi(endpoint=hub.url, token=USERS["bot"].token)


def download_sha(hub, who, tmp_path, name) -> str:
    path = hf_hub_download(REMOTE, "model.safetensors", endpoint=hub.url,
                           token=USERS[who].token if who else False, cache_dir=tmp_path / name)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mails_to(address: str) -> list:
    return [m for m in mails() if address in (m["To"] or "")]


@pytest.fixture
def family(personas, simple_policy, hub, allow):
    """The family exists (alice's first checkpoint) and has its target before any release."""
    allow(hub)
    checkpoint = submit_checkpoint(personas.alice)
    target = add_target(personas, hub)
    link_accounts(personas, hub)
    return checkpoint, target


def test_each_published_stage_is_mirrored_by_a_worker(family, personas, hub, publishing_worker,
                                                      tmp_path):
    checkpoint, target = family
    release = release_at(personas, "partners", family=FAMILY, checkpoint=checkpoint)
    grant(personas, release, personas.erin)  # after publication: the grant is synced too
    weights = checkpoint.files.get(path="model.safetensors").blob_id

    mirror = wait_for_mirror(release, target, stage="partners")
    assert mirror.state == Mirror.State.IN_SYNC, mirror.detail
    deadline_grant = wait_for_accepted(hub, {"erin-hf"})
    assert deadline_grant
    assert (bot(hub).model_info(REMOTE).private, bot(hub).model_info(REMOTE).gated) == (True, "manual")
    assert download_sha(hub, "erin", tmp_path, "partner") == weights
    with pytest.raises(RepositoryNotFoundError):
        download_sha(hub, "mallory", tmp_path, "stranger")

    release = climb(personas, release, "gated")
    mirror = wait_for_mirror(release, target, stage="gated", states={Mirror.State.IN_SYNC})
    info = bot(hub).model_info(REMOTE)
    assert (info.private, info.gated) == (False, "manual")
    assert "Affiliation" in info.card_data["extra_gated_fields"]
    with pytest.raises(GatedRepoError):
        download_sha(hub, "mallory", tmp_path, "gated-stranger")
    assert download_sha(hub, "erin", tmp_path, "gated-erin") == weights

    release = climb(personas, release, "open")
    wait_for_mirror(release, target, stage="open", states={Mirror.State.IN_SYNC})
    info = bot(hub).model_info(REMOTE)
    assert (info.private, info.gated) == (False, False)
    assert download_sha(hub, None, tmp_path, "anyone") == weights

    workflow.withdraw_release(actor=personas.dave, release=release, reason="memorised PII")
    mirror = wait_for_mirror(release, target, states={Mirror.State.WITHDRAWN})
    info = bot(hub).model_info(REMOTE)
    assert (info.private, info.gated) == (True, "manual")
    with pytest.raises(RepositoryNotFoundError):
        download_sha(hub, None, tmp_path, "after")
    verbs = list(AuditEvent.objects.filter(verb__startswith="publication.", object_id=str(
        release.pk)).values_list("verb", flat=True))
    assert verbs.count("publication.failed") == 0 and verbs[-1] == "publication.withdrawn"
    assert Release.objects.get(pk=release.pk).status == "withdrawn"


def wait_for_accepted(hub, names: set[str], timeout: float = 60) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {r.username for r in bot(hub).list_accepted_access_requests(REMOTE)} == names:
            return True
        time.sleep(0.2)
    return False


def test_the_beat_task_finds_a_repo_made_public_by_hand(family, personas, hub, publishing_worker):
    from publishing.tasks import reconcile_targets

    checkpoint, target = family
    release = release_at(personas, "partners", family=FAMILY, checkpoint=checkpoint)
    wait_for_mirror(release, target, stage="partners", states={Mirror.State.IN_SYNC})
    bot(hub).update_repo_settings(REMOTE, private=False)
    started = timezone.now()
    reconcile_targets.delay()
    mirror = wait_for_mirror(release, target, after=started)
    assert mirror.state == Mirror.State.IN_SYNC, mirror.detail
    assert bot(hub).model_info(REMOTE).private is True
    drift = AuditEvent.objects.get(verb="publication.drift_found")
    assert drift.data["drift"] == ["made public outside Stagegate"]
    assert AuditEvent.objects.get(verb="publication.repaired").data["changes"] == ["made private"]
    mail = wait_for_mail("dave@example.org", "changed outside Stagegate")
    assert "made public outside Stagegate" in mail.get_payload()


def wait_for_mail(address: str, subject: str, timeout: float = 60):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in mails_to(address) if subject in " ".join(m["Subject"].split())]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no mail to {address} about {subject!r}")


def test_sync_now_on_the_release_page(family, personas, hub, publishing_worker, client):
    checkpoint, target = family
    release = release_at(personas, "partners", family=FAMILY, checkpoint=checkpoint)
    wait_for_mirror(release, target, stage="partners", states={Mirror.State.IN_SYNC})
    bot(hub).update_repo_settings(REMOTE, private=False)
    client.force_login(personas.dave)
    page = client.get(release.get_absolute_url())
    assert b'id="targets"' in page.content and f'id="sync-{target.pk}"'.encode() in page.content
    started = timezone.now()
    response = client.post(f"/releases/{release.pk}/targets/{target.pk}/sync/")
    assert response.status_code == 302
    wait_for_mirror(release, target, after=started, states={Mirror.State.IN_SYNC})
    assert bot(hub).model_info(REMOTE).private is True
    assert AuditEvent.objects.filter(verb="publication.sync_requested", actor_username="dave").exists()
    live = client.get(release.get_absolute_url() + "?live=1")
    assert b'id="targets" hx-swap-oob="true"' in live.content and b"in sync" in live.content


def test_a_sha256_mismatch_is_an_alarm_mailed_to_the_release_managers(personas, simple_policy,
                                                                      allow, start_worker,
                                                                      tmp_path):
    lying = start_standin(tmp_path / "lying", tamper_paths=["model.safetensors"])
    try:
        allow(lying)
        start_worker("publishing", extra_env={"STAGEGATE_PUBLICATION_ENDPOINTS": lying.url,
                                              "HF_HUB_OFFLINE": "0"})
        checkpoint = submit_checkpoint(personas.alice)
        target = add_target(personas, lying)
        release = release_at(personas, "partners", family=FAMILY, checkpoint=checkpoint)
        mirror = wait_for_mirror(release, target, stage="partners")
        assert mirror.state == Mirror.State.ALARM
        assert bot(lying).model_info(REMOTE).private is True
        mail = wait_for_mail("dave@example.org", "ALARM")
        assert "model.safetensors: the Hub holds sha256" in mail.get_payload()
        client_page = release.get_absolute_url()
        from django.test import Client

        browser = Client()
        browser.force_login(personas.dave)
        assert b"sha256 mismatch" in browser.get(client_page).content
    finally:
        lying.stop()


def test_an_unreachable_hub_is_retried_then_the_run_fails_saying_why(family, personas, hub,
                                                                      publishing_worker):
    checkpoint, target = family
    hub.stop()
    release = release_at(personas, "partners", family=FAMILY, checkpoint=checkpoint)
    mirror = wait_for_mirror(release, target, states={Mirror.State.FAILED}, timeout=90)
    assert mirror.attempts == 3  # the first try and STAGEGATE_PUBLICATION_MAX_RETRIES=2
    assert mirror.detail.startswith("gave up after retries") and "could not be reached" in mirror.detail
    assert Release.objects.get(pk=release.pk).current_stage == "partners"
