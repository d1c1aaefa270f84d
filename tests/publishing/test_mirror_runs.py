"""Mirror runs in this process against the stand-in Hub on its own socket: what each stage
becomes on the Hub, idempotence, drift, failures that leave Stagegate as it was."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.conf import settings
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from audit.models import AuditEvent
from models import blobstore
from publishing.models import Mirror
from releases import access, workflow
from releases.models import AccessGrant, Release
from tests.hubstandin.process import USERS
from tests.publishing.conftest import (FAMILY, REMOTE, add_target, climb, link_accounts, run,
                                       start_standin)
from tests.releases.stages import grant, release_at

pytestmark = pytest.mark.django_db


def bot(hub) -> HfApi:
    return HfApi(endpoint=hub.url, token=USERS["bot"].token)


def fetch(hub, who, path, tmp_path, revision=None):
    token = USERS[who].token if who else False
    return hf_hub_download(REMOTE, path, endpoint=hub.url, token=token, revision=revision,
                           cache_dir=tmp_path / f"{who}-{path}-{revision}")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(release) -> dict[str, str]:
    """What a target holds: the pinned files and the lab's signatures of the stage (a gated
    target's model.sig is the one that declares README.md unsigned)."""
    from releases.signatures import signed_files

    signed = signed_files(release, for_mirror=release.current_stage == "gated")
    return {**{f.path: f.blob_id for f in release.published_checkpoint.files.all()},
            **{f.path: f.blob_id for f in signed}}


@pytest.fixture
def partners(personas, simple_policy, hub, allow):
    allow(hub)
    release = release_at(personas, "partners", family=FAMILY)
    grant(personas, release, personas.erin)
    target = add_target(personas, hub)
    link_accounts(personas, hub)
    return release, target


def test_partners_is_a_private_repo_with_the_partners_granted(partners, hub, tmp_path):
    release, target = partners
    mirror = run(release, target)
    assert mirror.state == Mirror.State.IN_SYNC, mirror.detail
    info = bot(hub).model_info(REMOTE)
    assert (info.private, info.gated) == (True, "manual")
    assert info.sha == mirror.remote_commit
    assert [r.username for r in bot(hub).list_accepted_access_requests(REMOTE)] == ["erin-hf"]
    assert sha256(fetch(hub, "erin", "model.safetensors", tmp_path)) == \
        manifest(release)["model.safetensors"]
    for stranger in ("mallory", None):
        with pytest.raises(RepositoryNotFoundError):
            fetch(hub, stranger, "model.safetensors", tmp_path)
    assert mirror.verified == manifest(release)
    event = AuditEvent.objects.get(verb="publication.synced")
    assert event.data["stage"] == "partners" and event.object_id == str(release.pk)
    target.refresh_from_db()
    assert target.carried_release_id == release.pk


def test_running_the_mirror_twice_uploads_and_changes_nothing(partners, hub):
    release, target = partners
    first = run(release, target)
    writes, events = len(hub.requests()), AuditEvent.objects.count()
    second = run(release, target)
    assert hub.writes(since=writes) == []
    assert second.remote_commit == first.remote_commit and second.state == Mirror.State.IN_SYNC
    assert AuditEvent.objects.count() == events
    assert len([w for w in hub.writes() if w["path"].endswith("/commit/main")]) == 1


def test_gated_then_open(partners, personas, hub, tmp_path):
    release, target = partners
    run(release, target)
    release = climb(personas, release, "gated")
    mirror = run(release, target)
    assert mirror.state == Mirror.State.IN_SYNC, mirror.detail
    info = bot(hub).model_info(REMOTE)
    assert (info.private, info.gated) == (False, "manual")  # the test policy: manual access
    assert info.card_data["extra_gated_prompt"] == "Research only."
    assert info.card_data["extra_gated_fields"] == {
        "Affiliation": "text", "I accept": "checkbox", "I accept the licence research-1": "checkbox"}
    with pytest.raises(GatedRepoError):
        fetch(hub, None, "model.safetensors", tmp_path)
    with pytest.raises(GatedRepoError):
        fetch(hub, "mallory", "model.safetensors", tmp_path)
    assert sha256(fetch(hub, "erin", "model.safetensors", tmp_path)) == \
        manifest(release)["model.safetensors"]
    # The card is the only file that differs from the manifest, and is checked against itself.
    assert {p: s for p, s in mirror.verified.items() if p != "README.md"} == manifest(release)
    release = climb(personas, release, "open")
    mirror = run(release, target)
    info = bot(hub).model_info(REMOTE)
    assert (info.private, info.gated, mirror.state) == (False, False, Mirror.State.IN_SYNC)
    assert sha256(fetch(hub, None, "model.safetensors", tmp_path)) == \
        manifest(release)["model.safetensors"]
    assert "extra_gated_fields" not in (info.card_data or {})


def test_withdrawal_makes_the_remote_private_and_revokes_access(partners, personas, hub,
                                                                 tmp_path):
    release, target = partners
    run(release, target)
    release = climb(personas, release, "gated")
    run(release, target)
    workflow.withdraw_release(actor=personas.dave, release=release, reason="memorised PII")
    mirror = run(Release.objects.get(pk=release.pk), target)
    assert mirror.state == Mirror.State.WITHDRAWN, mirror.detail
    info = bot(hub).model_info(REMOTE)
    assert (info.private, info.gated) == (True, "manual")
    assert list(bot(hub).list_accepted_access_requests(REMOTE)) == []
    with pytest.raises(RepositoryNotFoundError):
        fetch(hub, "erin", "model.safetensors", tmp_path)
    assert AuditEvent.objects.filter(verb="publication.withdrawn").count() == 1
    # A newer release of the family cannot reopen a remote whose history holds withdrawn bytes.
    newer = release_at(personas, "partners", family=FAMILY, label="v2", seed=7)
    again = run(newer, target)
    assert again.state == Mirror.State.NOT_MIRRORED and "withdrawn" in again.detail
    assert bot(hub).model_info(REMOTE).private is True


def test_a_revoked_partner_loses_access_on_the_hub(partners, personas, hub, tmp_path):
    release, target = partners
    run(release, target)
    access.revoke_grant(actor=personas.dave, reason="agreement ended",
                        grant=AccessGrant.objects.get(release=release, user=personas.erin))
    mirror = run(release, target)
    assert "revoked erin-hf's access" in AuditEvent.objects.filter(
        verb="publication.synced").order_by("-id").first().data["changes"]
    assert list(bot(hub).list_accepted_access_requests(REMOTE)) == []
    with pytest.raises(RepositoryNotFoundError):
        fetch(hub, "erin", "model.safetensors", tmp_path)
    assert mirror.state == Mirror.State.IN_SYNC
    assert not AuditEvent.objects.filter(verb="publication.drift_found").exists()


def test_a_partner_without_a_hub_account_is_named_not_guessed(personas, simple_policy, hub,
                                                               allow):
    allow(hub)
    release = release_at(personas, "partners", family=FAMILY)
    grant(personas, release, personas.erin)
    target = add_target(personas, hub)
    mirror = run(release, target)
    assert mirror.state == Mirror.State.IN_SYNC
    assert list(bot(hub).list_accepted_access_requests(REMOTE)) == []
    assert any("erin" in note and "link_hub_account" in note for note in mirror.notes)


def test_a_hand_made_change_is_drift_reported_and_repaired(partners, personas, hub, tmp_path):
    release, target = partners
    run(release, target)
    api = bot(hub)
    api.update_repo_settings(REMOTE, private=False)  # someone clicks "make public"
    api.grant_access(REMOTE, USERS["mallory"].name)
    # Another model's weights, committed by hand (a stream: this Hub takes LFS, not Xet).
    api.upload_file(path_or_fileobj=io.BytesIO(b"other weights"),
                    path_in_repo="model.safetensors", repo_id=REMOTE)
    mirror = run(release, target, trigger="reconcile")
    assert mirror.state == Mirror.State.IN_SYNC, mirror.detail
    found = AuditEvent.objects.get(verb="publication.drift_found").data["drift"]
    assert "made public outside Stagegate" in found
    assert "mallory-hf was given access outside Stagegate" in found
    assert any(line.startswith("model.safetensors: replaced outside Stagegate") for line in found)
    repaired = AuditEvent.objects.get(verb="publication.repaired").data["changes"]
    assert repaired[0] == "made private while its files change"  # before any byte moves
    assert "revoked mallory-hf's access" in repaired
    info = api.model_info(REMOTE)
    assert info.private is True
    with pytest.raises(RepositoryNotFoundError):
        fetch(hub, "mallory", "model.safetensors", tmp_path)
    assert sha256(fetch(hub, "erin", "model.safetensors", tmp_path, revision=info.sha)) == \
        manifest(release)["model.safetensors"]


def test_a_bad_token_fails_with_the_reason_and_stagegate_is_unchanged(personas, simple_policy,
                                                                       hub, allow):
    allow(hub)
    release = release_at(personas, "partners", family=FAMILY)
    target = add_target(personas, hub, token="hf_not_a_token")
    before = Release.objects.filter(pk=release.pk).values().get()
    mirror = run(release, target)
    assert mirror.state == Mirror.State.FAILED and mirror.attempts == 1
    assert "Invalid credentials" in mirror.detail
    assert Release.objects.filter(pk=release.pk).values().get() == before
    assert AuditEvent.objects.get(verb="publication.failed").data["reason"] == mirror.detail


def test_an_unreachable_hub_is_transient_and_fails_only_on_the_last_attempt(
        personas, simple_policy, hub, allow, tmp_path):
    from publishing.remote import TransientRemoteError
    from publishing.runs import run_mirror

    allow(hub)
    release = release_at(personas, "partners", family=FAMILY)
    target = add_target(personas, hub)
    hub.stop()
    with pytest.raises(TransientRemoteError):
        run_mirror(release_id=release.pk, stage="partners", target_id=target.pk,
                   trigger="test", final_attempt=False)
    mirror = Mirror.objects.get(release=release, target=target)
    assert mirror.state == Mirror.State.SYNCING and "retrying after" in mirror.detail
    assert not AuditEvent.objects.filter(verb="publication.failed").exists()
    assert run_mirror(release_id=release.pk, stage="partners", target_id=target.pk,
                      trigger="test", final_attempt=True) == "failed"
    mirror.refresh_from_db()
    assert mirror.state == Mirror.State.FAILED and "could not be reached" in mirror.detail


def test_bytes_that_are_not_the_manifests_are_never_uploaded(partners, hub):
    release, target = partners
    weights = release.published_checkpoint.files.get(path="model.safetensors").blob_id
    location = Path(settings.STORAGES["blobs"]["OPTIONS"]["location"]) / blobstore.blob_name(weights)
    location.chmod(0o644)
    location.write_bytes(location.read_bytes()[:-1] + b"\0")  # the blob store rotted
    mirror = run(release, target)
    assert mirror.state == Mirror.State.FAILED and "nothing was uploaded" in mirror.detail
    assert not [w for w in hub.writes() if "lfs" in w["path"] or "/commit/" in w["path"]]


def test_a_hub_that_stores_other_bytes_is_an_alarm(personas, simple_policy, allow, tmp_path):
    lying = start_standin(tmp_path / "lying", tamper_paths=["model.safetensors"])
    try:
        allow(lying)
        release = release_at(personas, "open", family=FAMILY)
        target = add_target(personas, lying)
        mirror = run(release, target)
        assert mirror.state == Mirror.State.ALARM
        assert "model.safetensors: the Hub holds sha256" in mirror.detail
        info = bot(lying).model_info(REMOTE)
        assert info.private is True  # never opened with the wrong bytes
        event = AuditEvent.objects.get(verb="publication.mismatch")
        assert event.data["mismatches"] == [mirror.detail.removeprefix("sha256 mismatch: ")]
    finally:
        lying.stop()


def test_a_newer_release_at_a_narrower_stage_does_not_narrow_the_remote(partners, personas,
                                                                         hub):
    release, target = partners
    release = climb(personas, release, "gated")
    run(release, target)
    newer = release_at(personas, "partners", family=FAMILY, label="v2", seed=5)
    mirror = run(newer, target)
    assert mirror.state == Mirror.State.NOT_MIRRORED
    assert f"release {release.pk}" in mirror.detail
    assert bot(hub).model_info(REMOTE).private is False
    assert Mirror.objects.get(release=release, target=target).state == Mirror.State.IN_SYNC


def test_drift_that_cannot_be_repaired_is_still_reported(partners, personas, hub):
    release, target = partners
    run(release, target)
    bot(hub).update_repo_settings(REMOTE, private=False)
    # The target's token was replaced by a member's read-only one: it can see, not repair.
    target = add_target(personas, hub, token=USERS["reader"].token)
    mirror = run(release, target, trigger="reconcile")
    assert mirror.state == Mirror.State.FAILED and "403" in mirror.detail
    assert AuditEvent.objects.get(verb="publication.drift_found").data["drift"] == [
        "made public outside Stagegate"]
    assert AuditEvent.objects.filter(verb="publication.failed").count() == 1


def test_the_token_can_come_from_the_workers_environment(personas, simple_policy, hub, allow,
                                                         monkeypatch):
    from models.models import ModelFamily
    from publishing import services

    allow(hub)
    release = release_at(personas, "partners", family=FAMILY)
    target = services.add_publication_target(
        actor=personas.dave, family=ModelFamily.objects.get(org="lab", name="tiny"),
        endpoint=hub.url, remote_repo=REMOTE, token_env="STAGEGATE_HUB_TOKEN")
    monkeypatch.delenv("STAGEGATE_HUB_TOKEN", raising=False)
    mirror = run(release, target)
    assert mirror.state == Mirror.State.FAILED
    assert "environment has no STAGEGATE_HUB_TOKEN" in mirror.detail
    assert hub.writes() == []
    monkeypatch.setenv("STAGEGATE_HUB_TOKEN", USERS["bot"].token)
    assert run(release, target).state == Mirror.State.IN_SYNC


def test_a_hub_the_operator_no_longer_allows_gets_nothing(partners, hub, settings):
    release, target = partners
    settings.STAGEGATE_PUBLICATION_ENDPOINTS = ["https://huggingface.co"]
    mirror = run(release, target)
    assert mirror.state == Mirror.State.FAILED and "STAGEGATE_PUBLICATION_ENDPOINTS" in mirror.detail
    assert all(r["path"] == "/" for r in hub.requests())  # its readiness probe, nothing else
