"""A bounded, buffered view of a region of a seekable file, read the way `_pickle` reads.

The emulator reads pickles through this so it never holds more than one chunk of a multi-GB file,
always knows the byte offset of what it is looking at (for findings), and cannot read past the
member or region it was given (a truncated pickle fails instead of spilling into the next member).

It also reproduces how CPython's C unpickler buffers input, because that decides which bytes
are opcodes. Reading a file object without `peek()` (torch.load hands data.pkl over as a
BytesIO), the C unpickler fetches exactly what each read needs, except after a FRAME opcode,
which loads the whole frame into its buffer; a read that does not fit in what is left of that
buffer then drops the rest of the frame and reads on from the file. `c_buffered=True` emulates
that exactly. For file objects with `peek()` (a plain open() file) the result depends on how
much `peek` happens to return, so in the default, strict mode any read across a frame boundary
is a FrameViolation, as it is in pickle.py.
"""

from __future__ import annotations

from typing import BinaryIO, Callable

CHUNK = 1 << 20


class Truncated(EOFError):
    """The region ended in the middle of something."""


class FrameViolation(ValueError):
    """An opcode runs across the end of a protocol-4 FRAME."""


class RegionReader:
    def __init__(self, stream: BinaryIO, start: int, length: int, *, c_buffered: bool = False):
        self._stream = stream
        self._start = start
        self._length = length
        self._buffer = b""
        self._buffer_at = 0   # region offset of _buffer[0]
        self._pos = 0         # region offset of the next unread byte
        self.bytes_read = 0   # bytes fetched from the stream (for ScanResult.bytes_scanned)
        self.c_buffered = c_buffered
        self._frame_end: int | None = None   # strict mode: end of the current frame
        self._c_end = 0                      # c_buffered mode: end of the C input buffer
        self.on_skip: Callable[[int, int], None] | None = None

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def consumed(self) -> int:
        """Where the real loader leaves the file: with c_buffered input it has read the whole
        current frame even if STOP came earlier."""
        return max(self._pos, self._c_end) if self.c_buffered else self._pos

    @property
    def remaining(self) -> int:
        return self._length - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._length

    # --- frames ------------------------------------------------------------------------------

    def load_frame(self, size: int) -> None:
        """The FRAME opcode after its 8-byte length."""
        if self.c_buffered:
            self.read(size)          # fills the C buffer (or is served from it)...
            self._pos -= size        # ...then `next_read_idx -= frame_len`
            return
        if self.in_frame():
            raise FrameViolation("a FRAME starts before the previous frame ends")
        if size > self.remaining:
            raise Truncated(f"FRAME of {size} bytes but only {self.remaining} remain")
        self._frame_end = self._pos + size

    def in_frame(self) -> bool:
        return self._frame_end is not None and self._pos < self._frame_end

    def _strict_check(self, start: int, end: int) -> None:
        if self._frame_end is None:
            return
        if start >= self._frame_end:
            self._frame_end = None
        elif end > self._frame_end:
            raise FrameViolation(f"an opcode at offset {start} reads past the end of its "
                                 f"frame (offset {self._frame_end})")

    def _c_refill(self) -> None:
        """A read that does not fit the C buffer: the rest of the buffer is dropped."""
        if self._pos != self._c_end and self.on_skip is not None:
            self.on_skip(self._pos, self._c_end)
        self._pos = max(self._pos, self._c_end)

    # --- reads -------------------------------------------------------------------------------

    def read(self, n: int) -> bytes:
        """`_Unpickler_Read`: n bytes for an opcode or its fixed-size argument."""
        if self.c_buffered:
            if self._pos + n <= self._c_end:
                return self._raw_read(n)
            if self._pos != self._c_end:
                self._c_refill()
            data = self._raw_read(n)
            self._c_end = self._pos
            return data
        if self._frame_end is not None:
            self._strict_check(self._pos, self._pos + n)
        return self._raw_read(n)

    def read_byte(self) -> int:
        """One opcode byte; the hot path of the emulator, so the common case is inlined."""
        pos = self._pos
        offset = pos - self._buffer_at
        if 0 <= offset < len(self._buffer) and self._frame_end is None and (
                not self.c_buffered or pos == self._c_end):
            self._pos = pos + 1
            if self.c_buffered:
                self._c_end = pos + 1
            return self._buffer[offset]
        return self.read(1)[0]

    def read_into(self, n: int) -> bytes:
        """`_Unpickler_ReadInto` (the payload of BINBYTES / BYTEARRAY8): the rest of the buffer,
        then the file, contiguously."""
        if self.c_buffered:
            data = self._raw_read(n)
            self._c_end = max(self._c_end, self._pos)
            return data
        return self.read(n)

    def readline(self) -> bytes:
        """`_Unpickler_Readline`: up to and including the next newline."""
        if self.c_buffered:
            if self._c_end > self._pos and self._newline_before(self._c_end):
                return self._raw_readline()
            self._c_refill()
            line = self._raw_readline()
            self._c_end = self._pos
            return line
        start = self._pos
        line = self._raw_readline()
        self._strict_check(start, self._pos)
        return line

    def _newline_before(self, end: int) -> bool:
        self._fill(end - self._pos)
        offset = self._pos - self._buffer_at
        return self._buffer.find(b"\n", offset, offset + end - self._pos) >= 0

    def peek(self, n: int) -> bytes:
        self._fill(n)
        offset = self._pos - self._buffer_at
        return self._buffer[offset:offset + n]

    # --- the underlying region ---------------------------------------------------------------

    def _fill(self, need: int) -> None:
        """Make sure _buffer covers [pos, pos + need) as far as the region allows."""
        if not self._buffer_at <= self._pos <= self._buffer_at + len(self._buffer):
            self._buffer, self._buffer_at = b"", self._pos
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

    def _raw_read(self, n: int) -> bytes:
        offset = self._pos - self._buffer_at
        end = offset + n
        if offset >= 0 and n >= 0 and end <= len(self._buffer):  # the common case, kept cheap
            self._pos += n
            return self._buffer[offset:end]
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

    def _raw_readline(self) -> bytes:
        parts: list[bytes] = []
        while True:
            self._fill(1)
            offset = self._pos - self._buffer_at
            if offset >= len(self._buffer):
                raise Truncated(f"line ending near offset {self._pos} has no newline")
            newline = self._buffer.find(b"\n", offset)
            if newline >= 0:
                parts.append(self._buffer[offset:newline + 1])
                self._pos += newline + 1 - offset
                return b"".join(parts)
            parts.append(self._buffer[offset:])
            self._pos += len(self._buffer) - offset
            self._fill(CHUNK)
