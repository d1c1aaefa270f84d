"""Hand-made Xet objects for the CAS tests: a xorb (uncompressed or LZ4 chunks) and an upload
shard for files made of its chunks, built from the protocol specification with Stagegate's own
hash functions, so a test can send exactly the lie it wants to see refused."""

from __future__ import annotations

import hashlib
import struct

import lz4.frame

from models.xet import formats
from models.xet.hashing import chunk_hash, file_hash, hash_to_hex, merkle_root, verification_hash


def split(data: bytes, size: int = 16 * 1024) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def xorb(chunks: list[bytes], *, compress: bool = False) -> tuple[str, bytes]:
    """(xorb hash string, serialized xorb without footer, as hf_xet sends it)."""
    body = bytearray()
    for chunk in chunks:
        payload, scheme = (lz4.frame.compress(chunk), 1) if compress else (chunk, 0)
        body += bytes([0]) + len(payload).to_bytes(3, "little") + bytes([scheme]) \
            + len(chunk).to_bytes(3, "little") + payload
    root = merkle_root([(chunk_hash(c), len(c)) for c in chunks])
    return hash_to_hex(root), bytes(body)


def _xet_hash_of_hex(hex_sha: str) -> bytes:
    """The metadata extension stores a sha256 as a Xet hash value (see store._sha256_hex)."""
    from models.xet.hashing import hex_to_hash

    return hex_to_hash(hex_sha)


def shard(xorb_hex: str, chunks: list[bytes], files: list[tuple[int, int]], *,
          sha256_of=None, bad_verification: bool = False, file_hash_of=None) -> bytes:
    """An upload shard (no footer) registering one file per (start, end) chunk range of the
    xorb, and listing the xorb itself."""
    return shard_of([[(xorb_hex, chunks, start, end)] for start, end in files],
                    [(xorb_hex, chunks)], sha256_of=sha256_of,
                    bad_verification=bad_verification, file_hash_of=file_hash_of)


def shard_of(files, xorbs, *, sha256_of=None, bad_verification: bool = False,
             file_hash_of=None) -> bytes:
    """An upload shard (no footer) registering files of any number of terms, each term a
    (xorb hash, that xorb's chunks, start, end), and listing `xorbs` ((hash, chunks) each)."""
    from models.xet.hashing import hex_to_hash

    out = bytearray(formats.SHARD_HEADER_TAG + struct.pack("<QQ", 2, 0))
    for terms in files:
        parts = [(hex_to_hash(x), chunks[start:end], start, end) for x, chunks, start, end in terms]
        pieces = [c for _, used, _, _ in parts for c in used]
        data = b"".join(pieces)
        fh = file_hash([(chunk_hash(c), len(c)) for c in pieces])
        if file_hash_of:
            fh = file_hash_of(terms[0][2], terms[-1][3], fh)
        flags = formats.FLAG_VERIFICATION | formats.FLAG_METADATA_EXT
        out += fh + struct.pack("<II", flags, len(parts)) + bytes(8)
        for xorb_raw, used, start, end in parts:
            out += xorb_raw + struct.pack("<IIII", 0, sum(map(len, used)), start, end)
        for _, used, _, _ in parts:
            proof = verification_hash([chunk_hash(c) for c in used])
            out += (bytes(32) if bad_verification else proof) + bytes(16)
        sha = sha256_of(data) if sha256_of else hashlib.sha256(data).hexdigest()
        out += _xet_hash_of_hex(sha) + bytes(16)
    out += formats.BOOKEND
    for xorb_hex, chunks in xorbs:
        out += hex_to_hash(xorb_hex) + struct.pack("<IIII", 0, len(chunks),
                                                   sum(map(len, chunks)), 0)
        position = 0
        for c in chunks:
            out += chunk_hash(c) + struct.pack("<IIII", position, len(c), 0, 0)
            position += len(c)
    out += formats.BOOKEND
    return bytes(out)
