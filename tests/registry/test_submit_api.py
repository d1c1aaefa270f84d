"""Submitting through the REST API: the census is right, bad input is refused with a message
that names the problem, and nothing is left behind."""

from __future__ import annotations

import pytest
from django.test import override_settings

from models.manifest import manifest_digest
from models.models import Blob, Checkpoint
from tests.conftest import StateSnapshot
from tests.checkpoints import expected_parameters, tensors, write_model_folder
from tests.registry.bad_inputs import as_upload, catalogue, multipart_data

URL = "/api/v1/checkpoints/"


def folder_upload(folder, family="lab/tiny", label="v1") -> dict:
    data = {"family": family, "label": label}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        data[f"path:{relative}"] = as_upload(relative, path.read_bytes())
    return data


@pytest.mark.django_db
def test_submitting_a_model_folder_returns_its_census(alice, api_client_for, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt")
    response = api_client_for(alice, "submit").post(URL, folder_upload(folder), format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    ts = tensors()
    assert body["parameters"] == expected_parameters(ts)
    census = body["census"]
    assert census["tensor_count"] == len(ts)
    assert census["parameters"]["by_dtype"] == {
        "BF16": 16, "F16": 256, "F32": 32 * 16 + 10 * 16, "I64": 8}
    assert census["largest_tensors"][0] == {
        "name": "embed.weight", "dtype": "F32", "shape": [32, 16], "parameters": 512,
        "bytes": 2048, "file": "model.safetensors"}
    assert census["architecture"]["architectures"] == ["TinyForCausalLM"]
    assert census["config"]["hidden_size"] == 16
    assert body["status"] == "ready"
    files = {f["path"]: f for f in body["files"]}
    assert set(files) == {"config.json", "generation_config.json", "tokenizer_config.json",
                          "tokenizer.json", "README.md", "model.safetensors"}
    assert files["README.md"]["kind"] == "model_card"
    import hashlib
    for path, entry in files.items():
        content = (folder / path).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["size"] == len(content)
    recomputed = manifest_digest((p, f["sha256"], f["size"]) for p, f in files.items())
    assert body["manifest_digest"] == recomputed
    assert body["commit"] == recomputed[:40]


@pytest.mark.django_db
def test_sharded_checkpoint_census_covers_every_shard(alice, api_client_for, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt", shards=2)
    response = api_client_for(alice, "submit").post(URL, folder_upload(folder), format="multipart")
    assert response.status_code == 201, response.content
    census = response.json()["census"]
    assert census["parameters"]["total"] == expected_parameters(tensors())
    assert census["sharding"] == {"safetensors_files": 2, "index": "model.safetensors.index.json",
                                  "sharded": True}


@pytest.mark.django_db
def test_pickle_files_are_accepted_and_held_for_the_scanner(alice, api_client_for, tmp_path):
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buffer)
    response = api_client_for(alice, "submit").post(URL, {
        "family": "lab/tiny", "label": "pt", "path:pytorch_model.bin":
            as_upload("pytorch_model.bin", buffer.getvalue())}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "scanning"
    assert body["census"]["scan_pending"] == ["pytorch_model.bin"]
    assert body["files"][0]["kind"] == "pickle"


@pytest.mark.django_db
@pytest.mark.parametrize("case", catalogue(), ids=lambda c: c.id)
def test_bad_input_is_refused_through_the_api(case, alice, api_client_for, nothing_left_behind):
    client = api_client_for(alice, "submit")
    with override_settings(**case.settings):
        response = client.post(URL, multipart_data(case), format="multipart")
    assert response.status_code == case.status, response.content
    assert case.message in response.json()["detail"]
    nothing_left_behind.assert_unchanged()


@pytest.mark.django_db
def test_a_label_that_exists_in_the_family_is_a_conflict(alice, api_client_for, tmp_path):
    client = api_client_for(alice, "submit")
    folder = write_model_folder(tmp_path / "ckpt")
    assert client.post(URL, folder_upload(folder), format="multipart").status_code == 201
    before = (Checkpoint.objects.count(), Blob.objects.count())
    other = write_model_folder(tmp_path / "other", seed=1)
    response = client.post(URL, folder_upload(other), format="multipart")
    assert response.status_code == 409
    assert "already has a checkpoint labelled 'v1'" in response.json()["detail"]
    assert (Checkpoint.objects.count(), Blob.objects.count()) == before


@pytest.mark.django_db
def test_the_same_bytes_under_two_labels_are_stored_once(alice, api_client_for, tmp_path):
    client = api_client_for(alice, "submit")
    folder = write_model_folder(tmp_path / "ckpt", seed=42)
    start = StateSnapshot.capture()
    first = client.post(URL, folder_upload(folder, label="a"), format="multipart").json()
    after_first = StateSnapshot.capture()
    second = client.post(URL, folder_upload(folder, label="b"), format="multipart").json()
    after_second = StateSnapshot.capture()
    assert first["manifest_digest"] == second["manifest_digest"]
    assert after_first["blob_rows"] - start["blob_rows"] == 6
    assert len(after_first["blob_files"]) - len(start["blob_files"]) == 6
    assert after_second["blob_rows"] == after_first["blob_rows"]
    assert after_second["blob_files"] == after_first["blob_files"]
    assert after_second["checkpoints"] == after_first["checkpoints"] + 1


@pytest.mark.django_db
def test_read_scope_token_cannot_submit(alice, api_client_for, tmp_path, nothing_left_behind):
    folder = write_model_folder(tmp_path / "ckpt")
    response = api_client_for(alice, "read").post(URL, folder_upload(folder), format="multipart")
    assert response.status_code == 403
    assert "scope 'read'" in response.json()["detail"]
    nothing_left_behind.assert_unchanged()


@pytest.mark.django_db
def test_a_user_without_the_researcher_role_cannot_submit(personas, api_client_for, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt")
    snapshot_families = Checkpoint.objects.count()
    response = api_client_for(personas.mallory).post(URL, folder_upload(folder), format="multipart")
    assert response.status_code == 403
    assert "researchers role" in response.json()["detail"]
    assert Checkpoint.objects.count() == snapshot_families
    from audit.models import AuditEvent
    assert AuditEvent.objects.filter(verb="permission.denied", actor=personas.mallory).count() == 1


@pytest.mark.django_db
def test_only_family_owners_can_add_checkpoints(personas, api_client_for, tmp_path):
    from django.contrib.auth.models import Group

    folder = write_model_folder(tmp_path / "ckpt")
    assert api_client_for(personas.alice).post(
        URL, folder_upload(folder), format="multipart").status_code == 201
    other = personas.mallory
    other.groups.add(Group.objects.get(name="researchers"))
    response = api_client_for(other).post(URL, folder_upload(folder, label="v2"), format="multipart")
    assert response.status_code == 403
    assert "only the family's owners" in response.json()["detail"]


@pytest.mark.django_db
def test_anonymous_requests_are_refused(client, tmp_path):
    response = client.get(URL)
    assert response.status_code in (401, 403)
    response = client.get(URL, HTTP_AUTHORIZATION="Bearer sg_not-a-real-token")
    assert response.status_code == 401
    assert "Invalid or revoked API token" in response.json()["detail"]
