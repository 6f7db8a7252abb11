"""The runtime ABI table (ktapjit/jit/runtime_abi.py) against everything
derived from it: the generated C header, the built runtime library, the
LLVM declarations and their attributes, the ctypes side, and the Python
constants that mirror its enums."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ktapjit.jit import abi, feed, marks, rtlib, runtime_abi, runtime_build
from ktapjit.jit.runtime_abi import CALLS, ERRORS, HEADER

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "ktapjit" / "jit" / "runtime"


@pytest.fixture(scope="module")
def rt():
    return rtlib.load()


# -- the generated header ---------------------------------------------------------


def test_the_header_is_generated_from_the_table():
    assert HEADER.read_text() == runtime_abi.render_header(), (
        "ktrt_abi.h is stale: run python -m ktapjit.jit.runtime_abi --write")


def test_check_fails_on_a_hand_edited_header(tmp_path, monkeypatch):
    edited = tmp_path / "ktrt_abi.h"
    edited.write_text(HEADER.read_text().replace("K_E_NOMEM = 1,", "K_E_NOMEM = 7,"))
    monkeypatch.setattr(runtime_abi, "HEADER", edited)
    assert runtime_abi.main(["--check"]) == 1
    monkeypatch.setattr(runtime_abi, "HEADER", HEADER)
    assert runtime_abi.main(["--check"]) == 0


def test_the_command_line_checks_the_header():
    done = subprocess.run([sys.executable, "-m", "ktapjit.jit.runtime_abi", "--check"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_abi_version_is_a_hash_of_the_table():
    digest = hashlib.sha256(runtime_abi._canonical().encode()).hexdigest()
    assert runtime_abi.ABI_VERSION == int(digest[:8], 16) == rtlib.ABI_VERSION
    assert f"#define KRT_ABI_VERSION {rtlib.ABI_VERSION}\n" in HEADER.read_text()


def test_a_prototype_reads_back_as_written():
    assert runtime_abi._parse("int64_t k_feed_order(kfeed *f, const uint8_t *buf, uint64_t out[])") == (
        "int64_t", "k_feed_order",
        (runtime_abi.Param("kfeed *", "f"), runtime_abi.Param("const uint8_t *", "buf"),
         runtime_abi.Param("uint64_t[]", "out")))
    for call in CALLS:
        assert runtime_abi._parse(runtime_abi._prototype(call).rstrip(";")) == (
            call.ret, call.name, call.params)


# -- the runtime library ----------------------------------------------------------


def test_the_library_exports_exactly_the_table_calls(rt):
    exported = {name for name in rt.symbols if name.startswith("k_")}
    assert exported == set(runtime_abi.CALL)


def _clang() -> list[str]:
    """The system's C compiler, else the runtime generator's pinned clang."""
    cc = shutil.which("cc")
    if cc is not None:
        return [cc]
    try:
        return runtime_build.clang_command()
    except runtime_build.BuildError as e:
        pytest.skip(f"no C compiler: {e}")


@pytest.mark.parametrize("definition, compiles", [
    ("int k_fail(kstate *s, int code, int64_t a, int64_t b) { return code + (int)(a + b) + !s; }", True),
    ("int k_fail(kstate *s, int code) { return code + !s; }", False),
    ("int64_t k_fail(kstate *s, int code, int64_t a, int64_t b) { return code + a + b + !s; }", False),
])
def test_every_definition_must_match_its_prototype(tmp_path, definition, compiles):
    """The runtime's sources include the generated prototypes, so a
    definition with another arity or type does not compile."""
    clang = _clang()
    source = tmp_path / "probe.c"
    source.write_text(f'#include "ktrt.h"\n{definition}\n')
    done = subprocess.run([*clang, "-std=gnu11", "-c", "-o", str(tmp_path / "probe.o"), f"-I{RUNTIME}", str(source)],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) == compiles, done.stderr


def _python_sources() -> str:
    paths = [*(ROOT / "ktapjit").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    return "\n".join(p.read_text() for p in paths if p.name not in ("runtime_abi.py", Path(__file__).name))


def _c_sources() -> str:
    return "\n".join(p.read_text() for p in sorted(RUNTIME.glob("*.[ch]")) if p.name != "ktrt_abi.h")


def test_every_table_entry_is_used():
    python, c, lower = _python_sources(), _c_sources(), (ROOT / "ktapjit/jit/lower.py").read_text()
    for call in CALLS:
        if call.code:
            assert f'"{call.name}"' in lower, f"{call.name} is declared for generated code, never called"
        used = re.search(rf"\.{call.name}\b", python) or re.search(rf"[^\w ]\s*{call.name}\(", c)
        assert call.code or used, f"{call.name} is in the table but nothing calls it"
    for enum in runtime_abi.ENUMS:
        for m in enum.members:
            python_name = re.sub(r"^(K_|KT_)", "", m.name)
            assert re.search(rf"\b{m.name}\b", c) or re.search(rf"\.{python_name}\b", python), m.name
    for name, _, _ in runtime_abi.CONSTANTS:
        assert re.search(rf"\b{name}\b", c), name


# -- LLVM -------------------------------------------------------------------------

ATTRIBUTES = [
    # (effects, the attributes they allow)
    ("", ["nounwind", "willreturn", "memory(none)"]),
    ("reads", ["nounwind", "willreturn", "memory(read)"]),
    ("argmem fails cold", ["nounwind", "cold", "willreturn", "memory(argmem: readwrite)"]),
    ("argmem reads fails", ["nounwind", "willreturn", "memory(read, argmem: readwrite)"]),
    ("reads writes fails", ["nounwind", "willreturn"]),
    ("argmem writes", ["nounwind", "willreturn"]),
    ("reenters fails", ["nounwind"]),
    ("reenters argmem", ["nounwind"]),
]


@pytest.mark.parametrize("effects, expected", ATTRIBUTES)
def test_effects_become_llvm_attributes(effects, expected):
    assert abi.attributes(frozenset(effects.split())) == expected


def test_generated_code_calls_get_their_attributes():
    assert {name: attrs for name, attrs in abi.RUNTIME_ATTRIBUTES.items() if "memory" in str(attrs)} == {
        "k_fail": ["nounwind", "cold", "willreturn", "memory(argmem: readwrite)"],
        "k_fail_table": ["nounwind", "cold", "willreturn", "memory(argmem: readwrite)"],
        "k_table_get": ["nounwind", "willreturn", "memory(read, argmem: readwrite)"],
        "k_compare": ["nounwind", "willreturn", "memory(read, argmem: readwrite)"],
        "k_len": ["nounwind", "willreturn", "memory(read, argmem: readwrite)"],
    }
    assert abi.RUNTIME_ATTRIBUTES["k_call"] == ["nounwind"]


def test_the_declarations_parse_with_their_attributes():
    from llvmlite import ir
    import llvmlite.binding as llvm

    module = ir.Module()
    declared = abi.declare_runtime(module)
    assert set(declared) == {c.name for c in runtime_abi.CODE_CALLS}
    parsed = llvm.parse_assembly(str(module))
    fail = parsed.get_function("k_fail")
    assert {bytes(a).decode() for a in fail.attributes} == {
        "cold nounwind willreturn memory(argmem: readwrite)"}


def test_the_llvm_state_matches_the_table_offsets():
    import llvmlite.binding as llvm

    data = llvm.create_target_data("e-m:e-i64:64-n32:64-S128")
    offsets = runtime_abi.state_offsets()
    for name, index in abi.STATE_INDEX.items():
        assert abi.STATE.get_element_offset(data, index) == offsets[name], name
    assert rtlib.KStateFields.err.offset == offsets["err"] == 72
    assert {f: getattr(rtlib.KStateFields, f).offset for f in offsets} == offsets


# -- Python -----------------------------------------------------------------------


def test_the_python_constants_are_the_tables():
    for m in runtime_abi.ERROR_CODES.members:
        assert getattr(rtlib, m.name.removeprefix("K_")) == m.value
    for m in (*runtime_abi.RUN_STATUSES.members, *runtime_abi.FEED_STATUSES.members):
        assert getattr(rtlib, m.name.removeprefix("K_")) == m.value
    for m in runtime_abi.SLOT_KINDS.members:
        assert getattr(feed, m.name) == m.value
    for m in runtime_abi.MARK_KINDS.members:
        assert getattr(marks, m.name) == m.value
    tags = runtime_abi.values(runtime_abi.TAGS, "KT_")
    assert (rtlib.NIL, rtlib.BOOLEAN, rtlib.INTEGER, rtlib.STRING, rtlib.TABLE, rtlib.FUNCTION) == (
        abi.NIL, abi.BOOLEAN, abi.INTEGER, abi.STRING, abi.TABLE, abi.FUNCTION) == (
        tags["NIL"], tags["BOOL"], tags["INT"], tags["STR"], tags["TABLE"], tags["FUNC"])


def test_every_call_has_a_ctypes_prototype(rt):
    for call in CALLS:
        fn = getattr(rt, call.name)
        assert len(fn.argtypes) == len(call.params), call.name


# -- messages ---------------------------------------------------------------------

_DETAILS = [(0, 0), (1, 2), (2, 5), (3, 4), (4, 1), (5, 3), (ord("d"), 2), (0x07, 0), (9, 9),
            (1_000_000, 0), (-1, -1)]


@pytest.mark.parametrize("code", range(len(ERRORS) + 1))
def test_the_runtime_writes_the_tables_messages(rt, code):
    with rt.state() as state:
        for a, b in _DETAILS:
            if code == rtlib.E_PRINTF_BADARG and not 0x20 <= a < 0x7F:
                continue  # C's %c writes the byte itself; printf only reports printable ones
            rt.k_fail(state.ptr, code, a, b)
            assert state.error_message() == runtime_abi.error_message(code, a, b), (code, a, b)


MESSAGES = [
    (rtlib.E_COMPARE, rtlib.TABLE, rtlib.NIL, "attempt to compare table with nil"),
    (rtlib.E_PRINTF_CONV, 0x07, 0, "printf: invalid conversion '%\\x07'"),
    (rtlib.E_PRINTF_BADARG, ord("d"), rtlib.STRING,
     "printf: bad argument for '%d': expected integer, got string"),
    (rtlib.E_AGG_KIND, 1, 0, "lhist: existing value is not a lhist aggregation"),
    (rtlib.E_LHIST_BOUND_TYPE, 2, rtlib.NIL, "lhist: step must be an integer, got nil"),
    (rtlib.E_LHIST_BOUNDS, 3, 0, "lhist: max - min must be a multiple of step"),
    (len(ERRORS), 0, 0, f"unknown runtime error {len(ERRORS)}"),
]


@pytest.mark.parametrize("code, a, b, message", MESSAGES)
def test_message_templates(code, a, b, message):
    assert runtime_abi.error_message(code, a, b) == message


def test_generated_functions_keep_their_unwind_tables():
    """Every runtime call is nounwind, so LLVM would infer it for generated
    functions too and drop their unwind tables; debuggers need them."""
    from llvmlite import ir

    module = ir.Module()
    abi.define_kcode(module, "ktap_f0_main")
    assert "uwtable" in str(module)


@pytest.mark.parametrize("cap, written", [(0, None), (1, b""), (8, b"attempt"), (200, None)])
def test_error_messages_keep_snprintfs_contract(rt, cap, written):
    """k_err_message writes what fits, NUL-terminated, and returns the full length."""
    import ctypes

    message = b"attempt to compare table with nil"
    with rt.state() as state:
        rt.k_fail(state.ptr, rtlib.E_COMPARE, rtlib.TABLE, rtlib.NIL)
        buf = ctypes.create_string_buffer(b"\xff" * 200) if cap else None
        assert rt.k_err_message(state.ptr, buf, cap) == len(message)
        if buf is not None:
            assert buf.value == (message if written is None else written)
