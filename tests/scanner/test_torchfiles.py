"""Loading and converting safe checkpoints happens in a limited child process, refuses anything
the scanner did not call safe, and converts to safetensors without changing a single value."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from models import torchfiles
from models.torchfiles import CheckpointRefused, WorkerFailed

LIMITS = {"timeout_s": 120, "memory_limit_bytes": 6 << 30}


def benign(corpus, name):
    return next(b.path for b in corpus.benign if b.name == name)


def malicious(corpus, name):
    return next(m.path for m in corpus.malicious if m.name == name)


def test_loading_happens_in_a_child_process_and_matches_the_census(corpus, monkeypatch):
    def never_here(*args, **kwargs):
        raise AssertionError("torch.load ran in the caller's process")

    monkeypatch.setattr(torch, "load", never_here)
    loaded = torchfiles.load_state_dict_checked(benign(corpus, "numpy-in-checkpoint"), **LIMITS)
    assert loaded["tensors"] == [{"name": "w", "dtype": "F32", "shape": [2]}]
    assert loaded["skipped"] == ["mean", "seed"]  # numpy values are not weights
    assert loaded["parameters"] == {"total": 2, "by_dtype": {"F32": 2}}
    assert len(loaded["sha256"]) == 64


def test_the_memory_limit_and_the_timeout_are_enforced(corpus):
    path = benign(corpus, "mlp-state-dict-zip")
    with pytest.raises(WorkerFailed, match="out of memory"):
        torchfiles.load_state_dict_checked(path, timeout_s=120, memory_limit_bytes=200 << 20)
    with pytest.raises(WorkerFailed, match="longer than 0.5 s"):
        torchfiles.load_state_dict_checked(path, timeout_s=0.5, memory_limit_bytes=6 << 30)


@pytest.mark.parametrize("name", ["p2-os-system", "pathlib-dotted-name", "zip-frame-straddle"])
def test_files_not_proven_safe_are_refused_before_anything_loads_them(corpus, tmp_path, name):
    path = malicious(corpus, name)
    with pytest.raises(CheckpointRefused, match="not safe"):
        torchfiles.load_state_dict_checked(path, **LIMITS)
    with pytest.raises(CheckpointRefused):
        torchfiles.convert_to_safetensors(path, tmp_path / "out.safetensors", **LIMITS)
    assert not (tmp_path / "out.safetensors").exists()


def test_conversion_keeps_every_value_and_records_tied_weights(corpus, tmp_path):
    from safetensors import safe_open

    source = benign(corpus, "tied-weights")
    target = tmp_path / "tied.safetensors"
    outcome = torchfiles.convert_to_safetensors(source, target, **LIMITS)
    assert outcome["aliases"] == {"head.weight": "embed.weight"}
    assert sorted(outcome["cloned"]) == ["embed.weight", "head.weight_view"]
    assert outcome["inputs"][0]["sha256"] == torchfiles.sha256_file(source)
    assert outcome["outputs"][0]["sha256"] == torchfiles.sha256_file(target)
    original = torch.load(source, weights_only=True)
    with safe_open(str(target), "pt") as converted:
        assert set(converted.keys()) == {"embed.weight", "head.weight_view"}
        assert json.loads(converted.metadata()["stagegate.aliases"]) == outcome["aliases"]
        for name, tensor in original.items():
            stored = converted.get_tensor(outcome["aliases"].get(name, name))
            assert stored.dtype == tensor.dtype and torch.equal(stored, tensor)


def test_a_sharded_gpt2_converts_and_loads_in_transformers(corpus, tmp_path):
    import transformers

    from tests.scanner.corpus_benign import tiny_gpt2

    target = tmp_path / "converted"
    outcome = torchfiles.convert_to_safetensors(corpus.sharded_folder, target, **LIMITS)
    assert sorted(p.name for p in target.iterdir()) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json"]
    assert outcome["aliases"] == {"lm_head.weight": "transformer.wte.weight"}
    assert len(outcome["inputs"]) == 3 and len(outcome["outputs"]) == 3
    index = json.loads((target / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"]
    shutil.copy(corpus.sharded_folder / "config.json", target / "config.json")
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(target).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, tiny_gpt2()(ids).logits)


def test_tensors_safetensors_cannot_hold_are_refused_not_approximated(corpus, tmp_path):
    with pytest.raises(WorkerFailed, match="cannot be stored in safetensors"):
        torchfiles.convert_to_safetensors(benign(corpus, "quantized-tensor"),
                                          tmp_path / "q.safetensors", **LIMITS)
    assert not list(tmp_path.iterdir())


def test_equality_is_bit_for_bit_including_nan_and_float8():
    nan = torch.tensor([float("nan"), 1.0])
    assert torchfiles._same(nan, nan.clone())
    assert not torchfiles._same(nan, torch.tensor([float("nan"), 2.0]))
    eight = torch.ones(3).to(torch.float8_e4m3fn)
    assert torchfiles._same(eight, eight.clone())
    assert not torchfiles._same(torch.ones(2), torch.ones(2, dtype=torch.float64))


def test_unsharing_keeps_one_name_per_identical_view_and_clones_the_rest():
    base = torch.arange(6.0)
    tensors = {"a": base, "b": base, "c": base[2:4], "d": torch.ones(1)}
    out, aliases, cloned = torchfiles._unshare(tensors)
    assert aliases == {"b": "a"} and sorted(cloned) == ["a", "c"]
    assert set(out) == {"a", "c", "d"}
    assert out["a"].untyped_storage().data_ptr() != out["c"].untyped_storage().data_ptr()
