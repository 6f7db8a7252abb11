"""ipof("NAME"): a kernel symbol's address (docs/language-notes.md, "ktap's
library"). The engines read it from the run's Host, so each case gives a
kallsyms text and runs the script on both engines: the same output, the
expected output. The live comparison with /proc/kallsyms is in
tests/tracing/test_ktap_library.py."""

from __future__ import annotations

import os

import pytest

from ktapjit.compiler import compile_script
from ktapjit.interp.engine import InterpEngine
from ktapjit.jit.engine import JitEngine
from ktapjit.run_api import Host, KernelAddresses, Limits, RunConfig

KALLSYMS = b"""\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff816dc4f0 T vfs_read
ffffffff81700000 t dup_static
ffffffff81800000 t dup_static
ffffffff82a05000 D jiffies
ffffffffc0a01000 t dup_static\t[some_module]
ffffffffc0a02000 t module_only\t[some_module]
"""
# kernel.kptr_restrict (or not root): every address reads as 0.
RESTRICTED = b"""\
0000000000000000 A fixed_percpu_data
0000000000000000 T _stext
0000000000000000 T vfs_read
"""


def run(engine, source: str, kallsyms: bytes) -> tuple[bytes, int]:
    module = compile_script(source.encode(), "t.kp").module
    host = Host(2, b"x86_64", b"6.1.0", KernelAddresses(path=None, text=kallsyms))
    config = RunConfig(limits=Limits(), script_args=("t.kp",), start_time_ns=0, host=host)
    out = []
    run_ = engine.load(module, config, out.append)
    run_.start()
    return b"".join(out), run_.finish().status


def run_both(source: str, kallsyms: bytes) -> bytes:
    interp = run(InterpEngine(), source, kallsyms)
    jit = run(JitEngine(), source, kallsyms)
    assert jit == interp
    assert interp[1] == 0
    return interp[0]


CASES = [
    # (id, script, kallsyms, expected output)
    ("an address, as an int64", 'printf("%x %d\\n", ipof("vfs_read"), ipof("vfs_read"))', KALLSYMS,
     b"ffffffff816dc4f0 -2123512592\n"),
    ("data symbols too", 'printf("%x\\n", ipof("jiffies"))', KALLSYMS, b"ffffffff82a05000\n"),
    ("an unknown name is nil", 'print(ipof("no_such_symbol"))', KALLSYMS, b"nil\n"),
    ("a duplicate gives its first line", 'printf("%x\\n", ipof("dup_static"))', KALLSYMS, b"ffffffff81700000\n"),
    ("a module's symbol", 'printf("%x\\n", ipof("module_only"))', KALLSYMS, b"ffffffffc0a02000\n"),
    ("a real zero address", 'print(ipof("fixed_percpu_data"))', KALLSYMS, b"0\n"),
    ("kptr_restrict: every address is nil", 'print(ipof("vfs_read"), ipof("fixed_percpu_data"))', RESTRICTED,
     b"nil\tnil\n"),
    ("no kallsyms: nil", 'print(ipof("vfs_read"))', b"", b"nil\n"),
    ("several names, in any function", 'function f() { return ipof("jiffies") - ipof("_stext") }\n'
     'print(f(), ipof("vfs_read") - ipof("_stext"), ipof("vfs_read") == ipof("vfs_read"))', KALLSYMS,
     b"27283456\t7193840\ttrue\n"),
    ("a table key", 'var t = {} t[ipof("vfs_read")] = "vfs_read" printf("%s\\n", t[-2123512592])', KALLSYMS,
     b"vfs_read\n"),
]


@pytest.mark.parametrize("source, kallsyms, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ipof(source, kallsyms, expected):
    assert run_both(source, kallsyms) == expected


def test_the_jit_code_holds_no_address():
    """KASLR moves addresses at each boot, and the JIT caches code keyed by
    its LLVM IR: the IR must be the same whatever the addresses are."""
    from ktapjit.jit.lower import lower_module

    def llvm_ir() -> str:
        return lower_module(compile_script(b'print(ipof("vfs_read"))', "t.kp").module).llvm_ir

    text = llvm_ir()
    assert "816dc4f0" not in text.lower() and str(-2123512592) not in text
    assert llvm_ir() == text


def test_kallsyms_is_read_once_for_every_name(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_bytes(KALLSYMS)
    addresses = KernelAddresses(path=str(path))
    assert addresses.addresses([b"vfs_read", b"nope"]) == {b"vfs_read": 0xffffffff816dc4f0 - (1 << 64), b"nope": None}
    os.unlink(path)  # later lookups of the same names need no file
    assert addresses.addresses([b"vfs_read"]) == {b"vfs_read": 0xffffffff816dc4f0 - (1 << 64)}
    assert addresses.addresses([b"jiffies"]) == {b"jiffies": None}  # the file is gone
