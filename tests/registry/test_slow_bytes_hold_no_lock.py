"""Nothing slow under the audit chain's lock (issue 17): while a submission's bytes are still on
their way to the blob store, approvals and audited downloads go on.

The blob store is S3 (moto's server on loopback) behind a TCP proxy that holds the first large
request body half-way until the test lets it go: the submission is then, for as long as the test
wants, in the middle of storing its bytes, as a multi-GB upload to S3 would be for minutes. The
handshake is two events (the proxy has held the body; the test releases it), never a sleep.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import pytest
import requests
import torch

from audit.models import AuditEvent
from models import blobstore
from models.models import Blob, Checkpoint, ModelFamily
from releases import workflow
from tests.checkpoints import write_safetensors
from tests.conftest import staged_files, token_for
from tests.s3 import Bucket
from tests.releases.conftest import run_pending_evals, submit_checkpoint
from tests.releases.stages import grant, release_at

HOLD_AFTER = 1024 * 1024  # bytes of one request, client to S3, before the proxy holds it


class HoldingProxy:
    """A TCP proxy to the S3 server. Once armed, the first connection that sends more than
    HOLD_AFTER bytes towards S3 is held there (`holding` is set) until `release` is set."""

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()
        self._claim = threading.Lock()
        self.from_s3 = 0  # bytes the S3 server sent back through the proxy
        threading.Thread(target=self._accept, daemon=True, name="s3-proxy").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _should_hold(self, sent: int) -> bool:
        if sent <= HOLD_AFTER or not self.armed.is_set():
            return False
        with self._claim:
            if self.holding.is_set():
                return False
            self.holding.set()
            return True

    def _pump(self, source: socket.socket, sink: socket.socket, towards_s3: bool) -> None:
        sent = 0
        try:
            while chunk := source.recv(64 * 1024):
                sent += len(chunk)
                if towards_s3 and self._should_hold(sent):
                    self.release.wait()
                if not towards_s3:
                    with self._claim:
                        self.from_s3 += len(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.release.set()
        self.server.close()


@pytest.fixture
def held_bucket(s3_endpoint, settings, monkeypatch):
    """This test's bucket, reached (by this process and its live server) through the proxy."""
    bucket = Bucket(s3_endpoint)
    proxy = HoldingProxy(s3_endpoint)
    bucket.use(settings, monkeypatch, endpoint=proxy.url)
    settings.STAGEGATE_DOWNLOAD_MODE = "redirect"
    yield bucket, proxy
    proxy.close()


def big_weights(path: Path, seed: int) -> Path:
    generator = torch.Generator().manual_seed(seed)
    write_safetensors(path, {"w": torch.randn(1024, 768, generator=generator)})  # 3 MB
    return path


class Submission(threading.Thread):
    """alice POSTs one checkpoint to the REST API, in the background."""

    def __init__(self, server_url: str, token: str, family: str, label: str, weights: Path):
        super().__init__(daemon=True, name=f"submit-{label}")
        self.args_ = (f"{server_url}/api/v1/checkpoints/", token, family, label, weights)
        self.response: requests.Response | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        url, token, family, label, weights = self.args_
        try:
            with open(weights, "rb") as fh:
                self.response = requests.post(
                    url, headers={"Authorization": f"Bearer {token}"},
                    data={"family": family, "label": label},
                    files={"model.safetensors": ("model.safetensors", fh)}, timeout=300)
        finally:
            self.finished.set()


@pytest.mark.django_db(transaction=True)
def test_approvals_and_downloads_finish_while_a_new_familys_bytes_are_still_uploading(
        held_bucket, stagegate_server, personas, simple_policy, tiny_model_dir, tmp_path):
    bucket, proxy = held_bucket
    people = personas
    published = release_at(people, "gated", family="lab/held-gated", folder=tiny_model_dir)
    grant(people, published, people.erin)
    waiting = release_at(people, "internal", family="lab/held-review",
                         checkpoint=submit_checkpoint(people.alice, family="lab/held-review"))
    workflow.request_next_stage(actor=people.alice, release=waiting)
    run_pending_evals(waiting)
    assert waiting.status == "in_review" and waiting.target_stage == "partners"
    weights = big_weights(tmp_path / "model.safetensors", seed=1)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()

    proxy.armed.set()
    # A new family: its `family.created` event is the first write of the submission, which is
    # where the chain head used to be locked while the bytes went to S3.
    submission = Submission(stagegate_server.url, token_for(people.alice), "lab/held-new", "big",
                            weights)
    submission.start()
    try:
        assert proxy.holding.wait(timeout=120), "the submission never started storing its bytes"

        approved = requests.post(
            f"{stagegate_server.url}/api/v1/releases/{waiting.pk}/approve/",
            json={"stage": "partners", "comment": "looks fine"},
            headers={"Authorization": f"Bearer {token_for(people.bob)}"}, timeout=60)
        download = requests.get(
            f"{stagegate_server.url}/lab/held-gated/resolve/main/model.safetensors",
            headers={"Authorization": f"Bearer {token_for(people.erin, 'read')}"},
            allow_redirects=False, timeout=60)

        assert not submission.finished.is_set(), "the upload ended before the test let it"
        assert approved.status_code == 200, approved.text
        assert download.status_code == 302 and "Signature" in download.headers["Location"]
        verbs = set(AuditEvent.objects.values_list("verb", flat=True))
        assert {"release.review.approve", "weights.downloaded"} <= verbs
        assert not ModelFamily.objects.filter(org="lab", name="held-new").exists()
    finally:
        proxy.release.set()
        submission.join(timeout=120)

    assert submission.response is not None and submission.response.status_code == 201, (
        submission.response.text if submission.response is not None else "no answer")
    checkpoint = Checkpoint.objects.get(pk=submission.response.json()["id"])
    assert checkpoint.family.repo_id == "lab/held-new"
    assert checkpoint.files.get().blob_id == sha
    assert blobstore.blob_name(sha) in bucket.keys()


@pytest.mark.django_db(transaction=True)
def test_a_submission_that_loses_its_label_while_uploading_leaves_no_blob_and_no_checkpoint(
        held_bucket, stagegate_server, personas, tmp_path):
    bucket, proxy = held_bucket
    staged_before = staged_files()
    alice = personas.alice
    token = token_for(alice)
    slow = Submission(stagegate_server.url, token, "lab/held-race", "v1",
                      big_weights(tmp_path / "slow.safetensors", seed=2))
    sha = hashlib.sha256((tmp_path / "slow.safetensors").read_bytes()).hexdigest()
    proxy.armed.set()
    slow.start()
    try:
        assert proxy.holding.wait(timeout=120), "the submission never started storing its bytes"
        small = tmp_path / "small"
        small.mkdir()
        write_safetensors(small / "model.safetensors")
        quick = Submission(stagegate_server.url, token, "lab/held-race", "v1",
                           small / "model.safetensors")
        quick.run()  # in this thread: the first to commit takes the label
        assert quick.response.status_code == 201, quick.response.text
    finally:
        proxy.release.set()
        slow.join(timeout=120)

    assert slow.response.status_code == 409, slow.response.text
    assert "already has a checkpoint labelled 'v1'" in slow.response.json()["detail"]
    family = ModelFamily.objects.get(org="lab", name="held-race")
    assert list(family.checkpoints.values_list("label", flat=True)) == ["v1"]
    assert not Blob.objects.filter(sha256=sha).exists()
    assert blobstore.blob_name(sha) not in bucket.keys(), "the lost submission's bytes stayed"
    assert staged_files() == staged_before, "staged files left behind"


# --- every submission route ---------------------------------------------------------------------
# While a route's bytes are held on their way to S3, no transaction that wrote an audit event
# is open: an INSERT into the audit table holds a RowExclusiveLock on it until its transaction
# ends, which PostgreSQL's pg_locks shows for every other session.

def audited_transactions_open() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                       "WHERE c.relname = 'audit_auditevent' AND l.mode = 'RowExclusiveLock' "
                       "AND l.pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


class Background(threading.Thread):
    def __init__(self, work):
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None

    def run(self) -> None:
        from django.db import connection

        try:
            self.result = self.work()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connection.close()


def via_web(server_url, alice, weights: Path, family: str):
    from django.test import Client

    client = Client()
    client.force_login(alice)
    with open(weights, "rb") as fh:
        response = client.post("/submit/", {"family": family, "label": "web", "file": fh},
                               HTTP_ACCEPT="application/json")
    assert response.status_code == 201, response.content[:500]
    return response.json()["id"]


def via_cli(server_url, alice, weights: Path, family: str):
    import json
    import subprocess
    import sys

    from tests.live import ROOT, worker_env

    proc = subprocess.run(
        [sys.executable, "manage.py", "submit_checkpoint", str(weights), "--family", family,
         "--label", "cli", "--user", alice.username, "--json"],
        cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)["id"]


def via_upload_session(server_url, alice, weights: Path, family: str):
    headers = {"Authorization": f"Bearer {token_for(alice)}"}
    base = f"{server_url}/api/v1/uploads/"
    session = requests.post(base, json={"family": family, "label": "session"}, headers=headers)
    assert session.status_code == 201, session.text
    with open(weights, "rb") as fh:
        put = requests.put(f"{base}{session.json()['id']}/files/model.safetensors", data=fh,
                           headers=headers, timeout=300)
    assert put.status_code == 201, put.text
    committed = requests.post(f"{base}{session.json()['id']}/commit/", headers=headers)
    assert committed.status_code == 201, committed.text
    return committed.json()["id"]


def via_hub(server_url, alice, weights: Path, family: str):
    from tests.live import LiveServer
    from tests.registry.hubclient import run_python

    server = LiveServer(url=server_url, host="", port=0)
    proc, result = run_python(server, token_for(alice), weights.parent / "hf-home", f"""
        api.create_repo({family!r}, private=True, exist_ok=True)
        info = api.upload_file(path_or_fileobj={str(weights)!r}, path_in_repo="model.safetensors",
                               repo_id={family!r}, commit_message="hub")
        print(json.dumps({{"commit": info.oid}}))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Checkpoint.objects.get(family__org="lab", family__name=family.split("/")[1]).pk


@pytest.mark.parametrize("route", [via_web, via_cli, via_upload_session, via_hub],
                         ids=["web", "cli", "upload-session", "hub"])
@pytest.mark.django_db(transaction=True)
def test_no_route_holds_an_audited_transaction_open_while_its_bytes_are_stored(
        route, held_bucket, stagegate_server, personas, tmp_path):
    bucket, proxy = held_bucket
    weights = big_weights(tmp_path / "model.safetensors", seed=3)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    family = f"lab/held-{route.__name__.removeprefix('via_').replace('_', '-')}"
    proxy.armed.set()
    submission = Background(lambda: route(stagegate_server.url, personas.alice, weights, family))
    submission.start()
    try:
        assert proxy.holding.wait(timeout=120), f"never stored its bytes: {submission.error!r}"
        assert audited_transactions_open() == 0, \
            "a transaction that wrote an audit event is open while bytes are stored"
        assert submission.is_alive()
    finally:
        proxy.release.set()
        submission.join(timeout=300)
    assert submission.error is None, submission.error
    checkpoint = Checkpoint.objects.get(pk=submission.result)
    assert checkpoint.family.repo_id == family and checkpoint.files.get().blob_id == sha
    assert blobstore.blob_name(sha) in bucket.keys()


@pytest.mark.django_db
def test_reading_a_blobs_header_from_s3_fetches_the_header_not_the_object(held_bucket, tmp_path):
    """The census and the scanner read a safetensors header from a blob that is already in S3
    (an upload session's file, a Hub commit's): a few kilobytes cross the wire, not the whole
    object; a full read and a seek still give exactly the stored bytes."""
    from models.formats.safetensors import read_header

    bucket, proxy = held_bucket
    path = tmp_path / "model.safetensors"
    generator = torch.Generator().manual_seed(5)
    write_safetensors(path, {"w": torch.randn(4096, 4096, generator=generator)})  # 64 MB
    staged = blobstore.stage_local_file("model.safetensors", path)
    size, sha = staged.size, staged.sha256
    assert blobstore.store(staged)
    proxy.from_s3 = 0
    with blobstore.open_blob(sha) as stream:
        header = read_header(stream, size)
    assert [t.name for t in header.tensors] == ["w"]
    assert proxy.from_s3 < size // 4, f"{proxy.from_s3} of {size} bytes fetched for a header"
    with blobstore.open_blob(sha) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == sha
        stream.seek(size - 10)
        assert stream.read() == path.read_bytes()[-10:]
