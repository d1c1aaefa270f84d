"""Helpers shared by the benchmark scripts: timing, child peak RSS, a fresh Stagegate instance."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def run_with_rusage(cmd: list[str], *, env: dict | None = None, cwd: Path = ROOT) -> tuple[float, int, str]:
    """Like run_measured, but reaps the child with os.wait4 to read its own peak RSS."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out.read().decode()


def fresh_instance_env(data_dir: Path) -> dict:
    """An isolated development instance (SQLite, filesystem blobs) under data_dir."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"STAGEGATE_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "config.settings"})
    return env


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def choose_database(work: Path) -> str:
    """A throwaway PostgreSQL database (dropped by drop_database), or "" for SQLite."""
    import psycopg

    admin = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = f"stagegate_bench_{os.getpid()}"
    try:
        with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True,
                             connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return admin.rsplit("/", 1)[0] + f"/{name}"
    except Exception as exc:  # no server: SQLite still shows whether counts grow
        print(f"(PostgreSQL not reachable: {exc}; using SQLite)")
        return ""


def drop_database(url: str) -> None:
    if not url:
        return
    import psycopg

    from django.conf import settings
    from django.db import connections

    if settings.configured:  # a script that ran Django in its own process
        connections.close_all()
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
