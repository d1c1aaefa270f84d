"""`manage.py submit_checkpoint`: a model folder or a file, with a one-line error on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from models.models import Checkpoint
from tests.checkpoints import expected_parameters, tensors, write_model_folder, write_safetensors
from tests.registry.bad_inputs import catalogue, write_folder

ROOT = Path(__file__).resolve().parents[2]


def submit(path, *, family="eleuther/tiny", label="step1000", user="alice", as_json=True) -> dict | str:
    out = StringIO()
    args = [str(path), "--family", family, "--label", label, "--user", user]
    if as_json:
        args.append("--json")
    call_command("submit_checkpoint", *args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue()) if as_json else out.getvalue()


@pytest.mark.django_db
def test_submitting_a_model_folder_prints_its_census_as_json(alice, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt", shards=2)
    result = submit(folder)
    assert result["parameters"] == expected_parameters(tensors())
    assert result["status"] == "ready"
    checkpoint = Checkpoint.objects.get(pk=result["id"])
    assert result["manifest_digest"] == checkpoint.manifest_digest
    assert checkpoint.files.count() == 8
    assert checkpoint.census["sharding"]["index"] == "model.safetensors.index.json"


@pytest.mark.django_db
def test_a_pytorch_file_is_held_for_the_scanner_and_the_output_says_so(alice, tmp_path):
    import torch

    folder = tmp_path / "pt"
    folder.mkdir()
    torch.save({"w": torch.ones(4, 4)}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    output = submit(folder, as_json=False)
    assert "(id " in output and "scan pending" in output
    assert "not yet counted  pytorch_model.bin: pickle files are read only after the scanner " \
           "proves them safe" in output


@pytest.mark.django_db
def test_submitting_one_file_uses_its_name(alice, tmp_path):
    path = write_safetensors(tmp_path / "weights.safetensors")
    result = submit(path)
    assert list(Checkpoint.objects.get(pk=result["id"]).files.values_list("path", flat=True)) == [
        "weights.safetensors"]


@pytest.mark.django_db
def test_human_output_names_the_digest_and_parameters(alice, tmp_path):
    text = submit(write_model_folder(tmp_path / "ckpt"), as_json=False)
    assert "manifest digest" in text and f"{expected_parameters(tensors()):,}" in text


@pytest.mark.django_db
def test_hidden_files_are_skipped(alice, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    (folder / ".cache").mkdir()
    result = submit(folder)
    paths = Checkpoint.objects.get(pk=result["id"]).files.values_list("path", flat=True)
    assert not any(p.startswith(".") for p in paths)


@pytest.mark.django_db
@pytest.mark.parametrize("case", [c for c in catalogue() if c.cli], ids=lambda c: c.id)
def test_bad_input_is_refused_by_the_cli(case, alice, tmp_path, nothing_left_behind):
    folder = write_folder(tmp_path / "ckpt", case.files)
    with override_settings(**case.settings), pytest.raises(CommandError) as refused:
        submit(folder, family=case.family, label=case.label)
    assert case.message in str(refused.value)
    assert "\n" not in str(refused.value)
    nothing_left_behind.assert_unchanged()


@pytest.mark.django_db
def test_a_label_that_exists_is_refused(alice, tmp_path, nothing_left_behind):
    submit(write_model_folder(tmp_path / "a"))
    snapshot = nothing_left_behind.capture()
    with pytest.raises(CommandError, match="already has a checkpoint labelled 'step1000'"):
        submit(write_model_folder(tmp_path / "b", seed=3))
    assert nothing_left_behind.capture() == snapshot


@pytest.mark.django_db
def test_a_missing_path_or_user_is_a_clear_error(alice, tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        submit(tmp_path / "nope")
    with pytest.raises(CommandError, match="no user named 'zed'"):
        submit(write_model_folder(tmp_path / "c"), user="zed")


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_non_zero_with_one_line(tmp_path):
    """A real process: exit code 1 and one line on stderr; --json prints only JSON."""
    from tests.conftest import make_persona
    from tests.live import worker_env

    make_persona("alice")
    env = worker_env()
    bad = write_folder(tmp_path / "bad", [("model.safetensors", b"\x08" + b"\0" * 7 + b"not json")])
    proc = subprocess.run([sys.executable, "manage.py", "submit_checkpoint", str(bad), "--family",
                           "lab/x", "--label", "v1", "--user", "alice"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "header is not valid JSON" in proc.stderr

    good = write_model_folder(tmp_path / "good")
    proc = subprocess.run([sys.executable, "manage.py", "submit_checkpoint", str(good), "--family",
                           "lab/x", "--label", "v1", "--user", "alice", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert {"id", "manifest_digest", "parameters", "status"} <= set(body)


def _io_counters() -> dict[str, int]:
    """Bytes this process (all its threads) passed through read/write-like system calls,
    copy_file_range and sendfile included."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {"read": int(fields["rchar"]), "written": int(fields["wchar"])}


def _submit_counting_io(path, label) -> tuple[dict, dict[str, int]]:
    before = _io_counters()
    result = submit(path, label=label)
    after = _io_counters()
    return result, {key: after[key] - before[key] for key in before}


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's I/O counters")
@pytest.mark.django_db
def test_resubmitting_known_bytes_reads_them_once_and_writes_nothing(alice, tmp_path):
    from models import blobstore

    weights = write_safetensors(tmp_path / "a" / "model.safetensors", tensors(scale=4096))
    size = weights.stat().st_size
    assert size > 8 * 1024 * 1024
    first, new_bytes = _submit_counting_io(weights, "step1")
    assert new_bytes["written"] >= size, "new bytes are copied into the store (and counted)"

    again, known_bytes = _submit_counting_io(weights, "step2")
    assert known_bytes["read"] < 1.25 * size, "the known file is read once, to hash it"
    assert known_bytes["written"] < size / 10, "and nothing of it is written again"
    assert again["manifest_digest"] == first["manifest_digest"]
    assert again["id"] != first["id"]

    # Same size, other bytes: hashed, found unknown, then copied and stored like any new file.
    other = write_safetensors(tmp_path / "b" / "model.safetensors", tensors(seed=1, scale=4096))
    assert other.stat().st_size == size
    third, other_bytes = _submit_counting_io(other, "step3")
    assert other_bytes["written"] >= size
    blob = Checkpoint.objects.get(pk=third["id"]).files.get().blob_id
    with blobstore.open_blob(blob) as stored:
        assert stored.read() == other.read_bytes()
    assert third["manifest_digest"] != first["manifest_digest"]
