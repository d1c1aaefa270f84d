"""Eval workers: queue-to-running latency, throughput with one vs two workers, each built-in
eval's time on a ~25M-parameter model, and the policy's required set of seven evals on that
~100 MB checkpoint (bytes read per checkpoint and seconds, against today's code and against
this code with its caches off), measured on this machine in one run.

Uses a throwaway PostgreSQL database and Redis db 14 when reachable (the production shape);
workers are real `celery worker` processes.

Usage: .venv/bin/python benchmarks/evals.py [--latency-runs 10] [--throughput-runs 8]
           [--sections latency,throughput,per-eval,required] [--baseline-ref 5d31fcb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import PYTHON, choose_database, drop_database  # noqa: E402

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def start_worker(name: str, env: dict, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "evals", "-n", f"{name}@%h",
         "--concurrency", "1", "-l", "warning", "--without-gossip", "--without-mingle",
         "--without-heartbeat"], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)


def wait_ready(names: list[str]) -> None:
    from config.celery import app

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        replies = app.control.ping(destination=[f"{n}@{os.uname().nodename}" for n in names],
                                   timeout=0.5)
        if len(replies) == len(names):
            return
    raise SystemExit(f"workers {names} did not start")


def stop(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in workers:
        proc.wait(timeout=60)


def wait_finished(run_ids: list[int], timeout: float = 3600) -> None:
    from evaluations.models import EvalRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not EvalRun.objects.filter(pk__in=run_ids).exclude(
                status__in=EvalRun.FINISHED).exists():
            return
        time.sleep(0.05)
    raise SystemExit("runs did not finish")


def submit_model(alice, folder: Path, family: str, label: str):
    from models import blobstore, services
    from models.localfiles import collect_files

    staged = [blobstore.stage_local_file(rel, local) for rel, local in collect_files(folder)[0]]
    return services.submit_checkpoint(actor=alice, family_name=family, label=label, files=staged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument("--throughput-runs", type=int, default=8)
    parser.add_argument("--sections", default="latency,throughput,per-eval,required")
    # "Today's" code for the required set: the commit before evals copied, verified and loaded
    # a checkpoint once per worker (empty: only this code, with and without its caches).
    parser.add_argument("--baseline-ref", default="5d31fcb")
    args = parser.parse_args()
    sections = set(args.sections.split(","))

    work = Path(tempfile.mkdtemp(prefix="stagegate-bench-evals-"))
    url = choose_database(work)
    env_update = {"STAGEGATE_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "config.settings",
                  "CELERY_BROKER_URL": REDIS, "DB_CONN_MAX_AGE": "0"}
    if url:
        env_update["DATABASE_URL"] = url
    os.environ.update(env_update)
    if not url:
        os.environ.pop("DATABASE_URL", None)
    # One torch thread per worker process, so one worker and two workers are compared on
    # the same footing on a small machine (two processes with all cores each would fight).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STAGEGATE_EVAL_TORCH_THREADS": "1"}
    workers: list[subprocess.Popen] = []
    try:
        import django

        django.setup()
        import redis
        from django.contrib.auth.models import User
        from django.core.management import call_command

        from evaluations import services
        from evaluations.library.registry import all_evals
        from evaluations.tinylm import TinyGPTSpec, cached_tiny_gpt
        from releases.management.commands.seed_demo import demo_texts

        from models.signals import checkpoint_ready

        # Submitting a checkpoint queues every eval its policy requires; here that backlog would
        # sit in front of the runs being timed, so the benchmark asks for runs itself.
        checkpoint_ready.disconnect(dispatch_uid="releases-ready")
        redis.Redis.from_url(REDIS).flushdb()
        call_command("migrate", verbosity=0)
        call_command("seed_demo", "--no-models", "--quiet")
        alice = User.objects.get(username="alice")
        cache = work / "models"
        texts = demo_texts(0)

        # A ~25M-parameter GPT-2 (random init: speed does not depend on training).
        big_spec = TinyGPTSpec(n_layer=5, n_embd=640, n_head=10, n_positions=512,
                               vocab_size=4096, steps=0)
        big = submit_model(alice, cached_tiny_gpt(cache, texts, big_spec), "bench/gpt25m", "v1")
        services.add_canary(actor=alice, family=big.family, template="the code is {}",
                            alphabet="0123456789", length=4, secret="4071")
        for text in texts[:8]:
            words = text.split()
            services.add_extraction_prefix(actor=alice, family=big.family,
                                           prefix=" ".join(words[:3]),
                                           continuation=" " + " ".join(words[3:]))

        if "required" in sections:
            required = required_set(args, work, env, alice, cache, texts, big_spec, workers)

        # Small distinct checkpoints: one integrity run each for the latency.
        small = [submit_model(alice, cached_tiny_gpt(cache, texts[:200],
                                                     TinyGPTSpec(steps=0, seed=i)),
                              "bench/small", f"s{i}")
                 for i in range(args.latency_runs if "latency" in sections else 0)]

        workers.append(start_worker("one", env))
        wait_ready(["one"])

        latencies = []
        for checkpoint in small[:args.latency_runs]:
            run = services.request_evals(actor=None, checkpoint=checkpoint,
                                         eval_names=["integrity"])[0]
            wait_finished([run.pk], timeout=120)
            run.refresh_from_db()
            latencies.append((run.started_at - run.created_at).total_seconds() * 1000)

        def throughput(batch_sizes) -> float:
            # heldout_lm on the 25M model; distinct batch sizes make distinct runs (cache keys).
            started = time.perf_counter()
            ids = [services.request_evals(actor=None, checkpoint=big, eval_names=["heldout_lm"],
                                          params={"heldout_lm": {"batch_size": b}})[0].pk
                   for b in batch_sizes]
            wait_finished(ids)
            return len(ids) / (time.perf_counter() - started)

        n = args.throughput_runs
        if "throughput" in sections:
            one = throughput(range(1, n + 1))
            workers.append(start_worker("two", env))
            wait_ready(["one", "two"])
            two = throughput(range(n + 1, 2 * n + 1))

        # drift_vs_parent compares with the family's previous approved checkpoint: approve
        # the 25M model and time the drift of a second one (another seed) against it.
        from releases.models import Release
        from releases.policies_service import current_policy_version

        Release.objects.create(checkpoint=big, manifest_digest=big.manifest_digest,
                               policy_version=current_policy_version(), submitted_by=alice,
                               status=Release.Status.APPROVED)
        child = submit_model(alice, cached_tiny_gpt(cache, texts, replace(big_spec, seed=1)),
                             "bench/gpt25m", "v2")

        timings = []
        for name in (all_evals() if "per-eval" in sections else []):
            checkpoint = child if name == "drift_vs_parent" else big
            run = services.request_evals(actor=None, checkpoint=checkpoint, eval_names=[name])[0]
            wait_finished([run.pk])
            run.refresh_from_db()
            seconds = (run.finished_at - run.started_at).total_seconds()
            timings.append((name, seconds, run.status, run.progress_total))

        print(f"database: {'PostgreSQL' if url else 'SQLite'}, broker: Redis; "
              f"{os.cpu_count()} CPUs; measured {time.strftime('%Y-%m-%d')}")
        if latencies:
            print(f"queue-to-running latency, idle worker: median "
                  f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms over "
                  f"{len(latencies)} runs")
        if "throughput" in sections:
            print(f"throughput (heldout_lm on the 25M model, 1 torch thread per worker): 1 "
                  f"worker {one:.2f} runs/s, 2 workers {two:.2f} runs/s, ratio {two / one:.2f}x")
        if timings:
            print(f"\nbuilt-in evals on a {big.parameters / 1e6:.1f}M-parameter GPT-2 (CPU, fp32):")
            print(f"{'eval':<22}{'seconds':>9}{'progress units':>16}  status")
            for name, seconds, status, samples in timings:
                print(f"{name:<22}{seconds:>9.1f}{samples:>16,}  {status}")
        if "required" in sections:
            from benchmarks._required_set import report

            report(required)
    finally:
        stop(workers)
        try:
            import redis

            redis.Redis.from_url(REDIS).flushdb()
        except Exception:
            pass
        drop_database(url)
        shutil.rmtree(work, ignore_errors=True)


def required_set(args, work: Path, env: dict, alice, cache: Path, texts, spec,
                 workers: list) -> dict:
    """The seven required evals on three checkpoints of the same ~100 MB weights (a card of
    their own each, so each has its own digest and runs): today's code, this code with its
    caches off, this code."""
    from evaluations import services
    from evaluations.tinylm import TinyGPTSpec, cached_tiny_gpt

    from benchmarks._required_set import extract_ref, run_set

    weights = cached_tiny_gpt(cache, texts, spec)
    cache_dir = work / "eval-cache"
    phases = []
    if args.baseline_ref:
        code = extract_ref(ROOT, args.baseline_ref, work / "baseline-code")
        phases.append(("today", {"PYTHONPATH": str(code)}, code))
    phases.append(("caches off", {"STAGEGATE_EVAL_CACHE_BYTES": "0",
                                  "STAGEGATE_EVAL_MODEL_CACHE_MODELS": "0"}, ROOT))
    phases.append(("this code", {}, ROOT))
    results = {}
    for number, (label, extra, cwd) in enumerate(phases):
        folder = shutil.copytree(weights, work / f"required-{number}")
        (folder / "README.md").write_text(f"# the benchmark's weights, copy {number}\n")
        checkpoint = submit_model(alice, folder, f"bench/required-{number}", "v1")
        services.add_canary(actor=alice, family=checkpoint.family, template="the code is {}",
                            alphabet="0123456789", length=4, secret="4071")
        for text in texts[:8]:
            words = text.split()
            services.add_extraction_prefix(actor=alice, family=checkpoint.family,
                                           prefix=" ".join(words[:3]),
                                           continuation=" " + " ".join(words[3:]))
        warm_up = submit_model(alice, cached_tiny_gpt(cache, texts[:200], TinyGPTSpec(
            steps=0, seed=100 + number)), "bench/warm-up", f"w{number}")
        name = f"required{number}"
        worker = start_worker(name, {**env, **extra,
                                     "STAGEGATE_EVAL_CACHE_DIR": str(cache_dir)}, cwd=cwd)
        workers.append(worker)
        wait_ready([name])
        results[label] = run_set(checkpoint=checkpoint, warm_up=warm_up, leader=worker.pid,
                                 cache_dir=cache_dir)
        stop([worker])
        workers.remove(worker)
    return results


if __name__ == "__main__":
    main()
