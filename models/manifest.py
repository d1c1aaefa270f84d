"""The manifest digest: the name a checkpoint has forever, recomputable by anyone from its files."""

from __future__ import annotations

import hashlib
import json
from typing import Iterable


def manifest_entries(files: Iterable[tuple[str, str, int]]) -> list[dict]:
    return sorted(({"path": p, "sha256": h, "size": n} for p, h, n in files),
                  key=lambda entry: entry["path"])


def manifest_digest(files: Iterable[tuple[str, str, int]]) -> str:
    """sha256 of the UTF-8 bytes of json.dumps(sorted([{path, sha256, size}], key=path),
    sort_keys=True, separators=(",", ":")), paths POSIX and relative (DESIGN.md §3)."""
    canonical = json.dumps(manifest_entries(files), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
