"""Property-based fuzzing: random and mutated pickles and archives.

Two properties, for every input: the scanner returns a verdict (it never raises), and whenever
it says `safe`, the real unpickler imports nothing off the allow-list. The real unpickler here is
CPython's C `_pickle` with find_class overridden to record what it would import and hand back an
inert recorder, so nothing from the input can run in this process.
"""

from __future__ import annotations

import functools
import io
import pickletools
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.scanner import policy
from tests.scanner import rawzip
from tests.scanner.helpers import scan_bytes
from tests.scanner.strategies import RecordingUnpickler, any_stream, data_opcode, global_opcode

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def allowed(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    return name in policy.ALLOWED or policy.full_name(*policy.fix_py2_name(module, attr)) \
        in policy.ALLOWED


def imports_of(data: bytes, *, stacked: int = 1) -> list[str]:
    """Every global the C unpickler asks for, over `stacked` pickles in a row."""
    stream = io.BytesIO(data)
    imported: list[str] = []
    for _ in range(stacked):
        unpickler = RecordingUnpickler(stream, encoding="utf-8")
        try:
            unpickler.load()
        except Exception:
            imported += unpickler.imported
            break
        imported += unpickler.imported
    return imported


def assert_safe_means_allowed(result, imported: list[str]) -> None:
    assert result.verdict in ("safe", "unsafe", "unknown")
    if result.verdict == "safe":
        off_list = [name for name in imported if not allowed(name)]
        assert not off_list, f"scanner said safe but the unpickler imports {off_list}"


@functools.lru_cache(maxsize=None)
def real_files() -> dict[str, bytes]:
    import torch

    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16),
             "n": {"step": 3, "lr": 0.1, "betas": (0.9, 0.99)}}
    zipped, legacy = io.BytesIO(), io.BytesIO()
    torch.save(state, zipped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    archive = zipfile.ZipFile(io.BytesIO(zipped.getvalue()))
    return {"zip": zipped.getvalue(), "legacy": legacy.getvalue(),
            "data.pkl": archive.read("archive/data.pkl")}


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 overwrite, 1 insert, 2 delete."""
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        at = position % len(out)
        if kind == 0:
            out[at] = value
        elif kind == 1:
            out.insert(at, value)
        else:
            del out[at]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)),
                 min_size=1, max_size=4)


@FUZZ
@given(data=any_stream())
def test_random_pickles_get_a_verdict_and_safe_means_only_allowed_imports(data):
    assert_safe_means_allowed(scan_bytes(data, "random.pkl"), imports_of(data))


@FUZZ
@given(edits=EDITS)
def test_mutated_state_dict_pickles_inside_a_valid_archive(edits):
    data_pkl = mutate(real_files()["data.pkl"], edits)
    storages = {"0": b"\0" * 24, "1": b"\0" * 6}
    archive = rawzip.build(rawzip.torch_members("archive", data_pkl, storages))
    result = scan_bytes(archive, "mutated.pt")
    assert_safe_means_allowed(result, imports_of(data_pkl))


@FUZZ
@given(edits=EDITS)
def test_mutated_torch_archives(edits):
    data = mutate(real_files()["zip"], edits)
    result = scan_bytes(data, "mutated.pt")
    imported: list[str] = []
    if result.verdict == "safe":
        import torch
        # What torch.load would unpickle, and what Python's zipfile would hand a tool.
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        imported += imports_of(reader.get_record("data.pkl"))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                if name.endswith(".pkl"):
                    imported += imports_of(archive.read(name))
    assert_safe_means_allowed(result, imported)


def opcode_starts(data: bytes) -> list[int]:
    return [position for _, _, position in pickletools.genops(data)]


def splice(data: bytes, edits) -> bytes:
    """Opcode-level edits of a valid pickle: insert, replace or delete whole opcodes, so the
    result stays close to something the loader accepts."""
    out = data
    for kind, index, token in edits:
        starts = opcode_starts(out) if out.endswith(b".") else []
        if len(starts) < 2:
            break
        at = starts[index % (len(starts) - 1)]
        following = starts[starts.index(at) + 1]
        if kind == 0:
            out = out[:at] + token + out[at:]
        elif kind == 1:
            out = out[:at] + token + out[following:]
        else:
            out = out[:at] + out[following:]
        try:
            opcode_starts(out)
        except Exception:
            break
    return out


SPLICES = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000),
                             st.one_of(data_opcode(), global_opcode())), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=SPLICES)
def test_opcode_level_mutations_of_a_state_dict(edits):
    data_pkl = splice(real_files()["data.pkl"], edits)
    storages = {"0": b"\0" * 24, "1": b"\0" * 6}
    archive = rawzip.build(rawzip.torch_members("archive", data_pkl, storages))
    assert_safe_means_allowed(scan_bytes(archive, "spliced.pt"), imports_of(data_pkl))
    assert_safe_means_allowed(scan_bytes(data_pkl, "spliced.pkl"), imports_of(data_pkl))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS)
def test_mutated_legacy_files(edits):
    data = mutate(real_files()["legacy"], edits)
    result = scan_bytes(data, "mutated_legacy.pt")
    assert_safe_means_allowed(result, imports_of(data, stacked=5))
