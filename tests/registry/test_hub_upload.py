"""Submitting with the stock Hugging Face client: upload_folder into Stagegate over Xet (the
default) and over LFS (HF_HUB_DISABLE_XET=1), each commit a checkpoint like any submission."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
from django.test import override_settings
from safetensors.torch import save_file

from models import services
from models.blobstore import stage_local_file
from models.localfiles import collect_files
from models.models import Checkpoint
from tests.checkpoints import write_model_folder
from tests.conftest import make_persona, token_for
from tests.registry.hubclient import run_hf, run_python
from tests.registry.test_tasks import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MODES = [pytest.param(True, id="xet"), pytest.param(False, id="lfs")]
RECEIVED = re.compile(r"^(?:xorb|lfs object|lfs part \d+ of) \S+ received: (\d+) bytes")


@pytest.fixture
def alice_token(transactional_db):
    return token_for(make_persona("alice"), "submit")


def digest_of_submit_checkpoint(folder, family: str) -> str:
    """What `manage.py submit_checkpoint FOLDER` makes of the same folder (same staging)."""
    files = [stage_local_file(rel, path) for rel, path in collect_files(folder)[0]]
    return services.submit_checkpoint(actor=make_persona("alice"), family_name=family,
                                      label="cli", files=files).manifest_digest


def weights_folder(root, *, seed: int = 0):
    """A model folder whose weights span many Xet chunks (8 MB of random float32)."""
    folder = write_model_folder(root)
    g = torch.Generator().manual_seed(seed)
    save_file({"embed.weight": torch.randn(2048, 1024, generator=g)},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def change_middle_of(path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = bytes(255 - b for b in data[middle:middle + n])
    path.write_bytes(bytes(data))


def bytes_received(caplog) -> int:
    total = 0
    for record in caplog.records:
        match = RECEIVED.match(record.getMessage())
        if match:
            total += int(match.group(1))
    return total


def upload(server, token, home, folder, repo, *, xet, extra=""):
    return run_python(server, token, home, f"""
        api.create_repo({repo!r}, private=True, exist_ok=True)
        info = api.upload_folder(folder_path={str(folder)!r}, repo_id={repo!r}{extra})
        print(json.dumps({{"oid": info.oid}}))
    """, xet=xet)


@pytest.mark.parametrize("xet", MODES)
def test_upload_folder_makes_the_checkpoint_submit_checkpoint_would(
        stagegate_server, alice_token, tmp_path, xet, caplog):
    caplog.set_level(logging.WARNING, logger="django.request")
    folder = write_model_folder(tmp_path / "ckpt", shards=2)
    proc, result = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/tiny",
                          xet=xet)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The client's probes for what Stagegate does not offer (xorb upload grants, v2 shards) are
    # answered as the protocol expects, not logged as missing pages.
    assert not [r.getMessage() for r in caplog.records if r.name == "django.request"]
    checkpoint = Checkpoint.objects.get(family__org="lab", family__name="tiny")
    assert result["oid"] == checkpoint.commit
    assert checkpoint.manifest_digest == digest_of_submit_checkpoint(folder, "lab/tiny-cli")
    assert checkpoint.status == "ready" and checkpoint.census["sharding"]["sharded"]
    assert checkpoint.submitted_by.username == "alice"
    assert checkpoint.family.owners.user_set.filter(username="alice").exists()


@pytest.mark.parametrize("xet", MODES)
def test_a_second_upload_with_one_file_changed_sends_only_what_changed(
        stagegate_server, alice_token, tmp_path, xet, caplog):
    caplog.set_level(logging.INFO, logger="stagegate")
    folder = weights_folder(tmp_path / "ckpt")
    proc, first = upload(stagegate_server, alice_token, tmp_path / "home1", folder, "lab/big",
                         xet=xet)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sent_first = bytes_received(caplog)
    caplog.clear()
    change_middle_of(folder / "model.safetensors")
    # A fresh client cache: what the client skips, it learns from Stagegate's dedup answers.
    proc, second = upload(stagegate_server, alice_token, tmp_path / "home2", folder, "lab/big",
                          xet=xet)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sent_second = bytes_received(caplog)
    weights = (folder / "model.safetensors").stat().st_size
    assert sent_first >= weights * 0.9
    if xet:
        assert sent_second < weights * 0.05, (sent_first, sent_second)
    else:
        assert sent_second == weights  # LFS sends the changed file whole, and only it
    old, new = (Checkpoint.objects.get(family__name="big", manifest_digest__startswith=c["oid"])
                for c in (first, second))
    assert old.pk != new.pk and new.status == "ready"
    changed = {f.path for f in new.files.all()} - {(f.path) for f in old.files.all()}
    assert not changed
    assert {f.path for f in new.files.all() if f.blob_id != old.files.get(path=f.path).blob_id} \
        == {"model.safetensors"}


def test_after_the_cas_collects_a_changed_upload_still_sends_only_what_changed(
        stagegate_server, alice_token, tmp_path, caplog):
    """Once the first upload is committed and its receipts expired, the CAS drops its xorbs'
    bytes (the checkpoint's blobs hold every chunk): storage holds the weights once, and the
    next upload still deduplicates against them and is rebuilt from those blobs."""
    from datetime import timedelta

    from django.utils import timezone

    from models.blobstore import blob_storage, open_blob
    from models.hub_services import purge_expired_hub_uploads
    from models.models import XetTerm, Xorb
    from models.xet.store import xorb_name

    caplog.set_level(logging.INFO, logger="stagegate")
    folder = weights_folder(tmp_path / "ckpt")
    proc, _ = upload(stagegate_server, alice_token, tmp_path / "home1", folder, "lab/gc", xet=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    first_xorbs = list(Xorb.objects.values_list("hash", flat=True))
    assert first_xorbs
    purge_expired_hub_uploads(now=timezone.now() + timedelta(days=2))
    storage = blob_storage()
    assert not any(storage.exists(xorb_name(h)) for h in first_xorbs), \
        "every chunk is in a committed blob: no xorb keeps a second copy"

    caplog.clear()
    change_middle_of(folder / "model.safetensors")
    proc, second = upload(stagegate_server, alice_token, tmp_path / "home2", folder, "lab/gc",
                          xet=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    weights = folder / "model.safetensors"
    assert bytes_received(caplog) < weights.stat().st_size * 0.05
    new = Checkpoint.objects.get(family__name="gc", manifest_digest__startswith=second["oid"])
    assert new.status == "ready"
    rebuilt = new.files.get(path="model.safetensors").blob_id
    with open_blob(rebuilt) as stream:
        assert stream.read() == weights.read_bytes()
    assert XetTerm.objects.filter(file__sha256=rebuilt, xorb__bytes_dropped_at__isnull=False) \
        .exists(), "the unchanged chunks were read from the first checkpoint's blob"


@pytest.mark.parametrize("xet", MODES)
def test_upload_file_and_deletions_carry_every_other_file_over(
        stagegate_server, alice_token, tmp_path, xet):
    folder = write_model_folder(tmp_path / "ckpt")
    proc, _ = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/edit", xet=xet)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc, result = run_python(stagegate_server, alice_token, tmp_path / "home", """
        from huggingface_hub import CommitOperationDelete
        from huggingface_hub.errors import EntryNotFoundError
        added = api.upload_file(path_or_fileobj=b"notes about step 2", repo_id="lab/edit",
                                path_in_repo="extra/notes.txt", commit_message="step2")
        files_after_add = sorted(api.list_repo_files("lab/edit"))
        deleted = api.create_commit("lab/edit", commit_message="trim", operations=[
            CommitOperationDelete("extra/"), CommitOperationDelete("tokenizer.json")])
        try:
            api.delete_file("no-such-file.txt", repo_id="lab/edit")
            missing = "deleted?"
        except EntryNotFoundError as exc:
            missing = "EntryNotFoundError"
        print(json.dumps({"added": added.oid, "deleted": deleted.oid,
                          "files_after_add": files_after_add, "missing": missing}))
    """, xet=xet)
    assert proc.returncode == 0, proc.stderr[-4000:]
    family = Checkpoint.objects.filter(family__name="edit")
    base = family.get(label__startswith="hub-")
    added = family.get(label="step2")
    trimmed = family.get(manifest_digest__startswith=result["deleted"])
    base_paths = {f.path for f in base.files.all()}
    assert result["added"] == added.commit
    assert {f.path for f in added.files.all()} == base_paths | {"extra/notes.txt"}
    assert result["files_after_add"] == sorted(base_paths | {"extra/notes.txt"})
    assert {f.path for f in trimmed.files.all()} == base_paths - {"tokenizer.json"}
    assert result["missing"] == "EntryNotFoundError"
    for f in trimmed.files.all():  # carried over: the very same blobs
        assert f.blob_id == base.files.get(path=f.path).blob_id


def test_the_hf_command_line_creates_uploads_and_names_the_checkpoint(
        stagegate_server, alice_token, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt")
    home = tmp_path / "home"
    who = run_hf(stagegate_server, alice_token, home, "auth", "whoami")
    assert who.returncode == 0 and "alice" in who.stdout + who.stderr, who.stderr
    created = run_hf(stagegate_server, alice_token, home, "repos", "create", "lab/cli", "--private")
    assert created.returncode == 0, created.stderr[-3000:]
    done = run_hf(stagegate_server, alice_token, home, "upload", "lab/cli", str(folder),
                  "--commit-message", "step1000")
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = Checkpoint.objects.get(family__name="cli")
    assert checkpoint.label == "step1000"
    assert checkpoint.manifest_digest == digest_of_submit_checkpoint(folder, "lab/cli-copy")
    again = run_hf(stagegate_server, alice_token, home, "upload", "lab/cli", str(folder),
                   "--commit-message", "step1000")
    assert again.returncode == 0, again.stderr[-3000:]  # nothing changed: no new checkpoint
    assert Checkpoint.objects.filter(family__name="cli").count() == 1


def test_running_an_upload_again_resumes_and_commits_nothing_twice(
        stagegate_server, alice_token, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt")
    proc, first = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/again",
                         xet=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc, second = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/again",
                          xet=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert second["oid"] == first["oid"]
    assert Checkpoint.objects.filter(family__name="again").count() == 1


@override_settings(STAGEGATE_LFS_PART_SIZE=1024 * 1024)
def test_lfs_multipart_uploads_arrive_in_parts_and_become_one_blob(
        stagegate_server, alice_token, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="stagegate")
    folder = weights_folder(tmp_path / "ckpt")
    proc, result = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/parts",
                          xet=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    parts = [r for r in caplog.records if r.getMessage().startswith("lfs part")]
    assert len(parts) == -(-(folder / "model.safetensors").stat().st_size // (1024 * 1024))
    checkpoint = Checkpoint.objects.get(family__name="parts")
    assert checkpoint.manifest_digest == digest_of_submit_checkpoint(folder, "lab/parts-copy")


def test_a_model_card_with_broken_yaml_is_refused_before_any_upload(
        stagegate_server, alice_token, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt")
    (folder / "README.md").write_text("---\nlicense: [unclosed\n---\n# card\n")
    proc, _ = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/card", xet=True)
    assert proc.returncode != 0 and "Invalid metadata in README.md" in proc.stderr
    assert not Checkpoint.objects.filter(family__name="card").exists()


def test_a_pickle_the_scanner_refuses_is_quarantined_as_usual(
        stagegate_server, alice_token, tmp_path, celery_worker_process):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny"}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02cposix\nsystem\n(S'touch /tmp/x'\ntR.")
    proc, result = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/evil",
                          xet=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = Checkpoint.objects.get(family__name="evil")
    wait_for(lambda: Checkpoint.objects.get(pk=checkpoint.pk).status != "scanning")
    checkpoint.refresh_from_db()
    assert checkpoint.status == "quarantined" and not checkpoint.is_loadable


def test_upload_folder_with_delete_patterns_reads_the_unreleased_tree(
        stagegate_server, alice_token, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt")
    proc, _ = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/prune",
                     xet=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (folder / "tokenizer.json").unlink()
    proc, result = upload(stagegate_server, alice_token, tmp_path / "home", folder, "lab/prune",
                          xet=True, extra=", delete_patterns='tokenizer*.json'")
    assert proc.returncode == 0, proc.stderr[-4000:]
    pruned = Checkpoint.objects.get(family__name="prune", manifest_digest__startswith=result["oid"])
    paths = {f.path for f in pruned.files.all()}
    assert "tokenizer.json" not in paths and "tokenizer_config.json" in paths
