"""Download benchmark: hf_hub_download of a 2 GB file from gunicorn against nginx, same run.

Makes a 2 GB safetensors file, submits it to a fresh instance (SQLite, its own data dir),
publishes it to `open` through the release services (benchmarks/_publish.py), then downloads it
with the stock huggingface_hub client, a fresh cache folder each time, from:
  - nginx (Debian's package) serving the same blob file statically on loopback, with the Hub
    headers written into its config: the baseline;
  - gunicorn alone, STAGEGATE_DOWNLOAD_MODE=stream (FileResponse, sent with sendfile);
  - nginx in front of gunicorn, STAGEGATE_DOWNLOAD_MODE=x-accel (docs/nginx-stagegate.conf).
Prints MB/s (10^6 bytes) for each, the ratio gunicorn / nginx (target >= 0.8) and the gunicorn
worker's peak RSS while it sends the file (target: flat, i.e. independent of the file's size).
The Python client is slower than the servers, so the same GETs are also timed with curl into
/dev/null: what the servers can do when the client is not the limit.

Usage: .venv/bin/python benchmarks/download.py [--size-gb 2] [--runs 3] [--keep]
Needs /usr/sbin/nginx (scripts/nginx.sh installs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import PYTHON, ROOT, fresh_instance_env, human  # noqa: E402
from benchmarks.ingest import make_safetensors  # noqa: E402
from tests.webservers import (  # noqa: E402
    NGINX,
    Gunicorn,
    Nginx,
    memory,
    render_server_block,
    reset_peak_rss,
)

REPO = "bench/download"
FILENAME = "model.safetensors"
X_ACCEL_PREFIX = "/_blobstore"


def manage(env: dict, *args: str) -> str:
    proc = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def static_block(port: int, *, blob: Path, commit: str, sha256: str, size: int) -> str:
    """The baseline: nginx answering the Hub's resolve URL from the file itself, no Django."""
    return f"""
    server {{
        listen 127.0.0.1:{port};
        location = /{REPO}/resolve/main/{FILENAME} {{
            alias {blob};
            types {{ }}
            default_type application/octet-stream;
            etag off;
            add_header X-Repo-Commit {commit};
            add_header X-Linked-Etag '"{sha256}"';
            add_header X-Linked-Size {size};
            add_header ETag '"{sha256}"';
        }}
    }}
"""


def cache_root(scratch: Path, size: int) -> Path:
    # On tmpfs when it has room, so the client's disk writes do not blur what the servers do.
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 3 * size:
        return Path(tempfile.mkdtemp(prefix="stagegate-bench-hf-", dir=shm))
    return scratch / "hf"


def curl_speed(url: str, size: int) -> float:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                          url], capture_output=True, text=True, check=True).stdout.split()
    if int(out[0]) != size:
        raise SystemExit(f"curl {url}: {out[0]} bytes, expected {size}")
    return size / float(out[1]) / 1e6


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3, help="downloads per server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if not os.access(NGINX, os.X_OK):
        raise SystemExit(f"{NGINX} is missing: run scripts/nginx.sh")

    os.environ.update({"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    from huggingface_hub import hf_hub_download

    scratch = Path(tempfile.mkdtemp(prefix="stagegate-bench-download-"))
    caches = cache_root(scratch, int(args.size_gb * 1024**3))
    try:
        src = scratch / FILENAME
        make_safetensors(src, int(args.size_gb * 1024**3))
        env = fresh_instance_env(scratch / "instance")
        env.update({"DEBUG": "false", "STAGEGATE_X_ACCEL_PREFIX": X_ACCEL_PREFIX})
        manage(env, "migrate", "-v0")
        manage(env, "seed_demo", "--quiet", "--no-models")
        submitted = json.loads(manage(env, "submit_checkpoint", str(src), "--family", REPO,
                                      "--label", "v1", "--user", "alice", "--json"))
        manage(env, "shell", "-c", "from benchmarks._publish import publish_open; "
                                   f"publish_open({submitted['id']})")
        sha256 = sha256_file(src)
        size = src.stat().st_size
        blob_root = scratch / "instance" / "blobstore"
        blob = blob_root / "blobs" / sha256[:2] / sha256[2:4] / sha256
        commit = submitted["manifest_digest"][:40]
        src.unlink()  # the blob is the same bytes; one copy in the page cache is enough
        with open(blob, "rb") as stream:  # warm the page cache for every server alike
            while stream.read(64 * 1024 * 1024):
                pass

        with Gunicorn(scratch / "gunicorn-stream") as stream_server, \
                Gunicorn(scratch / "gunicorn-accel") as accel_backend, \
                Nginx(scratch / "nginx-static",
                      lambda port: static_block(port, blob=blob, commit=commit, sha256=sha256,
                                                size=size)) as static, \
                Nginx(scratch / "nginx-accel",
                      lambda port: render_server_block(
                          listen=f"127.0.0.1:{port}", gunicorn=f"127.0.0.1:{accel_backend.port}",
                          x_accel_prefix=X_ACCEL_PREFIX, blob_root=blob_root)) as accel:
            stream_server.start(env={**env, "STAGEGATE_DOWNLOAD_MODE": "stream"})
            accel_backend.start(env={**env, "STAGEGATE_DOWNLOAD_MODE": "x-accel"})
            static.start()
            accel.start()
            targets = {"nginx static (baseline)": static.url,
                       "gunicorn, stream (sendfile)": stream_server.url,
                       "nginx x-accel -> gunicorn": accel.url}
            speeds: dict[str, list[float]] = {name: [] for name in targets}
            [worker] = stream_server.worker_pids()
            rss_before, rss_peak = 0, 0
            for run in range(args.runs + 1):  # run 0 warms every server up and checks bytes
                # Rotate the order so no server always goes first (or last).
                shift = run % len(targets)
                names = list(targets)[shift:] + list(targets)[:shift]
                for name in names:
                    cache = caches / f"run{run}-{list(targets).index(name)}"
                    if name.startswith("gunicorn"):
                        reset_peak_rss(worker)
                        before = memory(worker)["VmRSS"]
                    start = time.perf_counter()
                    path = hf_hub_download(REPO, FILENAME, endpoint=targets[name], token=False,
                                           cache_dir=cache)
                    seconds = time.perf_counter() - start
                    if name.startswith("gunicorn") and run:
                        rss_before = max(rss_before, before)
                        rss_peak = max(rss_peak, memory(worker)["VmHWM"])
                    if run == 0:
                        if sha256_file(Path(path)) != sha256:
                            raise SystemExit(f"{name}: the downloaded bytes differ from the blob")
                    else:
                        speeds[name].append(size / seconds / 1e6)
                    shutil.rmtree(cache)
            raw: dict[str, list[float]] = {name: [] for name in targets}
            for run in range(args.runs):
                for name, url in targets.items():
                    raw[name].append(curl_speed(f"{url}/{REPO}/resolve/main/{FILENAME}", size))
            versions = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()

        print(f"a {human(size)} safetensors file over loopback, {args.runs} runs per server "
              f"(after a warm-up); {os.cpu_count()} CPUs; {versions}; "
              f"measured {time.strftime('%Y-%m-%d')}")
        for title, table in (("hf_hub_download, fresh cache each run", speeds),
                             ("curl -o /dev/null (the client is not the limit)", raw)):
            baseline = statistics.median(table["nginx static (baseline)"])
            print(f"\n{title}")
            print(f"{'server':<30}{'median MB/s':>13}{'best MB/s':>11}{'/ nginx':>9}")
            for name, values in table.items():
                median = statistics.median(values)
                print(f"{name:<30}{median:>13.0f}{max(values):>11.0f}{median / baseline:>9.2f}")
        ratio = (statistics.median(speeds["gunicorn, stream (sendfile)"])
                 / statistics.median(speeds["nginx static (baseline)"]))
        print()
        print(f"gunicorn / nginx, hf_hub_download {ratio:.2f}   (target >= 0.8)")
        print(f"gunicorn worker RSS before        {human(rss_before)}")
        print(f"gunicorn worker peak RSS during   {human(rss_peak)}   "
              f"(+{human(max(rss_peak - rss_before, 0))} for a {human(size)} file: flat)")
    finally:
        if args.keep:
            print(f"kept {scratch} and {caches}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(caches, ignore_errors=True)


if __name__ == "__main__":
    main()
