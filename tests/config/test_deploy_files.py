"""The deployment files work as shipped, where this machine allows: gunicorn starts from
deploy/gunicorn.conf.py and serves /healthz, /readyz and /metrics (its workers' counters added
up in multiprocess mode); the systemd units pass `systemd-analyze verify`; the Procfile runs
programs the install provides."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.live import ROOT, worker_env

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_gunicorn_runs_from_the_shipped_config_and_serves_probes_and_metrics(tmp_path):
    port = free_port()
    (tmp_path / "metrics").mkdir()  # what the unit's RuntimeDirectory gives gunicorn
    env = worker_env({"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2",
                      "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
                      "ALLOWED_HOSTS": "127.0.0.1,localhost"})
    check = subprocess.run([str(VENV_BIN / "gunicorn"), "--check-config", "-c",
                            "deploy/gunicorn.conf.py", "config.wsgi"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    server = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                               "config.wsgi"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.2)
        ready = requests.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        for _ in range(6):  # spread over both workers
            requests.get(f"{base}/healthz", timeout=5)
        text = requests.get(f"{base}/metrics", timeout=30).text
        assert "stagegate_eval_runs" in text and "django_http_requests" in text
        served = [line for line in text.splitlines() if line.startswith(
            "django_http_responses_total_by_status_total{") and 'status="200"' in line]
        assert served and sum(float(line.rsplit(" ", 1)[1]) for line in served) >= 7
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=30)[0].decode(errors="replace")
    assert "request_id=" in output  # the access log names each request's id


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd here")
def test_the_systemd_units_verify(tmp_path):
    for unit in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        # As installed: /opt/stagegate is the checkout, the stagegate user the current one.
        text = (unit.read_text().replace("/opt/stagegate", str(ROOT))
                .replace("User=stagegate", "User=root").replace("Group=stagegate", "Group=root")
                .replace("/etc/stagegate/stagegate.env", str(tmp_path / "stagegate.env")))
        (tmp_path / "stagegate.env").write_text("STAGEGATE_ENV=production\n")
        target = tmp_path / unit.name
        target.write_text(text)
        done = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True,
                              text=True, timeout=60)
        problems = [line for line in done.stderr.splitlines() if unit.name.split("@")[0] in line]
        assert not problems, problems


def test_the_procfile_runs_programs_the_install_provides():
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert {line.split(":", 1)[0] for line in lines} == {"web", "worker", "beat", "release"}
    for line in lines:
        program = line.split(":", 1)[1].split()[0]
        assert (VENV_BIN / program).exists() or program == "python", line
