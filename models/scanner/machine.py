"""A static emulator of CPython's pickle machine (protocols 0-5), for exactly one pickle.

It executes every opcode the way Modules/_pickle.c does, with one difference: where the real
unpickler would import a global it records the import and pushes an inert stand-in, and where
it would call something it asks `calls.py` what an allow-listed callable would return. So the
stack, the memo and the marks are the real ones, STACK_GLOBAL sees the operands the real loader
sees (a computed operand is reported, not guessed), and a parse error happens exactly where the
real loader fails, after everything before it has already run: everything seen up to that point
is reported, and the error itself makes the verdict `unknown` (the "nullifAI" broken pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models.scanner import calls, cparse, policy
from models.scanner.cparse import PickleSyntaxError
from models.scanner.data_opcodes import DataOpcodes, MemoBomb
from models.scanner.object_opcodes import ObjectOpcodes
from models.scanner.reader import FrameViolation, RegionReader, Truncated
from models.scanner.result import UNKNOWN, UNSAFE, Finding, FindingList
from models.scanner.values import GlobalRef, Inert, Opaque, describe

MAX_OPS = 20_000_000
HIGHEST_PROTOCOL = 5


class StopScan(Exception):
    """Raised by a persistent_load hook (or the budget) to end emulation with a finding."""


@dataclass
class LoaderContext:
    """How the code around the pickle behaves: torch.load passes encoding='utf-8', has its own
    find_class renames and a persistent_load; plain pickle.load has neither."""
    encoding: str = "ASCII"
    torch: bool = False
    rename_torch_tensor: bool = True   # the zip loader's find_class does; the legacy one not
    persistent_load: Callable[["Machine", object], object] | None = None


@dataclass
class PickleRun:
    value: object = None
    complete: bool = False
    start: int = 0
    end: int = 0
    protocol: int = 0
    globals: list[tuple[str, int]] = field(default_factory=list)


class Machine(ObjectOpcodes, DataOpcodes):
    def __init__(self, reader: RegionReader, *, context: LoaderContext, findings: FindingList,
                 where: str, member: str | None, offset_base: int = 0):
        self.reader = reader
        self.context = context
        self.encoding = context.encoding.lower()
        self.findings = findings
        self.where = where          # how a message names the place: `data.pkl`, the file name
        self.member = member        # Finding.member (None for a plain file)
        self.offset_base = offset_base  # added to region offsets when member is None
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.proto = 0
        self.op_offset = 0
        self.run = PickleRun()
        self.skipped = False
        reader.on_skip = self._frame_skip

    # --- reporting ---------------------------------------------------------------------------

    def offset(self, region_offset: int | None = None) -> int:
        at = self.op_offset if region_offset is None else region_offset
        return at if self.member is not None else at + self.offset_base

    def report(self, severity: str, code: str, message: str, global_name: str | None = None):
        self.findings.add(Finding(severity, code, message, member=self.member,
                                  offset=self.offset(), global_name=global_name))

    def flag(self, code: str, message: str) -> None:
        self.report(UNKNOWN, code, f"{message} (byte {self.offset()} of `{self.where}`)")

    # --- the loop ----------------------------------------------------------------------------

    def execute(self) -> PickleRun:
        self.run.start = self.reader.pos
        dispatch = _DISPATCH
        reader = self.reader
        read_byte = reader.read_byte
        ops = 0
        try:
            while True:
                self.op_offset = reader._pos
                code = read_byte()
                if code == 0x2E:  # STOP
                    self.run.value = self.pop()
                    self.run.complete = True
                    break
                handler = dispatch.get(code)
                if handler is None:
                    raise PickleSyntaxError(f"invalid load key {bytes([code])!r}")
                handler(self)
                ops += 1
                if ops > MAX_OPS:
                    raise StopScan(f"more than {MAX_OPS:,} opcodes; too large to emulate")
        except Truncated as exc:
            self._broken(f"the pickle ends early ({exc})")
        except PickleSyntaxError as exc:
            self._broken(str(exc))
        except FrameViolation as exc:
            self.flag("frame-straddle", f"{exc}. CPython's C unpickler, reading from a file, "
                      "drops the rest of the frame here and reads past it, so the opcodes it runs "
                      "differ from the bytes in order; pickle.py refuses the file")
        except StopScan as exc:
            self.flag("scan-limit", str(exc))
        except MemoBomb as exc:
            self.flag("memo-bomb", str(exc))
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
            # The real unpickler raises the same class of error here (unhashable key,
            # bad index...), so loading stops at this opcode too.
            self._broken(f"{type(exc).__name__}: {exc}")
        except RecursionError:
            self.flag("scan-limit", "data nested too deeply to emulate")
        self.run.end = self.reader.consumed
        self.run.protocol = self.proto
        return self.run

    def _broken(self, reason: str) -> None:
        self.report(UNKNOWN, "pickle-error",
                    f"pickle stops loading at byte {self.offset()} of `{self.where}`: {reason}; "
                    "a loader runs everything before this point before it fails")

    # --- globals -----------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> GlobalRef:
        written = f"{module}.{name}"
        if self.proto < 3:
            module, name = policy.fix_py2_name(module, name)
        if self.context.torch and self.context.rename_torch_tensor:
            module, name = policy.torch_loader_name(module, name)
        category = policy.classify(module, name)
        ref = GlobalRef(module, name, category, self.offset())
        full = ref.full_name
        self.run.globals.append((full, self.offset()))
        alias = f" (written as `{written}`)" if written != full else ""
        where = f"byte {self.offset()} of `{self.where}`"
        if category == policy.DANGEROUS_CATEGORY:
            self.report(UNSAFE, "dangerous-global",
                        f"global `{full}`{alias} imported at {where}: it can run code or reach "
                        "the file system or network when the file is loaded", full)
        elif category == policy.MODEL_OBJECT_CATEGORY:
            self.report(UNKNOWN, "whole-object-pickled",
                        f"whole `{policy.display_name(module, name)}` object pickled (global at "
                        f"{where}); save `model.state_dict()` instead", full)
        elif category == policy.UNKNOWN_CATEGORY:
            self.report(UNKNOWN, "global-not-allowed",
                        f"global `{full}`{alias} imported at {where} is not on the allow-list "
                        "of weight-rebuilding functions", full)
        return ref

    def op_global(self):
        module = cparse.decode_line(self.reader.readline(), "utf-8")
        name = cparse.decode_line(self.reader.readline(), "utf-8")
        self.stack.append(self.find_class(module, name))

    def op_stack_global(self):
        name = self.pop()
        module = self.pop()
        if isinstance(name, Inert) or isinstance(module, Inert):
            self.flag("computed-global", "STACK_GLOBAL imports a name computed while loading "
                      f"({describe(module)} . {describe(name)}); what it imports cannot be "
                      "known without running the file")
            self.stack.append(Opaque("a computed global"))
            return
        if type(name) is not str or type(module) is not str:
            raise PickleSyntaxError("STACK_GLOBAL requires str")
        self.stack.append(self.find_class(module, name))

    def op_inst(self):
        start = self.marker()
        module = cparse.decode_line(self.reader.readline(), "ascii")
        name = cparse.decode_line(self.reader.readline(), "ascii")
        cls = self.find_class(module, name)
        args = self.pop_tuple(start)
        self.stack.append(self.invoke(cls, args, "INST"))

    def op_obj(self):
        start = self.marker()
        if len(self.stack) - start < 1:
            raise self.underflow()
        args = self.pop_tuple(start + 1)
        cls = self.pop()
        self.stack.append(self.invoke(cls, args, "OBJ"))

    def _extension(self, width: int):
        code = cparse.le_signed(self.reader.read(width)) if width == 4 else \
            cparse.le_unsigned(self.reader.read(width))
        if code <= 0:
            raise PickleSyntaxError("EXT specifies code <= 0")
        self.flag("extension-code", f"EXT opcode imports extension code {code} from the copyreg "
                  "registry; which global that is depends on the loading process")
        self.stack.append(Opaque(f"extension code {code}"))

    def op_ext1(self):
        self._extension(1)

    def op_ext2(self):
        self._extension(2)

    def op_ext4(self):
        self._extension(4)

    # --- calls -------------------------------------------------------------------------------

    def invoke(self, func, args: tuple, how: str, *, newobj: bool = False):
        if isinstance(func, GlobalRef):
            if func.category != policy.ALLOWED_CATEGORY:
                return Opaque(f"{how} of {func.full_name}")  # reported at import
            try:
                return calls.call(self, func, args, newobj=newobj)
            except calls.Unmodelled as exc:
                self.flag("unexpected-call", f"{how}: {exc}")
                return Opaque(f"{how} of {func.full_name}")
        if isinstance(func, Opaque):
            self.flag("computed-call", f"{how} calls {describe(func)}, a value computed while "
                      "loading")
            return Opaque(f"{how} of a computed value")
        raise TypeError(f"{describe(func)} is not callable")

    def op_reduce(self):
        args = self.pop()
        func = self.pop()
        if not isinstance(args, tuple):
            raise TypeError("argument list must be a tuple")
        self.stack.append(self.invoke(func, args, "REDUCE"))

    def _newobj(self, with_kwargs: bool):
        kwargs = self.pop() if with_kwargs else None
        args = self.pop()
        cls = self.pop()
        opname = "NEWOBJ_EX" if with_kwargs else "NEWOBJ"
        if not isinstance(cls, Inert):
            raise PickleSyntaxError(f"{opname} class argument must be a type")
        if not isinstance(args, tuple):
            raise PickleSyntaxError(f"{opname} args argument must be a tuple")
        if with_kwargs and not isinstance(kwargs, dict):
            raise PickleSyntaxError(f"{opname} kwargs argument must be a dict")
        if kwargs:
            self.flag("unexpected-call", f"{opname} passes keyword arguments to "
                      f"{describe(cls)}")
            self.stack.append(Opaque(opname))
            return
        self.stack.append(self.invoke(cls, args, opname, newobj=True))

    def op_newobj(self):
        self._newobj(False)

    def op_newobj_ex(self):
        self._newobj(True)

    # --- persistent ids, protocol, frames ----------------------------------------------------

    def _persistent(self, pid):
        hook = self.context.persistent_load
        if hook is None:
            raise PickleSyntaxError("A load persistent id instruction was encountered, but no "
                                    "persistent_load function was specified.")
        try:
            self.stack.append(hook(self, pid))
        except calls.Unmodelled as exc:
            self.flag("unexpected-persistent-id", str(exc))
            self.stack.append(Opaque("a persistent id"))

    def op_persid(self):
        if self.context.persistent_load is None:
            self._persistent(None)
        self._persistent(cparse.decode_line(self.reader.readline(), "ascii", min_length=1))

    def op_binpersid(self):
        if self.context.persistent_load is None:
            self._persistent(None)
        self._persistent(self.pop())

    def op_proto(self):
        version = self.reader.read(1)[0]
        if version > HIGHEST_PROTOCOL:
            raise PickleSyntaxError(f"unsupported pickle protocol: {version}")
        self.proto = version

    def op_frame(self):
        self.reader.load_frame(cparse.le_unsigned(self.reader.read(8)))

    def _frame_skip(self, at: int, buffer_end: int) -> None:
        if not self.skipped:
            self.skipped = True
            self.report(UNKNOWN, "frame-straddle",
                        f"an opcode at byte {self.offset(at)} of `{self.where}` runs past the end "
                        f"of its FRAME: CPython's C unpickler skips to byte "
                        f"{self.offset(buffer_end)} and reads on from there, so the opcodes it "
                        "runs are not the bytes in order (pickle.py refuses the file)")


_NAMES = {
    "(": "mark", "0": "pop", "1": "pop_mark", "2": "dup", "F": "float", "I": "int",
    "J": "binint", "K": "binint1", "L": "long", "M": "binint2", "N": "none", "P": "persid",
    "Q": "binpersid", "R": "reduce", "S": "string", "T": "binstring", "U": "short_binstring",
    "V": "unicode", "X": "binunicode", "a": "append", "b": "build", "c": "global", "d": "dict",
    "}": "empty_dict", "e": "appends", "g": "get", "h": "binget", "i": "inst",
    "j": "long_binget", "l": "list", "]": "empty_list", "o": "obj", "p": "put", "q": "binput",
    "r": "long_binput", "s": "setitem", "t": "tuple", ")": "empty_tuple", "u": "setitems",
    "G": "binfloat", "\x80": "proto", "\x81": "newobj", "\x82": "ext1", "\x83": "ext2",
    "\x84": "ext4", "\x85": "tuple1", "\x86": "tuple2", "\x87": "tuple3", "\x88": "newtrue",
    "\x89": "newfalse", "\x8a": "long1", "\x8b": "long4", "B": "binbytes",
    "C": "short_binbytes", "\x8c": "short_binunicode", "\x8d": "binunicode8",
    "\x8e": "binbytes8", "\x8f": "empty_set", "\x90": "additems", "\x91": "frozenset",
    "\x92": "newobj_ex", "\x93": "stack_global", "\x94": "memoize", "\x95": "frame",
    "\x96": "bytearray8", "\x97": "next_buffer", "\x98": "readonly_buffer",
}
_DISPATCH = {ord(op): getattr(Machine, f"op_{name}") for op, name in _NAMES.items()}
