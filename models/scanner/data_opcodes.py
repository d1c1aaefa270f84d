"""Opcodes that only build data: numbers, strings, bytes, containers, the memo and the stack.

Each method mirrors the `load_*` function of the same name in CPython's Modules/_pickle.c,
including its checks (the "fence" that a MARK puts on the stack, which ops may reach below it,
when the memo index is parsed) so the emulated stack is the real one, opcode for opcode.
"""

from __future__ import annotations

import struct

from models.scanner import cparse
from models.scanner.cparse import PickleSyntaxError
from models.scanner.values import Inert


MEMO_SLACK = 1 << 16


class MemoBomb(ValueError):
    pass


class DataOpcodes:
    """Mixin for Machine: needs self.reader, self.stack, self.marks, self.memo, self.encoding."""

    # --- the stack and its marks -----------------------------------------------------------

    @property
    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def underflow(self):
        return PickleSyntaxError("unexpected MARK found" if self.marks
                                 else "unpickling stack underflow")

    def pop(self):
        stack = self.stack
        if len(stack) <= (self.marks[-1] if self.marks else 0):
            raise self.underflow()
        return stack.pop()

    def top(self):
        stack = self.stack
        if len(stack) <= (self.marks[-1] if self.marks else 0):
            raise self.underflow()
        return stack[-1]

    def marker(self) -> int:
        if not self.marks:
            raise PickleSyntaxError("could not find MARK")
        return self.marks.pop()

    def pop_tuple(self, start: int) -> tuple:
        if start < self.fence:
            raise self.underflow()
        items = tuple(self.stack[start:])
        del self.stack[start:]
        return items

    def op_mark(self):
        self.marks.append(len(self.stack))

    def op_pop(self):
        if self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()
        elif len(self.stack) <= self.fence:
            raise self.underflow()
        else:
            self.stack.pop()

    def op_pop_mark(self):
        del self.stack[self.marker():]

    def op_dup(self):
        self.stack.append(self.top())

    # --- the memo ----------------------------------------------------------------------------

    def memo_put(self, index: int) -> None:
        value = self.top()
        if index > len(self.memo) + MEMO_SLACK:
            # Picklers number memo entries in order; CPython's unpickler allocates room for
            # twice the index, so a far jump is a memory bomb aimed at the loader.
            raise MemoBomb(f"memo index {index:,} with {len(self.memo):,} entries stored "
                           f"would make the loader allocate {index * 16:,} bytes")
        self.memo[index] = value

    def memo_get(self, index: int) -> None:
        if index not in self.memo:
            raise PickleSyntaxError(f"memo value not found at index {index}")
        self.stack.append(self.memo[index])

    def op_put(self):
        line = self.reader.readline()
        if len(line) < 2:
            raise PickleSyntaxError("pickle data was truncated")
        self.top()
        index = cparse.load_memo_index(line)
        if index < 0:
            raise PickleSyntaxError("negative PUT argument")
        self.memo_put(index)

    def op_binput(self):
        index = self.reader.read_byte()
        self.memo_put(index)  # memo_put checks the stack (top) as load_binput does

    def op_long_binput(self):
        index = cparse.le_unsigned(self.reader.read(4))
        self.top()
        self.memo_put(index)

    def op_memoize(self):
        self.top()
        self.memo_put(len(self.memo))

    def op_get(self):
        self.memo_get(cparse.load_memo_index(self.reader.readline()))

    def op_binget(self):
        self.memo_get(self.reader.read_byte())

    def op_long_binget(self):
        self.memo_get(cparse.le_unsigned(self.reader.read(4)))

    # --- scalars -----------------------------------------------------------------------------

    def op_none(self):
        self.stack.append(None)

    def op_newtrue(self):
        self.stack.append(True)

    def op_newfalse(self):
        self.stack.append(False)

    def op_int(self):
        self.stack.append(cparse.load_int(self.reader.readline()))

    def op_binint(self):
        self.stack.append(cparse.le_signed(self.reader.read(4)))

    def op_binint1(self):
        self.stack.append(self.reader.read_byte())

    def op_binint2(self):
        self.stack.append(cparse.le_unsigned(self.reader.read(2)))

    def op_long(self):
        self.stack.append(cparse.load_long(self.reader.readline()))

    def _counted_long(self, width: int):
        size = cparse.le_signed(self.reader.read(width))
        if size < 0:
            raise PickleSyntaxError("LONG pickle has negative byte count")
        self.stack.append(cparse.le_signed(self.reader.read(size)) if size else 0)

    def op_long1(self):
        self._counted_long(1)

    def op_long4(self):
        self._counted_long(4)

    def op_float(self):
        self.stack.append(cparse.load_float(self.reader.readline()))

    def op_binfloat(self):
        self.stack.append(struct.unpack(">d", self.reader.read(8))[0])

    # --- strings and bytes -------------------------------------------------------------------

    def _size(self, width: int) -> int:
        size = cparse.le_unsigned(self.reader.read(width))
        if size > cparse.SSIZE_MAX:
            raise PickleSyntaxError("size exceeds the system maximum")
        return size

    def op_string(self):
        raw = cparse.load_string(self.reader.readline())
        self.stack.append(cparse.decode_py2_string(raw, self.encoding))

    def _binstring(self, width: int):
        raw = self.reader.read(self._size(width))
        self.stack.append(cparse.decode_py2_string(raw, self.encoding))

    def op_binstring(self):
        self._binstring(4)

    def op_short_binstring(self):
        self._binstring(1)

    def _binbytes(self, width: int):
        self.stack.append(self.reader.read_into(self._size(width)))

    def op_short_binbytes(self):
        self._binbytes(1)

    def op_binbytes(self):
        self._binbytes(4)

    def op_binbytes8(self):
        self._binbytes(8)

    def op_bytearray8(self):
        self.stack.append(bytearray(self.reader.read_into(self._size(8))))

    def op_unicode(self):
        self.stack.append(cparse.load_unicode(self.reader.readline()))

    def _binunicode(self, width: int):
        raw = self.reader.read(self._size(width))
        try:
            self.stack.append(raw.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise PickleSyntaxError("BINUNICODE is not valid UTF-8") from None

    def op_short_binunicode(self):
        self._binunicode(1)

    def op_binunicode(self):
        self._binunicode(4)

    def op_binunicode8(self):
        self._binunicode(8)

    def op_next_buffer(self):
        raise PickleSyntaxError("pickle stream refers to out-of-band data but no *buffers* "
                                "argument was given")

    def op_readonly_buffer(self):
        value = self.top()
        if not isinstance(value, (bytes, bytearray, Inert)):
            raise PickleSyntaxError("READONLY_BUFFER on an object without the buffer protocol")

    # --- containers --------------------------------------------------------------------------

    def _counted_tuple(self, n: int):
        if len(self.stack) < n:
            raise self.underflow()
        self.stack.append(self.pop_tuple(len(self.stack) - n))

    def op_empty_tuple(self):
        self._counted_tuple(0)

    def op_tuple1(self):
        self._counted_tuple(1)

    def op_tuple2(self):
        self._counted_tuple(2)

    def op_tuple3(self):
        self._counted_tuple(3)

    def op_tuple(self):
        start = self.marker()
        self._counted_tuple(len(self.stack) - start)

    def op_empty_list(self):
        self.stack.append([])

    def op_empty_dict(self):
        self.stack.append({})

    def op_empty_set(self):
        self.stack.append(set())

    def op_list(self):
        start = self.marker()
        items = self.stack[start:]
        del self.stack[start:]
        self.stack.append(items)

    def op_dict(self):
        start = self.marker()
        items = self.stack[start:]
        if len(items) % 2:
            raise PickleSyntaxError("odd number of items for DICT")
        result = {}
        for i in range(0, len(items), 2):
            result[items[i]] = items[i + 1]
        del self.stack[start:]
        self.stack.append(result)

    def op_frozenset(self):
        self.stack.append(frozenset(self.pop_tuple(self.marker())))
