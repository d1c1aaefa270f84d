"""The census: what a checkpoint's weights say about themselves, read from headers only.

`take_census` validates every file whose format it knows (safetensors headers, index files,
JSON configs) and returns the census plus per-file facts; any inconsistency is a FormatError that
names the file and the problem.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO, Callable

from config import untrusted
from models.formats import FormatError
from models.formats.layout import FileKind
from models.formats.safetensors import read_header

LARGEST_TENSORS_SHOWN = 10
MAX_JSON_BYTES = 50 * 1024 * 1024

CONFIG_KEYS = (
    "architectures", "model_type", "torch_dtype", "dtype", "vocab_size", "hidden_size", "n_embd",
    "d_model", "num_hidden_layers", "n_layer", "num_attention_heads", "n_head",
    "num_key_value_heads", "intermediate_size", "n_inner", "max_position_embeddings",
    "n_positions", "tie_word_embeddings", "rope_theta", "transformers_version",
)
JSON_KINDS = (FileKind.CONFIG, FileKind.GENERATION_CONFIG, FileKind.SAFETENSORS_INDEX,
              FileKind.PICKLE_INDEX)


@dataclass
class CensusInput:
    path: str
    kind: str
    size: int
    open: Callable[[], BinaryIO]


@dataclass
class CensusResult:
    census: dict
    file_headers: dict[str, dict] = field(default_factory=dict)  # path -> tensors + metadata


def take_census(files: list[CensusInput]) -> CensusResult:
    by_path = {f.path: f for f in files}
    weights = [f for f in files if f.kind in FileKind.WEIGHTS]
    if not weights:
        raise FormatError("no weight files: a checkpoint needs at least one .safetensors file "
                          "(or a PyTorch .bin/.pt/.pth/.ckpt file)")

    headers: dict[str, dict] = {}
    owner_of: dict[str, str] = {}
    by_dtype: Counter[str] = Counter()
    all_tensors: list[dict] = []
    metadata: dict[str, str] = {}
    for f in files:
        if f.kind != FileKind.SAFETENSORS:
            continue
        with f.open() as stream:
            try:
                header = read_header(stream, f.size)
            except FormatError as exc:
                raise FormatError(f"{f.path}: {exc}") from None
        tensors = {}
        for t in header.tensors:
            if t.name in owner_of:
                raise FormatError(f"tensor {t.name!r} appears in both {owner_of[t.name]} "
                                  f"and {f.path}")
            owner_of[t.name] = f.path
            by_dtype[t.dtype] += t.numel
            tensors[t.name] = {"dtype": t.dtype, "shape": list(t.shape)}
            all_tensors.append({"name": t.name, "dtype": t.dtype, "shape": list(t.shape),
                                "parameters": t.numel, "bytes": t.nbytes, "file": f.path})
        headers[f.path] = {"tensors": tensors, "metadata": header.metadata,
                           "header_bytes": header.header_size}
        metadata = metadata or header.metadata

    parsed_json = {f.path: _read_json(f) for f in files if f.kind in JSON_KINDS}
    for f in files:
        if f.kind == FileKind.SAFETENSORS_INDEX:
            _check_index(f.path, parsed_json[f.path], by_path, headers)

    config = next((parsed_json[f.path] for f in files
                   if f.kind == FileKind.CONFIG and "/" not in f.path), None)
    if config is None:
        config = next((parsed_json[f.path] for f in files if f.kind == FileKind.CONFIG), None)
    if config is not None and not isinstance(config, dict):
        raise FormatError("config.json is JSON but not an object")

    pickles = sorted(f.path for f in files if f.kind == FileKind.PICKLE)
    safetensor_files = [f for f in files if f.kind == FileKind.SAFETENSORS]
    indexes = [f.path for f in files if f.kind == FileKind.SAFETENSORS_INDEX]
    largest = sorted(all_tensors, key=lambda t: (-t["parameters"], t["name"]))[:LARGEST_TENSORS_SHOWN]
    census = {
        "parameters": {"total": sum(by_dtype.values()), "by_dtype": dict(sorted(by_dtype.items()))},
        "tensor_count": len(all_tensors),
        "largest_tensors": largest,
        "bytes": {"weights": sum(f.size for f in weights), "total": sum(f.size for f in files)},
        "file_count": len(files),
        "formats": sorted({f.kind for f in weights}),
        "sharding": {
            "safetensors_files": len(safetensor_files),
            "index": indexes[0] if indexes else None,
            "sharded": len(safetensor_files) > 1 or bool(indexes),
        },
        "architecture": _architecture(config),
        "config": {k: config[k] for k in CONFIG_KEYS if config and k in config},
        "safetensors_metadata": metadata,
        "scan_pending": pickles,
        "complete": not pickles,
    }
    return CensusResult(census=census, file_headers=headers)


def _read_json(f: CensusInput):
    if f.size > MAX_JSON_BYTES:
        raise FormatError(f"{f.path}: {f.size} bytes is too large for a JSON metadata file")
    with f.open() as stream:
        raw = stream.read()
    if not raw.strip():
        raise FormatError(f"{f.path}: file is empty; it should hold a JSON object")
    try:
        return untrusted.loads(raw, what=f.path)
    except untrusted.UntrustedInput as exc:
        raise FormatError(exc.message) from None


def _check_index(path: str, index, by_path: dict[str, CensusInput], headers: dict[str, dict]) -> None:
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise FormatError(f"{path}: an index needs a \"weight_map\" object of tensor -> file")
    folder = PurePosixPath(path).parent
    mapped: dict[str, set[str]] = {}
    for tensor, shard in index["weight_map"].items():
        if not isinstance(shard, str):
            raise FormatError(f"{path}: weight_map[{tensor!r}] is not a file name")
        shard_path = str(folder / shard) if str(folder) != "." else shard
        if shard_path not in by_path:
            raise FormatError(f"{path}: tensor {tensor!r} is mapped to {shard!r}, "
                              "which is not among the uploaded files")
        if by_path[shard_path].kind != FileKind.SAFETENSORS:
            raise FormatError(f"{path}: {shard!r} is not a .safetensors file")
        if tensor not in headers[shard_path]["tensors"]:
            raise FormatError(f"{path}: tensor {tensor!r} is mapped to {shard!r}, "
                              "but that file has no such tensor")
        mapped.setdefault(shard_path, set()).add(tensor)
    for shard_path, tensors in mapped.items():
        missing = set(headers[shard_path]["tensors"]) - tensors
        if missing:
            example = sorted(missing)[0]
            raise FormatError(f"{path}: {shard_path} holds {len(missing)} tensor(s) the index "
                              f"does not list, e.g. {example!r}")


def _architecture(config) -> dict | None:
    if not config:
        return None
    archs = config.get("architectures")
    return {
        "architectures": archs if isinstance(archs, list) else [],
        "model_type": config.get("model_type"),
        "layers": _first(config, "num_hidden_layers", "n_layer"),
        "hidden_size": _first(config, "hidden_size", "n_embd", "d_model"),
        "attention_heads": _first(config, "num_attention_heads", "n_head"),
        "vocab_size": config.get("vocab_size"),
        "context_length": _first(config, "max_position_embeddings", "n_positions"),
        "dtype": _first(config, "torch_dtype", "dtype"),
    }


def _first(config: dict, *keys: str):
    for key in keys:
        if key in config:
            return config[key]
    return None


def merge_pickle_tensors(census: dict, tensors_by_file: dict[str, list[dict]]) -> dict:
    """The census once the scanner has read the tensor metadata of pickle-based files.

    `tensors_by_file` maps a path to the scanner's tensor list ({name, dtype, shape, numel}); a
    path mapped to None (risk accepted on an unknown verdict) leaves that file uncounted, and the
    census says so in `uncounted`.
    """
    merged = json.loads(json.dumps(census))
    by_dtype: Counter[str] = Counter(merged["parameters"]["by_dtype"])
    largest = list(merged["largest_tensors"])
    count = merged["tensor_count"]
    uncounted = []
    for path, tensors in sorted(tensors_by_file.items()):
        if tensors is None:
            uncounted.append(path)
            continue
        for t in tensors:
            by_dtype[t["dtype"]] += t["numel"]
            count += 1
            largest.append({"name": t["name"], "dtype": t["dtype"], "shape": t["shape"],
                            "parameters": t["numel"], "bytes": None, "file": path})
    merged["parameters"] = {"total": sum(by_dtype.values()), "by_dtype": dict(sorted(by_dtype.items()))}
    merged["tensor_count"] = count
    merged["largest_tensors"] = sorted(largest, key=lambda t: (-t["parameters"], t["name"]))[
        :LARGEST_TENSORS_SHOWN]
    merged["scan_pending"] = []
    merged["uncounted"] = uncounted
    merged["complete"] = not uncounted
    return merged
