"""Hub upload benchmark: upload_folder of a model folder into Stagegate over Xet and over LFS,
against submit_checkpoint of the same folder, all in this run.

Prints, for the same folder (a safetensors file of --size-gb and a config.json):
  - submit_checkpoint wall time (the baseline, a local submission)
  - upload_folder over Xet (the default client) and over LFS (HF_HUB_DISABLE_XET=1): wall time
    from the client's start to its commit answer, and the ratio to the baseline (target <= 2)
  - the peak RSS of the gunicorn workers during each upload (target < 300 MB)
  - what a second Xet upload of the folder with one tensor changed sent (dedup)
  - for each upload, the CPU seconds of the client process and of the server's workers (all
    threads): on a machine of few cores, whose work the wall time mostly is

The server is `gunicorn config.wsgi` (2 sync workers) on a fresh instance (SQLite, filesystem
blob store); each client runs in its own process with a fresh cache.

Usage: .venv/bin/python benchmarks/hub_upload.py [--size-gb 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import PYTHON, ROOT, fresh_instance_env, human, run_with_rusage  # noqa: E402
from benchmarks.ingest import make_safetensors  # noqa: E402
from tests.webservers import Gunicorn, cpu_seconds, memory, reset_peak_rss  # noqa: E402

UPLOAD = """
import json, sys, time
from huggingface_hub import HfApi
api = HfApi()
start = time.perf_counter()
api.create_repo(sys.argv[2], exist_ok=True)
info = api.upload_folder(folder_path=sys.argv[1], repo_id=sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start, "oid": info.oid}))
"""


def manage(env: dict, *args: str) -> str:
    return subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout


def client(server: Gunicorn, token: str, home: Path, folder: Path, repo: str, *, xet: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_ENDPOINT": server.url, "HF_TOKEN": token, "HF_HOME": str(home),
                "HF_XET_CACHE": str(home / "xet"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    server_cpu = cpu_seconds(server.worker_pids())
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([PYTHON, "-c", UPLOAD, str(folder), repo], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"upload to {repo} failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall,
            # CPU seconds (user + system, every thread) of the client process and of the
            # server's workers during the upload: whose work the wall time is.
            "client_cpu": (after.ru_utime + after.ru_stime) - (children.ru_utime
                                                                + children.ru_stime),
            "server_cpu": cpu_seconds(server.worker_pids()) - server_cpu,
            **json.loads(proc.stdout.strip().splitlines()[-1])}



def researcher(env: dict, username: str) -> str:
    """A token of a new researcher: someone who has uploaded nothing yet, so LFS sends it all."""
    manage(env, "shell", "-c", "from django.contrib.auth.models import Group, User; "
           f"u, _ = User.objects.get_or_create(username={username!r}); "
           "u.groups.add(Group.objects.get_or_create(name='researchers')[0])")
    return manage(env, "create_token", username, "--scope", "submit").strip()


def peak_rss(server: Gunicorn) -> int:
    return max(memory(pid)["VmHWM"] for pid in server.worker_pids())


def xorb_bytes(instance: Path) -> int:
    return sum(p.stat().st_size for p in (instance / "blobstore" / "xorbs").rglob("*")
               if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stagegate-bench-hub-upload-"))
    try:
        folder = work / "ckpt"
        folder.mkdir()
        make_safetensors(folder / "model.safetensors", int(args.size_gb * 1024**3), unique=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "bench"}))
        size = sum(p.stat().st_size for p in folder.iterdir())
        subprocess.run(["cat", *map(str, folder.iterdir())], stdout=subprocess.DEVNULL, check=True)

        instance = work / "instance"
        env = fresh_instance_env(instance)
        env["DEBUG"] = "false"
        manage(env, "migrate", "-v0")
        manage(env, "seed_demo", "--quiet", "--no-models")

        baseline, baseline_rss, _ = run_with_rusage(
            [PYTHON, "manage.py", "submit_checkpoint", str(folder), "--family", "bench/cli",
             "--label", "v1", "--user", "alice", "--json"], env=env)

        results = {}
        with Gunicorn(work / "gunicorn", workers=2) as server:
            server.start(env=env)
            for name, xet in (("xet", True), ("lfs", False)):
                for pid in server.worker_pids():
                    reset_peak_rss(pid)
                # Each as a user who has sent none of these bytes, in their own namespace.
                user = f"bench-{name}"
                result = client(server, researcher(env, user), work / f"home-{name}", folder,
                                f"{user}/model", xet=xet)
                results[name] = (result, peak_rss(server))
            # One tensor's bytes changed: the second Xet upload sends only the changed chunks
            # (a fresh client cache: it learns what Stagegate has from the dedup answers).
            before = xorb_bytes(instance)
            with open(folder / "model.safetensors", "r+b") as fh:
                fh.seek(size // 2)
                fh.write(os.urandom(4096))
            again = client(server, researcher(env, "bench-xet"), work / "home-again", folder,
                           "bench-xet/model", xet=True)
            sent_again = xorb_bytes(instance) - before

        print(f"folder: {human(size)} (model.safetensors + config.json), measured "
              f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")
        print(f"{'':<44}{'seconds':>9}{'/ submit':>10}{'server peak RSS':>17}"
              f"{'client CPU s':>14}{'server CPU s':>14}")
        print(f"{'submit_checkpoint (baseline)':<44}{baseline:>9.2f}{1:>10.2f}"
              f"{human(baseline_rss):>17}")
        for name, label in (("xet", "upload_folder over Xet (default client)"),
                            ("lfs", "upload_folder over LFS (HF_HUB_DISABLE_XET=1)")):
            result, rss = results[name]
            print(f"{label:<44}{result['wall']:>9.2f}{result['wall'] / baseline:>10.2f}"
                  f"{human(rss):>17}{result['client_cpu']:>14.2f}{result['server_cpu']:>14.2f}")
        print(f"{'second Xet upload, 4 KB of one tensor changed':<44}{again['wall']:>9.2f}"
              f"{again['wall'] / baseline:>10.2f}{'':>17}{again['client_cpu']:>14.2f}"
              f"{again['server_cpu']:>14.2f}   sent {human(sent_again)} of xorbs")
        print()
        print("targets: upload / submit_checkpoint <= 2, server peak RSS < 300 MB")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
