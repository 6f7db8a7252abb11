"""Programs attached to the perf events the other engines open, counting
real events exactly: a gcc-built workload makes N getppid syscalls and
the in-kernel count is N."""

from __future__ import annotations

import os
import struct
import subprocess
import time

import pytest
from tests.bpf.conftest import needs_bpf, open_fds, our_program_ids
from tests.bpf.test_programs import COUNT_IR, unique

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.attach import attach_all, prog_type_for
from ktapjit.bpf.build import compile_ir
from ktapjit.bpf.loader import load_object
from ktapjit.bpf.objects import BpfSession
from ktapjit.events.records import perf_abi
from ktapjit.events.probes.dynamic_probes import uprobe_pmu_event
from ktapjit.events.probes.elf import symbol_file_offset
from ktapjit.events.records.perf_ring import PerfSession, software_event, tracepoint

pytestmark = needs_bpf

N = 20000
KEY0 = struct.pack("<I", 0)

# Counts every cpu-clock sample in slot 0 of @ticks, whatever runs.
TICK_IR = r"""
@ticks = external global i8

define i64 @{name}(ptr %ctx) section "ktapjit/{name}" {{
entry:
  %key = alloca i32
  store i32 0, ptr %key
  %slot = call ptr inttoptr (i64 1 to ptr)(ptr @ticks, ptr %key)
  %absent = icmp eq ptr %slot, null
  br i1 %absent, label %done, label %add
add:
  %old = load i64, ptr %slot
  %new = add i64 %old, 1
  store i64 %new, ptr %slot
  br label %done
done:
  ret i64 0
}}
"""


def total(values: list[bytes]) -> int:
    return sum(struct.unpack("<Q", v)[0] for v in values)


def test_a_tracepoint_program_counts_every_getppid_of_the_workload_exactly(getppid_workload):
    name = unique("t_getppid")
    before = open_fds()
    work = subprocess.Popen([str(getppid_workload), str(N)], stdin=subprocess.PIPE)
    try:
        with BpfSession() as bpf, PerfSession([tracepoint("syscalls", "sys_enter_getppid")],
                                              pages=1, track_tasks=False) as perf:
            counts = bpf.create_map("counts", sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)
            obj = compile_ir(COUNT_IR.format(name=name, tgid=work.pid))
            program = load_object(bpf, obj, {"counts": counts}, prog_type_for("tracepoint"))[name]
            attach_all([op.fd for op in perf.opened], program)
            work.stdin.write(b"go")
            work.stdin.close()
            assert work.wait(timeout=60) == 0
            assert total(counts.lookup(KEY0)) == N
            os.getppid()  # not the workload's: not counted
            assert total(counts.lookup(KEY0)) == N
    finally:
        work.kill()
        work.wait()
    assert open_fds() - before == set()
    assert _gone(name)


@pytest.mark.parametrize("is_return", [False, True], ids=["uprobe", "uretprobe"])
def test_a_uprobe_program_counts_every_call_of_the_workload_exactly(beats_workload, is_return):
    """A uprobe made by the uprobe PMU is opened once per CPU, each its own
    trace event; the program attached through the first fd sees the calls
    on every CPU, once each (attached through all, it would count each
    call once per CPU)."""
    name = unique("t_beat")
    [target] = symbol_file_offset(str(beats_workload), "beat")
    event = uprobe_pmu_event(str(beats_workload), target.offset, is_return=is_return)
    before = open_fds()
    work = subprocess.Popen([str(beats_workload), str(N)], stdin=subprocess.PIPE)
    try:
        with BpfSession() as bpf, PerfSession([event], pages=1, track_tasks=False) as perf:
            counts = bpf.create_map("counts", sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)
            obj = compile_ir(COUNT_IR.format(name=name, tgid=work.pid))
            kind = "uretprobe" if is_return else "uprobe"
            program = load_object(bpf, obj, {"counts": counts}, prog_type_for(kind))[name]
            attach_all([op.fd for op in perf.opened], program)
            work.stdin.write(b"go")
            work.stdin.close()
            assert work.wait(timeout=60) == 0
            assert total(counts.lookup(KEY0)) == N
    finally:
        work.kill()
        work.wait()
    assert open_fds() - before == set()
    assert _gone(name)


def test_a_cpu_clock_program_runs_on_every_cpus_event():
    name = unique("t_ticks")
    period_ns = 1_000_000
    with BpfSession() as bpf, PerfSession([software_event(perf_abi.PERF_COUNT_SW_CPU_CLOCK, period_ns,
                                                          "profile-1000")],
                                          pages=1, track_tasks=False) as perf:
        ticks = bpf.create_map("ticks", sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)
        obj = compile_ir(TICK_IR.format(name=name))
        program = load_object(bpf, obj, {"ticks": ticks}, prog_type_for("profile"))[name]
        attach_all([op.fd for op in perf.opened], program)
        time.sleep(0.3)
        per_cpu = [struct.unpack("<Q", v)[0] for v in ticks.lookup(KEY0)]
    # cpu-clock ticks on every online CPU, idle or not, about 300 times each.
    assert all(per_cpu[cpu] > 50 for cpu in perf.cpus), per_cpu
    assert _gone(name)


def _gone(name: str) -> bool:
    """No program of that name is loaded (a detached program may take a
    moment: the perf event drops it when it is freed)."""
    deadline = time.monotonic() + 2
    while our_program_ids({name}) and time.monotonic() < deadline:
        time.sleep(0.01)
    return our_program_ids({name}) == []
