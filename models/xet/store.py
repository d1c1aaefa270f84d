"""The Xet CAS's writes and reads: xorbs in, shards in, dedup answers out, files rebuilt.

Xorb bytes go through the blob storage (`xorbs/ab/cd/<hash>`), so every web process and worker
sees the same CAS. Nothing is trusted that can be checked: a xorb's chunks must hash to the xorb
hash in its URL; a shard's terms must point at stored chunks, carry the right verification
hashes and add up to the file hash it claims; a rebuilt file must hash to the sha256 the shard
and the commit name.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from models import blobstore
from models.blobstore import StagedFile
from models.models import CheckpointFile, HubUpload, XetChunk, XetFile, XetTerm, Xorb
from models.xet import formats
from models.xet.formats import XetFormatError
from models.xet.hashing import (
    MerkleBuilder,
    chunk_hash,
    hash_to_hex,
    hex_to_hash,
    is_global_dedup_eligible,
    keyed,
    merkle_root,
    verification_hash,
)

DEDUP_WINDOW_XORBS = 64           # xorbs a dedup answer lists beyond the one asked about
DEDUP_SHARD_VALID = timedelta(days=7)
# How long after a xorb's last use the CAS keeps it though no file uses it: a client caches the
# dedup answers (valid DEDUP_SHARD_VALID) and may name the xorb in a shard until then.
UNUSED_XORB_KEPT = DEDUP_SHARD_VALID + timedelta(days=1)
# How long a xorb whose every chunk is in committed files keeps its bytes (a rebuild that
# started reading them finishes first).
COVERED_XORB_BYTES_KEPT = timedelta(hours=1)
COLLECT_BATCH = 500


def xorb_name(xorb_hex: str) -> str:
    return f"xorbs/{xorb_hex[:2]}/{xorb_hex[2:4]}/{xorb_hex}"


# --- xorbs --------------------------------------------------------------------------------------

def store_xorb(*, actor, xorb_hex: str, local: Path) -> bool:
    """Verify the serialized xorb at `local` and keep it. True when it is new, False when the
    CAS already had it. The temporary file is gone either way."""
    try:
        expected = hex_to_hash(xorb_hex)
        if Xorb.objects.filter(hash=xorb_hex).exists():
            return False
        size = local.stat().st_size
        table: list[tuple[bytes, int, int]] = []
        with open(local, "rb") as stream:
            footer = formats.XorbFooter()
            for chunk in formats.iter_xorb_chunks(stream, size, footer):
                table.append((chunk_hash(chunk.data), chunk.offset, chunk.unpacked))
        computed = merkle_root([(h, unpacked) for h, _, unpacked in table])
        if computed != expected:
            raise XetFormatError(f"the xorb's chunks hash to {hash_to_hex(computed)}, not "
                                 f"{xorb_hex}")
        if footer.xorb_hash is not None and footer.xorb_hash != expected:
            raise XetFormatError("the xorb's footer names another xorb hash")
        storage = blobstore.blob_storage()
        name = xorb_name(xorb_hex)
        if not storage.exists(name):
            blobstore.save_local_file(name, local)
        try:
            with transaction.atomic():
                xorb = Xorb.objects.create(
                    hash=xorb_hex, size=size, unpacked_size=sum(u for _, _, u in table),
                    chunk_count=len(table), chunk_table=formats.pack_chunk_table(table),
                    uploaded_by=actor if getattr(actor, "is_authenticated", False) else None)
                XetChunk.objects.bulk_create(
                    [XetChunk(chunk_hash=hash_to_hex(h), xorb=xorb, index=i)
                     for i, (h, _, _) in enumerate(table) if is_global_dedup_eligible(h)],
                    ignore_conflicts=True)
        except IntegrityError:
            return False  # a concurrent upload of the same xorb won
        return True
    finally:
        local.unlink(missing_ok=True)


def _chunk_table(xorb: Xorb) -> list[tuple[bytes, int, int]]:
    return formats.unpack_chunk_table(bytes(xorb.chunk_table))


# --- shards -------------------------------------------------------------------------------------

def register_shard(*, actor, family, data: bytes) -> int:
    """Register the files a shard describes, after checking each against the stored chunks;
    the uploader gets a receipt per file (what lets them name it in a commit). Returns how many
    files were new to the CAS."""
    files, xorbs = formats.parse_upload_shard(data)
    listed = {hash_to_hex(x.xorb) for x in xorbs}
    known = set(Xorb.objects.filter(hash__in=listed).values_list("hash", flat=True))
    if listed - known:
        raise XetFormatError(f"the shard lists xorb {sorted(listed - known)[0]}, which was "
                             "never uploaded; upload every xorb before its shard")
    checked = [_check_file(entry) for entry in files]
    new = 0
    now = timezone.now()
    expires = now + timedelta(hours=settings.STAGEGATE_UPLOAD_SESSION_HOURS)
    with transaction.atomic():
        Xorb.objects.filter(hash__in=listed).update(last_used_at=now)
        for entry, size, first_chunk in checked:
            file_hex = hash_to_hex(entry.file_hash)
            # Locked, so that the collector (which skips locked files) cannot forget it between
            # here and the receipt below.
            xet_file, created = XetFile.objects.select_for_update().get_or_create(
                file_hash=file_hex, defaults={"sha256": _sha256_hex(entry), "size": size})
            if created:
                new += 1
                XetTerm.objects.bulk_create([
                    XetTerm(file=xet_file, position=i, xorb_id=hash_to_hex(t.xorb),
                            start=t.start, end=t.end, unpacked=t.unpacked)
                    for i, t in enumerate(entry.terms)])
                first = entry.terms[0]
                XetChunk.objects.bulk_create(
                    [XetChunk(chunk_hash=hash_to_hex(first_chunk), xorb_id=hash_to_hex(first.xorb),
                              index=first.start)], ignore_conflicts=True)
            elif xet_file.sha256 != _sha256_hex(entry):
                # Same chunks, another sha256: one of the two claims is false. The rebuild at
                # commit decides; this one is refused now.
                raise XetFormatError(f"file {file_hex} was registered with sha256 "
                                     f"{xet_file.sha256}, this shard says {_sha256_hex(entry)}")
            HubUpload.objects.create(user=actor, family=family, sha256=xet_file.sha256,
                                     size=xet_file.size, via=HubUpload.Via.XET,
                                     xet_file=xet_file, expires_at=expires)
    return new


def _sha256_hex(entry: formats.ShardFile) -> str:
    # The metadata extension holds the sha256 as a Xet hash value: its usual hex form is the
    # hash's string form, not the bytes in order.
    return hash_to_hex(entry.sha256)


def _check_file(entry: formats.ShardFile) -> tuple[formats.ShardFile, int, bytes]:
    """Verify one file of a shard against the CAS; return it, its size and its first chunk."""
    file_hex = hash_to_hex(entry.file_hash)
    if entry.sha256 is None:
        raise XetFormatError(f"file {file_hex} has no sha256 (metadata extension); a Hub "
                             "repo names files by sha256")
    if len(entry.verification) != len(entry.terms):
        raise XetFormatError(f"file {file_hex} lacks verification entries for its terms")
    tables: dict[str, list[tuple[bytes, int, int]]] = {}
    merkle = MerkleBuilder()
    size = 0
    first_chunk = b""
    for term, proof in zip(entry.terms, entry.verification):
        xorb_hex = hash_to_hex(term.xorb)
        if xorb_hex not in tables:
            xorb = Xorb.objects.filter(hash=xorb_hex).first()
            if xorb is None:
                raise XetFormatError(f"file {file_hex} uses xorb {xorb_hex}, which was never "
                                     "uploaded")
            tables = {xorb_hex: _chunk_table(xorb)}  # one table at a time: constant memory
        table = tables[xorb_hex]
        if term.end > len(table):
            raise XetFormatError(f"file {file_hex} uses chunks {term.start}-{term.end} of xorb "
                                 f"{xorb_hex}, which has {len(table)}")
        rows = table[term.start:term.end]
        if sum(u for _, _, u in rows) != term.unpacked:
            raise XetFormatError(f"file {file_hex}: a term's size does not match its chunks")
        if verification_hash([h for h, _, _ in rows]) != proof:
            raise XetFormatError(f"file {file_hex}: a term's verification hash is wrong")
        for h, _, unpacked in rows:
            merkle.add(h, unpacked)
        if not first_chunk:
            first_chunk = rows[0][0]
        size += term.unpacked
    if merkle.file_hash() != entry.file_hash:
        raise XetFormatError(f"the chunks of file {file_hex} hash to another file hash")
    if size > settings.STAGEGATE_MAX_FILE_SIZE:
        raise XetFormatError(f"file {file_hex} is larger than STAGEGATE_MAX_FILE_SIZE")
    return entry, size, first_chunk


# --- global deduplication -----------------------------------------------------------------------

def dedup_shard(chunk_hex: str) -> bytes | None:
    """The answer to "do you have this chunk?": a shard listing the xorb that holds it and the
    xorbs that follow it in the files that use it, its chunk hashes keyed with a fresh HMAC key
    (so the answer reveals only hashes the asker can match with data it holds). None: unknown."""
    hex_to_hash(chunk_hex)
    hit = XetChunk.objects.filter(chunk_hash=chunk_hex).select_related("xorb").first()
    if hit is None:
        return None
    wanted = [hit.xorb_id]
    for term in XetTerm.objects.filter(xorb_id=hit.xorb_id).order_by("file_id", "position")[:8]:
        following = (XetTerm.objects.filter(file_id=term.file_id, position__gte=term.position)
                     .order_by("position").values_list("xorb_id", flat=True)
                     [:DEDUP_WINDOW_XORBS])
        for xorb_id in following:
            if xorb_id not in wanted:
                wanted.append(xorb_id)
        if len(wanted) >= DEDUP_WINDOW_XORBS:
            break
    key = secrets.token_bytes(32)
    listed = []
    offered = Xorb.objects.filter(hash__in=wanted[:DEDUP_WINDOW_XORBS])
    offered.update(last_used_at=timezone.now())  # the asker may name them for a while now
    for xorb in offered:
        chunks = [(keyed(h, key), unpacked) for h, _, unpacked in _chunk_table(xorb)]
        listed.append(formats.DedupXorb(xorb=hex_to_hash(xorb.hash), chunks=chunks,
                                        on_disk=xorb.size))
    now = int(time.time())
    return formats.serialize_dedup_shard(listed, hmac_key=key, created=now,
                                         expiry=now + int(DEDUP_SHARD_VALID.total_seconds()))


# --- rebuilding a file --------------------------------------------------------------------------

class RebuildError(ValueError):
    pass


def _file_bytes(xet_file: XetFile) -> Iterator[bytes]:
    """The file's bytes, chunk by chunk, each chunk re-hashed against its xorb's table."""
    reader = None
    try:
        for term in xet_file.terms.select_related("xorb").order_by("position"):
            if reader is None or reader.xorb.hash != term.xorb_id:
                if reader is not None:
                    reader.close()
                reader = _XorbReader(term.xorb)  # consecutive terms mostly share a xorb
            yield from reader.chunks(term.start, term.end)
    finally:
        if reader is not None:
            reader.close()


class _XorbReader:
    """One xorb's chunks: read from its stored bytes, or, once the collector dropped them (even
    while this reads), from the committed files that hold them."""

    def __init__(self, xorb: Xorb):
        self.xorb = xorb
        self.table = _chunk_table(xorb)
        self.stream = None
        self.found: list[Cover] | None = None
        if xorb.bytes_dropped_at is None:
            try:
                self.stream = blobstore.open_stored(xorb_name(xorb.hash))
            except FileNotFoundError:
                self._bytes_gone()
        else:
            self.found = covers(xorb)

    def _bytes_gone(self) -> None:
        self.close()
        self.xorb.refresh_from_db(fields=["bytes_dropped_at"])
        if self.xorb.bytes_dropped_at is None:
            raise RebuildError(f"stored xorb {self.xorb.hash} is missing from the blob storage; "
                               "upload the file again")
        self.found = covers(self.xorb)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        if not 0 <= start < end <= len(self.table):
            raise RebuildError(f"xorb {self.xorb.hash} has no chunks {start}-{end}")
        i = start
        if self.stream is not None:
            try:
                for data in self._from_xorb(start, end):
                    yield data
                    i += 1
                return
            except FileNotFoundError:
                self._bytes_gone()  # collected after it was opened: the rest from the covers
        yield from self._from_covers(i, end)

    def _from_xorb(self, start: int, end: int) -> Iterator[bytes]:
        self.stream.seek(self.table[start][1])
        for want_hash, offset, unpacked in self.table[start:end]:
            chunk = formats.read_chunk(self.stream, offset, self.xorb.size)
            if chunk.unpacked != unpacked or chunk_hash(chunk.data) != want_hash:
                raise RebuildError(f"stored xorb {self.xorb.hash} no longer matches its chunk "
                                   f"hashes (chunk at byte {offset})")
            yield chunk.data

    def _from_covers(self, start: int, end: int) -> Iterator[bytes]:
        i = start
        while i < end:
            cover = next((c for c in self.found if c.start <= i < c.end), None)
            if cover is None:
                raise RebuildError(f"chunk {i} of xorb {self.xorb.hash} is in no stored xorb "
                                   "and no committed file; upload the file again")
            stop = min(end, cover.end)
            offset = cover.offset + sum(unpacked for _, _, unpacked in self.table[cover.start:i])
            try:
                with blobstore.open_blob(cover.sha256) as stream:
                    stream.seek(offset)
                    for want_hash, _, unpacked in self.table[i:stop]:
                        data = stream.read(unpacked)
                        if len(data) != unpacked or chunk_hash(data) != want_hash:
                            raise RebuildError(f"blob {cover.sha256} no longer holds chunk {i} "
                                               f"of xorb {self.xorb.hash}")
                        yield data
                        i += 1
            except FileNotFoundError:
                raise RebuildError(f"blob {cover.sha256}, which holds chunk {i} of xorb "
                                   f"{self.xorb.hash}, is missing; upload the file again") from None

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


@dataclass(frozen=True)
class Cover:
    """Chunks start..end of a xorb, as they sit in a committed blob from byte `offset` on."""

    start: int
    end: int
    sha256: str
    offset: int


def covers(xorb: Xorb) -> list[Cover]:
    """Where a xorb's chunks are in committed files: the terms of files a commit rebuilt (so
    their sha256 is true) whose blob a checkpoint keeps (so it is never deleted). One query:
    each term's offset in its file is the sum of the terms before it."""
    kept = CheckpointFile.objects.values("blob_id")
    before = (XetTerm.objects.filter(file_id=OuterRef("file_id"), position__lt=OuterRef("position"))
              .order_by().values("file_id").annotate(n=Sum("unpacked")).values("n"))
    rows = (XetTerm.objects.filter(xorb=xorb, file__rebuilt_at__isnull=False,
                                   file__sha256__in=kept)
            .annotate(offset=Coalesce(Subquery(before, output_field=BigIntegerField()), 0))
            .order_by("start", "-end").values_list("start", "end", "file__sha256", "offset")
            [:COLLECT_BATCH])
    return [Cover(start, end, sha256, offset) for start, end, sha256, offset in rows]


def _covered(chunk_count: int, found: list[Cover]) -> bool:
    reach = 0
    for cover in sorted(found, key=lambda c: c.start):
        if cover.start > reach:
            return False
        reach = max(reach, cover.end)
    return reach >= chunk_count


def rebuild_file(*, xet_file: XetFile, path: str, sha256: str, size: int) -> StagedFile:
    """Stream the file into a staged temporary file while hashing it; refuse it (and delete the
    temporary file) unless it has the sha256 and size the commit names."""
    if xet_file.size != size:
        raise RebuildError(f"{path}: the commit says {size} bytes, the uploaded file has "
                           f"{xet_file.size}")
    try:
        staged = blobstore.stage_chunks(path, _file_bytes(xet_file))
    except XetFormatError as exc:
        raise RebuildError(f"{path}: a stored xorb is unreadable ({exc})") from None
    if staged.sha256 != sha256 or staged.size != size:
        staged.discard()
        raise RebuildError(f"{path}: the uploaded chunks rebuild to sha256 {staged.sha256} "
                           f"({staged.size} bytes), not the {sha256} ({size} bytes) committed")
    if xet_file.rebuilt_at is None:
        XetFile.objects.filter(pk=xet_file.pk).update(rebuilt_at=timezone.now())
    return staged


# --- collection ---------------------------------------------------------------------------------

def collect(*, now=None) -> dict[str, int]:
    """Forget what the CAS holds for nobody, on the periodic purge (after expired receipts are
    gone). Three steps, each safe to run twice and against concurrent uploads:

    - files no receipt names and no checkpoint holds (uploads nobody committed) are forgotten
      with their terms;
    - a xorb whose every chunk is in committed files drops its bytes after
      COVERED_XORB_BYTES_KEPT: it stays known (chunk table, dedup index), so clients still
      deduplicate against it and rebuilds read its chunks from those files' blobs;
    - a xorb no file uses and nobody was offered for UNUSED_XORB_KEPT is deleted.

    Returns how many of each it did."""
    now = now or timezone.now()
    kept = CheckpointFile.objects.values("blob_id")
    with transaction.atomic():
        # Locked and skipped when locked: a shard registering one of them again holds its row.
        orphans = list(XetFile.objects.select_for_update(skip_locked=True)
                       .exclude(pk__in=HubUpload.objects.filter(xet_file__isnull=False)
                                .values("xet_file"))
                       .exclude(sha256__in=kept, rebuilt_at__isnull=False)
                       .values_list("pk", flat=True)[:COLLECT_BATCH])
        _, by_model = XetFile.objects.filter(pk__in=orphans).delete()
        forgotten_files = by_model.get(XetFile._meta.label, 0)
    dropped = 0
    # Every candidate, not the first COLLECT_BATCH: a xorb only partly in committed files stays
    # a candidate, and a slice would look at the same ones on every pass.
    candidates = (Xorb.objects.filter(bytes_dropped_at__isnull=True,
                                      created_at__lt=now - COVERED_XORB_BYTES_KEPT,
                                      terms__file__rebuilt_at__isnull=False)
                  .distinct().order_by("hash").defer("chunk_table"))
    for xorb in candidates.iterator(chunk_size=COLLECT_BATCH):
        if _covered(xorb.chunk_count, covers(xorb)):
            updated = Xorb.objects.filter(pk=xorb.pk, bytes_dropped_at__isnull=True).update(
                bytes_dropped_at=now)
            if updated:
                blobstore.blob_storage().delete(xorb_name(xorb.hash))
                dropped += 1
    deleted = 0
    for xorb in Xorb.objects.filter(last_used_at__lt=now - UNUSED_XORB_KEPT,
                                    terms__isnull=True)[:COLLECT_BATCH]:
        try:
            with transaction.atomic():
                gone, _ = Xorb.objects.filter(pk=xorb.pk, terms__isnull=True).delete()
        except IntegrityError:
            continue  # a shard used it just now: it stays
        if gone:
            if xorb.bytes_dropped_at is None:
                blobstore.blob_storage().delete(xorb_name(xorb.hash))
            deleted += 1
    return {"files": forgotten_files, "xorbs_dropped": dropped, "xorbs_deleted": deleted}
