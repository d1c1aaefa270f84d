"""Point 9: production behind TLS redirects to https and sends HSTS by default; the
Content-Security-Policy forbids every third-party load; model-card images come only from the
model's own files (a tracking pixel is not rendered, and a browser showing the card asks no
other origin); `manage.py check --deploy` is clean in the configuration docs/deploy.md documents.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import struct
import subprocess
import sys
import zlib

import pytest
import requests

from tests.checkpoints import write_safetensors
from tests.live import worker_env
from tests.releases.stages import release_at
from tests.webservers import ROOT, Gunicorn

DEPLOY = ROOT / "docs" / "deploy.md"
SECRET = secrets.token_urlsafe(50)


def documented_production_env() -> dict:
    """The variables of the production command in docs/deploy.md, exactly as documented."""
    text = DEPLOY.read_text()
    block = text.split("<!-- production config: begin -->", 1)[1].split(
        "<!-- production config: end -->", 1)[0]
    command = block.split("```sh", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    env = {}
    for word in shlex.split(command):
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", word)
        if not match:
            break
        env[match[1]] = match[2]
    assert env["STAGEGATE_ENV"] == "production" and env["SECRET_KEY"] == "..."
    env["SECRET_KEY"] = SECRET  # the docs say: 50 random characters
    return env


def _clean_env(tmp_path, extra: dict) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "STAGEGATE_ENV", "DEBUG",
                         "CELERY_BROKER_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE",
                         "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    base.update({"STAGEGATE_DATA_DIR": str(tmp_path), **extra})
    return base


def test_check_deploy_is_clean_in_the_documented_production_config(tmp_path):
    env = _clean_env(tmp_path, documented_production_env())
    proc = subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                           "--fail-level", "WARNING"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


def test_check_deploy_flags_a_weakened_config(tmp_path):
    env = _clean_env(tmp_path, {**documented_production_env(), "SECURE_HSTS_SECONDS": "0",
                                "SECURE_SSL_REDIRECT": "false"})
    proc = subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                           "--fail-level", "WARNING"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "security.W004" in proc.stderr and "security.W008" in proc.stderr


@pytest.fixture
def production_server(transactional_db, personas, tmp_path):
    env = worker_env({"STAGEGATE_ENV": "production", "SECRET_KEY": SECRET,
                      "ALLOWED_HOSTS": "127.0.0.1", "DEBUG": "true"})
    with Gunicorn(tmp_path) as server:
        server.start(env=env)
        yield server


def test_production_redirects_to_https_and_sends_hsts(production_server):
    plain = requests.get(production_server.url + "/models/", allow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://127.0.0.1:%d/models/" % production_server.port
    secure = requests.get(production_server.url + "/models/", allow_redirects=False,
                          headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == \
        "max-age=31536000; includeSubDomains; preload"
    assert secure.headers["X-Frame-Options"] == "DENY"
    assert secure.headers["X-Content-Type-Options"] == "nosniff"
    _assert_first_party_only(secure.headers["Content-Security-Policy"])


def _assert_first_party_only(policy: str) -> None:
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    for name, sources in directives.items():
        for source in sources.split():
            assert source in ("'self'", "'none'", "'unsafe-inline'", "data:"), (name, source)
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert directives["style-src-attr"] == "'unsafe-inline'"  # attributes only, never <style>


def _png(width: int = 3, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


CARD = """# A model with pictures

![own plot](images/plot.png)
![pixel](https://tracker.example.net/pixel.gif?user=erin)
![protocol relative](//tracker.example.net/p.png)
![inline](data:image/png;base64,iVBORw0KGgo=)
![svg](images/logo.svg)
![outside](../../etc/passwd.png)
<img src="http://tracker.example.net/raw.png">
"""


@pytest.fixture
def card_release(transactional_db, personas, simple_policy, tmp_path):
    folder = tmp_path / "model"
    write_safetensors(folder / "model.safetensors")
    (folder / "README.md").write_text(CARD)
    (folder / "images").mkdir()
    (folder / "images" / "plot.png").write_bytes(_png())
    (folder / "images" / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    return release_at(personas, "open", family="lab/pictures", folder=folder)


def test_a_card_shows_only_its_own_images(card_release, stagegate_server):
    page = requests.get(f"{stagegate_server.url}/models/lab/pictures/")
    assert page.status_code == 200
    assert "tracker.example.net" not in page.text
    own = re.findall(r'<img[^>]*src="([^"]+)"', page.text)
    assert own == [f"/models/lab/pictures/releases/{card_release.pk}/card/images/plot.png"]
    image = requests.get(stagegate_server.url + own[0])
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content == _png()
    assert "sandbox" in image.headers["Content-Security-Policy"]
    # Only image files of the checkpoint are served this way: never the weights.
    weights = requests.get(f"{stagegate_server.url}/models/lab/pictures/releases/"
                           f"{card_release.pk}/card/model.safetensors")
    assert weights.status_code == 404


@pytest.mark.browser
def test_a_browser_showing_the_card_asks_no_other_origin(card_release, stagegate_server, page):
    asked = []
    page.on("request", lambda request: asked.append(request.url))
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(f"{stagegate_server.url}/models/lab/pictures/")
    page.wait_for_load_state("networkidle")
    assert asked and all(url.startswith(stagegate_server.url) for url in asked), asked
    width = page.eval_on_selector("section img, article img, img[alt='own plot']",
                                  "img => img.naturalWidth")
    assert width == 3
    assert violations == [], violations  # the page itself needs nothing the policy forbids


@pytest.mark.browser
def test_the_pages_and_the_api_docs_work_under_the_policy(personas, stagegate_server, page,
                                                         transactional_db):
    from tests.browser import log_in

    violations = []
    page.on("console", lambda message: violations.append((page.url, message.text))
            if "Content Security Policy" in message.text else None)
    log_in(page, stagegate_server, "alice", "alice-pw")
    for path in ("/releases/", "/submit/", "/api/v1/docs/", "/models/"):
        page.goto(stagegate_server.url + path)
        page.wait_for_load_state("networkidle")
    assert violations == [], violations
