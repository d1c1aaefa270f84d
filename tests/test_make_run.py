"""`make run` as a newcomer meets it: scripts/run-dev.sh migrates, seeds the demo, serves the UI
with a worker, every printed login works, and Ctrl-C stops both and exits cleanly.

The script runs here on this suite's PostgreSQL (a database of its own) and Redis, as it would
with DATABASE_URL and CELERY_BROKER_URL set; on a fresh machine it uses SQLite and a broker that
needs no server, which is the same code with other settings.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings

from tests.live import _purge_broker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_database():
    db = settings.DATABASES["default"]
    server = f"host={db['HOST']} port={db['PORT'] or 5432} user={db['USER'] or 'postgres'}"
    if db.get("PASSWORD"):
        server += f" password={db['PASSWORD']}"
    name = f"stagegate_make_run_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield (f"postgres://{db['USER'] or 'postgres'}@{db['HOST']}:{db['PORT'] or 5432}/{name}")
    with psycopg.connect(f"{server} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def printed_logins(output: str) -> list[tuple[str, str]]:
    block = output.split("Demo logins", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  (\w+) +(\S+) ", block, flags=re.M)


def live_processes_in_group(pgid: int) -> list[str]:
    """Processes of the group still running (a zombie has exited; who reaps it is not ours)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        state, _ppid, group = text[name_end + 2:].split()[:3]
        if int(group) == pgid and state != "Z":
            live.append(text[:name_end + 1])
    return live


def log_in(base: str, username: str, password: str) -> requests.Response:
    session = requests.Session()
    form = session.get(f"{base}/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return session.post(f"{base}/login/", data={"username": username, "password": password,
                                                 "csrfmiddlewaretoken": token},
                        headers={"Referer": base}, timeout=30)


def test_make_run_serves_the_demo_to_every_printed_login_and_ctrl_c_stops_it(
        run_database, model_cache, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The demo's tiny models are cached by content hash under the data dir: share the suite's.
    data_dir = model_cache.parent / "demo-data"
    data_dir.mkdir(exist_ok=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings",
           "DATABASE_URL": run_database, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
           "STAGEGATE_DATA_DIR": str(data_dir), "STAGEGATE_PORT": str(port),
           "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    log_path = tmp_path / "make-run.log"
    _purge_broker()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["scripts/run-dev.sh"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "Ctrl-C stops" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "make run did not start in 300 s"
            time.sleep(0.5)
        output = log_path.read_text(errors="replace")
        assert f"Stagegate is running at {base}/" in output

        logins = printed_logins(output)
        assert {u for u, _ in logins} >= {"alice", "bob", "carol", "dave", "erin", "mallory",
                                          "admin"}
        for _ in range(120):  # the server prints its banner before it listens
            try:
                requests.get(f"{base}/login/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.25)
        for username, password in logins:
            landed = log_in(base, username, password)
            # Reviewers land on their queue, release managers on what waits to be published,
            # the rest of the lab on its registry, outside researchers on the catalogue.
            home = {"erin": "/models/", "mallory": "/models/", "bob": "/reviews/",
                    "carol": "/reviews/", "dave": "/releases/"}.get(
                username, "/families/")
            assert landed.status_code == 200 and landed.url == f"{base}{home}", username
            assert "demo/tiny-gpt" in landed.text, username
        catalogue = requests.get(f"{base}/models/", timeout=30)
        assert catalogue.status_code == 200 and "demo/tiny-gpt" in catalogue.text
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's group
        exit_code = process.wait(timeout=120)
        _purge_broker()
    assert exit_code == 0, log_path.read_text(errors="replace")[-3000:]
    assert "stopping Stagegate" in log_path.read_text(errors="replace")
    assert live_processes_in_group(process.pid) == [], "left running after Ctrl-C"
