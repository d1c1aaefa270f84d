"""What changed between two checkpoints of a family: files, tensors and parameter counts,
read from the stored census and headers (no tensor data)."""

from __future__ import annotations

from models.models import Checkpoint


def _tensors(checkpoint: Checkpoint) -> dict[str, dict]:
    tensors: dict[str, dict] = {}
    for file in checkpoint.files.all():
        for name, info in (file.header or {}).get("tensors", {}).items():
            tensors[name] = info
    return tensors


def checkpoint_diff(old: Checkpoint, new: Checkpoint, *, limit: int = 50) -> dict:
    old_files = {f.path: f.blob_id for f in old.files.all()}
    new_files = {f.path: f.blob_id for f in new.files.all()}
    old_t, new_t = _tensors(old), _tensors(new)
    reshaped = sorted(name for name in set(old_t) & set(new_t)
                      if old_t[name] != new_t[name])
    old_params = old.census.get("parameters", {})
    new_params = new.census.get("parameters", {})
    dtypes = sorted(set(old_params.get("by_dtype", {})) | set(new_params.get("by_dtype", {})))
    return {
        "from": old.label, "to": new.label,
        "parameters": {"from": old_params.get("total", 0), "to": new_params.get("total", 0),
                       "delta": new_params.get("total", 0) - old_params.get("total", 0)},
        "by_dtype": [{"dtype": d, "from": old_params.get("by_dtype", {}).get(d, 0),
                      "to": new_params.get("by_dtype", {}).get(d, 0)} for d in dtypes],
        "files_added": sorted(set(new_files) - set(old_files)),
        "files_removed": sorted(set(old_files) - set(new_files)),
        "files_changed": sorted(p for p in set(old_files) & set(new_files)
                                if old_files[p] != new_files[p]),
        "tensors_added": sorted(set(new_t) - set(old_t))[:limit],
        "tensors_removed": sorted(set(old_t) - set(new_t))[:limit],
        "tensors_changed": [{"name": n, "from": old_t[n], "to": new_t[n]} for n in reshaped[:limit]],
        "architecture_changed": old.census.get("architecture") != new.census.get("architecture"),
    }
