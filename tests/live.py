"""A live Stagegate on a real socket, and real Celery worker processes, for the tests that need
them (tests using these must use the `transactional_db` fixture so their data is committed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent


class _QuietHandler(WSGIRequestHandler):
    # The handler writes a response in several small sends. On a kept-alive connection (the Hub
    # client's, schemathesis's) Nagle's algorithm then holds the last one until the client's
    # delayed ACK, 40 ms later, on every request; gunicorn sets TCP_NODELAY too.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass


@dataclass
class LiveServer:
    url: str
    host: str
    port: int


@pytest.fixture(scope="session")
def stagegate_server(django_db_setup, django_db_blocker):
    """config.wsgi.application (with its middleware) served by Django's threaded WSGI server."""
    from config.wsgi import application

    with django_db_blocker.unblock():
        server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=True)
        server.set_app(application)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="stagegate-live", daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        try:
            yield LiveServer(url=f"http://{host}:{port}", host=host, port=port)
        finally:
            server.shutdown()
            server.server_close()
            connections.close_all()


def worker_env(extra: dict | None = None) -> dict:
    """The environment of a worker process: the tests' own database, broker and data dir."""
    database = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": (f"postgres://{database['USER'] or 'postgres'}@{database['HOST']}:"
                         f"{database['PORT'] or 5432}/{database['NAME']}"),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "STAGEGATE_DATA_DIR": str(settings.DATA_DIR),
        "DB_CONN_MAX_AGE": "0",
        "PYTHONPATH": str(ROOT),
    })
    if extra:
        env.update(extra)
    return env


class WorkerProcess:
    def __init__(self, name: str, queues: str = "default,evals,gpu", concurrency: int = 1,
                 extra_env: dict | None = None, log_dir: Path | None = None):
        self.name = name
        log_dir = log_dir or Path(settings.DATA_DIR)
        self.log_path = log_dir / f"worker-{name}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues,
             "-n", f"{name}@%h", "--concurrency", str(concurrency), "-l", "info",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=worker_env(extra_env), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_path.read_text()[-3000:]}")
            replies = app.control.ping(destination=[f"{self.name}@{os.uname().nodename}"], timeout=0.5)
            if replies:
                return
        raise RuntimeError(f"worker {self.name} not ready in {timeout}s: "
                           f"{self.log_path.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group (the main process and its pool children)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def discard(self) -> None:
        """End it without a warm shutdown (which waits out running tasks, then takes seconds
        tearing down): for a fixture's teardown, when the test has what it needed and the
        broker is emptied after. Its database connections close with it."""
        self.kill()
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")


def _purge_broker() -> None:
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture
def celery_worker_process(django_db_setup):
    """A real worker process for one test, on the test database and Redis.

    One per test, not per session: a worker shared across tests would still be running one
    test's tasks (retries, follow-ups) while the next test's data is being set up. The broker is
    emptied before and after, unacknowledged messages included.
    """
    _purge_broker()
    worker = WorkerProcess("main", concurrency=2)
    try:
        yield worker
    finally:
        worker.discard()
        _purge_broker()


@pytest.fixture
def start_worker(django_db_setup):
    """Start extra workers inside a test (e.g. to kill one mid-task); stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(name: str, **kwargs) -> WorkerProcess:
        worker = WorkerProcess(name, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.discard()
    _purge_broker()


def in_background(script: str, *, cwd: Path, env: dict | None = None) -> Callable[[], object]:
    """Start `script` in a fresh Python process now (beside other work the test waits for);
    the function returned waits for it and gives the JSON its last line printed."""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)

    def result():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        return json.loads(stdout.strip().splitlines()[-1])

    return result
