"""Runs CPython's C unpickler on generated pickle streams, in a separate, memory-capped process.

Used by test_machine_frames.py: streams with FRAME opcodes make the real unpickler skip bytes,
and skipped bytes can become a memo index that makes it allocate gigabytes, so the real side of
that comparison runs here, under RLIMIT_AS, never in the test process. find_class refuses
every global (skipped bytes may well spell a GLOBAL opcode), and without a global the stream
has nothing it could call. Reads {"streams": [hex...], "encoding": str} as JSON on stdin;
prints one result per stream.
"""

from __future__ import annotations

import io
import json
import pickle
import resource
import sys

class NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("globals are not allowed here")


def canon(value, seen=frozenset()):
    """A JSON form of plain data that keeps types and tolerates cycles."""
    if id(value) in seen:
        return ["cycle"]
    kind = type(value).__name__
    if value is None or isinstance(value, (bool, str)):
        return [kind, value]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", repr(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ["bytes" if isinstance(value, bytes) else "bytearray", bytes(value).hex()]
    inner = seen | {id(value)}
    if isinstance(value, (list, tuple)):
        return [kind, [canon(v, inner) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[canon(k, inner), canon(v, inner)] for k, v in value.items()]]
    if isinstance(value, (set, frozenset)):
        return [kind, sorted(json.dumps(canon(v, inner)) for v in value)]
    return ["other", kind]


def load(data: bytes, encoding: str):
    stream = io.BytesIO(data)  # no peek(): the way torch.load hands over data.pkl
    try:
        value = NoGlobals(stream, encoding=encoding).load()
    except MemoryError:
        return ["memory"]
    except Exception as exc:
        return ["error", type(exc).__name__]
    return ["ok", canon(value), stream.tell()]


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    job = json.load(sys.stdin)
    results = []
    for text in job["streams"]:
        results.append(load(bytes.fromhex(text), job["encoding"]))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
