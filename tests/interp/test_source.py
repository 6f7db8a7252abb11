"""Source-level cases: script text through parse, resolve and the SSA
builder, run by the interpreter. Each case is a sentence of LANGUAGE.md.

A case is (source, expected output, expected error or None); the error is
written as the CLI prints it, ``MESSAGE at LINE:COL`` (the path is t.kp).
"""

import pytest

from ktapjit.compiler import compile_script
from ktapjit.interp.engine import InterpEngine
from ktapjit.run_api import Limits, RunConfig
from tests.interp.irkit import FakeEvent

PATH = "t.kp"


def compile_source(src: str):
    return compile_script(src.encode(), PATH, until="build ssa").module




def run_source(src, lim=None, args=(), events=(), start_time_ns=0, end_time_ns=None):
    """Run src; events are ("probe", index, Event) or ("timer", index, time_ns)."""
    chunks = []
    config = RunConfig(lim or Limits(), (PATH, *args), start_time_ns)
    run = InterpEngine(strict=True).load(compile_source(src), config, chunks.append)
    if run.start():
        for kind, index, ev in events:
            ok = run.run_probe(index, ev) if kind == "probe" else run.run_timer(index, ev)
            if not ok:
                break
    result = run.finish(time_ns=end_time_ns)
    error = None
    if result.error is not None:
        error = f"{result.error.message} at {result.error.span.line}:{result.error.span.col}"
    return b"".join(chunks), error, result


CASES = [
    # Values and printing
    ('print(1, nil, true, false, "s", {}, function() {})',
     b"1\tnil\ttrue\tfalse\ts\ttable: 1\tfunction: 1\n", None),
    ('print("\\x41\\0b", len("\\x41\\0b"))', b"A\0b\t3\n", None),
    ('if (0) { print("0 is true") } if ("") { print("empty is true") }',
     b"0 is true\nempty is true\n", None),
    # Arithmetic
    ('print(7 / -2, -7 % 2, 1 << 64, -8 >> 1, 0xffffffffffffffff, 0x8000000000000000 / -1)',
     b"-3\t-1\t1\t-4\t-1\t-9223372036854775808\n", None),
    ('print(9223372036854775807 + 1, 0x8000000000000000 % -1)', b"-9223372036854775808\t0\n", None),
    ('var x = 1\nx = x / 0', b"", "divide by zero at 2:7"),
    ('print(1 + nil)', b"", "attempt to perform arithmetic on a nil value at 1:9"),
    # Equality, ordering, concatenation, logic
    ('print(1 == "1", "a" == "a", {} == {}, nil != false)', b"false\ttrue\tfalse\ttrue\n", None),
    ('print("ab" < "b", "a" < "ab", 2 <= 2, "\\xff" > "a")', b"true\ttrue\ttrue\ttrue\n", None),
    ('print(1 < "a")', b"", "attempt to compare integer with string at 1:9"),
    ('print("a" .. 1 .. -2)', b"a1-2\n", None),
    ('print("a" .. nil)', b"", "attempt to concatenate a nil value at 1:11"),
    ('print(nil || "a", false && 1, 1 && 2, !0, !nil)', b"a\tfalse\t2\tfalse\ttrue\n", None),
    # Names and scopes
    ('var a, b = 1; print(a, b)', b"1\tnil\n", None),
    ('var a = 1, 2, print("surplus evaluated"); print(a)', b"surplus evaluated\n1\n", None),
    ('var x = 1; if (true) { var x = x + 1; print(x) } print(x)', b"2\n1\n", None),
    ('f(); function f() {}', b"", "attempt to call a nil value at 1:2"),
    ('function f() { return g } var g = 5; print(f())', b"5\n", None),
    ('function mk() { var x = 0; return function() { x += 1; return x } }\n'
     'var a = mk(); var b = mk(); a(); print(a(), b())', b"2\t1\n", None),
    ('function f(a, b) { print(a, b) } f(1)', b"1\tnil\n", None),
    ('function f(a) {} f(1, 2)', b"", "too many arguments (function takes 1, got 2) at 1:19"),
    # Assignment
    ('var t = {}; var i = 1; i, t[i] = i+1, 20; print(i, t[1], t[2])', b"2\t20\tnil\n", None),
    ('var a, b = 1, 2; a, b = b, a; print(a, b)', b"2\t1\n", None),
    ('var t = {}; t["k"] += 1; t.k += 1; print(t.k)', b"2\n", None),
    ('var x; x += 1', b"", "attempt to perform arithmetic on a nil value at 1:10"),
    # Loops
    ('var i = 0; while (i < 3) { i += 1; if (i == 2) { break } } print(i)', b"2\n", None),
    ('var i = 0; repeat { var j = i; i += 1 } until (j >= 2) print(i)', b"3\n", None),
    ('for (i = 1, 3) { print(i) } for (i = 3, 1, -1) { print(i) }', b"1\n2\n3\n3\n2\n1\n", None),
    ('for (i = 1, 3) { i = 10; print(i) }', b"10\n10\n10\n", None),
    ('for (i = 1, 0) { print(i) } print("none")', b"none\n", None),
    ('for (i = 9223372036854775806, 9223372036854775807) { print(i) }',
     b"9223372036854775806\n9223372036854775807\n", None),
    ('for (i = -9223372036854775807, 0x8000000000000000, -1) { print(i) }',
     b"-9223372036854775807\n-9223372036854775808\n", None),
    ('for (i = 1, 3, 0) { }', b"", "'for' step is zero at 1:1"),
    ('\nfor (i = 1, "a") { }', b"", "'for' limit must be an integer at 2:1"),
    ('for (i = true, 1) { }', b"", "'for' initial value must be an integer at 1:1"),
    ('for (i = 0; i < 3; i += 1) { print(i) }', b"0\n1\n2\n", None),
    ('var fs = {}; for (i = 1, 3) { fs[i] = function() { return i } } print(fs[1](), fs[3]())',
     b"1\t3\n", None),
    # Tables and pairs
    ('var t = {a=1, b=2, c=3}; for (k, v in pairs(t)) { print(k, v); t.b = nil; t.c = 30; t.d = 4 }',
     b"a\t1\nc\t30\n", None),
    ('var t = {1, 2, name = 3, [4] = 5, [1] = 9}; for (k, v in pairs(t)) { print(k, v) } print(len(t))',
     b"1\t9\n2\t2\nname\t3\n4\t5\n4\n", None),
    ('var t = {}; t.a = 1; t.b = 2; t.a = nil; t.a = 3; for (k, v in pairs(t)) { print(k, v) }',
     b"b\t2\na\t3\n", None),
    ('var t = {}; t[true] = 1; t[1] = 2; t["1"] = 3; print(len(t), t[true], t[1], t["1"])',
     b"3\t1\t2\t3\n", None),
    ('var t = {}; print(t[nil]); t[nil] = 1', b"nil\n", "table index is nil at 1:29"),
    ('var t; print(t.x)', b"", "attempt to index a nil value at 1:15"),
    ('for (k, v in pairs(5)) { }', b"", "attempt to index a integer value at 1:19"),
    ('delete(nil)', b"", "attempt to index a nil value at 1:7"),
    ('var t = {1,2}; delete(t); print(len(t)); print(len(table.new(1, 2)))', b"0\n0\n", None),
    ('print(len(5))', b"", "attempt to get length of a integer value at 1:10"),
    # Builtins
    ('printf("%5d|%-5s|%x|%c|%%\\n", 42, "ab", 255, 65)', b"   42|ab   |ff|A|%\n", None),
    ('printf("%d\\n", "x")', b"", "printf: bad argument for '%d': expected integer, got string at 1:7"),
    ('var t = {}; var u = {}; print(stringof(u)); printf("%s\\n", t); print(u, t)',
     b"table: 1\ntable: 2\ntable: 1\ttable: 2\n", None),
    ('print(1); return; print(2)', b"1\n", None),
    # exit()
    ('function f() { exit() } print(1); f(); print(2); trace_end { print("end") }', b"1\nend\n", None),
    ('trace_end { print("end"); exit(); print("never") }', b"end\n", None),
    # Runtime errors run trace_end, except inside it
    ('print(1) print(1/0) trace_end { print("end") }', b"1\nend\n", "divide by zero at 1:17"),
    ('trace_end { print("end"); print(nil .. 1); print("never") }', b"end\n",
     "attempt to concatenate a nil value at 1:37"),
]


@pytest.mark.parametrize("src, output, error", CASES, ids=[c[0][:40] for c in CASES])
def test_source(src, output, error):
    got_output, got_error, result = run_source(src)
    assert got_output == output
    assert got_error == error
    assert result.status == (1 if error else 0)


def test_error_after_error_in_trace_end_keeps_both():
    out, _, result = run_source('print(1/0) trace_end { print(nil .. 1) }')
    assert [f"{e.message} at {e.span.location()}" for e in result.errors] == [
        "divide by zero at t.kp:1:8", "attempt to concatenate a nil value at t.kp:1:34"]
    assert result.error is result.errors[0]


@pytest.mark.parametrize("src, lim, error", [
    ('while (true) {}', Limits(max_loop=10), "loop limit exceeded (10 iterations) at 1:1"),
    ('var s = "ab"; s = s .. "cd"', Limits(max_string=3), "string too long at 1:21"),
    ('var t = {}; t[1] = 1; t[2] = 2; t[3] = 3', Limits(max_table=2), "table overflow (2 entries) at 1:34"),
    ('function f(n) { if (n == 0) { return 0 } return 1 + f(n - 1) } print(f(10))',
     Limits(max_depth=10), "stack overflow (depth 10) at 1:54"),
])
def test_limits(src, lim, error):
    assert run_source(src, lim)[1] == error


def test_loop_limit_counts_per_call():
    src = 'function f() { for (i = 1, 5) { } } for (i = 1, 5) { f() } print("ok")'
    assert run_source(src, Limits(max_loop=5))[:2] == (b"ok\n", None)


def test_depth_boundary_and_tail_calls():
    src = 'function f(n) { if (n == 1) { return 1 } return 1 + f(n - 1) } print(f(%d))'
    assert run_source(src % 50, Limits(max_depth=50))[:2] == (b"50\n", None)
    assert run_source(src % 51, Limits(max_depth=50))[1] == "stack overflow (depth 50) at 1:54"
    tail = 'function f(n) { if (n == 0) { return "done" } return f(n - 1) } print(f(100000))'
    assert run_source(tail, Limits(max_depth=5))[:2] == (b"done\n", None)


def test_arguments_table():
    out, error, _ = run_source('print(arg[0], arg[1], arg[2], arg[3], arg[4])', args=("5", "-3", "x1"))
    assert (out, error) == (b"t.kp\t5\t-3\tx1\tnil\n", None)


def test_probes_timers_and_event_time():
    src = '''var n = 0
trace sched:sched_switch { n += 1; print(pid, arg0, args.prev_pid, gettimeofday_ns(), stack()) }
tick-1s { print("tick", gettimeofday_s()) }
trace_end { print(n, gettimeofday_us()) }
print("top", gettimeofday_ns())'''
    events = [
        ("probe", 0, FakeEvent(2000, pid=7, **{"args.prev_pid": 9, "kernelstack": b"k"})),
        ("timer", 0, 3_000_000_000),
        ("probe", 0, FakeEvent(4000, pid=8)),
    ]
    out, error, _ = run_source(src, events=events, start_time_ns=100, end_time_ns=5_000_000_000)
    assert error is None
    assert out == b"top\t100\n7\tnil\t9\t2000\tk\ntick\t3\n8\tnil\tnil\t4000\tnil\n2\t5000000\n"


def test_exit_in_a_probe_stops_the_events():
    src = 'trace a:b { if (pid == 8) { exit() } print(pid) } tick-1s { print("tick") } trace_end { print("end") }'
    events = [("probe", 0, FakeEvent(1, pid=7)), ("probe", 0, FakeEvent(2, pid=8)),
              ("timer", 0, 3), ("probe", 0, FakeEvent(4, pid=9))]
    out, error, result = run_source(src, events=events)
    assert (out, error, result.exit_called) == (b"7\nend\n", None, True)


def test_error_in_a_probe_stops_the_events():
    src = 'trace a:b { print(pid); print(1 / (pid - 8)) } trace_end { print("end") }'
    events = [("probe", 0, FakeEvent(1, pid=7)), ("probe", 0, FakeEvent(2, pid=8)), ("probe", 0, FakeEvent(3, pid=9))]
    out, error, _ = run_source(src, events=events)
    assert (out, error) == (b"7\n-1\n8\nend\n", "divide by zero at 1:33")
