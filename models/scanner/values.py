"""The values that live on the emulated pickle stack.

Plain data (None, bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset) is
represented by the real Python objects, so hashing, equality and "unhashable key" errors behave
exactly as in the real unpickler. Everything that would be a live object in the real loader is
one of the inert stand-ins below: they carry what the scanner needs to know (which global, which
storage, which shape) and can never be called.
"""

from __future__ import annotations

import math
from collections import OrderedDict


class Inert:
    """Base for stand-ins. Identity hash and equality, like most real objects."""

    __slots__ = ()

    def describe(self) -> str:
        return type(self).__name__


class GlobalRef(Inert):
    """What GLOBAL / STACK_GLOBAL / INST / EXT pushed: a module attribute, by name."""

    __slots__ = ("module", "name", "category", "offset")

    def __init__(self, module: str, name: str, category: str, offset: int | None):
        self.module = module
        self.name = name
        self.category = category
        self.offset = offset

    @property
    def full_name(self) -> str:
        return f"{self.module}.{self.name}"

    def describe(self) -> str:
        return f"global {self.full_name}"


class Opaque(Inert):
    """A value the real loader would compute by running code the scanner does not model.
    Anything that depends on it (a STACK_GLOBAL operand, a callee) makes the verdict unknown."""

    __slots__ = ("origin",)

    def __init__(self, origin: str):
        self.origin = origin

    def describe(self) -> str:
        return f"result of {self.origin}"


class StorageRef(Inert):
    """A tensor storage named by a persistent id: bytes in `data/<key>` (zip) or in the raw
    storage section (legacy). `numel` is in elements of `dtype`."""

    __slots__ = ("key", "dtype", "numel", "location", "untyped", "view_of", "view_offset")

    def __init__(self, key: str, dtype: str, numel: int, location: str, untyped: bool = False,
                 view_of: str | None = None, view_offset: int = 0):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.location = location
        self.untyped = untyped
        self.view_of = view_of
        self.view_offset = view_offset


class TensorValue(Inert):
    __slots__ = ("dtype", "shape", "stride", "offset", "storage", "kind")

    def __init__(self, dtype: str, shape: tuple[int, ...], stride: tuple[int, ...] | None = None,
                 offset: int = 0, storage: StorageRef | None = None, kind: str = "tensor"):
        self.dtype = dtype
        self.shape = shape
        self.stride = stride
        self.offset = offset
        self.storage = storage
        self.kind = kind  # tensor | parameter | meta | quantized | sparse

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def describe(self) -> str:
        return f"tensor {self.dtype}{list(self.shape)}"


class TorchConstant(Inert):
    """torch.float32, torch.per_tensor_affine, a layout, a device: values, never called."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: str):
        self.kind = kind
        self.value = value

    def describe(self) -> str:
        return f"{self.kind} {self.value}"


class NumpyDType(Inert):
    __slots__ = ("descr", "itemsize", "state_set")

    def __init__(self, descr: str, itemsize: int):
        self.descr = descr
        self.itemsize = itemsize
        self.state_set = False


class NumpyArray(Inert):
    __slots__ = ("dtype", "shape", "built")

    def __init__(self):
        self.dtype: NumpyDType | None = None
        self.shape: tuple[int, ...] = (0,)
        self.built = False


class NumpyScalar(Inert):
    __slots__ = ("dtype",)

    def __init__(self, dtype: NumpyDType):
        self.dtype = dtype


class EmuOrderedDict(OrderedDict):
    """collections.OrderedDict as the loader builds it, plus the attributes BUILD gave it
    (a state dict's `_metadata`). A real OrderedDict so SETITEMS semantics match."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attributes: dict = {}


class EmuCounter(dict):
    """collections.Counter: a dict subclass with its own `__init__`; only data goes in."""


def describe(value: object) -> str:
    if isinstance(value, Inert):
        return value.describe()
    return type(value).__name__
