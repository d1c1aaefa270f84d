"""Settings come from the environment; production refuses to start without its secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_check(env: dict, tmp_path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "STAGEGATE_ENV",
                         "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}}
    base.update({"STAGEGATE_DATA_DIR": str(tmp_path), **env})
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=120)


def test_a_development_instance_needs_nothing_set(tmp_path):
    proc = run_check({}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("env,missing", [
    ({"STAGEGATE_ENV": "production", "ALLOWED_HOSTS": "example.org"}, "SECRET_KEY"),
    ({"STAGEGATE_ENV": "production", "SECRET_KEY": "x" * 50}, "ALLOWED_HOSTS"),
])
def test_production_refuses_to_start_without_its_secrets(env, missing, tmp_path):
    proc = run_check(env, tmp_path)
    assert proc.returncode != 0 and f"needs {missing}" in proc.stderr


def test_a_malformed_value_stops_the_process(tmp_path):
    proc = run_check({"DEBUG": "ture"}, tmp_path)
    assert proc.returncode != 0 and "DEBUG='ture' is not a boolean" in proc.stderr


@pytest.mark.parametrize("env,message", [
    ({"STAGEGATE_DOWNLOAD_MODE": "redirect"}, "redirect needs STAGEGATE_BLOB_STORAGE=s3"),
    ({"STAGEGATE_DOWNLOAD_MODE": "x-accel", "STAGEGATE_BLOB_STORAGE": "s3",
      "AWS_STORAGE_BUCKET_NAME": "blobs"}, "x-accel needs the filesystem blob store"),
])
def test_a_download_mode_that_cannot_work_with_the_blob_store_stops_the_process(env, message,
                                                                                tmp_path):
    proc = run_check(env, tmp_path)
    assert proc.returncode != 0 and message in proc.stderr
