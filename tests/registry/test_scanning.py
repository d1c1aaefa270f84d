"""Pickle-based checkpoints wait for the scanner; anything not proven safe is quarantined."""

from __future__ import annotations

import io

import pytest
import torch
from django.core.exceptions import PermissionDenied

from audit.models import AuditEvent
from models import blobstore, scanning, services
from models.models import Checkpoint, ScanReport
from models.scanning import ScanError
from tests.registry.test_tasks import wait_for

# Hand-assembled pickles: built from opcodes, never by pickling a live object, and never loaded.
CALLS_POSIX_SYSTEM = b"\x80\x04cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."
IMPORTS_UNLISTED_CLASS = b"\x80\x02cdatetime\ndate\nq\x00)\x81q\x01."


def state_dict_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3, 4), "b": torch.zeros(4, dtype=torch.float16)}, buffer)
    return buffer.getvalue()


def submit(actor, files: dict[str, bytes], label="v1") -> Checkpoint:
    staged = [blobstore.stage_chunks(path, [data]) for path, data in files.items()]
    return services.submit_checkpoint(actor=actor, family_name="lab/pt", label=label, files=staged)


@pytest.mark.django_db
def test_a_safe_state_dict_becomes_ready_with_its_census(alice):
    checkpoint = submit(alice, {"pytorch_model.bin": state_dict_bytes()})
    assert checkpoint.status == "scanning"
    checkpoint = scanning.scan_checkpoint(checkpoint_id=checkpoint.pk)
    assert checkpoint.status == "ready"
    assert checkpoint.census["parameters"] == {"total": 16, "by_dtype": {"F16": 4, "F32": 12}}
    assert checkpoint.census["scan_pending"] == [] and checkpoint.census["complete"]
    assert ScanReport.objects.get().verdict == "safe"
    # Runs twice: the second call finds nothing to do and writes no event.
    events = AuditEvent.objects.count()
    assert scanning.scan_checkpoint(checkpoint_id=checkpoint.pk).status == "ready"
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_a_dangerous_global_quarantines_and_is_never_accepted(alice, personas):
    checkpoint = submit(alice, {"pytorch_model.bin": CALLS_POSIX_SYSTEM})
    checkpoint = scanning.scan_checkpoint(checkpoint_id=checkpoint.pk)
    assert checkpoint.status == "quarantined"
    report = ScanReport.objects.get()
    assert report.verdict == "unsafe"
    assert any("posix.system" in f["message"] for f in report.findings)
    with pytest.raises(ScanError, match="can never be accepted"):
        scanning.accept_scan_risk(actor=personas.bob, file=checkpoint.files.get(),
                                  justification="I really want this one to load, trust me")
    assert Checkpoint.objects.get(pk=checkpoint.pk).status == "quarantined"


@pytest.mark.django_db
def test_an_unknown_verdict_can_be_accepted_by_a_safety_reviewer(alice, personas):
    checkpoint = scanning.scan_checkpoint(
        checkpoint_id=submit(alice, {"model.pt": IMPORTS_UNLISTED_CLASS}).pk)
    assert checkpoint.status == "quarantined"
    file = checkpoint.files.get()
    for actor in (personas.alice, personas.carol, personas.mallory):
        with pytest.raises(PermissionDenied):
            scanning.accept_scan_risk(actor=actor, file=file,
                                      justification="a long enough justification here")
    with pytest.raises(ScanError, match="justification"):
        scanning.accept_scan_risk(actor=personas.bob, file=file, justification="ok")
    scanning.accept_scan_risk(actor=personas.bob, file=file,
                              justification="made by our own trainer; date is a config field")
    checkpoint.refresh_from_db()
    assert checkpoint.status == "ready"
    assert checkpoint.census["uncounted"] == ["model.pt"]
    event = AuditEvent.objects.get(verb="scan.risk_accepted")
    assert event.actor == personas.bob and "our own trainer" in event.data["justification"]


@pytest.mark.django_db
def test_a_pickle_under_another_name_is_scanned_not_trusted(alice):
    checkpoint = submit(alice, {"weights.data": state_dict_bytes(),
                                "model.safetensors": _safetensors()})
    kinds = dict(checkpoint.files.values_list("path", "kind"))
    assert kinds["weights.data"] == "pickle"
    assert checkpoint.status == "scanning"


def _safetensors() -> bytes:
    from safetensors.torch import save

    return save({"x": torch.zeros(2)})


@pytest.mark.django_db
def test_the_checkpoint_page_and_api_show_why(alice, personas, client, api_client_for):
    checkpoint = scanning.scan_checkpoint(
        checkpoint_id=submit(alice, {"pytorch_model.bin": CALLS_POSIX_SYSTEM}).pk)
    client.force_login(personas.bob)
    page = client.get(checkpoint.get_absolute_url()).content.decode()
    assert 'id="quarantine-notice"' in page and "posix.system" in page
    body = api_client_for(personas.bob).get(f"/api/v1/checkpoints/{checkpoint.pk}/").json()
    assert body["status"] == "quarantined"
    assert body["scan"][0]["verdict"] == "unsafe"
    response = api_client_for(personas.bob).post(
        f"/api/v1/checkpoints/{checkpoint.pk}/accept-risk/",
        {"path": "pytorch_model.bin", "justification": "x" * 30}, format="json")
    assert response.status_code == 409 and "never be accepted" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_the_worker_scans_a_submitted_pytorch_checkpoint(celery_worker_process):
    from tests.conftest import make_persona

    alice = make_persona("alice")
    checkpoint = submit(alice, {"pytorch_model.bin": state_dict_bytes()}, label="worker")
    wait_for(lambda: Checkpoint.objects.get(pk=checkpoint.pk).status != "scanning")
    assert Checkpoint.objects.get(pk=checkpoint.pk).status == "ready"
