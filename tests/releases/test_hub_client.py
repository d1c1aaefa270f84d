"""The stock huggingface_hub client (and transformers) against a live Stagegate: every audience
case gives the right result or the right error class, and the bytes are the manifest's."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    EntryNotFoundError,
)

from releases import access, clock, workflow
from releases.models import AccessGrant
from tests.conftest import token_for
from tests.releases.stages import grant, release_at

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(transactional_db, personas, simple_policy, tiny_model_dir):
    people = personas
    releases = {
        "open": release_at(people, "open", family="lab/open-gpt", folder=tiny_model_dir),
        "gated": release_at(people, "gated", family="lab/gated-gpt", folder=tiny_model_dir),
        "partners": release_at(people, "partners", family="lab/partner-gpt", folder=tiny_model_dir),
    }
    grant(people, releases["gated"], people.erin)
    grant(people, releases["partners"], people.erin)
    tokens = {n: token_for(people[n], "read") for n in ("erin", "mallory", "alice")}
    return people, releases, tokens


def download(server, repo, filename, token=None, cache=None, revision=None):
    return hf_hub_download(repo, filename, revision=revision, token=token or False,
                           endpoint=server.url, cache_dir=cache)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest_sha(release, path) -> str:
    return release.checkpoint.files.get(path=path).blob_id


def test_open_is_anonymous_and_bytes_match_the_manifest(stagegate_server, world, tmp_path):
    _, releases, _ = world
    path = download(stagegate_server, "lab/open-gpt", "model.safetensors", cache=tmp_path)
    assert sha256(path) == manifest_sha(releases["open"], "model.safetensors")
    folder = snapshot_download("lab/open-gpt", endpoint=stagegate_server.url, token=False,
                               cache_dir=tmp_path / "snap")
    for f in releases["open"].checkpoint.files.all():
        assert sha256(Path(folder) / f.path) == f.blob_id
    info = HfApi(endpoint=stagegate_server.url).model_info("lab/open-gpt", token=False,
                                                           files_metadata=True)
    assert info.sha == releases["open"].checkpoint.commit
    assert info.safetensors.total == releases["open"].checkpoint.parameters
    # The checkpoint's files, and the lab's signatures of the stage (tests/releases/
    # test_signed_releases.py).
    assert sorted(HfApi(endpoint=stagegate_server.url).list_repo_files(
        "lab/open-gpt", token=False)) == sorted(
        [*releases["open"].checkpoint.files.values_list("path", flat=True), "model.sig",
         "release.intoto.json"])


def test_gated_needs_a_grant(stagegate_server, world, tmp_path):
    _, releases, tokens = world
    with pytest.raises(GatedRepoError):
        download(stagegate_server, "lab/gated-gpt", "config.json", cache=tmp_path / "a")
    with pytest.raises(GatedRepoError):
        download(stagegate_server, "lab/gated-gpt", "config.json", token=tokens["mallory"],
                 cache=tmp_path / "m")
    path = download(stagegate_server, "lab/gated-gpt", "model.safetensors",
                    token=tokens["erin"], cache=tmp_path / "e")
    assert sha256(path) == manifest_sha(releases["gated"], "model.safetensors")
    # Model info of a gated release is public, as on the Hub; its bytes are not.
    info = HfApi(endpoint=stagegate_server.url).model_info("lab/gated-gpt", token=False)
    assert info.gated == "manual"


def test_partners_is_invisible_to_strangers_and_served_to_partners(stagegate_server, world,
                                                                   tmp_path):
    _, releases, tokens = world
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        download(stagegate_server, "lab/partner-gpt", "config.json", cache=tmp_path / "a")
    assert not isinstance(anonymous.value, GatedRepoError)
    with pytest.raises(RepositoryNotFoundError):
        download(stagegate_server, "lab/partner-gpt", "config.json", token=tokens["mallory"],
                 cache=tmp_path / "m")
    path = download(stagegate_server, "lab/partner-gpt", "model.safetensors",
                    token=tokens["erin"], cache=tmp_path / "e")
    assert sha256(path) == manifest_sha(releases["partners"], "model.safetensors")


def test_an_expired_partner_grant_is_refused(stagegate_server, world, tmp_path):
    _, releases, tokens = world
    clock.advance(timedelta(days=31))  # the test policy's partner grants last 30 days
    with pytest.raises(GatedRepoError) as refused:
        download(stagegate_server, "lab/partner-gpt", "config.json", token=tokens["erin"],
                 cache=tmp_path)
    assert "expired" in str(refused.value)


def test_a_revoked_grant_is_refused(stagegate_server, world, tmp_path):
    people, releases, tokens = world
    grant_row = AccessGrant.objects.get(release=releases["gated"], user=people.erin)
    access.revoke_grant(actor=people.dave, grant=grant_row, reason="broke the licence")
    with pytest.raises(GatedRepoError) as refused:
        download(stagegate_server, "lab/gated-gpt", "config.json", token=tokens["erin"],
                 cache=tmp_path)
    assert "revoked" in str(refused.value)


def test_a_withdrawn_release_is_disabled_for_everyone(stagegate_server, world, tmp_path):
    people, releases, tokens = world
    workflow.withdraw_release(actor=people.dave, release=releases["open"],
                              reason="memorised personal data")
    for token in (None, tokens["erin"], tokens["alice"]):
        with pytest.raises(DisabledRepoError):
            download(stagegate_server, "lab/open-gpt", "config.json", token=token,
                     cache=tmp_path / str(token))
    assert not AccessGrant.objects.filter(release=releases["gated"], revoked_at__isnull=False)


def test_revisions_errors_and_ranges(stagegate_server, world, tmp_path):
    _, releases, tokens = world
    checkpoint = releases["open"].checkpoint
    for revision in ("main", "open", checkpoint.label, checkpoint.commit):
        path = download(stagegate_server, "lab/open-gpt", "config.json", revision=revision,
                        cache=tmp_path / revision)
        assert sha256(path) == manifest_sha(releases["open"], "config.json")
    with pytest.raises(RevisionNotFoundError):
        download(stagegate_server, "lab/open-gpt", "config.json", revision="nope",
                 cache=tmp_path / "x")
    with pytest.raises(EntryNotFoundError):
        download(stagegate_server, "lab/open-gpt", "missing.bin", cache=tmp_path / "y")
    url = f"{stagegate_server.url}/lab/open-gpt/resolve/main/model.safetensors"
    whole = requests.get(url).content
    part = requests.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole)}"
    head = requests.head(url)
    assert head.headers["X-Repo-Commit"] == checkpoint.commit
    assert head.headers["X-Linked-Etag"] == f'"{manifest_sha(releases["open"], "model.safetensors")}"'
    assert not any(h.lower().startswith("x-xet") for h in head.headers)
    bad = requests.get(url, headers={"Authorization": "Bearer sg_nope"})
    assert bad.status_code == 401 and bad.headers["X-Error-Message"]


def test_transformers_loads_the_model_from_stagegate(stagegate_server, world, tmp_path):
    _, releases, tokens = world
    script = (
        "import json, sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        "model = AutoModelForCausalLM.from_pretrained('lab/gated-gpt', token=sys.argv[1])\n"
        "print(json.dumps({'params': sum(p.numel() for p in model.parameters())}))\n")
    env = {**os.environ, "HF_ENDPOINT": stagegate_server.url, "HF_HOME": str(tmp_path / "erin"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, "-c", script, tokens["erin"]], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = json.loads(proc.stdout.strip().splitlines()[-1])["params"]
    assert params > 0
    # A separate cache: the client would serve Erin's cached copy to anyone (cache masking).
    env["HF_HOME"] = str(tmp_path / "mallory")
    refused = subprocess.run([sys.executable, "-c", script, tokens["mallory"]], env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "GatedRepoError" in refused.stderr


def test_the_hf_command_line_downloads_and_refuses(stagegate_server, world, tmp_path):
    _, releases, tokens = world
    hf = Path(sys.executable).with_name("hf")
    base = {**os.environ, "HF_ENDPOINT": stagegate_server.url, "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0"}
    done = subprocess.run([str(hf), "download", "lab/gated-gpt", "--local-dir",
                           str(tmp_path / "erin")],
                          env={**base, "HF_TOKEN": tokens["erin"], "HF_HOME": str(tmp_path / "h1")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for f in releases["gated"].checkpoint.files.all():
        assert sha256(tmp_path / "erin" / f.path) == f.blob_id
    refused = subprocess.run([str(hf), "download", "lab/gated-gpt", "--local-dir",
                              str(tmp_path / "mallory")],
                             env={**base, "HF_TOKEN": tokens["mallory"],
                                  "HF_HOME": str(tmp_path / "h2")},
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "requires approval" in (refused.stdout + refused.stderr)
