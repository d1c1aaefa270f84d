"""Signed chain heads exported outside the database: a consistent rewrite of the whole chain
(every hash recomputed, the head rolled back) passes verify_audit but not verify_audit --heads,
which names the first rewritten event."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import heads
from audit.models import AuditChainHead, AuditEvent, AuditHead
from audit.services import record_event, verify_chain
from signing import keys


@pytest.fixture
def sink(tmp_path, settings):
    path = tmp_path / "anchor" / "heads.jsonl"
    settings.STAGEGATE_AUDIT_HEAD_SINKS = [f"file://{path}"]
    settings.STAGEGATE_AUDIT_HEAD_EVERY_EVENTS = 4
    return path


def write_events(actor, n: int) -> list[AuditEvent]:
    return [record_event(actor=actor, verb="test.happened", data={"n": i}) for i in range(n)]


def rewrite_consistently(from_seq: int, **changes) -> None:
    """What a database administrator can do: change an event, then recompute every seal and
    hash after it and move the chain head, so the chain verifies again."""
    events = list(AuditEvent.objects.filter(seq__gte=from_seq).order_by("seq"))
    prev_hash = AuditEvent.objects.get(seq=from_seq - 1).hash if from_seq > 1 else "0" * 64
    for event in events:
        if event.seq == from_seq:
            for name, value in changes.items():
                setattr(event, name, value)
        event.chain_after(seq=event.seq, prev_hash=prev_hash)
        AuditEvent.objects.filter(pk=event.pk).update(
            data_json=event.data_json, verb=event.verb, prev_hash=event.prev_hash,
            hash=event.hash, seal=event.seal)
        prev_hash = event.hash
    AuditChainHead.objects.filter(pk=1).update(hash=prev_hash)


def verify(path, *extra) -> str:
    out = StringIO()
    call_command("verify_audit", "--heads", str(path), *extra, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_head_is_exported_every_n_events(alice, sink):
    write_events(alice, 9)
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [h["seq"] for h in lines] == [4, 8]
    assert lines[1]["from_seq"] == 5
    assert lines[1]["event_hashes"] == list(
        AuditEvent.objects.filter(seq__in=range(5, 9)).order_by("seq").values_list("hash", flat=True))
    assert lines[1]["key_id"] == keys.current_key().key_id
    assert "every event up to #8 matches the 2 exported head(s)" in verify(sink)


@pytest.mark.django_db(transaction=True)
def test_exporting_twice_exports_once(alice, sink):
    write_events(alice, 3)
    first = heads.export_head()
    assert first is not None and first.seq == 3
    assert heads.export_head() is None
    assert AuditHead.objects.count() == 1
    heads.deliver_head(head_id=first.pk)  # a retried delivery adds no second line
    assert len(sink.read_text().splitlines()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_consistent_rewrite_passes_the_chain_but_not_the_heads(alice, sink):
    write_events(alice, 12)
    rewrite_consistently(6, data_json='{"n":99}')
    assert verify_chain() is None  # the rewrite is invisible to the chain alone
    call_command("verify_audit", stdout=StringIO())
    with pytest.raises(CommandError, match=r"event #6 is not the event head #8"):
        verify(sink)


@pytest.mark.django_db(transaction=True)
def test_removing_the_last_events_and_rolling_the_head_back_is_detected(alice, sink):
    write_events(alice, 8)
    last = AuditEvent.objects.get(seq=7)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE seq >= 8")
    AuditChainHead.objects.filter(pk=1).update(seq=7, hash=last.hash)
    assert verify_chain() is None
    with pytest.raises(CommandError, match=r"event #8 is missing, but head #8"):
        verify(sink)


@pytest.mark.django_db(transaction=True)
def test_reordering_two_events_is_detected(alice, sink):
    write_events(alice, 8)
    a, b = AuditEvent.objects.get(seq=2), AuditEvent.objects.get(seq=3)
    rewrite_consistently(2, data_json=b.data_json)
    rewrite_consistently(3, data_json=a.data_json)
    assert verify_chain() is None
    with pytest.raises(CommandError, match=r"event #2 is not the event head #4"):
        verify(sink)


@pytest.mark.django_db(transaction=True)
def test_a_forged_head_file_is_refused(alice, sink, tmp_path):
    write_events(alice, 4)
    head = json.loads(sink.read_text())
    head["hash"] = "f" * 64
    forged = tmp_path / "forged.jsonl"
    forged.write_text(json.dumps(head) + "\n")
    with pytest.raises(CommandError, match=r"head #4 does not verify"):
        verify(forged)


@pytest.mark.django_db(transaction=True)
def test_heads_signed_by_another_key_are_refused(alice, sink, tmp_path):
    write_events(alice, 4)
    other = tmp_path / "other.pem"
    other.write_bytes(keys.generate_private_pem())
    with pytest.raises(CommandError, match=r"not one of the lab's keys"):
        verify(sink, "--public-key", str(other))


@pytest.mark.django_db(transaction=True)
def test_heads_signed_before_a_rotation_still_verify(alice, sink, tmp_path, settings):
    write_events(alice, 4)
    old = keys.current_key()
    retired = tmp_path / "retired.pem"
    retired.write_text(old.public.pem)
    new = tmp_path / "new.pem"
    new.write_bytes(keys.generate_private_pem())
    settings.STAGEGATE_SIGNING_KEY_FILE = str(new)
    settings.STAGEGATE_SIGNING_RETIRED_KEYS = [str(retired)]
    write_events(alice, 4)
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert lines[0]["key_id"] == old.key_id != lines[1]["key_id"] == keys.current_key().key_id
    assert "matches the 2 exported head(s)" in verify(sink)


@pytest.mark.django_db(transaction=True)
def test_heads_reach_a_webhook_and_s3(alice, settings, tmp_path):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    try:
        import boto3

        endpoint = f"http://127.0.0.1:{moto._server.server_port}"
        s3_config = {"endpoint_url": endpoint, "region_name": "us-east-1",
                     "aws_access_key_id": "test", "aws_secret_access_key": "test"}
        s3 = boto3.client("s3", **s3_config)
        s3.create_bucket(Bucket="anchors")
        settings.STAGEGATE_AUDIT_HEAD_S3 = s3_config
        settings.STAGEGATE_AUDIT_HEAD_EVERY_EVENTS = 2
        settings.STAGEGATE_AUDIT_HEAD_SINKS = [
            f"http://127.0.0.1:{server.server_port}/heads", "s3://anchors/stagegate/heads"]
        write_events(alice, 2)
        assert [h["seq"] for h in received] == [2]
        latest = json.loads(s3.get_object(Bucket="anchors",
                                          Key="stagegate/heads/latest.json")["Body"].read())
        assert latest == received[0]
        assert AuditHead.objects.get().deliveries == {s: "ok" for s in
                                                      settings.STAGEGATE_AUDIT_HEAD_SINKS}
        saved = tmp_path / "from-s3.json"
        saved.write_text(json.dumps(latest))
        assert "up to #2" in verify(saved)
    finally:
        server.shutdown()
        moto.stop()


@pytest.mark.django_db(transaction=True)
def test_the_periodic_export_signs_what_is_new_and_runs_twice_safely(alice, sink, settings):
    from audit.tasks import export_head_task

    settings.STAGEGATE_AUDIT_HEAD_EVERY_EVENTS = 0  # only the clock exports
    write_events(alice, 3)
    assert not sink.exists()
    assert export_head_task.apply().get() == 3
    assert export_head_task.apply().get() is None  # nothing written since
    write_events(alice, 1)
    assert export_head_task.apply().get() == 4
    assert [json.loads(line)["seq"] for line in sink.read_text().splitlines()] == [3, 4]


@pytest.mark.django_db(transaction=True)
def test_a_sink_that_is_down_is_retried_and_the_event_still_commits(alice, settings, tmp_path):
    from audit.tasks import deliver_head_task

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the sink's folder should be")
    sink = f"file://{blocked}/heads.jsonl"
    settings.STAGEGATE_AUDIT_HEAD_SINKS = [sink]
    settings.STAGEGATE_AUDIT_HEAD_EVERY_EVENTS = 2
    write_events(alice, 2)
    assert AuditEvent.objects.count() == 2
    head = AuditHead.objects.get()
    assert head.deliveries[sink].startswith("FileExistsError") or "Error" in head.deliveries[sink]
    blocked.unlink()
    blocked.mkdir()
    assert deliver_head_task.apply(args=(head.pk, sink)).get() == "delivered"
    assert deliver_head_task.apply(args=(head.pk, sink)).get() == "noop"
    assert json.loads((blocked / "heads.jsonl").read_text())["seq"] == 2
