"""Operating Stagegate: liveness and readiness for probes (readiness fails, naming the part,
when the database, the migrations, the broker or the storage is not there), Prometheus metrics
behind a network or token check, and a request id that follows a request into its tasks."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_persona
from tests.live import ROOT, WorkerProcess, in_background
from tests.registry.test_tasks import wait_for


@pytest.mark.django_db
def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_every_part_is(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert set(response.json()["parts"]) == {"database", "migrations", "broker", "storage"}
    assert all(part["ok"] for part in response.json()["parts"].values())


def readyz_with(tmp_path: Path, **env):
    """/readyz in a fresh process, started now, whose settings point one part at something that
    is down; call what it returns for (status, body)."""
    script = ("import django, json\n"
              "django.setup()\n"
              "from django.test import Client\n"
              "r = Client(HTTP_HOST='localhost').get('/readyz')\n"
              "print(json.dumps([r.status_code, r.json()]))\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL",
                                                                     "CELERY_BROKER"))}
    base.update({"DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT),
                 "STAGEGATE_DATA_DIR": str(tmp_path / "data"),
                 "CELERY_BROKER_URL": "redis://127.0.0.1:6379/9"})
    base.update(env)
    return in_background(script, cwd=ROOT, env=base)


@pytest.mark.django_db(transaction=True)
def test_readyz_fails_naming_the_part_that_is_down(tmp_path, settings):
    database = settings.DATABASES["default"]
    live_db = f"postgres://postgres@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"
    cases = {
        "database": {"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere"},
        "broker": {"DATABASE_URL": live_db, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"},
        "storage": {"DATABASE_URL": live_db, "STAGEGATE_BLOB_STORAGE": "s3",
                    "AWS_STORAGE_BUCKET_NAME": "nowhere",
                    "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:1",
                    "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
        # A fresh SQLite file nobody migrated.
        "migrations": {},
    }
    # One process per part, all at once: each waits on its own timeouts.
    started = {part: readyz_with(tmp_path / part, **env) for part, env in cases.items()}
    for part, answer in started.items():
        status, body = answer()
        assert status == 503, (part, body)
        assert not body["parts"][part]["ok"] and body["parts"][part]["problem"], (part, body)
        others = {name for name, state in body["parts"].items() if not state["ok"]}
        if part != "migrations":
            assert others == {part} or part == "database", (part, body)


@pytest.mark.django_db
def test_metrics_are_for_the_allowed_networks_or_the_token(client, settings):
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    for name in ("django_http_requests_total_by_view_transport_method_total",
                 "stagegate_queue_depth", "stagegate_eval_runs", "stagegate_scan_reports",
                 "stagegate_audit_events_unanchored", "stagegate_mirrors"):
        assert name in text, name
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.STAGEGATE_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3",
                      HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3",
                      HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


@pytest.mark.django_db
def test_metrics_say_how_far_the_audit_log_is_ahead_of_its_last_signed_head(client):
    """Counted over sealed events (this test's transaction never commits, so it seals as the
    beat task would): what is not sealed yet is `stagegate_audit_events_unsealed`."""
    from audit.heads import export_head
    from audit.sealing import seal_pending
    from audit.services import record_event

    def unanchored() -> float:
        text = client.get("/metrics").content.decode()
        [line] = [line for line in text.splitlines()
                  if line.startswith("stagegate_audit_events_unanchored ")]
        return float(line.split()[1])

    for n in range(3):
        record_event(actor=None, verb="test.metrics", data={"n": n})
    assert "stagegate_audit_events_unsealed 3.0" in client.get("/metrics").content.decode()
    seal_pending()
    before = unanchored()
    assert before >= 3
    assert export_head() is not None
    assert unanchored() == 0
    record_event(actor=None, verb="test.metrics", data={"n": 3})
    seal_pending()
    assert unanchored() == 1
    assert "stagegate_audit_anchor_age_seconds " in client.get("/metrics").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_request_id_follows_a_request_into_the_tasks_it_queues(tmp_path, api_client_for):
    from evaluations.models import EvalRun
    from tests.releases.conftest import submit_checkpoint
    from tests.live import _purge_broker

    _purge_broker()
    worker = WorkerProcess("json-logs", extra_env={"STAGEGATE_LOG_FORMAT": "json"},
                           log_dir=tmp_path)
    try:
        alice = make_persona("alice")
        checkpoint = submit_checkpoint(alice, family="lab/request-id")
        request_id = f"probe-{uuid.uuid4().hex[:8]}"
        # Parameters of its own: a run this request queues (not one the submission did).
        response = api_client_for(alice).post(
            f"/api/v1/checkpoints/{checkpoint.pk}/evaluate/",
            {"evals": ["heldout_lm"], "params": {"heldout_lm": {"batch_size": 3}}},
            format="json", HTTP_X_REQUEST_ID=request_id)
        assert response.status_code == 202 and response["X-Request-ID"] == request_id
        run_id = response.json()[0]["id"]
        wait_for(lambda: EvalRun.objects.get(pk=run_id).is_finished, timeout=120)
        output = worker.output()
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == request_id]
        assert any(f"eval run {run_id} " in line["message"] for line in mine), [
            (line["message"][:60], line.get("request_id")) for line in lines[-12:]]
        assert all({"time", "level", "logger", "message"} <= set(line) for line in mine)
    finally:
        worker.stop()
        _purge_broker()


@pytest.mark.django_db
def test_a_response_carries_a_fresh_request_id_when_the_client_sent_none_or_a_bad_one(client):
    first = client.get("/healthz")["X-Request-ID"]
    assert len(first) == 32 and first != client.get("/healthz")["X-Request-ID"]
    bad = client.get("/healthz", HTTP_X_REQUEST_ID="not ok\nheader")["X-Request-ID"]
    assert "\n" not in bad and bad != "not ok\nheader"
