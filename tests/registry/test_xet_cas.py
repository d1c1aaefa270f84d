"""Stagegate's Xet CAS on a real socket, spoken to byte by byte: what it keeps, what it refuses,
and what a commit gets out of it."""

from __future__ import annotations

import hashlib
import os
import struct

import hf_xet
import pytest
import requests

from audit.models import AuditEvent
from models import blobstore
from models.models import Checkpoint, HubUpload, XetFile, Xorb
from models.xet import formats, store
from models.xet.hashing import chunk_hash, file_hash, hash_to_hex, hex_to_hash, keyed
from tests.conftest import StateSnapshot, make_persona, token_for
from tests.registry import xetcraft

pytestmark = pytest.mark.django_db(transaction=True)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def cas(stagegate_server):
    """alice's repo lab/cas and a Xet write token for it."""
    alice = make_persona("alice")
    token = token_for(alice, "submit")
    created = requests.post(f"{stagegate_server.url}/api/repos/create", headers=bearer(token),
                            json={"name": "cas", "organization": "lab", "type": "model"})
    assert created.status_code == 200, created.text
    grant = requests.get(f"{stagegate_server.url}/api/models/lab/cas/xet-write-token/main",
                         headers=bearer(token))
    assert grant.status_code == 200, grant.text
    assert grant.headers["X-Xet-Cas-Url"] == f"{stagegate_server.url}/xet"
    assert int(grant.headers["X-Xet-Token-Expiration"]) == grant.json()["exp"]

    class Cas:
        url = grant.headers["X-Xet-Cas-Url"]
        headers = bearer(grant.headers["X-Xet-Access-Token"])
        api_token = token
        server = stagegate_server

        def post_xorb(self, xorb_hex, body, headers=None):
            return requests.post(f"{self.url}/v1/xorbs/default/{xorb_hex}", data=body,
                                 headers=self.headers if headers is None else headers)

        def post_shard(self, body):
            return requests.post(f"{self.url}/v1/shards", data=body, headers=self.headers)

        def commit(self, path, oid, size, summary="v1"):
            lines = [{"key": "header", "value": {"summary": summary}},
                     {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid,
                                                   "size": size}}]
            import json
            return requests.post(f"{self.server.url}/api/models/lab/cas/commit/main",
                                 data="".join(json.dumps(x) + "\n" for x in lines),
                                 headers={**bearer(self.api_token),
                                          "Content-Type": "application/x-ndjson"})

    return Cas()


def test_hashes_match_the_reference_client():
    data = os.urandom(5000)  # under the minimum chunk size: one chunk
    path = f"/tmp/stagegate-xet-{os.getpid()}.bin"
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        reference = hf_xet.hash_files([path])[0].hash
    finally:
        os.unlink(path)
    assert hash_to_hex(file_hash([(chunk_hash(data), len(data))])) == reference
    raw = bytes(range(32))
    assert hash_to_hex(raw) == ("0706050403020100" "0f0e0d0c0b0a0908" "1716151413121110" "1f1e1d1c1b1a1918")
    assert hex_to_hash(hash_to_hex(raw)) == raw


def test_byte_grouped_chunks_are_regrouped():
    data = os.urandom(1003)
    grouped = b"".join(data[i::4] for i in range(4))
    assert formats._regroup_bg4(grouped) == data


def test_a_xorb_is_kept_once_and_a_lying_one_is_refused(cas):
    chunks = xetcraft.split(os.urandom(60_000))
    xorb_hex, body = xetcraft.xorb(chunks, compress=True)
    first = cas.post_xorb(xorb_hex, body)
    assert first.status_code == 200 and first.json() == {"was_inserted": True}
    assert cas.post_xorb(xorb_hex, body).json() == {"was_inserted": False}
    assert Xorb.objects.get(hash=xorb_hex).chunk_count == len(chunks)

    other_hex, _ = xetcraft.xorb(xetcraft.split(os.urandom(20_000)))
    snapshot = StateSnapshot()
    lying = cas.post_xorb(other_hex, body)  # the bytes are not the xorb the URL names
    assert lying.status_code == 400 and "hash to" in lying.text
    truncated = cas.post_xorb(xorb_hex[::-1], body[:-10])
    assert truncated.status_code == 400
    assert not Xorb.objects.filter(hash=other_hex).exists()
    snapshot.assert_unchanged()


def test_a_shard_must_prove_its_files(cas):
    chunks = xetcraft.split(os.urandom(50_000))
    xorb_hex, body = xetcraft.xorb(chunks)
    unknown = cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, len(chunks))]))
    assert unknown.status_code == 400 and "never uploaded" in unknown.text
    assert cas.post_xorb(xorb_hex, body).status_code == 200
    bad_proof = cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, 2)], bad_verification=True))
    assert bad_proof.status_code == 400 and "verification" in bad_proof.text
    wrong_hash = cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, 2)],
                                               file_hash_of=lambda s, e, h: bytes(32)))
    assert wrong_hash.status_code == 400 and "file hash" in wrong_hash.text
    assert not XetFile.objects.exists()
    good = cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, len(chunks)), (1, 3)]))
    assert good.status_code == 200 and good.json() == {"result": 1}
    assert XetFile.objects.count() == 2
    assert HubUpload.objects.filter(user__username="alice", via="xet").count() == 2


def test_a_committed_xet_file_is_rebuilt_and_checked_against_its_sha256(cas):
    data = os.urandom(70_000)
    chunks = xetcraft.split(data)
    xorb_hex, body = xetcraft.xorb(chunks, compress=True)
    assert cas.post_xorb(xorb_hex, body).status_code == 200
    # The shard claims the file's sha256 is that of other bytes: only rebuilding can tell.
    claimed = hashlib.sha256(b"something else").hexdigest()
    assert cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, len(chunks))],
                                         sha256_of=lambda _: claimed)).status_code == 200
    snapshot = StateSnapshot()
    refused = cas.commit("weights.bin", claimed, len(data))
    assert refused.status_code == 400 and "rebuild to sha256" in refused.headers["X-Error-Message"]
    snapshot.assert_unchanged()

    honest = xetcraft.split(os.urandom(40_000))
    honest_hex, honest_body = xetcraft.xorb(honest)
    assert cas.post_xorb(honest_hex, honest_body).status_code == 200
    assert cas.post_shard(xetcraft.shard(honest_hex, honest, [(0, len(honest))])).status_code == 200
    sha = hashlib.sha256(b"".join(honest)).hexdigest()
    done = cas.commit("weights.bin", sha, 40_000)
    assert done.status_code == 200, done.text
    checkpoint = Checkpoint.objects.get(family__name="cas")
    assert done.json()["commitOid"] == checkpoint.commit
    assert checkpoint.files.get().blob_id == sha


def test_a_xorb_changed_in_the_storage_after_its_upload_rebuilds_nothing(cas):
    """Someone with write access to the blob storage (not to Stagegate) swaps bytes of a stored
    xorb: the commit's rebuild checks each chunk against its Xet hash again, and is refused."""
    data = os.urandom(50_000)
    chunks = xetcraft.split(data)
    xorb_hex, body = xetcraft.xorb(chunks)
    assert cas.post_xorb(xorb_hex, body).status_code == 200
    assert cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, len(chunks))])).status_code == 200
    stored = blobstore.blob_storage().path(store.xorb_name(xorb_hex))
    with open(stored, "r+b") as fh:  # 16 bytes inside the third chunk's data
        fh.seek(len(body) // 2)
        original = fh.read(16)
        fh.seek(len(body) // 2)
        fh.write(bytes(b ^ 0xFF for b in original))
    snapshot = StateSnapshot()
    refused = cas.commit("weights.bin", hashlib.sha256(data).hexdigest(), len(data))
    assert refused.status_code == 400
    assert f"stored xorb {xorb_hex} no longer matches its chunk hashes" in \
        refused.headers["X-Error-Message"]
    assert not Checkpoint.objects.filter(family__name="cas").exists()
    snapshot.assert_unchanged()


def test_the_dedup_answer_lists_the_xorb_with_keyed_chunk_hashes(cas):
    chunks = xetcraft.split(os.urandom(64_000))
    xorb_hex, body = xetcraft.xorb(chunks)
    cas.post_xorb(xorb_hex, body)
    cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, len(chunks))]))
    first = chunk_hash(chunks[0])
    for prefix in ("default", "default-merkledb"):
        answer = requests.get(f"{cas.url}/v1/chunks/{prefix}/{hash_to_hex(first)}",
                              headers=cas.headers)
        assert answer.status_code == 200
    shard = answer.content
    footer = shard[-formats.SHARD_FOOTER_SIZE:]
    key = footer[72:104]
    assert key != bytes(32)
    assert keyed(first, key) in shard and first not in shard  # no raw chunk hash leaves
    assert hex_to_hash(xorb_hex) in shard
    chunk_lookup_offset, chunk_count = struct.unpack("<QQ", footer[56:72])
    assert chunk_count == len(chunks)
    missing = requests.get(f"{cas.url}/v1/chunks/default/{'0' * 64}", headers=cas.headers)
    assert missing.status_code == 404


def test_the_cas_wants_a_live_xet_token(cas):
    chunks = xetcraft.split(os.urandom(10_000))
    xorb_hex, body = xetcraft.xorb(chunks)
    assert cas.post_xorb(xorb_hex, body, headers={}).status_code == 401
    assert cas.post_xorb(xorb_hex, body, headers=bearer(cas.api_token)).status_code == 401
    assert cas.post_xorb(xorb_hex, body, headers=bearer("xet_forged")).status_code == 401
    from accounts.models import ApiToken
    from accounts.services import revoke_token

    token = ApiToken.objects.get(user__username="alice")
    revoke_token(actor=token.user, token=token)
    revoked = cas.post_xorb(xorb_hex, body)
    assert revoked.status_code == 401 and "revoked" in revoked.text
    assert not Xorb.objects.exists()


def test_mallory_gets_no_write_token(stagegate_server, cas):
    mallory = token_for(make_persona("mallory"), "all")
    refused = requests.get(f"{stagegate_server.url}/api/models/lab/cas/xet-write-token/main",
                           headers=bearer(mallory))
    assert refused.status_code == 404 and refused.headers["X-Error-Code"] == "RepoNotFound"
    assert AuditEvent.objects.filter(verb="permission.denied", actor_username="mallory",
                                     data_json__contains="xet.write_token").exists()


def test_the_cas_collects_what_nobody_needs_and_rebuilds_from_committed_files(cas):
    """What an uncommitted upload left is forgotten; a committed file's xorb keeps no second
    copy of its bytes, yet stays known: a later file made of its chunks is rebuilt from the
    committed blob, chunk hashes checked."""
    from datetime import timedelta

    from django.utils import timezone

    from models.blobstore import blob_storage, open_blob
    from models.hub_services import purge_expired_hub_uploads
    from models.xet.store import xorb_name

    storage = blob_storage()
    kept = xetcraft.split(os.urandom(100_000))
    kept_hex, kept_body = xetcraft.xorb(kept, compress=True)
    assert cas.post_xorb(kept_hex, kept_body).status_code == 200
    assert cas.post_shard(xetcraft.shard(kept_hex, kept, [(0, len(kept))])).status_code == 200
    whole = b"".join(kept)
    done = cas.commit("a.bin", hashlib.sha256(whole).hexdigest(), len(whole))
    assert done.status_code == 200, done.text

    abandoned = xetcraft.split(os.urandom(30_000))
    abandoned_hex, abandoned_body = xetcraft.xorb(abandoned)
    assert cas.post_xorb(abandoned_hex, abandoned_body).status_code == 200
    assert cas.post_shard(xetcraft.shard(abandoned_hex, abandoned,
                                         [(0, len(abandoned))])).status_code == 200
    abandoned_file = XetFile.objects.get(sha256=hashlib.sha256(b"".join(abandoned)).hexdigest())

    purge_expired_hub_uploads()  # now: every receipt is live, nothing is collected
    assert storage.exists(xorb_name(kept_hex)) and storage.exists(xorb_name(abandoned_hex))

    later = timezone.now() + timedelta(days=2)  # past every receipt's expiry
    purge_expired_hub_uploads(now=later)
    xorb = Xorb.objects.get(hash=kept_hex)
    assert xorb.bytes_dropped_at is not None and not storage.exists(xorb_name(kept_hex)), \
        "every chunk is in a.bin's blob: the xorb's own copy is dropped"
    assert not XetFile.objects.filter(pk=abandoned_file.pk).exists()
    assert storage.exists(xorb_name(abandoned_hex)), "kept while a client may still name it"
    answer = requests.get(f"{cas.url}/v1/chunks/default/{hash_to_hex(chunk_hash(kept[0]))}",
                          headers=cas.headers)
    assert answer.status_code == 200 and hex_to_hash(kept_hex) in answer.content, \
        "the dropped xorb is still offered for deduplication"

    purge_expired_hub_uploads(now=timezone.now() + timedelta(days=10))
    assert not Xorb.objects.filter(hash=abandoned_hex).exists()
    assert not storage.exists(xorb_name(abandoned_hex))
    assert Xorb.objects.filter(hash=kept_hex).exists()

    # A new file made of chunks 2..5 of the dropped xorb: registered and rebuilt from a.bin.
    part = b"".join(kept[2:5])
    assert cas.post_shard(xetcraft.shard(kept_hex, kept, [(2, 5)])).status_code == 200
    again = cas.commit("part.bin", hashlib.sha256(part).hexdigest(), len(part), summary="v2")
    assert again.status_code == 200, again.text
    checkpoint = Checkpoint.objects.get(family__name="cas", label="v2")
    with open_blob(checkpoint.files.get(path="part.bin").blob_id) as stream:
        assert stream.read() == part
    assert checkpoint.files.get(path="a.bin").blob_id == hashlib.sha256(whole).hexdigest()


def test_a_shard_that_claims_a_committed_sha256_cannot_get_its_xorb_dropped(cas):
    """The attack on collection: a submitter registers a file over her own xorb's chunks but
    claims the sha256 of a committed blob, hoping the CAS believes the chunks are in that blob
    and drops the xorb. Only a file a commit rebuilt counts, so the xorb keeps its bytes, and a
    later upload that uses its chunks still commits the right bytes."""
    from datetime import timedelta

    from django.utils import timezone

    from models.blobstore import blob_storage, open_blob
    from models.hub_services import purge_expired_hub_uploads
    from models.xet.store import xorb_name

    honest = xetcraft.split(os.urandom(50_000))
    honest_hex, honest_body = xetcraft.xorb(honest)
    assert cas.post_xorb(honest_hex, honest_body).status_code == 200
    assert cas.post_shard(xetcraft.shard(honest_hex, honest, [(0, len(honest))])).status_code == 200
    committed = hashlib.sha256(b"".join(honest)).hexdigest()
    assert cas.commit("a.bin", committed, 50_000).status_code == 200

    bait = xetcraft.split(os.urandom(50_000))
    bait_hex, bait_body = xetcraft.xorb(bait)
    assert cas.post_xorb(bait_hex, bait_body).status_code == 200
    assert cas.post_shard(xetcraft.shard(bait_hex, bait, [(0, len(bait))],
                                         sha256_of=lambda _: committed)).status_code == 200
    purge_expired_hub_uploads(now=timezone.now() + timedelta(hours=2))  # receipts still live
    assert Xorb.objects.get(hash=bait_hex).bytes_dropped_at is None
    assert blob_storage().exists(xorb_name(bait_hex))

    part = b"".join(bait[1:3])
    assert cas.post_shard(xetcraft.shard(bait_hex, bait, [(1, 3)])).status_code == 200
    done = cas.commit("b.bin", hashlib.sha256(part).hexdigest(), len(part), summary="v2")
    assert done.status_code == 200, done.text
    checkpoint = Checkpoint.objects.get(family__name="cas", label="v2")
    with open_blob(checkpoint.files.get(path="b.bin").blob_id) as stream:
        assert stream.read() == part


def _commit_whole(cas, path, terms, xorbs, summary="v1"):
    """Register one file of `terms` ((xorb hash, chunks, start, end) each) and commit it."""
    data = b"".join(c for _, chunks, start, end in terms for c in chunks[start:end])
    assert cas.post_shard(xetcraft.shard_of([terms], xorbs)).status_code == 200
    done = cas.commit(path, hashlib.sha256(data).hexdigest(), len(data), summary=summary)
    assert done.status_code == 200, done.text
    return data


def test_chunks_of_a_dropped_xorb_are_read_from_the_middle_of_the_committed_file(cas):
    """a.bin is two xorbs' chunks, one after the other; once both xorbs dropped their bytes, a
    file made of the end of the first and the start of the second reads each from where it
    sits in a.bin's blob (the second from an offset the first's size puts there)."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from models.blobstore import open_blob
    from models.hub_services import purge_expired_hub_uploads
    from models.xet.store import covers

    head = xetcraft.split(os.urandom(50_000))
    tail = xetcraft.split(os.urandom(100_000))
    (head_hex, head_body), (tail_hex, tail_body) = xetcraft.xorb(head), xetcraft.xorb(tail)
    for xorb_hex, body in ((head_hex, head_body), (tail_hex, tail_body)):
        assert cas.post_xorb(xorb_hex, body).status_code == 200
    _commit_whole(cas, "a.bin", [(head_hex, head, 0, len(head)), (tail_hex, tail, 0, len(tail))],
                  [(head_hex, head), (tail_hex, tail)])
    purge_expired_hub_uploads(now=timezone.now() + timedelta(days=2))
    assert Xorb.objects.filter(bytes_dropped_at__isnull=True).count() == 0

    tail_xorb = Xorb.objects.get(hash=tail_hex)
    with CaptureQueriesContext(connection) as queries:
        found = covers(tail_xorb)
    assert len(queries) == 1, "one query, whatever the number of covering terms"
    assert [(c.start, c.end, c.offset) for c in found] == [(0, len(tail), 50_000)]

    part = _commit_whole(cas, "part.bin", [(head_hex, head, 2, len(head)), (tail_hex, tail, 0, 3)],
                         [], summary="v2")
    checkpoint = Checkpoint.objects.get(family__name="cas", label="v2")
    with open_blob(checkpoint.files.get(path="part.bin").blob_id) as stream:
        assert stream.read() == part == b"".join(head[2:]) + b"".join(tail[:3])


def test_a_xorb_missing_from_storage_but_never_dropped_refuses_the_commit(cas):
    from models.blobstore import blob_storage
    from models.xet.store import xorb_name

    chunks = xetcraft.split(os.urandom(40_000))
    xorb_hex, body = xetcraft.xorb(chunks)
    assert cas.post_xorb(xorb_hex, body).status_code == 200
    assert cas.post_shard(xetcraft.shard(xorb_hex, chunks, [(0, len(chunks))])).status_code == 200
    blob_storage().delete(xorb_name(xorb_hex))  # an operator's mistake, or a broken bucket
    snapshot = StateSnapshot()
    refused = cas.commit("a.bin", hashlib.sha256(b"".join(chunks)).hexdigest(), 40_000)
    assert refused.status_code == 400
    assert "missing from the blob storage; upload the file again" in \
        refused.headers["X-Error-Message"]
    snapshot.assert_unchanged()


def test_on_s3_a_xorb_collected_while_a_rebuild_reads_it_is_read_from_the_committed_file(
        bucket, cas):
    """The collector may drop a xorb's bytes after a rebuild opened it (it deletes the object
    once every chunk is in a committed file). On S3 the next GET then finds nothing, and the
    rebuild carries on from the committed blob, every chunk hash checked."""
    from datetime import timedelta

    from django.utils import timezone

    from models.blobstore import blob_name
    from models.hub_services import purge_expired_hub_uploads
    from models.xet.store import _XorbReader, xorb_name

    chunks = xetcraft.split(os.urandom(120_000))
    xorb_hex, body = xetcraft.xorb(chunks, compress=True)
    assert cas.post_xorb(xorb_hex, body).status_code == 200
    assert xorb_name(xorb_hex) in bucket.keys()
    whole = _commit_whole(cas, "a.bin", [(xorb_hex, chunks, 0, len(chunks))],
                          [(xorb_hex, chunks)])
    assert bucket.read(blob_name(hashlib.sha256(whole).hexdigest())) == whole

    reader = _XorbReader(Xorb.objects.get(hash=xorb_hex))  # opened: the object is there
    purge_expired_hub_uploads(now=timezone.now() + timedelta(days=2))
    assert xorb_name(xorb_hex) not in bucket.keys()
    try:
        assert b"".join(reader.chunks(3, 6)) == b"".join(chunks[3:6])
    finally:
        reader.close()

    part = _commit_whole(cas, "part.bin", [(xorb_hex, chunks, 1, 4)], [], summary="v2")
    checkpoint = Checkpoint.objects.get(family__name="cas", label="v2")
    assert bucket.read(blob_name(checkpoint.files.get(path="part.bin").blob_id)) == part
