"""Entry points: decide what a file is the way its loader would, then scan it as that.

The format is chosen from the first bytes, as torch.load chooses (a zip local header at offset
0 means the zip reader; anything else goes down the legacy path), never from the file name,
except where the name is all a loader has to go on (.npz, .safetensors). Every input gets a
verdict: an error inside the scanner is itself a finding, so it can only make a file `unknown`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from models.scanner import numpyfiles, pickles, torchzip
from models.scanner.result import UNKNOWN, Finding, ScanResult, TensorMeta
from models.scanner.session import Session

COMPRESSED = {b"\x1f\x8b": "gzip", b"BZ": "bzip2", b"\xfd7zXZ": "xz", b"7z\xbc\xaf": "7z",
              b"\x28\xb5\x2f\xfd": "zstd"}


def scan_path(path: str | os.PathLike) -> ScanResult:
    path = Path(path)
    try:
        stream = open(path, "rb")
    except OSError as exc:
        return ScanResult("unknown", [Finding(UNKNOWN, "unreadable",
                                              f"cannot read `{path.name}`: {exc.strerror}")])
    with stream:
        return scan_stream(stream, path.name)


def scan_stream(fileobj: BinaryIO, name: str) -> ScanResult:
    session = Session(name)
    fmt, tensors = "unknown", None
    try:
        size = fileobj.seek(0, os.SEEK_END)
        fmt, tensors = _dispatch(fileobj, size, name, session)
    except MemoryError:
        session.unknown("internal-error", "the scanner ran out of memory on this file")
    except RecursionError:
        session.unknown("internal-error", "the file is nested too deeply to scan")
    except Exception as exc:  # fail closed: a scanner bug can only make a file unknown
        session.unknown("internal-error", f"the scanner failed on this file "
                        f"({type(exc).__name__}: {str(exc)[:200]})")
    findings = session.findings.final()
    return ScanResult(format=fmt, findings=findings,
                      tensors=None if findings or tensors is None else tensors,
                      globals=sorted(session.globals), bytes_scanned=session.bytes_scanned)


def _dispatch(stream: BinaryIO, size: int, name: str, session: Session):
    if size == 0:
        session.unknown("empty", "the file is empty")
        return "unknown", None
    stream.seek(0)
    head = stream.read(16)
    lower = name.lower()
    if head[:4] == b"PK\x03\x04":
        if lower.endswith(".npz"):
            return "numpy", numpyfiles.scan_npz(stream, size, session)
        return "torch-zip", torchzip.scan(stream, size, session)
    if head[:6] == numpyfiles.MAGIC:
        meta = numpyfiles.scan_npy(stream, size, session, name=name)
        if meta is None:
            return "numpy", None
        return "numpy", [TensorMeta(Path(name).stem, meta.dtype, meta.shape)]
    if lower.endswith(".safetensors") or _looks_like_safetensors(head, size):
        return "safetensors", _scan_safetensors(stream, size, session)
    if head[:2] == b"PK":
        session.unknown("zip-structure", "a zip archive that does not start with a file entry; "
                        "torch.load would not read it as one")
        return "unknown", None
    for magic, kind in COMPRESSED.items():
        if head.startswith(magic):
            session.unknown("compressed", f"a {kind}-compressed file: no model loader reads it "
                            "directly, and what is inside cannot be checked")
            return "unknown", None
    if pickles.is_tar(stream):
        pickles.scan_tar(stream, session)
        return "torch-tar", None
    return pickles.scan(stream, size, session)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _scan_safetensors(stream: BinaryIO, size: int, session: Session):
    from models.formats import FormatError
    from models.formats.safetensors import read_header

    stream.seek(0)
    try:
        header = read_header(stream, size)
    except FormatError as exc:
        session.unknown("safetensors-header", f"not a valid safetensors file: {exc}")
        return None
    session.bytes_scanned += 8 + header.header_size
    _check_not_a_pickle_too(stream, size, session)
    return [TensorMeta(t.name, t.dtype, t.shape) for t in header.tensors]


def _check_not_a_pickle_too(stream: BinaryIO, size: int, session: Session) -> None:
    """torch.load of a safetensors file under another name unpickles it (the legacy path).
    Its first bytes are the header length, so as a pickle it fails within a few opcodes; if it
    imports anything first, the file is a polyglot."""
    probe = Session(session.name)
    reader = probe.reader(stream, 0, size)
    probe.run_pickle(reader, pickles.TORCH_PLAIN, where=session.name, member=None)
    if probe.globals:
        session.unknown("polyglot", "a valid safetensors file that is also a pickle importing "
                        f"{sorted(probe.globals)[0]} (torch.load under another file name would "
                        "run it)")
