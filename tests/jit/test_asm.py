"""Cross compilation: every example and every conformance script that
compiles emits an AArch64 object (and x86-64 assembly through the CLI)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.diag import CompileError
from ktapjit.compiler import compile_script

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.kp"))
CONFORMANCE = sorted((ROOT / "tests" / "conformance").glob("*.kp"))
EM_AARCH64 = 183
EM_X86_64 = 62


def elf_machine(obj: bytes) -> int:
    assert obj[:4] == b"\x7fELF"
    return struct.unpack_from("<H", obj, 18)[0]


def aarch64_object(path: Path) -> bytes | None:
    """The AArch64 object of a script, or None when it does not compile."""
    try:
        unit = compile_script(path.read_bytes(), path.name, target="aarch64", until="codegen")
    except CompileError:
        return None
    obj = unit.machine_code
    for symbol in unit.lowered.entries.values():
        assert symbol.encode() in obj, f"{path.name}: entry {symbol} missing from the object"
    return obj


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_emits_aarch64(path):
    obj = aarch64_object(path)
    assert obj is not None, f"{path.name} does not compile"
    assert elf_machine(obj) == EM_AARCH64


def test_every_conformance_script_emits_aarch64():
    compiled = 0
    for path in CONFORMANCE:
        obj = aarch64_object(path)
        if obj is not None:
            assert elf_machine(obj) == EM_AARCH64, path.name
            compiled += 1
    assert compiled >= 300  # the compile-error cases are the rest


def test_asm_cli_prints_assembly_and_writes_objects(tmp_path):
    out, err = io.BytesIO(), io.BytesIO()
    assert main(["asm", "--target", "aarch64", "-e", "print(1 + 2)"], stdout=out, stderr=err) == 0
    assert b"bl\tk_print" in out.getvalue()
    target = tmp_path / "x.o"
    assert main(["asm", "--target", "x86_64", "-o", str(target), "-e", "print(1)"], stdout=out, stderr=err) == 0
    assert elf_machine(target.read_bytes()) == EM_X86_64


def test_asm_cli_errors_are_one_line(tmp_path):
    err = io.BytesIO()
    assert main(["asm", "--target", "sparc", "-e", "print(1)"], stdout=io.BytesIO(), stderr=err) == 2
    err = io.BytesIO()
    status = main(["asm", "-o", str(tmp_path / "no" / "x.o"), "-e", "print(1)"], stdout=io.BytesIO(), stderr=err)
    assert status == 2 and err.getvalue().count(b"\n") == 1
