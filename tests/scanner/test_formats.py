"""Structure: what a file must look like, beyond its globals, to be `safe`; and the scanner's
promises (a verdict for every input, JSON out, tensor data never read)."""

from __future__ import annotations

import io
import json
import os

import pytest
import torch

from models.scanner import scan_path, scan_stream
from tests.scanner import rawzip
from tests.scanner.asm import Call, Global, assemble
from tests.scanner.helpers import scan_bytes


def saved(obj, **options) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **options)
    return buffer.getvalue()


def members_of(archive: bytes) -> list[rawzip.Member]:
    import zipfile
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return [rawzip.Member(i.filename, z.read(i)) for i in z.infolist()]


def codes(result) -> set[str]:
    return {f.code for f in result.findings}


STATE = {"w": torch.ones(2, 3), "b": torch.zeros(3)}


def test_a_plain_state_dict_is_safe_with_its_tensors():
    result = scan_bytes(saved(STATE), "model.pt")
    assert result.verdict == "safe" and result.format == "torch-zip"
    assert [(t.name, t.dtype, t.shape, t.numel) for t in result.tensors] == [
        ("w", "F32", (2, 3), 6), ("b", "F32", (3,), 3)]
    assert result.globals == ["collections.OrderedDict", "torch.FloatStorage",
                              "torch._utils._rebuild_tensor_v2"]


def test_bytes_after_the_end_of_data_pkl_are_unknown():
    members = members_of(saved(STATE))
    members[0].data += assemble(Call(Global("posix", "system"), "true"))
    result = scan_bytes(rawzip.build(members), "model.pt")
    assert result.verdict == "unknown" and "trailing-data" in codes(result)


def test_a_storage_of_the_wrong_size_is_unknown():
    members = members_of(saved(STATE))
    storage = next(m for m in members if m.name.endswith("data/0"))
    storage.data = storage.data[:-4]
    assert "storage-size" in codes(scan_bytes(rawzip.build(members), "model.pt"))


def test_an_unused_member_is_unknown_and_a_hidden_pickle_is_scanned():
    members = members_of(saved(STATE))
    members.insert(2, rawzip.Member("archive/extra.pkl", assemble(Call(Global("os", "system"),
                                                                        "true"))))
    result = scan_bytes(rawzip.build(members), "model.pt")
    assert result.verdict == "unsafe" and "unexpected-member" in codes(result)


def test_a_truncated_archive_is_unknown():
    data = saved(STATE)
    for cut in (10, len(data) // 2, len(data) - 1):
        assert scan_bytes(data[:cut], "model.pt").verdict == "unknown"


def test_a_whole_pickled_module_says_to_save_the_state_dict():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    result = scan_bytes(saved(model), "model.pt")
    assert result.verdict == "unknown"
    assert any(f.message.startswith("whole `torch.nn.Sequential` object pickled") and
               f.message.endswith("save `model.state_dict()` instead") for f in result.findings)


def test_a_torchscript_archive_is_unknown():
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    result = scan_bytes(buffer.getvalue(), "scripted.pt")
    assert result.verdict != "safe" and "torchscript" in codes(result)


def test_a_legacy_file_with_bytes_after_its_storages_is_unknown():
    data = saved(STATE, _use_new_zipfile_serialization=False)
    assert scan_bytes(data, "old.pt").verdict == "safe"
    assert "trailing-data" in codes(scan_bytes(data + b"\0", "old.pt"))
    assert scan_bytes(data[:-1], "old.pt").verdict == "unknown"


def test_plain_pickles_must_be_one_complete_pickle():
    one = assemble({"a": 1})
    assert scan_bytes(one, "x.pkl").verdict == "safe"
    assert scan_bytes(one + one, "x.pkl").verdict == "unknown"
    assert scan_bytes(one + b"garbage", "x.pkl").verdict == "unknown"
    assert scan_bytes(one[:-1], "x.pkl").verdict == "unknown"


def test_a_pickle_that_is_also_a_zip_is_unknown():
    polyglot = assemble({"a": 1}) + rawzip.build([rawzip.Member("x/data.pkl", b".")])
    assert scan_bytes(polyglot, "x.pkl").verdict == "unknown"


@pytest.mark.parametrize("data,name", [
    (b"", "empty.pt"), (b"\x1f\x8b\x08\x00" + b"\0" * 20, "model.pt.gz"),
    (b"PK\x05\x06" + b"\0" * 18, "empty.zip"), (os.urandom(300), "noise.bin"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'}\n", "bad.npy"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}        ", "bad.safetensors"),
])
def test_garbage_gets_a_verdict_and_is_never_safe(data, name):
    result = scan_bytes(data, name)
    assert result.verdict == "unknown" and result.findings


def test_an_internal_error_is_an_unknown_verdict(monkeypatch):
    from models.scanner import torchzip

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(torchzip, "scan", explode)
    result = scan_bytes(saved(STATE), "model.pt")
    assert result.verdict == "unknown" and "internal-error" in codes(result)


def test_a_missing_file_is_unknown(tmp_path):
    result = scan_path(tmp_path / "nope.pt")
    assert result.verdict == "unknown" and "unreadable" in codes(result)


def test_results_are_json(tmp_path):
    for data in (saved(STATE), assemble(Call(Global("os", "system"), "true"))):
        payload = scan_bytes(data, "x.pt").to_json()
        assert json.loads(json.dumps(payload)) == payload
        assert set(payload) == {"verdict", "format", "findings", "tensors", "globals",
                                "bytes_scanned"}


def test_numpy_files_with_object_or_structured_dtypes_are_unknown():
    import numpy
    for array in (numpy.array([1, "a"], dtype=object),
                  numpy.zeros(2, dtype=[("a", "f4"), ("b", "i4")])):
        buffer = io.BytesIO()
        numpy.save(buffer, array, allow_pickle=True)
        assert scan_bytes(buffer.getvalue(), "x.npy").verdict == "unknown"


class CountingStream(io.RawIOBase):
    """A file that records every byte range read from it."""

    def __init__(self, path):
        self.handle = open(path, "rb")
        self.ranges: list[tuple[int, int]] = []

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self.handle.seek(offset, whence)

    def tell(self):
        return self.handle.tell()

    def read(self, n=-1):
        start = self.handle.tell()
        data = self.handle.read(n)
        self.ranges.append((start, start + len(data)))
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def test_a_large_checkpoint_is_scanned_without_reading_its_tensor_data(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({f"layer{i}": torch.randn(1024, 1024) for i in range(6)}, path)  # 24 MB
    stream = CountingStream(path)
    result = scan_stream(stream, "big.pt")
    assert result.verdict == "safe" and len(result.tensors) == 6
    total = sum(end - start for start, end in stream.ranges)
    assert total < 256 * 1024, total
    from models.scanner.zipfiles import read_layout
    with open(path, "rb") as handle:
        layout = read_layout(handle, path.stat().st_size, allow_compression=False)
    storages = [e for e in layout.entries if "/data/" in e.name]
    assert len(storages) == 6
    for entry in storages:
        inside = (entry.data_offset + 8192, entry.data_offset + entry.size - 8192)
        assert not any(s < inside[1] and e > inside[0] for s, e in stream.ranges), entry.name
    assert result.bytes_scanned < 64 * 1024
