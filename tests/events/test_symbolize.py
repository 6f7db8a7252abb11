"""Symbolizing stack addresses: kernel from kallsyms, user from ELF symbols of
mapped files (PIE executables and shared libraries at whatever address they
were loaded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ktapjit.events.probes.elf import open_elf
from ktapjit.events.probes.symbolize import UNKNOWN, KernelSymbolizer, UserSymbolizer, running_kernel_build_id
from tests.events.test_elf import Programs, build_programs, nm_functions


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> Programs:
    return build_programs(tmp_path_factory.mktemp("symbolize"))


# --- kernel ----------------------------------------------------------------------------------

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81000100 t secondary_startup
ffffffff81000200 D some_data
ffffffff81000300 T do_syscall_64
ffffffff81000400 W weak_func
ffffffffc0000000 t ext4_sync_fs\t[ext4]
"""


def test_kernel_symbolizer_from_text():
    k = KernelSymbolizer(KALLSYMS)
    assert k.available and len(k) == 6  # the D symbol is data, not code
    assert k.symbolize(0xFFFFFFFF81000000) == "startup_64+0x0"  # of two aliases, the later one
    assert k.symbolize(0xFFFFFFFF81000105) == "secondary_startup+0x5"
    # some_data is not code: the address belongs to the code symbol below it.
    assert k.symbolize(0xFFFFFFFF81000250) == "secondary_startup+0x150"
    assert k.symbolize(0xFFFFFFFF8100035D) == "do_syscall_64+0x5d"
    assert k.symbolize(0xFFFFFFFF81000401) == "weak_func+0x1"
    assert k.lookup(0xFFFFFFFFC0000010) == ("ext4_sync_fs", 0x10, "ext4")
    assert k.symbolize(0x1000) == UNKNOWN  # below every symbol
    assert k.symbolize(0xFFFFFFFFA0000000) == UNKNOWN  # a gap far past weak_func


def test_kernel_symbolizer_restricted():
    k = KernelSymbolizer("0000000000000000 T _stext\n0000000000000000 T startup_64\n")
    assert not k.available
    assert k.reason == ("/proc/kallsyms shows every address as 0 (kernel.kptr_restrict, or not "
                        "root): kernel stacks cannot be symbolized")
    assert k.symbolize(0xFFFFFFFF81000000) == UNKNOWN


def test_kernel_symbolizer_live_kallsyms():
    k = KernelSymbolizer()
    if not k.available:
        pytest.skip(f"kallsyms unusable here: {k.reason}")
    # Pick symbols from the file itself and look them up at +0 and inside.
    lines = Path("/proc/kallsyms").read_text().splitlines()
    text = [(int(a, 16), name) for a, t, name, *_ in (ln.split() for ln in lines) if t in "tT"]
    text.sort()
    picked = 0
    for (addr, name), (nxt, _n) in zip(text, text[1:]):
        if nxt - addr > 8 and addr and name in ("schedule", "do_exit", "vfs_read", "ksys_read"):
            assert k.symbolize(addr + 3).endswith("+0x3")
            assert k.lookup(addr + 3)[0] in {n for a, n in text if a == addr}
            picked += 1
    assert picked >= 2


def test_running_kernel_build_id_is_perfs():
    """The build-id recordings name the kernel by, as `perf buildid-list -k` reads it."""
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("perf (linux-perf) is not installed")
    build_id = running_kernel_build_id()
    if build_id is None:
        pytest.skip("/sys/kernel/notes is unreadable here")
    out = subprocess.run([perf, "buildid-list", "-k"], capture_output=True, text=True, check=True).stdout
    assert build_id.hex() == out.strip()


# --- user ------------------------------------------------------------------------------------

def _started(argv: list[str]) -> tuple[subprocess.Popen, list[int]]:
    """A program that printed its function addresses and now waits on stdin."""
    proc = subprocess.Popen([*argv, "1", "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    addrs = [int(x, 16) for x in proc.stdout.readline().split()]
    return proc, addrs


def _finish(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.write(b"x")
        proc.stdin.close()
    except OSError:
        pass
    proc.stdout.read()
    proc.wait(10)


def test_user_symbols_of_a_running_pie_and_library(programs):
    proc, (add, greet) = _started([str(programs.pie)])
    lib_proc, (lib_mul,) = _started([str(programs.uselib)])
    try:
        u = UserSymbolizer()
        assert u.add_proc_maps(proc.pid) > 0 and u.add_proc_maps(lib_proc.pid) > 0
        assert u.symbolize(proc.pid, add) == "add+0x0"
        assert u.symbolize(proc.pid, add + 0x7) == "add+0x7"
        assert u.symbolize(proc.pid, greet + 1) == "greet+0x1"
        assert u.lookup(proc.pid, add + 2) == ("add", 2, str(programs.pie))
        assert u.symbolize(lib_proc.pid, lib_mul + 4) == "lib_mul+0x4"
        assert u.lookup(lib_proc.pid, lib_mul)[2] == str(programs.lib)
        # PIE: the load address is not the file's own vaddr.
        assert add != nm_functions(programs.pie)["add"]
        # Addresses outside any file mapping, or of another pid.
        assert u.symbolize(proc.pid, 0x10) == UNKNOWN
        assert u.symbolize(999999999, add) == UNKNOWN
    finally:
        _finish(proc)
        _finish(lib_proc)


def test_add_mapping_as_mmap2_records_give_it(programs):
    """An executable mapping as PERF_RECORD_MMAP2 reports it: start, length,
    page offset of the file, file name."""
    elf = open_elf(programs.pie)
    text_seg = next(s for s in elf.load_segments if s.executable)
    [(add, add_off)] = elf.resolve("add")
    start = 0x5555_5555_0000 + text_seg.offset  # wherever the kernel put it
    u = UserSymbolizer()
    u.add_mapping(42, start, text_seg.filesz, text_seg.offset, os.fsencode(programs.pie))
    addr = start + (add_off - text_seg.offset) + 0x11
    assert u.symbolize(42, addr) == "add+0x11"
    # A new mapping over the same range replaces the old one.
    u.add_mapping(42, start, text_seg.filesz, 0, "/nonexistent/file")
    assert u.symbolize(42, addr) == UNKNOWN
    # fork copies the parent's mappings; exit forgets them.
    u.add_mapping(42, start, text_seg.filesz, text_seg.offset, str(programs.pie))
    u.fork(42, 43)
    assert u.symbolize(43, addr) == "add+0x11"
    u.exit(42)
    assert u.symbolize(42, addr) == UNKNOWN and u.symbolize(43, addr) == "add+0x11"


def test_non_elf_and_special_mappings_are_unknown(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an elf" * 100)
    u = UserSymbolizer()
    u.add_mapping(1, 0x1000, 0x1000, 0, str(junk))
    u.add_mapping(1, 0x3000, 0x1000, 0, "[vdso]")
    u.add_mapping(1, 0x5000, 0x1000, 0, "//anon")
    assert u.symbolize(1, 0x1010) == UNKNOWN
    assert u.symbolize(1, 0x3010) == UNKNOWN
    assert u.symbolize(1, 0x5010) == UNKNOWN
    assert [m.path for m in u.mappings(1)] == [str(junk), "[vdso]", "//anon"]


# --- live: a uprobe's user stack ---------------------------------------------------------------

def _live_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "live uprobes need root (writing tracefs uprobe_events and perf_event_open)"
    if not Path("/sys/kernel/tracing/uprobe_events").exists():
        return "no /sys/kernel/tracing/uprobe_events on this kernel"
    return None


@pytest.mark.live
@pytest.mark.skipif(_live_skip_reason() is not None, reason=_live_skip_reason() or "")
def test_uprobe_callchain_symbolizes(programs):
    """A uprobe on lib_mul with a callchain: the user stack, symbolized through
    the mappings of the traced process, starts in lib_mul and goes through main."""
    from ktapjit.events.records import perf_abi as abi
    from ktapjit.events.records.decode import Sample, iter_records
    from ktapjit.events.probes.dynamic_probes import DynamicProbes
    from ktapjit.events.records.perf_ring import PerfSession, tracepoint

    n = 5
    proc = subprocess.Popen([str(programs.uselib), str(n), "wait"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    samples = []
    try:
        proc.stdout.readline()
        u = UserSymbolizer()
        u.add_proc_maps(proc.pid)
        with DynamicProbes() as dp:
            [ev] = dp.add_uprobe(str(programs.lib), "lib_mul")
            with PerfSession([tracepoint(ev.system, ev.event, callchain=True)], pid=proc.pid) as s:
                s.enable()
                proc.stdin.write(b"x")
                proc.stdin.close()
                deadline = time.monotonic() + 10
                chunks = []
                while proc.poll() is None and time.monotonic() < deadline:
                    chunks += s.read_chunks(0.05)
                s.disable()
                chunks += s.drain()
                table = s.attr_table()
                for _cpu, chunk in chunks:
                    samples += [r for r in iter_records(chunk, table) if isinstance(r, Sample)]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert len(samples) == n
    for r in samples:
        chain = list(r.callchain)
        assert chain[0] == abi.PERF_CONTEXT_USER
        names = [u.symbolize(proc.pid, ip) for ip in chain[1:] if ip < abi.PERF_CONTEXT_MAX]
        # At the first instruction of lib_mul the frame pointer is still
        # main's, so the next frame is the return address into main.
        assert names[0] == "lib_mul+0x0", names
        assert names[1].startswith("main+0x"), names
        [(main, _off)] = open_elf(programs.uselib).resolve("main")
        assert 0 < int(names[1].split("+")[1], 16) < main.size


@pytest.mark.live
@pytest.mark.skipif(_live_skip_reason() is not None, reason=_live_skip_reason() or "")
def test_kernel_callchain_symbolizes(programs):
    """sched_process_exit fires deep in the kernel: every frame has a name."""
    from ktapjit.events.records import perf_abi as abi
    from ktapjit.events.records.decode import Sample, iter_records
    from ktapjit.events.records.perf_ring import PerfSession, tracepoint

    k = KernelSymbolizer()
    if not k.available:
        pytest.skip(f"kallsyms unusable here: {k.reason}")
    proc = subprocess.Popen([str(programs.pie), "1", "wait"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()
        with PerfSession([tracepoint("sched", "sched_process_exit", callchain=True)],
                         pid=proc.pid) as s:
            s.enable()
            proc.stdin.write(b"x")
            proc.stdin.close()
            proc.wait(10)
            s.disable()
            records = [r for _c, chunk in s.drain() for r in iter_records(chunk, s.attr_table())]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    [sample] = [r for r in records if isinstance(r, Sample)]
    chain = list(sample.callchain)
    assert chain[0] == abi.PERF_CONTEXT_KERNEL
    kernel = []
    for ip in chain[1:]:
        if ip >= abi.PERF_CONTEXT_MAX:
            break
        kernel.append(k.symbolize(ip))
    assert kernel and all(name != UNKNOWN for name in kernel), kernel
    assert any(name.startswith("do_exit+0x") for name in kernel), kernel
