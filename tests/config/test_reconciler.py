"""The reconciler is on Celery beat's schedule, a worker knows its task, and the task runs every
app's part (issue 17)."""

from __future__ import annotations

import os

import pytest

from tests.s3 import settings_from_env


def test_the_beat_schedule_runs_the_reconciler_every_configured_interval(monkeypatch):
    monkeypatch.setenv("STAGEGATE_RECONCILE_SECONDS", "120")
    entry = settings_from_env().CELERY_BEAT_SCHEDULE["reconcile-left-behind-work"]
    assert entry == {"task": "stagegate.reconcile_left_behind", "schedule": 120.0}


def test_a_reconcile_interval_of_zero_leaves_it_off_the_schedule(monkeypatch):
    monkeypatch.setenv("STAGEGATE_RECONCILE_SECONDS", "0")
    assert "reconcile-left-behind-work" not in settings_from_env().CELERY_BEAT_SCHEDULE


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_the_reconcilers_task(start_worker):
    from config.celery import app
    from config.reconciler import reconcile_left_behind_task

    worker = start_worker("reconciler", queues="default")
    registered = app.control.inspect(destination=[f"reconciler@{os.uname().nodename}"],
                                     timeout=5).registered()
    assert "stagegate.reconcile_left_behind" in next(iter(registered.values()))
    reconcile_left_behind_task.delay()
    from tests.registry.test_tasks import wait_for

    line = wait_for(lambda: next((l for l in worker.output().splitlines()
                                  if "stagegate.reconcile_left_behind" in l
                                  and "succeeded" in l), None))
    for part in ("eval_runs", "conversions", "webhook_deliveries", "mirror_jobs"):
        assert f"'{part}'" in line
