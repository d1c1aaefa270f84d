"""What a scan says about one file: a verdict, the findings behind it, and (when safe) tensors.

The verdict is derived from the findings, never set on its own: any `unsafe` finding makes the
file unsafe, any other finding makes it unknown, and only a scan with no findings at all is safe.
That keeps "fail closed" a property of the data structure rather than of every caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SAFE = "safe"
UNSAFE = "unsafe"
UNKNOWN = "unknown"

MAX_FINDINGS = 200  # a hostile file can produce millions; a person reads the first few


@dataclass(frozen=True)
class Finding:
    severity: str            # "unsafe" | "unknown"
    code: str                # short slug, e.g. "dangerous-global"
    message: str             # a sentence a person can act on
    member: str | None = None
    offset: int | None = None
    global_name: str | None = None

    def to_json(self) -> dict:
        return {"severity": self.severity, "code": self.code, "message": self.message,
                "member": self.member, "offset": self.offset, "global_name": self.global_name}


@dataclass(frozen=True)
class TensorMeta:
    name: str                # dotted state-dict key
    dtype: str               # safetensors dtype string (F32, BF16, ...) where one exists
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "numel": self.numel}


@dataclass
class ScanResult:
    format: str
    findings: list[Finding] = field(default_factory=list)
    tensors: list[TensorMeta] | None = None
    globals: list[str] = field(default_factory=list)
    bytes_scanned: int = 0

    @property
    def verdict(self) -> str:
        if any(f.severity == UNSAFE for f in self.findings):
            return UNSAFE
        if self.findings:
            return UNKNOWN
        return SAFE

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "format": self.format,
            "findings": [f.to_json() for f in self.findings],
            "tensors": None if self.tensors is None else [t.to_json() for t in self.tensors],
            "globals": list(self.globals),
            "bytes_scanned": self.bytes_scanned,
        }


class FindingList:
    """Collects findings, keeping the first MAX_FINDINGS and counting the rest, so a file with a
    million bad opcodes still produces a report a person (and a database row) can hold."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self.dropped: dict[str, int] = {}
        self._seen: set[tuple] = set()

    def add(self, finding: Finding) -> None:
        key = (finding.code, finding.member, finding.offset, finding.global_name, finding.message)
        if key in self._seen:
            return
        self._seen.add(key)
        if len(self.items) < MAX_FINDINGS:
            self.items.append(finding)
        else:
            self.dropped[finding.severity] = self.dropped.get(finding.severity, 0) + 1

    def extend(self, findings) -> None:
        for finding in findings:
            self.add(finding)

    def final(self) -> list[Finding]:
        out = list(self.items)
        for severity, count in sorted(self.dropped.items()):
            out.append(Finding(severity, "more-findings",
                               f"{count} more {severity} finding(s) not listed"))
        return out

    def __bool__(self) -> bool:
        return bool(self.items)
