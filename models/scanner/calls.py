"""What calling an allow-listed global produces, computed from its arguments without calling it.

The allow-list says which globals may be imported; this module says which argument shapes are
the ones torch.save and numpy actually write. A call with any other shape (a tensor whose view
runs past its storage, `_codecs.encode` with an exotic codec, BUILD on a function object) is
reported as `unknown` instead of being approximated: the census must describe what the loader
will build, and a surprising call is a sign someone is probing the loader.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Callable

from models.scanner import policy
from models.scanner.values import (
    EmuCounter, EmuOrderedDict, GlobalRef, NumpyArray, NumpyDType, NumpyScalar,
    StorageRef, TensorValue, TorchConstant,
)

if TYPE_CHECKING:
    from models.scanner.machine import Machine

MAX_BYTEARRAY = 1 << 20
_NUMPY_KINDS = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex"}


class Unmodelled(Exception):
    """The call is not one a weights file makes; `str(exc)` says why, for the finding."""


def call(machine: Machine, func: GlobalRef, args: tuple, *, newobj: bool = False) -> object:
    """The value `func(*args)` (or `func.__new__(func, *args)` when `newobj`) would produce."""
    handler = _HANDLERS.get(func.full_name)
    if handler is None:
        raise Unmodelled(f"call to `{func.full_name}` is not one a weights file makes")
    return handler(machine, args, newobj)


def _ordered_dict(machine, args, newobj):
    if newobj:
        return EmuOrderedDict()
    if not args:
        return EmuOrderedDict()
    if len(args) == 1 and isinstance(args[0], (dict, list, tuple)):
        return EmuOrderedDict(_pairs(args[0]))
    raise Unmodelled("OrderedDict built from something other than pairs")


def _counter(machine, args, newobj):
    if newobj or not args:
        return EmuCounter()
    if len(args) == 1 and isinstance(args[0], (dict, list, tuple, str, bytes)):
        return EmuCounter(Counter(args[0]))
    raise Unmodelled("Counter built from something other than data")


def _pairs(source) -> list:
    if isinstance(source, dict):
        return list(source.items())
    out = []
    for item in source:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise Unmodelled("OrderedDict items are not key/value pairs")
        out.append(tuple(item))
    return out


def _set(machine, args, newobj):
    if newobj or not args:
        return set()
    if len(args) == 1 and isinstance(args[0], (list, tuple, set, frozenset, dict)):
        return set(args[0])
    raise Unmodelled("set() of something other than a container")


def _bytearray(machine, args, newobj):
    if newobj or not args:
        return bytearray()
    source = args[0]
    if len(args) == 1 and isinstance(source, (bytes, bytearray)):
        return bytearray(source)
    if len(args) == 1 and isinstance(source, list) and all(
            type(b) is int and 0 <= b < 256 for b in source):
        return bytearray(source)
    if len(args) == 1 and type(source) is int and 0 <= source <= MAX_BYTEARRAY:
        return bytearray(source)
    raise Unmodelled("bytearray() of something other than bytes")


def _complex(machine, args, newobj):
    if 1 <= len(args) <= 2 and all(type(a) in (int, float) for a in args):
        return complex(*args)
    raise Unmodelled("complex() of something other than two numbers")


def _codecs_encode(machine, args, newobj):
    if (len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str)
            and args[1].lower().replace("_", "-") in ("latin1", "latin-1", "iso-8859-1")):
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            raise Unmodelled("_codecs.encode of text that is not latin-1") from None
    raise Unmodelled("_codecs.encode with arguments other than (str, 'latin1'); a codec name "
                     "can make the loader import a codec module")


def _size(machine, args, newobj):
    if len(args) == 1 and isinstance(args[0], (tuple, list)) and all(
            type(d) is int and d >= 0 for d in args[0]):
        return tuple(args[0])
    raise Unmodelled("torch.Size of something other than non-negative integers")


def _device(machine, args, newobj):
    if 1 <= len(args) <= 2 and isinstance(args[0], str) and (
            len(args) == 1 or type(args[1]) is int):
        return TorchConstant("device", ":".join(str(a) for a in args))
    raise Unmodelled("torch.device with unexpected arguments")


def _layout(machine, args, newobj):
    if len(args) == 1 and args[0] in policy.LAYOUTS:
        return TorchConstant("layout", args[0])
    raise Unmodelled("torch.serialization._get_layout of an unknown layout name")


# --- tensors ------------------------------------------------------------------------------

def dtype_name(value) -> str:
    if isinstance(value, GlobalRef) and value.module == "torch" and \
            value.name in policy.TORCH_DTYPES:
        return value.name
    raise Unmodelled(f"expected a torch dtype, got {_short(value)}")


def _ints(value, what: str) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)) and all(type(d) is int and d >= 0 for d in value):
        return tuple(value)
    raise Unmodelled(f"tensor {what} is not a tuple of non-negative integers")


def _tensor(storage, storage_offset, size, stride, dtype: str | None, kind: str) -> TensorValue:
    if not isinstance(storage, StorageRef):
        raise Unmodelled(f"tensor rebuilt from {_short(storage)} instead of a storage")
    if type(storage_offset) is not int or storage_offset < 0:
        raise Unmodelled("tensor storage offset is not a non-negative integer")
    shape = _ints(size, "size")
    strides = _ints(stride, "stride")
    if len(shape) != len(strides):
        raise Unmodelled("tensor size and stride have different lengths")
    dtype = dtype or storage.dtype
    element_bits = policy.TORCH_DTYPES[dtype][0]
    storage_bits = storage.numel * policy.TORCH_DTYPES[storage.dtype][0]
    if math.prod(shape):
        last = storage_offset + sum((d - 1) * s for d, s in zip(shape, strides))
        if (last + 1) * element_bits > storage_bits:
            raise Unmodelled(f"tensor view {list(shape)} at offset {storage_offset} runs past "
                             f"the end of its storage ({storage.numel} elements)")
    return TensorValue(dtype, shape, strides, storage_offset, storage, kind)


def _check_hooks(hooks) -> None:
    if not isinstance(hooks, dict) or hooks:
        raise Unmodelled("tensor has backward hooks; a weights file has none")


def _rebuild_tensor(machine, args, newobj):
    if len(args) != 4:
        raise Unmodelled("_rebuild_tensor takes 4 arguments")
    return _tensor(*args, dtype=None, kind="tensor")


def _rebuild_tensor_v2(machine, args, newobj):
    if len(args) not in (6, 7):
        raise Unmodelled("_rebuild_tensor_v2 takes 6 or 7 arguments")
    storage, offset, size, stride, requires_grad, hooks = args[:6]
    if type(requires_grad) is not bool:
        raise Unmodelled("requires_grad is not a bool")
    _check_hooks(hooks)
    _check_metadata(args[6] if len(args) == 7 else None)
    return _tensor(storage, offset, size, stride, dtype=None, kind="tensor")


def _rebuild_tensor_v3(machine, args, newobj):
    if len(args) not in (7, 8):
        raise Unmodelled("_rebuild_tensor_v3 takes 7 or 8 arguments")
    storage, offset, size, stride, requires_grad, hooks, dtype = args[:7]
    if type(requires_grad) is not bool:
        raise Unmodelled("requires_grad is not a bool")
    _check_hooks(hooks)
    _check_metadata(args[7] if len(args) == 8 else None)
    return _tensor(storage, offset, size, stride, dtype=dtype_name(dtype), kind="tensor")


def _check_metadata(metadata) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and type(v) in (bool, int) for k, v in metadata.items()):
        raise Unmodelled("tensor metadata is not a dict of flags")


def _rebuild_parameter(machine, args, newobj):
    if len(args) not in (3, 4) or not isinstance(args[0], TensorValue):
        raise Unmodelled("_rebuild_parameter of something other than a tensor")
    if type(args[1]) is not bool:
        raise Unmodelled("requires_grad is not a bool")
    _check_hooks(args[2])
    if len(args) == 4 and not _plain_state(args[3]):
        raise Unmodelled("parameter state is not plain data")
    return _retag(args[0], "parameter")


def _parameter_new(machine, args, newobj):
    if 1 <= len(args) <= 2 and isinstance(args[0], TensorValue) and (
            len(args) == 1 or type(args[1]) is bool):
        return _retag(args[0], "parameter")
    raise Unmodelled("torch.nn.Parameter of something other than a tensor")


def _retag(tensor: TensorValue, kind: str) -> TensorValue:
    return TensorValue(tensor.dtype, tensor.shape, tensor.stride, tensor.offset, tensor.storage,
                       kind)


def _rebuild_from_type_v2(machine, args, newobj):
    if len(args) != 4:
        raise Unmodelled("_rebuild_from_type_v2 takes 4 arguments")
    func, new_type, inner_args, state = args
    if not isinstance(func, GlobalRef) or func.full_name not in _TENSOR_REBUILDERS:
        raise Unmodelled("_rebuild_from_type_v2 wraps something other than a tensor rebuild")
    if not isinstance(new_type, GlobalRef) or new_type.full_name not in (
            "torch.Tensor", "torch.nn.parameter.Parameter"):
        raise Unmodelled("_rebuild_from_type_v2 makes a tensor subclass")
    if not isinstance(inner_args, tuple):
        raise Unmodelled("_rebuild_from_type_v2 arguments are not a tuple")
    if not _plain_state(state):
        raise Unmodelled("tensor attributes are not plain data")
    tensor = call(machine, func, inner_args)
    if not isinstance(tensor, TensorValue):
        raise Unmodelled("_rebuild_from_type_v2 did not produce a tensor")
    return _retag(tensor, "parameter" if new_type.name == "Parameter" else tensor.kind)


def _plain_state(state) -> bool:
    if state is None:
        return True
    if isinstance(state, tuple) and len(state) == 2:
        return all(_plain_state(s) for s in state)
    return isinstance(state, dict) and all(isinstance(k, str) for k in state)


def _rebuild_qtensor(machine, args, newobj):
    if len(args) != 7:
        raise Unmodelled("_rebuild_qtensor takes 7 arguments")
    storage, offset, size, stride, qparams, requires_grad, hooks = args
    if not (isinstance(qparams, tuple) and qparams and isinstance(qparams[0], GlobalRef)
            and qparams[0].name.startswith("per_")):
        raise Unmodelled("quantizer parameters are not a known scheme")
    _check_hooks(hooks)
    return _tensor(storage, offset, size, stride, dtype=None, kind="quantized")


def _rebuild_meta(machine, args, newobj):
    if len(args) not in (4, 5):
        raise Unmodelled("_rebuild_meta_tensor_no_storage takes 4 arguments")
    dtype = dtype_name(args[0])
    shape, _ = _ints(args[1], "size"), _ints(args[2], "stride")
    return TensorValue(dtype, shape, None, 0, None, "meta")


def _rebuild_from_cpu_tensor(machine, args, newobj):
    if len(args) != 4 or not isinstance(args[0], TensorValue):
        raise Unmodelled("_rebuild_device_tensor_from_cpu_tensor of something other than a tensor")
    return TensorValue(dtype_name(args[1]), args[0].shape, args[0].stride, args[0].offset,
                       args[0].storage, args[0].kind)


def _rebuild_from_numpy(machine, args, newobj):
    if len(args) != 4 or not isinstance(args[0], NumpyArray) or not args[0].built:
        raise Unmodelled("_rebuild_device_tensor_from_numpy of something other than an array")
    return TensorValue(dtype_name(args[1]), args[0].shape, None, 0, None, "tensor")


def _rebuild_sparse(machine, args, newobj):
    if len(args) != 2 or not isinstance(args[0], TorchConstant) or args[0].kind != "layout":
        raise Unmodelled("_rebuild_sparse_tensor without a layout")
    data = args[1]
    if not (isinstance(data, tuple) and len(data) >= 3):
        raise Unmodelled("sparse tensor data is not a tuple")
    values = data[1]
    if args[0].value != "torch.sparse_coo" or not isinstance(values, TensorValue):
        raise Unmodelled("only COO sparse tensors are modelled")
    return TensorValue(values.dtype, _ints(data[2], "size"), None, 0, None, "sparse")


# --- numpy --------------------------------------------------------------------------------

def _np_reconstruct(machine, args, newobj):
    if (len(args) == 3 and isinstance(args[0], GlobalRef) and args[0].full_name == "numpy.ndarray"
            and args[1] == (0,) and args[2] in (b"b", "b")):
        return NumpyArray()
    raise Unmodelled("numpy _reconstruct of something other than a plain ndarray")


def _np_dtype(machine, args, newobj):
    if len(args) == 3 and isinstance(args[0], str) and all(type(a) is bool for a in args[1:]):
        descr = args[0]
        kind, size = descr[:1], descr[1:]
        if kind in _NUMPY_KINDS and size.isdigit() and 0 < int(size) <= 16:
            return NumpyDType(descr, int(size))
    raise Unmodelled("numpy dtype other than a plain number type (object and structured "
                     "dtypes can carry arbitrary objects)")


def _np_scalar(machine, args, newobj):
    if (len(args) == 2 and isinstance(args[0], NumpyDType) and isinstance(args[1], bytes)
            and len(args[1]) == args[0].itemsize):
        return NumpyScalar(args[0])
    raise Unmodelled("numpy scalar other than plain bytes of a number type")


def build(machine: Machine, inst, state) -> None:
    """BUILD: `inst.__setstate__(state)` or its default. Only states torch and numpy write."""
    if isinstance(inst, EmuOrderedDict):
        if isinstance(state, dict) and all(isinstance(k, str) for k in state):
            inst.attributes.update(state)
            return
        raise Unmodelled("BUILD on an OrderedDict with a state that is not a dict of names")
    if isinstance(inst, NumpyDType):
        if (isinstance(state, tuple) and len(state) == 8 and state[1] in ("<", ">", "|", "=")
                and state[2] is None and state[3] is None and state[4] is None):
            inst.state_set = True
            return
        raise Unmodelled("BUILD on a numpy dtype with a state numpy does not write")
    if isinstance(inst, NumpyArray):
        if (isinstance(state, tuple) and len(state) == 5 and type(state[0]) is int
                and isinstance(state[2], NumpyDType) and type(state[3]) is bool
                and isinstance(state[4], (bytes, bytearray)) and not inst.built):
            shape = _ints(state[1], "shape")
            if math.prod(shape) * state[2].itemsize != len(state[4]):
                raise Unmodelled("numpy array data does not match its shape")
            inst.dtype, inst.shape, inst.built = state[2], shape, True
            return
        raise Unmodelled("BUILD on a numpy array with a state numpy does not write")
    raise Unmodelled(f"BUILD (which calls __setstate__ or sets attributes) on {_short(inst)}")


def _short(value) -> str:
    from models.scanner.values import describe
    return describe(value)


_TENSOR_REBUILDERS = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._utils._rebuild_qtensor": _rebuild_qtensor,
    "torch._utils._rebuild_meta_tensor_no_storage": _rebuild_meta,
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": _rebuild_from_cpu_tensor,
    "torch._utils._rebuild_device_tensor_from_numpy": _rebuild_from_numpy,
    "torch._utils._rebuild_sparse_tensor": _rebuild_sparse,
}

_HANDLERS: dict[str, Callable] = {
    **_TENSOR_REBUILDERS,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.nn.parameter.Parameter": _parameter_new,
    "collections.OrderedDict": _ordered_dict,
    "collections.Counter": _counter,
    "builtins.set": _set,
    "builtins.bytearray": _bytearray,
    "builtins.complex": _complex,
    "_codecs.encode": _codecs_encode,
    "torch.Size": _size,
    "torch.device": _device,
    "torch.serialization._get_layout": _layout,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy._core.multiarray._reconstruct": _np_reconstruct,
    "numpy.dtype": _np_dtype,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
}

HANDLED = frozenset(_HANDLERS)
