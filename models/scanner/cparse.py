"""The text arguments of protocol-0 opcodes, parsed the way CPython's C `_pickle` parses them.

`pickle.py` and `_pickle.c` disagree on text integers (`I01\\n` is True in both, but `I010\\n` is 8
only in C, whose strtol reads a leading 0 as octal and `0x` as hex, and which stops at an
embedded NUL). The real loader is the C one, so an emulator that followed pickle.py would see a
different stack from the one that actually executes. Every function here mirrors one C routine;
tests/scanner/test_machine_differential.py checks them against the real `_pickle`.
"""

from __future__ import annotations

import codecs
import re
import warnings

LONG_MAX = 2**63 - 1
SSIZE_MAX = 2**63 - 1
_C_SPACE = b" \t\n\v\f\r"
_HEX = b"0123456789abcdefABCDEF"


class PickleSyntaxError(ValueError):
    """The real unpickler would raise here: the stream is not a pickle it can load."""


def c_string(line: bytes) -> bytes:
    """What C code sees of a line: `_Unpickler_CopyLine` NUL-terminates, so bytes after an
    embedded NUL are invisible to strtol / PyLong_FromString."""
    cut = line.find(b"\0")
    return line if cut < 0 else line[:cut]


def strtol(s: bytes) -> tuple[int, int, bool]:
    """glibc strtol(s, &end, 0) on a C string: (value, end index, overflowed)."""
    i, n = 0, len(s)
    while i < n and s[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and s[i] in b"+-":
        negative = s[i] == ord("-")
        i += 1
    base = 10
    if i < n and s[i] == ord("0"):
        if i + 2 < n and s[i + 1] in b"xX" and s[i + 2] in _HEX:
            base, i = 16, i + 2
        else:
            base = 8
    start = i
    value = 0
    while i < n:
        digit = _digit(s[i])
        if digit is None or digit >= base:
            break
        value = value * base + digit
        i += 1
    if i == start:
        return 0, 0, False  # no conversion: end points at the start of the string
    if negative:
        value = -value
    overflow = value > LONG_MAX or value < -LONG_MAX - 1
    return value, i, overflow


def _digit(byte: int) -> int | None:
    if 48 <= byte <= 57:
        return byte - 48
    if 97 <= byte <= 122:
        return byte - 87
    if 65 <= byte <= 90:
        return byte - 55
    return None


def long_from_string(s: bytes, base: int) -> int:
    """PyLong_FromString(s, NULL, base) on a C string. int() on bytes is that very function
    (with a check for trailing garbage that the NUL cut makes equivalent)."""
    try:
        return int(c_string(s), base)
    except ValueError:
        raise PickleSyntaxError(f"invalid integer literal {s[:40]!r}") from None


def load_int(line: bytes) -> int | bool:
    """The INT opcode ('I'): `line` includes its trailing newline."""
    if len(line) < 2:
        raise PickleSyntaxError("pickle data was truncated")
    s = c_string(line)
    value, end, overflow = strtol(s)
    after = s[end:end + 1]
    if overflow or after not in (b"\n", b""):
        return long_from_string(line, 0)
    if len(line) == 3 and value in (0, 1):
        return bool(value)
    return value


def load_long(line: bytes) -> int:
    """The LONG opcode ('L'): an optional trailing 'L' before the newline is dropped."""
    if len(line) < 2:
        raise PickleSyntaxError("pickle data was truncated")
    if line[-2:-1] == b"L":
        line = line[:-2]
    return long_from_string(line, 0)


def load_memo_index(line: bytes) -> int:
    """GET / PUT text arguments: PyLong_FromString(s, NULL, 10) then PyLong_AsSsize_t."""
    if len(line) < 2:
        raise PickleSyntaxError("pickle data was truncated")
    value = long_from_string(line, 10)
    if value > SSIZE_MAX or value < -SSIZE_MAX - 1:
        raise PickleSyntaxError("memo index does not fit in a Py_ssize_t")
    return value


_FLOAT = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)",
                    re.IGNORECASE)


def load_float(line: bytes) -> float:
    """The FLOAT opcode ('F'): PyOS_string_to_double, which takes no whitespace or underscores
    and raises on overflow; the number must end at the newline or a NUL."""
    if len(line) < 2:
        raise PickleSyntaxError("pickle data was truncated")
    s = c_string(line)
    if s.endswith(b"\n"):
        s = s[:-1]
    if not _FLOAT.fullmatch(s):
        raise PickleSyntaxError(f"could not convert {s[:40]!r} to float")
    value = float(s)
    if value in (float("inf"), float("-inf")) and b"inf" not in s.lower():
        raise PickleSyntaxError("float literal overflows")
    return value


def load_string(line: bytes) -> bytes:
    """The STRING opcode ('S'): a quoted, backslash-escaped Python 2 str; returns raw bytes
    (the caller decodes them with the loader's encoding)."""
    body = line[:-1]
    if len(body) < 2 or body[0] != body[-1] or body[0] not in b"'\"":
        raise PickleSyntaxError("the STRING opcode argument must be quoted")
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" is for source code
            warnings.simplefilter("ignore")
            return codecs.escape_decode(body[1:-1])[0]
    except ValueError as exc:
        raise PickleSyntaxError(f"bad escape in STRING: {exc}") from None


def load_unicode(line: bytes) -> str:
    """The UNICODE opcode ('V'): raw-unicode-escape text up to the newline."""
    try:
        return codecs.raw_unicode_escape_decode(line[:-1])[0]
    except UnicodeDecodeError as exc:
        raise PickleSyntaxError(f"bad UNICODE argument: {exc}") from None


def decode_line(line: bytes, encoding: str, *, min_length: int = 2) -> str:
    """A GLOBAL (UTF-8) or INST / PERSID (ASCII) text argument, newline stripped."""
    if len(line) < min_length:
        raise PickleSyntaxError("pickle data was truncated")
    try:
        return line[:-1].decode(encoding, "strict")
    except UnicodeDecodeError:
        raise PickleSyntaxError(f"argument is not valid {encoding}") from None


def decode_py2_string(data: bytes, encoding: str) -> str | bytes:
    """STRING / BINSTRING / SHORT_BINSTRING: Python 2 str, decoded with the Unpickler's
    `encoding` ('bytes' keeps bytes). torch.load passes utf-8; pickle.load defaults to ASCII."""
    if encoding == "bytes":
        return data
    try:
        return data.decode(encoding, "strict")
    except (UnicodeDecodeError, LookupError):
        raise PickleSyntaxError(f"Python 2 string is not valid {encoding}") from None


def le_unsigned(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=False)


def le_signed(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)
