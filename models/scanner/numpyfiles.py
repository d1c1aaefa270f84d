"""NumPy .npy and .npz files.

A .npy file is a small text header (a Python dict literal) and raw array bytes; numpy parses the
header with `ast.literal_eval`, so reading it runs no code. An array of dtype `object` is
different: its data section is a pickle that `np.load(allow_pickle=True)` runs. Such files are
`unknown` (their pickle is still emulated, so a dangerous import makes them `unsafe`). A .npz is
a zip of .npy files and gets the same structural checks as any archive; any member that is not
a plain .npy (a pickle, another archive) is a finding.
"""

from __future__ import annotations

import ast
import io
import math
import struct
import zipfile
import zlib
from typing import BinaryIO

from models.scanner.machine import LoaderContext
from models.scanner.result import TensorMeta
from models.scanner.session import Session
from models.scanner.zipfiles import ZipProblem, read_layout

MAGIC = b"\x93NUMPY"
MAX_HEADER = 10_000  # numpy's own default max_header_size
NUMPY_PLAIN = LoaderContext(encoding="ASCII")
_KINDS = {("f", 2): "F16", ("f", 4): "F32", ("f", 8): "F64", ("i", 1): "I8", ("i", 2): "I16",
          ("i", 4): "I32", ("i", 8): "I64", ("u", 1): "U8", ("u", 2): "U16", ("u", 4): "U32",
          ("u", 8): "U64", ("b", 1): "BOOL", ("c", 8): "C64"}


def scan_npy(stream: BinaryIO, size: int, session: Session, *, name: str,
             member: str | None = None) -> TensorMeta | None:
    stream.seek(0)
    prefix = stream.read(10)
    session.bytes_scanned += len(prefix)
    if len(prefix) < 10 or prefix[:6] != MAGIC or prefix[6] not in (1, 2, 3):
        session.unknown("numpy-header", f"`{name}` is not a .npy file numpy can read",
                        member=member)
        return None
    if prefix[6] == 1:
        (length,), start = struct.unpack("<H", prefix[8:10]), 10
    else:
        prefix += stream.read(2)
        (length,), start = struct.unpack("<I", prefix[8:12]), 12
    if length > MAX_HEADER:
        session.unknown("numpy-header", f"`{name}` has a {length}-byte header; numpy refuses "
                        f"headers over {MAX_HEADER} bytes", member=member)
        return None
    raw = stream.read(length)
    session.bytes_scanned += len(raw)
    header = _parse_header(raw, prefix[6])
    if header is None:
        session.unknown("numpy-header", f"`{name}` has a header numpy would not parse",
                        member=member)
        return None
    descr, fortran, shape = header
    import numpy
    try:
        dtype = numpy.lib.format.descr_to_dtype(descr)
    except Exception:
        session.unknown("numpy-header", f"`{name}` has dtype {str(descr)[:60]!r}, which numpy "
                        "does not know", member=member)
        return None
    data_start = start + length
    if dtype.hasobject:
        session.unknown("numpy-object-array", f"`{name}` is an object array: its data is a "
                        "pickle that np.load(allow_pickle=True) would run", member=member)
        reader = session.reader(stream, data_start, size - data_start)
        session.run_pickle(reader, NUMPY_PLAIN, where=name, member=member,
                           offset_base=data_start)
        return None
    expected = math.prod(shape) * dtype.itemsize
    if size - data_start != expected:
        session.unknown("trailing-data", f"`{name}` has {size - data_start} data bytes; its "
                        f"header says {expected}", member=member)
        return None
    key = (dtype.kind, dtype.itemsize)
    if dtype.fields is not None or dtype.subdtype is not None or key not in _KINDS:
        session.unknown("numpy-dtype", f"`{name}` has dtype {dtype}, which has no safetensors "
                        "equivalent", member=member)
        return None
    return TensorMeta(member or "", _KINDS[key], tuple(shape))


def _parse_header(raw: bytes, version: int):
    try:
        text = raw.decode("utf-8" if version == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        return None
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        return None
    if type(header["fortran_order"]) is not bool:
        return None
    return header["descr"], header["fortran_order"], shape


def scan_npz(stream: BinaryIO, size: int, session: Session) -> list[TensorMeta] | None:
    try:
        layout = read_layout(stream, size, allow_compression=True)
    except ZipProblem as exc:
        session.unknown("zip-structure", f"archive structure: {exc}")
        return None
    try:
        listed = [i.filename for i in zipfile.ZipFile(stream).infolist()]
    except Exception as exc:
        listed = [f"unreadable: {exc}"]
    if listed != [e.name for e in layout.entries]:
        session.unknown("zip-differential", "Python's zipfile (which np.load uses) lists the "
                        "members differently from the archive directory")
        return None
    tensors = []
    for entry in layout.entries:
        if not entry.name.endswith(".npy") or "/" in entry.name:
            session.unknown("unexpected-member", f"member `{entry.name}` is not a .npy array",
                            member=entry.name)
            continue
        data = _member_bytes(stream, entry, session)
        if data is None:
            continue
        if data[:6] != MAGIC:
            what = "a pickle" if data[:1] == b"\x80" else (
                "an archive" if data[:2] == b"PK" else "not a .npy array")
            session.unknown("unexpected-member", f"member `{entry.name}` is {what}",
                            member=entry.name)
            if what == "a pickle":
                session.run_pickle(session.reader(io.BytesIO(data), 0, len(data)), NUMPY_PLAIN,
                                   where=entry.name, member=entry.name)
            continue
        meta = scan_npy(io.BytesIO(data), len(data), session, name=entry.name,
                        member=entry.name[:-4])
        if meta is not None:
            tensors.append(meta)
    return None if session.findings else tensors


def _member_bytes(stream, entry, session) -> bytes | None:
    # .npz members are arrays of any size; numpy itself reads each whole, and so does this
    # check (bounded, since a .npz is a small-data format in checkpoints).
    if entry.size > 512 * 1024 * 1024:
        session.unknown("scan-limit", f"member `{entry.name}` is too large to check",
                        member=entry.name)
        return None
    stream.seek(entry.data_offset)
    data = stream.read(entry.compressed_size)
    session.bytes_scanned += len(data)
    if entry.method == 8:
        try:
            inflater = zlib.decompressobj(-15)
            data = inflater.decompress(data, entry.size + 1)
        except zlib.error:
            data = b""
    if len(data) != entry.size or zlib.crc32(data) != entry.crc:
        session.unknown("zip-crc", f"member `{entry.name}` does not match its size or CRC",
                        member=entry.name)
        return None
    return data
