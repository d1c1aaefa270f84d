"""Point 5: refuse before reading. Who is asking, the upload session and its owner, and the
declared size against the limit are checked before a single body byte is staged, for PUT and
multipart. The attack of the issue: a 400 MB PUT to an upload session that does not exist left
137 MB in the temp dir before its 400.

Each attack here declares 400 MB and sends 1 MB of it on a raw socket: the answer must arrive
while the rest is still unsent, and nothing may be on disk."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from tests.conftest import StateSnapshot, token_for

pytestmark = pytest.mark.django_db(transaction=True)

DECLARED = 400 * 1024 * 1024
SENT = 1024 * 1024


def _temp_files() -> list[str]:
    return sorted(p.name for p in Path(settings.FILE_UPLOAD_TEMP_DIR).rglob("*") if p.is_file())


def partial_request(server, method: str, path: str, headers: dict, body_start: bytes,
                    declared: int = DECLARED) -> tuple[int, bytes, list[str]]:
    """Send the head and the first bytes of a body that declares `declared` bytes; return the
    status, the answer, and the temp files that appeared while the rest was still unsent."""
    before = set(_temp_files())
    head = [f"{method} {path} HTTP/1.1", f"Host: {server.host}:{server.port}",
            f"Content-Length: {declared}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body_start)
        sock.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        during = [name for name in _temp_files() if name not in before]  # SENT of DECLARED
        head_text, _, rest = answer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head_text.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    status = int(head_text.split(b" ")[1])
    return status, rest, during


def _session(server, token, label="put1") -> int:
    import requests

    response = requests.post(f"{server.url}/api/v1/uploads/", headers={
        "Authorization": f"Bearer {token}"}, json={"family": "lab/big", "label": label})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _put(server, session_id, token=None, path="model.safetensors"):
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return partial_request(server, "PUT", f"/api/v1/uploads/{session_id}/files/{path}", headers,
                           b"\0" * SENT)


def _assert_refused_early(result, status: int, words: str) -> None:
    got, body, during = result
    assert got == status, body[:300]
    assert words.encode() in body
    assert during == [], f"bytes were staged before the refusal: {during}"


def test_a_put_to_a_session_that_does_not_exist_stages_nothing(people, stagegate_server):
    _, tokens = people
    snapshot = StateSnapshot()
    _assert_refused_early(_put(stagegate_server, 987654, tokens["alice"]), 404,
                          "no open upload session 987654 of yours")
    snapshot.assert_unchanged()


def test_a_put_to_someone_elses_session_answers_like_a_missing_one(people, stagegate_server):
    personas, tokens = people
    session_id = _session(stagegate_server, tokens["alice"])
    snapshot = StateSnapshot()
    _assert_refused_early(_put(stagegate_server, session_id, tokens["mallory"]), 404,
                          f"no open upload session {session_id} of yours")
    snapshot.assert_unchanged()


def test_a_put_without_a_token_or_with_a_read_token_stages_nothing(people, stagegate_server):
    personas, tokens = people
    session_id = _session(stagegate_server, tokens["alice"])
    snapshot = StateSnapshot()
    _assert_refused_early(_put(stagegate_server, session_id), 401, "credentials")
    read = token_for(personas.alice, "read")
    _assert_refused_early(_put(stagegate_server, session_id, read), 403, "scope")
    snapshot.assert_unchanged()


def test_a_put_with_a_bad_path_or_over_the_limit_stages_nothing(people, stagegate_server):
    _, tokens = people
    session_id = _session(stagegate_server, tokens["alice"])
    snapshot = StateSnapshot()
    _assert_refused_early(_put(stagegate_server, session_id, tokens["alice"], "a/../../b"), 400,
                          "climbs out")
    with override_settings(STAGEGATE_MAX_FILE_SIZE=10 * 1024 * 1024):
        _assert_refused_early(_put(stagegate_server, session_id, tokens["alice"]), 413,
                              "STAGEGATE_MAX_FILE_SIZE")
    snapshot.assert_unchanged()


def _multipart_start(fields: list[tuple[str, str]], file_first: bool = False) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields]
    file_head = (f'--{boundary}\r\nContent-Disposition: form-data; name="path:model.safetensors"; '
                 f'filename="model.safetensors"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 ).encode()
    body = (file_head + b"\0" * SENT) if file_first else (b"".join(parts) + file_head + b"\0" * SENT)
    return boundary, body


def _post_multipart(server, token, fields, file_first=False):
    boundary, body = _multipart_start(fields, file_first)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return partial_request(server, "POST", "/api/v1/checkpoints/", headers, body)


def test_a_multipart_upload_by_someone_who_may_not_submit_stages_nothing(people, stagegate_server):
    _, tokens = people
    snapshot = StateSnapshot()
    _assert_refused_early(_post_multipart(stagegate_server, tokens["mallory"],
                                          [("family", "lab/big"), ("label", "v1")]),
                          403, "submitting needs the researchers role")
    _assert_refused_early(_post_multipart(stagegate_server, None,
                                          [("family", "lab/big"), ("label", "v1")]),
                          401, "credentials")
    snapshot.assert_unchanged()


def test_a_multipart_upload_into_someone_elses_family_stages_nothing(people, stagegate_server):
    from django.contrib.auth.models import Group, User

    from tests.releases.conftest import submit_checkpoint

    personas, tokens = people
    submit_checkpoint(personas.alice, family="lab/big")  # alice's family, label v1 taken
    frank = User.objects.create_user("frank", password="frank-pw")
    frank.groups.add(Group.objects.get_or_create(name="researchers")[0])
    snapshot = StateSnapshot()
    _assert_refused_early(_post_multipart(stagegate_server, token_for(frank, "submit"),
                                          [("family", "lab/big"), ("label", "v9")]),
                          403, "only the family's owners may")
    _assert_refused_early(_post_multipart(stagegate_server, tokens["alice"],
                                          [("family", "lab/big"), ("label", "v1")]),
                          409, "already has a checkpoint labelled")
    snapshot.assert_unchanged()


def test_a_multipart_upload_over_the_limit_or_with_files_first_stages_nothing(people,
                                                                             stagegate_server):
    _, tokens = people
    snapshot = StateSnapshot()
    with override_settings(STAGEGATE_MAX_CHECKPOINT_SIZE=10 * 1024 * 1024):
        _assert_refused_early(_post_multipart(stagegate_server, tokens["alice"],
                                              [("family", "lab/big"), ("label", "v1")]),
                              413, "STAGEGATE_MAX_CHECKPOINT_SIZE")
    _assert_refused_early(_post_multipart(stagegate_server, tokens["alice"], [], file_first=True),
                          400, "send the family and label fields before the files")
    snapshot.assert_unchanged()
