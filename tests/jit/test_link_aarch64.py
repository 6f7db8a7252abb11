"""The linker's AArch64 relocations, run: objects LLVM emits for AArch64 are
linked by jit/elflink.py into an image, the image is wrapped in a minimal
static executable at a fixed address, and qemu-aarch64 runs it. Its exit
status is the number of the first check that failed (0: all held).

Skips, saying why, where qemu-aarch64-static (Debian's qemu-user-static)
is not installed."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from ktapjit.jit import codegen, elflink

QEMU = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
BASE = 0x400000

LIB = """
@ext_data = global i64 5
define i64 @ext_fn(i64 %x) noinline { %y = shl i64 %x, 1 ret i64 %y }
define i64 @triple_impl(i64 %x) noinline { %y = mul i64 %x, 3 ret i64 %y }
"""

# Each check: a value computed through one kind of relocation, and what it must be.
CODE = """
@ext_data = external global i64
declare i64 @ext_fn(i64)
declare i64 @imported_fn(i64)
@c1 = internal constant i64 40
@c2 = internal constant i64 2
@table = internal global [2 x ptr] [ptr @c1, ptr @c2]
@b8 = internal global i8 7
@h16 = internal global i16 1234
@w32 = internal global i32 123456
@d64 = internal global i64 1234567890123
@q128 = internal global <2 x i64> <i64 11, i64 22>, align 16
@big = internal global [20000 x i64] zeroinitializer
@sel = internal global i64 5
@arr1 = internal global [4 x i64] [i64 1, i64 2, i64 3, i64 4]
@arr2 = internal global [4 x i64] [i64 5, i64 6, i64 7, i64 8]

define internal i64 @pick(i64 %k) noinline {
  switch i64 %k, label %d [ i64 0, label %a  i64 1, label %b  i64 2, label %c  i64 3, label %e
                            i64 4, label %f  i64 5, label %g  i64 6, label %h ]
a: ret i64 10
b: ret i64 11
c: ret i64 12
e: ret i64 13
f: ret i64 14
g: ret i64 15
h: ret i64 16
d: ret i64 0
}

define i64 @test_main() {
  %p1 = load volatile ptr, ptr @table
  %p2 = load volatile ptr, ptr getelementptr ([2 x ptr], ptr @table, i64 0, i64 1)
  %v1 = load i64, ptr %p1
  %v2 = load i64, ptr %p2
  %sum = add i64 %v1, %v2
  %ok1 = icmp eq i64 %sum, 42
  br i1 %ok1, label %t2, label %f1
t2:
  %e = load volatile i64, ptr @ext_data
  %ok2 = icmp eq i64 %e, 5
  br i1 %ok2, label %t3, label %f2
t3:
  %c = call i64 @ext_fn(i64 21)
  %ok3 = icmp eq i64 %c, 42
  br i1 %ok3, label %t4, label %f3
t4:
  %i = call i64 @imported_fn(i64 14)
  %ok4 = icmp eq i64 %i, 42
  br i1 %ok4, label %t5, label %f4
t5:
  %x8 = load volatile i8, ptr @b8
  %x16 = load volatile i16, ptr @h16
  %x32 = load volatile i32, ptr @w32
  %x64 = load volatile i64, ptr @d64
  %ok5a = icmp eq i8 %x8, 7
  %ok5b = icmp eq i16 %x16, 1234
  %ok5c = icmp eq i32 %x32, 123456
  %ok5d = icmp eq i64 %x64, 1234567890123
  %ok5ab = and i1 %ok5a, %ok5b
  %ok5cd = and i1 %ok5c, %ok5d
  %ok5 = and i1 %ok5ab, %ok5cd
  br i1 %ok5, label %t6, label %f5
t6:
  %q = load volatile <2 x i64>, ptr @q128
  %q0 = extractelement <2 x i64> %q, i32 0
  %q1 = extractelement <2 x i64> %q, i32 1
  %qs = add i64 %q0, %q1
  %ok6 = icmp eq i64 %qs, 33
  br i1 %ok6, label %t7, label %f6
t7:
  %far = getelementptr [20000 x i64], ptr @big, i64 0, i64 19999
  store volatile i64 99, ptr %far
  %fv = load volatile i64, ptr %far
  %ok7 = icmp eq i64 %fv, 99
  br i1 %ok7, label %t8, label %f7
t8:
  %k = load volatile i64, ptr @sel
  %s = call i64 @pick(i64 %k)
  %ok8 = icmp eq i64 %s, 15
  br i1 %ok8, label %t9, label %f8
t9:
  %idx = sub i64 %k, 3
  %a1 = getelementptr [4 x i64], ptr @arr1, i64 0, i64 %idx
  %a2 = getelementptr [4 x i64], ptr @arr2, i64 0, i64 %idx
  %y1 = load volatile i64, ptr %a1
  %y2 = load volatile i64, ptr %a2
  %ys = add i64 %y1, %y2
  %ok9 = icmp eq i64 %ys, 10
  br i1 %ok9, label %pass, label %f9
pass: ret i64 0
f1: ret i64 1
f2: ret i64 2
f3: ret i64 3
f4: ret i64 4
f5: ret i64 5
f6: ret i64 6
f7: ret i64 7
f8: ret i64 8
f9: ret i64 9
}

; exit(x0): mov x8, #93; svc #0 (machine words: the JIT's LLVM has no asm parser)
@exit_code = internal constant [2 x i32] [i32 u0xD2800BA8, i32 u0xD4000001], section ".text", align 4

define void @_start() noreturn {
  %r = call i64 @test_main()
  call void @exit_code(i64 %r)
  unreachable
}
"""


def static_executable(image, imports: dict[str, str]) -> bytes:
    """The image as an ELF executable loaded at BASE, its imports bound to
    its own exports (`imports`: imported name -> exported name)."""
    content = bytearray(image.content)
    for offset in image.relative:
        struct.pack_into("<Q", content, offset, struct.unpack_from("<Q", content, offset)[0] + BASE)
    for offset, name, addend in image.imports:
        struct.pack_into("<Q", content, offset, BASE + image.exports[imports[name]] + addend)
    file_offset = 0x10000
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 2, elflink.EM_AARCH64, 1,
                       BASE + image.exports["_start"], 64, 0, 0, 64, 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 7, file_offset, BASE, BASE, len(content), image.size, 0x10000)
    head = ehdr + phdr
    return head + b"\0" * (file_offset - len(head)) + bytes(content)


@pytest.mark.skipif(QEMU is None, reason="no qemu-aarch64-static (apt-get install qemu-user-static)")
def test_aarch64_relocations_run(tmp_path):
    objects = [(name, codegen.emit_object(codegen.optimize(ir, "aarch64"))) for name, ir in
               (("code", CODE), ("lib", LIB))]
    image = elflink.link(objects)
    assert [name for _, name, _ in image.imports] == ["imported_fn"]  # a PLT stub and its GOT slot
    exe = tmp_path / "relocs"
    exe.write_bytes(static_executable(image, {"imported_fn": "triple_impl"}))
    exe.chmod(0o755)
    done = subprocess.run([QEMU, str(exe)], capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, b""), f"check {done.returncode} failed"


def test_the_aarch64_runtime_links():
    from ktapjit.jit import rtlib

    image = rtlib.runtime_image("aarch64")
    assert {"k_state_new", "k_feed", "k_intern"} <= set(image.exports)
    assert all(s.offset % elflink.PAGE["aarch64"] == 0 for s in image.segments)
