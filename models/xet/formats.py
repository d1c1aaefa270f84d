"""The Xet wire formats Stagegate reads and writes: xorbs (compressed chunk sequences) and shards
(file reconstructions and xorb listings), per the protocol specification.

Everything that arrives is untrusted: every length is checked against the bytes that are really
there before it is used, a chunk may not decompress to more than it declares, and counts are
capped, so a hostile body costs at most its own size to refuse.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import lz4.frame

from models.xet.hashing import HASH_SIZE

MAX_CHUNK_SIZE = 128 * 1024
MAX_XORB_SIZE = 64 * 1024 * 1024 + 1024 * 1024  # 64 MiB of chunks plus its footer
MAX_XORB_CHUNKS = 65536
MAX_SHARD_SIZE = 64 * 1024 * 1024 + 1024 * 1024
CHUNK_HEADER = 8
XORB_FOOTER_IDENT = b"XETBLOB"

SHARD_HEADER_TAG = bytes([72, 70, 82, 101, 112, 111, 77, 101, 116, 97, 68, 97, 116, 97, 0, 85, 105,
                          103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169])
SHARD_HEADER_VERSION = 2
SHARD_FOOTER_VERSION = 1
SHARD_FOOTER_SIZE = 200
ENTRY = 48
BOOKEND = b"\xff" * 32 + bytes(16)
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30


class XetFormatError(ValueError):
    """A xorb or shard that is not what the protocol says; the message says what is wrong."""


# --- xorbs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class XorbChunk:
    offset: int          # where its header starts in the serialized xorb
    length: int          # header + compressed bytes
    unpacked: int
    data: bytes          # the chunk's bytes, decompressed


def _regroup_bg4(grouped: bytes) -> bytes:
    """Undo byte grouping: the data was split into 4 groups by position mod 4 (the first
    len % 4 groups one byte longer) and the groups concatenated."""
    n = len(grouped)
    q, r = divmod(n, 4)
    out = bytearray(n)
    start = 0
    for i in range(4):
        size = q + (1 if i < r else 0)
        out[i::4] = grouped[start:start + size]
        start += size
    return bytes(out)


def _decompress(scheme: int, payload: bytes, unpacked: int) -> bytes:
    if scheme == 0:
        data = payload
    elif scheme in (1, 2):
        decompressor = lz4.frame.LZ4FrameDecompressor()
        try:
            data = decompressor.decompress(payload, max_length=unpacked)
        except RuntimeError as exc:
            raise XetFormatError(f"a chunk's LZ4 data is corrupt ({exc})") from None
        if not decompressor.eof:
            raise XetFormatError("a chunk decompresses to more bytes than its header declares")
        if scheme == 2:
            data = _regroup_bg4(data)
    else:
        raise XetFormatError(f"unknown chunk compression scheme {scheme}")
    if len(data) != unpacked:
        raise XetFormatError(f"a chunk decompresses to {len(data)} bytes, its header says "
                             f"{unpacked}")
    return data


def read_chunk(stream: BinaryIO, offset: int, limit: int) -> XorbChunk:
    """The chunk whose header starts at `offset`; `limit` is where the chunk region ends."""
    header = stream.read(CHUNK_HEADER)
    if len(header) != CHUNK_HEADER or offset + CHUNK_HEADER > limit:
        raise XetFormatError(f"truncated chunk header at byte {offset}")
    version, scheme = header[0], header[4]
    compressed = int.from_bytes(header[1:4], "little")
    unpacked = int.from_bytes(header[5:8], "little")
    if version != 0:
        raise XetFormatError(f"chunk at byte {offset} has version {version}, expected 0")
    if unpacked > MAX_CHUNK_SIZE or unpacked == 0:
        raise XetFormatError(f"chunk at byte {offset} declares {unpacked} bytes (1 to "
                             f"{MAX_CHUNK_SIZE} allowed)")
    if offset + CHUNK_HEADER + compressed > limit:
        raise XetFormatError(f"chunk at byte {offset} runs past the end of the chunk data")
    payload = stream.read(compressed)
    if len(payload) != compressed:
        raise XetFormatError(f"truncated chunk data at byte {offset}")
    return XorbChunk(offset=offset, length=CHUNK_HEADER + compressed, unpacked=unpacked,
                     data=_decompress(scheme, payload, unpacked))


@dataclass
class XorbFooter:
    xorb_hash: bytes | None = None


def iter_xorb_chunks(stream: BinaryIO, size: int, footer: XorbFooter) -> Iterator[XorbChunk]:
    """The chunks of a serialized xorb, in order. A xorb is its chunk sequence, optionally
    followed by its metadata footer (which starts with XETBLOB, where a chunk header would start
    with version 0); the footer's xorb hash is recorded in `footer`."""
    if size <= 0 or size > MAX_XORB_SIZE:
        raise XetFormatError(f"a xorb of {size} bytes is empty or larger than 64 MiB")
    stream.seek(0)
    offset, count = 0, 0
    while offset < size:
        head = stream.read(len(XORB_FOOTER_IDENT) + 1 + HASH_SIZE)
        if head[:len(XORB_FOOTER_IDENT)] == XORB_FOOTER_IDENT:
            if len(head) < len(XORB_FOOTER_IDENT) + 1 + HASH_SIZE:
                raise XetFormatError("the xorb's footer is truncated")
            footer.xorb_hash = head[len(XORB_FOOTER_IDENT) + 1:]
            break
        stream.seek(offset)
        chunk = read_chunk(stream, offset, size)
        count += 1
        if count > MAX_XORB_CHUNKS:
            raise XetFormatError(f"a xorb may hold at most {MAX_XORB_CHUNKS} chunks")
        yield chunk
        offset += chunk.length
    if count == 0:
        raise XetFormatError("the xorb holds no chunks")


# The chunk table Stagegate keeps per xorb: hash, header offset, unpacked size.
_TABLE_ENTRY = struct.Struct("<32sII")


def pack_chunk_table(entries: list[tuple[bytes, int, int]]) -> bytes:
    return b"".join(_TABLE_ENTRY.pack(h, offset, unpacked) for h, offset, unpacked in entries)


def unpack_chunk_table(table: bytes) -> list[tuple[bytes, int, int]]:
    return list(_TABLE_ENTRY.iter_unpack(table))


# --- shards -----------------------------------------------------------------------------------

@dataclass
class ShardTerm:
    xorb: bytes
    unpacked: int
    start: int
    end: int


@dataclass
class ShardFile:
    file_hash: bytes
    terms: list[ShardTerm] = field(default_factory=list)
    verification: list[bytes] = field(default_factory=list)
    sha256: bytes | None = None


@dataclass
class ShardXorb:
    xorb: bytes
    chunk_count: int
    unpacked: int
    on_disk: int


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise XetFormatError(f"the shard ends inside {what}")
        piece = self.data[self.pos:self.pos + n]
        self.pos += n
        return piece


def parse_upload_shard(data: bytes) -> tuple[list[ShardFile], list[ShardXorb]]:
    """The files and new xorbs a client registers with POST /v1/shards (footer optional)."""
    if len(data) > MAX_SHARD_SIZE:
        raise XetFormatError("a shard may be at most 64 MiB")
    reader = _Reader(data)
    tag = reader.take(32, "the header")
    version, footer_size = struct.unpack("<QQ", reader.take(16, "the header"))
    if tag != SHARD_HEADER_TAG:
        raise XetFormatError("not a shard: the header tag is wrong")
    if version != SHARD_HEADER_VERSION:
        raise XetFormatError(f"shard header version {version}, expected {SHARD_HEADER_VERSION}")
    files: list[ShardFile] = []
    while True:
        raw = reader.take(ENTRY, "the file info section")
        if raw == BOOKEND:
            break
        file_hash, flags, count = raw[:32], *struct.unpack("<II", raw[32:40])
        if count == 0:
            raise XetFormatError("a file entry with no terms")
        entry = ShardFile(file_hash=file_hash)
        for _ in range(count):
            term = reader.take(ENTRY, "a file's terms")
            _flags, unpacked, start, end = struct.unpack("<IIII", term[32:48])
            if end <= start:
                raise XetFormatError("a term's chunk range is empty or reversed")
            entry.terms.append(ShardTerm(xorb=term[:32], unpacked=unpacked, start=start, end=end))
        if flags & FLAG_VERIFICATION:
            entry.verification = [reader.take(ENTRY, "verification entries")[:32]
                                  for _ in range(count)]
        if flags & FLAG_METADATA_EXT:
            entry.sha256 = reader.take(ENTRY, "the metadata extension")[:32]
        files.append(entry)
    xorbs: list[ShardXorb] = []
    while True:
        raw = reader.take(ENTRY, "the xorb info section")
        if raw == BOOKEND:
            break
        _flags, count, unpacked, on_disk = struct.unpack("<IIII", raw[32:48])
        reader.take(ENTRY * count, "a xorb's chunk list")
        xorbs.append(ShardXorb(xorb=raw[:32], chunk_count=count, unpacked=unpacked,
                               on_disk=on_disk))
    if footer_size and reader.pos + footer_size != len(data):
        raise XetFormatError("the shard's footer size does not match its length")
    if not footer_size and reader.pos != len(data):
        raise XetFormatError("bytes after the shard's last section")
    return files, xorbs


@dataclass
class DedupXorb:
    xorb: bytes
    chunks: list[tuple[bytes, int]]   # (chunk hash as listed, unpacked size), in xorb order
    on_disk: int


def serialize_dedup_shard(xorbs: list[DedupXorb], *, hmac_key: bytes, created: int,
                          expiry: int) -> bytes:
    """A shard answering a global-dedup query: no files, the given xorbs, and the footer with
    lookup tables (the client files the shard in its cache and searches it by them)."""
    out = bytearray(SHARD_HEADER_TAG + struct.pack("<QQ", SHARD_HEADER_VERSION, SHARD_FOOTER_SIZE))
    file_info_offset = len(out)
    out += BOOKEND
    xorb_info_offset = len(out)
    xorb_lookup: list[tuple[int, int]] = []
    chunk_lookup: list[tuple[int, int, int]] = []
    index = 0
    stored = 0
    for entry in sorted(xorbs, key=lambda x: struct.unpack("<4Q", x.xorb)):
        unpacked_total = sum(size for _, size in entry.chunks)
        stored += unpacked_total
        xorb_lookup.append((struct.unpack("<Q", entry.xorb[:8])[0], index))
        out += entry.xorb + struct.pack("<IIII", 0, len(entry.chunks), unpacked_total,
                                        entry.on_disk)
        position = 0
        for i, (chunk, size) in enumerate(entry.chunks):
            out += chunk + struct.pack("<IIII", position, size, 0, 0)
            chunk_lookup.append((struct.unpack("<Q", chunk[:8])[0], index, i))
            position += size
        index += 1 + len(entry.chunks)
    out += BOOKEND
    file_lookup_offset = len(out)
    xorb_lookup_offset = len(out)
    for key, value in sorted(xorb_lookup):
        out += struct.pack("<QI", key, value)
    chunk_lookup_offset = len(out)
    for key, xorb_index, chunk_index in sorted(chunk_lookup):
        out += struct.pack("<QII", key, xorb_index, chunk_index)
    footer_offset = len(out)
    out += struct.pack("<9Q", SHARD_FOOTER_VERSION, file_info_offset, xorb_info_offset,
                       file_lookup_offset, 0, xorb_lookup_offset, len(xorb_lookup),
                       chunk_lookup_offset, len(chunk_lookup))
    out += hmac_key
    out += struct.pack("<QQ", created, expiry)
    out += bytes(48)
    out += struct.pack("<QQQQ", sum(x.on_disk for x in xorbs), stored, stored, footer_offset)
    assert len(out) - footer_offset == SHARD_FOOTER_SIZE
    return bytes(out)
