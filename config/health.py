"""For load balancers, Kubernetes probes and Prometheus.

- /healthz: the process answers (no dependency is touched, so a slow database never restarts a
  healthy web process).
- /readyz: every part a request needs is there: the database, every migration applied, the
  broker, the blob store. 200 with each part's state, or 503 naming the part that is not.
- /metrics: Prometheus metrics (django-prometheus's request metrics, plus Stagegate's own,
  read from the database at scrape time so that every web process reports the same numbers),
  open to the networks in STAGEGATE_METRICS_ALLOW or to STAGEGATE_METRICS_TOKEN.
"""

from __future__ import annotations

import ipaddress
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> str | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return None


def _migrations() -> str | None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in pending[:5])
        return f"{len(pending)} migration(s) not applied ({names}): run manage.py migrate"
    return None


def _broker() -> str | None:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2,
                    transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS",
                                              {})) as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    return None


def _storage() -> str | None:
    from models import blobstore

    storage = blobstore.blob_storage()
    storage.exists(blobstore.blob_name("0" * 64))  # a real round trip (HEAD on S3, stat here)
    location = getattr(storage, "location", None)
    if location:
        import os

        try:
            os.makedirs(location, exist_ok=True)  # as the store itself would on its first write
        except OSError as exc:
            return f"the blob store folder {location} cannot be made: {exc.strerror}"
        if not os.access(location, os.W_OK):
            return f"the blob store folder {location} is not writable"
    return None


CHECKS = {"database": _database, "migrations": _migrations, "broker": _broker,
          "storage": _storage}


@require_GET
def readyz(request):
    parts, ready = {}, True
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            problem = check()
        except Exception as exc:  # any failure of a dependency is "not ready", said in words
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        parts[name] = {"ok": problem is None, "ms": round(1000 * (time.monotonic() - started))}
        if problem:
            parts[name]["problem"] = problem
            ready = False
    return JsonResponse({"status": "ready" if ready else "not ready", "parts": parts},
                        status=200 if ready else 503)


def metrics_allowed(request) -> bool:
    token = settings.STAGEGATE_METRICS_TOKEN
    if token and request.headers.get("Authorization", "") == f"Bearer {token}":
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.STAGEGATE_METRICS_ALLOW)


@require_GET
def metrics(request):
    if not metrics_allowed(request):
        return HttpResponse("metrics are open to the networks in STAGEGATE_METRICS_ALLOW or "
                            "with Authorization: Bearer $STAGEGATE_METRICS_TOKEN\n", status=403,
                            content_type="text/plain")
    from config.metrics import exposition

    body, content_type = exposition()
    return HttpResponse(body, content_type=content_type)
