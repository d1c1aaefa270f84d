"""A tiny pickle assembler: write opcodes for an expression tree, never pickle a live object.

    evil = assemble(Call(Global("posix", "system"), "touch /tmp/marker"))

Malicious corpus entries are built this way so that no dangerous object ever exists in the
test process: the bytes are written opcode by opcode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Global:
    module: str
    name: str
    stack: bool = False      # STACK_GLOBAL (protocol 4) instead of GLOBAL


@dataclass(frozen=True)
class Call:
    func: object
    args: tuple

    def __init__(self, func, *args):
        object.__setattr__(self, "func", func)
        object.__setattr__(self, "args", args)


@dataclass(frozen=True)
class Raw:
    """Bytes emitted as they are (they must leave exactly one value on the stack)."""
    data: bytes


def emit(value, out: bytearray) -> None:
    if isinstance(value, Raw):
        out += value.data
    elif isinstance(value, Global):
        if value.stack:
            emit(value.module, out)
            emit(value.name, out)
            out += b"\x93"
        else:
            out += b"c" + value.module.encode() + b"\n" + value.name.encode() + b"\n"
    elif isinstance(value, Call):
        emit(value.func, out)
        emit(tuple(value.args), out)
        out += b"R"
    elif value is None:
        out += b"N"
    elif value is True or value is False:
        out += b"\x88" if value else b"\x89"
    elif isinstance(value, int):
        if 0 <= value < 256:
            out += b"K" + bytes([value])
        elif -2**31 <= value < 2**31:
            out += b"J" + struct.pack("<i", value)
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            out += b"\x8a" + bytes([len(raw)]) + raw
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        out += b"X" + struct.pack("<I", len(raw)) + raw
    elif isinstance(value, bytes):
        out += b"B" + struct.pack("<I", len(value)) + value
    elif isinstance(value, tuple):
        out += b"("
        for item in value:
            emit(item, out)
        out += b"t"
    elif isinstance(value, list):
        out += b"]("
        for item in value:
            emit(item, out)
        out += b"e"
    elif isinstance(value, dict):
        out += b"}("
        for key, item in value.items():
            emit(key, out)
            emit(item, out)
        out += b"u"
    else:
        raise TypeError(f"cannot assemble {type(value).__name__}")


def assemble(value, protocol: int = 2) -> bytes:
    out = bytearray(b"\x80" + bytes([protocol]) if protocol >= 2 else b"")
    emit(value, out)
    out += b"."
    return bytes(out)


def body(value) -> bytes:
    """Opcodes for `value` alone: no PROTO, no STOP."""
    out = bytearray()
    emit(value, out)
    return bytes(out)
