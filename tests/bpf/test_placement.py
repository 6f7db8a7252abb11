"""Where each probe runs (docs/bpf.md, "Where a probe runs"), as a table: a
script, and for each probe or timer `SPEC kernel`, or `SPEC user` followed
by its reasons, one a line, as `LINE:COL construct`.

The last tests run the analysis over every example and pin the result, so a
change in placement shows in review.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktapjit.bpf.placement import KERNEL, USER, FieldShape, place_module
from ktapjit.cli import main
from ktapjit.compiler import compile_script
from ktapjit.semantics.limits import Limits

ROOT = Path(__file__).resolve().parents[2]


def compile_text(source: str, path: str = "t.kp"):
    return compile_script(source.encode(), path, verify=True).module


def plan(source: str, limits: Limits = Limits(), shapes=None, path: str = "t.kp") -> str:
    module = compile_text(source, path)
    lines = []
    for placement in place_module(module, limits, (lambda probe: shapes) if shapes is not None else None):
        lines.append(f"{placement.spec} {placement.where}")
        lines += [f"  {r.span.line}:{r.span.col} {r.construct}" for r in placement.reasons]
    return "\n".join(lines)


ORDER = "the value read depends on the order of events"

# (name, script, expected plan)
CASES = [
    # -- commutative updates stay in the kernel
    ("count a global", "var n = 0\ntrace a:b { n += 1 }", "a:b kernel"),
    ("count per comm", "var t = {}\ntrace a:b { t[execname] += 1 }", "a:b kernel"),
    ("t[k] = t[k] + 1 is an update", "var t = {}\ntrace a:b { t[pid] = t[pid] + 1 }", "a:b kernel"),
    ("sum a field", "var t = {}\ntrace a:b { t[pid] += arg1 }", "a:b kernel"),
    ("subtract", "var n = 0\ntrace a:b { n -= arg1 }", "a:b kernel"),
    ("one kind per cell, across probes",
     "var t = {}\ntrace a:b { t[cpu] += 1 }\ntrace c:d { t[cpu] += arg1 }", "a:b kernel\nc:d kernel"),
    ("other kinds under other constant keys",
     'var t = {}\ntrace a:b { t["x"] += 1 }\ntrace c:d { t["y"] *= arg1 }', "a:b kernel\nc:d kernel"),
    ("two kinds on one cell",
     "var t = {}\ntrace a:b { t[1] += 1 }\ntrace c:d { t[1] *= 2 }",
     "a:b user\n"
     "  2:14 `t` is updated in more than one way (*=, +=)\n"
     "c:d user\n"
     "  3:14 `t` is updated in more than one way (*=, +=)"),
    ("set membership: one constant", "var seen = {}\ntrace a:b { seen[pid] = true }\ntrace c:d { seen[tid] = true }",
     "a:b kernel\nc:d kernel"),
    ("two constants: the last writer wins",
     "var st = {}\ntrace a:b { st[pid] = 1 }\ntrace c:d { st[pid] = 2 }",
     "a:b user\n"
     "  2:15 `st` is updated in more than one way (= 1, = 2)\n"
     "c:d user\n"
     "  3:15 `st` is updated in more than one way (= 1, = 2)"),
    ("a computed store: the last writer wins", "var last = 0\ntrace a:b { last = arg1 }",
     "a:b user\n  2:20 stores a computed value into `last`: the last writer wins"),
    ("a read used for a decision", "var t = {}\ntrace a:b { t[pid] += 1; if (t[pid] > 3) { t[0] += 1 } }",
     "a:b user\n"
     f"  2:31 reads `t`, which trace a:b writes: {ORDER}"),
    ("a read printed", "var t = {}\ntrace a:b { t[pid] += 1; var x = t[pid]; print(x) }",
     "a:b user\n"
     f"  2:35 reads `t`, which trace a:b writes: {ORDER}\n"
     "  2:47 print() writes output, in event order"),
    ("a read that feeds another cell", "var t, u = {}, {}\ntrace a:b { t[pid] += 1; u[pid] += t[pid] }",
     "a:b user\n"
     f"  2:37 reads `t`, which trace a:b writes: {ORDER}"),
    ("the update's result used again", "var n = 0\ntrace a:b { var m = n + 1; n = m; print(m) }",
     "a:b user\n"
     f"  2:23 reads `n`, which trace a:b writes: {ORDER}\n"
     "  2:23 stores a computed value into `n`: the last writer wins\n"
     "  2:40 print() writes output, in event order"),
    ("reversed subtraction is not an update", "var n = 0\ntrace a:b { n = 5 - n }",
     "a:b user\n"
     f"  2:19 reads `n`, which trace a:b writes: {ORDER}\n"
     "  2:19 stores a computed value into `n`: the last writer wins"),
    # -- min and max through comparisons
    ("max", "var m = {}\ntrace a:b { if (arg1 > m[cpu]) { m[cpu] = arg1 } }", "a:b kernel"),
    ("max with a nil test", "var m = {}\ntrace a:b { if (m[cpu] == nil || m[cpu] < arg1) { m[cpu] = arg1 } }",
     "a:b kernel"),
    ("min of a global", "var lo = nil\ntrace a:b { if (lo == nil || arg1 < lo) { lo = arg1 } }", "a:b kernel"),
    ("argmax: a companion value depends on order",
     "var best, who = 0, 0\ntrace a:b { if (arg1 > best) { best = arg1; who = pid } }",
     "a:b user\n"
     f"  2:22 reads `best`, which trace a:b writes: {ORDER}\n"
     "  2:39 stores a computed value into `best`: the last writer wins\n"
     "  2:51 stores a computed value into `who`: the last writer wins"),
    ("first writer wins", "var first = {}\ntrace a:b { if (first[pid] == nil) { first[pid] = arg1 } }",
     f"a:b user\n  2:22 reads `first`, which trace a:b writes: {ORDER}\n"
     "  2:43 stores a computed value into `first`: the last writer wins"),
    ("max with a count of new maxima", "var m, c = 0, 0\ntrace a:b { if (arg1 > m) { m = arg1; c += 1 } }",
     "a:b user\n"
     f"  2:22 reads `m`, which trace a:b writes: {ORDER}\n"
     "  2:33 stores a computed value into `m`: the last writer wins"),
    ("max and min of one cell", "var m = {}\ntrace a:b { if (arg1 > m[1]) { m[1] = arg1 } }\n"
     "trace c:d { if (arg1 < m[1]) { m[1] = arg1 } }",
     "a:b user\n"
     "  2:33 `m` is updated in more than one way (max, min)\n"
     "c:d user\n"
     "  3:33 `m` is updated in more than one way (max, min)"),
    # -- per-thread state
    ("pairing by tid", "var start, lat = {}, {}\ntrace a:b { start[tid] = gettimeofday_ns() }\n"
     "trace c:d { var s = start[tid]\n if (s == nil) { return }\n start[tid] = nil\n"
     " lat[execname] += gettimeofday_ns() - s }", "a:b kernel\nc:d kernel"),
    ("pairing by pid depends on order", "var start = {}\ntrace a:b { start[pid] = arg1 }\n"
     "trace c:d { var s = start[pid] }",
     "a:b user\n  2:18 stores a computed value into `start`: the last writer wins\n"
     f"c:d user\n  3:26 reads `start`, which trace a:b writes: {ORDER}"),
    ("per-thread state shared with a user-space probe",
     "var start = {}\ntrace a:b { start[tid] = arg1 }\ntrace c:d { print(start[tid]) }",
     "a:b user\n"
     "  2:18 `start` is per-thread state also used by trace c:d, which runs in user space\n"
     "c:d user\n"
     "  3:18 print() writes output, in event order"),
    # -- what user space reads while events run
    ("a tick reads a counter", "var n = 0\ntrace a:b { n += 1 }\ntick-1s { print(n) }",
     "a:b user\n"
     "  2:15 `n` is also used while events run by tick-1s, in user space (t.kp:3:16)\n"
     "tick-1s user\n"
     "  3:1 tick-1s runs in user space, in stream time\n"
     "  3:16 print() writes output, in event order\n"
     f"  3:16 reads `n`, which trace a:b writes: {ORDER}"),
    ("a user-space probe prints the table", "var t = {}\ntrace a:b { t[pid] += 1 }\ntrace c:d { print_hist(t) }",
     "a:b user\n  2:14 `t` is also used while events run by trace c:d, in user space (t.kp:3:23)\n"
     "c:d user\n  3:23 print_hist() writes output, in event order"),
    ("trace_end reads after the events", "var n = 0\ntrace a:b { n += 1 }\ntrace_end { print(n) }", "a:b kernel"),
    ("top level writes before the events", "var n = 0\nn = 5\ntrace a:b { n += 1 }", "a:b kernel"),
    ("a user-space probe adds too", "var n = 0\ntrace a:b { n += 1 }\ntrace c:d { n += 1; print(1) }",
     "a:b kernel\n"
     "c:d user\n"
     "  3:26 print() writes output, in event order"),
    # -- whole-table operations
    ("delete", "var t = {}\ntrace a:b { t[pid] += 1 }\ntrace c:d { delete(t) }",
     "a:b user\n  2:14 `t` is also used while events run by trace c:d, in user space (t.kp:3:19)\n"
     "c:d user\n  3:19 delete() of `t` at event time"),
    ("delete a cell among counts", "var t = {}\ntrace a:b { t[pid] += 1 }\ntrace c:d { t[pid] = nil }",
     "a:b user\n"
     "  2:14 `t` is updated in more than one way (+=, = nil (delete))\n"
     "c:d user\n"
     "  3:14 `t` is updated in more than one way (+=, = nil (delete))"),
    ("pairs", "var t = {}\ntrace a:b { for (k, v in pairs(t)) { } }",
     "a:b user\n  2:31 pairs() (the kernel cannot walk a map in insertion order)"),
    ("len of a table written at event time", "var t, n = {}, 0\ntrace a:b { t[pid] = true; n += len(t) }",
     "a:b user\n"
     "  2:36 len() of `t`, which trace a:b writes: it depends on the order of events"),
    ("len of a string", "var n = 0\ntrace a:b { n += len(execname) }", "a:b kernel"),
    ("a read-only table of unbounded strings", "var names = {}\nnames[1] = arg[1]\nvar n = 0\n"
     'trace a:b { if (names[pid] == "x") { n += 1 } }',
     "a:b user\n  4:22 a value of `names` is a string of unbounded size"),
    ("a read-only table", 'var names = {"read", "write"}\nvar t = {}\n'
     'trace a:b { t[names[arg1] || "other"] += len(names) }', "a:b kernel"),
    # -- output
    ("print", "trace a:b { print(pid) }", "a:b user\n  1:18 print() writes output, in event order"),
    ("printf", 'trace a:b { printf("%d\\n", pid) }', "a:b user\n  1:19 printf() writes output, in event order"),
    ("print_hist", "var t = {}\ntrace a:b { print_hist(t) }",
     "a:b user\n  2:23 print_hist() writes output, in event order"),
    # -- bounded sizes
    ("a key built of bounded parts", 'var t = {}\ntrace a:b { t[execname .. ":" .. pid .. " " .. probename] += 1 }',
     "a:b kernel"),
    ("a key too long", "var t = {}\ntrace a:b { var i = arg1\n t[i .. i .. i .. i .. i .. i .. i] += 1 }",
     "a:b user\n"
     "  3:3 the key of `t` is a string of up to 140 bytes, above the kernel's 128\n"
     "  3:6 `..` builds a string of up to 140 bytes, above the kernel's 128"),
    ("a string grown in a loop", 'var t = {}\ntrace a:b { var s = ""\n for (i = 1, 3) { s = s .. "ab" }\n t[s] += 1 }',
     "a:b user\n"
     "  3:25 `..` builds a string of unbounded size\n"
     "  4:3 the key of `t` is a string of unbounded size"),
    ("ipof", 'var t = {}\ntrace a:b { t[ipof("vfs_read")] += 1 }',
     "a:b user\n  2:19 ipof() (its address is looked up in kallsyms in user space when the run starts)"),
    ("stringof", "var t = {}\ntrace a:b { t[stringof(pid)] += 1 }",
     "a:b user\n"
     "  2:14 the key of `t` is a string of unbounded size\n"
     "  2:23 stringof() (its text numbers tables and functions in print order)"),
    ("argstr", "var t = {}\ntrace a:b { t[argstr] += 1 }",
     "a:b user\n"
     "  2:14 the key of `t` is a string of unbounded size\n"
     "  2:15 argstr (the event's trace text is rendered in user space)"),
    ("a table as a key", "var t, u = {}, {}\ntrace a:b { t[u] += 1 }",
     "a:b user\n  2:14 the key of `t` may be a table (no fixed-size encoding)"),
    ("stack keys", "var t = {}\nprofile-1ms { t[stack()] += 1 }",
     "profile-1ms user\n  2:16 the key of `t` is a string of unbounded size\n  2:22 stack()"),
    ("a dynamic string field", "var t = {}\ntrace a:b { t[args.filename] += 1 }", "a:b kernel"),
    # -- functions
    ("an inlined function", "var n = 0\nfunction sq(x) { return x * x }\ntrace a:b { n += sq(arg1) }", "a:b kernel"),
    ("recursion", "var n = 0\nfunction f(x) { if (x < 1) { return 0 } return f(x - 1) }\ntrace a:b { n += f(3) }",
     "a:b user\n"
     "  2:49 recursive call of f (the kernel inlines every call)"),
    ("a closure", "var n = 0\ntrace a:b { var f = function() { return 1 }; n += f() }",
     "a:b user\n  2:21 function expression (a closure)"),
    ("a captured variable", "var n = 0\ntrace a:b { var k = 1; var f = function() { return k }; n += f() }",
     "a:b user\n"
     "  2:32 function expression (a closure)\n"
     "  2:32 variable captured by a closure\n"
     "  2:63 call of a function value the analysis cannot resolve"),
    ("a function from a table", "var fs = {}\nfs[1] = function() { return 1 }\nvar n = 0\n"
     "trace a:b { n += fs[1]() }",
     "a:b user\n"
     "  4:20 a value of `fs` may be a function (no fixed-size encoding)\n"
     "  4:23 call of a function value the analysis cannot resolve"),
    ("a function reassigned at event time", "function f() { return 1 }\nfunction g() { return 2 }\nvar n = 0\n"
     "trace a:b { f = g }\ntrace c:d { n += f() }",
     "a:b user\n"
     "  4:1 stores a computed value into `f`: the last writer wins\n"
     "  4:1 the value stored in `f` may be a function (no fixed-size encoding)\n"
     "c:d user\n"
     "  5:19 call of a function value the analysis cannot resolve\n"
     f"  5:19 reads `f`, which trace a:b writes: {ORDER}\n"
     "  5:19 the value of `f` may be a function (no fixed-size encoding)"),
    # -- loops, limits and exit
    ("a bounded loop", "var n = 0\ntrace a:b { for (i = 1, 10) { n += i } }", "a:b kernel"),
    ("a loop without a static bound", "var n = 0\ntrace a:b { var x = arg1\n while (x > 1) { x = x >> 1; n += 1 } }",
     "a:b kernel"),
    ("exit", "var n = 0\ntrace a:b { n += 1; if (n > 5) { exit() } }",
     "a:b user\n"
     "  2:1 exit()\n"
     f"  2:27 reads `n`, which trace a:b writes: {ORDER}"),
    ("a table constructor", "var t = {}\ntrace a:b { t[pid] = {} }",
     "a:b user\n"
     "  2:14 stores a computed value into `t`: the last writer wins\n"
     "  2:14 table constructor (the kernel cannot allocate tables)\n"
     "  2:14 the value stored in `t` may be a table (no fixed-size encoding)"),
    # -- aggregations
    ("aggregations", 'var lat, by = {}, {}\ntrace a:b { hist(lat, "ns", arg1)\n lhist(lat, "us", arg1, 0, 100, 10)\n'
     " stats(by, execname, arg1) }", "a:b kernel"),
    ("lhist bounds from the event", "var lat = {}\ntrace a:b { lhist(lat, 1, arg1, 0, arg2, 10) }",
     "a:b user\n"
     "  2:18 lhist() with bounds not known at compile time (no fixed-size encoding)"),
    ("an aggregation and a count in one cell", 'var t = {}\ntrace a:b { hist(t, "x", arg1) }\n'
     'trace c:d { t["x"] += 1 }',
     "a:b user\n"
     "  2:17 `t` is updated in more than one way (+=, hist())\n"
     "c:d user\n"
     "  3:14 `t` is updated in more than one way (+=, hist())\n"
     "  3:14 a value of `t` may be a table (no fixed-size encoding)"),
    # -- events
    ("tick", "var n = 0\ntick-10ms { n += 1 }", "tick-10ms user\n  2:1 tick-10ms runs in user space, in stream time"),
    ("profile", "var t = {}\nprofile-10ms { t[execname] += 1 }", "profile-10ms kernel"),
    ("uprobe and USDT", "var n = 0\ntrace probe:/bin/true:main { n += 1 }\ntrace sdt:/bin/x:p:q { n += arg1 }",
     "probe:/bin/true:main kernel\nsdt:/bin/x:p:q kernel"),
    ("ftrace:function", "var n = 0\ntrace ftrace:function { n += 1 }",
     "ftrace:function user\n  2:7 ftrace:function (a BPF program cannot attach to the function tracer)"),
    ("a filter runs in the kernel", "var n = 0\ntrace a:b /ret < 0/ { n += 1 }", "a:b kernel"),
    ("event time and probename", "var t = {}\ntrace a:b { t[probename] += gettimeofday_us() }", "a:b kernel"),
    # -- memory read at event time: the program reads it itself
    ("a string read compared in the kernel",
     'var n = 0\ntrace a:b { if (user_string(args.filename) == "/etc/passwd") { n += 1 } }', "a:b kernel"),
    ("in_iowait() counted in the kernel", "var t = {}\ntrace a:b { t[in_iowait()] += 1 }", "a:b kernel"),
    ("a string read as a key, at the default --max-string",
     "var t = {}\ntrace a:b { t[kernel_string(arg1)] += 1 }",
     "a:b user\n  2:14 the key of `t` is a string of up to 4096 bytes, above the kernel's 128"),
]


@pytest.mark.parametrize("name, script, expected", CASES, ids=[c[0] for c in CASES])
def test_placement(name, script, expected):
    assert plan(script) == expected


def test_the_table_covers_every_rule():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


# ------------------------------------------------------------ limits and event formats


LOOP = "var n = 0\ntrace a:b { var x = arg1\n while (x > 1) { x = x >> 1; n += 1 } }"


def test_a_loop_limit_bpf_loop_cannot_count_stays_in_user_space():
    assert plan(LOOP, Limits(max_loop=1 << 23)) == "a:b kernel"
    assert plan(LOOP, Limits(max_loop=(1 << 23) + 1)) == \
        "a:b user\n  3:2 loop: --max-loop 8388609 is above bpf_loop()'s 8388608"


def test_calls_deeper_than_max_depth_stay_in_user_space():
    script = "var n = 0\nfunction f() { return 1 }\nfunction g() { return f() }\ntrace a:b { n += g() }"
    assert plan(script, Limits(max_depth=2)) == "a:b kernel"
    assert plan(script, Limits(max_depth=1)) == "a:b user\n  3:24 calls nested deeper than --max-depth 1"


@pytest.mark.parametrize("max_string, expected", [
    (128, "a:b kernel"),
    (129, "a:b user\n  2:14 the key of `t` is a string of up to 129 bytes, above the kernel's 128"),
    (1 << 20, "a:b user\n  2:14 the key of `t` is a string of up to 4096 bytes, above the kernel's 128"),
])
def test_a_string_read_is_bounded_by_max_string_and_4096(max_string, expected):
    """user_string() keeps at most min(--max-string, 4096) bytes: a key of
    it fits the kernel's slots when --max-string does."""
    script = "var t = {}\ntrace a:b { t[user_string(args.filename)] += 1 }"
    assert plan(script, Limits(max_string=max_string)) == expected


@pytest.mark.parametrize("shape, expected", [
    (FieldShape("int"), "a:b kernel"),
    (FieldShape("string", 16), "a:b kernel"),
    (FieldShape("string", 256),
     "a:b user\n  2:14 the key of `t` is a string of up to 256 bytes, above the kernel's 128"),
    (FieldShape("string", None), "a:b user\n  2:14 the key of `t` is a string of unbounded size"),
])
def test_event_formats_decide_a_fields_size(shape, expected):
    assert plan("var t = {}\ntrace a:b { t[args.filename] += 1 }", shapes={"filename": shape}) == expected


@pytest.mark.parametrize("script, expected", [
    ("var t = {}\ntrace a:b { t[tid] = gettimeofday_ns() }",
     "a:b user\n  2:14 gettimeofday_ns() while the stream is recorded (a replay reads the sample's time, "
     "not the kernel's clock)"),
    ("var n = 0\ntrace a:b { n += 1 }", "a:b kernel"),
])
def test_a_recorded_run_keeps_clock_readings_in_user_space(script, expected):
    """The kernel reads the clock before perf stamps the sample, which is the
    time a replay of the recording reads: under --record or --engine compare
    the replay must print what the run printed. Unrecorded, it runs in the kernel."""
    module = compile_text(script)
    lines = []
    for placement in place_module(module, Limits(), recorded=True):
        lines.append(f"{placement.spec} {placement.where}")
        lines += [f"  {r.span.line}:{r.span.col} {r.construct}" for r in placement.reasons]
    assert "\n".join(lines) == expected
    assert plan(script) == "a:b kernel"


def test_an_events_array_field_is_read_in_the_kernel_but_not_written():
    shapes = {"args": FieldShape("array")}
    assert plan("var n = 0\ntrace a:b { n += args.args[0] }", shapes=shapes) == "a:b kernel"
    assert plan("trace a:b { args.args[0] = 1 }", shapes=shapes) == \
        "a:b user\n  1:22 store into an event's array field"


# ------------------------------------------------------------ properties

STATEMENTS = [
    "{n} += 1", "{t}[execname] += arg1", "{t}[pid] = arg1", "if ({t}[pid] > 1) {{ {n} += 1 }}", "{m}[cpu] = true",
    "{s}[tid] = arg1", "{n} -= {s}[tid] || 0", "for (i = 1, 3) {{ {n} += i }}", '{t}["k"] = nil', "print({n})",
    "if (arg1 > {m}[0]) {{ {m}[0] = arg1 }}", "hist({t}, execname, arg1)", "delete({m})",
]
PLAIN = {"n": "n", "t": "t", "m": "m", "s": "s"}
RENAMED = {"n": "calls", "t": "by_comm", "m": "highest", "s": "zz"}
PROBES = st.lists(st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=4), min_size=1, max_size=3)


def script_of(bodies: list[list[str]], names: dict[str, str] = PLAIN) -> str:
    lines = ["var {n} = 0", "var {t}, {m}, {s} = {{}}, {{}}, {{}}"]
    lines += [f"trace sys:ev{i} {{{{ " + "; ".join(body) + " }}" for i, body in enumerate(bodies)]
    return "\n".join(line.format(**names) for line in lines)


@settings(max_examples=60, deadline=None)
@given(PROBES)
def test_renaming_variables_never_changes_placement(bodies):
    plain = place_module(compile_text(script_of(bodies)))
    renamed = place_module(compile_text(script_of(bodies, RENAMED)))
    assert [p.where for p in plain] == [p.where for p in renamed]
    assert [len(p.reasons) for p in plain] == [len(p.reasons) for p in renamed]


@settings(max_examples=60, deadline=None)
@given(PROBES, st.data())
def test_adding_a_print_moves_a_probe_to_user_space(bodies, data):
    index = data.draw(st.integers(0, len(bodies) - 1))
    before = place_module(compile_text(script_of(bodies)))
    bodies = [list(b) for b in bodies]
    bodies[index].append("print(1)")
    after = place_module(compile_text(script_of(bodies)))
    assert after[index].where == USER
    assert any(r.construct.startswith("print()") for r in after[index].reasons)
    # Moving a probe to user space never moves another one into the kernel.
    assert all(a.where == USER for a, b in zip(after, before) if b.where == USER)


def test_every_kernel_placement_has_no_reason_and_every_user_one_has_one():
    for _name, script, _expected in CASES:
        for placement in place_module(compile_text(script)):
            assert (placement.where == KERNEL) == (not placement.reasons)


# ------------------------------------------------------------ the examples

EXAMPLES = {
    "execsnoop.kp": """
        syscalls:sys_enter_execve user
          15:8 printf() writes output, in event order
    """,
    "filtered.kp": """
        sched:sched_process_exec user
          21:8 printf() writes output, in event order
          26:38 argstr (the event's trace text is rendered in user space)
        raw_syscalls:sys_exit user
          21:8 printf() writes output, in event order
          30:38 argstr (the event's trace text is rendered in user space)
    """,
    "flamegraph.kp": """
        profile-2ms user
          22:8 the key of `stacks` is a string of unbounded size
          22:14 stack()
          22:34 ustack()
          22:37 `..` builds a string of unbounded size
    """,
    "funclat.kp": """
        probe:/tmp/demo:work kernel
        probe:/tmp/demo:work%return kernel
    """,
    "hello.kp": "",  # no probes: top level and trace_end run in user space
    "malloc_sizes.kp": """
        probe:/lib/x86_64-linux-gnu/libc.so.6:malloc size=%di:u64 kernel
    """,
    "offcputime.kp": """
        sched:sched_switch user
          24:6 stores a computed value into `left`: the last writer wins
          25:8 stores a computed value into `for_io`: the last writer wins
          26:18 reads `left`, which trace sched:sched_switch writes: the value read depends on the order of events
          31:13 reads `for_io`, which trace sched:sched_switch writes: the value read depends on the order of events
          34:7 `left` is updated in more than one way (=, = nil (delete))
          35:9 `for_io` is updated in more than one way (=, = nil (delete))
    """,
    "opensnoop.kp": """
        syscalls:sys_enter_openat user
          18:8 printf() writes output, in event order
    """,
    "schedtime.kp": """
        sched:sched_switch user
          34:8 stores a computed value into `names`: the last writer wins
          36:13 reads `on_cpu`, which trace sched:sched_switch writes: the value read depends on the order of events
          37:29 reads `on_cpu`, which trace sched:sched_switch writes: the value read depends on the order of events
          38:10 `on_cpu` is updated in more than one way (=, = nil (delete))
          42:10 `asleep` is updated in more than one way (=, = nil (delete))
          44:10 stores a computed value into `asleep`: the last writer wins
          48:8 stores a computed value into `names`: the last writer wins
          49:9 stores a computed value into `on_cpu`: the last writer wins
        sched:sched_wakeup user
          55:12 reads `asleep`, which trace sched:sched_switch and 1 other write: the value read depends on the order of events
          56:45 reads `asleep`, which trace sched:sched_switch and 1 other write: the value read depends on the order of events
          57:9 `asleep` is updated in more than one way (=, = nil (delete))
    """,
    "syscount.kp": """
        raw_syscalls:sys_enter kernel
    """,
    "syscount_by_process.kp": """
        raw_syscalls:sys_enter kernel
    """,
    "sysdist.kp": """
        raw_syscalls:sys_enter kernel
        raw_syscalls:sys_exit kernel
    """,
    "syslat.kp": """
        raw_syscalls:sys_enter user
          39:9 `entered` is per-thread state also used by trace raw_syscalls:sys_exit, which runs in user space
        raw_syscalls:sys_exit user
          52:9 reads `slowest`, which trace raw_syscalls:sys_exit writes: the value read depends on the order of events
          53:52 stores a computed value into `slowest_comm`: the last writer wins
          53:52 stores a computed value into `slowest_nr`: the last writer wins
          53:52 stores a computed value into `slowest`: the last writer wins
    """,
    "usdt.kp": """
        sdt:/tmp/demo:ktapjit_demo:tick user
          29:11 stores a computed value into `last_n`: the last writer wins
    """,
}


def example_paths():
    return sorted(p.name for p in (ROOT / "examples").glob("*.kp"))


@pytest.mark.parametrize("name", example_paths())
def test_examples(name):
    path = ROOT / "examples" / name
    got = plan(path.read_text(), path=f"examples/{name}")
    assert got == textwrap.dedent(EXAMPLES[name]).strip("\n")


def test_every_example_is_pinned():
    assert sorted(EXAMPLES) == example_paths()


# ------------------------------------------------------------ ktapjit plan


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode()


def test_plan_prints_one_line_per_probe():
    status, out, err = cli("plan", str(ROOT / "examples" / "sysdist.kp"))
    assert (status, out, err) == (0, "raw_syscalls:sys_enter\tkernel\nraw_syscalls:sys_exit\tkernel\n", "")


def test_plan_gives_the_reasons_with_their_positions():
    status, out, err = cli("plan", "-e", "var n = 0\ntrace a:b { n += 1 }\ntrace c:d { print(pid); n = arg1 }")
    assert status == 0 and err == ""
    assert out == ("a:b\tuser\t-e:2:15: `n` is updated in more than one way (+=, =)\n"
                   "c:d\tuser\t-e:3:18: print() writes output, in event order; "
                   "-e:3:29: stores a computed value into `n`: the last writer wins\n")


def test_plan_honours_the_limits():
    script = "var n = 0\ntrace a:b { while (n < arg1) { n += 1 } }"
    assert cli("plan", "-e", script)[1] == f"a:b\tuser\t-e:2:22: reads `n`, which trace a:b writes: {ORDER}\n"
    status, out, _err = cli("plan", "--max-loop", "9000000", "-e", "trace a:b { while (true) { } }")
    assert (status, out) == (0, "a:b\tuser\t-e:1:13: loop: --max-loop 9000000 is above bpf_loop()'s 8388608\n")


@pytest.mark.parametrize("argv, status, first_line", [
    (["plan", "-e", "trace a:b { print(1 }"], 2, "-e:1:21: error: syntax error near '}'"),
    (["plan", "/nonexistent.kp"], 2, "ktapjit: cannot read script '/nonexistent.kp': No such file or directory"),
    (["plan"], 2, "ktapjit: no script given: pass SCRIPT or -e PROGRAM"),
    (["plan", "--bogus", "x.kp"], 2, "ktapjit: unrecognized arguments: --bogus (see 'ktapjit --help')"),
])
def test_plan_errors_are_one_line_and_no_traceback(argv, status, first_line):
    got, out, err = cli(*argv)
    assert (got, out, err.splitlines()[0]) == (status, "", first_line)
    assert "Traceback" not in err
