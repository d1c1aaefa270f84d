"""Both download paths with real processes: gunicorn streaming a large file in constant memory,
and Debian's nginx sending the bytes via X-Accel-Redirect after Django has decided access,
both read by the stock huggingface_hub client.

The servers are separate processes on the test database and the tests' data dir, so the data
is committed (transactional tests); nginx runs the server block of docs/nginx-stagegate.conf.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import GatedRepoError

from audit.models import AuditEvent
from tests.conftest import token_for
from tests.live import worker_env
from tests.releases.stages import grant, release_at
from tests.webservers import (
    NGINX,
    Gunicorn,
    Nginx,
    memory,
    render_server_block,
    reset_peak_rss,
)

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024
BIG = 64 * MB
# What a worker may grow by while sending BIG bytes: far less than the file, so a response that
# buffered the file (or a good part of it) in memory fails.
RSS_GROWTH_LIMIT = 12 * MB
HUB_HEADERS = ("X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size", "ETag", "Content-Length",
               "Content-Type", "Content-Disposition", "Accept-Ranges", "Cache-Control")


def write_safetensors(path: Path, nbytes: int) -> None:
    """One F32 tensor of random bytes (random, so a range served from the wrong offset shows)."""
    header = json.dumps({"weight": {"dtype": "F32", "shape": [nbytes // 4],
                                    "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(header)) + header)
        for _ in range(nbytes // MB):
            out.write(os.urandom(MB))


def model_folder(root: Path, nbytes: int) -> Path:
    write_safetensors(root / "model.safetensors", nbytes)
    (root / "config.json").write_text(json.dumps({"model_type": "custom"}))
    return root


@pytest.fixture(autouse=True)
def isolated_blob_store():
    """Replaces the suite's per-test blob store: the servers here are other processes, which
    read the session's store (STAGEGATE_DATA_DIR), as Celery worker tests do."""
    yield


@pytest.fixture(scope="module")
def big_model(tmp_path_factory) -> Path:
    return model_folder(tmp_path_factory.mktemp("big-model"), BIG)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    return model_folder(tmp_path_factory.mktemp("small-model"), MB)


@pytest.fixture
def people(transactional_db, personas, simple_policy):
    return personas


def server_env(mode: str) -> dict:
    return worker_env({"STAGEGATE_DOWNLOAD_MODE": mode, "DEBUG": "false",
                       "STAGEGATE_X_ACCEL_PREFIX": settings.STAGEGATE_X_ACCEL_PREFIX})


@pytest.fixture(scope="module")
def gunicorn_stream(django_db_setup, tmp_path_factory):
    with Gunicorn(tmp_path_factory.mktemp("gunicorn-stream")) as server:
        server.start(env=server_env("stream"))
        yield server


@dataclass
class Front:
    nginx: Nginx
    gunicorn: Gunicorn


@pytest.fixture(scope="module")
def nginx_front(django_db_setup, tmp_path_factory):
    """nginx on its own port, in front of a gunicorn in x-accel mode."""
    if not os.access(NGINX, os.X_OK):
        pytest.fail(f"{NGINX} is missing: run scripts/nginx.sh (make test does)")
    root = tmp_path_factory.mktemp("nginx-front")
    blob_root = Path(settings.STORAGES["blobs"]["OPTIONS"]["location"])
    blob_root.mkdir(parents=True, exist_ok=True)
    with Gunicorn(root / "gunicorn") as backend:
        backend.start(env=server_env("x-accel"))

        def server_blocks(port: int) -> str:
            return render_server_block(listen=f"127.0.0.1:{port}",
                                       gunicorn=f"127.0.0.1:{backend.port}",
                                       x_accel_prefix=settings.STAGEGATE_X_ACCEL_PREFIX,
                                       blob_root=blob_root)

        with Nginx(root / "nginx", server_blocks) as front:
            front.start()
            yield Front(nginx=front, gunicorn=backend)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(4 * MB):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_response(response) -> str:
    digest = hashlib.sha256()
    for chunk in response.iter_content(MB):
        digest.update(chunk)
    return digest.hexdigest()


def read_range(path: Path, start: int, length: int) -> bytes:
    with open(path, "rb") as stream:
        stream.seek(start)
        return stream.read(length)


def hub_headers(response) -> dict:
    return {name: response.headers.get(name) for name in HUB_HEADERS}


def access_line(nginx: Nginx, method: str, uri: str, timeout: float = 5) -> str:
    """nginx's log line for a request (written just after the response's last byte)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in nginx.access_lines() if line.startswith(f"{method} {uri} ")]
        if lines:
            return lines[-1]
        time.sleep(0.02)
    raise AssertionError(f"no access log line for {method} {uri}: {nginx.access_lines()}")


def test_gunicorn_streams_a_large_file_in_constant_memory(gunicorn_stream, people, big_model,
                                                          tmp_path):
    release = release_at(people, "open", family="lab/big-stream", folder=big_model)
    weights = release.checkpoint.files.get(path="model.safetensors")
    url = f"{gunicorn_stream.url}/lab/big-stream/resolve/main/model.safetensors"
    # Warm the worker up (URLconf, views, database connection, both response paths) so what
    # is measured next is the sending alone.
    requests.head(url).raise_for_status()
    requests.get(url, headers={"Range": "bytes=0-0"}).raise_for_status()
    [worker] = gunicorn_stream.worker_pids()
    reset_peak_rss(worker)
    before = memory(worker)["VmRSS"]

    path = hf_hub_download("lab/big-stream", "model.safetensors", endpoint=gunicorn_stream.url,
                           token=False, cache_dir=tmp_path / "hf")
    half = requests.get(url, headers={"Range": f"bytes={BIG // 2}-"}, stream=True)
    assert half.status_code == 206
    assert sha256_response(half) == hashlib.sha256(
        read_range(big_model / "model.safetensors", BIG // 2, weights.size)).hexdigest()

    growth = memory(worker)["VmHWM"] - before
    assert sha256_file(path) == weights.blob_id == sha256_file(big_model / "model.safetensors")
    assert growth < RSS_GROWTH_LIMIT, f"the worker grew by {growth / MB:.1f} MB"


def test_gunicorn_answers_ranges_with_206_and_the_right_bytes(gunicorn_stream, people,
                                                              small_model):
    release = release_at(people, "open", family="lab/ranges", folder=small_model)
    weights = release.checkpoint.files.get(path="model.safetensors")
    local = small_model / "model.safetensors"
    url = f"{gunicorn_stream.url}/lab/ranges/resolve/main/model.safetensors"
    cases = {"bytes=10-19": (10, 19), "bytes=-100": (weights.size - 100, weights.size - 1),
             f"bytes={weights.size - 5}-": (weights.size - 5, weights.size - 1)}
    for header, (start, end) in cases.items():
        part = requests.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == read_range(local, start, end - start + 1), header
        assert part.headers["Content-Range"] == f"bytes {start}-{end}/{weights.size}"
    beyond = requests.get(url, headers={"Range": f"bytes={weights.size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{weights.size}"


def test_nginx_sends_open_weights_with_the_hub_headers(nginx_front, people, big_model,
                                                       tmp_path):
    release = release_at(people, "open", family="lab/big-accel", folder=big_model)
    weights = release.checkpoint.files.get(path="model.safetensors")
    nginx = nginx_front.nginx
    uri = "/lab/big-accel/resolve/main/model.safetensors"

    path = hf_hub_download("lab/big-accel", "model.safetensors", endpoint=nginx.url,
                           token=False, cache_dir=tmp_path / "hf")
    assert sha256_file(path) == weights.blob_id

    head = requests.head(nginx.url + uri)
    get = requests.get(nginx.url + uri, stream=True)
    expected = {"X-Repo-Commit": release.checkpoint.commit,
                "X-Linked-Etag": f'"{weights.blob_id}"', "ETag": f'"{weights.blob_id}"',
                "X-Linked-Size": str(weights.size), "Content-Length": str(weights.size),
                "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                "Content-Disposition": 'attachment; filename="model.safetensors"'}
    for response in (head, get):
        assert response.status_code == 200
        assert {k: v for k, v in hub_headers(response).items() if k in expected} == expected
        assert "X-Accel-Redirect" not in response.headers
    assert hub_headers(head) == hub_headers(get)
    assert sha256_response(get) == weights.blob_id
    # The HEAD was answered without sending the file.
    assert " nginx_sent=0 " in access_line(nginx, "HEAD", uri)

    part = requests.get(nginx.url + uri, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == read_range(big_model / "model.safetensors", 1000, 1000)
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{weights.size}"
    assert part.headers["X-Repo-Commit"] == release.checkpoint.commit


def test_it_is_nginx_that_sends_the_bytes(nginx_front, people, big_model):
    release = release_at(people, "open", family="lab/who-sends", folder=big_model)
    weights = release.checkpoint.files.get(path="model.safetensors")
    uri = "/lab/who-sends/resolve/main/model.safetensors"
    internal = f"{settings.STAGEGATE_X_ACCEL_PREFIX}/blobs/{weights.blob_id[:2]}/" \
               f"{weights.blob_id[2:4]}/{weights.blob_id}"

    # gunicorn itself answers with no body, only where nginx should look.
    direct = requests.get(nginx_front.gunicorn.url + uri)
    assert direct.status_code == 200 and direct.content == b""
    assert direct.headers["X-Accel-Redirect"] == internal

    through = requests.get(nginx_front.nginx.url + uri)
    assert hashlib.sha256(through.content).hexdigest() == weights.blob_id
    line = access_line(nginx_front.nginx, "GET", uri)
    assert f" nginx_sent={weights.size} " in line and " upstream_sent=0 " in line, line
    # Django still decided and recorded each download, though it sent no byte.
    downloads = AuditEvent.objects.filter(verb="weights.downloaded", object_id=str(release.pk))
    assert downloads.count() == 2
    assert {event.data["bytes"] for event in downloads} == {weights.size}

    # The blob store is not reachable from outside, only through Django's redirect.
    assert requests.get(nginx_front.nginx.url + internal).status_code == 404


def test_nginx_refuses_gated_weights_because_django_does(nginx_front, people, small_model,
                                                        tmp_path):
    release = release_at(people, "gated", family="lab/gated-accel", folder=small_model)
    grant(people, release, people.erin)
    url = nginx_front.nginx.url

    with pytest.raises(GatedRepoError):
        hf_hub_download("lab/gated-accel", "model.safetensors", endpoint=url, token=False,
                        cache_dir=tmp_path / "anonymous")
    with pytest.raises(GatedRepoError):
        hf_hub_download("lab/gated-accel", "model.safetensors", endpoint=url,
                        token=token_for(people.mallory, "read"), cache_dir=tmp_path / "mallory")
    refused = requests.get(f"{url}/lab/gated-accel/resolve/main/model.safetensors")
    assert refused.status_code == 401 and refused.headers["X-Error-Code"] == "GatedRepo"
    assert "X-Accel-Redirect" not in refused.headers

    path = hf_hub_download("lab/gated-accel", "model.safetensors", endpoint=url,
                           token=token_for(people.erin, "read"), cache_dir=tmp_path / "erin")
    assert sha256_file(path) == release.checkpoint.files.get(path="model.safetensors").blob_id
