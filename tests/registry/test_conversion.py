"""Safetensors conversion of scanned-safe PyTorch checkpoints."""

from __future__ import annotations

import io
import json

import pytest
import torch
from django.core.exceptions import PermissionDenied
from safetensors.torch import load

from audit.models import AuditEvent
from models import blobstore, conversion, scanning, services
from models.models import Checkpoint
from tests.registry.test_scanning import IMPORTS_UNLISTED_CLASS
from tests.registry.test_tasks import wait_for


def state_dict():
    g = torch.Generator().manual_seed(3)
    embed = torch.randn(12, 4, generator=g)
    return {"embed.weight": embed, "head.weight": embed,  # tied, as in GPT-2
            "layer.bias": torch.zeros(4, dtype=torch.float16)}


def submit_pt(actor, label="pt") -> Checkpoint:
    buffer = io.BytesIO()
    torch.save(state_dict(), buffer)
    staged = [blobstore.stage_chunks("pytorch_model.bin", [buffer.getvalue()]),
              blobstore.stage_chunks("config.json", [json.dumps({"model_type": "x"}).encode()])]
    checkpoint = services.submit_checkpoint(actor=actor, family_name="lab/pt", label=label,
                                            files=staged)
    return scanning.scan_checkpoint(checkpoint_id=checkpoint.pk)


@pytest.mark.django_db
def test_a_safe_pytorch_checkpoint_converts_with_equal_tensors(alice):
    source = submit_pt(alice)
    assert source.status == "ready"
    converted = conversion.convert_checkpoint(checkpoint_id=source.pk, actor_id=alice.pk)
    assert converted.converted_from == source and converted.label == "pt-safetensors"
    assert converted.status == "ready"
    paths = set(converted.files.values_list("path", flat=True))
    assert paths == {"model.safetensors", "config.json"}
    with blobstore.open_blob(converted.files.get(path="model.safetensors").blob_id) as f:
        tensors = load(f.read())
    original = state_dict()
    for name, tensor in tensors.items():
        assert torch.equal(tensor, original[name]) and tensor.dtype == original[name].dtype
    assert converted.census["parameters"]["total"] >= 12 * 4 + 4
    event = AuditEvent.objects.get(verb="checkpoint.converted")
    assert event.data["from"] == source.manifest_digest
    assert event.data["to"] == converted.manifest_digest
    # Runs twice: the existing conversion is returned.
    assert conversion.convert_checkpoint(checkpoint_id=source.pk, actor_id=alice.pk) == converted


def pt_bytes(tensors: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


@pytest.mark.django_db
def test_each_pickle_converts_where_it_was_and_a_sharded_set_through_its_index(alice):
    g = torch.Generator().manual_seed(5)
    shard_1, shard_2 = {"a": torch.randn(3, 2, generator=g)}, {"b": torch.randn(2, generator=g)}
    encoder = {"enc": torch.randn(4, generator=g)}
    index = {"metadata": {}, "weight_map": {"a": "pytorch_model-00001-of-00002.bin",
                                            "b": "pytorch_model-00002-of-00002.bin"}}
    files = {"pytorch_model-00001-of-00002.bin": pt_bytes(shard_1),
             "pytorch_model-00002-of-00002.bin": pt_bytes(shard_2),
             "pytorch_model.bin.index.json": json.dumps(index).encode(),
             "text_encoder/pytorch_model.bin": pt_bytes(encoder),
             "text_encoder/config.json": b'{"model_type": "x"}',
             "config.json": b'{"model_type": "y"}'}
    staged = [blobstore.stage_chunks(path, [data]) for path, data in files.items()]
    source = services.submit_checkpoint(actor=alice, family_name="lab/layout", label="v1",
                                        files=staged)
    source = scanning.scan_checkpoint(checkpoint_id=source.pk)
    converted = conversion.convert_checkpoint(checkpoint_id=source.pk, actor_id=alice.pk)

    by_path = {f.path: f for f in converted.files.all()}
    assert set(by_path) == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                            "model.safetensors.index.json", "text_encoder/model.safetensors",
                            "text_encoder/config.json", "config.json"}
    with blobstore.open_blob(by_path["text_encoder/model.safetensors"].blob_id) as f:
        assert torch.equal(load(f.read())["enc"], encoder["enc"])
    for path in ("config.json", "text_encoder/config.json"):  # carried, the same blobs
        assert by_path[path].blob_id == source.files.get(path=path).blob_id


@pytest.mark.django_db
def test_two_pickles_that_would_become_one_file_are_refused(alice):
    staged = [blobstore.stage_chunks("weights.bin", [pt_bytes({"a": torch.ones(2)})]),
              blobstore.stage_chunks("weights.pt", [pt_bytes({"b": torch.ones(2)})])]
    source = services.submit_checkpoint(actor=alice, family_name="lab/clash", label="v1",
                                        files=staged)
    source = scanning.scan_checkpoint(checkpoint_id=source.pk)
    with pytest.raises(conversion.ConversionRefused, match="weights.safetensors"):
        conversion.convert_checkpoint(checkpoint_id=source.pk, actor_id=alice.pk)
    assert not Checkpoint.objects.filter(converted_from=source).exists()


@pytest.mark.django_db
def test_only_proven_safe_checkpoints_convert(alice, personas):
    staged = [blobstore.stage_chunks("model.pt", [IMPORTS_UNLISTED_CLASS])]
    checkpoint = services.submit_checkpoint(actor=alice, family_name="lab/pt", label="odd",
                                            files=staged)
    checkpoint = scanning.scan_checkpoint(checkpoint_id=checkpoint.pk)
    scanning.accept_scan_risk(actor=personas.bob, file=checkpoint.files.get(),
                              justification="our own config class, reviewed by hand")
    checkpoint.refresh_from_db()
    assert checkpoint.status == "ready"
    with pytest.raises(conversion.ConversionRefused, match="accepted risk is not enough"):
        conversion.request_conversion(actor=alice, checkpoint=checkpoint)
    with pytest.raises(PermissionDenied):
        conversion.request_conversion(actor=personas.mallory, checkpoint=submit_pt(alice, "b"))


@pytest.mark.django_db(transaction=True)
def test_the_worker_converts_on_request_through_the_api(celery_worker_process, api_client_for):
    from tests.conftest import make_persona

    alice = make_persona("alice")
    source = submit_pt(alice)
    response = api_client_for(alice).post(f"/api/v1/checkpoints/{source.pk}/convert/")
    assert response.status_code == 202
    converted = wait_for(lambda: Checkpoint.objects.filter(converted_from=source).first(),
                         timeout=120)
    assert converted.status == "ready"
    again = api_client_for(alice).post(f"/api/v1/checkpoints/{source.pk}/convert/")
    assert again.status_code == 200 and again.json()["id"] == converted.pk


def load_policy_with_conversion(conversion: str | None) -> None:
    """The default policy with `conversion.pytorch_to_safetensors` set, or without the key."""
    from releases.policies_service import load_policy_version
    from releases.policy.loader import DEFAULT_POLICY_PATH

    text = DEFAULT_POLICY_PATH.read_text()
    key = "conversion:\n  pytorch_to_safetensors: automatic\n"
    assert key in text
    text = text.replace(key, "" if conversion is None else
                        key.replace("automatic", conversion))
    text = text.replace('version: "', f'version: "conversion-{conversion}-', 1)
    load_policy_version(actor=None, text=text, source="conversion.yaml")


@pytest.mark.django_db
def test_a_policy_with_automatic_conversion_requests_one_when_the_scan_proves_safe(
        alice, django_capture_on_commit_callbacks):
    load_policy_with_conversion("automatic")
    with django_capture_on_commit_callbacks(execute=True):
        source = submit_pt(alice, label="auto")
    assert source.status == "ready"
    event = AuditEvent.objects.get(verb="checkpoint.conversion_requested")
    assert event.object_id == str(source.pk) and event.actor == alice


@pytest.mark.django_db
@pytest.mark.parametrize("conversion", ["on_request", None])
def test_a_policy_without_automatic_conversion_waits_to_be_asked(
        alice, conversion, django_capture_on_commit_callbacks):
    load_policy_with_conversion(conversion)
    with django_capture_on_commit_callbacks(execute=True):
        source = submit_pt(alice, label="manual")
    assert source.status == "ready"
    assert not AuditEvent.objects.filter(verb="checkpoint.conversion_requested").exists()


@pytest.mark.django_db
def test_a_file_not_proven_safe_is_never_converted_automatically(
        alice, django_capture_on_commit_callbacks):
    load_policy_with_conversion("automatic")
    staged = [blobstore.stage_chunks("model.pt", [IMPORTS_UNLISTED_CLASS])]
    with django_capture_on_commit_callbacks(execute=True):
        checkpoint = services.submit_checkpoint(actor=alice, family_name="lab/pt", label="odd",
                                                files=staged)
        checkpoint = scanning.scan_checkpoint(checkpoint_id=checkpoint.pk)
    assert checkpoint.status == "quarantined"
    assert not AuditEvent.objects.filter(verb="checkpoint.conversion_requested").exists()
