"""Xet hashes: keyed BLAKE3 over chunk data, an aggregated Merkle tree over (hash, size) lists,
term verification hashes, and the string form hashes take in URLs.

A hash is 32 raw bytes. Its string form reads each 8-byte group as a little-endian u64 and
prints the four numbers as 16 hex digits each (the spec's "converting hashes to strings").
"""

from __future__ import annotations

import blake3

DATA_KEY = bytes([102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
                  157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41])
INTERNAL_NODE_KEY = bytes([1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2,
                           230, 93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83,
                           113, 63])
VERIFICATION_KEY = bytes([127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195,
                          243, 164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251,
                          148, 195])
ZERO_KEY = bytes(32)
HASH_SIZE = 32
BRANCHING = 4            # mean branching factor of the aggregated tree
MAX_GROUP = 2 * BRANCHING + 1
GLOBAL_DEDUP_MODULUS = 1024


def chunk_hash(data: bytes) -> bytes:
    return blake3.blake3(data, key=DATA_KEY).digest()


def hash_to_hex(raw: bytes) -> str:
    return "".join(f"{int.from_bytes(raw[i:i + 8], 'little'):016x}" for i in range(0, 32, 8))


def hex_to_hash(text: str) -> bytes:
    """The raw bytes of a hash's string form; ValueError unless it is 64 lowercase hex digits."""
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{text!r} is not a hash (64 lowercase hex digits)")
    return b"".join(int(text[i:i + 16], 16).to_bytes(8, "little") for i in range(0, 64, 16))


def _tail_word(raw: bytes) -> int:
    return int.from_bytes(raw[24:32], "little")


def is_global_dedup_eligible(raw: bytes) -> bool:
    return _tail_word(raw) % GLOBAL_DEDUP_MODULUS == 0


def _merge(group: list[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{hash_to_hex(h)} : {size}\n" for h, size in group)
    return (blake3.blake3(text.encode("ascii"), key=INTERNAL_NODE_KEY).digest(),
            sum(size for _, size in group))


def _next_cut(nodes: list[tuple[bytes, int]], start: int) -> int:
    """End (exclusive) of the group starting at `start`: at least 2 nodes, at most 9, cut after
    the first node from the third on whose hash is 0 mod the branching factor."""
    remaining = len(nodes) - start
    if remaining <= 2:
        return len(nodes)
    end = start + min(MAX_GROUP, remaining)
    for i in range(start + 2, end):
        if _tail_word(nodes[i][0]) % BRANCHING == 0:
            return i + 1
    return end


def merkle_root(chunks: list[tuple[bytes, int]]) -> bytes:
    """The aggregated hash of (chunk hash, size) pairs; the xorb hash of a xorb's chunks."""
    if not chunks:
        return bytes(HASH_SIZE)
    nodes = list(chunks)
    while len(nodes) > 1:
        merged, start = [], 0
        while start < len(nodes):
            end = _next_cut(nodes, start)
            merged.append(_merge(nodes[start:end]))
            start = end
        nodes = merged
    return nodes[0][0]


class MerkleBuilder:
    """merkle_root over a stream of (hash, size) pairs in O(log n) memory: a group's extent is
    decided by its first nine nodes, so each level can merge as soon as nine are waiting."""

    def __init__(self):
        self._levels: list[list[tuple[bytes, int]]] = [[]]
        self._merged_up: list[bool] = [False]

    def add(self, chunk_hash: bytes, size: int) -> None:
        self._push(0, (chunk_hash, size))

    def _push(self, level: int, node: tuple[bytes, int]) -> None:
        if level == len(self._levels):
            self._levels.append([])
            self._merged_up.append(False)
        pending = self._levels[level]
        pending.append(node)
        while len(pending) >= MAX_GROUP:
            end = _next_cut(pending, 0)
            merged = _merge(pending[:end])
            del pending[:end]
            self._merged_up[level] = True
            self._push(level + 1, merged)

    def root(self) -> bytes:
        level = 0
        while True:
            pending = self._levels[level]
            if not self._merged_up[level] and len(pending) <= 1:
                return pending[0][0] if pending else bytes(HASH_SIZE)
            start = 0
            while start < len(pending):
                end = _next_cut(pending, start)
                merged = _merge(pending[start:end])
                start = end
                if level + 1 == len(self._levels):
                    self._levels.append([])
                    self._merged_up.append(False)
                self._levels[level + 1].append(merged)
            pending.clear()
            self._merged_up[level] = True
            level += 1

    def file_hash(self) -> bytes:
        root = self.root()
        return root if root == bytes(HASH_SIZE) else blake3.blake3(root, key=ZERO_KEY).digest()


def file_hash(chunks: list[tuple[bytes, int]]) -> bytes:
    if not chunks:
        return bytes(HASH_SIZE)
    return blake3.blake3(merkle_root(chunks), key=ZERO_KEY).digest()


def verification_hash(chunk_hashes: list[bytes]) -> bytes:
    """What a shard's FileVerificationEntry holds for a term: proof the uploader knows the
    hashes of the chunks it references."""
    return blake3.blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()


def keyed(raw: bytes, key: bytes) -> bytes:
    """A chunk hash as a global-dedup shard lists it: keyed with the response's HMAC key, so the
    answer reveals no chunk hash the asker does not already hold."""
    return blake3.blake3(raw, key=key).digest()
