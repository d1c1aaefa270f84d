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
    from models.xet.hashing import hex_to_hash

    xorb_raw = hex_to_hash(xorb_hex)
    hashes = [chunk_hash(c) for c in chunks]
    out = bytearray(formats.SHARD_HEADER_TAG + struct.pack("<QQ", 2, 0))
    for start, end in files:
        data = b"".join(chunks[start:end])
        fh = file_hash([(h, len(c)) for h, c in zip(hashes[start:end], chunks[start:end])])
        if file_hash_of:
            fh = file_hash_of(start, end, fh)
        flags = formats.FLAG_VERIFICATION | formats.FLAG_METADATA_EXT
        out += fh + struct.pack("<II", flags, 1) + bytes(8)
        out += xorb_raw + struct.pack("<IIII", 0, len(data), start, end)
        proof = verification_hash(hashes[start:end])
        out += (bytes(32) if bad_verification else proof) + bytes(16)
        sha = sha256_of(data) if sha256_of else hashlib.sha256(data).hexdigest()
        out += _xet_hash_of_hex(sha) + bytes(16)
    out += formats.BOOKEND
    out += xorb_raw + struct.pack("<IIII", 0, len(chunks), sum(map(len, chunks)), 0)
    position = 0
    for h, c in zip(hashes, chunks):
        out += h + struct.pack("<IIII", position, len(c), 0, 0)
        position += len(c)
    out += formats.BOOKEND
    return bytes(out)
