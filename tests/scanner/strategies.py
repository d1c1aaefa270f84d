"""Hypothesis strategies for pickle streams: opcodes with plausible and hostile arguments.

Streams with no global-importing opcodes are safe to hand to the real C unpickler in-process
(nothing can be imported, so nothing can be called); streams with globals are only ever loaded
through RecordingUnpickler, whose find_class returns an inert recorder instead of importing.
"""

from __future__ import annotations

import pickle
import struct

from hypothesis import strategies as st

INT_TEXT = [b"0", b"1", b"00", b"01", b"010", b"0x1f", b" 5", b"+1", b"-0", b"1_0", b"0b11",
            b"\x00", b"1\x00z", b"99999999999999999999", b"0x", b"08", b"-", b" ", b"1 ",
            b"0o7", b"7L", b"-9223372036854775808", b"9223372036854775808", b"0X1F", b"\t3"]
FLOAT_TEXT = [b"1.5", b"inf", b"-nan", b"1e500", b" 1", b"1_0", b"2", b".5", b"1.", b"x",
              b"1.5\x00x", b"-0.0", b"1e-400"]
STRING_TEXT = [b"'ab'", b'"x"', b"'a", b"'\\x41'", b"'\\q'", b"''", b"'\\x4'", b"'\\xff'",
               b"'os'", b"'system'"]
NAMES = [b"os", b"system", b"", b"posix", b"collections", b"OrderedDict", b"\xc3\xa9",
         b"\xed\xa0\x80", b"\xff"]

NO_ARG = [b"(", b"0", b"1", b"2", b"N", b"\x88", b"\x89", b")", b"]", b"}", b"\x8f", b"l", b"t",
          b"d", b"a", b"e", b"s", b"u", b"\x90", b"\x91", b"\x85", b"\x86", b"\x87", b"\x94",
          b"b", b"\x98", b"R", b"\x81", b"\x92", b"o", b"Q"]


def _counted(op: bytes, width: int, fmt: str, payload: bytes) -> bytes:
    return op + struct.pack(fmt, len(payload)) + payload


def data_opcode():
    """One opcode that builds data or shuffles the stack; never imports anything."""
    return st.one_of(
        st.sampled_from(NO_ARG),
        st.sampled_from(INT_TEXT).map(lambda t: b"I" + t + b"\n"),
        st.sampled_from([b"0", b"10L", b"0x10L", b"-5", b"L", b"1_0L", b"08"]).map(
            lambda t: b"L" + t + b"\n"),
        st.integers(-2**31, 2**31 - 1).map(lambda n: b"J" + struct.pack("<i", n)),
        st.integers(0, 255).map(lambda n: b"K" + bytes([n])),
        st.integers(0, 65535).map(lambda n: b"M" + struct.pack("<H", n)),
        st.binary(max_size=9).map(lambda b: b"\x8a" + bytes([len(b)]) + b),
        st.binary(min_size=0, max_size=3).map(lambda b: b"\x8b" + struct.pack("<i", len(b)) + b),
        st.sampled_from(FLOAT_TEXT).map(lambda t: b"F" + t + b"\n"),
        st.floats(allow_nan=False).map(lambda f: b"G" + struct.pack(">d", f)),
        st.sampled_from(STRING_TEXT).map(lambda t: b"S" + t + b"\n"),
        st.sampled_from(NAMES).map(lambda n: _counted(b"U", 1, "<B", n)),
        st.sampled_from(NAMES).map(lambda n: _counted(b"T", 4, "<I", n)),
        st.sampled_from(NAMES).map(lambda n: _counted(b"X", 4, "<I", n)),
        st.sampled_from(NAMES).map(lambda n: _counted(b"\x8c", 1, "<B", n)),
        st.sampled_from(NAMES).map(lambda n: _counted(b"\x8d", 8, "<Q", n)),
        st.binary(max_size=4).map(lambda b: _counted(b"C", 1, "<B", b)),
        st.binary(max_size=4).map(lambda b: _counted(b"B", 4, "<I", b)),
        st.binary(max_size=4).map(lambda b: _counted(b"\x8e", 8, "<Q", b)),
        st.binary(max_size=4).map(lambda b: _counted(b"\x96", 8, "<Q", b)),
        st.sampled_from([b"abc", b"\\u0041", b"\\u00", b"\xe9"]).map(lambda t: b"V" + t + b"\n"),
        st.integers(0, 5).map(lambda n: b"q" + bytes([n])),
        st.integers(0, 5).map(lambda n: b"h" + bytes([n])),
        st.integers(0, 5).map(lambda n: b"r" + struct.pack("<I", n)),
        st.integers(0, 5).map(lambda n: b"j" + struct.pack("<I", n)),
        st.sampled_from([b"0", b"1", b"-1", b" 2", b"1_0", b"x", b""]).map(
            lambda t: b"p" + t + b"\n"),
        st.sampled_from([b"0", b"1", b" 2", b"x", b""]).map(lambda t: b"g" + t + b"\n"),
        st.sampled_from([0, 1, 2, 3, 4, 5, 6]).map(lambda n: b"\x80" + bytes([n])),
    )


def global_opcode():
    """Opcodes that import (or name) a global."""
    modules = [b"os", b"posix", b"builtins", b"__builtin__", b"commands", b"collections",
               b"torch._utils", b"torch", b"copyreg", b"subprocess"]
    names = [b"system", b"eval", b"OrderedDict", b"_rebuild_tensor_v2", b"FloatStorage",
             b"getoutput", b"getattr", b"_reconstructor", b"Popen"]
    return st.one_of(
        st.tuples(st.sampled_from(modules), st.sampled_from(names)).map(
            lambda mn: b"c" + mn[0] + b"\n" + mn[1] + b"\n"),
        st.tuples(st.sampled_from(modules), st.sampled_from(names)).map(
            lambda mn: b"i" + mn[0] + b"\n" + mn[1] + b"\n"),
        st.just(b"\x93"),
        st.sampled_from([b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00"]),
    )


def data_stream(max_ops: int = 12):
    return st.lists(data_opcode(), min_size=1, max_size=max_ops).map(lambda ops: b"".join(ops)
                                                                     + b".")


def any_stream(max_ops: int = 14):
    return st.lists(st.one_of(data_opcode(), global_opcode()), min_size=1,
                    max_size=max_ops).map(lambda ops: b"".join(ops) + b".")


class NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("no globals in this test")


class Recorder:
    """Stands in for anything a recorded global would produce: callable, settable, empty."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return Recorder()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def extend(self, items):
        pass

    def append(self, item):
        pass

    def add(self, item):
        pass


class RecordingUnpickler(pickle.Unpickler):
    """The real C unpickler, except that find_class records (module, name) and returns a
    Recorder class instead of importing anything. Nothing from the stream can run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.imported: list[str] = []

    def find_class(self, module, name):
        self.imported.append(f"{module}.{name}")
        return Recorder

    def persistent_load(self, pid):
        return Recorder()
