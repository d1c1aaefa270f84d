"""One validation layer for untrusted text and structure.

Everything a client or a checkpoint file hands Stagegate as text or JSON passes through here
before it reaches the database or a parser that recurses: request paths and query strings, form
fields, JSON request bodies, safetensors headers, config.json and index files. Each refusal is
an UntrustedInput (a ValueError) whose message names the problem and how to fix it; callers
turn it into their own 400 (the API's `detail`, the Hub's error headers, a FormatError).

Why these rules: PostgreSQL cannot store NUL in text or JSON (a NUL reaching a query is a
500); NaN and Infinity are not JSON and PostgreSQL's jsonb refuses them; Python's json parser
raises RecursionError on deep nesting; and an int with thousands of digits raises ValueError
from int(). None of those may escape as a server error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# C0 controls and DEL, except tab, newline and carriage return, which text may carry; and lone
# UTF-16 surrogates (JSON can spell them, "\ud800", but no text encoding can store them).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# In a single-line value (a path, a query parameter, a name) no control character at all.
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class UntrustedInput(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _shown(value: str, limit: int = 60) -> str:
    text = value if len(value) <= limit else value[:limit - 3] + "..."
    return repr(text)


def check_text(value: str, *, what: str, single_line: bool = False) -> str:
    """`value` unchanged, or UntrustedInput naming the first control character in it."""
    match = (_LINE_CONTROL if single_line else _CONTROL).search(value)
    if match:
        char = match.group()
        name = ("a NUL byte" if char == "\x00" else
                f"the lone surrogate U+{ord(char):04X}" if "\ud800" <= char <= "\udfff" else
                f"the control character U+{ord(char):04X}")
        raise UntrustedInput(f"{what} contains {name} at position {match.start()} "
                             f"({_shown(value)}); remove it")
    return value


def parse_int(value: Any, *, what: str, minimum: int | None = None,
              maximum: int = 2**63 - 1) -> int:
    """A whole number written in decimal digits (no sign tricks, no thousands of digits)."""
    text = str(value).strip()
    if not re.fullmatch(r"-?\d{1,19}", text):
        raise UntrustedInput(f"{what}={_shown(str(value))} is not a whole number; "
                             "write it in decimal digits, e.g. 42")
    number = int(text)
    if minimum is not None and number < minimum:
        raise UntrustedInput(f"{what}={number} is below the smallest allowed value {minimum}")
    if number > maximum:
        raise UntrustedInput(f"{what}={number} is larger than {maximum}")
    return number


def query_int(params, name: str, *, minimum: int | None = 1) -> int | None:
    """The query parameter `name` as a whole number, None when absent or empty."""
    value = params.get(name)
    if value in (None, ""):
        return None
    return parse_int(value, what=name, minimum=minimum)


def _refuse_constant(name: str):
    raise UntrustedInput(f"{name} is not a JSON number; send a finite number or null")


def max_json_depth() -> int:
    try:
        return getattr(settings, "STAGEGATE_MAX_JSON_DEPTH", 64)
    except ImproperlyConfigured:  # a helper process without Django settings
        return 64


def loads(raw: bytes | str, *, what: str, max_depth: int | None = None,
          max_bytes: int | None = None) -> Any:
    """Parse untrusted JSON: valid UTF-8, at most `max_depth` levels of arrays and objects, no
    NaN or Infinity, no control characters (other than tab, newline and carriage return) in any
    string or key, and at most `max_bytes` bytes. Raises UntrustedInput, never RecursionError."""
    max_depth = max_json_depth() if max_depth is None else max_depth
    if max_bytes is not None and len(raw) > max_bytes:
        raise UntrustedInput(f"{what} is {len(raw)} bytes, more than the {max_bytes}-byte limit")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedInput(f"{what} is not UTF-8 ({exc})") from None
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise UntrustedInput(f"{what} is nested more than {max_depth} levels deep") from None
    except UntrustedInput as exc:
        raise UntrustedInput(f"{what}: {exc.message}") from None
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise UntrustedInput(f"{what} is not valid JSON ({exc})") from None
    check_structure(value, what=what, max_depth=max_depth)
    return value


def check_structure(value: Any, *, what: str, max_depth: int | None = None) -> Any:
    """Walk parsed JSON iteratively (a recursive walk is the RecursionError this prevents)."""
    max_depth = max_json_depth() if max_depth is None else max_depth
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, what=f"a string in {what}")
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise UntrustedInput(f"{what} is nested more than {max_depth} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(str(key), what=f"a key in {what}")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and item != item:
            raise UntrustedInput(f"{what} holds NaN, which is not a JSON number")
    return value
