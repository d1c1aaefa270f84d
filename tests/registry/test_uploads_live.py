"""Uploads over a real socket: streaming PUT sessions, and uploads cut off mid-body."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from pathlib import Path

import pytest
import requests
from safetensors.torch import save

from models.models import Blob, Checkpoint, UploadSession
from tests.checkpoints import tensors, write_model_folder
from tests.conftest import StateSnapshot, make_persona, token_for
from tests.webservers import stat_fields

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_token(transactional_db):
    return token_for(make_persona("alice"), "submit")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_folder_uploaded_one_put_per_file_becomes_a_checkpoint(stagegate_server, alice_token, tmp_path):
    folder = write_model_folder(tmp_path / "ckpt", shards=2)
    base = stagegate_server.url + "/api/v1/uploads/"
    session = requests.post(base, json={"family": "lab/put", "label": "v1"}, headers=auth(alice_token))
    assert session.status_code == 201, session.text
    session_id = session.json()["id"]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        body = path.read_bytes()
        response = requests.put(f"{base}{session_id}/files/{relative}",
                                params={"sha256": hashlib.sha256(body).hexdigest()},
                                data=body, headers=auth(alice_token))
        assert response.status_code == 201, response.text
        assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    committed = requests.post(f"{base}{session_id}/commit/", headers=auth(alice_token))
    assert committed.status_code == 201, committed.text
    checkpoint = Checkpoint.objects.get(pk=committed.json()["id"])
    assert checkpoint.files.count() == 8
    assert checkpoint.census["sharding"]["sharded"] is True
    assert UploadSession.objects.get(pk=session_id).status == "committed"


def test_a_put_whose_bytes_differ_from_the_declared_hash_is_refused(stagegate_server, alice_token):
    base = stagegate_server.url + "/api/v1/uploads/"
    session_id = requests.post(base, json={"family": "lab/put", "label": "v2"},
                               headers=auth(alice_token)).json()["id"]
    before = StateSnapshot.capture()
    response = requests.put(f"{base}{session_id}/files/model.safetensors",
                            params={"sha256": "0" * 64}, data=save(tensors()),
                            headers=auth(alice_token))
    assert response.status_code == 400
    assert "hash to" in response.json()["detail"]
    assert StateSnapshot.capture() == before


def test_aborting_a_session_deletes_its_blobs(stagegate_server, alice_token):
    base = stagegate_server.url + "/api/v1/uploads/"
    before = StateSnapshot.capture()
    session_id = requests.post(base, json={"family": "lab/put", "label": "v3"},
                               headers=auth(alice_token)).json()["id"]
    body = save(tensors(seed=9))
    assert requests.put(f"{base}{session_id}/files/model.safetensors", data=body,
                        headers=auth(alice_token)).status_code == 201
    assert Blob.objects.filter(sha256=hashlib.sha256(body).hexdigest()).exists()
    assert requests.delete(f"{base}{session_id}/", headers=auth(alice_token)).status_code == 204
    after = StateSnapshot.capture()
    assert after["blob_rows"] == before["blob_rows"]
    assert after["blob_files"] == before["blob_files"]


def test_a_put_with_a_traversal_path_is_refused(stagegate_server, alice_token):
    base = stagegate_server.url + "/api/v1/uploads/"
    session_id = requests.post(base, json={"family": "lab/put", "label": "v4"},
                               headers=auth(alice_token)).json()["id"]
    before = StateSnapshot.capture()
    response = requests.put(f"{base}{session_id}/files/a/%2E%2E/%2E%2E/x.safetensors",
                            data=b"abc", headers=auth(alice_token))
    assert response.status_code in (400, 404)
    assert StateSnapshot.capture() == before


def _send_partial(server, path: str, headers: dict, body: bytes, declared: int) -> None:
    """Send a request that promises `declared` bytes of body, send fewer, then hang up."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        head = [f"{path.split(' ')[0]} {path.split(' ')[1]} HTTP/1.1", f"Host: {server.host}",
                f"Content-Length: {declared}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        sock.shutdown(socket.SHUT_WR)
        try:
            sock.recv(65536)
        except OSError:
            pass


def _wait_until_quiet(server) -> None:
    """The server thread handles the cut-off request; a following request proves it finished."""
    requests.get(server.url + "/login/", timeout=10)


def test_a_multipart_upload_cut_off_mid_body_leaves_nothing(stagegate_server, alice_token):
    boundary = uuid.uuid4().hex
    payload = save(tensors())
    parts = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"family\"\r\n\r\nlab/cut\r\n"
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"label\"\r\n\r\nv1\r\n"
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"path:model.safetensors\"; "
             f"filename=\"model.safetensors\"\r\nContent-Type: application/octet-stream\r\n\r\n"
             ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    before = StateSnapshot.capture()
    cut = len(parts) - len(payload) // 2
    _send_partial(stagegate_server, "POST /api/v1/checkpoints/", {
        **auth(alice_token), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        parts[:cut], declared=len(parts))
    _wait_until_quiet(stagegate_server)
    assert StateSnapshot.capture() == before
    assert not Checkpoint.objects.filter(family__name="cut").exists()


def test_a_put_cut_off_mid_body_leaves_nothing(stagegate_server, alice_token):
    base = "/api/v1/uploads/"
    session_id = requests.post(stagegate_server.url + base, json={"family": "lab/put", "label": "v5"},
                               headers=auth(alice_token)).json()["id"]
    before = StateSnapshot.capture()
    payload = save(tensors(seed=5))
    _send_partial(stagegate_server, f"PUT {base}{session_id}/files/model.safetensors",
                  auth(alice_token), payload[: len(payload) // 2], declared=len(payload))
    _wait_until_quiet(stagegate_server)
    assert StateSnapshot.capture() == before
    assert not UploadSession.objects.get(pk=session_id).files.exists()


def _threads_at_bulk_priority() -> set[int]:
    """This process's threads (the live server's among them) whose niceness is
    STAGEGATE_BULK_NICE, read from the kernel."""
    from django.conf import settings

    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = stat_fields(task / "stat")
        except OSError:
            continue  # the thread ended while we looked
        if int(fields[16]) == settings.STAGEGATE_BULK_NICE:
            found.add(int(task.name))
    return found


def _until(condition, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.01)
    raise AssertionError(f"{what} within {seconds} s")


def _lfs_upload_href(server, token: str, payload: bytes, *, part: bool) -> str:
    """The signed URL the LFS batch API gives for `payload` in alice's repo lab/nice: the whole
    object's, or (part) that of its first part."""
    created = requests.post(f"{server.url}/api/repos/create", headers=auth(token),
                            json={"name": "nice", "organization": "lab", "type": "model"})
    assert created.status_code == 200, created.text
    batch = requests.post(f"{server.url}/lab/nice.git/info/lfs/objects/batch", headers=auth(token),
                          json={"operation": "upload",
                                "transfers": ["multipart", "basic"] if part else ["basic"],
                                "objects": [{"oid": hashlib.sha256(payload).hexdigest(),
                                             "size": len(payload)}]})
    upload = batch.json()["objects"][0]["actions"]["upload"]
    return upload["header"]["1"] if part else upload["href"]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("route", ["put", "multipart", "lfs", "lfs-part"])
def test_an_uploads_bytes_are_hashed_and_written_at_bulk_priority(stagegate_server, alice_token,
                                                                   route, settings):
    """While a big body arrives, one thread of the server hashes and writes it at
    STAGEGATE_BULK_NICE; the server's other threads keep their priority, and the bytes stored
    are the bytes sent (for an LFS part, the ETag is their sha256)."""
    import os

    payload = save(tensors(seed=7, scale=4096))  # 8 MB: half is several reads
    expected_status = b"HTTP/1.1 201"
    if route in ("lfs", "lfs-part"):
        settings.STAGEGATE_LFS_PART_SIZE = len(payload) - 1000 if route == "lfs-part" \
            else len(payload)
        href = _lfs_upload_href(stagegate_server, alice_token, payload, part=route == "lfs-part")
        target, headers, tail = f"PUT {href.split(stagegate_server.url, 1)[1]}", {}, b""
        body = payload[:len(payload) - 1000] if route == "lfs-part" else payload
        expected_status = b"HTTP/1.1 200"
    elif route == "put":
        session_id = requests.post(stagegate_server.url + "/api/v1/uploads/",
                                   json={"family": "lab/nice", "label": "v1"},
                                   headers=auth(alice_token)).json()["id"]
        target = f"PUT /api/v1/uploads/{session_id}/files/model.safetensors"
        headers, body, tail = auth(alice_token), payload, b""
    else:
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"family\"\r\n\r\n"
                f"lab/nice\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"label\"\r\n"
                f"\r\nv1\r\n--{boundary}\r\nContent-Disposition: form-data; "
                f"name=\"path:model.safetensors\"; filename=\"model.safetensors\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        target = "POST /api/v1/checkpoints/"
        headers = {**auth(alice_token), "Content-Type": f"multipart/form-data; boundary={boundary}"}
        body, tail = head + payload, f"\r\n--{boundary}--\r\n".encode()
    assert not _threads_at_bulk_priority()
    half = len(body) // 2
    with socket.create_connection((stagegate_server.host, stagegate_server.port), timeout=30) as sock:
        lines = [f"{target.split(' ')[0]} {target.split(' ')[1]} HTTP/1.1",
                 f"Host: {stagegate_server.host}", f"Content-Length: {len(body) + len(tail)}",
                 "Connection: close"] + [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body[:half])
        writers = _until(_threads_at_bulk_priority, "a thread at bulk priority while bytes arrive")
        assert len(writers) == 1
        assert os.getpriority(os.PRIO_PROCESS, 0) == 0, "the rest of the process is untouched"
        sock.sendall(body[half:] + tail)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(expected_status), answer[:400]
    _until(lambda: not _threads_at_bulk_priority(), "the writer thread gone after the upload")
    if route == "lfs-part":
        etag = next(line.split(b":", 1)[1].strip() for line in answer.split(b"\r\n")
                    if line.lower().startswith(b"etag:"))
        assert etag.strip(b'"').decode() == hashlib.sha256(body).hexdigest()
        return
    sha = hashlib.sha256(payload).hexdigest()
    assert Blob.objects.filter(sha256=sha, size=len(payload)).exists()
    from models.blobstore import open_blob
    with open_blob(sha) as stored:
        assert stored.read() == payload


def test_bytes_staged_without_a_sha256_cannot_become_a_blob(transactional_db):
    """A xorb is staged unhashed (its chunk hashes are what is checked): such a file has no
    content address, so storing it as a blob is refused and its temporary file removed."""
    from models import blobstore

    staged = blobstore.stage_chunks("xorb", iter([b"x" * 1000]), sha256=False)
    local = staged.local_path
    assert staged.sha256 == "" and local.exists()
    with pytest.raises(ValueError, match="cannot become a blob"):
        blobstore.store(staged)
    assert not local.exists()
    assert not Blob.objects.exists()
