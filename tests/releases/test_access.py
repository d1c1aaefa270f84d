"""Who can see and download what: the whole matrix, and the access request flow."""

from __future__ import annotations

import pytest

from releases import access, clock
from releases.models import AccessGrant, AccessRequest
from releases.policies_service import load_policy_version
from tests.conftest import token_for
from tests.releases.conftest import POLICIES
from tests.releases.stages import ORDER, grant, release_at

PEOPLE = ("alice", "bob", "carol", "dave", "erin", "mallory", None)
INTERNAL = {"alice", "bob", "carol", "dave"}  # owner, reviewers, release manager


def may_download(person, stage) -> bool:
    """The rule, stated independently of the code: stages widen one way; erin holds a partner
    grant on the partners release and an approved request on the gated one."""
    if stage == "open":
        return True
    if person in INTERNAL:
        return True
    return person == "erin" and stage in ("partners", "gated")


def may_see_info(person, stage) -> bool:
    # Gated model info is public, as on the Hub; only its bytes are gated.
    return stage in ("gated", "open") or may_download(person, stage)


@pytest.fixture
def matrix(personas, db, settings):
    clock.reset()
    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")
    releases = {stage: release_at(personas, stage, family=f"lab/{stage}-model", seed=i)
                for i, stage in enumerate(ORDER)}
    grant(personas, releases["partners"], personas.erin)
    grant(personas, releases["gated"], personas.erin)
    tokens = {name: token_for(personas[name], "read") for name in PEOPLE if name}
    yield releases, tokens
    clock.reset()


def call(client, method, url, token):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return getattr(client, method)(url, **headers)


@pytest.mark.django_db
def test_the_access_matrix(matrix, client):
    """Every persona (and anonymous) x every stage x every download and API endpoint."""
    releases, tokens = matrix
    for stage in ORDER:
        for person in PEOPLE:
            client.logout()
            check_cell(client, releases[stage], tokens.get(person), person, stage)


def check_cell(client, release, token, person, stage):
    where = f"{person or 'anonymous'} at {stage}"
    repo = f"lab/{stage}-model"
    commit = release.checkpoint.commit

    info = call(client, "get", f"/api/models/{repo}", token)
    tree = call(client, "get", f"/api/models/{repo}/tree/main", token)
    revision = call(client, "get", f"/api/models/{repo}/revision/{commit}", token)
    head = call(client, "head", f"/{repo}/resolve/main/model.safetensors", token)
    get = call(client, "get", f"/{repo}/resolve/{commit}/model.safetensors", token)

    if may_see_info(person, stage):
        assert info.status_code == tree.status_code == revision.status_code == 200, where
        assert info.json()["sha"] == commit, where
    else:
        for response in (info, tree, revision, head, get):
            assert response.status_code == (401 if person is None else 404), where
            assert response["X-Error-Code"] == "RepoNotFound", where
    if may_download(person, stage):
        assert head.status_code == 200 and head["X-Repo-Commit"] == commit, where
        assert get.status_code == 200, where
        assert b"".join(get.streaming_content)[:8], where
    elif may_see_info(person, stage):
        for response in (head, get):
            assert response.status_code == (401 if person is None else 403), where
            assert response["X-Error-Code"] == "GatedRepo", where

    # The public pages follow the same rule; the internal REST API is for the lab only.
    if person:
        client.force_login(matrix_user(person))
    page = client.get(f"/models/{repo}/")
    assert page.status_code == (200 if may_see_info(person, stage) else 404), where
    listed = f"/models/{repo}/" in client.get("/models/").content.decode()
    assert listed == may_see_info(person, stage), where
    rest = call(client, "get", f"/api/v1/releases/{release.pk}/", token)
    if person is None:
        assert rest.status_code in (401, 403), where
    else:
        assert rest.status_code == (200 if person in INTERNAL else 404), where


def matrix_user(name):
    from django.contrib.auth.models import User

    return User.objects.get(username=name)


@pytest.mark.django_db
def test_a_manual_request_waits_and_is_decided_in_bulk(personas, db, api_client_for):
    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")
    release = release_at(personas, "gated", family="lab/bulk")
    erin, mallory = api_client_for(personas.erin), api_client_for(personas.mallory)
    url = f"/api/v1/releases/{release.pk}/access-requests/"
    refused = erin.post(url, {"affiliation": "Uni", "licence_version": "research-0",
                              "accept": True}, format="json")
    assert refused.status_code == 400 and "current licence is research-1" in refused.json()["detail"]
    missing = erin.post(url, {"licence_version": "research-1", "accept": True}, format="json")
    assert missing.status_code == 400 and "Affiliation" in missing.json()["detail"]
    ids = []
    for client in (erin, mallory):
        response = client.post(url, {"affiliation": "Uni", "licence_version": "research-1",
                                     "accept": True}, format="json")
        assert response.status_code == 201 and response.json()["status"] == "pending"
        ids.append(response.json()["id"])
    dave = api_client_for(personas.dave)
    pending = dave.get("/api/v1/access-requests/?status=pending").json()
    assert sorted(r["id"] for r in pending) == sorted(ids)
    own = erin.get("/api/v1/access-requests/").json()
    assert [r["user"] for r in own] == ["erin"]  # her own only: she manages nothing
    assert api_client_for(personas.bob).get("/api/v1/access-requests/").json() == []
    # Mallory's request is not erin's to see: it answers like one that does not exist.
    assert erin.post("/api/v1/access-requests/bulk/", {"ids": ids, "decision": "approve"},
                     format="json").status_code == 404
    assert erin.post("/api/v1/access-requests/bulk/", {"ids": ids[:1], "decision": "approve"},
                     format="json").status_code == 403
    decided = dave.post("/api/v1/access-requests/bulk/", {"ids": ids, "decision": "approve"},
                        format="json").json()
    assert {r["status"] for r in decided} == {"approved"}
    assert access.download_access(personas.erin, release).allowed
    grant_id = AccessGrant.objects.get(release=release, user=personas.mallory).pk
    revoked = dave.post(f"/api/v1/grants/{grant_id}/revoke/", {"reason": "abuse"}, format="json")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert access.download_access(personas.mallory, release).code == "revoked"


@pytest.mark.django_db
def test_automatic_access_is_granted_at_once(personas, db, api_client_for):
    text = (POLICIES / "simple.yaml").read_text().replace("access: manual", "access: automatic")
    load_policy_version(actor=None, text=text, source="auto.yaml")
    release = release_at(personas, "gated", family="lab/auto")
    response = api_client_for(personas.mallory).post(
        f"/api/v1/releases/{release.pk}/access-requests/",
        {"affiliation": "Somewhere", "licence_version": "research-1", "accept": True},
        format="json")
    assert response.json()["status"] == "approved"
    assert access.download_access(personas.mallory, release).allowed


@pytest.mark.django_db
def test_a_new_licence_version_asks_for_re_consent(personas, db):
    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")
    release = release_at(personas, "gated", family="lab/licence")
    grant(personas, release, personas.erin)
    assert access.download_access(personas.erin, release).allowed
    # The lab changes the licence; the release moves to the new policy on its next request.
    text = (POLICIES / "simple.yaml").read_text().replace("research-1", "research-2")
    version, _ = load_policy_version(actor=None, text=text, source="licence-2.yaml")
    type(release).objects.filter(pk=release.pk).update(policy_version=version)
    release.refresh_from_db()
    decision = access.download_access(personas.erin, release)
    assert not decision.allowed and decision.code == "reconsent" and "research-2" in decision.message
    access.request_access(actor=personas.erin, release=release, answers={"affiliation": "Uni"},
                          licence_version="research-2", accept=True)
    assert access.download_access(personas.erin, release).allowed
    assert not AccessRequest.objects.filter(release=release, status="pending").exists()


@pytest.mark.django_db
def test_downloads_are_audited_and_a_withdrawn_model_says_why(personas, db, client):
    # The mail to past_downloaders is sent by a worker: test_notifications checks it.
    from audit.models import AuditEvent
    from releases import workflow

    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")
    release = release_at(personas, "open", family="lab/audited")
    response = client.get("/lab/audited/resolve/main/model.safetensors",
                          HTTP_AUTHORIZATION=f"Bearer {token_for(personas.erin, 'read')}")
    b"".join(response.streaming_content)
    event = AuditEvent.objects.get(verb="weights.downloaded")
    assert event.actor == personas.erin and event.data["path"] == "model.safetensors"
    assert event.data["sha256"] == release.checkpoint.files.get(path="model.safetensors").blob_id
    assert list(access.past_downloaders(release)) == [personas.erin]
    page = client.get("/models/lab/audited/")
    assert page.status_code == 200
    workflow.withdraw_release(actor=personas.dave, release=release, reason="personal data found")
    page = client.get("/models/lab/audited/").content.decode()
    assert 'id="withdrawn-notice"' in page and "personal data found" in page


@pytest.mark.django_db
def test_a_signed_in_user_downloads_from_the_model_page(personas, db, client):
    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")
    release = release_at(personas, "gated", family="lab/web")
    commit = release.checkpoint.commit
    client.force_login(personas.erin)
    page = client.get("/models/lab/web/").content.decode()
    assert 'id="access-form"' in page and "research-1" in page
    response = client.post(f"/models/lab/web/releases/{release.pk}/request-access/",
                           {"affiliation": "Uni", "licence_version": "research-1", "accept": "on"},
                           follow=True)
    assert "a release manager will decide" in response.content.decode()
    assert client.get(f"/lab/web/resolve/{commit}/model.safetensors").status_code == 403
    request = AccessRequest.objects.get(release=release, user=personas.erin)
    access.decide_access_request(actor=personas.dave, request=request, approve=True)
    page = client.get("/models/lab/web/").content.decode()
    assert f'/lab/web/resolve/{commit}/model.safetensors' in page
    download = client.get(f"/lab/web/resolve/{commit}/model.safetensors")
    data = b"".join(download.streaming_content)
    import hashlib
    assert hashlib.sha256(data).hexdigest() == release.checkpoint.files.get(
        path="model.safetensors").blob_id
