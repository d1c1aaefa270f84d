"""Verification at submission: a checkpoint that arrives with a model.sig (made with the stock
`model_signing sign key`) is checked against its family's trusted signers; the outcome is in the
census, on the checkpoint page, and a policy may require a valid one for a stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from safetensors.torch import save_file

from audit.models import AuditEvent
from models import blobstore, services
from models.models import ModelFamily
from models.provenance import add_trusted_signer
from models.localfiles import collect_files
from releases import workflow
from releases.errors import TransitionNotAllowed
from releases.models import Release
from releases.policies_service import load_policy_version
from signing import keys
from tests.checkpoints import tensors
from tests.releases.conftest import ASSESSMENT, POLICIES, run_pending_evals

pytestmark = pytest.mark.django_db
BIN = Path(sys.executable).parent


@pytest.fixture
def signer_key(tmp_path) -> tuple[Path, Path]:
    private = tmp_path / "training-ci.pem"
    private.write_bytes(keys.generate_private_pem())
    public = tmp_path / "training-ci.pub"
    public.write_text(keys.load_private_pem(private.read_bytes(), source="t").public.pem)
    return private, public


def make_folder(tmp_path: Path, name: str, seed: int = 0) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    save_file(tensors(seed), str(folder / "model.safetensors"))
    (folder / "README.md").write_text("# tiny\n")
    return folder


def stock_sign(folder: Path, private: Path) -> None:
    done = subprocess.run([str(BIN / "model_signing"), "sign", "key", str(folder),
                           "--private_key", str(private), "--signature",
                           str(folder / "model.sig")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def submit(actor, folder: Path, *, family="lab/signed", label="v1"):
    files, _ = collect_files(folder)
    staged = [blobstore.stage_local_file(rel, local) for rel, local in files]
    return services.submit_checkpoint(actor=actor, family_name=family, label=label, files=staged)


def trust(personas, public: Path, family="lab/signed", name="training-ci"):
    org, fam = family.split("/")
    return add_trusted_signer(actor=personas.dave, family=ModelFamily.objects.get(org=org, name=fam),
                              name=name, public_pem=public.read_text())


def test_a_checkpoint_without_a_signature_is_unsigned(personas, tmp_path, client):
    checkpoint = submit(personas.alice, make_folder(tmp_path, "plain"))
    assert checkpoint.census["signature"] == {"status": "unsigned"}
    client.force_login(personas.alice)
    page = client.get(checkpoint.get_absolute_url()).content.decode()
    assert "unsigned (no <code>model.sig</code> was submitted)" in page


def test_a_signature_by_a_trusted_signer_is_valid_and_shown(personas, tmp_path, signer_key,
                                                            client):
    private, public = signer_key
    submit(personas.alice, make_folder(tmp_path, "first"), label="v0")
    trust(personas, public)
    folder = make_folder(tmp_path, "signed", seed=1)
    stock_sign(folder, private)
    checkpoint = submit(personas.alice, folder)
    signature = checkpoint.census["signature"]
    assert signature["status"] == "valid" and signature["signer"] == "training-ci"
    assert signature["files"] == 2  # the weights and the card; model.sig itself is ignored
    event = AuditEvent.objects.get(verb="checkpoint.submitted", object_id=str(checkpoint.pk))
    assert event.data["signature"] == "valid"
    client.force_login(personas.alice)
    assert "signed by training-ci" in client.get(checkpoint.get_absolute_url()).content.decode()
    api = client.get(f"/api/v1/checkpoints/{checkpoint.pk}/").json()
    assert api["census"]["signature"]["status"] == "valid"


def test_a_signature_over_other_bytes_is_invalid_naming_the_file(personas, tmp_path, signer_key):
    private, public = signer_key
    submit(personas.alice, make_folder(tmp_path, "first"), label="v0")
    trust(personas, public)
    folder = make_folder(tmp_path, "tampered", seed=1)
    stock_sign(folder, private)
    (folder / "README.md").write_text("# changed after signing\n")
    signature = submit(personas.alice, folder).census["signature"]
    assert signature["status"] == "invalid"
    assert signature["reason"] == "README.md differs from the signed bytes"


def test_a_signature_by_an_untrusted_key_is_invalid_until_the_key_is_trusted(
        personas, tmp_path, signer_key):
    private, public = signer_key
    folder = make_folder(tmp_path, "signed")
    stock_sign(folder, private)
    checkpoint = submit(personas.alice, folder)
    assert checkpoint.census["signature"]["status"] == "invalid"
    assert "trusts no signer yet" in checkpoint.census["signature"]["reason"]
    other = tmp_path / "other.pub"
    other.write_text(keys.load_private_pem(keys.generate_private_pem(), source="o").public.pem)
    trust(personas, other, name="someone-else")
    checkpoint.refresh_from_db()
    assert "does not verify with any trusted key" in checkpoint.census["signature"]["reason"]
    trust(personas, public)
    checkpoint.refresh_from_db()
    assert checkpoint.census["signature"]["status"] == "valid"
    assert AuditEvent.objects.filter(verb="checkpoint.signature_checked").count() == 2
    assert AuditEvent.objects.filter(verb="family.signer_trusted").count() == 2


def test_only_a_release_manager_chooses_trusted_signers(personas, tmp_path, signer_key):
    _, public = signer_key
    submit(personas.alice, make_folder(tmp_path, "plain"))
    family = ModelFamily.objects.get(org="lab", name="signed")
    with pytest.raises(PermissionDenied, match="only a release manager"):
        add_trusted_signer(actor=personas.alice, family=family, name="mine",
                           public_pem=public.read_text())
    refusal = AuditEvent.objects.get(verb="permission.denied")
    assert refusal.data["action"] == "family.trust_signer"
    assert not family.trusted_signers.exists()


def test_the_command_adds_a_trusted_signer(personas, tmp_path, signer_key, capsys):
    _, public = signer_key
    submit(personas.alice, make_folder(tmp_path, "plain"))
    call_command("add_trusted_signer", "lab/signed", "--public-key", str(public), "--name",
                 "training-ci", "--user", "dave")
    assert "lab/signed trusts training-ci" in capsys.readouterr().out


def test_a_policy_can_require_a_valid_signature(personas, tmp_path, signer_key):
    private, public = signer_key
    text = (POLICIES / "simple.yaml").read_text().replace(
        "name: test-simple", "name: test-signed").replace(
        "  internal:\n    audience: owners and reviewers\n    tiers:\n      low:\n",
        "  internal:\n    audience: owners and reviewers\n    tiers:\n      low:\n"
        "        require_signature: true\n")
    assert "require_signature" in text
    load_policy_version(actor=None, text=text, source="signed.yaml")
    unsigned = submit(personas.alice, make_folder(tmp_path, "plain"), label="v0")
    trust(personas, public)
    folder = make_folder(tmp_path, "signed", seed=1)
    stock_sign(folder, private)
    signed = submit(personas.alice, folder)

    outcomes = {}
    for checkpoint in (unsigned, signed):
        release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                          assessment=ASSESSMENT)
        workflow.submit_release(actor=personas.alice, release=release)
        run_pending_evals(release)
        from releases.standing import release_standing

        gates = {g.name: g for g in release_standing(release).gates}
        outcomes[checkpoint.label] = (release.status, gates["signature"], release)
    status, gate, release = outcomes["v0"]
    assert status == "in_review" and not gate.passed and "unsigned" in gate.reason
    # What the audience gets: the unsigned bytes are not published to any stage, so even the
    # owners' internal stage serves nothing, and dave cannot publish them past the gate.
    release = Release.objects.get(pk=release.pk)
    assert release.current_stage == "" and release.published_checkpoint_id is None
    with pytest.raises(TransitionNotAllowed):
        workflow.publish_release(actor=personas.dave, release=release, stage="internal")
    assert Release.objects.get(pk=release.pk).current_stage == ""
    status, gate, _ = outcomes["v1"]
    assert status == "approved" and gate.passed and "signed by training-ci" in gate.reason


def test_a_signature_that_leaves_a_submitted_file_out_does_not_vouch_for_it(personas, tmp_path,
                                                                           signer_key):
    private, public = signer_key
    submit(personas.alice, make_folder(tmp_path, "first"), label="v0")
    trust(personas, public)
    folder = make_folder(tmp_path, "partial", seed=1)
    done = subprocess.run([str(BIN / "model_signing"), "sign", "key", str(folder),
                           "--private_key", str(private), "--signature", str(folder / "model.sig"),
                           "--ignore-paths", str(folder / "model.safetensors")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    signature = submit(personas.alice, folder).census["signature"]
    assert signature == {**signature, "status": "invalid",
                         "reason": "model.safetensors is not covered by the signature"}
