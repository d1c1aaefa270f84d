"""A strict reader of safetensors headers, following the format's own validation rules.

Layout: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON mapping tensor names to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte after the header),
plus an optional "__metadata__" map of strings. Tensors must tile the data section exactly:
sorted by offset, each begins where the previous ended, and the last ends at the end of file.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from config import untrusted
from models.formats import FormatError

# dtype -> bits per element (sub-byte types are packed).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F8_E8M0": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass
class SafetensorsHeader:
    header_size: int
    file_size: int
    tensors: list[TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def data_start(self) -> int:
        return 8 + self.header_size


def read_header(stream: BinaryIO, file_size: int) -> SafetensorsHeader:
    """Parse and validate the header of a safetensors file of `file_size` bytes."""
    if file_size < 8:
        raise FormatError(f"file is {file_size} bytes, too short for a safetensors header "
                          "(needs at least 8)")
    prefix = stream.read(8)
    if len(prefix) != 8:
        raise FormatError("file ended inside the 8-byte header length")
    (header_size,) = struct.unpack("<Q", prefix)
    if header_size > file_size - 8:
        raise FormatError(f"header length {header_size} runs past the end of the file "
                          f"({file_size} bytes); the file is truncated or not safetensors")
    if header_size > MAX_HEADER_BYTES:
        raise FormatError(f"header length {header_size} exceeds the 100 MB limit")
    raw = stream.read(header_size)
    if len(raw) != header_size:
        raise FormatError("file ended inside the header")
    try:
        header = untrusted.loads(raw, what="header")
    except untrusted.UntrustedInput as exc:
        raise FormatError(exc.message) from None
    if not isinstance(header, dict):
        raise FormatError("header is JSON but not an object of tensors")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FormatError("__metadata__ must map strings to strings")

    data_size = file_size - 8 - header_size
    tensors = [_tensor(name, entry, data_size) for name, entry in header.items()]
    _check_tiling(tensors, data_size)
    return SafetensorsHeader(header_size=header_size, file_size=file_size,
                             tensors=tensors, metadata=metadata)


def _tensor(name: str, entry: object, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise FormatError(f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    if dtype not in DTYPE_BITS:
        raise FormatError(f"tensor {name!r}: unknown dtype {dtype!r} "
                          f"(known: {', '.join(sorted(DTYPE_BITS))})")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FormatError(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
    offsets = entry.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
        raise FormatError(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]")
    begin, end = offsets
    if begin > end:
        raise FormatError(f"tensor {name!r}: data_offsets begin {begin} is after end {end}")
    if end > data_size:
        raise FormatError(f"tensor {name!r}: data_offsets end {end} is out of range "
                          f"(the data section has {data_size} bytes)")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - begin:
        raise FormatError(f"tensor {name!r}: shape {shape} of {dtype} needs "
                          f"{bits / 8:g} bytes but its data_offsets span {end - begin}")
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def _check_tiling(tensors: list[TensorInfo], data_size: int) -> None:
    position = 0
    previous: TensorInfo | None = None
    for tensor in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if tensor.begin < position:
            raise FormatError(f"tensors {previous.name!r} and {tensor.name!r} overlap "
                              f"(bytes {tensor.begin}..{position})")
        if tensor.begin > position:
            raise FormatError(f"gap of {tensor.begin - position} bytes before tensor "
                              f"{tensor.name!r}: data_offsets must be contiguous")
        position = tensor.end
        previous = tensor
    if position != data_size:
        raise FormatError(f"the data section has {data_size} bytes but the tensors cover "
                          f"{position}; trailing bytes are not allowed")
