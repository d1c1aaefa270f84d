"""Which globals a pickle may import: the allow-list, the deny-list, and everything in between.

`safe` needs every imported global on ALLOWED. ALLOWED is exactly what
`torch.load(weights_only=True)` allows by default in torch 2.13 (torch/_weights_only_unpickler.py,
`_get_allowed_globals`; tests/scanner/test_policy.py keeps the two in step) plus the handful of
numpy callables that rebuild a plain numeric array, which weights_only refuses only because
torch does not control numpy's code.

DANGEROUS is built from the public record: the deny-lists of picklescan, modelscan and fickling,
the gadgets in their advisories (e.g. GHSA-655q-fx9r-782v for pickle-in-pickle via
`torch.serialization.load`, the `runpy._run_code`, `pydoc.locate`, `operator.attrgetter` and
`functools.partial` bypasses), and the loaders that read another file. It only decides between
`unsafe` and `unknown`: anything off the allow-list quarantines either way, so an omission here
can never make a file `safe`.
"""

from __future__ import annotations

import _compat_pickle

# torch 2.13 `_get_allowed_globals().keys()`, verbatim.
TORCH_WEIGHTS_ONLY = frozenset("""
_codecs.encode builtins.bytearray builtins.complex builtins.set collections.Counter
collections.OrderedDict torch.BFloat16Storage torch.BFloat16Tensor torch.BoolStorage
torch.BoolTensor torch.ByteStorage torch.ByteTensor torch.CharStorage torch.CharTensor
torch.ComplexDoubleStorage torch.ComplexFloatStorage torch.DoubleStorage torch.DoubleTensor
torch.FloatStorage torch.FloatTensor torch.HalfStorage torch.HalfTensor torch.IntStorage
torch.IntTensor torch.LongStorage torch.LongTensor torch.QInt32Storage torch.QInt8Storage
torch.QUInt2x4Storage torch.QUInt4x2Storage torch.QUInt8Storage torch.ShortStorage
torch.ShortTensor torch.Size torch.Tensor torch._tensor._rebuild_from_type_v2
torch._utils._rebuild_device_tensor_from_cpu_tensor torch._utils._rebuild_device_tensor_from_numpy
torch._utils._rebuild_meta_tensor_no_storage torch._utils._rebuild_nested_tensor
torch._utils._rebuild_parameter torch._utils._rebuild_parameter_with_state
torch._utils._rebuild_qtensor torch._utils._rebuild_sparse_tensor torch._utils._rebuild_tensor
torch._utils._rebuild_tensor_v2 torch._utils._rebuild_tensor_v3
torch._utils._rebuild_wrapper_subclass torch.bfloat16 torch.bits16 torch.bits1x8 torch.bits2x4
torch.bits4x2 torch.bits8 torch.bool torch.complex128 torch.complex32 torch.complex64
torch.cuda.BFloat16Storage torch.cuda.BFloat16Tensor torch.cuda.BoolStorage torch.cuda.BoolTensor
torch.cuda.ByteStorage torch.cuda.ByteTensor torch.cuda.CharStorage torch.cuda.CharTensor
torch.cuda.ComplexDoubleStorage torch.cuda.ComplexFloatStorage torch.cuda.DoubleStorage
torch.cuda.DoubleTensor torch.cuda.FloatStorage torch.cuda.FloatTensor torch.cuda.HalfStorage
torch.cuda.HalfTensor torch.cuda.IntStorage torch.cuda.IntTensor torch.cuda.LongStorage
torch.cuda.LongTensor torch.cuda.ShortStorage torch.cuda.ShortTensor
torch.cuda.sparse.BFloat16Tensor torch.cuda.sparse.ByteTensor torch.cuda.sparse.CharTensor
torch.cuda.sparse.DoubleTensor torch.cuda.sparse.FloatTensor torch.cuda.sparse.HalfTensor
torch.cuda.sparse.IntTensor torch.cuda.sparse.LongTensor torch.cuda.sparse.ShortTensor
torch.device torch.float16 torch.float32 torch.float4_e2m1fn_x2 torch.float64
torch.float8_e4m3fn torch.float8_e4m3fnuz torch.float8_e5m2 torch.float8_e5m2fnuz
torch.float8_e8m0fnu torch.int1 torch.int16 torch.int2 torch.int3 torch.int32 torch.int4
torch.int5 torch.int6 torch.int64 torch.int7 torch.int8 torch.nn.parameter.Parameter
torch.per_channel_affine torch.per_channel_affine_float_qparams torch.per_channel_symmetric
torch.per_tensor_affine torch.per_tensor_symmetric torch.qint32 torch.qint8 torch.quint2x4
torch.quint4x2 torch.quint8 torch.serialization._get_layout torch.sparse.BFloat16Tensor
torch.sparse.ByteTensor torch.sparse.CharTensor torch.sparse.DoubleTensor torch.sparse.FloatTensor
torch.sparse.HalfTensor torch.sparse.IntTensor torch.sparse.LongTensor torch.sparse.ShortTensor
torch.storage.TypedStorage torch.storage.UntypedStorage torch.uint1 torch.uint16 torch.uint2
torch.uint3 torch.uint32 torch.uint4 torch.uint5 torch.uint6 torch.uint64 torch.uint7 torch.uint8
""".split())

# numpy's own pickle of a plain ndarray / scalar / dtype (numpy 1.x and 2.x module paths).
NUMPY_RECONSTRUCTION = frozenset("""
numpy.core.multiarray._reconstruct numpy._core.multiarray._reconstruct
numpy.core.multiarray.scalar numpy._core.multiarray.scalar numpy.ndarray numpy.dtype
""".split())

ALLOWED = TORCH_WEIGHTS_ONLY | NUMPY_RECONSTRUCTION

# Modules where importing anything at all is dangerous (submodules included).
DANGEROUS_MODULES = frozenset("""
os posix nt posixpath ntpath subprocess _posixsubprocess sys socket _socket ssl shutil runpy pty
pdb bdb pickle _pickle cPickle pickletools dill cloudpickle joblib marshal shelve
importlib imp pkgutil zipimport pydoc code codeop commands webbrowser ctypes _ctypes
multiprocessing asyncio aiohttp requests urllib urllib2 urllib3 httplib http ftplib smtplib
telnetlib xmlrpc venv ensurepip pip setuptools distutils timeit trace cProfile profile signal
_thread threading tempfile glob io _io fileinput linecache sqlite3 _sqlite3 platform sysconfig
numpy.f2py numpy.distutils numpy.testing numpy.ctypeslib numpy.lib.npyio
torch.hub torch.package torch.utils.cpp_extension torch._inductor torch._dynamo torch.jit
torch.fx torch.utils.data.datapipes torch.utils._config_module torch.utils.collect_env
torch.utils.bottleneck torch.distributed torch.multiprocessing torch._C._jit_tree_views
idlelib lib2to3 doctest antigravity this pathlib _pathlib shlex mmap resource ptrace gc inspect
""".split())

# Single callables that are dangerous even though their module is not.
DANGEROUS_NAMES = frozenset("""
builtins.eval builtins.exec builtins.compile builtins.open builtins.__import__ builtins.getattr
builtins.setattr builtins.delattr builtins.breakpoint builtins.input builtins.globals
builtins.locals builtins.vars builtins.apply builtins.execfile builtins.file builtins.type
builtins.memoryview builtins.help builtins.exit builtins.quit
operator.attrgetter operator.itemgetter operator.methodcaller operator.call
functools.partial functools.partialmethod functools.reduce functools.singledispatch
torch.load torch.save torch.serialization.load torch.serialization.save torch.from_file
torch.storage.UntypedStorage.from_file torch.classes torch.ops torch._ops
torch.utils.data.datapipes.utils.decoder.basichandlers
numpy.load numpy.save numpy.savez numpy.fromfile numpy.tofile numpy.memmap numpy.loadtxt
numpy.genfromtxt numpy.fromregex
codecs.open _codecs.lookup codecs.lookup
types.FunctionType types.CodeType types.LambdaType types.MethodType
collections.namedtuple typing._eval_type copyreg.add_extension torch.storage._load_from_bytes
logging.FileHandler logging.handlers logging.config zipfile.ZipFile tarfile.open tarfile.TarFile
gzip.open bz2.open lzma.open dbm.open
""".split())

# Whole objects that should have been saved as a state dict.
MODEL_OBJECT_MODULES = ("torch.nn", "torch.optim", "transformers.models", "torchvision.models",
                        "timm.models", "__main__")

TORCH_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8", "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
}

# torch dtype name -> (element bits, safetensors dtype). Sub-byte and quantized types keep a
# torch-style name: safetensors has no equivalent, and conversion refuses them.
TORCH_DTYPES: dict[str, tuple[int, str]] = {
    "float32": (32, "F32"), "float64": (64, "F64"), "float16": (16, "F16"),
    "bfloat16": (16, "BF16"), "int64": (64, "I64"), "int32": (32, "I32"), "int16": (16, "I16"),
    "int8": (8, "I8"), "uint8": (8, "U8"), "uint16": (16, "U16"), "uint32": (32, "U32"),
    "uint64": (64, "U64"), "bool": (8, "BOOL"), "complex64": (64, "C64"),
    "complex128": (128, "C128"), "complex32": (32, "C32"),
    "float8_e4m3fn": (8, "F8_E4M3"), "float8_e5m2": (8, "F8_E5M2"),
    "float8_e4m3fnuz": (8, "F8_E4M3FNUZ"), "float8_e5m2fnuz": (8, "F8_E5M2FNUZ"),
    "float8_e8m0fnu": (8, "F8_E8M0"), "float4_e2m1fn_x2": (8, "F4_X2"),
    "qint8": (8, "QINT8"), "quint8": (8, "QUINT8"), "qint32": (32, "QINT32"),
    "quint4x2": (8, "QUINT4X2"), "quint2x4": (8, "QUINT2X4"),
    "bits8": (8, "BITS8"), "bits16": (16, "BITS16"), "bits1x8": (8, "BITS1X8"),
    "bits2x4": (8, "BITS2X4"), "bits4x2": (8, "BITS4X2"),
    # Sub-byte integer types: one element per byte in storage (torch's itemsize is 1).
    **{f"{sign}int{bits}": (8, f"{sign.upper()}INT{bits}") for sign in ("", "u")
       for bits in range(1, 8)},
}

LAYOUTS = frozenset({"torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch.sparse_csc",
                     "torch.sparse_bsr", "torch.sparse_bsc", "torch._mkldnn", "torch.jagged"})

ALLOWED_CATEGORY = "allowed"
DANGEROUS_CATEGORY = "dangerous"
MODEL_OBJECT_CATEGORY = "model-object"
UNKNOWN_CATEGORY = "unknown"


def fix_py2_name(module: str, name: str) -> tuple[str, str]:
    """The (module, name) that CPython's `_pickle` find_class looks up for protocols < 3, where
    `fix_imports` maps Python 2 names: `commands.getoutput` really imports subprocess."""
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def torch_loader_name(module: str, name: str) -> tuple[str, str]:
    """torch.load's own find_class renames `torch.tensor` to `torch._tensor`."""
    if module == "torch.tensor":
        return "torch._tensor", name
    return module, name


def full_name(module: str, name: str) -> str:
    return f"{module}.{name}"


def classify(module: str, name: str) -> str:
    if full_name(module, name) in ALLOWED:
        return ALLOWED_CATEGORY
    if _is_dangerous(module, name):
        return DANGEROUS_CATEGORY
    if module == "__main__" or any(module == m or module.startswith(m + ".")
                                   for m in MODEL_OBJECT_MODULES):
        return MODEL_OBJECT_CATEGORY
    return UNKNOWN_CATEGORY


def _is_dangerous(module: str, name: str) -> bool:
    if module in ("__builtin__", "__builtins__"):
        module = "builtins"
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        if ".".join(parts[:i]) in DANGEROUS_MODULES:
            return True
    first = name.split(".", 1)[0]
    dotted = f"{module}.{name}"
    candidates = {dotted, f"{module}.{first}"}
    # A dotted name walks attributes (protocol 4+), so `torch.serialization` + `load` and
    # `torch` + `serialization.load` reach the same callable.
    for i in range(1, len(dotted.split("."))):
        candidates.add(".".join(dotted.split(".")[: i + 1]))
    return bool(candidates & DANGEROUS_NAMES)


def display_name(module: str, name: str) -> str:
    """`torch.nn.modules.container.Sequential` -> `torch.nn.Sequential` for messages."""
    if module.startswith("torch.nn.modules.") and "." not in name:
        return f"torch.nn.{name}"
    return full_name(module, name)
