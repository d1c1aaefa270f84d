"""A strict reading of a ZIP archive's structure, for comparing against the loaders' readers.

ZIP has two sources of truth (local headers and the central directory) and readers disagree
about which wins, how duplicates resolve, how names compare and whether CRCs are checked.
PyTorch's miniz looks names up case-insensitively and may pick either of two duplicates;
Python's zipfile takes the last duplicate and checks CRCs. An attacker uses such a gap to show
a scanner one data.pkl and the loader another. This parser accepts only archives in which there
is no gap to exploit: one end-of-central-directory record exactly at the end, a central
directory that matches the local headers entry for entry, members that tile the file with
nothing hidden between them, unique names (case-insensitively), no encryption, no flags
beyond "data descriptor" and "UTF-8 names". Everything else is a finding, never a guess.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

EOCD = b"PK\x05\x06"
ZIP64_EOCD = b"PK\x06\x06"
ZIP64_LOCATOR = b"PK\x06\x07"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
DESCRIPTOR = b"PK\x07\x08"
ALLOWED_FLAGS = 0x0008 | 0x0800  # data descriptor follows; names are UTF-8
MAX_ENTRIES = 1_000_000
MAX_CENTRAL_DIRECTORY = 512 * 1024 * 1024


class ZipProblem(ValueError):
    """The archive's structure is ambiguous or broken; the message says how."""


@dataclass
class Entry:
    name: str
    raw_name: bytes
    header_offset: int
    data_offset: int
    compressed_size: int
    size: int
    method: int
    flags: int
    crc: int
    end: int  # first byte after the data (and its descriptor)


@dataclass
class ZipLayout:
    entries: list[Entry]
    central_offset: int
    central_size: int
    file_size: int


def read_layout(stream: BinaryIO, file_size: int, *, allow_compression: bool) -> ZipLayout:
    stream.seek(0)
    if stream.read(4) != LOCAL:
        raise ZipProblem("the file does not start with a local file header")
    if file_size < 22:
        raise ZipProblem("too short for an end-of-central-directory record")
    stream.seek(file_size - 22)
    eocd = stream.read(22)
    if eocd[:4] != EOCD:
        raise ZipProblem("the end-of-central-directory record is not at the end of the file "
                         "(a trailing comment or appended data); readers disagree on where the "
                         "archive ends")
    (_, disk, cd_disk, count_disk, count, cd_size, cd_offset,
     comment_len) = struct.unpack("<IHHHHIIH", eocd)
    if comment_len:
        raise ZipProblem("the archive has a comment")
    if disk or cd_disk or count_disk != count:
        raise ZipProblem("the archive claims to span several disks")
    end_of_central = file_size - 22
    if 0xFFFF in (count, count_disk) or 0xFFFFFFFF in (cd_size, cd_offset) or \
            _has_zip64_locator(stream, file_size):
        count, cd_size, cd_offset, end_of_central = _zip64_end(stream, file_size, count,
                                                               cd_size, cd_offset)
    if count > MAX_ENTRIES or cd_size > MAX_CENTRAL_DIRECTORY:
        raise ZipProblem(f"the central directory is implausibly large ({count} entries)")
    if cd_offset + cd_size != end_of_central:
        raise ZipProblem("the central directory does not end where the end record begins; "
                         "something is hidden between them")
    stream.seek(cd_offset)
    central = stream.read(cd_size)
    if len(central) != cd_size:
        raise ZipProblem("the central directory runs past the end of the file")
    entries = _central_entries(central, count)
    _check_names(entries)
    position = 0
    for entry in entries:
        if entry.header_offset != position:
            raise ZipProblem(f"member `{entry.name}` does not start where the previous one ends "
                             f"(offset {entry.header_offset}, expected {position}); overlapping "
                             "or hidden data")
        _check_local(stream, entry, allow_compression)
        position = entry.end
    if position != cd_offset:
        raise ZipProblem(f"{cd_offset - position} bytes between the last member and the "
                         "central directory belong to no member")
    return ZipLayout(entries, cd_offset, cd_size, file_size)


def _has_zip64_locator(stream: BinaryIO, file_size: int) -> bool:
    if file_size < 42:
        return False
    stream.seek(file_size - 42)
    return stream.read(4) == ZIP64_LOCATOR


def _zip64_end(stream, file_size, count, cd_size, cd_offset):
    if file_size < 22 + 20 + 56:
        raise ZipProblem("zip64 fields are set but there is no zip64 end record")
    stream.seek(file_size - 42)
    locator = stream.read(20)
    sig, disk, record_offset, disks = struct.unpack("<IIQI", locator)
    if locator[:4] != ZIP64_LOCATOR or disk != 0 or disks != 1:
        raise ZipProblem("the zip64 end-of-central-directory locator is missing or malformed")
    if record_offset != file_size - 42 - 56:
        raise ZipProblem("the zip64 end record is not right before its locator")
    stream.seek(record_offset)
    record = stream.read(56)
    (sig, size, _, _, disk, cd_disk, count_disk, count64, size64,
     offset64) = struct.unpack("<IQHHIIQQQQ", record)
    if record[:4] != ZIP64_EOCD or size != 44 or disk or cd_disk or count_disk != count64:
        raise ZipProblem("the zip64 end-of-central-directory record is malformed")
    for small, big in ((count, count64), (cd_size, size64), (cd_offset, offset64)):
        if small not in (big, 0xFFFF, 0xFFFFFFFF):
            raise ZipProblem("the zip64 end record and the classic end record disagree")
    return count64, size64, offset64, record_offset


def _central_entries(central: bytes, count: int) -> list[Entry]:
    entries = []
    at = 0
    for _ in range(count):
        if central[at:at + 4] != CENTRAL:
            raise ZipProblem("the central directory holds fewer entries than the end record says")
        (_, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
         disk, _, _, header_offset) = struct.unpack("<IHHHHHHIIIHHHHHII", central[at:at + 46])
        raw_name = central[at + 46:at + 46 + name_len]
        extra = central[at + 46 + name_len:at + 46 + name_len + extra_len]
        if len(raw_name) != name_len or len(extra) != extra_len:
            raise ZipProblem("a central directory entry runs past the directory")
        at += 46 + name_len + extra_len + comment_len
        usize, csize, header_offset = _zip64_extra(extra, usize, csize, header_offset)
        if disk:
            raise ZipProblem("a member claims to live on another disk")
        name = _decode_name(raw_name, flags)
        entries.append(Entry(name, raw_name, header_offset, 0, csize, usize, method, flags, crc,
                             0))
    if at != len(central):
        raise ZipProblem("the central directory holds more entries than the end record says")
    return entries


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack("<HH", extra[at:at + 4])
        body = extra[at + 4:at + 4 + size]
        if tag == 1:
            values = list(struct.unpack(f"<{len(body) // 8}Q", body[:len(body) // 8 * 8]))
            if usize == 0xFFFFFFFF:
                usize = values.pop(0) if values else usize
            if csize == 0xFFFFFFFF:
                csize = values.pop(0) if values else csize
            if offset == 0xFFFFFFFF:
                offset = values.pop(0) if values else offset
        at += 4 + size
    if 0xFFFFFFFF in (usize, csize, offset):
        raise ZipProblem("a member's zip64 sizes are missing")
    return usize, csize, offset


def _decode_name(raw: bytes, flags: int) -> str:
    # Without the UTF-8 flag Python reads names as cp437 and miniz as raw bytes: only ASCII
    # names read the same in both.
    if not flags & 0x0800 and any(b > 0x7F for b in raw):
        raise ZipProblem(f"member name {raw[:60]!r} is not ASCII and not marked UTF-8; "
                         "readers decode it differently")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ZipProblem(f"member name {raw[:60]!r} is not valid UTF-8") from None
    if "\0" in name or "\\" in name or name.startswith("/") or ".." in name.split("/"):
        raise ZipProblem(f"member name {name[:60]!r} contains NUL, a backslash, an absolute "
                         "path or '..'")
    return name


def _check_names(entries: list[Entry]) -> None:
    seen: dict[str, str] = {}
    for entry in entries:
        key = entry.name.casefold()
        if key in seen:
            if seen[key] == entry.name:
                raise ZipProblem(f"archive has two entries named `{entry.name}`")
            raise ZipProblem(f"entries `{seen[key]}` and `{entry.name}` differ only by case; "
                             "PyTorch's reader finds either one under both names")
        seen[key] = entry.name


def _check_local(stream: BinaryIO, entry: Entry, allow_compression: bool) -> None:
    stream.seek(entry.header_offset)
    header = stream.read(30)
    if len(header) != 30 or header[:4] != LOCAL:
        raise ZipProblem(f"member `{entry.name}`: no local header where the central directory "
                         "points")
    (_, _, flags, method, _, _, crc, csize, usize, name_len,
     extra_len) = struct.unpack("<IHHHHHIIIHH", header)
    raw_name = stream.read(name_len)
    stream.read(extra_len)
    if raw_name != entry.raw_name:
        raise ZipProblem(f"member `{entry.name}`: the local header names it "
                         f"{raw_name[:60]!r}; readers that trust one or the other disagree")
    if flags != entry.flags or method != entry.method:
        raise ZipProblem(f"member `{entry.name}`: flags or compression differ between the local "
                         "header and the central directory")
    if entry.flags & ~ALLOWED_FLAGS:
        raise ZipProblem(f"member `{entry.name}` has flags 0x{entry.flags:04x} (encryption or "
                         "other features loaders treat differently)")
    if method == 0:
        if entry.compressed_size != entry.size:
            raise ZipProblem(f"member `{entry.name}` is stored but its two sizes differ")
    elif not (allow_compression and method == 8):
        raise ZipProblem(f"member `{entry.name}` uses compression method {method}; torch.save "
                         "never compresses")
    entry.data_offset = entry.header_offset + 30 + name_len + extra_len
    data_end = entry.data_offset + entry.compressed_size
    if flags & 0x0008:
        entry.end = _check_descriptor(stream, entry, data_end, (crc, csize, usize))
    else:
        if (crc, csize, usize) != (entry.crc, entry.compressed_size & 0xFFFFFFFF,
                                   entry.size & 0xFFFFFFFF) and \
                (csize, usize) != (0xFFFFFFFF, 0xFFFFFFFF):
            raise ZipProblem(f"member `{entry.name}`: CRC or sizes differ between the local "
                             "header and the central directory")
        entry.end = data_end


def _check_descriptor(stream: BinaryIO, entry: Entry, data_end: int, local) -> int:
    if any(local) and local != (entry.crc, entry.compressed_size, entry.size):
        raise ZipProblem(f"member `{entry.name}`: the local header's CRC and sizes are set and "
                         "differ from the central directory")
    stream.seek(data_end)
    head = stream.read(24)
    body = head[4:] if head[:4] == DESCRIPTOR else head
    used = 4 if head[:4] == DESCRIPTOR else 0
    crc, small_c, small_u = struct.unpack("<III", body[:12]) if len(body) >= 12 else (None,) * 3
    if (crc, small_c, small_u) == (entry.crc, entry.compressed_size, entry.size):
        return data_end + used + 12
    if len(body) >= 20:
        crc, big_c, big_u = struct.unpack("<IQQ", body[:20])
        if (crc, big_c, big_u) == (entry.crc, entry.compressed_size, entry.size):
            return data_end + used + 20
    raise ZipProblem(f"member `{entry.name}`: its data descriptor does not match the central "
                     "directory")
