"""Loading and converting PyTorch checkpoints the scanner proved safe — in a separate process.

Defence in depth: a file reaches `torch.load` only after `models.scanner` called it `safe`, and
even then only as `torch.load(weights_only=True, mmap=True, map_location="cpu")`, in a child
process with an address-space limit (RLIMIT_AS) and a wall-clock timeout, never in the caller's
process. The child reports what it loaded as JSON; the parent checks that against the scanner's
census, so a disagreement between the scanner and the loader is an error, not a silent success.

    load_state_dict_checked(path, timeout_s=..., memory_limit_bytes=...)   -> metadata
    convert_to_safetensors(src, dst, timeout_s=..., memory_limit_bytes=...) -> digests

`memory_limit_bytes` bounds the child's address space: it must cover torch itself (about 1 GB
of mappings on CPU) plus the checkpoint, since an mmap'd file counts as address space too.
The child is run as `python -m models.torchfiles`; it imports torch, numpy and safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from config import untrusted
from models.scanner import ScanResult, scan_path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HF_SHARD_PREFIX = "pytorch_model"
PICKLE_INDEX = "pytorch_model.bin.index.json"
OUT_OF_MEMORY = ("MemoryError", "std::bad_alloc", "Cannot allocate memory",
                 "failed to map segment", "DefaultCPUAllocator: can't allocate")


class CheckpointRefused(ValueError):
    """The scanner did not call the file safe; nothing loaded it."""

    def __init__(self, path: Path, result: ScanResult):
        reason = result.findings[0].message if result.findings else "no verdict"
        super().__init__(f"{path.name} is {result.verdict}, not safe: {reason}")
        self.path = path
        self.result = result


class WorkerFailed(RuntimeError):
    """The loading process failed, ran out of memory or time, or disagreed with the scanner."""


def load_state_dict_checked(path: str | os.PathLike, *, timeout_s: float,
                            memory_limit_bytes: int) -> dict:
    """Metadata of a safe checkpoint as torch.load(weights_only=True) sees it: tensors (name,
    dtype, shape), parameter counts, and the file's sha256."""
    path = Path(path)
    scan = _require_safe(path)
    loaded = _run_worker("load", {"path": str(path), "numpy": _uses_numpy(scan),
                                  "mmap": scan.format == "torch-zip"},
                         timeout_s, memory_limit_bytes)
    expected = [[t.name, t.dtype, list(t.shape)] for t in scan.tensors]
    if loaded["tensors"] != expected:
        raise WorkerFailed(f"{path.name}: torch.load returned different tensors from the ones the "
                           "scanner read in the file; refusing it")
    by_dtype: dict[str, int] = {}
    for _, dtype, shape in loaded["tensors"]:
        by_dtype[dtype] = by_dtype.get(dtype, 0) + _numel(shape)
    return {"path": str(path), "sha256": sha256_file(path), "format": scan.format,
            "tensor_count": len(loaded["tensors"]),
            "parameters": {"total": sum(by_dtype.values()),
                           "by_dtype": dict(sorted(by_dtype.items()))},
            "tensors": [{"name": n, "dtype": d, "shape": s} for n, d, s in loaded["tensors"]],
            "skipped": loaded["skipped"]}


def convert_to_safetensors(src_path: str | os.PathLike, dst_path: str | os.PathLike, *,
                           timeout_s: float, memory_limit_bytes: int) -> dict:
    """Convert a safe checkpoint to safetensors and verify every tensor round-trips.

    `src_path` is one checkpoint file (then `dst_path` is the output file, or a folder that
    gets `model.safetensors`), or a sharded Hugging Face checkpoint: its
    `pytorch_model.bin.index.json` or the folder holding it (then `dst_path` is a folder that
    gets `model-0000i-of-0000n.safetensors` and `model.safetensors.index.json`).
    Returns the sha256 and size of every input and output file, and what was dropped or copied.
    """
    src, dst = Path(src_path), Path(dst_path)
    index = src if src.name.endswith(".index.json") else src / PICKLE_INDEX
    if src.is_dir() or src.name.endswith(".index.json"):
        return _convert_sharded(index, dst, timeout_s, memory_limit_bytes)
    target = dst / "model.safetensors" if dst.is_dir() else dst
    outcome = _convert_files([(src, target)], timeout_s, memory_limit_bytes)
    return {**outcome, "index": None}


def _convert_sharded(index: Path, dst: Path, timeout_s: float, memory_limit_bytes: int) -> dict:
    try:
        weight_map = untrusted.loads(index.read_bytes(), what=index.name)["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkerFailed(f"{index}: not a readable pickle index ({exc})") from None
    shards = sorted(set(weight_map.values()))
    if not shards or any("/" in s or "\\" in s or s.startswith(".") for s in shards):
        raise WorkerFailed(f"{index.name} names shards outside its folder")
    dst.mkdir(parents=True, exist_ok=True)
    pairs = [(index.parent / shard, dst / _safetensors_name(shard)) for shard in shards]
    outcome = _convert_files(pairs, timeout_s, memory_limit_bytes)
    new_map: dict[str, str] = {}
    for result in outcome["files"]:
        for name in result["tensors"]:
            new_map[name] = Path(result["output"]).name
    listed = set(weight_map)
    converted = set(new_map) | set(outcome["aliases"])
    if listed != converted:
        missing = sorted(listed - converted)[:3] or sorted(converted - listed)[:3]
        raise WorkerFailed(f"{index.name} and its shards disagree about tensors, e.g. {missing}")
    out_index = dst / "model.safetensors.index.json"
    total = sum(r["bytes"] for r in outcome["files"])
    out_index.write_text(json.dumps({"metadata": {"total_size": total},
                                     "weight_map": dict(sorted(new_map.items()))}, indent=2))
    outcome["inputs"].append(_digest(index))
    outcome["outputs"].append(_digest(out_index))
    return {**outcome, "index": str(out_index)}


def _safetensors_name(shard: str) -> str:
    stem = shard.rsplit(".", 1)[0]
    if stem.startswith(HF_SHARD_PREFIX):
        stem = "model" + stem[len(HF_SHARD_PREFIX):]
    return stem + ".safetensors"


def _convert_files(pairs: list[tuple[Path, Path]], timeout_s: float,
                   memory_limit_bytes: int) -> dict:
    scans = {src: _require_safe(src) for src, _ in pairs}
    files = []
    for src, target in pairs:
        job = {"path": str(src), "output": str(target), "numpy": _uses_numpy(scans[src]),
               "mmap": scans[src].format == "torch-zip",
               "source_sha256": sha256_file(src)}
        files.append(_run_worker("convert", job, timeout_s, memory_limit_bytes))
    aliases = {k: v for f in files for k, v in f["aliases"].items()}
    return {"inputs": [_digest(src) for src, _ in pairs],
            "outputs": [_digest(target) for _, target in pairs],
            "files": files, "tensor_count": sum(len(f["tensors"]) for f in files),
            "aliases": aliases, "cloned": [n for f in files for n in f["cloned"]],
            "skipped": [n for f in files for n in f["skipped"]]}


def _require_safe(path: Path) -> ScanResult:
    result = scan_path(path)
    if result.verdict != "safe":
        raise CheckpointRefused(path, result)
    return result


def _uses_numpy(result: ScanResult) -> bool:
    return any(name.startswith("numpy.") for name in result.globals)


def _numel(shape) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(path: Path) -> dict:
    return {"path": str(path), "sha256": sha256_file(path), "size": path.stat().st_size}


def _run_worker(command: str, job: dict, timeout_s: float, memory_limit_bytes: int) -> dict:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_FORCE")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    try:
        done = subprocess.run([sys.executable, "-m", "models.torchfiles", command],
                              input=json.dumps(job), capture_output=True, text=True,
                              timeout=timeout_s, preexec_fn=limit, cwd=PROJECT_ROOT, env=env)
    except subprocess.TimeoutExpired:
        raise WorkerFailed(f"{Path(job['path']).name}: loading took longer than {timeout_s:g} s; "
                           "the process was killed") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        if any(sign in done.stderr for sign in OUT_OF_MEMORY) or done.returncode < 0:
            tail = f"out of memory under the {memory_limit_bytes:,}-byte limit ({tail})"
        raise WorkerFailed(f"{Path(job['path']).name}: the loading process failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the child process -----------------------------------------------------------------------

def _child_load(job: dict):
    import torch

    safe = _numpy_safe_globals() if job["numpy"] else []
    with torch.serialization.safe_globals(safe):
        return torch.load(job["path"], weights_only=True, mmap=job["mmap"], map_location="cpu")


def _numpy_safe_globals() -> list:
    import numpy
    from numpy._core import multiarray

    return ([multiarray._reconstruct, multiarray.scalar, numpy.ndarray, numpy.dtype,
             (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
             (multiarray.scalar, "numpy.core.multiarray.scalar")]
            + [type(numpy.dtype(code)) for code in
               "b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8 c8 c16".split()])


def _flatten(value, prefix: str = ""):
    """(tensors by dotted name, names of non-tensor leaves), named as the scanner names them."""
    import torch

    from models.scanner.tensors import key_text

    if isinstance(value, torch.Tensor):
        return {prefix: value}, []
    if isinstance(value, dict):
        items = [(key_text(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {}, [prefix]
    tensors, skipped = {}, []
    for key, child in items:
        more, other = _flatten(child, f"{prefix}.{key}" if prefix else key)
        tensors.update(more)
        skipped += other
    return tensors, skipped


def _meta(name: str, tensor) -> list:
    from models.scanner import policy
    return [name, policy.TORCH_DTYPES[str(tensor.dtype).split(".")[1]][1], list(tensor.shape)]


def _worker_load(job: dict) -> dict:
    tensors, skipped = _flatten(_child_load(job))
    return {"tensors": [_meta(n, t) for n, t in tensors.items()], "skipped": skipped}


def _worker_convert(job: dict) -> dict:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors, skipped = _flatten(_child_load(job))
    for name, tensor in tensors.items():
        dtype = _meta(name, tensor)[1]
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta or \
                dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"tensor {name!r} ({dtype}, {tensor.layout}) cannot be stored in "
                             "safetensors")
    out, aliases, cloned = _unshare(tensors)
    target = Path(job["output"])
    partial = target.with_name(target.name + ".partial")
    metadata = {"format": "pt", "stagegate.source_sha256": job["source_sha256"]}
    if aliases:
        metadata["stagegate.aliases"] = json.dumps(aliases, sort_keys=True)
    save_file({n: t.contiguous() for n, t in out.items()}, str(partial), metadata=metadata)
    with safe_open(str(partial), framework="pt") as written:
        if set(written.keys()) != set(out):
            raise ValueError("the safetensors file does not hold the tensors that were written")
        for name in out:
            if not _same(tensors[name], written.get_tensor(name)):
                raise ValueError(f"tensor {name!r} differs after conversion")
        for alias, kept in aliases.items():
            if not _same(tensors[alias], written.get_tensor(kept)):
                raise ValueError(f"tied tensor {alias!r} differs from {kept!r}")
    os.replace(partial, target)
    return {"output": str(target), "tensors": list(out), "aliases": aliases, "cloned": cloned,
            "skipped": skipped, "bytes": sum(t.numel() * t.element_size() for t in out.values())}


SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL",
                      "C64", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ",
                      "F8_E5M2FNUZ"}


def _unshare(tensors: dict) -> tuple[dict, dict, list]:
    """safetensors stores no aliases. As transformers does: names that are the very same view of
    one storage (tied weights) keep the first name, the others become aliases recorded in the
    metadata; different views of one storage are copied apart (clone)."""
    by_storage: dict[tuple, list[str]] = {}
    for name, tensor in tensors.items():
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr(), storage.nbytes())
        by_storage.setdefault(key if storage.nbytes() else ("empty", name), []).append(name)
    out, aliases, cloned = {}, {}, []
    for names in by_storage.values():
        views: dict[tuple, str] = {}
        for name in names:
            tensor = tensors[name]
            view = (tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()),
                    tensor.dtype)
            if view in views:
                aliases[name] = views[view]
            else:
                views[view] = name
                out[name] = tensor
        if len(views) > 1:
            for name in views.values():
                out[name] = tensors[name].clone()
                cloned.append(name)
    return out, aliases, cloned


def _same(a, b) -> bool:
    """Same dtype, shape and values; NaNs compare equal bit for bit."""
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    try:
        if torch.equal(a, b):
            return True
    except RuntimeError:  # dtypes without an equality kernel (float8) fall through to bytes
        pass
    flat_a, flat_b = a.contiguous().reshape(-1), b.contiguous().reshape(-1)
    return torch.equal(flat_a.view(torch.uint8), flat_b.view(torch.uint8))


if __name__ == "__main__":
    _command = sys.argv[1]
    _job = json.load(sys.stdin)
    _result = _worker_load(_job) if _command == "load" else _worker_convert(_job)
    print(json.dumps(_result))
