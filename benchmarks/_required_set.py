"""The required set of evals on one ~100 MB checkpoint, eval after eval on one worker: how many
times the worker reads the checkpoint's bytes, and how long the set takes, for today's code
(a git ref, run from an extracted copy), for this code with its caches off, and for this code.

Bytes read are the worker's process tree's /proc/<pid>/io counters: `read_bytes` (from the
disk: every file of the checkpoint, in the blob store and in the worker's eval cache, is
dropped from the page cache before each eval with posix_fadvise, as on a worker whose memory
cannot hold the checkpoint) and `rchar` (through read(), wherever it came from).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

SEVEN = ["integrity", "heldout_lm", "canary_exposure", "verbatim_extraction", "mc_knowledge",
         "pairwise_bias", "refusal_preference"]


def tree_io(leader: int) -> dict[str, int]:
    """read_bytes and rchar summed over every process in the worker's process group."""
    totals = {"read_bytes": 0, "rchar": 0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != leader:
                continue
            for line in Path(f"/proc/{entry}/io").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in totals:
                    totals[key] += int(value)
        except (OSError, ProcessLookupError):
            continue
    return totals


def drop_from_page_cache(paths: list[Path]) -> None:
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def checkpoint_files(checkpoint, cache_dir: Path) -> list[Path]:
    from models.blobstore import blob_name, blob_storage

    storage = blob_storage()
    paths = [Path(storage.path(blob_name(f.blob_id))) for f in checkpoint.files.all()]
    return paths + [p for p in cache_dir.rglob("*") if p.is_file()]


def extract_ref(root: Path, ref: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_set(*, checkpoint, warm_up, leader: int, cache_dir: Path) -> dict:
    """Run the seven evals one after another; per eval: seconds and bytes read."""
    from evaluations import services
    from evaluations.models import EvalRun

    from benchmarks.evals import wait_finished

    # Imports and the first model load of the process happen on another checkpoint first.
    ids = [r.pk for r in services.request_evals(actor=None, checkpoint=warm_up,
                                                eval_names=["integrity", "heldout_lm"])]
    wait_finished(ids, timeout=600)
    rows, wall = [], 0.0
    size = sum(f.size for f in checkpoint.files.all())
    for name in SEVEN:
        drop_from_page_cache(checkpoint_files(checkpoint, cache_dir))
        before = tree_io(leader)
        started = time.perf_counter()
        [run] = services.request_evals(actor=None, checkpoint=checkpoint, eval_names=[name])
        wait_finished([run.pk], timeout=1800)
        seconds = time.perf_counter() - started
        after = tree_io(leader)
        run = EvalRun.objects.get(pk=run.pk)
        wall += seconds
        rows.append({"eval": name, "status": run.status, "seconds": seconds,
                     "read_bytes": after["read_bytes"] - before["read_bytes"],
                     "rchar": after["rchar"] - before["rchar"], "error": run.error[:200]})
    return {"rows": rows, "seconds": wall, "size": size,
            "read_bytes": sum(r["read_bytes"] for r in rows),
            "rchar": sum(r["rchar"] for r in rows)}


def report(results: dict[str, dict]) -> None:
    size = next(iter(results.values()))["size"]
    print(f"\nrequired set ({len(SEVEN)} evals, one after another on one worker process, "
          f"1 torch thread) on a {size / 1e6:.1f} MB checkpoint:")
    print(f"{'code':<28}{'seconds':>9}{'read_bytes (cold) / size':>27}{'rchar / size':>14}"
          f"{'speed-up':>10}")
    base = results.get("today") or next(iter(results.values()))
    for label, result in results.items():
        print(f"{label:<28}{result['seconds']:>9.1f}{result['read_bytes'] / size:>26.2f}x"
              f"{result['rchar'] / size:>13.2f}x{base['seconds'] / result['seconds']:>9.2f}x")
    for label, result in results.items():
        failed = [r for r in result["rows"] if r["status"] != "succeeded"]
        print(f"  {label}: " + ", ".join(f"{r['eval']} {r['seconds']:.1f} s "
                                         f"({r['read_bytes'] / size:.1f}x)"
                                         for r in result["rows"]))
        for row in failed:
            print(f"    {row['eval']} {row['status']}: {row['error']}")
