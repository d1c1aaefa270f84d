"""Ingest benchmark: submit a 2 GB safetensors file and compare with baselines measured now.

Prints, all measured in this run on the same file:
  - submit_checkpoint wall time / `sha256sum` wall time           (target <= 1.3)
  - submit_checkpoint wall time / one Python read+sha256+write pass (the physical floor)
  - peak RSS of the submit process                               (target < 300 MB)
  - census time vs safetensors.torch.load_file                    (target >= 100x faster)
    load_file maps the file lazily (safetensors >= 0.4 builds tensors over an mmap), so it is
    reported twice: as called, and with every tensor's bytes actually read (t.sum()), which is
    what loading the weights to use them costs.

Usage: .venv/bin/python benchmarks/ingest.py [--size-gb 2] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import PYTHON, ROOT, fresh_instance_env, human, run_with_rusage  # noqa: E402


def make_safetensors(path: Path, total_bytes: int, *, unique: bool = False) -> None:
    """A realistic-looking checkpoint: many F16/F32 tensors, random-ish bytes, written streaming.
    `unique`: fresh random bytes throughout (else one 64 MB block repeats, which a chunk-level
    deduplicating upload would send once)."""
    tensors, offset, i = {}, 0, 0
    sizes = [(4096, 4096, "F16", 2), (4096, 11008, "F16", 2), (4096, "", "F32", 4)]
    while offset < total_bytes:
        rows, cols, dtype, width = sizes[i % len(sizes)]
        shape = [rows, cols] if cols else [rows]
        nbytes = width * rows * (cols or 1)
        if offset + nbytes > total_bytes and tensors:
            break
        tensors[f"model.layers.{i // 3}.w{i % 3}"] = {"dtype": dtype, "shape": shape,
                                                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        i += 1
    header = json.dumps({"__metadata__": {"format": "pt"}, **tensors}).encode()
    header += b" " * (-len(header) % 8)
    block = os.urandom(64 * 1024 * 1024)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(header)) + header)
        remaining = offset
        while remaining:
            if unique:
                block = os.urandom(64 * 1024 * 1024)
            chunk = block[: min(len(block), remaining)]
            out.write(chunk)
            remaining -= len(chunk)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def python_floor(src: Path, scratch: Path) -> float:
    """One streaming pass: read, sha256, write — what any ingest must at least do."""
    def run():
        digest = hashlib.sha256()
        with open(src, "rb") as fin, open(scratch, "wb") as fout:
            while chunk := fin.read(4 * 1024 * 1024):
                digest.update(chunk)
                fout.write(chunk)
    t = timed(run)
    scratch.unlink()
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stagegate-bench-ingest-"))
    try:
        src = work / "model.safetensors"
        make_safetensors(src, int(args.size_gb * 1024**3))
        size = src.stat().st_size
        subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm the cache

        sha256sum = min(timed(lambda: subprocess.run(["sha256sum", str(src)], check=True,
                                                     stdout=subprocess.DEVNULL)) for _ in range(2))
        floor = min(python_floor(src, work / "floor.bin") for _ in range(2))

        env = fresh_instance_env(work / "instance")
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([PYTHON, "manage.py", "seed_demo", "--quiet", "--no-models"], cwd=ROOT,
                       env=env, check=True)
        submits, peak = [], 0
        for label in ("bench-a", "bench-b"):
            # bench-b submits the same bytes again: hashed once, found stored, nothing copied.
            wall, rss, _ = run_with_rusage([PYTHON, "manage.py", "submit_checkpoint", str(src),
                                            "--family", "bench/ingest", "--label", label,
                                            "--user", "alice", "--json"], env=env)
            submits.append(wall)
            peak = max(peak, rss)
        startup, _, _ = run_with_rusage([PYTHON, "manage.py", "check"], env=env)

        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        from models.census import CensusInput, take_census
        from safetensors.torch import load_file

        def census():
            take_census([CensusInput(path="model.safetensors", kind="safetensors", size=size,
                                     open=lambda: open(src, "rb"))])
        census_time = min(timed(census) for _ in range(5))
        load_time = timed(lambda: load_file(str(src)))

        def load_and_read():
            for tensor in load_file(str(src)).values():
                tensor.sum()
        read_time = timed(load_and_read)

        submit = submits[0]
        print(f"file: {human(size)} safetensors, measured {time.strftime('%Y-%m-%d')}")
        print(f"{'':<46}{'seconds':>10}{'ratio':>10}")
        print(f"{'sha256sum (coreutils)':<46}{sha256sum:>10.2f}{1:>10.2f}")
        print(f"{'python read+sha256+write (floor)':<46}{floor:>10.2f}{floor / sha256sum:>10.2f}")
        print(f"{'submit_checkpoint, new bytes':<46}{submits[0]:>10.2f}{submits[0] / sha256sum:>10.2f}")
        print(f"{'submit_checkpoint, same bytes again (dedup)':<46}{submits[1]:>10.2f}"
              f"{submits[1] / sha256sum:>10.2f}")
        print(f"{'  of which process start-up (manage.py check)':<46}{startup:>10.2f}")
        print()
        print(f"submit / sha256sum            {submit / sha256sum:.2f}   (target <= 1.3)")
        print(f"submit / floor                {submit / floor:.2f}")
        print(f"peak RSS of submit            {human(peak)}   (target < 300 MB)")
        print(f"census                        {census_time * 1000:.2f} ms")
        print(f"load_file (lazy mmap)         {load_time * 1000:.1f} ms   -> census is "
              f"{load_time / census_time:,.0f}x faster")
        print(f"load_file + read every tensor {read_time * 1000:.0f} ms   -> census is "
              f"{read_time / census_time:,.0f}x faster   (target >= 100x)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
