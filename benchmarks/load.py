"""Load test: 50 users on a deployment-shaped Stagegate on loopback, with a 2 GB submission in
the middle; latency per route and the small audited writes with and without the big upload.

The instance: gunicorn with deploy/gunicorn.conf.py (--web-workers sync workers), two Celery
workers, a throwaway PostgreSQL database, Redis (BENCH_REDIS_URL, emptied), and the blobs in S3
(moto's server, in its own process; downloads answer with a presigned redirect, the S3 mode).
Seeded through the services (benchmarks/_load_seed.py): an open and a gated repo of tiny
safetensors files, erin's grant, and --releases releases waiting for bob and carol.

The users (locust, as a library, in this process; benchmarks/_load_users.py), in shares of --users:
  - hub readers, anonymous, on the open repo: model info, tree, resolve + the S3 GET
  - gated readers with erin's token: the same on the gated repo
  - catalogue browsers: GET /models/
  - reviewers, bob's and carol's tokens: POST approve (the next release waiting for them), and
    now and then POST comment: the small audited writes
Phases: `before` (--seconds), `during` (a 2 GB safetensors file PUT with curl -T into an upload
session, then its commit; streamed from disk, never in memory), `after` (--seconds / 2).
Prints throughput, p50/p95/p99 and errors per route, and the p99 of the small audited writes
during the big submission against the phases without it (target: within 2x); then checks that
every download is a `weights.downloaded` event and that `manage.py verify_audit` passes.
The whole run stops at --max-seconds of load, finished or not (then it says so).

Usage: .venv/bin/python benchmarks/load.py [--users 50] [--seconds 120] [--big-mb 2048]
       [--web-workers N] [--releases 500] [--max-seconds 900] [--warmup 20] [--nginx] [--stand-ins-nice N]
       [--keep]
"""

from __future__ import annotations

from locust.env import Environment  # noqa: I001  (first: locust patches gevent in)

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    PYTHON,
    ROOT,
    choose_database,
    drop_database,
    fresh_instance_env,
    human,
)
from benchmarks._load_users import SEED, USER_CLASSES, WAITING, share  # noqa: E402
from benchmarks.ingest import make_safetensors  # noqa: E402
from tests.webservers import Gunicorn, Nginx, ServerProcess, render_server_block  # noqa: E402

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SMALL_WRITES = ("POST approve", "POST comment")
SAMPLES: list[tuple[str, str, float, bool, int]] = []  # phase, route, ms, ok, status
PHASE = {"name": "warm-up"}


def on_request(request_type, name, response_time, response_length, exception=None,
               response=None, **_) -> None:
    status = getattr(response, "status_code", 0) or 0
    SAMPLES.append((PHASE["name"], name, response_time, exception is None, status))


# --- the instance ---------------------------------------------------------------------------

class MotoServer(ServerProcess):
    """moto's S3 server in its own process, so its work does not share the users' process."""

    name = "moto"

    def command(self) -> list[str]:
        return stand_in([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)])


STAND_INS_NICE = 0  # --stand-ins-nice


def stand_in(command: list[str]) -> list[str]:
    """A process that in a deployment runs on another machine (the S3 service, the client that
    uploads the big file), at --stand-ins-nice here: on one shared machine it then takes the
    CPU the server does not use, as it would take none of the server's over a network."""
    return ["nice", "-n", str(STAND_INS_NICE), *command] if STAND_INS_NICE else command


class DeployedGunicorn(Gunicorn):
    """gunicorn with the deployment's config file; the bind on the command line wins over it."""

    def command(self) -> list[str]:
        return [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                "config.wsgi", "-b", f"127.0.0.1:{self.port}", "--no-control-socket"]


def manage(env: dict, *args: str) -> str:
    proc = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def start_celery(name: str, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "default,evals",
             "-n", f"{name}@%h", "--concurrency", "1", "-l", "info", "--without-gossip",
             "--without-mingle"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def wait_celery_ready(logs: list[Path], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not all(" ready." in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline:
            raise SystemExit(f"the Celery workers did not start: see {logs}")
        time.sleep(0.2)


def celery_tasks(logs: list[Path]) -> dict[str, int]:
    """What the workers did during the run, from their own log lines."""
    text = "".join(log.read_text(errors="replace") for log in logs)
    return {"succeeded": len(re.findall(r"Task \S+\[[^]]+\] succeeded", text)),
            "failed": len(re.findall(r"Task \S+\[[^]]+\] raised", text))}


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS).flushdb()


# --- the big submission -----------------------------------------------------------------------

def big_submission(url: str, token: str, path: Path, deadline: float, log: Path) -> dict:
    """PUT the file into an upload session with curl (streamed from disk), then commit it."""
    auth = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    session = requests.post(f"{url}/api/v1/uploads/", headers=auth,
                            json={"family": "bench/big", "label": "v1"}, timeout=60)
    session.raise_for_status()
    sid = session.json()["id"]
    curl = subprocess.Popen(stand_in(["curl", "-sS", "-o", str(log), "-w", "%{http_code}",
                                      "-H", "Expect:", "-H", f"Authorization: Bearer {token}",
                                      "-T", str(path),
                                      f"{url}/api/v1/uploads/{sid}/files/model.safetensors"]),
                            stdout=subprocess.PIPE, text=True)
    while curl.poll() is None:
        if time.monotonic() > deadline:
            curl.kill()
            return {"finished": False, "seconds": time.perf_counter() - started,
                    "why": "the PUT did not finish within --max-seconds"}
        gevent.sleep(0.2)
    put_seconds = time.perf_counter() - started
    code = curl.stdout.read().strip()
    if code != "201" and code != "200":
        return {"finished": False, "seconds": put_seconds,
                "why": f"PUT answered {code}: {log.read_text()[:300]}"}
    try:
        commit = requests.post(f"{url}/api/v1/uploads/{sid}/commit/", headers=auth,
                               timeout=max(deadline - time.monotonic(), 1))
    except requests.RequestException as exc:  # e.g. gunicorn's worker timeout ended it
        return {"finished": False, "seconds": time.perf_counter() - started,
                "put_seconds": put_seconds, "why": f"the commit got no answer: {exc}"}
    seconds = time.perf_counter() - started
    if commit.status_code != 201:
        return {"finished": False, "seconds": seconds,
                "why": f"commit answered {commit.status_code}: {commit.text[:300]}"}
    return {"finished": True, "seconds": seconds, "put_seconds": put_seconds,
            "checkpoint": commit.json().get("id"), "bytes": path.stat().st_size}


# --- figures --------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def route_table(samples, seconds: float) -> list[dict]:
    """Per route, over every measured phase; and the p99 without and during the big upload."""
    by_route: dict[str, list] = collections.defaultdict(list)
    for phase, route, ms, ok, _ in samples:
        by_route[route].append((phase, ms, ok))
    rows = []
    for route in sorted(by_route):
        times = [ms for _, ms, _ in by_route[route]]
        rows.append({"route": route, "requests": len(times), "per_s": len(times) / seconds,
                     "p50": percentile(times, 50), "p95": percentile(times, 95),
                     "p99": percentile(times, 99),
                     "p99_without": percentile([ms for p, ms, _ in by_route[route]
                                                if p != "during"], 99),
                     "p99_during": percentile([ms for p, ms, _ in by_route[route]
                                               if p == "during"], 99),
                     "errors": sum(1 for _, _, ok in by_route[route] if not ok)})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'route':<22}{'requests':>9}{'req/s':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
          f"{'errors':>7}  | {'p99 without':>11}{'p99 during':>11}")
    def ms(value: float, width: int) -> str:
        return f"{'-' if value != value else f'{value:.0f}':>{width}}"  # nan: no samples

    for r in rows:
        print(f"{r['route']:<22}{r['requests']:>9}{r['per_s']:>7.1f}{ms(r['p50'], 8)}"
              f"{ms(r['p95'], 8)}{ms(r['p99'], 8)}{r['errors']:>7}  | {ms(r['p99_without'], 11)}"
              f"{ms(r['p99_during'], 11)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120, help="the phase before the big "
                        "submission (the one after it lasts half as long)")
    parser.add_argument("--big-mb", type=int, default=2048, help="size of the big submission")
    parser.add_argument("--web-workers", type=int, default=0,
                        help="gunicorn workers (0: deploy/gunicorn.conf.py's 2 x CPUs + 1)")
    parser.add_argument("--releases", type=int, default=500, help="releases waiting for review")
    parser.add_argument("--max-seconds", type=float, default=900, help="cap on the load phases")
    parser.add_argument("--stand-ins-nice", type=int, default=0, help="run moto (the S3 "
                        "service) and the big upload's curl (its client) at this niceness: in a "
                        "deployment both are on other machines (0: as the server)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds of load before the "
                        "measured phases (the first requests of each worker are slow)")
    parser.add_argument("--nginx", action="store_true", help="put nginx with the deployment's "
                        "server block (docs/nginx-stagegate.conf) in front of gunicorn")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    global STAND_INS_NICE
    STAND_INS_NICE = args.stand_ins_nice

    work = Path(tempfile.mkdtemp(prefix="stagegate-bench-load-"))
    database = choose_database(work)
    if not database:
        raise SystemExit("the load test needs PostgreSQL (BENCH_ADMIN_DATABASE_URL)")
    flush_redis()
    processes: list = []
    celery: list[subprocess.Popen] = []
    try:
        moto = MotoServer(work / "moto")
        processes.append(moto)
        moto.start()
        import boto3

        keys = {"AWS_ACCESS_KEY_ID": "stagegate-bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                          aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket="stagegate-blobs")
        env = fresh_instance_env(work / "instance")
        env.update({"DEBUG": "false", "DATABASE_URL": database, "CELERY_BROKER_URL": REDIS,
                    "REDIS_URL": REDIS, "STAGEGATE_BLOB_STORAGE": "s3",
                    "AWS_STORAGE_BUCKET_NAME": "stagegate-blobs", "AWS_S3_ENDPOINT_URL": moto.url,
                    "AWS_S3_REGION_NAME": "us-east-1", "STAGEGATE_DOWNLOAD_MODE": "redirect",
                    "STAGEGATE_UPLOAD_TMP_DIR": str(work / "instance" / "tmp"), **keys})
        if args.web_workers:
            env["GUNICORN_WORKERS"] = str(args.web_workers)
        manage(env, "migrate", "-v0")
        started = time.perf_counter()
        SEED.update(json.loads(manage(env, "shell", "-c", "from benchmarks._load_seed import "
                                      f"seed; seed(releases={args.releases})").splitlines()[-1]))
        seed_seconds = time.perf_counter() - started
        WAITING.update({"bob": collections.deque(SEED["waiting"]),
                        "carol": collections.deque(reversed(SEED["waiting"]))})
        big = work / "big.safetensors"
        make_safetensors(big, args.big_mb * 1024 * 1024, unique=True)

        celery_logs = [work / f"celery-{name}.log" for name in ("w1", "w2")]
        celery = [start_celery(log.stem, env, log) for log in celery_logs]
        wait_celery_ready(celery_logs)
        web = DeployedGunicorn(work / "gunicorn")
        processes.append(web)
        web.start(env=env)
        web_workers = len(web.worker_pids())
        front = web
        if args.nginx:
            # The deployment's server block (docs/nginx-stagegate.conf) in front: nginx takes
            # the request bodies in full before gunicorn reads them (proxy_request_buffering).
            def server_block(port: int) -> str:
                return render_server_block(listen=f"127.0.0.1:{port}",
                                           gunicorn=f"127.0.0.1:{web.port}",
                                           x_accel_prefix="/_blobstore",
                                           blob_root=work / "instance" / "blobs")
            front = Nginx(work / "nginx", server_block)
            processes.append(front)
            front.start()

        share(args.users)
        environment = Environment(user_classes=USER_CLASSES, host=front.url, stop_timeout=30)
        environment.events.request.add_listener(on_request)
        runner = environment.create_local_runner()
        load_started = time.monotonic()
        load_average = [os.getloadavg()[0]]
        deadline = load_started + args.max_seconds
        runner.start(args.users, spawn_rate=args.users)
        gevent.sleep(args.warmup)  # not measured: first requests fill caches and connections
        phases: dict[str, float] = {}
        for name, seconds in (("before", args.seconds), ("during", None),
                              ("after", args.seconds / 2)):
            PHASE["name"] = name
            begin = time.monotonic()
            if seconds is None:
                submission = big_submission(front.url, SEED["tokens"]["alice"], big,
                                            deadline - args.seconds / 2, work / "put.json")
            else:
                gevent.sleep(max(0.0, min(seconds, deadline - time.monotonic())))
            phases[name] = time.monotonic() - begin
        PHASE["name"] = "stopping"
        load_average.append(os.getloadavg()[0])
        runner.stop()  # each user ends the task it is in (so every answer is counted), then stops
        runner.quit()
        load_seconds = time.monotonic() - load_started
        web.stop()
        for proc in celery:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in celery:
            proc.wait(timeout=60)
        tasks = celery_tasks(celery_logs)
        in_bucket = None
        if submission["finished"]:  # the big file's bytes are in the bucket, all of them
            sha256 = json.loads((work / "put.json").read_text())["sha256"]
            in_bucket = s3.head_object(Bucket="stagegate-blobs", Key=f"blobs/{sha256[:2]}/"
                                       f"{sha256[2:4]}/{sha256}")["ContentLength"]

        audit = json.loads(manage(env, "shell", "-c", "from benchmarks._load_seed import "
                                  "audit_summary; audit_summary()").splitlines()[-1])
        verified = subprocess.run([PYTHON, "manage.py", "verify_audit"], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
    finally:
        for proc in celery:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for server in reversed(processes):
            server.stop()
        drop_database(database)
        flush_redis()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    measured = [s for s in SAMPLES if s[0] in phases]
    total = sum(phases.values())
    rows = route_table(measured, total)
    downloads_all = sum(1 for s in SAMPLES if s[1] == "hub resolve (302)" and s[4] == 302)
    approvals = sum(1 for s in SAMPLES if s[1] == "POST approve" and s[3])
    writes = {name: [s[2] for s in SAMPLES if s[0] == name and s[1] in SMALL_WRITES]
              for name in phases}
    quiet = writes["before"] + writes["after"]
    p99_during, p99_quiet = percentile(writes["during"], 99), percentile(quiet, 99)
    ratio = p99_during / p99_quiet if quiet and writes["during"] else float("nan")

    print(f"Stagegate load test, {time.strftime('%Y-%m-%d %H:%M')}: {os.cpu_count()} CPUs, "
          f"{args.users} users, gunicorn {web_workers} sync workers (deploy/gunicorn.conf.py), "
          f"2 Celery workers, PostgreSQL, Redis, S3 (moto), {args.releases} releases waiting "
          f"(seeded in {seed_seconds:.0f} s)"
          + ("; nginx in front (docs/nginx-stagegate.conf)" if args.nginx else "")
          + (f"; moto and the big upload's curl at nice {STAND_INS_NICE}" if STAND_INS_NICE
             else ""))
    rates = {name: sum(1 for s in measured if s[0] == name) / seconds
             for name, seconds in phases.items()}
    print(f"phases: before {phases['before']:.0f} s ({rates['before']:.1f} req/s), during the "
          f"big submission {phases['during']:.0f} s ({rates['during']:.1f} req/s), after "
          f"{phases['after']:.0f} s ({rates['after']:.1f} req/s); {len(measured)} requests in "
          f"{total:.0f} s, {len(measured) / total:.1f} req/s; load average "
          f"{load_average[0]:.1f} at the start, {load_average[1]:.1f} at the end")
    print_table(rows)
    if submission["finished"]:
        print(f"\nbig submission: {human(submission['bytes'])} PUT in "
              f"{submission['put_seconds']:.1f} s, committed after {submission['seconds']:.1f} s "
              f"(checkpoint {submission['checkpoint']}); in the bucket: {human(in_bucket)}"
              f"{'' if in_bucket == submission['bytes'] else ' MISMATCH'}")
    else:
        print(f"\nbig submission NOT finished after {submission['seconds']:.0f} s: "
              f"{submission['why']}")
    print(f"small audited writes (approve + comment) p99: {p99_during:.0f} ms during the big "
          f"submission ({len(writes['during'])} writes) vs {p99_quiet:.0f} ms without it "
          f"({len(quiet)} writes): {ratio:.2f}x (target <= 2)")
    for name in phases:
        values = writes[name]
        print(f"  {name:<7} p50 {percentile(values, 50):>6.0f} ms  p95 "
              f"{percentile(values, 95):>6.0f} ms  p99 {percentile(values, 99):>6.0f} ms  "
              f"({len(values)} writes)")
    if approvals >= len(SEED["waiting"]) * 2:
        print("  (every waiting release was approved: later approvals became comments)")
    logged = audit.get("weights.downloaded", 0)
    print(f"downloads answered: {downloads_all}; weights.downloaded events: {logged}: "
          f"{'every download audited' if logged == downloads_all else 'MISMATCH'}")
    approved = audit.get("release.review.approve", 0)
    print(f"approvals answered: {approvals}; release.review.approve events: {approved}"
          f"{'' if approved == approvals else ': MISMATCH'}")
    print(f"Celery workers: {tasks['succeeded']} tasks succeeded, {tasks['failed']} raised")
    print(f"manage.py verify_audit: {'passed' if verified.returncode == 0 else 'FAILED'} "
          f"({''.join((verified.stdout or verified.stderr).strip().splitlines()[-1:])})")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    report = out / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report.write_text(json.dumps({
        "args": vars(args), "cpus": os.cpu_count(), "web_workers": web_workers,
        "phases": phases, "rates": rates, "load_average": load_average,
        "load_seconds": load_seconds, "routes": rows,
        "small_writes_p99": {"during": p99_during, "without": p99_quiet, "ratio": ratio},
        "submission": submission, "in_bucket": in_bucket, "celery_tasks": tasks,
        "downloads": downloads_all, "audit": audit,
        "verify_audit": verified.returncode == 0}, indent=2))
    print(f"wrote {report.relative_to(ROOT)}")
    if verified.returncode != 0 or logged != downloads_all:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
