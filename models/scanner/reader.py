"""A bounded, buffered view of a region of a seekable file.

The emulator reads pickles through this so it never holds more than one chunk of a multi-GB file,
always knows the byte offset of what it is looking at (for findings), and cannot read past the
member or region it was given (a truncated pickle fails instead of spilling into the next member).
"""

from __future__ import annotations

from typing import BinaryIO

CHUNK = 1 << 20


class Truncated(EOFError):
    """The region ended in the middle of something."""


class FrameViolation(ValueError):
    """An opcode runs across the end of a protocol-4 FRAME."""


class RegionReader:
    def __init__(self, stream: BinaryIO, start: int, length: int):
        self._stream = stream
        self._start = start
        self._length = length
        self._buffer = b""
        self._buffer_at = 0   # region offset of _buffer[0]
        self._pos = 0         # region offset of the next unread byte
        self.bytes_read = 0   # bytes fetched from the stream (for ScanResult.bytes_scanned)
        self._frame_end: int | None = None

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._length - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._length

    def _fill(self, need: int) -> None:
        """Make sure _buffer covers [pos, pos + need) as far as the region allows."""
        have = self._buffer_at + len(self._buffer) - self._pos
        if have >= need:
            return
        keep = self._buffer[self._pos - self._buffer_at:]
        want = min(max(need - len(keep), CHUNK), self._length - self._pos - len(keep))
        if want > 0:
            self._stream.seek(self._start + self._pos + len(keep))
            data = self._stream.read(want)
            self.bytes_read += len(data)
            keep += data
        self._buffer = keep
        self._buffer_at = self._pos

    def start_frame(self, size: int) -> None:
        self._frame_end = self._pos + size

    def in_frame(self) -> bool:
        return self._frame_end is not None and self._pos < self._frame_end

    def _check_frame(self, start: int, end: int) -> None:
        """Reads must not cross the end of the current frame (see FrameViolation's users)."""
        if self._frame_end is None:
            return
        if start >= self._frame_end:
            self._frame_end = None
        elif end > self._frame_end:
            raise FrameViolation(f"an opcode at offset {start} reads past the end of its "
                                 f"frame (offset {self._frame_end})")

    def read(self, n: int) -> bytes:
        self._check_frame(self._pos, self._pos + n)
        if n < 0 or n > self.remaining:
            raise Truncated(f"needs {n} bytes at offset {self._pos}, "
                            f"only {max(self.remaining, 0)} left")
        if n > 4 * CHUNK:
            # Large payloads (BINBYTES8...) are read straight through, not via the buffer.
            self._fill(0)
            head = self._buffer[self._pos - self._buffer_at:]
            self._stream.seek(self._start + self._pos + len(head))
            rest = self._stream.read(n - len(head))
            self.bytes_read += len(rest)
            data = head + rest
            if len(data) != n:
                raise Truncated(f"file ended inside a {n}-byte read")
            self._pos += n
            self._buffer, self._buffer_at = b"", self._pos
            return data
        self._fill(n)
        offset = self._pos - self._buffer_at
        data = self._buffer[offset:offset + n]
        if len(data) != n:
            raise Truncated(f"file ended inside a {n}-byte read at offset {self._pos}")
        self._pos += n
        return data

    def readline(self) -> bytes:
        """Up to and including the next newline; Truncated if the region ends first."""
        parts: list[bytes] = []
        start = self._pos
        while True:
            self._fill(1)
            offset = self._pos - self._buffer_at
            if offset >= len(self._buffer):
                raise Truncated(f"line starting near offset {self._pos} has no newline")
            newline = self._buffer.find(b"\n", offset)
            if newline >= 0:
                self._check_frame(start, self._buffer_at + newline + 1)
                parts.append(self._buffer[offset:newline + 1])
                self._pos += newline + 1 - offset
                return b"".join(parts)
            parts.append(self._buffer[offset:])
            self._pos += len(self._buffer) - offset
            self._fill(CHUNK)

    def peek(self, n: int) -> bytes:
        self._fill(n)
        offset = self._pos - self._buffer_at
        return self._buffer[offset:offset + n]

    def skip(self, n: int) -> None:
        if n < 0 or n > self.remaining:
            raise Truncated(f"cannot skip {n} bytes at offset {self._pos}")
        self._pos += n
        if self._pos > self._buffer_at + len(self._buffer):
            self._buffer, self._buffer_at = b"", self._pos
