"""integrity: re-hash every file against the manifest before anything else reads it.

Fails closed: a missing file, a size or hash mismatch, or (when a model folder is given) a file
the manifest does not list raises IntegrityError naming every problem. Streams in 1 MiB chunks,
so a 100 GB checkpoint needs no more memory than a small one. Runs on every format: it reads
bytes, never weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from evaluations.library.context import EvalContext, EvalOutput, IntegrityError
from evaluations.library.builtin import specs

CHUNK = 1024 * 1024

SPEC = specs.INTEGRITY


def _hash_file(ctx: EvalContext, path: str, on_bytes) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with ctx.file_opener()(path) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            on_bytes(len(chunk))
    return digest.hexdigest(), size


def run(ctx: EvalContext) -> EvalOutput:
    if not ctx.manifest:
        raise IntegrityError(["the manifest lists no files"])
    total = sum(int(entry["size"]) for entry in ctx.manifest)
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        ctx.progress(min(done, total), total)

    problems: list[str] = []
    samples = []
    for entry in sorted(ctx.manifest, key=lambda e: e["path"]):
        path = entry["path"]
        try:
            sha256, size = _hash_file(ctx, path, on_bytes)
        except (FileNotFoundError, KeyError, IsADirectoryError):
            problems.append(f"{path}: missing")
            samples.append({"path": path, "ok": False, "problem": "missing"})
            continue
        ok = sha256 == entry["sha256"] and size == int(entry["size"])
        if size != int(entry["size"]):
            problems.append(f"{path}: {size} bytes, manifest says {entry['size']}")
        elif sha256 != entry["sha256"]:
            problems.append(f"{path}: sha256 {sha256[:12]}…, manifest says {entry['sha256'][:12]}…")
        samples.append({"path": path, "ok": ok, "size": size, "sha256": sha256})
    if ctx.model_dir is not None:
        listed = {entry["path"] for entry in ctx.manifest}
        root = Path(ctx.model_dir)
        for path in sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()):
            if path not in listed:
                problems.append(f"{path}: present but not in the manifest")
    if problems:
        raise IntegrityError(problems)
    return _passed(samples, total)


def _passed(samples: list[dict], total: int, notes: list[str] | None = None) -> EvalOutput:
    return EvalOutput(metrics={"files_checked": float(len(samples)), "bytes_checked": float(total),
                               "passed": 1.0},
                      samples=samples, n_samples=len(samples), notes=notes or [])


def passed_when_copied(manifest: list[dict], *, verified_at: str) -> EvalOutput:
    """The result of this eval for bytes a worker hashed against the manifest while copying
    them from the blob store (evaluations.checkpoint_cache): the same rows and metrics as a
    passing run() over those bytes, without reading them a second time."""
    samples = [{"path": e["path"], "ok": True, "size": int(e["size"]), "sha256": e["sha256"]}
               for e in sorted(manifest, key=lambda e: e["path"])]
    return _passed(samples, sum(int(e["size"]) for e in manifest),
                   notes=[f"hashed from the blob store at {verified_at}, as this worker copied "
                          "the files it evaluates"])
