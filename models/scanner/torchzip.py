"""torch.save's zip format (the default since PyTorch 1.6).

torch.load finds the archive's folder from the first entry's name, reads `<folder>/data.pkl`
with PyTorch's own zip reader (miniz) and unpickles it; tensor bytes come from
`<folder>/data/<key>` through persistent ids. The scan reads the structure three ways (strictly
here, with Python's zipfile, with torch's PyTorchFileReader), refuses any disagreement, accounts
for every member, and emulates data.pkl. Tensor data is never read.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from typing import BinaryIO

from models.scanner import tensors as tensor_census
from models.scanner.machine import LoaderContext, PickleRun
from models.scanner.session import Session
from models.scanner.torchfmt import StorageTable, zip_persistent_load
from models.scanner.zipfiles import Entry, ZipLayout, ZipProblem, read_layout

SMALL_MEMBERS = {"version": rb"[0-9]{1,6}\n?", ".data/version": rb"[0-9]{1,6}\n?",
                 ".format_version": rb"[0-9]{1,6}", ".storage_alignment": rb"[0-9]{1,6}",
                 "byteorder": rb"little|big", ".data/serialization_id": rb"[0-9]{1,64}"}
TORCHSCRIPT_MARKERS = ("constants.pkl", "code/", "constants/", "extra/", ".data/ts_code")
MAX_LOOSE = 64 * 1024 * 1024


def scan(stream: BinaryIO, size: int, session: Session) -> list | None:
    """Scan a torch zip archive; returns the tensors when nothing was found, else None."""
    try:
        layout = read_layout(stream, size, allow_compression=False)
    except ZipProblem as exc:
        session.unknown("zip-structure", f"archive structure: {exc}")
        _scan_every_pickle_member(stream, session)
        return None
    session.bytes_scanned += layout.central_size + 30 * len(layout.entries)
    prefix = layout.entries[0].name.split("/", 1)[0] + "/"
    if "/" not in layout.entries[0].name:
        session.unknown("zip-structure", f"the first entry `{layout.entries[0].name}` is not in "
                        "a folder; torch.load refuses the archive")
        _scan_every_pickle_member(stream, session)
        return None
    outside = [e.name for e in layout.entries if not e.name.startswith(prefix)]
    if outside:
        session.unknown("zip-structure", f"entry `{outside[0]}` is outside the archive folder "
                        f"`{prefix}`; torch.load never reads it but other tools may")
        _scan_every_pickle_member(stream, session)
        return None
    members = {e.name[len(prefix):]: e for e in layout.entries}
    if not _readers_agree(stream, layout, members, session):
        _scan_every_pickle_member(stream, session)
        return None
    return _scan_members(stream, members, prefix, session)


def _readers_agree(stream, layout: ZipLayout, members: dict[str, Entry], session) -> bool:
    try:
        infos = zipfile.ZipFile(stream).infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        session.unknown("zip-differential", f"Python's zipfile cannot read the archive ({exc})")
        return False
    mine = [(e.name, e.header_offset, e.size, e.method, e.crc) for e in layout.entries]
    theirs = [(i.filename, i.header_offset, i.file_size, i.compress_type, i.CRC) for i in infos]
    if mine != theirs:
        session.unknown("zip-differential", "Python's zipfile lists the archive's members "
                        "differently from its own directory")
        return False
    try:
        import torch
        stream.seek(0)  # the reader takes the archive to start at the current position
        reader = torch._C.PyTorchFileReader(stream)
        records = reader.get_all_records()
        placed = {name: (reader.get_record_offset(name), reader.get_record_size(name))
                  for name in members}
    except Exception as exc:  # torch raises RuntimeError with miniz's message
        session.unknown("zip-differential", f"PyTorch's zip reader cannot read the archive "
                        f"({str(exc).splitlines()[0][:200]})")
        return False
    if records != list(members):
        session.unknown("zip-differential", "PyTorch's zip reader lists different members "
                        f"({len(records)} records for {len(members)} entries)")
        return False
    for name, entry in members.items():
        if placed[name] != (entry.data_offset, entry.size):
            session.unknown("zip-differential", f"PyTorch's zip reader finds `{name}` at a "
                            "different place or size than the archive directory says",
                            member=entry.name)
            return False
    return True


def _scan_members(stream, members: dict[str, Entry], prefix: str, session) -> list | None:
    torchscript = [n for n in members if n.startswith(TORCHSCRIPT_MARKERS)]
    if torchscript:
        session.unknown("torchscript", f"TorchScript archive (`{prefix}{torchscript[0]}`): "
                        "torch.load hands it to torch.jit.load, which runs its code; it is not a "
                        "weights file")
    if "data.pkl" not in members:
        session.unknown("zip-structure", f"no `{prefix}data.pkl`: this is not a torch.save "
                        "archive, and torch.load will fail on it")
    storages, others = {}, []
    for name, entry in members.items():
        if name == "data.pkl":
            continue
        if name.startswith("data/") and name[5:].isdigit():
            storages[name[5:]] = entry
        elif name in SMALL_MEMBERS:
            _check_small_member(stream, entry, name, session)
        elif not name.startswith(TORCHSCRIPT_MARKERS):
            others.append(entry)
    for entry in others:
        kind = "a pickle" if _looks_like_pickle(stream, entry) else "data"
        session.unknown("unexpected-member", f"member `{entry.name}` ({kind}) is not part of a "
                        "torch.save archive", member=entry.name)
        if kind == "a pickle":
            _scan_loose_pickle(stream, entry, session)
    if "data.pkl" not in members:
        return None
    table = StorageTable()
    run = _scan_data_pickle(stream, members["data.pkl"], table, session)
    if run is None:
        return None
    _check_storages(table, storages, prefix, session)
    if session.findings or not run.complete:
        return None
    try:
        return tensor_census.collect(run.value)
    except tensor_census.TooLarge as exc:
        session.unknown("scan-limit", str(exc))
        return None


def _check_small_member(stream, entry: Entry, name: str, session) -> None:
    if entry.size > 128:
        session.unknown("unexpected-member", f"`{entry.name}` is {entry.size} bytes; torch "
                        "writes a few characters there", member=entry.name)
        return
    stream.seek(entry.data_offset)
    data = stream.read(entry.size)
    session.bytes_scanned += len(data)
    if zlib.crc32(data) != entry.crc:
        session.unknown("zip-crc", f"`{entry.name}` does not match its CRC", member=entry.name)
    elif not re.fullmatch(SMALL_MEMBERS[name], data):
        session.unknown("unexpected-member", f"`{entry.name}` holds {data[:40]!r}, not what "
                        "torch writes there", member=entry.name)


def _scan_data_pickle(stream, entry: Entry, table: StorageTable, session) -> PickleRun | None:
    if session.too_big(entry.size, entry.name, entry.name):
        return None
    crc = 0
    stream.seek(entry.data_offset)
    left = entry.size
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    if crc != entry.crc:
        session.unknown("zip-crc", f"`{entry.name}` does not match its CRC: Python's zipfile "
                        "refuses it while PyTorch's reader may not", member=entry.name)
    reader = session.reader(stream, entry.data_offset, entry.size, c_buffered=True)
    context = LoaderContext(encoding="utf-8", torch=True,
                            persistent_load=zip_persistent_load(table))
    run = session.run_pickle(reader, context, where=entry.name, member=entry.name)
    if run.complete and not reader.at_end():
        session.unknown("trailing-data", f"{reader.remaining} bytes follow the end of the pickle "
                        f"in `{entry.name}`; torch.load ignores them, other readers may not",
                        member=entry.name, offset=reader.pos)
    return run


def _check_storages(table: StorageTable, storages: dict[str, Entry], prefix: str,
                    session) -> None:
    for key, ref in table.by_key.items():
        entry = storages.get(key)
        if entry is None:
            session.unknown("missing-storage", f"the pickle refers to storage `{prefix}data/{key}`"
                            ", which the archive does not have")
        elif entry.size != table.nbytes(key):
            session.unknown("storage-size", f"`{entry.name}` holds {entry.size} bytes but the "
                            f"pickle says {table.nbytes(key)}", member=entry.name)
    for key, entry in storages.items():
        if key not in table.by_key:
            session.unknown("unexpected-member", f"`{entry.name}` is not used by any tensor",
                            member=entry.name)


def _looks_like_pickle(stream, entry: Entry) -> bool:
    stream.seek(entry.data_offset)
    head = stream.read(min(entry.size, 2))
    return entry.name.endswith((".pkl", ".pickle")) or (len(head) == 2 and head[0] == 0x80
                                                        and head[1] <= 5)


def _scan_loose_pickle(stream, entry: Entry, session) -> None:
    if session.too_big(entry.size, entry.name, entry.name):
        return
    reader = session.reader(stream, entry.data_offset, entry.size)
    session.run_pickle(reader, LoaderContext(encoding="utf-8", torch=True),
                       where=entry.name, member=entry.name)


def _scan_every_pickle_member(stream, session) -> None:
    """After a structural finding the verdict is at least unknown; still emulate every member
    that any reader could take for a pickle (duplicates included), so that a dangerous import
    makes the verdict `unsafe` and the report names it."""
    _scan_what_torch_loads(stream, session)
    try:
        infos = zipfile.ZipFile(stream).infolist()
    except Exception:  # zipfile cannot read it either; the structural finding stands
        return
    script = [i.filename for i in infos if i.filename.partition("/")[2].startswith(
        TORCHSCRIPT_MARKERS)]
    if script:
        session.unknown("torchscript", f"TorchScript archive (`{script[0]}`): torch.load hands "
                        "it to torch.jit.load, which runs its code; it is not a weights file")
    for info in infos[:1000]:
        if re.search(r"(^|/)data/[0-9]+$", info.filename) or info.compress_size > MAX_LOOSE:
            continue
        data = _raw_member(stream, info)
        if data is None or not (info.filename.endswith((".pkl", ".pickle"))
                                or data[:1] == b"\x80"):
            continue
        reader = session.reader(io.BytesIO(data), 0, len(data))
        session.run_pickle(reader, LoaderContext(encoding="utf-8", torch=True),
                           where=info.filename, member=info.filename)


def _scan_what_torch_loads(stream, session) -> None:
    """The data.pkl PyTorch's own reader returns is, by definition, what torch.load runs."""
    try:
        import torch
        stream.seek(0)
        reader = torch._C.PyTorchFileReader(stream)
        if not reader.has_record("data.pkl") or reader.get_record_size("data.pkl") > MAX_LOOSE:
            return
        data = reader.get_record("data.pkl")
    except Exception:  # torch cannot read it: torch.load fails before unpickling anything
        return
    session.run_pickle(session.reader(io.BytesIO(data), 0, len(data), c_buffered=True),
                       LoaderContext(encoding="utf-8", torch=True),
                       where="data.pkl (as PyTorch's reader returns it)", member="data.pkl")


def _raw_member(stream, info: zipfile.ZipInfo) -> bytes | None:
    """The member's bytes as its own local header places them, CRC unchecked (a CRC trick
    must not hide the pickle from the report)."""
    try:
        stream.seek(info.header_offset)
        header = stream.read(30)
        if header[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        stream.seek(info.header_offset + 30 + name_len + extra_len)
        data = stream.read(info.compress_size)
        if info.compress_type == zipfile.ZIP_DEFLATED:
            data = zlib.decompressobj(-15).decompress(data, MAX_LOOSE)
        elif info.compress_type != zipfile.ZIP_STORED:
            return None
        return data
    except (OSError, zlib.error, struct.error):
        return None
