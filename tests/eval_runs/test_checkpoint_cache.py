"""The eval cache's verified copies: made once, verified once, never used when they do not match
(or no longer match) the manifest, evicted least recently used first within their cap, and
safe with several worker processes building and using them at once."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from evaluations.checkpoint_cache import Layout, verified_copy
from evaluations.library.context import IntegrityError

FILES = {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": bytes(range(256)) * 400,
         "sub/tokenizer.json": b'{"version": "1.0"}'}


def manifest_of(files: dict[str, bytes]) -> tuple[str, list[dict]]:
    manifest = sorted(({"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
                       for p, b in files.items()), key=lambda e: e["path"])
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True,
                                       separators=(",", ":")).encode()).hexdigest()
    return digest, manifest


class FolderStore:
    """A blob store in a folder (blobs named by sha256) that logs every blob it is asked for,
    in a file, so that fetches by other processes are counted too."""

    def __init__(self, root: Path, log: Path, delay: float = 0.0):
        self.root, self.log, self.delay = Path(root), Path(log), delay

    def put(self, files: dict[str, bytes]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for data in files.values():
            (self.root / hashlib.sha256(data).hexdigest()).write_bytes(data)

    def __call__(self, sha256: str, target: Path, on_bytes) -> tuple[str, int]:
        with open(self.log, "a") as log:
            log.write(sha256 + "\n")
        time.sleep(self.delay)
        data = (self.root / sha256).read_bytes()  # FileNotFoundError when missing
        target.write_bytes(data)
        on_bytes(len(data))
        return hashlib.sha256(data).hexdigest(), len(data)

    def fetches(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []


@pytest.fixture
def store(tmp_path) -> FolderStore:
    store = FolderStore(tmp_path / "store", tmp_path / "fetches.log")
    store.put(FILES)
    return store


def use(cache: Path, store, files=FILES, cap: int = 10**9, progress=None):
    digest, manifest = manifest_of(files)
    return verified_copy(root=cache, cap_bytes=cap, manifest_digest=digest, manifest=manifest,
                         fetch=store, progress=progress)


def test_a_copy_is_made_and_verified_once_then_reused(tmp_path, store):
    cache = tmp_path / "cache"
    with use(cache, store) as first:
        assert first.built_now
        for path, data in FILES.items():
            assert (first.folder / path).read_bytes() == data
            assert not os.access(first.folder / path, os.W_OK) or os.geteuid() == 0
    with use(cache, store) as second:
        assert not second.built_now and second.folder == first.folder
        assert second.record["verified_at"] == first.record["verified_at"]
    assert len(store.fetches()) == len(FILES)  # each blob read once, for both uses


def test_bytes_that_do_not_match_the_manifest_fail_closed_and_leave_nothing(tmp_path, store):
    digest, manifest = manifest_of(FILES)
    blob = store.root / manifest[1]["sha256"]
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")  # model.safetensors, one byte changed
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match=r"model.safetensors: sha256 .*, manifest says"):
        with use(cache, store):
            pass
    layout = Layout(cache)
    assert list(layout.entries.iterdir()) == [] and list(layout.building.iterdir()) == []
    (store.root / manifest[0]["sha256"]).unlink()  # a missing blob: named, still nothing kept
    with pytest.raises(IntegrityError, match="config.json: missing"):
        with use(cache, store):
            pass
    assert list(layout.entries.iterdir()) == []


@pytest.mark.parametrize("change", ["write", "touch", "add", "link", "remove", "replace"])
def test_a_copy_changed_after_it_was_verified_is_never_used_again(tmp_path, store, change):
    cache = tmp_path / "cache"
    with use(cache, store) as copy:
        weights = copy.folder / "model.safetensors"
    if change == "write":
        weights.chmod(0o644)
        with open(weights, "r+b") as handle:
            handle.seek(10)
            handle.write(b"\xff")
        weights.chmod(0o444)
    elif change == "touch":  # same bytes, times put back: the change time still moved
        stat = weights.stat()
        weights.chmod(0o644)
        weights.chmod(0o444)
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "add":
        (copy.folder / "extra.py").write_text("import os\n")
    elif change == "link":  # a folder linked in: a link is never followed, always counted
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "model-00002.safetensors").write_bytes(b"more")
        os.symlink(tmp_path / "elsewhere", copy.folder / "shards")
    elif change == "remove":
        weights.unlink()
    else:
        weights.unlink()
        weights.write_bytes(b"not the weights")
    with use(cache, store) as again:
        assert again.built_now, change
        for path, data in FILES.items():
            assert (again.folder / path).read_bytes() == data
        assert not (again.folder / "extra.py").exists()
        assert not (again.folder / "shards").exists()
    assert len(store.fetches()) == 2 * len(FILES)


def test_copies_beyond_the_cap_evict_the_least_recently_used_and_never_one_in_use(tmp_path,
                                                                                  store):
    cache = tmp_path / "cache"
    models = {name: {"model.safetensors": name.encode() * 1000} for name in "abcd"}
    for files in models.values():
        store.put(files)
    cap = 2 * 1000 + 500  # two copies fit, not three
    digests = {name: manifest_of(files)[0] for name, files in models.items()}

    def cached() -> set[str]:
        present = {p.stem for p in Layout(cache).entries.glob("*.json")}
        return {name for name, digest in digests.items() if digest in present}

    for name in "ab":
        with use(cache, store, models[name], cap):
            pass
    with use(cache, store, models["a"], cap):  # a is now the most recently used
        pass
    with use(cache, store, models["c"], cap):
        pass
    assert cached() == {"a", "c"}

    with ExitStack() as held:
        held.enter_context(use(cache, store, models["a"], cap))
        held.enter_context(use(cache, store, models["c"], cap))
        with use(cache, store, models["d"], cap) as no_room:  # both in use: nothing evicted
            assert no_room is None
        assert cached() == {"a", "c"}
    too_big = {"model.safetensors": b"x" * (cap + 1)}
    store.put(too_big)
    with use(cache, store, too_big, cap) as skipped:
        assert skipped is None
    with use(cache, store, cap=0) as off:
        assert off is None


def test_a_dead_builders_leftovers_are_removed_and_do_not_count(tmp_path, store):
    cache = tmp_path / "cache"
    layout = Layout(cache)
    layout.make()
    other = "f" * 64
    (layout.building / f"{other}.99999.dead").mkdir()
    (layout.building / f"{other}.99999.dead" / "model.safetensors").write_bytes(b"half")
    (layout.building / f"{other}.99999.dead.json").write_text(
        json.dumps({"digest": other, "size": 10**9}))
    with use(cache, store, cap=200_000) as copy:  # the dead claim of 1 GB would leave no room
        assert copy is not None and copy.built_now
    assert list(layout.building.iterdir()) == []


def _use_in_another_process(cache: str, store_root: str, log: str, ready, go, out) -> None:
    store = FolderStore(Path(store_root), Path(log), delay=0.2)
    ready.put(os.getpid())
    go.wait()
    waits = []  # (no) progress reported while another process builds: the run's heartbeat
    with use(Path(cache), store, progress=lambda done, total: waits.append(done)) as copy:
        data = {p: (copy.folder / p).read_bytes() == b for p, b in FILES.items()}
        time.sleep(0.2)  # still in use while the others look
        out.put((copy.built_now, str(copy.folder), all(data.values()), waits.count(0)))


def test_worker_processes_racing_for_one_checkpoint_build_it_once(tmp_path, store):
    context = multiprocessing.get_context("fork")
    ready, out, go = context.Queue(), context.Queue(), context.Event()
    cache = tmp_path / "cache"
    processes = [context.Process(target=_use_in_another_process,
                                 args=(str(cache), str(store.root), str(store.log), ready, go,
                                       out)) for _ in range(4)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=30)
    go.set()
    results = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sorted(built for built, _, _, _ in results) == [False, False, False, True]
    assert {folder for _, folder, _, _ in results} == {
        str(Layout(cache).folder(manifest_of(FILES)[0]))}
    assert all(intact for _, _, intact, _ in results)
    assert all(waits > 0 for built, _, _, waits in results if not built)
    assert sorted(store.fetches()) == sorted(e["sha256"] for e in manifest_of(FILES)[1])
