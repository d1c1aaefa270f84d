"""The emulator runs opcodes exactly as CPython's C unpickler does: checked against the real
`_pickle` on hand-picked tricky inputs and on generated streams (which cannot import anything,
so handing them to the real unpickler in this process is harmless)."""

from __future__ import annotations

import io
import pickle
import pickletools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.scanner.helpers import emulate, same_value, scan_bytes
from tests.scanner.strategies import INT_TEXT, NoGlobals, data_stream


def real_load(data: bytes, encoding: str = "ASCII"):
    stream = io.BytesIO(data)
    try:
        return "ok", NoGlobals(stream, encoding=encoding).load(), stream.tell()
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}", None


@pytest.mark.parametrize("text", INT_TEXT + [b"0x10", b"I", b"1" * 30, b"-0x8000000000000000"])
@pytest.mark.parametrize("opcode", [b"I", b"L"])
def test_text_integers_parse_as_the_c_unpickler_parses_them(opcode, text):
    data = opcode + text + b"\n."
    real = real_load(data)
    run, findings = emulate(data)
    if real[0] == "ok":
        assert run.complete and not findings, findings
        assert type(run.value) is type(real[1]) and run.value == real[1]
    else:
        assert findings and findings[0].code == "pickle-error"


def test_it_reads_i0x10_as_sixteen_and_i01_as_true_like_cpython():
    assert emulate(b"I0x10\n.")[0].value == 16 == pickle.loads(b"I0x10\n.")
    assert emulate(b"I01\n.")[0].value is True is pickle.loads(b"I01\n.")
    assert emulate(b"I010\n.")[0].value == 8 == pickle.loads(b"I010\n.")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=data_stream(), encoding=st.sampled_from(["ASCII", "utf-8", "bytes"]))
def test_generated_data_pickles_load_identically(data, encoding):
    _check_against_real(data, encoding)


def _check_against_real(data: bytes, encoding: str) -> None:
    real = real_load(data, encoding)
    run, findings = emulate(data, encoding=encoding)
    if real[0] == "ok":
        assert run.complete and not findings, (data, real, findings)
        assert same_value(run.value, real[1]), (data, run.value, real[1])
        assert run.end == real[2]
    else:
        assert findings, (data, real, run.value)


def test_stack_global_operands_come_from_the_memo():
    data = (b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94"  # memo 0, 1
            b"\x8c\x03abc\x8c\x03def0"                       # decoys, one popped
            b"0h\x00h\x01\x93.")                             # pop, GET 0, GET 1, STACK_GLOBAL
    run, findings = emulate(data)
    assert run.globals[0][0] == "posix.system"
    assert findings[0].severity == "unsafe" and findings[0].offset == len(data) - 2


def test_memoize_after_pop_and_dup_indexes_like_cpython():
    data = b"\x80\x04K\x01\x94K\x020K\x03\x94\x8c\x02os\x94\x8c\x06system\x94h\x02h\x03\x93."
    run, findings = emulate(data)
    assert run.globals == [("os.system", len(data) - 2)]


def test_a_computed_stack_global_operand_is_unknown():
    data = (b"\x80\x04c_codecs\nencode\n\x8c\x02os\x8c\x06latin1\x86R"   # bytes, not str
            b"\x8c\x06system\x93.")
    run, findings = emulate(data)
    assert {f.code for f in findings} >= {"pickle-error"} or any(
        f.code == "computed-global" for f in findings)
    data = b"\x80\x04cbuiltins\nstr\n\x8c\x02os\x85R\x8c\x06system\x93."
    result = scan_bytes(data)
    assert result.verdict != "safe"
    assert any(f.code == "computed-global" for f in result.findings)


def test_python2_module_names_are_mapped_for_old_protocols():
    result = scan_bytes(b"ccommands\ngetoutput\n(S'true'\ntR.")
    assert result.verdict == "unsafe"
    assert result.globals == ["subprocess.getoutput"]
    assert "written as `commands.getoutput`" in result.findings[0].message


def test_protocol_4_does_not_map_python2_names():
    run, _ = emulate(b"\x80\x04c__builtin__\nset\n.")
    assert run.globals[0][0] == "__builtin__.set"


def test_a_broken_pickle_still_reports_what_ran_before_the_break():
    # nullifAI: the payload runs, then the stream is corrupt, so naive scanners give up.
    data = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R\xff\xff\xff"
    result = scan_bytes(data)
    assert result.verdict == "unsafe"
    assert {f.code for f in result.findings} == {"dangerous-global", "pickle-error"}


def test_pop_removes_a_mark_when_the_mark_is_on_top():
    data = b"K\x01(0K\x02t."  # the POP removes the MARK, so TUPLE finds no mark
    assert real_load(data)[0] == "error"
    assert emulate(data)[1][0].code == "pickle-error"


def test_an_opcode_straddling_a_frame_is_unknown():
    inner = b"\x8c\x05ab"                                      # claims 5 bytes, frame has 2
    data = b"\x80\x04\x95" + len(inner).to_bytes(8, "little") + inner + b"xyz0N."
    # Reading a file, the C unpickler drops the rest of the frame and reads on; reading bytes
    # it does not. Same file, two different programs:
    assert pickle.load(io.BytesIO(data)) == "xyz0N"
    assert pickle.loads(data) is None
    run, findings = emulate(data)
    assert findings[0].code == "frame-straddle"


def test_protocol_above_5_is_refused():
    assert emulate(b"\x80\x06N.")[1][0].code == "pickle-error"


def test_ext_codes_are_unknown():
    result = scan_bytes(b"\x80\x02\x82\x01)R.")
    assert result.verdict == "unknown"
    assert result.findings[0].code == "extension-code"


def test_inst_and_obj_import_and_call():
    assert scan_bytes(b"(S'true'\nios\nsystem\n.").verdict == "unsafe"
    assert scan_bytes(b"(cposix\nsystem\nS'true'\no.").verdict == "unsafe"


def test_newobj_ex_with_keyword_arguments_is_unknown():
    data = b"\x80\x04ccollections\nOrderedDict\n)}\x8c\x01a\x8c\x01b\x86\x92."
    assert scan_bytes(data).verdict == "unknown"


def test_build_on_an_allowed_function_is_unknown():
    data = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}\x8c\x01x\x8c\x01y\x86\x86b."
    result = scan_bytes(data)
    assert result.verdict == "unknown"


def test_the_emulator_agrees_with_pickletools_on_ordinary_pickles():
    for obj in [{"a": [1, 2.5, None, True, "x" * 300, b"y" * 300]}, (1, (2, (3,))), {1, 2}]:
        for proto in range(6):
            data = pickle.dumps(obj, protocol=proto)
            run, findings = emulate(data)
            if proto < 4 and isinstance(obj, set):
                continue  # protocols < 4 pickle a set via builtins.set
            assert not findings and same_value(run.value, obj)
            assert run.end == len(data) == max(pos for _, _, pos in pickletools.genops(data)) + 1


@pytest.mark.parametrize("prefix", [b"I0x10\n0", b"I1\x00junk\n0", b"L0x10L\n0",
                                    b"F1.5\x00junk\n0"])
def test_text_arguments_that_stop_pickletools_do_not_stop_the_real_loader_or_the_scanner(prefix):
    from tests.scanner.strategies import RecordingUnpickler

    data = b"\x80\x02" + prefix + b"cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
    seen_by_pickletools = []
    with pytest.raises(ValueError):
        for opcode, arg, _ in pickletools.genops(data):
            seen_by_pickletools.append(arg)
    assert "posix system" not in seen_by_pickletools
    real = RecordingUnpickler(io.BytesIO(data))
    real.load()
    assert real.imported == ["posix.system"]
    run, findings = emulate(data)
    assert run.globals == [("posix.system", 2 + len(prefix))]
    assert findings[0].severity == "unsafe"


def test_a_safetensors_file_under_a_pickle_name_is_still_safetensors():
    import struct as _struct

    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    data = _struct.pack("<Q", len(header)) + header + b"\0\0\0\0"
    result = scan_bytes(data, "pytorch_model.bin")
    assert result.verdict == "safe" and result.format == "safetensors"
