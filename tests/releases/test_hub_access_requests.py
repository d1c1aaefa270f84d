"""The Hub's access-request API on Stagegate, driven by the stock client (HfApi(endpoint=...)):
for dave it behaves as on the Hub, on Stagegate's own access requests and grants (one model,
two interfaces); erin, mallory and the release's submitter are refused in the Hub's error
shape, nothing changes, and each refusal is an audit event."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from audit.models import AuditEvent
from releases import access
from releases.models import AccessGrant, AccessRequest
from releases.selectors import stage_rule
from tests.conftest import make_persona, token_for
from tests.releases.stages import grant, release_at

pytestmark = pytest.mark.django_db(transaction=True)
REPO = "lab/gated-hub"


@pytest.fixture
def world(transactional_db, personas, simple_policy):
    gated = release_at(personas, "gated", family=REPO)
    licence = stage_rule(gated, "gated").terms.licence_version
    request = access.request_access(actor=personas.erin, release=gated,
                                    answers={"affiliation": "Uni of Somewhere", "accept": True},
                                    licence_version=licence, accept=True)
    tokens = {name: token_for(personas[name], "all")
              for name in ("alice", "bob", "dave", "erin", "mallory")}
    return personas, gated, request, tokens


def api(server, token) -> HfApi:
    return HfApi(endpoint=server.url, token=token)


def can_download(server, token, tmp_path, name) -> bool:
    try:
        path = hf_hub_download(REPO, "model.safetensors", endpoint=server.url, token=token,
                               cache_dir=tmp_path / name)
    except GatedRepoError:
        return False
    return bool(hashlib.sha256(Path(path).read_bytes()).hexdigest())


def test_dave_lists_pending_requests_in_the_hubs_shape(stagegate_server, world):
    people, release, request, tokens = world
    pending = list(api(stagegate_server, tokens["dave"]).list_pending_access_requests(REPO))
    assert [(r.username, r.status, r.request_id) for r in pending] == [
        ("erin", "pending", f"req-{request.pk}")]
    assert pending[0].email == "erin@example.org"
    assert pending[0].fields == {"affiliation": "Uni of Somewhere", "accept": True}
    assert pending[0].timestamp.tzinfo is not None
    raw = requests.get(f"{stagegate_server.url}/api/models/{REPO}/user-access-request/pending",
                       headers={"Authorization": f"Bearer {tokens['dave']}"}).json()
    assert set(raw[0]) == {"user", "requestId", "status", "timestamp", "fields"}
    assert set(raw[0]["user"]) == {"user", "fullname", "email"}
    assert raw[0]["timestamp"].endswith("Z")
    assert list(api(stagegate_server, tokens["dave"]).list_accepted_access_requests(REPO)) == []
    assert list(api(stagegate_server, tokens["dave"]).list_rejected_access_requests(REPO)) == []


def test_dave_accepts_then_erin_downloads(stagegate_server, world, tmp_path):
    people, release, request, tokens = world
    assert not can_download(stagegate_server, tokens["erin"], tmp_path, "before")
    api(stagegate_server, tokens["dave"]).accept_access_request(REPO, "erin")
    request.refresh_from_db()
    assert request.status == "approved" and request.decided_by == people.dave
    assert AccessGrant.objects.filter(release=release, user=people.erin, revoked_at=None).count() == 1
    assert can_download(stagegate_server, tokens["erin"], tmp_path, "after")
    accepted = list(api(stagegate_server, tokens["dave"]).list_accepted_access_requests(REPO))
    assert [(r.username, r.request_id) for r in accepted] == [("erin", f"req-{request.pk}")]
    assert list(api(stagegate_server, tokens["dave"]).list_pending_access_requests(REPO)) == []
    assert AuditEvent.objects.filter(verb="access.granted", actor_username="dave").count() == 1
    with pytest.raises(HfHubHTTPError) as again:  # already accepted: 404, as on the Hub
        api(stagegate_server, tokens["dave"]).accept_access_request(REPO, "erin")
    assert again.value.response.status_code == 404


def test_dave_rejects_with_a_reason_by_request_id(stagegate_server, world, tmp_path):
    people, release, request, tokens = world
    api(stagegate_server, tokens["dave"]).reject_access_request(
        REPO, request_id=f"req-{request.pk}", rejection_reason="no affiliation we can check")
    request.refresh_from_db()
    assert (request.status, request.decision_reason) == ("rejected", "no affiliation we can check")
    assert not can_download(stagegate_server, tokens["erin"], tmp_path, "e")
    rejected = list(api(stagegate_server, tokens["dave"]).list_rejected_access_requests(REPO))
    assert [r.username for r in rejected] == ["erin"]
    with pytest.raises(HfHubHTTPError) as too_long:
        api(stagegate_server, tokens["dave"]).reject_access_request(REPO, "erin",
                                                                    rejection_reason="x" * 201)
    assert too_long.value.response.status_code == 400


def test_a_rejected_request_can_be_accepted_after_all(stagegate_server, world, tmp_path):
    people, release, request, tokens = world
    hub = api(stagegate_server, tokens["dave"])
    hub.reject_access_request(REPO, "erin", rejection_reason="not yet")
    hub.accept_access_request(REPO, "erin")
    assert can_download(stagegate_server, tokens["erin"], tmp_path, "e")
    request.refresh_from_db()
    assert request.status == "rejected"  # the history keeps the first decision
    assert [r.username for r in hub.list_accepted_access_requests(REPO)] == ["erin"]


def test_cancel_takes_access_away_and_puts_the_request_back_to_pending(stagegate_server, world,
                                                                        tmp_path):
    people, release, request, tokens = world
    hub = api(stagegate_server, tokens["dave"])
    hub.accept_access_request(REPO, "erin")
    assert can_download(stagegate_server, tokens["erin"], tmp_path, "granted")
    hub.cancel_access_request(REPO, "erin")
    assert not can_download(stagegate_server, tokens["erin"], tmp_path, "cancelled")
    pending = list(hub.list_pending_access_requests(REPO))
    assert [r.username for r in pending] == ["erin"]
    assert pending[0].fields == {**request.answers, "accept": True}
    assert pending[0].request_id != f"req-{request.pk}"
    assert AccessRequest.objects.get(pk=int(pending[0].request_id[4:])).status == "pending"
    with pytest.raises(HfHubHTTPError) as already:
        hub.cancel_access_request(REPO, "erin")
    assert already.value.response.status_code == 404


def test_grant_access_to_someone_who_never_asked(stagegate_server, world, tmp_path):
    people, release, request, tokens = world
    frank = make_persona("frank")
    frank_token = token_for(frank, "read")
    hub = api(stagegate_server, tokens["dave"])
    assert hub.grant_access(REPO, "frank") == {"user": "frank", "status": "accepted"}
    # Granted, but the licence is not accepted yet: the client says what to do.
    with pytest.raises(GatedRepoError) as refused:
        hf_hub_download(REPO, "config.json", endpoint=stagegate_server.url, token=frank_token,
                        cache_dir=tmp_path / "f1")
    assert "accept the licence research-1" in str(refused.value)
    licence = stage_rule(release, "gated").terms.licence_version
    access.request_access(actor=frank, release=release, answers={"affiliation": "Lab"},
                          licence_version=licence, accept=True)
    assert can_download(stagegate_server, frank_token, tmp_path, "f2")
    with pytest.raises(HfHubHTTPError) as twice:
        hub.grant_access(REPO, "frank")
    assert twice.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError) as nobody:
        hub.grant_access(REPO, "no-such-person")
    assert nobody.value.response.status_code == 404
    # A pending request is approved by a grant (it is the decision asked for).
    hub.grant_access(REPO, "erin")
    request.refresh_from_db()
    assert request.status == "approved"


CALLS = {
    "list_pending": lambda hub: list(hub.list_pending_access_requests(REPO)),
    "list_accepted": lambda hub: list(hub.list_accepted_access_requests(REPO)),
    "list_rejected": lambda hub: list(hub.list_rejected_access_requests(REPO)),
    "accept": lambda hub: hub.accept_access_request(REPO, "erin"),
    "reject": lambda hub: hub.reject_access_request(REPO, "erin", rejection_reason="no"),
    "cancel": lambda hub: hub.cancel_access_request(REPO, "erin"),
    "grant": lambda hub: hub.grant_access(REPO, "mallory"),
}


@pytest.mark.parametrize("person", ["erin", "mallory", "alice", "bob"])
def test_everyone_who_may_not_decide_is_refused_and_nothing_changes(stagegate_server, world,
                                                                    person, tmp_path):
    """erin (who asked), mallory (an outsider), alice (the release's submitter and owner of the
    family: nobody opens their own release) and bob (a reviewer, not a release manager)."""
    people, release, request, tokens = world
    hub = api(stagegate_server, tokens[person])
    before = AuditEvent.objects.filter(verb="permission.denied", actor_username=person).count()
    for name, call in CALLS.items():
        with pytest.raises(HfHubHTTPError) as refused:
            call(hub)
        response = refused.value.response
        assert response.status_code == 403, (person, name, response.status_code)
        assert response.headers["X-Error-Message"] and "error" in response.json()
        assert "erin@example.org" not in response.text
    assert AuditEvent.objects.filter(verb="permission.denied",
                                     actor_username=person).count() == before + len(CALLS)
    request.refresh_from_db()
    assert request.status == "pending"
    assert not AccessGrant.objects.filter(release=release).exists()
    assert not can_download(stagegate_server, tokens["mallory"], tmp_path, "m")


def test_anonymous_sessions_and_read_tokens_cannot_decide(stagegate_server, world):
    people, release, request, tokens = world
    url = f"{stagegate_server.url}/api/models/{REPO}/user-access-request/handle"
    anonymous = requests.post(url, json={"user": "erin", "status": "accepted"})
    assert anonymous.status_code == 401 and anonymous.headers["X-Error-Message"]
    # dave signed in with a browser: a page elsewhere posting as him gets nothing (no CSRF here).
    browser = requests.Session()
    login = browser.get(f"{stagegate_server.url}/login/")
    browser.post(f"{stagegate_server.url}/login/", data={
        "username": "dave", "password": "dave-pw",
        "csrfmiddlewaretoken": browser.cookies.get("csrftoken", "")},
        headers={"Referer": login.url})
    assert "sessionid" in browser.cookies
    forged = browser.post(url, data='{"user": "erin", "status": "accepted"}',
                          headers={"Content-Type": "text/plain"})
    assert forged.status_code == 401
    reader = api(stagegate_server, token_for(people.dave, "read"))
    assert [r.username for r in reader.list_pending_access_requests(REPO)] == ["erin"]
    with pytest.raises(HfHubHTTPError) as narrow:
        reader.accept_access_request(REPO, "erin")
    assert narrow.value.response.status_code == 403
    assert "scope" in narrow.value.response.headers["X-Error-Message"]
    request.refresh_from_db()
    assert request.status == "pending"


def test_hidden_and_ungated_repos(stagegate_server, world):
    people, release, request, tokens = world
    partners = release_at(people, "partners", family="lab/partners-hub", seed=3)
    opened = release_at(people, "open", family="lab/open-hub", seed=4)
    grant(people, partners, people.erin)
    with pytest.raises(RepositoryNotFoundError):  # mallory may not know it exists
        list(api(stagegate_server, tokens["mallory"]).list_accepted_access_requests(
            "lab/partners-hub"))
    dave = api(stagegate_server, tokens["dave"])
    assert [r.username for r in dave.list_accepted_access_requests("lab/partners-hub")] == ["erin"]
    with pytest.raises(HfHubHTTPError) as agreement:  # a partner needs an agreement on record
        dave.grant_access("lab/partners-hub", "mallory")
    assert agreement.value.response.status_code == 400
    assert "agreement" in agreement.value.response.headers["X-Error-Message"]
    with pytest.raises(HfHubHTTPError) as ungated:
        list(dave.list_pending_access_requests("lab/open-hub"))
    assert ungated.value.response.status_code == 400 and opened.current_stage == "open"


def test_lists_are_paginated_with_link_headers(stagegate_server, world, monkeypatch):
    people, release, request, tokens = world
    from releases import hub_access

    monkeypatch.setattr(hub_access, "PAGE_SIZE", 2)
    licence = stage_rule(release, "gated").terms.licence_version
    for i in range(4):
        person = make_persona(f"researcher{i}")
        access.request_access(actor=person, release=release, answers={"affiliation": f"U{i}"},
                              licence_version=licence, accept=True)
    names = [r.username for r in api(stagegate_server, tokens["dave"])
             .list_pending_access_requests(REPO)]
    assert names == ["erin"] + [f"researcher{i}" for i in range(4)]


def test_a_newer_release_with_partners_does_not_hide_the_gated_releases_requests(
        stagegate_server, world):
    people, release, request, tokens = world
    release_at(people, "partners", family=REPO, label="v2", seed=9)
    dave = api(stagegate_server, tokens["dave"])
    assert [r.username for r in dave.list_pending_access_requests(REPO)] == ["erin"]
    dave.accept_access_request(REPO, "erin")
    request.refresh_from_db()
    assert request.status == "approved"
