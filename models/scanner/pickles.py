"""Files that are a stream of pickles: torch.save's legacy format, and plain pickle files.

torch.load on a non-zip file first tries it as a legacy tar archive, then reads pickles in a
row: the magic number, the protocol version, sys_info, the main object (persistent ids name
storages), the list of storage keys, and finally the raw storages, each an 8-byte element count
and the bytes. Each of those five pickles runs through the unpickler, so each is emulated; the
raw section is walked by its length prefixes (never read), and must end exactly at the end of
the file. Anything else that starts like a pickle is a plain pickle stream: every pickle in it
is emulated, and bytes that are not a complete pickle are a finding.
"""

from __future__ import annotations

import struct
import tarfile
from typing import BinaryIO

from models.scanner import tensors as tensor_census
from models.scanner.machine import LoaderContext
from models.scanner.session import Session
from models.scanner.torchfmt import (
    MAGIC_NUMBER, PROTOCOL_VERSION, StorageTable, legacy_persistent_load,
)

MAX_STACKED_PICKLES = 10_000
TORCH_PLAIN = LoaderContext(encoding="utf-8", torch=True)  # pickle_module.load(f, 'utf-8')


def is_tar(stream: BinaryIO) -> bool:
    """What torch.load's legacy path tries first: `tarfile.open(fileobj=f, mode="r:")`."""
    stream.seek(0)
    try:
        with tarfile.open(fileobj=stream, mode="r:"):
            return True
    except tarfile.TarError:
        return False
    except Exception:  # torch.load would fail with this same error; not a weights file
        return True
    finally:
        stream.seek(0)


def scan_tar(stream: BinaryIO, session: Session) -> None:
    session.unknown("legacy-tar", "legacy tar-format torch file: torch.load(weights_only=True) "
                    "refuses it and weights_only=False unpickles its members; re-save it with "
                    "a current torch.save")
    try:
        with tarfile.open(fileobj=stream, mode="r:") as archive:
            for info in archive.getmembers()[:100]:
                if not info.isfile() or info.size > 64 * 1024 * 1024:
                    continue
                data = archive.extractfile(info).read()
                import io
                _scan_stacked(io.BytesIO(data), len(data), session, where=info.name,
                              member=info.name)
    except Exception:  # the finding above already makes the verdict unknown
        pass


def scan(stream: BinaryIO, size: int, session: Session) -> tuple[str, list | None]:
    """Returns (format, tensors-or-None)."""
    reader = session.reader(stream, 0, size)
    where = session.name
    first = session.run_pickle(reader, TORCH_PLAIN, where=where, member=None)
    if not (first.complete and type(first.value) is int and first.value == MAGIC_NUMBER):
        return "pickle", _continue_plain(reader, first, session)
    version = session.run_pickle(reader, TORCH_PLAIN, where=where, member=None)
    if not version.complete:
        return "torch-legacy", None
    if version.value != PROTOCOL_VERSION:
        session.unknown("legacy-format", f"legacy torch file with protocol version "
                        f"{version.value!r}; torch.load only reads {PROTOCOL_VERSION}")
        return "torch-legacy", None
    sys_info = session.run_pickle(reader, TORCH_PLAIN, where=where, member=None)
    if not sys_info.complete:
        return "torch-legacy", None
    table = StorageTable()
    context = LoaderContext(encoding="utf-8", torch=True, rename_torch_tensor=False,
                            persistent_load=legacy_persistent_load(table))
    main = session.run_pickle(reader, context, where=where, member=None)
    if not main.complete:
        return "torch-legacy", None
    keys = session.run_pickle(reader, TORCH_PLAIN, where=where, member=None)
    if not keys.complete:
        return "torch-legacy", None
    _walk_storages(stream, reader.pos, size, keys.value, table, session)
    if session.findings:
        return "torch-legacy", None
    try:
        return "torch-legacy", tensor_census.collect(main.value)
    except tensor_census.TooLarge as exc:
        session.unknown("scan-limit", str(exc))
        return "torch-legacy", None


def _walk_storages(stream, position: int, size: int, keys, table: StorageTable,
                   session: Session) -> None:
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        session.unknown("legacy-format", "the storage key list is not a list of strings")
        return
    roots = {k for k, ref in table.by_key.items()}
    if set(keys) != roots or len(keys) != len(set(keys)):
        session.unknown("legacy-format", "the storage key list does not match the storages the "
                        "pickle uses")
        return
    for key in keys:
        stream.seek(position)
        prefix = stream.read(8)
        session.bytes_scanned += len(prefix)
        if len(prefix) != 8:
            session.unknown("legacy-format", f"the file ends before storage {key}")
            return
        (count,) = struct.unpack("<q", prefix)
        if count != table.by_key[key].numel:
            session.unknown("legacy-format", f"storage {key} holds {count} elements but the "
                            f"pickle says {table.by_key[key].numel}", offset=position)
            return
        position += 8 + table.nbytes(key)
    if position != size:
        kind = "missing" if position > size else "trailing"
        session.unknown("trailing-data", f"{abs(size - position)} bytes {kind} after the last "
                        "storage; a torch.save file ends exactly there", offset=min(position, size))


def _continue_plain(reader, first, session: Session) -> list | None:
    runs = [first]
    while runs[-1].complete and not reader.at_end() and len(runs) < MAX_STACKED_PICKLES:
        runs.append(session.run_pickle(reader, TORCH_PLAIN, where=session.name, member=None))
    if runs[-1].complete and not reader.at_end():
        session.unknown("scan-limit", f"more than {MAX_STACKED_PICKLES} pickles in one file")
    if session.findings or len(runs) != 1:
        if len(runs) > 1 and not session.findings:
            session.unknown("stacked-pickles", f"{len(runs)} pickles in a row: a loader reads "
                            "the first one and ignores the others, unless it reads them all")
        return None
    try:
        return tensor_census.collect(first.value)
    except tensor_census.TooLarge as exc:
        session.unknown("scan-limit", str(exc))
        return None


def _scan_stacked(stream, size: int, session: Session, *, where: str, member: str) -> None:
    reader = session.reader(stream, 0, size)
    for _ in range(MAX_STACKED_PICKLES):
        run = session.run_pickle(reader, TORCH_PLAIN, where=where, member=member)
        if not run.complete or reader.at_end():
            return
        # torch's tar format keeps raw tensor bytes between pickles; stop at the first gap.
        if reader.peek(1)[:1] != b"\x80":
            return
