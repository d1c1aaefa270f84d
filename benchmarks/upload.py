"""Upload paths benchmark: one file through every HTTP way into Stagegate, against the floor and
an nginx sink, all in this run.

For one safetensors file of --size-gb, medians of --runs (Xet: one run, see below):
  - floor: one Python pass that reads the file, sha256es it and writes it (what any ingest does)
  - nginx sink: `curl -T` of the file to Debian's nginx on loopback, which writes the body to a
    temporary file and answers (no hashing): what receiving the bytes costs a fast server
  - PUT: `curl -T` into an upload session (/api/v1/uploads/{id}/files/...), then its commit
  - multipart: `curl -F` to POST /api/v1/checkpoints/ (the browser's and curl's submission)
  - LFS: the batch call, then `curl -T` to the signed URL, then the ndjson commit
  - Xet: the stock client's upload_folder (chunking, dedup queries, xorbs, shard, commit with the
    rebuild); one run only, since a second one would be deduplicated to nothing
Each prints seconds and the ratio to the floor (target <= 1.3 for each) and to nginx. Every
measurement starts after os.sync(), so that none pays for the previous one's dirty pages, and
each run takes the measurements in another order (rotated by one), so that none always follows
the same one.

The server is `gunicorn config.wsgi` (1 sync worker) on a fresh instance. Needs /usr/sbin/nginx
(scripts/nginx.sh) and curl.

Usage: .venv/bin/python benchmarks/upload.py [--size-gb 2] [--runs 3] [--keep]
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

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import fresh_instance_env, human  # noqa: E402
from benchmarks.hub_upload import client, manage, researcher  # noqa: E402
from benchmarks.ingest import make_safetensors, python_floor  # noqa: E402
from tests.webservers import Gunicorn, Nginx  # noqa: E402


def sink_block(port: int) -> str:
    # proxy_pass to a closed port: nginx reads and stores the whole body before it tries the
    # upstream (request buffering), then answers 502. That is the sink.
    return f"""
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{ proxy_pass http://127.0.0.1:9; }}
    }}"""


def curl(*args: str) -> float:
    os.sync()  # start clean: no measurement pays for the previous one's dirty pages
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", "Expect:", *args], check=True)
    return time.perf_counter() - start


def timed(fn) -> float:
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stagegate-bench-upload-"))
    try:
        folder = work / "ckpt"
        folder.mkdir()
        src = folder / "model.safetensors"
        make_safetensors(src, int(args.size_gb * 1024**3), unique=True)
        size = src.stat().st_size
        digest = hashlib.sha256()
        with open(src, "rb") as fh:
            while chunk := fh.read(16 * 1024 * 1024):
                digest.update(chunk)
        sha = digest.hexdigest()
        env = fresh_instance_env(work / "instance")
        env.update({"DEBUG": "false", "STAGEGATE_UPLOAD_TMP_DIR": str(work / "instance" / "tmp")})
        manage(env, "migrate", "-v0")
        manage(env, "seed_demo", "--quiet", "--no-models")
        token = manage(env, "create_token", "alice", "--scope", "submit").strip()
        auth = {"Authorization": f"Bearer {token}"}
        times: dict[str, list[float]] = {}
        with Gunicorn(work / "gunicorn", workers=1) as server, \
                Nginx(work / "nginx", sink_block) as sink:
            server.start(env=env)
            sink.start()
            times["xet"] = [client(server, token, work / "home-xet", folder, "bench/xet",
                                   xet=True)["wall"]]
            for run in range(args.runs):
                lfs_token = researcher(env, f"lfs{run}")  # bytes it has not uploaded yet

                def put(run=run):
                    session = requests.post(f"{server.url}/api/v1/uploads/", headers=auth,
                                            json={"family": "bench/put", "label": f"r{run}"})
                    sid = session.json()["id"]
                    curl("-T", str(src), "-H", f"Authorization: Bearer {token}",
                         f"{server.url}/api/v1/uploads/{sid}/files/model.safetensors?sha256={sha}")
                    done = requests.post(f"{server.url}/api/v1/uploads/{sid}/commit/",
                                         headers=auth)
                    assert done.status_code == 201, done.text

                def floor() -> float:
                    os.sync()
                    return python_floor(src, work / "floor.bin")

                def multipart(run=run) -> float:
                    return curl("-H", f"Authorization: Bearer {token}",
                                "-F", "family=bench/multipart", "-F", f"label=r{run}",
                                "-F", f"path:model.safetensors=@{src}",
                                f"{server.url}/api/v1/checkpoints/")

                def lfs(run=run, lfs_token=lfs_token):
                    headers = {"Authorization": f"Bearer {lfs_token}"}
                    repo = f"lfs{run}/model"
                    requests.post(f"{server.url}/api/repos/create", headers=headers,
                                  json={"name": "model", "organization": f"lfs{run}"})
                    batch = requests.post(f"{server.url}/{repo}.git/info/lfs/objects/batch",
                                          headers=headers, json={
                                              "operation": "upload", "transfers": ["basic"],
                                              "objects": [{"oid": sha, "size": size}]})
                    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
                    curl("-T", str(src), href)
                    line = {"key": "lfsFile", "value": {"path": "model.safetensors",
                                                        "algo": "sha256", "oid": sha,
                                                        "size": size}}
                    body = json.dumps({"key": "header", "value": {"summary": "x"}}) + "\n" + \
                        json.dumps(line) + "\n"
                    done = requests.post(f"{server.url}/api/models/{repo}/commit/main",
                                         headers=headers, data=body)
                    assert done.status_code == 200, done.text

                steps = [("floor", floor),
                         ("nginx", lambda: curl("-T", str(src), f"{sink.url}/sink")),
                         ("put", lambda: timed(put)), ("multipart", multipart),
                         ("lfs", lambda: timed(lfs))]  # each returns its seconds
                # Each run starts one step later: what a step costs depends on what ran before
                # it (on a VM, writing into memory another step just freed is cheaper than into
                # fresh memory), so no path always gets the same neighbour.
                shift = run % len(steps)
                for key, step in steps[shift:] + steps[:shift]:
                    times.setdefault(key, []).append(step())
        floor = statistics.median(times["floor"])
        nginx = statistics.median(times["nginx"])
        print(f"file: {human(size)} safetensors, measured {time.strftime('%Y-%m-%d')}, "
              f"{os.cpu_count()} CPUs, medians of {args.runs} runs (Xet: 1)")
        print(f"{'':<52}{'seconds':>9}{'/ floor':>9}{'/ nginx':>9}")
        labels = {"floor": "floor: read + sha256 + write, one pass",
                  "nginx": "nginx sink (curl -T, body to a temp file)",
                  "put": "PUT into an upload session (+ commit)",
                  "multipart": "multipart POST /api/v1/checkpoints/",
                  "lfs": "LFS: batch + PUT to the signed URL + commit",
                  "xet": "Xet: the client's upload_folder (+ commit)"}
        for key, label in labels.items():
            value = statistics.median(times[key])
            print(f"{label:<52}{value:>9.2f}{value / floor:>9.2f}{value / nginx:>9.2f}")
        print("\ntarget: each upload path <= 1.3 x the floor")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
