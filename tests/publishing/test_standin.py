"""The stand-in Hub refuses what the Hub's API does not allow: if it accepted anything, the
mirror's tests against it would prove nothing. Driven by the stock client where it can send
the request, by plain HTTP where only a broken client would."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import requests
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hubstandin.process import ORG, USERS

REPO = f"{ORG}/strict"


def auth(who="bot"):
    return {"Authorization": f"Bearer {USERS[who].token}"}


@pytest.fixture
def repo(hub):
    api = HfApi(endpoint=hub.url, token=USERS["bot"].token)
    api.create_repo(REPO, private=True)
    return api


def status(exc_info) -> int:
    return exc_info.value.response.status_code


def test_settings_take_only_the_documented_values(hub, repo):
    url = f"{hub.url}/api/models/{REPO}/settings"
    assert requests.put(url, json={"gated": "yes"}, headers=auth()).status_code == 400
    assert requests.put(url, json={"private": True, "visibility": "public"},
                        headers=auth()).status_code == 400
    assert requests.put(url, json={"licence": "mit"}, headers=auth()).status_code == 400
    reader = HfApi(endpoint=hub.url, token=USERS["reader"].token)
    with pytest.raises(HfHubHTTPError) as read_only:
        reader.update_repo_settings(REPO, private=False)
    assert status(read_only) == 403
    with pytest.raises(RepositoryNotFoundError):  # outsiders cannot even see a private repo
        HfApi(endpoint=hub.url, token=USERS["erin"].token).update_repo_settings(REPO, gated="auto")
    assert repo.model_info(REPO).private is True


def test_access_requests_need_a_gated_repo_and_follow_the_documented_rules(hub, repo):
    with pytest.raises(HfHubHTTPError) as ungated:
        repo.grant_access(REPO, USERS["erin"].name)
    assert status(ungated) == 400
    repo.update_repo_settings(REPO, gated="manual")
    repo.grant_access(REPO, USERS["erin"].name)
    with pytest.raises(HfHubHTTPError) as twice:
        repo.grant_access(REPO, USERS["erin"].name)
    assert status(twice) == 400
    with pytest.raises(HfHubHTTPError) as nobody:
        repo.grant_access(REPO, "no-such-user")
    assert status(nobody) == 404
    with pytest.raises(HfHubHTTPError) as same:
        repo.accept_access_request(REPO, USERS["erin"].name)
    assert status(same) == 404
    url = f"{hub.url}/api/models/{REPO}/user-access-request/handle"
    assert requests.post(url, json={"user": USERS["erin"].name, "status": "accepted",
                                    "rejectionReason": "x"}, headers=auth()).status_code == 400
    assert requests.post(url, json={"user": USERS["erin"].name, "requestId": "x",
                                    "status": "rejected"}, headers=auth()).status_code == 400
    with pytest.raises(HfHubHTTPError) as reader:
        list(HfApi(endpoint=hub.url, token=USERS["reader"].token)
             .list_accepted_access_requests(REPO))
    assert status(reader) == 403


def test_uploads_must_be_the_bytes_they_claim(hub, repo):
    data = b"weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    batch = f"{hub.url}/{REPO}.git/info/lfs/objects/batch"
    body = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    assert requests.post(batch, json=body, headers=auth()).status_code == 406  # not git-lfs+json
    lfs = {**auth(), "Accept": "application/vnd.git-lfs+json",
           "Content-Type": "application/vnd.git-lfs+json"}
    assert requests.post(batch, data=json.dumps({**body, "transfers": ["xet"]}),
                         headers=lfs).status_code == 400
    action = requests.post(batch, data=json.dumps(body), headers=lfs).json()["objects"][0]
    href = action["actions"]["upload"]["href"]
    assert requests.put(href, data=data[:-1] + b"!").status_code == 400
    assert requests.put(href.replace("sig=", "sig=0"), data=data).status_code == 403
    commit = f"{hub.url}/api/models/{REPO}/commit/main"
    lines = [{"key": "header", "value": {"summary": "x"}},
             {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid,
                                          "size": len(data)}}]
    ndjson = {**auth(), "Content-Type": "application/x-ndjson"}
    never_sent = requests.post(commit, data="\n".join(map(json.dumps, lines)), headers=ndjson)
    assert never_sent.status_code == 400 and "was not uploaded" in never_sent.json()["error"]
    bad_key = lines[:1] + [{"key": "symlink", "value": {"path": "a"}}]
    assert requests.post(commit, data="\n".join(map(json.dumps, bad_key)),
                         headers=ndjson).status_code == 400
    traversal = lines[:1] + [{"key": "file", "value": {"path": "../x", "content": "", "encoding": "base64"}}]
    assert requests.post(commit, data="\n".join(map(json.dumps, traversal)),
                         headers=ndjson).status_code == 400
    # The stock client, sending a stream: preupload, batch, PUT, verify, commit all accepted.
    info = repo.create_commit(REPO, [CommitOperationAdd("w.bin", io.BytesIO(data))],
                              commit_message="ok")
    files = {f.path: f for f in repo.list_repo_tree(REPO, revision=info.oid, recursive=True)}
    assert files["w.bin"].lfs.sha256 == oid and ".gitattributes" in files


def test_a_stale_parent_commit_is_refused(hub, repo):
    first = repo.model_info(REPO).sha
    repo.create_commit(REPO, [CommitOperationAdd("a.txt", io.BytesIO(b"a"))], commit_message="a")
    with pytest.raises(HfHubHTTPError) as stale:
        repo.create_commit(REPO, [CommitOperationAdd("b.txt", io.BytesIO(b"b"))],
                           commit_message="b", parent_commit=first)
    assert status(stale) == 412
