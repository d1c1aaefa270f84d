"""Signed releases end to end: erin downloads a gated release with the stock `hf` client from a
live Stagegate, fetches the lab's key from the well-known URL, and verifies it with the stock
`model_signing` CLI and with `manage.py verify_release`; one changed byte, one changed
attestation field or a signature by another key fails both, naming what is wrong."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from releases import workflow
from releases.errors import TransitionNotAllowed
from releases.models import PublicationSignature, Release
from releases.signatures import sign_publication
from signing import keys, oms
from tests.conftest import token_for
from tests.releases.conftest import ASSESSMENT, run_pending_evals, submit_checkpoint
from tests.releases.stages import grant, release_at

pytestmark = pytest.mark.django_db(transaction=True)
BIN = Path(sys.executable).parent


@pytest.fixture
def gated(transactional_db, personas, simple_policy):
    release = release_at(personas, "gated", family="lab/signed-gpt")
    grant(personas, release, personas.erin)
    return release


def hf_download(server, repo: str, folder: Path, token: str, home: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_OFFLINE": "0", "HF_TOKEN": token, "HF_HOME": str(home)}
    done = subprocess.run([str(BIN / "hf"), "download", repo, "--local-dir", str(folder)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def stock_verify(folder: Path, public_key: Path, *extra: str) -> subprocess.CompletedProcess:
    """The command docs/signing.md gives erin, exactly."""
    return subprocess.run([str(BIN / "model_signing"), "verify", "key", str(folder),
                           "--signature", str(folder / "model.sig"),
                           "--public_key", str(public_key), *extra],
                          capture_output=True, text=True, timeout=300)


def verify_release(folder: Path, *args: str) -> str:
    out = StringIO()
    call_command("verify_release", str(folder), *args, stdout=out)
    return out.getvalue()


def fetch_key(server, tmp_path: Path, path="/.well-known/stagegate/signing-key.pem") -> Path:
    response = requests.get(server.url + path, timeout=30)
    assert response.status_code == 200, response.text
    key = tmp_path / "lab.pub"
    key.write_bytes(response.content)
    return key


@pytest.fixture
def downloaded(stagegate_server, gated, personas, tmp_path):
    folder = tmp_path / "m"
    hf_download(stagegate_server, "lab/signed-gpt", folder, token_for(personas.erin, "read"),
                tmp_path / "hf-home")
    return folder, fetch_key(stagegate_server, tmp_path)


def test_erin_verifies_a_gated_release_with_the_stock_cli_and_verify_release(downloaded, gated):
    folder, lab_key = downloaded
    assert (folder / "model.sig").is_file() and (folder / "release.intoto.json").is_file()
    assert (folder / ".cache" / "huggingface").is_dir()  # the client's folder, ignored
    done = stock_verify(folder, lab_key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification succeeded" in done.stdout
    out = verify_release(folder, "--public-key", str(lab_key))
    assert "model.sig: verified, 1 files" in out
    assert "lab/signed-gpt stage gated (approved users), policy test-simple 1" in out


def test_one_changed_byte_fails_both_naming_the_file(downloaded):
    folder, lab_key = downloaded
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    done = stock_verify(folder, lab_key)
    assert done.returncode != 0 and "model.safetensors" in done.stdout + done.stderr
    with pytest.raises(CommandError, match="the bytes of model.safetensors differ"):
        verify_release(folder, "--public-key", str(lab_key))


def test_one_changed_attestation_field_fails(downloaded):
    folder, lab_key = downloaded
    path = folder / "release.intoto.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["stage"]["name"] = "open"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    assert stock_verify(folder, lab_key).returncode == 0  # the weights are still the lab's
    with pytest.raises(CommandError, match="release.intoto.json: no signature on the "
                                           "attestation verifies with the lab's public key"):
        verify_release(folder, "--public-key", str(lab_key))


def test_a_signature_made_with_another_key_fails(downloaded, gated, tmp_path):
    folder, lab_key = downloaded
    other = keys.load_private_pem(keys.generate_private_pem(), source="mallory's key")
    files = [(f.path, f.blob_id) for f in gated.published_checkpoint.files.all()]
    (folder / "model.sig").write_bytes(oms.sign_files(files, key=other, model_name="x"))
    done = stock_verify(folder, lab_key)
    assert done.returncode != 0 and "Key mismatch" in done.stdout + done.stderr
    with pytest.raises(CommandError, match="not one of the lab's keys"):
        verify_release(folder, "--public-key", str(lab_key))


def test_the_attestation_says_what_was_decided(downloaded, gated, personas):
    folder, _ = downloaded
    envelope = json.loads((folder / "release.intoto.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    predicate = statement["predicate"]
    checkpoint = gated.published_checkpoint
    assert statement["subject"] == [{"name": "model.safetensors", "digest": {
        "sha256": checkpoint.files.get().blob_id}, "annotations": {"size": checkpoint.files.get().size}}]
    assert predicate["stage"] == {"name": "gated", "audience": "approved users"}
    policy = gated.policy_version
    assert predicate["policy"] == {"name": "test-simple", "version": "1",
                                   "content_hash": policy.content_hash}
    assert predicate["tier"]["name"] == "low"
    assert predicate["manifest_digest"] == checkpoint.manifest_digest
    gates = {g["name"]: g for g in predicate["gates"]}
    assert gates["eval:integrity:passed"] == {**gates["eval:integrity:passed"], "passed": True,
                                              "value": 1}
    assert gates["dwell"]["passed"] and gates["dwell"]["value"]
    assert sorted((a["reviewer"], a["role"]) for a in predicate["approvals"]) == [
        ("bob", "safety"), ("carol", "policy")]
    assert all(a["at"] for a in predicate["approvals"])
    [integrity] = [e for e in predicate["evals"] if e["eval"] == "integrity"]
    assert integrity["metrics"]["passed"] == 1 and len(integrity["cache_key"]) == 64
    assert predicate["published_by"] == "dave"
    assert predicate["checkpoint"]["submitted_signature"] == {"status": "unsigned"}
    assert envelope["signatures"][0]["keyid"] == keys.current_key().key_id


def test_every_published_stage_is_signed_once(gated):
    signatures = PublicationSignature.objects.filter(publication__release=gated)
    assert sorted(s.publication.stage for s in signatures) == ["gated", "internal", "partners"]
    gated_one = signatures.get(publication__stage="gated")
    assert gated_one.mirror_signature is not None  # README.md declared unsigned for Hub targets
    again = sign_publication(publication_id=gated_one.publication_id)
    assert again.pk == gated_one.pk
    assert AuditEvent.objects.filter(verb="release.signed", object_id=str(gated.pk)).count() == 3


def test_a_release_signed_before_a_rotation_still_verifies(stagegate_server, gated, personas,
                                                           tmp_path, settings):
    old = keys.current_key()
    retired = tmp_path / "retired.pem"
    retired.write_text(old.public.pem)
    new_key = tmp_path / "new-signing-key.pem"
    new_key.write_bytes(keys.generate_private_pem())
    settings.STAGEGATE_SIGNING_KEY_FILE = str(new_key)
    settings.STAGEGATE_SIGNING_RETIRED_KEYS = [str(retired)]
    assert keys.current_key().key_id != old.key_id
    newer = release_at(personas, "internal", family="lab/signed-gpt-2", seed=3)
    assert PublicationSignature.objects.get(publication__release=newer).key_id == \
        keys.current_key().key_id

    token = token_for(personas.erin, "read")
    folder = tmp_path / "old-release"
    hf_download(stagegate_server, "lab/signed-gpt", folder, token, tmp_path / "hf")
    # The current key is the new one; the old one is still published, by its id.
    assert fetch_key(stagegate_server, tmp_path).read_text() == keys.current_key().public.pem
    old_pub = fetch_key(stagegate_server, tmp_path, f"/.well-known/stagegate/keys/{old.key_id}.pem")
    assert stock_verify(folder, old_pub).returncode == 0
    assert "verified" in verify_release(folder, "--public-key", str(old_pub))
    assert "verified" in verify_release(folder)  # this instance's current and retired keys
    listing = requests.get(stagegate_server.url + "/.well-known/stagegate/signing-keys.pem",
                           timeout=30).text
    assert old.key_id in listing and keys.current_key().key_id in listing


def test_production_refuses_to_publish_without_a_configured_key(personas, simple_policy,
                                                                settings):
    settings.STAGEGATE_SIGNING_REQUIRE_KEY = True
    settings.STAGEGATE_SIGNING_KEY_FILE = ""
    settings.STAGEGATE_SIGNING_KEY = ""
    checkpoint = submit_checkpoint(personas.alice, family="lab/unsigned")
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    with pytest.raises(TransitionNotAllowed, match="set STAGEGATE_SIGNING_KEY_FILE"):
        workflow.publish_release(actor=personas.dave, release=release, stage="internal")
    assert Release.objects.get(pk=release.pk).status == "approved"
    refusal = AuditEvent.objects.filter(verb="release.publish_refused").get()
    assert "STAGEGATE_SIGNING_KEY_FILE" in refusal.data["reason"]


def test_the_documented_python_verifies_and_catches_a_changed_byte(downloaded, tmp_path):
    """docs/signing.md's few lines of Python, with model-signing and cryptography alone."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "signing.md").read_text()
    code = text.split("The same with the libraries alone")[1].split("```python\n")[1].split("```")[0]
    run = lambda: subprocess.run([sys.executable, "-c", code], cwd=tmp_path,  # noqa: E731
                                 capture_output=True, text=True, timeout=300)
    done = run()
    assert done.returncode == 0, done.stderr
    assert "'name': 'gated'" in done.stdout
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(b"\0" + weights.read_bytes()[1:])
    done = run()
    assert done.returncode != 0 and "model.safetensors" in done.stderr


def test_the_model_page_shows_the_keys_and_how_to_verify(gated, personas, client):
    client.force_login(personas.erin)
    page = client.get("/models/lab/signed-gpt/").content.decode()
    key = keys.current_key()
    assert f"/.well-known/stagegate/keys/{key.key_id}.pem -o lab.pub" in page
    assert "model_signing verify key ./signed-gpt --signature ./signed-gpt/model.sig" in page
    assert key.public.pem.strip().splitlines()[1] in page
    assert ">model.sig</a>" in page and ">release.intoto.json</a>" in page


def test_the_well_known_keys(client, settings, tmp_path):
    response = client.get("/.well-known/stagegate/signing-key.pem")
    assert response.status_code == 200
    assert response["X-Stagegate-Key-Id"] == keys.current_key().key_id
    assert response.content.decode() == keys.current_key().public.pem
    assert client.get("/.well-known/stagegate/keys/" + "0" * 64 + ".pem").status_code == 404
    assert client.get("/.well-known/stagegate/keys/not-an-id.pem").status_code == 404
    settings.STAGEGATE_SIGNING_REQUIRE_KEY = True
    settings.STAGEGATE_SIGNING_KEY_FILE = str(tmp_path / "missing.pem")
    response = client.get("/.well-known/stagegate/signing-key.pem")
    assert response.status_code == 503 and b"cannot be read" in response.content


@pytest.mark.django_db(transaction=False)
def test_the_signing_task_retries_until_a_key_is_configured_then_signs_once(
        personas, simple_policy, settings, tmp_path):
    # In a test transaction nothing runs on commit: the publication is left unsigned, as when
    # signing failed after the commit and the task took over.
    release = release_at(personas, "internal", family="lab/late")
    publication = release.publications.get()
    assert not PublicationSignature.objects.filter(publication=publication).exists()
    from celery.exceptions import Retry

    from releases.tasks import sign_publication_task

    settings.STAGEGATE_SIGNING_REQUIRE_KEY = True
    settings.STAGEGATE_SIGNING_KEY_FILE = ""
    with pytest.raises(Retry):
        sign_publication_task.apply(args=(publication.pk,), throw=True)
    assert not PublicationSignature.objects.filter(publication=publication).exists()
    key = tmp_path / "lab.pem"
    key.write_bytes(keys.generate_private_pem())
    settings.STAGEGATE_SIGNING_KEY_FILE = str(key)
    assert sign_publication_task.apply(args=(publication.pk,)).get() == "signed"
    assert sign_publication_task.apply(args=(publication.pk,)).get() == "signed"  # unchanged
    signature = PublicationSignature.objects.get(publication=publication)
    assert signature.key_id == keys.current_key().key_id
    assert AuditEvent.objects.filter(verb="release.signed").count() == 1


@pytest.mark.django_db(transaction=False)
def test_stages_published_before_signing_are_signed_by_the_command(personas, simple_policy):
    release = release_at(personas, "internal", family="lab/old")
    publication = release.publications.get()
    publication.decision = {}
    publication.save(update_fields=["decision"])
    out = StringIO()
    call_command("sign_publications", stdout=out)
    call_command("sign_publications", stdout=out)
    assert "signed 1 published stage(s)" in out.getvalue()
    assert "signed 0 published stage(s)" in out.getvalue()
    signature = PublicationSignature.objects.get(publication=publication)
    from models.blobstore import open_blob
    from signing import dsse

    with open_blob(signature.attestation.sha256) as stream:
        statement, _ = dsse.open_envelope(stream.read(), keys.published_keys())
    assert statement["predicate"]["decision_recorded"] is False
    assert statement["predicate"]["stage"] == {"name": "internal",
                                               "audience": "owners and reviewers"}


def test_without_a_key_a_stranger_is_still_refused_for_permission(personas, simple_policy,
                                                                 settings):
    from django.core.exceptions import PermissionDenied

    settings.STAGEGATE_SIGNING_REQUIRE_KEY = True
    settings.STAGEGATE_SIGNING_KEY_FILE = ""
    checkpoint = submit_checkpoint(personas.alice, family="lab/unsigned-2")
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    with pytest.raises(PermissionDenied):
        workflow.publish_release(actor=personas.mallory, release=release, stage="internal")
    assert not AuditEvent.objects.filter(verb="release.publish_refused").exists()


def test_the_operator_sees_signatures_heads_and_signers_read_only(gated, client):
    from django.contrib.auth.models import User

    from audit.heads import export_head

    export_head()
    root = User.objects.create_superuser("root", "root@example.org", "root-pw")
    client.force_login(root)
    for path in ("/admin/releases/publicationsignature/", "/admin/audit/audithead/",
                 "/admin/registry/trustedsigner/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert client.get(path + "add/").status_code == 403  # changes go through services
    signature = PublicationSignature.objects.filter(publication__release=gated).first()
    assert client.get(f"/admin/releases/publicationsignature/{signature.pk}/change/"
                      ).status_code == 200
