"""Small checkpoints made on the spot: valid safetensors files and model folders, and the
malformed variants each bad-input test needs. Nothing here is ever committed as a binary."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file


def tensors(seed: int = 0, scale: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(32 * scale, 16, generator=g),
        "layer.0.weight": torch.randn(16, 16, generator=g).to(torch.float16),
        "layer.0.bias": torch.zeros(16, dtype=torch.bfloat16),
        "head.weight": torch.randn(10, 16, generator=g),
        "positions": torch.arange(8, dtype=torch.int64),
    }


def expected_parameters(ts: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for t in ts.values())


def write_safetensors(path: Path, ts: dict[str, torch.Tensor] | None = None,
                      metadata: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(ts if ts is not None else tensors(), str(path), metadata=metadata or {"format": "pt"})
    return path


def raw_safetensors(header: dict | bytes, data: bytes = b"", *, declared_length: int | None = None) -> bytes:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(body) if declared_length is None else declared_length
    return struct.pack("<Q", length) + body + data


def write_model_folder(folder: Path, *, seed: int = 0, shards: int = 1) -> Path:
    """A Hugging Face-style folder: config.json, tokenizer files, card, and weights
    (one model.safetensors, or `shards` files with model.safetensors.index.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    ts = tensors(seed)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["TinyForCausalLM"], "model_type": "tiny", "hidden_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 32,
        "max_position_embeddings": 8, "torch_dtype": "float32"}))
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": 8}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Tiny\n")
    if shards == 1:
        write_safetensors(folder / "model.safetensors", ts)
    else:
        names = sorted(ts)
        weight_map = {}
        for i in range(shards):
            shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: ts[n] for n in names[i::shards]}
            write_safetensors(folder / shard, part)
            weight_map.update({n: shard for n in part})
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in ts.values())},
             "weight_map": weight_map}))
    return folder
