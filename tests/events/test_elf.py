"""The ELF reader: symbols, file offsets, USDT notes, errors.

Test programs are compiled here with gcc (``-O0 -g``): a PIE executable, a
non-PIE one, a shared library with a program that uses it, stripped copies,
and a symbol-less static binary. Expected values come from binutils
(``nm``, ``readelf``), never from the reader under test.

USDT markers: <sys/sdt.h> (systemtap-sdt-dev) is not installed on this
machine, so the test program writes the ``.note.stapsdt`` section itself with
inline asm, byte for byte as sys/sdt.h does (the ``.stapsdt.base`` section,
``SIZE@OPERAND`` argument strings and a semaphore in ``.probes``).

The builders here (``build_programs``) are shared with test_dynamic_probes.py
and test_symbolize.py.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ktapjit.events.probes.elf import (
    ElfError, NoSuchSymbolError, open_elf, parse_sdt_args, symbol_file_offset,
)

SDT_H = r"""
/* The .note.stapsdt layout of <sys/sdt.h>, written out: a nop at the probe
   site, a note {pc, .stapsdt.base, semaphore, provider, name, args}. */
#define KT_SDT_NOTE(prov, name, sema, args)                                  \
    "990: nop\n"                                                              \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                             \
    ".balign 4\n"                                                             \
    ".4byte 992f-991f, 994f-993f, 3\n"                                        \
    "991: .asciz \"stapsdt\"\n"                                               \
    "992: .balign 4\n"                                                        \
    "993: .8byte 990b\n"                                                      \
    ".8byte _.stapsdt.base\n"                                                 \
    ".8byte " sema "\n"                                                       \
    ".asciz \"" #prov "\"\n"                                                  \
    ".asciz \"" #name "\"\n"                                                  \
    ".asciz \"" args "\"\n"                                                   \
    "994: .balign 4\n"                                                        \
    ".popsection\n"                                                           \
    ".ifndef _.stapsdt.base\n"                                                \
    ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"  \
    ".weak _.stapsdt.base\n"                                                  \
    ".hidden _.stapsdt.base\n"                                                \
    "_.stapsdt.base: .space 1\n"                                              \
    ".size _.stapsdt.base, 1\n"                                               \
    ".popsection\n"                                                           \
    ".endif\n"
/* %n prints the negated constant: S is size for signed, -size for unsigned. */
#define KT_SDT_SIGNED(x) (((__typeof__(x))-1) < (__typeof__(x))0)
#define KT_SDT_S(x) (KT_SDT_SIGNED(x) ? (int)sizeof(x) : -(int)sizeof(x))
#define KT_SDT2(prov, name, sema, x1, x2)                                     \
    __asm__ __volatile__(KT_SDT_NOTE(prov, name, sema,                        \
                                     "%n[_S1]@%[_A1] %n[_S2]@%[_A2]")         \
                         :: [_S1] "n" (KT_SDT_S(x1)), [_A1] "nor" (x1),       \
                            [_S2] "n" (KT_SDT_S(x2)), [_A2] "nor" (x2))
"""

PROGRAM_C = SDT_H + r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A USDT semaphore: the kernel counts it up while a probe on the site is in use. */
unsigned short ktapjit_test_sema_semaphore __attribute__((unused, section(".probes")));

__attribute__((noinline)) int add(int a, int b) { return a + b; }
__attribute__((noinline)) long scale(long x, long k) { return x * k; }
__attribute__((noinline)) int greet(const char *s) { return (int)strlen(s); }
static __attribute__((noinline)) int helper_static(int x) { return x + 1; }

/* argv: N [wait]. Prints the addresses of add and greet first (for the
   symbolizer tests), waits for a byte on stdin when asked, then calls
   add N times (a = i, b = 2i - 5), scale N times (x = i, k = 3), greet every
   other i ("hello" when i % 4 == 0, else "world!"), passes the USDT marker
   ktapjit_test:tick (i, 42) N times, and ktapjit_test:sema (3i, -7) each time
   its semaphore is set. Last line: "total sema_seen". */
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    printf("%p %p\n", (void *)add, (void *)greet);
    fflush(stdout);
    if (argc > 2 && strcmp(argv[2], "wait") == 0) {
        char c;
        if (read(0, &c, 1) != 1) return 2;
    }
    long total = 0, sema_seen = 0;
    for (long i = 0; i < n; i++) {
        total += add((int)i, (int)(2 * i) - 5);
        total += scale(i, 3);
        if (i % 2 == 0) total += greet(i % 4 == 0 ? "hello" : "world!");
        KT_SDT2(ktapjit_test, tick, "0", i, 42);
        if (*(volatile unsigned short *)&ktapjit_test_sema_semaphore) {
            sema_seen++;
            long x3 = i * 3;
            KT_SDT2(ktapjit_test, sema, "ktapjit_test_sema_semaphore", x3, -7);
        }
    }
    total += helper_static((int)n);
    printf("%ld %ld\n", total, sema_seen);
    return 0;
}
"""

LIB_C = r"""
__attribute__((noinline)) int lib_mul(int a, int b) { return a * b; }
__attribute__((noinline)) int lib_neg(int a) { return -a; }
"""

USELIB_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern int lib_mul(int, int);
/* argv: N [wait]: lib_mul(i, 7) N times. */
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    printf("%p\n", (void *)lib_mul);
    fflush(stdout);
    if (argc > 2 && strcmp(argv[2], "wait") == 0) {
        char c;
        if (read(0, &c, 1) != 1) return 2;
    }
    long total = 0;
    for (long i = 0; i < n; i++) total += lib_mul((int)i, 7);
    printf("%ld\n", total);
    return 0;
}
"""

NOSYMS_C = r"""
void _start(void) { for (;;) __asm__ __volatile__("" ::: "memory"); }
"""


@dataclass
class Programs:
    dir: Path
    pie: Path  # PROGRAM_C, -pie
    nopie: Path  # PROGRAM_C, -no-pie
    lib: Path  # libktapjit_test.so
    uselib: Path  # USELIB_C, linked against lib with an rpath
    stripped: Path  # pie, strip --strip-all (only .dynsym left)
    nosyms: Path  # static, no libc, stripped: no .symtab and no .dynsym


def build_programs(d: Path) -> Programs:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) to build the probed test programs")

    def cc(*args):
        subprocess.run([gcc, *map(str, args)], check=True, cwd=d)

    (d / "probed.c").write_text(PROGRAM_C)
    (d / "lib.c").write_text(LIB_C)
    (d / "uselib.c").write_text(USELIB_C)
    (d / "nosyms.c").write_text(NOSYMS_C)
    cc("-O0", "-g", "-fPIE", "-pie", "-o", d / "probed_pie", d / "probed.c")
    cc("-O0", "-g", "-fno-pie", "-no-pie", "-o", d / "probed_nopie", d / "probed.c")
    cc("-O0", "-g", "-fPIC", "-shared", "-o", d / "libktapjit_test.so", d / "lib.c")
    cc("-O0", "-g", "-o", d / "uselib", d / "uselib.c", f"-L{d}", "-lktapjit_test",
       f"-Wl,-rpath,{d}")
    shutil.copy(d / "probed_pie", d / "probed_stripped")
    subprocess.run(["strip", "--strip-all", str(d / "probed_stripped")], check=True)
    cc("-O0", "-static", "-nostdlib", "-o", d / "nosyms", d / "nosyms.c")
    subprocess.run(["strip", "--strip-all", str(d / "nosyms")], check=True)
    return Programs(d, d / "probed_pie", d / "probed_nopie", d / "libktapjit_test.so",
                    d / "uselib", d / "probed_stripped", d / "nosyms")


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> Programs:
    return build_programs(tmp_path_factory.mktemp("elf"))


# --- independent expectations from binutils ---------------------------------------------------

def nm_functions(path: Path, dynamic: bool = False) -> dict[str, int]:
    """name -> value of defined text symbols, as nm prints them."""
    args = ["nm", "--defined-only"] + (["-D"] if dynamic else []) + [str(path)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWi":
            found.setdefault(parts[2].split("@")[0], int(parts[0], 16))
    return found


def readelf_loads(path: Path) -> list[tuple[int, int, int]]:
    """(offset, vaddr, filesz) of each LOAD program header, from readelf -lW."""
    out = subprocess.run(["readelf", "-lW", str(path)], check=True, capture_output=True,
                         text=True).stdout
    loads = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            loads.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)))
    return loads


def expected_offset(path: Path, vaddr: int) -> int:
    for off, va, filesz in readelf_loads(path):
        if va <= vaddr < va + filesz:
            return vaddr - va + off
    raise AssertionError(f"{vaddr:#x} is in no LOAD segment of {path}")


def readelf_notes(path: Path) -> list[dict]:
    """stapsdt notes as readelf -n prints them."""
    out = subprocess.run(["readelf", "-nW", str(path)], check=True, capture_output=True,
                         text=True).stdout
    notes, cur = [], None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("stapsdt"):
            cur = {}
            notes.append(cur)
            m = re.search(r"Provider: (\S+)", line)
            if m:
                cur["provider"] = m.group(1)
        elif cur is not None and line.startswith("Provider:"):
            cur["provider"] = line.split(":", 1)[1].strip()
        elif cur is not None and line.startswith("Name:"):
            cur["name"] = line.split(":", 1)[1].strip()
        elif cur is not None and line.startswith("Location:"):
            m = re.match(r"Location: (0x[0-9a-f]+), Base: (0x[0-9a-f]+), Semaphore: (0x[0-9a-f]+)", line)
            cur["pc"], cur["base"], cur["sema"] = (int(x, 16) for x in m.groups())
        elif cur is not None and line.startswith("Arguments:"):
            cur["args"] = line.split(":", 1)[1].strip()
    return notes


def programs_bytes(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def section_addr(path: Path, name: str) -> int:
    out = subprocess.run(["readelf", "-SW", str(path)], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        m = re.search(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s", line)
        if m and m.group(1) == name:
            return int(m.group(2), 16)
    raise AssertionError(f"no section {name} in {path}")


# --- tests --------------------------------------------------------------------------------------

def test_header_and_segments(programs):
    pie, nopie, lib = open_elf(programs.pie), open_elf(programs.nopie), open_elf(programs.lib)
    machine = {"x86_64": 62, "aarch64": 183}[os.uname().machine]
    assert pie.machine == nopie.machine == lib.machine == machine
    assert (pie.type, nopie.type, lib.type) == (3, 2, 3)  # ET_DYN, ET_EXEC, ET_DYN
    for elf, path in ((pie, programs.pie), (nopie, programs.nopie), (lib, programs.lib)):
        assert [(s.offset, s.vaddr, s.filesz) for s in elf.load_segments] == readelf_loads(path)
        assert elf.section(".text") is not None and elf.section(".symtab") is not None


@pytest.mark.parametrize("which", ["pie", "nopie", "lib"])
def test_every_function_offset_matches_binutils(programs, which):
    path = getattr(programs, which)
    expected = nm_functions(path)
    funcs = {"pie": ["add", "scale", "greet", "main", "helper_static"],
             "nopie": ["add", "scale", "greet", "main", "helper_static"],
             "lib": ["lib_mul", "lib_neg"]}[which]
    for name in funcs:
        [(sym, offset)] = symbol_file_offset(str(path), name)
        assert sym.name == name
        assert sym.value == expected[name]
        assert offset == expected_offset(path, expected[name])
    # Every defined text symbol nm knows, the reader knows at the same value.
    elf = open_elf(path)
    ours = {s.name: s.value for s in elf.function_symbols()}
    for name, value in expected.items():
        if name in ours:
            assert ours[name] == value, name


def test_nopie_offsets_differ_from_vaddrs(programs):
    [(sym, offset)] = symbol_file_offset(str(programs.nopie), "add")
    assert sym.value >= 0x400000 and offset < 0x100000
    assert offset == expected_offset(programs.nopie, sym.value)


def test_symbol_sizes_and_types(programs):
    elf = open_elf(programs.pie)
    out = subprocess.run(["readelf", "-sW", str(programs.pie)], check=True,
                         capture_output=True, text=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[3] == "FUNC" and parts[6] != "UND":
            sizes[parts[7]] = int(parts[2], 0)
    [(add, _)] = elf.resolve("add")
    assert add.size == sizes["add"] and add.type == "FUNC" and add.bind == "GLOBAL"
    [(helper, _)] = elf.resolve("helper_static")
    assert helper.bind == "LOCAL" and helper.size == sizes["helper_static"]


def test_glob_and_hex_offset(programs):
    path = str(programs.pie)
    names = [r.symbol.name for r in symbol_file_offset(path, "[ags]*")]
    assert set(names) >= {"add", "greet", "scale"}
    assert all(re.match(r"[ags]", n) for n in names)
    offsets = [r.offset for r in symbol_file_offset(path, "[ags]*")]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    [hexed] = symbol_file_offset(path, "0x1a2B")
    assert hexed.symbol is None and hexed.offset == 0x1A2B and hexed.name == "0x1a2b"


def test_shared_library_dynsym(programs):
    elf = open_elf(programs.lib)
    dyn = nm_functions(programs.lib, dynamic=True)
    assert "lib_mul" in dyn
    assert {s.name for s in elf.symbols(".dynsym")} >= {"lib_mul", "lib_neg"}
    [(sym, offset)] = symbol_file_offset(str(programs.lib), "lib_mul")
    assert offset == expected_offset(programs.lib, dyn["lib_mul"])


def test_stripped_binary_uses_dynsym_and_says_so(programs):
    elf = open_elf(programs.stripped)
    assert elf.section(".symtab") is None
    with pytest.raises(NoSuchSymbolError) as err:
        symbol_file_offset(str(programs.stripped), "add")
    msg = str(err.value)
    assert msg.startswith(f"no function symbol 'add' in '{programs.stripped}' (it is stripped: "
                          "no .symtab, only the ")
    assert "\n" not in msg


def test_no_symbol_tables_at_all(programs):
    with pytest.raises(NoSuchSymbolError) as err:
        symbol_file_offset(str(programs.nosyms), "_start")
    assert str(err.value) == (f"no function symbol '_start' in '{programs.nosyms}': it is stripped "
                              "(no .symtab and no .dynsym); probe a hex file offset instead")
    # A hex offset still works.
    assert symbol_file_offset(str(programs.nosyms), "0x1000")[0].offset == 0x1000


def test_unknown_symbol_suggests_close_matches(programs):
    with pytest.raises(NoSuchSymbolError) as err:
        symbol_file_offset(str(programs.pie), "gret")
    assert str(err.value) == f"no function symbol 'gret' in '{programs.pie}'; did you mean greet?"
    with pytest.raises(NoSuchSymbolError) as err:
        symbol_file_offset(str(programs.pie), "zz*")
    assert str(err.value) == f"no functions matching 'zz*' in '{programs.pie}'"


def test_not_elf_and_missing_file(tmp_path):
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho hello there, this is not an ELF file at all.....\n" * 3)
    with pytest.raises(ElfError) as err:
        symbol_file_offset(str(text), "main")
    assert str(err.value) == f"'{text}' is not an ELF file"
    with pytest.raises(ElfError) as err:
        symbol_file_offset(str(tmp_path / "nope"), "main")
    assert str(err.value) == f"cannot open '{tmp_path / 'nope'}': no such file"
    with pytest.raises(ElfError) as err:
        symbol_file_offset(str(tmp_path), "main")
    assert "directory" in str(err.value)
    elf32 = tmp_path / "elf32"
    elf32.write_bytes(b"\x7fELF\x01\x01\x01" + bytes(100))
    with pytest.raises(ElfError) as err:
        symbol_file_offset(str(elf32), "main")
    assert str(err.value) == f"'{elf32}' is a 32-bit ELF file; only 64-bit ELF is supported"


def test_cache_sees_a_rebuilt_file(programs, tmp_path):
    path = tmp_path / "copy"
    shutil.copy(programs.pie, path)
    first = symbol_file_offset(str(path), "add")[0].offset
    shutil.copy(programs.lib, path)  # same path, different file
    with pytest.raises(NoSuchSymbolError):
        symbol_file_offset(str(path), "add")
    assert symbol_file_offset(str(path), "lib_mul")[0].symbol.name == "lib_mul"
    assert first == expected_offset(programs.pie, nm_functions(programs.pie)["add"])


@pytest.mark.parametrize("which", ["pie", "nopie"])
def test_stapsdt_notes_match_readelf(programs, which):
    path = getattr(programs, which)
    elf = open_elf(path)
    want = readelf_notes(path)
    got = elf.sdt_notes()
    assert len(got) == len(want) == 2
    base = section_addr(path, ".stapsdt.base")
    out = subprocess.run(["nm", str(path)], check=True, capture_output=True, text=True).stdout
    sema_vaddr = int(next(line.split()[0] for line in out.splitlines()
                          if line.endswith(" ktapjit_test_sema_semaphore")), 16)
    for g, w in zip(got, want):
        assert (g.provider, g.name, g.args_text) == (w["provider"], w["name"], w["args"])
        assert g.base == w["base"] == base  # not prelinked: no adjustment
        assert g.pc == w["pc"]
        assert g.pc_offset == expected_offset(path, w["pc"])
        # The probe site is the nop the marker emitted.
        if os.uname().machine == "x86_64":
            assert programs_bytes(path, g.pc_offset, 1) == b"\x90"
        if g.name == "tick":
            assert g.semaphore == 0 and g.semaphore_offset is None
            assert [(a.size, a.signed) for a in g.args] == [(8, True), (4, True)]
            assert g.args[1].operand in ("$42", "42", "#42")
        else:
            assert g.semaphore == w["sema"] == sema_vaddr
            assert g.semaphore_offset == expected_offset(path, sema_vaddr)
            assert [(a.size, a.signed) for a in g.args] == [(8, True), (4, True)]
    assert elf.find_sdt("ktapjit_test", "t*")[0].name == "tick"


def test_stapsdt_base_adjustment(programs, tmp_path):
    """Moving .stapsdt.base (as prelink does) moves pc and semaphore with it."""
    path = tmp_path / "moved"
    shutil.copy(programs.pie, path)
    elf = open_elf(path)
    sec = elf.section(".stapsdt.base")
    original = {n.name: n for n in elf.sdt_notes()}
    # Patch sh_addr of .stapsdt.base by +0x10 in the section header table.
    data = bytearray(path.read_bytes())
    hdr = elf.shoff + sec.index * 64
    addr = struct.unpack_from("<Q", data, hdr + 16)[0]
    struct.pack_into("<Q", data, hdr + 16, addr + 0x10)
    path.write_bytes(bytes(data))
    moved = {n.name: n for n in open_elf(path).sdt_notes()}
    assert moved["tick"].pc == original["tick"].pc + 0x10
    assert moved["sema"].semaphore == original["sema"].semaphore + 0x10
    assert moved["tick"].base == original["tick"].base


def test_find_sdt_errors(programs):
    elf = open_elf(programs.pie)
    with pytest.raises(NoSuchSymbolError) as err:
        elf.find_sdt("ktapjit_test", "tock")
    assert str(err.value) == (f"no USDT probe 'ktapjit_test:tock' in '{programs.pie}'; "
                              "did you mean ktapjit_test:tick?")
    with pytest.raises(NoSuchSymbolError) as err:
        open_elf(programs.lib).find_sdt("a", "b")
    assert str(err.value) == f"no USDT probe 'a:b' in '{programs.lib}': it has no .note.stapsdt section"


def test_parse_sdt_args():
    args = parse_sdt_args("-4@%eax 8@-8(%rbp) -1@$-3 4@[sp, 16] 8@x0")
    assert [(a.size, a.signed, a.operand) for a in args] == [
        (4, True, "%eax"), (8, False, "-8(%rbp)"), (1, True, "$-3"), (4, False, "[sp, 16]"),
        (8, False, "x0")]
    assert parse_sdt_args("") == ()


def test_symbol_at(programs):
    elf = open_elf(programs.pie)
    [(add, _)] = elf.resolve("add")
    assert elf.symbol_at(add.value) == (add, 0)
    assert elf.symbol_at(add.value + add.size - 1) == (add, add.size - 1)
    hit = elf.symbol_at(add.value + add.size)
    assert (hit[0].name if hit else None) != "add"  # padding (None) or the next function


def test_programs_run(programs):
    """The programs do what the live tests count on."""
    out = subprocess.run([str(programs.pie), "10"], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    total = sum(i + 2 * i - 5 for i in range(10)) + sum(3 * i for i in range(10)) \
        + sum(5 if i % 4 == 0 else 6 for i in range(0, 10, 2)) + 11
    assert lines[1] == f"{total} 0"  # the semaphore is 0 when nothing traces
    out = subprocess.run([str(programs.uselib), "10"], check=True, capture_output=True, text=True).stdout
    assert out.splitlines()[1] == str(sum(7 * i for i in range(10)))
