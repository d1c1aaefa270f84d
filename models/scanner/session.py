"""The running state of one file's scan: findings, globals, bytes read, and the helper that
emulates one pickle inside a region of the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

from models.scanner.machine import LoaderContext, Machine, PickleRun
from models.scanner.reader import RegionReader
from models.scanner.result import UNKNOWN, Finding, FindingList

MAX_PICKLE_BYTES = 256 * 1024 * 1024


@dataclass
class Session:
    name: str
    findings: FindingList = field(default_factory=FindingList)
    globals: set[str] = field(default_factory=set)
    bytes_scanned: int = 0

    def unknown(self, code: str, message: str, *, member: str | None = None,
                offset: int | None = None) -> None:
        self.findings.add(Finding(UNKNOWN, code, message, member=member, offset=offset))

    def reader(self, stream: BinaryIO, start: int, length: int, *,
               c_buffered: bool = False) -> RegionReader:
        """c_buffered: the loader hands the pickle to `_pickle` as a BytesIO (torch.load's
        data.pkl); otherwise frames are held to pickle.py's strict rules."""
        return RegionReader(stream, start, length, c_buffered=c_buffered)

    def run_pickle(self, reader: RegionReader, context: LoaderContext, *, where: str,
                   member: str | None, offset_base: int = 0) -> PickleRun:
        before = reader.bytes_read
        machine = Machine(reader, context=context, findings=self.findings, where=where,
                          member=member, offset_base=offset_base)
        run = machine.execute()
        self.bytes_scanned += reader.bytes_read - before
        self.globals.update(name for name, _ in run.globals)
        return run

    def too_big(self, size: int, where: str, member: str | None) -> bool:
        if size > MAX_PICKLE_BYTES:
            self.unknown("scan-limit", f"`{where}` holds a {size:,}-byte pickle, more than the "
                         f"{MAX_PICKLE_BYTES:,} bytes the scanner emulates", member=member)
            return True
        return False
