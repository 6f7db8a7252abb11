"""Every probe the placement puts in the kernel, in the placement's table and
in the examples, lowers to programs that llvmlite compiles and the kernel's
verifier accepts (loaded, not attached); or the lowering says, at the
construct, that it does not handle it yet, and the table below pins that."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.bpf.conftest import needs_bpf, open_fds
from tests.bpf.test_placement import CASES

from ktapjit.bpf.kernel_load import load_plan
from ktapjit.bpf.kernel_plan import CtxField, KernelEvent
from ktapjit.bpf.lower import lower_module
from ktapjit.bpf.objects import BpfSession
from ktapjit.bpf.placement import KERNEL, analyse_module
from ktapjit.compiler import compile_script
from ktapjit.ir.func import TimerInfo
from ktapjit.semantics.limits import Limits

pytestmark = needs_bpf

ROOT = Path(__file__).resolve().parents[2]

# A tracepoint record with an integer of each size, a char[16] and an array.
TRACEPOINT_FIELDS = {"id": CtxField(8, 8, True), "ret": CtxField(16, 8, True), "count": CtxField(24, 4, True),
                     "flags": CtxField(28, 2), "filename": CtxField(32, 16, string=True),
                     "args": CtxField(48, 48, readable=False)}
# A uprobe's fetch arguments, in struct pt_regs (x86-64: di, si, dx).
UPROBE_FIELDS = {"size": CtxField(112, 8), "a1": CtxField(104, 8, True), "a2": CtxField(96, 8, True)}

# What the lowering does not handle yet, by row: the reason it gives.
NOT_LOWERED = {
    "a read-only table": "len() of a table (not lowered yet)",
    "other kinds under other constant keys": "`t` is updated in more than one way in one map (not lowered yet)",
}


SHARED = "`entered` is per-thread state also used by a probe that is not lowered yet"


def events_for(module) -> list[KernelEvent]:
    out = []
    for index, probe in enumerate(module.probes):
        for spec in probe.eventdef.split(","):
            spec = spec.strip()
            if spec.startswith(("probe:", "sdt:")):
                kind = "uretprobe" if spec.endswith("%return") else ("usdt" if spec.startswith("sdt:") else "uprobe")
                out.append(KernelEvent(index, "u", kind, spec.encode(), UPROBE_FIELDS, ("size", "a1", "a2")))
            else:
                out.append(KernelEvent(index, spec.split(":")[-1], "tracepoint", spec.split(":")[-1].encode(),
                                       TRACEPOINT_FIELDS, ("id", "ret", "count", "filename")))
    for index, timer in enumerate(module.timers):
        if timer.kind == "profile":
            out.append(KernelEvent(index, "cpu_clock", "profile", timer.text.encode(), timer=True))
    return out


def rows():
    for name, script, _expected in CASES:
        yield name, script, "t.kp"
    for path in sorted((ROOT / "examples").glob("*.kp")):
        yield path.name, path.read_text(), f"examples/{path.name}"


ROWS = [r for r in rows() if "kernel" in analyse_module(
    compile_script(r[1].encode(), r[2]).module).placements.__repr__()]


@pytest.mark.parametrize("name, script, path", ROWS, ids=[r[0] for r in ROWS])
def test_every_kernel_probe_lowers_and_loads(name, script, path):
    module = compile_script(script.encode(), path, verify=True).module
    analysis = analyse_module(module, Limits())
    plan = lower_module(module, analysis, Limits(), events_for(module))
    kernel = [p.target for p in analysis.placements if p.where == KERNEL]
    reasons = sorted({r.construct for r in plan.not_lowered.values()} - {SHARED})
    assert reasons == ([NOT_LOWERED[name]] if name in NOT_LOWERED else [])
    lowered = {p.event.target(module) for p in plan.programs}
    assert lowered | set(plan.not_lowered) == set(kernel)
    before = open_fds()
    with BpfSession() as session:
        loaded = load_plan(session, plan)
        assert sorted(loaded.programs) == sorted(p.name for p in plan.programs)
    assert open_fds() - before == set()


def test_the_table_has_kernel_rows_of_every_kind():
    names = {r[0] for r in ROWS}
    assert {"count a global", "pairing by tid", "max with a nil test", "profile", "uprobe and USDT",
            "a loop without a static bound", "an inlined function"} <= names
    assert set(NOT_LOWERED) <= names


def test_a_profile_timer_lowers_to_a_perf_event_program():
    module = compile_script(b"var t = {}\nprofile-10ms { t[execname] += 1 }", "t.kp").module
    plan = lower_module(module, analyse_module(module), Limits(), events_for(module))
    [program] = plan.programs
    assert isinstance(program.event.target(module), TimerInfo)
    assert program.prog_type == 25 - 18  # BPF_PROG_TYPE_PERF_EVENT


def test_what_is_not_lowered_yet_says_what_and_where():
    module = compile_script(b'var n = 0\ntrace a:b /comm == "x"/ { n += 1 }\ntrace c:d { n += 1 }', "t.kp").module
    plan = lower_module(module, analyse_module(module), Limits(), events_for(module))
    [(target, reason)] = plan.not_lowered.items()
    assert target is module.probes[0]
    assert reason.render() == "t.kp:2:12: a /FILTER/ on a str value (not lowered yet)"
    assert [p.event.target(module) for p in plan.programs] == [module.probes[1]]


# A tracepoint whose record holds a pointer, of 8 and of 4 bytes.
POINTER_FIELDS = {**TRACEPOINT_FIELDS, "path": CtxField(96, 8), "path32": CtxField(104, 4)}


@pytest.mark.parametrize("script, max_string", [
    ("var t = {}\ntrace a:b { t[user_string(args.path)] += 1 }", 128),
    ("var t = {}\ntrace a:b { t[kernel_string(args.path32)] += 1 }", 16),
    ('var n = 0\ntrace a:b { if (user_string(args.path) == "/etc/passwd") { n += 1 } }', 4096),
    ('var t = {}\ntrace a:b { var p = user_string(args.path)\n if (p != nil && len(p) > 3) { t[p] += 1 } }', 100),
    ("var t = {}\ntrace a:b { t[in_iowait()] += 1 }", 4096),
    ("var t = {}\ntrace a:b { t[user_string(args.path) .. kernel_string(args.path32)] += arg1 }", 60),
    ("var t = {}\ntrace a:b { t[user_string(args.filename)] += 1 }", 64),  # a char[16]: nil
])
def test_memory_reads_lower_and_load(script, max_string):
    """user_string(), kernel_string() and in_iowait() are read by the
    program itself: the verifier accepts the reads at every bound."""
    module = compile_script(script.encode(), "t.kp", verify=True).module
    limits = Limits(max_string=max_string)
    analysis = analyse_module(module, limits)
    assert [p.where for p in analysis.placements] == [KERNEL]
    event = KernelEvent(0, "b", "tracepoint", b"b", POINTER_FIELDS, ("id", "ret", "count", "filename"))
    plan = lower_module(module, analysis, limits, [event])
    assert plan.not_lowered == {}
    with BpfSession() as session:
        load_plan(session, plan)


@pytest.mark.parametrize("max_string, reasons", [
    (128, []),
    (4096, ["t.kp:2:40: comparing two strings of up to 4096 bytes (not lowered yet)"]),
])
def test_two_memory_reads_compare_up_to_the_kernels_string_size(max_string, reasons):
    script = "var n = 0\ntrace a:b { if (user_string(args.path) == kernel_string(args.path32)) { n += 1 } }"
    module = compile_script(script.encode(), "t.kp", verify=True).module
    limits = Limits(max_string=max_string)
    event = KernelEvent(0, "b", "tracepoint", b"b", POINTER_FIELDS, ())
    plan = lower_module(module, analyse_module(module, limits), limits, [event])
    assert [r.render() for r in plan.not_lowered.values()] == reasons
    with BpfSession() as session:
        load_plan(session, plan)


def test_a_memory_read_in_a_uprobe_is_not_lowered_yet():
    module = compile_script(b'var n = 0\ntrace probe:/bin/true:main { if (user_string(arg1) == "x") { n += 1 } }',
                            "t.kp").module
    plan = lower_module(module, analyse_module(module), Limits(), events_for(module))
    [reason] = plan.not_lowered.values()
    assert reason.render() == ("t.kp:2:45: user_string(arg1) in a uprobe program (the kernel reads it from a "
                               "tracepoint's record) (not lowered yet)")
