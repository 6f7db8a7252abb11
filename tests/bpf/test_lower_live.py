"""Lowered scripts counting real events exactly: a gcc-built workload makes
P getppid and Q getpid syscalls; the programs the lowering made run on
them in the kernel and the maps read back are the tables the interpreter
would hold."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from tests.bpf.conftest import needs_bpf, open_fds
from tests.bpf.lowered import CALLS_C, gate_on, module_of, plan_for, run_live
from tests.cbuild import build_c

from ktapjit.bpf.attach import attach_all
from ktapjit.bpf.fault_ring import first_fault
from ktapjit.bpf.kernel_load import load_plan
from ktapjit.bpf.kernel_plan import CtxField
from ktapjit.bpf.lower import lower_module
from ktapjit.bpf.objects import BpfSession
from ktapjit.bpf.placement import analyse_module
from ktapjit.bpf.probe_regs import register_field, uprobe_event
from ktapjit.bpf.scope import SCOPE_MAP, seed
from ktapjit.bpf.tables import prefill, read_back
from ktapjit.events.probes.dynamic_probes import uprobe_pmu_event
from ktapjit.events.probes.elf import symbol_file_offset
from ktapjit.events.records.perf_ring import PerfSession, tracepoint
from ktapjit.ir.ops import Op
from ktapjit.semantics import agg
from ktapjit.semantics.limits import Limits
from ktapjit.semantics.values import Table

pytestmark = needs_bpf

P, Q = 3000, 2000
GETPPID, GETPID, EXIT_GROUP = 110, 39, 231  # x86-64 syscall numbers


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    return build_c(tmp_path_factory, "calls", CALLS_C, "-O2", purpose="the syscall workload")


def workload(calls) -> list[str]:
    return [str(calls), str(P), str(Q)]


# (name, script, what the top level leaves in the cells, expected tables)
CASES = [
    ("a global count",
     "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }",
     {"n": [(None, 0)]}, {"n": [(None, P)]}),
    ("a global count from a top-level base",
     "var n = 0\nn = 7\ntrace syscalls:sys_enter_getppid { n += 1 }",
     {"n": [(None, 7)]}, {"n": [(None, P + 7)]}),
    ("probename over two events, in first-insert order",
     "var t = {}\ntrace syscalls:sys_enter_getppid, syscalls:sys_enter_getpid { t[probename] += 1 }",
     {}, {"t": [(b"sys_enter_getppid", P), (b"sys_enter_getpid", Q)]}),
    ("syscall numbers",
     "var t = {}\ntrace raw_syscalls:sys_enter { t[args.id] += 1 }",
     {}, {"t": [(GETPPID, P), (GETPID, Q), (EXIT_GROUP, 1)]}),
    ("per comm",
     "var t = {}\ntrace syscalls:sys_enter_getppid { t[execname] += 1 }",
     {}, {"t": [(b"calls", P)]}),
    ("a sum of a field",
     "var s = 0\ntrace raw_syscalls:sys_enter { s += args.id }",
     {"s": [(None, 0)]}, {"s": [(None, GETPPID * P + GETPID * Q + EXIT_GROUP)]}),
    ("a minimum and a maximum through comparisons",
     "var lo, hi = nil, nil\ntrace raw_syscalls:sys_enter {\n"
     " if (lo == nil || args.id < lo) { lo = args.id }\n"
     " if (hi == nil || args.id > hi) { hi = args.id } }",
     {}, {"lo": [(None, GETPID)], "hi": [(None, EXIT_GROUP)]}),
    ("a maximum per key",
     "var m = {}\ntrace raw_syscalls:sys_enter { if (m[execname] == nil || m[execname] < args.id) "
     "{ m[execname] = args.id } }",
     {}, {"m": [(b"calls", EXIT_GROUP)]}),
    ("set membership",
     "var seen = {}\ntrace raw_syscalls:sys_enter { seen[args.id] = true }",
     {}, {"seen": [(GETPPID, True), (GETPID, True), (EXIT_GROUP, True)]}),
    ("string equality",
     'var n = 0\ntrace syscalls:sys_enter_getppid { if (execname == "calls") { n += 1 }\n'
     ' if (execname == "call" || execname == "callsx" || execname == probename) { n += 1000 } }',
     {"n": [(None, 0)]}, {"n": [(None, P)]}),
    ("a filter",
     "var n = 0\ntrace raw_syscalls:sys_enter /id == 110/ { n += 1 }",
     {"n": [(None, 0)]}, {"n": [(None, P)]}),
    ("a filter of two predicates, one negated",
     "var t = {}\ntrace raw_syscalls:sys_enter /id < 200 && !(id == 110)/ { t[args.id] += 1 }",
     {}, {"t": [(GETPID, Q)]}),
    ("a function inlined, a loop, a division",
     "var n = 0\nfunction sq(x) { return x * x }\n"
     "trace syscalls:sys_enter_getppid { for (i = 1, 3) { n += sq(i) / 2 } }",
     {"n": [(None, 0)]}, {"n": [(None, (0 + 2 + 4) * P)]}),
]


@pytest.mark.parametrize("name, script, base, expected", CASES, ids=[c[0] for c in CASES])
def test_kernel_tables_equal_the_exact_counts(calls, name, script, base, expected):
    before = open_fds()
    got = run_live(script, workload(calls), base)
    assert got.faults == []
    assert {cell: got.tables.get(cell) for cell in expected} == expected
    assert open_fds() - before == set()


def test_per_thread_pairing_runs_in_the_kernel(calls):
    """sysdist's pairing: entered[tid] on entry, read and cleared on exit."""
    script = ("var entered, count, spent = {}, {}, {}\n"
              "trace raw_syscalls:sys_enter { entered[tid] = gettimeofday_ns() }\n"
              "trace raw_syscalls:sys_exit {\n"
              " var s = entered[tid]\n if (s == nil) { return }\n entered[tid] = nil\n"
              " count[args.id] += 1\n spent[args.id] += gettimeofday_ns() - s }")
    got = run_live(script, workload(calls), {})
    assert got.tables["count"] == [(GETPPID, P), (GETPID, Q)]
    assert [k for k, _v in got.tables["spent"]] == [GETPPID, GETPID]
    assert all(v > 0 for _k, v in got.tables["spent"])
    # exit_group never returns: its entry stays, keyed by the workload's one thread
    [(tid, stamp_time)] = got.tables["entered"]
    assert type(tid) is int and stamp_time > 0


def test_keys_first_inserted_on_different_cpus_come_back_in_first_insert_order(calls, tmp_path):
    """Two copies of the workload, `second` pinned to CPU 1 and run first,
    `first` on CPU 0 after it: `second`'s key is first, though its CPU is
    the higher one."""
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copy(calls, first)
    shutil.copy(calls, second)
    script = "var t = {}\ntrace syscalls:sys_enter_getppid { t[execname] += 1 }"
    got = run_live(script, [str(second), str(P), str(Q)], {}, filter_pid=False,
                   more=([str(first), str(P), str(Q)],), cpus=[1, 0])
    ours = [(stamp, key, value) for stamp, key, value in got.stamped["t"] if key in (b"first", b"second")]
    assert [(key, value) for _s, key, value in ours] == [(b"second", P), (b"first", P)]
    assert [stamp.cpu for stamp, _k, _v in ours] == [1, 0]
    assert ours[0][0].time < ours[1][0].time


def test_a_table_overflow_in_the_kernel_comes_back_with_its_site(calls):
    script = "var t = {}\ntrace raw_syscalls:sys_enter { t[args.id] += 1 }"
    got = run_live(script, workload(calls), {}, Limits(max_table=2))
    fault = first_fault(got.faults, got.plan.sites)
    assert fault.render() == "error: table overflow (2 entries) at t.kp:2:33"
    # the kernel kept counting what fitted: the two first keys, exactly
    assert got.tables["t"] == [(GETPPID, P), (GETPID, Q)]
    store = [v for v in module_of(script).probes[0].func.values() if v.op is Op.TableSet]
    assert fault.span == store[0].span


def test_the_overflow_message_is_the_interpreters(calls, tmp_path):
    """The same script under the interpreter, on the same workload run from
    its first instruction: the same message at the same position."""
    script = "var t = {}\ntrace raw_syscalls:sys_enter { t[args.id] += 1 }"
    path = tmp_path / "t.kp"
    path.write_text(script)
    env = dict(os.environ)
    run = subprocess.run([os.path.join(os.path.dirname(__import__("sys").executable), "ktapjit"), "run",
                          "--engine", "interp", "--max-table", "2", str(path), "--", str(calls), str(P),
                          str(Q), "nowait"], capture_output=True, env=env, timeout=120, cwd=tmp_path)
    got = run_live(script, workload(calls), {}, Limits(max_table=2))
    kernel = first_fault(got.faults, got.plan.sites)
    assert f"error: {kernel.message} at {path}:2:33" in run.stderr.decode()


def interpreter_aggregations(calls_in_order, update) -> list:
    """What the interpreter's tables hold after `update(table, id)` for
    each syscall id in order (semantics.agg is the interpreter's code)."""
    table = Table(Limits().max_table)
    for nr in calls_in_order:
        update(table, nr)
    return list(table.items())


def items_of(value):
    """A table's items, nested tables too, in insertion order."""
    if type(value) is Table:
        return [(k, items_of(v)) for k, v in value.items()]
    return value


SYSCALLS = [GETPPID] * P + [GETPID] * Q + [EXIT_GROUP]
MAX_TABLE = Limits().max_table


@pytest.mark.parametrize("script, update", [
    ('var h = {}\ntrace raw_syscalls:sys_enter { hist(h, "ids", args.id) }',
     lambda t, nr: agg.hist(t, b"ids", nr, max_table=MAX_TABLE)),
    ('var h = {}\ntrace raw_syscalls:sys_enter { lhist(h, execname, args.id, 0, 200, 50) }',
     lambda t, nr: agg.lhist(t, b"calls", nr, 0, 200, 50, max_table=MAX_TABLE)),
    ('var h = {}\ntrace raw_syscalls:sys_enter { stats(h, 1, args.id) }',
     lambda t, nr: agg.stats(t, 1, nr, max_table=MAX_TABLE)),
    ('var h = {}\ntrace raw_syscalls:sys_enter { hist(h, "ns", args.id)\n lhist(h, "us", -args.id, -100, 0, 25) }',
     lambda t, nr: (agg.hist(t, b"ns", nr, max_table=MAX_TABLE),
                    agg.lhist(t, b"us", -nr, -100, 0, 25, max_table=MAX_TABLE))),
], ids=["hist", "lhist", "stats", "hist and lhist in one table"])
def test_aggregations_equal_the_interpreters(calls, script, update):
    got = run_live(script, workload(calls), {})
    assert got.faults == []
    expected = interpreter_aggregations(SYSCALLS, update)
    assert [(k, items_of(v)) for k, v in got.tables["h"]] == [(k, items_of(v)) for k, v in expected]


def test_a_first_insert_stamp_is_on_the_clock_of_the_stream(calls):
    """bpf_ktime_get_ns() is CLOCK_MONOTONIC, and so is every perf record
    ktapjit opens (use_clockid). The program runs just before perf takes
    the sample of the same event, so a key's stamp is a little before its
    first sample's time, never after, and never far (docs/bpf.md)."""
    script = "var t = {}\ntrace syscalls:sys_enter_getppid, syscalls:sys_enter_getpid { t[probename] += 1 }"
    got = run_live(script, workload(calls), {}, clockid=time.CLOCK_MONOTONIC)
    mine = sorted((s for s in got.samples if s.pid == got.samples[0].pid), key=lambda s: s.time)
    assert len(mine) == P + Q
    first_sample = {b"sys_enter_getppid": mine[0].time, b"sys_enter_getpid": mine[P].time}
    for stamp, key, _value in got.stamped["t"]:
        gap = first_sample[key] - stamp.time
        assert 0 <= gap < 1_000_000, (key, gap)  # measured here: ~1-3 us


@pytest.mark.parametrize("script, base, cell, expected", [
    ('var t = {}\ntrace raw_syscalls:sys_enter { t["NR " .. args.id] += 1 }', {}, "t",
     [(b"NR 110", P), (b"NR 39", Q), (b"NR 231", 1)]),
    ('var t = {}\ntrace syscalls:sys_enter_getppid { t[execname .. ":" .. -args.__syscall_nr .. "/" .. probename] += 1 }',
     {}, "t", [(b"calls:-110/sys_enter_getppid", P)]),
    # syscount: a read-only table the top level fills, a name or "NR n"
    ("var counts = {}\nvar NAMES = {[110] = \"getppid\"}\n"
     "function name_of(nr) { var n = NAMES[nr]\n if (n == nil) { n = \"NR \" .. nr }\n return n }\n"
     "trace raw_syscalls:sys_enter { counts[name_of(args.id)] += 1 }",
     {"NAMES": [(110, b"getppid")]}, "counts", [(b"getppid", P), (b"NR 39", Q), (b"NR 231", 1)]),
], ids=["a number in a string", "a key of four parts", "a name from a read-only table"])
def test_strings_built_in_the_kernel(calls, script, base, cell, expected):
    got = run_live(script, workload(calls), base)
    assert got.faults == []
    assert got.tables[cell] == expected


@pytest.mark.parametrize("kernel_arg, field", [
    ("i=%di:s64", CtxField(112, 8, True)),
    ("n=%si:u32", CtxField(104, 4, False)),
    ("arg1=%ax", CtxField(80, 8, False)),
    ("r=$retval:s32", CtxField(80, 4, True)),
    ("p=+0(%si):string", CtxField(0, 0, readable=False)),
    ("arg2=\\42:s32", CtxField(0, 4, True, constant=42)),
    ("arg2=\\4294967289:s32", CtxField(0, 4, True, constant=-7)),
    ("arg1=-24(%bp):s64", CtxField(32, 8, True, deref=-24)),
    ("arg1=+8(%sp):u32", CtxField(152, 4, False, deref=8)),
    ("p=+0(+8(%si)):u64", CtxField(0, 0, readable=False)),
])
def test_a_fetch_arg_is_a_register_of_the_programs_context(kernel_arg, field):
    assert register_field(kernel_arg, "x86_64") == field


def test_a_uprobe_program_sums_a_register_argument_exactly(beats_workload):
    """beat(i) for i in 0..N-1: the sum of its first argument, read from %di."""
    n = 20000
    source = "var s, calls = 0, 0\ntrace probe:/x:beat { s += args.i; calls += 1 }"
    module = module_of(source)
    [target] = symbol_file_offset(str(beats_workload), "beat")
    work = subprocess.Popen([str(beats_workload), str(n)], stdin=subprocess.PIPE)
    try:
        event = uprobe_event(0, "beat", ["i=%di:s64"], False, b"beat", pid=work.pid)
        plan = lower_module(module, analyse_module(module), Limits(), [event])
        perf_event = uprobe_pmu_event(str(beats_workload), target.offset, is_return=False)
        with BpfSession() as bpf, PerfSession([perf_event], pages=1, track_tasks=False) as perf:
            loaded = load_plan(bpf, plan)
            gate_on(loaded)
            seed(loaded.maps[SCOPE_MAP], work.pid)
            for spec in plan.maps:
                prefill(spec, loaded.maps[spec.name], [(None, 0)])
            [program] = plan.programs
            attach_all([op.fd for op in perf.opened], loaded.programs[program.name])
            work.stdin.write(b"go")
            work.stdin.close()
            assert work.wait(timeout=60) == 0
            got = {spec.cell: read_back(spec, loaded.maps[spec.name]) for spec in plan.maps}
    finally:
        work.kill()
        work.wait()
    assert got == {"s": [(None, n * (n - 1) // 2)], "calls": [(None, n)]}


def _perf_fds_of(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += "perf_event" in os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return count


@pytest.mark.slow  # two ktapjit processes, one tracing live: 5-10 s
def test_the_kernel_tables_equal_the_interpreters_on_the_same_events(calls, tmp_path):
    """The interpreter traces the workload live (-p) and records the stream,
    while the lowered programs count the same events in the kernel: its
    trace_end output, live and over the recording, prints the tables read
    back from the maps."""
    body = "var t = {}\ntrace syscalls:sys_enter_getppid, syscalls:sys_enter_getpid { t[probename] += 1 }\n"
    script = body + 'trace_end { for (k, v in pairs(t)) { printf("%s %d\\n", k, v) } }'
    (tmp_path / "t.kp").write_text(script)
    ktapjit = os.path.join(os.path.dirname(sys.executable), "ktapjit")
    work = subprocess.Popen(workload(calls), stdin=subprocess.PIPE)
    interp = None
    try:
        # a program returning 0 drops the tracepoint's sample for every perf
        # event on it, the interpreter's too: keep them
        plan, events = plan_for(body, pid=work.pid, keep_samples=True)
        perf_events = [tracepoint("syscalls", e.event) for e in events]
        with BpfSession() as bpf, PerfSession(perf_events, pages=1, track_tasks=False) as perf:
            loaded = load_plan(bpf, plan)
            gate_on(loaded)
            seed(loaded.maps[SCOPE_MAP], work.pid)
            for program, perf_event in zip(plan.programs, perf_events):
                attach_all([op.fd for op in perf.opened if op.event is perf_event], loaded.programs[program.name])
            interp = subprocess.Popen([ktapjit, "run", "--engine", "interp", "--record", "rec.data", "-p",
                                       str(work.pid), "t.kp"], cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while _perf_fds_of(interp.pid) < len(perf_events) * len(perf.cpus):
                assert time.monotonic() < deadline and interp.poll() is None, interp.stderr.read()
                time.sleep(0.05)
            time.sleep(0.5)  # opened, then enabled
            work.stdin.write(b"go")
            work.stdin.close()
            assert work.wait(timeout=60) == 0
            time.sleep(0.5)
            interp.send_signal(signal.SIGINT)  # as a user stops a -p trace
            live_out, live_err = interp.communicate(timeout=60)
            kernel = [(k, v) for k, v in read_back(plan.maps[0], loaded.maps[plan.maps[0].name])]
    finally:
        for proc in (work, interp):
            if proc is not None:
                proc.kill()
                proc.wait()
    assert kernel == [(b"sys_enter_getppid", P), (b"sys_enter_getpid", Q)]
    printed = "".join(f"{k.decode()} {v}\n" for k, v in kernel)
    assert (live_out.decode(), interp.returncode) == (printed, 0), live_err.decode()
    replay = subprocess.run([ktapjit, "run", "--replay", "rec.data", "t.kp"], cwd=tmp_path, capture_output=True,
                            timeout=120)
    assert replay.stdout.decode() == printed


def test_without_keep_samples_the_tracepoint_writes_no_sample_for_any_perf_event(calls):
    """A tracepoint program that returns 0 drops the event for every perf
    event on that tracepoint: the cheap path when nothing records, and why
    a recording run needs keep_samples."""
    script = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }"
    got = run_live(script, workload(calls), {"n": [(None, 0)]})
    assert got.tables["n"] == [(None, P)]
    assert got.samples == []
