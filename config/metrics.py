"""Stagegate's own Prometheus metrics, beside django-prometheus's request metrics.

What lives in the database (eval runs by outcome and their durations, scan verdicts) is read at
scrape time by one collector, so every web process reports the same numbers whichever of them
Prometheus reaches. Queue depth is read from the broker. What happens in a request (bytes of
weights sent) is a counter in the process that served it: under gunicorn set
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode) so the workers' counts add up.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

QUEUES = ("default", "evals", "gpu")

DOWNLOAD_BYTES = Counter("stagegate_download_bytes", "Bytes of weights sent to downloaders",
                         ["mode"])
DOWNLOADS = Counter("stagegate_downloads", "Weights files (or ranges) served", ["mode"])


def count_download(*, sent: int) -> None:
    mode = settings.STAGEGATE_DOWNLOAD_MODE
    DOWNLOADS.labels(mode=mode).inc()
    DOWNLOAD_BYTES.labels(mode=mode).inc(sent)


def queue_depths() -> dict[str, int]:
    """Messages waiting per Celery queue (Redis lists, or the embedded broker's files)."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        return {queue: int(client.llen(queue)) for queue in QUEUES}
    if url.startswith("filesystem"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        names = [p.name for p in folder.glob("*.msg")]
        return {queue: sum(name.endswith(f".{queue}.msg") for name in names) for queue in QUEUES}
    return {}


class StagegateCollector:
    def collect(self):
        from django.db.models import Count

        from evaluations.models import EvalRun
        from models.models import ScanReport

        depth = GaugeMetricFamily("stagegate_queue_depth", "Messages waiting per Celery queue",
                                  labels=["queue"])
        try:
            for queue, count in queue_depths().items():
                depth.add_metric([queue], count)
        except Exception:  # a broker that does not answer has no depth to report
            pass
        yield depth

        runs = GaugeMetricFamily("stagegate_eval_runs", "Eval runs by eval and status",
                                 labels=["eval", "status"])
        for row in EvalRun.objects.values("eval_name", "status").annotate(n=Count("id")):
            runs.add_metric([row["eval_name"], row["status"]], row["n"])
        yield runs

        durations = SummaryMetricFamily("stagegate_eval_duration_seconds",
                                        "Wall time of finished eval runs, by eval and outcome",
                                        labels=["eval", "status"])
        for (name, status), (count, seconds) in _durations().items():
            durations.add_metric([name, status], count_value=count, sum_value=seconds)
        yield durations

        verdicts = GaugeMetricFamily("stagegate_scan_reports", "Scanner verdicts on blobs",
                                     labels=["verdict"])
        for row in ScanReport.objects.values("verdict").annotate(n=Count("id")):
            verdicts.add_metric([row["verdict"]], row["n"])
        yield verdicts

        yield from _audit_anchoring()
        yield from _mirrors()


def _audit_anchoring():
    """How far sealing lags behind the appended events (audit/sealing.py), and how far the
    sealed chain is ahead of its newest signed, exported head (audit/heads.py): the events a
    consistent rewrite of the database could still change undetected, and the head's age."""
    from django.utils import timezone

    from audit.models import AuditChainHead, AuditHead
    from audit.sealing import lag

    pending = lag()
    unsealed = GaugeMetricFamily("stagegate_audit_events_unsealed",
                                 "Audit events appended but not yet chained by the sealer")
    unsealed.add_metric([], pending.unsealed)
    yield unsealed
    sealing = GaugeMetricFamily("stagegate_audit_sealing_lag_seconds",
                                "Age of the oldest audit event not yet sealed (0: none)")
    sealing.add_metric([], pending.seconds)
    yield sealing
    last_seq = AuditChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
    head = AuditHead.objects.order_by("-seq").first()
    behind = GaugeMetricFamily("stagegate_audit_events_unanchored",
                               "Audit events after the newest exported signed chain head")
    behind.add_metric([], last_seq - (head.seq if head else 0))
    yield behind
    age = GaugeMetricFamily("stagegate_audit_anchor_age_seconds",
                            "Seconds since the newest signed chain head was exported "
                            "(absent before the first)")
    if head is not None:
        age.add_metric([], (timezone.now() - head.created_at).total_seconds())
    yield age


def _mirrors():
    """Publication mirrors by state: `drifted` (the remote changed outside Stagegate), `alarm`
    (a sha256 mismatch), `failed`, `in_sync`, …"""
    from django.db.models import Count

    from publishing.models import Mirror

    mirrors = GaugeMetricFamily("stagegate_mirrors", "Releases mirrored to Hub targets, by state",
                                labels=["state"])
    for row in Mirror.objects.values("state").annotate(n=Count("id")):
        mirrors.add_metric([row["state"]], row["n"])
    yield mirrors


def _durations() -> dict[tuple[str, str], tuple[int, float]]:
    """(eval, status) -> (finished runs, their seconds in all): summed by PostgreSQL, or here
    on SQLite (the embedded default, which cannot extract seconds from an interval)."""
    from django.db import connection
    from django.db.models import Count, F, Sum
    from django.db.models.functions import Extract

    from evaluations.models import EvalRun

    finished = EvalRun.objects.filter(status__in=EvalRun.FINISHED, started_at__isnull=False,
                                      finished_at__isnull=False)
    if connection.vendor == "postgresql":
        return {(r["eval_name"], r["status"]): (r["n"], float(r["seconds"] or 0))
                for r in finished.values("eval_name", "status").annotate(
                    n=Count("id"),
                    seconds=Sum(Extract(F("finished_at") - F("started_at"), "epoch")))}
    totals: dict[tuple[str, str], tuple[int, float]] = {}
    for name, status, started, ended in finished.values_list("eval_name", "status",
                                                             "started_at", "finished_at"):
        count, seconds = totals.get((name, status), (0, 0.0))
        totals[(name, status)] = (count + 1, seconds + (ended - started).total_seconds())
    return totals


_registered = False


def exposition() -> tuple[bytes, str]:
    """The metrics page: this process's registry (django-prometheus's request metrics, the
    download counters) and Stagegate's collector; in multiprocess mode, every worker's."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    global _registered
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(StagegateCollector())
    else:
        registry = REGISTRY
        if not _registered:
            REGISTRY.register(StagegateCollector())
            _registered = True
    return generate_latest(registry), CONTENT_TYPE_LATEST
