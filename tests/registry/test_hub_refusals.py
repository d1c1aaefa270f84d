"""Writes through the Hub API that must fail: the wrong person, the wrong token, a lying or
malformed commit. Each is refused in the Hub's error shape, leaves nothing behind, and a
permission refusal is an audit event."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from django.contrib.auth.models import Group

from audit.models import AuditEvent
from models.models import Checkpoint, ModelFamily
from safetensors.torch import save

from tests.checkpoints import raw_safetensors, tensors, write_model_folder
from tests.conftest import StateSnapshot, make_persona, token_for
from tests.registry.hubclient import run_python

pytestmark = pytest.mark.django_db(transaction=True)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def repo(stagegate_server):
    """alice's lab/model with one committed checkpoint, and helpers to write to it raw."""
    alice = make_persona("alice")
    token = token_for(alice, "submit")
    url = stagegate_server.url

    class Repo:
        def create(self, token_, name="model", org="lab"):
            return requests.post(f"{url}/api/repos/create", headers=bearer(token_),
                                 json={"name": name, "organization": org, "type": "model"})

        def lfs_upload(self, data: bytes, token_=token):
            oid = hashlib.sha256(data).hexdigest()
            batch = requests.post(f"{url}/lab/model.git/info/lfs/objects/batch",
                                  headers={**bearer(token_),
                                           "Accept": "application/vnd.git-lfs+json"},
                                  json={"operation": "upload", "transfers": ["basic"],
                                        "objects": [{"oid": oid, "size": len(data)}],
                                        "hash_algo": "sha256"})
            assert batch.status_code == 200, batch.text
            action = batch.json()["objects"][0].get("actions")
            if action:
                put = requests.put(action["upload"]["href"], data=data)
                assert put.status_code == 200, put.text
            return oid

        def commit(self, lines, token_=token, header=None):
            body = [{"key": "header", "value": header or {"summary": "Upload files"}}] + lines
            return requests.post(f"{url}/api/models/lab/model/commit/main",
                                 data="".join(json.dumps(x) + "\n" for x in body),
                                 headers={**bearer(token_), "Content-Type": "application/x-ndjson"})

    r = Repo()
    r.token, r.url = token, url
    assert r.create(token).status_code == 200
    config = json.dumps({"model_type": "tiny"}).encode()
    weights = save(tensors())
    first = r.commit([lfs_line("config.json", r.lfs_upload(config), len(config)),
                      lfs_line("model.safetensors", r.lfs_upload(weights), len(weights))])
    assert first.status_code == 200, first.text
    r.head = first.json()["commitOid"]
    return r


def lfs_line(path, oid, size):
    return {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}}


def refused_events(username):
    return AuditEvent.objects.filter(verb="permission.denied", actor_username=username).count()


def test_mallory_is_refused_every_write_and_each_refusal_is_recorded(repo, stagegate_server,
                                                                    tmp_path):
    mallory = token_for(make_persona("mallory"), "all")
    snapshot = StateSnapshot()
    url = stagegate_server.url
    attempts = [
        repo.create(mallory, name="mine", org="mallory"),   # no researchers role
        repo.create(mallory, name="sneaky", org="lab"),
        requests.post(f"{url}/api/models/lab/model/preupload/main", headers=bearer(mallory),
                      json={"files": [{"path": "x.bin", "size": 3, "sample": ""}]}),
        repo.commit([{"key": "deletedFile", "value": {"path": "config.json"}}], token_=mallory),
        requests.get(f"{url}/api/models/lab/model/xet-write-token/main", headers=bearer(mallory)),
        requests.post(f"{url}/lab/model.git/info/lfs/objects/batch", headers=bearer(mallory),
                      json={"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}]}),
        requests.put(f"{url}/api/models/lab/model/settings", headers=bearer(mallory),
                     json={"private": True}),
    ]
    for response in attempts:
        assert response.status_code in (403, 404), (response.request.url, response.text)
        assert response.headers["X-Error-Message"] and "error" in response.json()
    # A repo she cannot see does not exist for her: the same answer as a missing one.
    assert attempts[2].headers["X-Error-Code"] == "RepoNotFound"
    assert requests.post(f"{url}/api/models/lab/nothing/preupload/main", headers=bearer(mallory),
                         json={"files": []}).headers["X-Error-Code"] == "RepoNotFound"
    assert refused_events("mallory") >= len(attempts)
    folder = write_model_folder(tmp_path / "ckpt")
    proc, _ = run_python(stagegate_server, mallory, tmp_path / "home", f"""
        api.upload_folder(folder_path={str(folder)!r}, repo_id="lab/model")
    """)
    assert proc.returncode != 0 and "RepositoryNotFoundError" in proc.stderr
    snapshot.assert_unchanged()
    assert Checkpoint.objects.filter(family__name="model").count() == 1


def test_a_researcher_who_does_not_own_the_repo_and_narrow_tokens_are_refused(repo):
    ricky = make_persona("ricky")
    ricky.groups.add(Group.objects.get_or_create(name="researchers")[0])
    other = token_for(ricky, "submit")
    refused = repo.commit([{"key": "deletedFile", "value": {"path": "config.json"}}],
                          token_=other)
    assert refused.status_code == 404 and refused.headers["X-Error-Code"] == "RepoNotFound"
    taken = repo.create(other, name="model2", org="lab")
    assert taken.status_code == 403 and "members of the organisation" in taken.json()["error"]
    assert repo.create(other, name="x", org="alice").status_code == 403  # a user's namespace
    assert repo.create(other, name="x", org="ricky").status_code == 200  # their own
    reader = token_for(make_persona("alice"), "read")
    narrow = repo.commit([{"key": "deletedFile", "value": {"path": "config.json"}}],
                         token_=reader)
    assert narrow.status_code == 403 and "scope" in narrow.json()["error"]
    anonymous = requests.post(f"{repo.url}/api/repos/create", json={"name": "x"})
    assert anonymous.status_code == 401
    assert refused_events("ricky") >= 2 and refused_events("alice") >= 1


def test_bad_commits_are_refused_in_the_hub_shape_and_leave_nothing_behind(repo):
    good = b'{"a": 1}'
    good_oid = repo.lfs_upload(good)
    broken = raw_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                             b"\0" * 8)  # data shorter than the header says
    broken_oid = repo.lfs_upload(broken)
    snapshot = StateSnapshot()
    cases = {
        "unknown oid": (repo.commit([lfs_line("x.json", "b" * 64, 3)]), 400, "no uploaded file"),
        "size mismatch": (repo.commit([lfs_line("x.json", good_oid, len(good) + 1)]), 400,
                          "bytes"),
        "traversal": (repo.commit([lfs_line("../escape.json", good_oid, len(good))]), 400,
                      "climbs out"),
        "absolute": (repo.commit([lfs_line("/etc/x.json", good_oid, len(good))]), 400,
                     "absolute"),
        "not safetensors": (repo.commit([lfs_line("model.safetensors", broken_oid,
                                                  len(broken))]), 400, "model.safetensors"),
        "stale parent": (repo.commit([lfs_line("x.json", good_oid, len(good))],
                                     header={"summary": "x", "parentCommit": "0" * 40}), 409,
                         "moved on"),
        "missing file": (repo.commit([{"key": "deletedFile", "value": {"path": "nope.txt"}}]),
                         404, "doesn't exist"),
        "not ndjson": (requests.post(f"{repo.url}/api/models/lab/model/commit/main",
                                     data=b"{not json\n", headers=bearer(repo.token)), 400,
                       "JSON"),
        "other branch": (requests.post(f"{repo.url}/api/models/lab/model/commit/dev",
                                       data=b"", headers=bearer(repo.token)), 404, "main"),
        "pull request": (requests.post(f"{repo.url}/api/models/lab/model/commit/main?create_pr=1",
                                       data=b"", headers=bearer(repo.token)), 400,
                         "pull requests"),
    }
    for name, (response, status, words) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert words in response.headers["X-Error-Message"], (name, response.headers)
        assert response.json()["error"], name
    assert cases["missing file"][0].headers["X-Error-Code"] == "EntryNotFound"
    snapshot.assert_unchanged()


def test_lfs_uploads_must_hash_to_their_oid_and_use_signed_urls(repo):
    data = b"weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    batch = requests.post(f"{repo.url}/lab/model.git/info/lfs/objects/batch",
                          headers=bearer(repo.token),
                          json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]})
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    snapshot = StateSnapshot()
    lying = requests.put(href, data=b"x" * len(data))
    assert lying.status_code == 400 and "hash to" in lying.json()["error"]
    forged = requests.put(href[:-3] + "abc", data=data)
    assert forged.status_code == 403
    snapshot.assert_unchanged()
    assert requests.put(href, data=data).status_code == 200
    verify = requests.post(f"{repo.url}/lab/model.git/info/lfs/objects/verify",
                           headers=bearer(repo.token), json={"oid": oid, "size": len(data)})
    assert verify.status_code == 200


def test_settings_keep_the_repo_private_until_a_release(repo):
    url = f"{repo.url}/api/models/lab/model/settings"
    assert requests.put(url, headers=bearer(repo.token), json={"private": True}).status_code == 200
    for body in ({"visibility": "public"}, {"gated": "auto"}):
        refused = requests.put(url, headers=bearer(repo.token), json=body)
        assert refused.status_code == 403 and "release" in refused.json()["error"]
    public = requests.post(f"{repo.url}/api/repos/create", headers=bearer(repo.token),
                           json={"name": "open", "organization": "lab", "visibility": "public"})
    assert public.status_code == 400 and not ModelFamily.objects.filter(name="open").exists()


def test_uncommitted_lfs_uploads_expire_with_their_blobs(repo):
    from datetime import timedelta

    from django.utils import timezone

    from models.blobstore import blob_exists
    from models.hub_services import purge_expired_hub_uploads
    from models.models import Blob, HubUpload

    oid = repo.lfs_upload(b"never committed")
    committed = list(HubUpload.objects.filter(via="lfs").exclude(sha256=oid)
                     .values_list("sha256", flat=True))
    assert len(committed) == 2
    receipts = HubUpload.objects.count()
    assert blob_exists(oid)
    assert purge_expired_hub_uploads() == 0
    later = timezone.now() + timedelta(days=2)
    assert purge_expired_hub_uploads(now=later) == receipts
    assert not Blob.objects.filter(sha256=oid).exists() and not blob_exists(oid)
    for sha in committed:  # blobs of committed files stay
        assert blob_exists(sha)
    assert purge_expired_hub_uploads(now=later) == 0
