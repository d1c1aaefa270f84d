"""Review queue and release page at scale: latency and query counts as the data grows.

Loads N releases (default 10,000) with 10 eval results each and 20 audit events each into a
throwaway database (PostgreSQL when one is reachable, else SQLite), then measures the median
and p95 latency of the review queue page and of release pages, and their query counts, at two
sizes: the query count must not grow with the data.

Usage: .venv/bin/python benchmarks/review_queue.py [--releases 10000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import choose_database, drop_database  # noqa: E402


def load(n_releases: int, start: int) -> None:
    """Add releases start..n_releases-1 with their checkpoints, files, runs, reviews, events."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from audit.models import AuditEvent, canonical_json
    from audit.sealing import seal_pending
    from evaluations.models import EvalRun
    from models.models import Blob, Checkpoint, CheckpointFile, ModelFamily
    from releases.models import PolicyVersion, Release, Review

    alice = User.objects.get(username="alice")
    bob = User.objects.get(username="bob")
    family = ModelFamily.objects.get(org="bench", name="queue")
    policy = PolicyVersion.objects.order_by("-loaded_at").first()
    now = timezone.now()
    blob, _ = Blob.objects.get_or_create(sha256="b" * 64, defaults={"size": 1024})
    census = {"parameters": {"total": 124_000_000, "by_dtype": {"BF16": 124_000_000}},
              "tensor_count": 150, "largest_tensors": [], "architecture": None, "formats": ["safetensors"],
              "bytes": {"weights": 248_000_000, "total": 248_000_000}, "file_count": 1,
              "sharding": {"safetensors_files": 1, "index": None, "sharded": False},
              "config": {}, "scan_pending": [], "complete": True, "safetensors_metadata": {}}
    batch = 1000
    for base in range(start, n_releases, batch):
        ids = range(base, min(base + batch, n_releases))
        checkpoints = Checkpoint.objects.bulk_create([Checkpoint(
            family=family, label=f"step{i}", manifest_digest=hashlib.sha256(b"%d" % i).hexdigest(),
            status="ready", census=census, submitted_by=alice) for i in ids])
        CheckpointFile.objects.bulk_create([CheckpointFile(
            checkpoint=c, path="model.safetensors", blob=blob, size=1024, kind="safetensors",
            header={"tensors": {"w": {"dtype": "BF16", "shape": [512]}}}) for c in checkpoints])
        statuses = ["in_review", "published", "approved", "evaluating", "rejected"]
        releases = Release.objects.bulk_create([Release(
            checkpoint=c, manifest_digest=c.manifest_digest, policy_version=policy, submitted_by=alice,
            status=statuses[i % len(statuses)], target_stage="partners", current_stage="internal",
            stage_entered_at=now, tier="low",
            awaiting_roles=",safety," if statuses[i % len(statuses)] == "in_review" else "",
            assessment={"intended_use": "x", "training_data": "x", "known_hazards": "x",
                        "mitigations": "x"}) for i, c in zip(ids, checkpoints)])
        EvalRun.objects.bulk_create([EvalRun(
            checkpoint=c, manifest_digest=c.manifest_digest, eval_name=f"eval{k}", eval_version=1,
            code_hash="c" * 64, cache_key=hashlib.sha256(f"{c.pk}-{k}".encode()).hexdigest(),
            status="succeeded", metrics={"passed": 1.0, "bits_per_byte": 1.5}, finished_at=now)
            for c in checkpoints for k in range(10)])
        Review.objects.bulk_create([Review(
            release=r, stage="partners", reviewer=bob, roles=["safety"], decision="comment",
            comment="looked", manifest_digest=r.manifest_digest, policy_version=policy)
            for r in releases[::3]])
        AuditEvent.objects.bulk_create([
            AuditEvent(created_at=now, actor=alice, actor_username="alice",
                       verb="release.commented", object_type="releases.release",
                       object_id=str(r.pk), object_repr=str(r.pk), data_json=canonical_json({"k": k}))
            for r in releases for k in range(20)], batch_size=5000)
        seal_pending()


def measure(client, url: str, repeat: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    queries = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        queries = len(captured)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stagegate-bench-queue-"))
    (work / "static").mkdir()
    url = choose_database(work)
    os.environ.update({"STAGEGATE_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "config.settings",
                       "DEBUG": "false", "ALLOWED_HOSTS": "testserver,localhost"})
    os.environ.pop("CELERY_BROKER_URL", None)
    if url:
        os.environ["DATABASE_URL"] = url
    else:
        os.environ.pop("DATABASE_URL", None)
    try:
        import django

        django.setup()
        from django.contrib.auth.models import Group, User
        from django.core.management import call_command
        from django.test import Client

        from models.models import ModelFamily
        from releases.policies_service import current_policy_version

        call_command("migrate", verbosity=0)
        call_command("seed_demo", "--no-models", "--quiet")
        current_policy_version()
        owners, _ = Group.objects.get_or_create(name="owners:bench/queue")
        ModelFamily.objects.create(org="bench", name="queue", owners=owners)
        User.objects.get(username="alice").groups.add(owners)
        client = Client()
        client.force_login(User.objects.get(username="bob"))

        small = max(args.releases // 10, 100)
        rows = []
        loaded = 0
        for size in (small, args.releases):
            started = time.perf_counter()
            load(size, loaded)
            loaded = size
            seconds = time.perf_counter() - started
            if url:  # what autovacuum does after a bulk load: the planner needs the new stats
                from django.db import connection

                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
            from releases.models import Release

            sample = Release.objects.filter(status="in_review").order_by("-id").first()
            queue = measure(client, "/reviews/", args.repeat)
            page = measure(client, f"/releases/{sample.pk}/", args.repeat)
            rows.append((size, seconds, queue, page))
        from audit.models import AuditEvent
        from evaluations.models import EvalRun

        print(f"database: {'PostgreSQL' if url else 'SQLite'}; {loaded:,} releases, "
              f"{EvalRun.objects.count():,} eval results, {AuditEvent.objects.count():,} audit events")
        print(f"{'releases':>9} | {'queue p50 ms':>12} {'p95 ms':>8} {'queries':>8} | "
              f"{'release p50 ms':>14} {'p95 ms':>8} {'queries':>8}")
        for size, _, (q50, q95, qn), (p50, p95, pn) in rows:
            print(f"{size:>9,} | {q50:>12.1f} {q95:>8.1f} {qn:>8} | {p50:>14.1f} {p95:>8.1f} {pn:>8}")
        (_, _, (_, _, q_small), (_, _, p_small)), (_, _, (_, _, q_big), (_, _, p_big)) = rows
        print(f"query counts grow with the data: queue {q_small}->{q_big}, release page "
              f"{p_small}->{p_big}: {'NO' if (q_small, p_small) == (q_big, p_big) else 'YES'}")
    finally:
        drop_database(url)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
