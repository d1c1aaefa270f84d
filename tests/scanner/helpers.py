"""Small helpers shared by the scanner tests."""

from __future__ import annotations

import io
import math

from models.scanner import scan_stream
from models.scanner.machine import LoaderContext, Machine
from models.scanner.reader import RegionReader
from models.scanner.result import FindingList


def emulate(data: bytes, *, encoding: str = "ASCII", torch: bool = False):
    """(run, findings) for one pickle at the start of `data`."""
    findings = FindingList()
    machine = Machine(RegionReader(io.BytesIO(data), 0, len(data)),
                      context=LoaderContext(encoding=encoding, torch=torch), findings=findings,
                      where="test.pkl", member="test.pkl")
    run = machine.execute()
    return run, findings.final()


def scan_bytes(data: bytes, name: str = "test.pkl"):
    return scan_stream(io.BytesIO(data), name)


def same_value(a, b) -> bool:
    """Equality that treats NaN as equal to NaN and compares container types too."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, memoryview) or isinstance(b, memoryview):
        return bytes(a) == bytes(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    try:
        return a == b
    except Exception:
        return False
