"""A ZIP writer with every field under the caller's control, for building the archives that
ZIP readers disagree about (duplicate names, lying headers, wrong CRCs, extra directories).

Python's zipfile and PyTorch's writer both refuse to produce these, which is the point.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass


@dataclass
class Member:
    name: str
    data: bytes
    local_name: str | None = None      # name in the local header, if it should differ
    crc: int | None = None             # CRC to record, if it should be wrong
    method: int = 0                    # 0 stored, 8 deflate
    flags: int = 0x0800
    pad_to: int = 64                   # torch aligns data to 64 bytes with an "FB" extra field

    def stored_bytes(self) -> bytes:
        if self.method == 8:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            return compressor.compress(self.data) + compressor.flush()
        return self.data


def local_entries(members: list[Member], start: int = 0) -> tuple[bytes, list]:
    out = bytearray()
    placed = []
    for member in members:
        offset = start + len(out)
        name = (member.local_name or member.name).encode()
        stored = member.stored_bytes()
        crc = zlib.crc32(member.data) if member.crc is None else member.crc
        header_len = 30 + len(name)
        extra = b""
        if member.pad_to:
            pad = (-(offset + header_len + 4)) % member.pad_to
            extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, member.flags, member.method, 0, 0x21,
                           crc, len(stored), len(member.data), len(name), len(extra))
        out += name + extra + stored
        placed.append((member, offset, crc, len(stored)))
    return bytes(out), placed


def central_directory(placed, *, offset_shift: int = 0) -> bytes:
    out = bytearray()
    for member, offset, crc, stored_len in placed:
        name = member.name.encode()
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, member.flags, member.method,
                           0, 0x21, crc, stored_len, len(member.data), len(name), 0, 0, 0, 0, 0,
                           offset - offset_shift)
        out += name
    return bytes(out)


def end_record(count: int, cd_size: int, cd_offset: int, comment: bytes = b"") -> bytes:
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset,
                       len(comment)) + comment


def build(members: list[Member], *, comment: bytes = b"") -> bytes:
    body, placed = local_entries(members)
    cd = central_directory(placed)
    return body + cd + end_record(len(placed), len(cd), len(body), comment)


def torch_members(prefix: str, data_pkl: bytes, storages: dict[str, bytes] | None = None,
                  **data_pkl_options) -> list[Member]:
    """The members torch.save writes, in its order, around the given data.pkl."""
    members = [Member(f"{prefix}/data.pkl", data_pkl, **data_pkl_options),
               Member(f"{prefix}/.format_version", b"1"),
               Member(f"{prefix}/.storage_alignment", b"64"),
               Member(f"{prefix}/byteorder", b"little")]
    for key, raw in (storages or {}).items():
        members.append(Member(f"{prefix}/data/{key}", raw))
    members += [Member(f"{prefix}/version", b"3\n"),
                Member(f"{prefix}/.data/serialization_id", b"1234567890" * 4)]
    return members
