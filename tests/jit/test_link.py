"""The JIT's own linker and loader (jit/elflink.py, jit/image.py): objects
LLVM emits are linked and mapped with no `ld`, each relocation kind they use
lands where it should, and what it cannot link is one clear line."""

from __future__ import annotations

import ctypes
import io
import os

import pytest

from ktapjit.cli import main
from ktapjit.jit import codegen, elflink, rtlib
from ktapjit.jit.image import Image, ImageError, map_image


def compile_ir(llvm_ir: str, target: str = "x86_64") -> bytes:
    return codegen.emit_object(codegen.optimize(llvm_ir, target))


def mapped(llvm_ir: str):
    return map_image(Image.from_bytes(elflink.link([("t", compile_ir(llvm_ir))]).to_bytes()),
                     rtlib.load().symbols.get)


def call(m, name: str, restype, *args):
    return ctypes.CFUNCTYPE(restype, *(type(a) for a in args))(m.address(name))(*args)


CASES = [
    # (what it reaches, IR of `f() -> i64`, what f returns)
    ("a runtime function, through a PLT stub", """
        declare i64 @k_state_new(i64, i64, i64, i64)
        declare void @k_state_free(i64)
        define i64 @f() { %s = call i64 @k_state_new(i64 1, i64 2, i64 3, i64 4)
                          call void @k_state_free(i64 %s)
                          %ok = icmp ne i64 %s, 0
                          %r = zext i1 %ok to i64
                          ret i64 %r }""", 1),
    ("libc, for what no runtime defines", """
        declare i64 @strlen(ptr)
        @s = private constant [6 x i8] c"hello\\00"
        define i64 @f() { %n = call i64 @strlen(ptr @s) ret i64 %n }""", 5),
    ("a table of pointers to its own data (absolute words, relocated by the base)", """
        @a = internal constant i64 40
        @b = internal constant i64 2
        @table = internal global [2 x ptr] [ptr @a, ptr @b]
        define i64 @f() { %p = load ptr, ptr @table
                          %q = load ptr, ptr getelementptr ([2 x ptr], ptr @table, i64 0, i64 1)
                          %x = load i64, ptr %p
                          %y = load i64, ptr %q
                          %r = add i64 %x, %y
                          ret i64 %r }""", 42),
    ("an exported global, through the GOT", """
        @counter = global i64 7
        define i64 @f() { %v = load volatile i64, ptr @counter
                          %w = add i64 %v, 1
                          store volatile i64 %w, ptr @counter
                          %x = load volatile i64, ptr @counter
                          ret i64 %x }""", 8),
    ("writable zeroed data (.bss)", """
        @zeros = internal global [512 x i64] zeroinitializer
        define i64 @f() { %p = getelementptr [512 x i64], ptr @zeros, i64 0, i64 300
                          store volatile i64 9, ptr %p
                          %v = load volatile i64, ptr %p
                          ret i64 %v }""", 9),
]


@pytest.mark.parametrize("ir,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_linked_code_runs(ir, expected):
    assert call(mapped(ir), "f", ctypes.c_int64) == expected


def test_exports_are_where_the_code_is():
    m = mapped("@g = global i64 5\ndefine i64 @f() { ret i64 1 }")
    assert ctypes.c_int64.from_address(m.address("g")).value == 5
    assert m.base <= m.address("f") < m.base + m.size


REFUSALS = [
    # IR, the error after "t: "
    ("@x = thread_local global i64 0\ndefine i64 @f() { %v = load i64, ptr @x ret i64 %v }",
     "thread-local data (.tbss) is not supported"),
    ("@llvm.global_ctors = appending global [1 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @f, ptr null }]\n"
     "declare void @k_note(ptr)\ndefine void @f() { call void @k_note(ptr @f) ret void }", "constructors or destructors (.ctors) are not supported"),
]


@pytest.mark.parametrize("ir,message", REFUSALS, ids=["tls", "constructor"])
def test_what_it_cannot_link_is_one_line(ir, message):
    with pytest.raises(elflink.LinkError) as info:
        elflink.link([("t", compile_ir(ir))])
    assert str(info.value) == f"t: {message}"


def test_a_symbol_defined_twice_is_refused():
    obj = compile_ir("define i64 @f() { ret i64 1 }")
    with pytest.raises(elflink.LinkError) as info:
        elflink.link([("a", obj), ("b", obj)])
    assert str(info.value) == "b: f is defined twice (also in a)"


def test_an_unknown_import_is_one_line():
    image = elflink.link([("t", compile_ir("declare i64 @no_such_fn()\n"
                                           "define i64 @f() { %v = call i64 @no_such_fn() ret i64 %v }"))])
    with pytest.raises(ImageError) as info:
        map_image(image, what="the test code")
    assert str(info.value) == ("ktapjit: the test code needs the symbol no_such_fn, "
                               "which nothing in this process defines")


def test_an_image_for_another_machine_is_refused():
    image = elflink.link([("t", compile_ir("define i64 @f() { ret i64 1 }", "aarch64"))])
    with pytest.raises(ImageError) as info:
        map_image(image, what="the test code")
    assert str(info.value) == "ktapjit: the test code is for aarch64, and this machine is x86_64"


def test_a_script_runs_with_no_linker(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no ld, no cc
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--jit", "-e", 'var t = {}\nt["a"] += 2\nprintf("%s=%d\\n", "a", t["a"])'],
                  stdout=out, stderr=err)
    assert (status, out.getvalue(), err.getvalue()) == (0, b"a=2\n", b"")


def test_a_perf_map_names_the_functions_when_asked(monkeypatch):
    monkeypatch.setenv("KTAPJIT_PERF_MAP", "1")
    path = f"/tmp/perf-{os.getpid()}.map"
    if os.path.exists(path):
        os.unlink(path)
    try:
        m = mapped("@n = internal global i64 14\n"
                   "define internal i64 @helper(i64 %x) noinline { %y = mul i64 %x, 3 ret i64 %y }\n"
                   "define i64 @f() { %n = load volatile i64, ptr @n\n"
                   "                  %v = call i64 @helper(i64 %n) ret i64 %v }")
        assert call(m, "f", ctypes.c_int64) == 42
        lines = [line.split() for line in open(path)]
    finally:
        os.unlink(path)
    named = {name: (int(start, 16), int(size, 16)) for start, size, name in lines}
    assert {"f", "helper"} <= set(named)  # and the runtime's, if it was mapped meanwhile
    assert named["f"][0] == m.address("f") and named["f"][1] > 0
    assert m.base <= named["helper"][0] < m.base + m.size
