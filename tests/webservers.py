"""Real gunicorn and nginx processes on loopback, for the download tests and benchmark.

Each runs in its own process group (so stopping it stops its workers too), on a free port,
and is ready when it answers HTTP, never after a fixed sleep. nginx is Debian's package
(`scripts/nginx.sh`) running the server block operators deploy, `docs/nginx-stagegate.conf`.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"
SERVER_BLOCK = ROOT / "docs" / "nginx-stagegate.conf"
PLACEHOLDERS = ("@LISTEN@", "@GUNICORN@", "@X_ACCEL_PREFIX@", "@BLOB_ROOT@")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server started in its own session; `url` answers once `start` returns."""

    name = "server"

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, *, env: dict | None = None, cwd: Path = ROOT, timeout: float = 60) -> None:
        # The port is free when chosen but could be taken before the server binds it: a server
        # that exits while starting is tried again on another port.
        for _ in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(self.command(), cwd=cwd, env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready(timeout):
                return
            if "in use" not in self.log():
                break
        raise RuntimeError(f"{self.name} did not start: {self.log()[-3000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                # Any answer will do; the first one may be slow (Django imports on first use).
                requests.head(self.url + "/", timeout=10)
                return True
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Gunicorn(ServerProcess):
    """`gunicorn config.wsgi` with sync workers, as production runs it."""

    name = "gunicorn"

    def __init__(self, workdir: Path, workers: int = 1):
        super().__init__(workdir)
        self.workers = workers

    def command(self) -> list[str]:
        # No control socket: its default path (~/.gunicorn/gunicorn.ctl) is one per user, and
        # would be taken from any other gunicorn running here.
        return [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{self.port}",
                "-w", str(self.workers), "--timeout", "120", "--graceful-timeout", "5",
                "--no-control-socket"]

    def worker_pids(self) -> list[int]:
        """The worker processes: children of the gunicorn master."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = stat_fields(entry / "stat")
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(entry.name))
        return sorted(pids)


def stat_fields(path: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat (or task stat) file after the command name, which is in
    parentheses and may hold spaces: [0] is the state, [1] the parent pid, [11] and [12] the
    user and system CPU ticks, [16] the niceness."""
    return path.read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far, all their threads counted."""
    ticks = sum(int(f[11]) + int(f[12]) for f in (stat_fields(Path(f"/proc/{pid}/stat"))
                                                  for pid in pids))
    return ticks / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since start or since reset_peak_rss), in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak_rss(pid: int) -> None:
    # Linux >= 4.0: writing 5 resets VmHWM to the current RSS, so the next VmHWM read is the
    # peak of what happened in between.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def render_server_block(*, listen: str, gunicorn: str, x_accel_prefix: str,
                        blob_root: Path) -> str:
    text = SERVER_BLOCK.read_text()
    values = dict(zip(PLACEHOLDERS, (listen, gunicorn, x_accel_prefix.rstrip("/"),
                                     str(Path(blob_root)).rstrip("/"))))
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


class Nginx(ServerProcess):
    """Debian's nginx in the foreground with everything it writes under `workdir`.

    `server_blocks(port)` returns the server blocks to serve on that port. The access log
    records, per request, what gunicorn sent and what nginx sent, so a test can tell who sent
    the bytes.
    """

    name = "nginx"

    def __init__(self, workdir: Path, server_blocks):
        super().__init__(workdir)
        self.server_blocks = server_blocks
        self.access_log = self.workdir / "access.log"

    def command(self) -> list[str]:
        conf = self.workdir / "nginx.conf"
        conf.write_text(self._main_config())
        return [NGINX, "-p", str(self.workdir), "-c", str(conf),
                "-e", str(self.workdir / "error.log")]

    def _main_config(self) -> str:
        temp = {name: self.workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir(exist_ok=True)
        # A root master would run its workers as `nobody`, who cannot read a blob store under a
        # private temporary folder: run them as whoever owns these processes.
        user = ""
        if os.geteuid() == 0:
            user = (f"user {pwd.getpwuid(os.geteuid()).pw_name} "
                    f"{grp.getgrgid(os.getegid()).gr_name};")
        return f"""
daemon off;
worker_processes 1;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log;
{user}
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    log_format sent '$request_method $request_uri $status nginx_sent=$body_bytes_sent '
                    'upstream_sent=$upstream_response_length '
                    'accel=$upstream_http_x_accel_redirect';
    access_log {self.access_log} sent;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
{self.server_blocks(self.port)}
}}
"""

    def access_lines(self) -> list[str]:
        # nginx writes a line when a request ends; the test reads after its response arrived.
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []
