"""Verified local copies of checkpoints: made and verified once per worker machine, then shared
by every eval that machine runs on them.

Every model eval used to lay a checkpoint out from the blob store, re-hash every byte and load
it, so seven evals of one checkpoint read it thirteen times. Now the first eval on a machine
copies each file from the blob store into `<cache dir>/entries/<manifest digest>/`, hashing the
bytes as it writes them, and keeps the copy only if every file matches the manifest; later
evals on the machine load that copy without reading the blob store again.

Fail closed, as the per-eval re-hash was:
- a copy is built under a temporary name and renamed into place only after every file's size
  and sha256 matched the manifest; a mismatch raises IntegrityError (the run fails, naming every
  file) and leaves nothing behind, so a copy that failed verification is never used;
- its files are read-only, and every use first checks them against what was recorded when they
  were verified: the same files and nothing more, each a regular file with the same size,
  inode, modification and change times (a write, a chmod, a replacement or a `touch` changes at
  least one); any difference discards the copy, and a new one is made and verified from the
  blob store.

Several worker processes on one machine share the folder:
- one lock file per digest: a process using a copy holds it shared; one building or removing
  a copy holds it exclusively, so a copy is built once and never removed while in use;
- one lock for the whole folder while deciding what to evict, least recently used first and
  never a copy in use, so the folder stays within its size cap (counting copies being built).
A checkpoint larger than the cap, or a folder without room because every copy is in use, is not
cached: `verified_copy` yields None and the caller falls back to re-hashing for itself.

Plain Python (no Django), so that tests can drive it from several processes at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import shutil
import socket
import stat as stat_kinds
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from evaluations.library.context import IntegrityError

log = logging.getLogger(__name__)

# fetch(blob sha256, target path, on_bytes) -> (sha256 hex of the bytes written, their size)
Fetch = Callable[[str, Path, Callable[[int], None]], tuple[str, int]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VerifiedCopy:
    folder: Path
    record: dict  # what was verified: {"manifest_digest", "files": [...], "verified_at", ...}
    built_now: bool  # this call made (and verified) the copy


class Layout:
    """Where things live under the cache root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.entries = self.root / "entries"
        self.locks = self.root / "locks"
        self.building = self.root / "building"

    def make(self) -> None:
        for folder in (self.entries, self.locks, self.building):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def folder(self, digest: str) -> Path:
        return self.entries / digest

    def record(self, digest: str) -> Path:
        return self.entries / f"{digest}.json"

    def lock(self, digest: str) -> Path:
        return self.locks / f"{digest}.lock"


def _check_digest(digest: str) -> None:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a manifest digest: {digest!r}")


def _relative(path: str) -> PurePosixPath:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise IntegrityError([f"{path}: not a relative path inside the checkpoint"])
    return relative


@contextmanager
def verified_copy(*, root: Path, cap_bytes: int, manifest_digest: str, manifest: list[dict],
                  fetch: Fetch, progress: Progress | None = None) -> Iterator[VerifiedCopy | None]:
    """A verified local copy of the checkpoint, held (not evictable) while the block runs; None
    when it cannot be cached (cap 0 or too small, or no room). Raises IntegrityError when the
    blob store's bytes do not match the manifest."""
    _check_digest(manifest_digest)
    total = sum(int(entry["size"]) for entry in manifest)
    if cap_bytes <= 0 or total > cap_bytes or not manifest:
        yield None
        return
    layout = Layout(root)
    layout.make()
    with open(layout.lock(manifest_digest), "a+b") as lock:
        built = False
        for _ in range(3):
            _wait_for(lock, fcntl.LOCK_SH, progress, total)
            record = valid_record(layout, manifest_digest, manifest)
            if record is not None:
                break
            # Converting a shared lock is not atomic, hence the second look under it.
            _wait_for(lock, fcntl.LOCK_EX, progress, total)
            if valid_record(layout, manifest_digest, manifest) is None:
                discard(layout, manifest_digest)
                reservation = _make_room(layout, cap_bytes, total, manifest_digest)
                if reservation is None:
                    log.warning("eval cache %s has no room for %s (%d bytes): every copy is in "
                                "use; evaluating without it", layout.root, manifest_digest[:12],
                                total)
                    yield None
                    return
                _build(layout, manifest_digest, manifest, fetch, progress, reservation, total)
                built = True
        else:  # pragma: no cover - a copy evicted between three builds and their use
            raise RuntimeError(f"the eval cache copy of {manifest_digest[:12]} kept being removed")
        os.utime(layout.record(manifest_digest))  # most recently used
        yield VerifiedCopy(folder=layout.folder(manifest_digest), record=record, built_now=built)


def _wait_for(handle, mode: int, progress: Progress | None, total: int) -> None:
    """Take a lock, reporting (no) progress while another process holds it: copying a large
    checkpoint takes a while, and a run whose heartbeat stops counts as lost."""
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if progress:
                progress(0, total)
            time.sleep(0.1)


def valid_record(layout: Layout, digest: str, manifest: list[dict]) -> dict | None:
    """The copy's verification record if the copy is still exactly what was verified, else None."""
    try:
        record = json.loads(layout.record(digest).read_text())
    except (OSError, ValueError):
        return None
    files = record.get("files", [])
    if (record.get("manifest_digest") != digest
            or sorted((f["path"], f["sha256"], int(f["size"])) for f in files)
            != sorted((e["path"], e["sha256"], int(e["size"])) for e in manifest)):
        return None
    folder = layout.folder(digest)
    for entry in files:
        try:
            stat = os.lstat(folder / entry["path"])
        except OSError:
            return None
        if (not stat_kinds.S_ISREG(stat.st_mode)  # a regular file, never a link
                or [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]
                != [entry["size"], entry["ino"], entry["mtime_ns"], entry["ctime_ns"]]):
            log.warning("eval cache copy %s: %s changed since it was verified; discarding it",
                        digest[:12], entry["path"])
            return None
    if _contents(folder) != {entry["path"] for entry in files}:
        log.warning("eval cache copy %s: files were added since it was verified; discarding it",
                    digest[:12])
        return None
    return record


def _contents(folder: Path) -> set[str]:
    """Every entry under `folder` but its real directories: files, and links of any kind
    (never followed)."""
    found = set()
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(base) / name
            if path.is_symlink() or not path.is_dir():
                found.add(path.relative_to(folder).as_posix())
    return found


def discard(layout: Layout, digest: str) -> None:
    """Remove a copy (its record first, so a half-removed copy is never taken for whole).
    Only with the digest's lock held exclusively."""
    layout.record(digest).unlink(missing_ok=True)
    folder = layout.folder(digest)
    if folder.exists():
        _make_writable(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)


def _try_exclusive(layout: Layout, digest: str):
    """The digest's lock, held exclusively, if nobody uses or builds that copy; else None."""
    handle = open(layout.lock(digest), "a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _entries(layout: Layout) -> list[tuple[float, str, int]]:
    """(last used, digest, bytes) of every recorded copy."""
    found = []
    for path in layout.entries.glob("*.json"):
        try:
            record = json.loads(path.read_text())
            found.append((path.stat().st_mtime, path.stem,
                          sum(int(f["size"]) for f in record["files"])))
        except (OSError, ValueError, KeyError):
            continue
    return found


def _reservations(layout: Layout, ours: str) -> int:
    """Bytes promised to copies being built by live processes. A dead builder's leftovers are
    removed: its lock went with it (and `ours`, whose lock this process holds, has no other
    builder)."""
    reserved = 0
    for path in layout.building.glob("*.json"):
        try:
            claim = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        held = None if claim["digest"] == ours else _try_exclusive(layout, claim["digest"])
        if held is None and claim["digest"] != ours:
            reserved += int(claim["size"])
            continue
        shutil.rmtree(layout.building / path.stem, ignore_errors=True)
        path.unlink(missing_ok=True)
        if held is not None:
            held.close()
    return reserved


def _make_room(layout: Layout, cap: int, needed: int, digest: str) -> Path | None:
    """Evict least recently used copies (never one in use) until `needed` more bytes fit, and
    reserve them; the reservation's path, or None when there is no room."""
    with open(layout.root / "cache.lock", "a+b") as cache_lock:
        fcntl.flock(cache_lock, fcntl.LOCK_EX)
        entries = sorted(e for e in _entries(layout) if e[1] != digest)
        used = sum(size for _, _, size in entries) + _reservations(layout, digest)
        for _, victim, size in entries:
            if used + needed <= cap:
                break
            held = _try_exclusive(layout, victim)
            if held is None:
                continue  # in use
            with held:
                discard(layout, victim)
            log.info("eval cache: evicted %s (%d bytes)", victim[:12], size)
            used -= size
        if used + needed > cap:
            return None
        reservation = layout.building / f"{digest}.{os.getpid()}.{secrets.token_hex(4)}.json"
        reservation.write_text(json.dumps({"digest": digest, "size": needed}))
        return reservation


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _build(layout: Layout, digest: str, manifest: list[dict], fetch: Fetch,
           progress: Progress | None, reservation: Path, total: int) -> None:
    """Copy and verify every file under a temporary name, then rename the copy into place.
    Only with the digest's lock held exclusively."""
    partial = layout.building / reservation.stem
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(min(done, total), total)

    try:
        partial.mkdir(mode=0o700)
        problems, files = [], []
        for entry in sorted(manifest, key=lambda e: e["path"]):
            path = entry["path"]
            target = partial / _relative(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                sha256, size = fetch(entry["sha256"], target, on_bytes)
            except FileNotFoundError:
                problems.append(f"{path}: missing")
                continue
            if size != int(entry["size"]):
                problems.append(f"{path}: {size} bytes, manifest says {entry['size']}")
            elif sha256 != entry["sha256"]:
                problems.append(f"{path}: sha256 {sha256[:12]}…, manifest says "
                                f"{entry['sha256'][:12]}…")
            target.chmod(0o444)
            _fsync(target)
            files.append({"path": path, "sha256": entry["sha256"], "size": int(entry["size"])})
        if problems:
            raise IntegrityError(problems)
        final = layout.folder(digest)
        os.rename(partial, final)
        for file in files:  # stat after the rename: what every later use must find
            stat = os.lstat(final / file["path"])
            file.update(ino=stat.st_ino, mtime_ns=stat.st_mtime_ns, ctime_ns=stat.st_ctime_ns)
        record = {"manifest_digest": digest, "files": files, "verified_at": time.time(),
                  "verified_by": f"{socket.gethostname()}:{os.getpid()}"}
        staged = layout.entries / f".{digest}.{secrets.token_hex(4)}.json"
        staged.write_text(json.dumps(record, sort_keys=True))
        os.rename(staged, layout.record(digest))
        _fsync(layout.entries)
        log.info("eval cache: verified a copy of %s (%d files, %d bytes)", digest[:12],
                 len(files), total)
    finally:
        if partial.exists():
            _make_writable(partial)
            shutil.rmtree(partial, ignore_errors=True)
        reservation.unlink(missing_ok=True)
