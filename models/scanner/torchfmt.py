"""What torch.load expects around its pickles: persistent ids naming storages, and the
constants of the legacy format. Shared by the zip and legacy readers."""

from __future__ import annotations

import re

from models.scanner import policy
from models.scanner.calls import Unmodelled
from models.scanner.values import GlobalRef, StorageRef

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_KEY = re.compile(r"[0-9]{1,20}")
LOCATION = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
STORAGE_MODULES = ("torch", "torch.cuda")


def storage_dtype(storage_type) -> tuple[str, bool]:
    """(dtype, untyped) for the storage-type global in a persistent id."""
    if isinstance(storage_type, GlobalRef) and storage_type.category == policy.ALLOWED_CATEGORY:
        if storage_type.full_name == "torch.storage.UntypedStorage":
            return "uint8", True
        if storage_type.module in STORAGE_MODULES and \
                storage_type.name in policy.TORCH_STORAGE_DTYPES:
            return policy.TORCH_STORAGE_DTYPES[storage_type.name], False
    raise Unmodelled("persistent id names something other than a torch storage type")


def text(value) -> str:
    """torch's `_maybe_decode_ascii`: Python 2 pickles may carry these as bytes."""
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise Unmodelled("persistent id field is not ASCII") from None
    if isinstance(value, str):
        return value
    raise Unmodelled("persistent id field is not text")


class StorageTable:
    """The storages a pickle's persistent ids named. A key named twice must mean the same
    storage both times (torch keeps the first; a second, different meaning is a trick)."""

    def __init__(self) -> None:
        self.by_key: dict[str, StorageRef] = {}

    def define(self, key, storage_type, location, numel) -> StorageRef:
        dtype, untyped = storage_dtype(storage_type)
        key = text(key)
        if not STORAGE_KEY.fullmatch(key):
            raise Unmodelled(f"storage key {key[:40]!r} is not a number")
        location = text(location)
        if not LOCATION.fullmatch(location):
            raise Unmodelled(f"storage location {location[:40]!r} is not a device name")
        if type(numel) is not int or numel < 0:
            raise Unmodelled("storage size is not a non-negative integer")
        known = self.by_key.get(key)
        if known is not None:
            if (known.dtype, known.numel, known.untyped) != (dtype, numel, untyped):
                raise Unmodelled(f"storage {key} is named twice with different types or sizes")
            return known
        ref = StorageRef(key, dtype, numel, location, untyped)
        self.by_key[key] = ref
        return ref

    def nbytes(self, key: str) -> int:
        ref = self.by_key[key]
        return ref.numel * policy.TORCH_DTYPES[ref.dtype][0] // 8


def zip_persistent_load(table: StorageTable):
    """torch.serialization._load's persistent_load: ('storage', type, key, location, numel)."""
    def load(machine, pid):
        if not isinstance(pid, tuple) or len(pid) != 5:
            raise Unmodelled("persistent id is not the 5-tuple torch.save writes")
        if text(pid[0]) != "storage":
            raise Unmodelled(f"persistent id of kind {str(pid[0])[:20]!r}, not 'storage'")
        return table.define(pid[2], pid[1], pid[3], pid[4])
    return load


def legacy_persistent_load(table: StorageTable):
    """torch.serialization._legacy_load's persistent_load: ('storage', type, root key,
    location, numel, view metadata). The 'module' kind returns a class and is reported."""
    def load(machine, pid):
        if not isinstance(pid, tuple) or len(pid) != 6:
            raise Unmodelled("persistent id is not the 6-tuple legacy torch.save writes")
        if text(pid[0]) != "storage":
            raise Unmodelled(f"persistent id of kind {str(pid[0])[:20]!r}, not 'storage' "
                             "(a whole module was saved)")
        root = table.define(pid[2], pid[1], pid[3], pid[4])
        view = pid[5]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and type(view[1]) is int
                and type(view[2]) is int and view[1] >= 0 and view[2] >= 0
                and view[1] + view[2] <= root.numel):
            raise Unmodelled("storage view does not fit inside its root storage")
        return StorageRef(text(view[0]), root.dtype, view[2], root.location, root.untyped,
                          view_of=root.key, view_offset=view[1])
    return load
