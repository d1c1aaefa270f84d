"""integrity: every byte is re-hashed against the manifest, and any difference fails closed."""

from __future__ import annotations

import hashlib
import io
import shutil

import pytest

from evaluations.library import EvalContext, IntegrityError, run_eval


def manifest_of(folder) -> list[dict]:
    return sorted(({"path": p.relative_to(folder).as_posix(),
                    "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                    "size": p.stat().st_size} for p in folder.rglob("*") if p.is_file()),
                  key=lambda entry: entry["path"])


@pytest.fixture
def checkpoint(zoo, tmp_path):
    folder = shutil.copytree(zoo.base(0), tmp_path / "checkpoint")
    return folder, manifest_of(folder)


def test_untouched_files_pass_and_every_byte_is_counted(checkpoint):
    folder, manifest = checkpoint
    progress = []
    output = run_eval("integrity", EvalContext(model_dir=folder, manifest=manifest,
                                               progress=lambda d, t: progress.append((d, t))))
    total = sum(entry["size"] for entry in manifest)
    assert output.metrics == {"files_checked": float(len(manifest)),
                              "bytes_checked": float(total), "passed": 1.0}
    assert progress[-1] == (total, total)


def test_one_flipped_byte_fails_closed_and_names_the_file(checkpoint):
    folder, manifest = checkpoint
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.safetensors: sha256"):
        run_eval("integrity", EvalContext(model_dir=folder, manifest=manifest))


def test_a_missing_file_fails_closed(checkpoint):
    folder, manifest = checkpoint
    (folder / "config.json").unlink()
    with pytest.raises(IntegrityError, match="config.json: missing"):
        run_eval("integrity", EvalContext(model_dir=folder, manifest=manifest))


def test_a_truncated_file_fails_on_its_size(checkpoint):
    folder, manifest = checkpoint
    config = folder / "config.json"
    config.write_bytes(config.read_bytes()[:-1])
    with pytest.raises(IntegrityError, match="config.json: .* bytes, manifest says"):
        run_eval("integrity", EvalContext(model_dir=folder, manifest=manifest))


def test_a_file_the_manifest_does_not_list_fails_closed(checkpoint):
    folder, manifest = checkpoint
    (folder / "extra.py").write_text("print('hello')\n")
    with pytest.raises(IntegrityError, match="extra.py: present but not in the manifest"):
        run_eval("integrity", EvalContext(model_dir=folder, manifest=manifest))


def test_an_empty_manifest_fails_closed():
    with pytest.raises(IntegrityError):
        run_eval("integrity", EvalContext(manifest=[], open_file=lambda path: io.BytesIO()))


def test_it_streams_through_open_file_alone_for_any_format():
    blobs = {"weights.bin": b"\x80\x02pickle bytes", "weights.gguf": b"GGUF" + bytes(100)}
    manifest = [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
                for p, b in blobs.items()]
    output = run_eval("integrity", EvalContext(manifest=manifest,
                                               open_file=lambda p: io.BytesIO(blobs[p])))
    assert output.metrics["passed"] == 1.0


def test_paths_outside_the_checkpoint_are_not_opened(checkpoint):
    folder, manifest = checkpoint
    manifest = manifest + [{"path": "../outside", "sha256": "0" * 64, "size": 0}]
    with pytest.raises(IntegrityError, match="../outside: missing"):
        run_eval("integrity", EvalContext(model_dir=folder, manifest=manifest))
