"""FRAME opcodes, compared against the real C unpickler reading a BytesIO (as torch.load reads
data.pkl): when an opcode runs past its frame, the C reader drops the rest of the frame and
reads on, and the emulator in c_buffered mode must land on exactly the same bytes."""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
from pathlib import Path

from models.scanner.machine import LoaderContext, Machine
from models.scanner.reader import RegionReader
from models.scanner.result import FindingList
from tests.scanner.strategies import FLOAT_TEXT, INT_TEXT, NO_ARG, STRING_TEXT

REAL = Path(__file__).with_name("real_unpickle.py")
DATA_NO_ARG = [op for op in NO_ARG if op not in (b"R", b"\x81", b"\x92", b"o", b"Q", b"b")]


def opcode(rng: random.Random) -> bytes:
    kind = rng.randrange(12)
    if kind == 0:
        return b"\x95" + struct.pack("<Q", rng.randrange(24))
    if kind == 1:
        return b"I" + rng.choice(INT_TEXT) + b"\n"
    if kind == 2:
        return b"F" + rng.choice(FLOAT_TEXT) + b"\n"
    if kind == 3:
        return b"S" + rng.choice(STRING_TEXT) + b"\n"
    if kind == 4:
        text = rng.choice([b"ab", b"", b"xyz0N"])
        return b"\x8c" + bytes([len(text) + rng.randrange(3)]) + text
    if kind == 5:
        return b"B" + struct.pack("<I", rng.randrange(4)) + b"zz"
    if kind == 6:
        return b"K" + bytes([rng.randrange(256)])
    if kind == 7:
        return rng.choice([b"q", b"h"]) + bytes([rng.randrange(4)])
    if kind == 8:
        return b"g" + rng.choice([b"0", b"1", b"x"]) + b"\n"
    if kind == 9:
        return b"\x96" + struct.pack("<Q", 2) + b"xy"
    return rng.choice(DATA_NO_ARG)


def streams(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [b"\x80\x04" + b"".join(opcode(rng) for _ in range(rng.randrange(1, 10))) + b"."
            for _ in range(count)]


def emulate(data: bytes, encoding: str):
    findings = FindingList()
    machine = Machine(RegionReader(io.BytesIO(data), 0, len(data), c_buffered=True),
                      context=LoaderContext(encoding=encoding), findings=findings,
                      where="x", member="x")
    run = machine.execute()
    return run, [f for f in findings.final() if f.code != "frame-straddle"]


def test_framed_streams_load_exactly_as_the_c_unpickler_reads_them():
    sys.path.insert(0, str(REAL.parent))
    from real_unpickle import canon  # the same canonical form on both sides

    data = streams(seed=20260501, count=4000)
    job = {"streams": [d.hex() for d in data], "encoding": "utf-8"}
    done = subprocess.run([sys.executable, str(REAL)], input=json.dumps(job), text=True,
                          capture_output=True, timeout=300, check=True)
    compared = 0
    for stream, real in zip(data, json.loads(done.stdout)):
        if real[0] == "memory":
            continue  # the real unpickler died of a memo bomb; the emulator reports those
        run, findings = emulate(stream, "utf-8")
        if real[0] == "ok":
            assert run.complete and not findings, (stream, findings)
            assert json.loads(json.dumps(canon(run.value))) == real[1], stream
            assert run.end == real[2], stream
            compared += 1
        else:
            assert findings, (stream, real)
    assert compared > 300
