"""The engine surface: start, probes, timers, finish; exit(), errors and trace_end."""

import pytest

from ktapjit.diag import RuntimeFault
from ktapjit.interp.engine import InterpEngine, script_arg_value
from ktapjit.interp.runtime import InternalError
from ktapjit.ir.ops import Op
from ktapjit.run_api import Limits, Result
from ktapjit.semantics.stack_request import StackRequest

from tests.interp.irkit import FakeEvent, FuncBuilder, Session, at, module, run_module

MAX = (1 << 63) - 1


def body(kind, *steps, name=None):
    """A Func printing each text of steps; "EXIT" exits, "FAIL@l:c" divides by zero there."""
    fb = FuncBuilder(name or kind, kind)
    for step in steps:
        if step == "EXIT":
            fb.exit()
            return fb.func
        if step.startswith("FAIL@"):
            line, col = map(int, step[5:].split(":"))
            fb.op(Op.Div, fb.const(1), fb.const(0), span=at(line, col))
        else:
            fb.print(fb.const(step.encode()))
    fb.ret()
    return fb.func




def test_engine_name_and_protocol():
    assert InterpEngine.name == "interp"
    s = Session(module(body("main", "hi")))
    assert s.run.start() is True
    assert s.chunks == [b"hi\n"]  # flushed when the step ended
    result = s.run.finish()
    assert isinstance(result, Result)
    assert (result.status, result.error, result.exit_called, result.errors) == (0, None, False, [])
    assert s.run.finish() is result


# -- how runs end: (main, probe, trace_end) -> output, status, exit_called, errors
ENDINGS = [
    # normal: events run, then trace_end
    (("m",), ("p",), ("end",), b"m\np\np\nend\n", 0, False, []),
    # exit() at top level skips the rest and every event; trace_end runs
    (("m", "EXIT", "never"), ("p",), ("end",), b"m\nend\n", 0, True, []),
    # exit() in a probe: no more events, then trace_end
    (("m",), ("p", "EXIT"), ("end",), b"m\np\nend\n", 0, True, []),
    # exit() in trace_end ends trace_end
    (("m",), ("p",), ("end", "EXIT", "never"), b"m\np\np\nend\n", 0, True, []),
    # an error at top level: no events, trace_end runs, status 1
    (("m", "FAIL@1:3", "never"), ("p",), ("end",), b"m\nend\n", 1, False, ["1:3"]),
    # an error in a probe stops tracing; trace_end runs
    (("m",), ("p", "FAIL@5:2"), ("end",), b"m\np\nend\n", 1, False, ["5:2"]),
    # an error in trace_end ends it
    (("m",), ("p",), ("end", "FAIL@9:9", "never"), b"m\np\np\nend\n", 1, False, ["9:9"]),
    # an error, then another in trace_end: both kept, the first is Result.error
    (("FAIL@1:1",), ("p",), ("end", "FAIL@9:9"), b"end\n", 1, False, ["1:1", "9:9"]),
    # exit() then an error in trace_end
    (("EXIT",), ("p",), ("FAIL@9:9",), b"", 1, True, ["9:9"]),
]


@pytest.mark.parametrize("main, probe, end, output, status, exit_called, errors", ENDINGS)
def test_how_a_run_ends(main, probe, end, output, status, exit_called, errors):
    mod = module(body("main", *main), probes=[body("probe", *probe)], trace_end=body("trace_end", *end))
    s = Session(mod)
    tracing = s.run.start()
    ran = [s.run.run_probe(0, FakeEvent(i)) for i in range(2)]
    result = s.run.finish()
    assert s.output == output
    assert (result.status, result.exit_called) == (status, exit_called)
    assert [e.span.location() for e in result.errors] == [f"t.kp:{e}" for e in errors]
    assert all(e.message == "divide by zero" for e in result.errors)
    assert result.error is (result.errors[0] if errors else None)
    def stops(steps):
        return any(step == "EXIT" or step.startswith("FAIL") for step in steps)

    assert tracing is not stops(main)
    assert ran == [tracing and not stops(probe)] * 2
    assert s.run.tracing is False


def test_timers_stop_after_exit_and_report_false():
    mod = module(body("main"), timers=[body("timer", "t", "EXIT")], trace_end=body("trace_end", "end"))
    s = Session(mod)
    assert s.run.start()
    assert s.run.run_timer(0, 10) is False
    assert s.run.run_timer(0, 20) is False
    s.run.finish()
    assert s.output == b"t\nend\n"


def test_no_trace_end():
    output, result = run_module(module(body("main", "FAIL@2:2")))
    assert output == b"" and result.status == 1
    assert result.error.render() == "error: divide by zero at t.kp:2:2"


def test_output_is_flushed_before_each_step_returns():
    mod = module(body("main", "a", "b"), probes=[body("probe", "p", "FAIL@1:1")], trace_end=body("trace_end", "e"))
    s = Session(mod)
    s.run.start()
    assert s.output == b"a\nb\n"
    s.run.run_probe(0, FakeEvent(1))
    assert s.output == b"a\nb\np\n"
    s.run.finish()
    assert s.output == b"a\nb\np\ne\n"


def test_big_output_is_flushed_in_pieces():
    fb = FuncBuilder()
    for i in range(3000):
        fb.print(fb.const(i))
    fb.ret()
    s = Session(module(fb.func))
    s.run.start()
    assert len(s.chunks) > 1
    assert s.output == b"".join(b"%d\n" % i for i in range(3000))


# -- the arg table

@pytest.mark.parametrize("text, index, value", [
    ("script.kp", 0, b"script.kp"),
    ("12", 0, b"12"),  # arg[0] is the path, always a string
    ("12", 1, 12),
    ("-7", 2, -7),
    ("-0", 1, 0),
    ("007", 1, 7),
    (str(MAX), 1, MAX),
    (str(-MAX - 1), 1, -MAX - 1),
    (str(MAX + 1), 1, str(MAX + 1).encode()),
    ("+5", 1, b"+5"),
    ("1.5", 1, b"1.5"),
    ("0x10", 1, b"0x10"),
    ("", 1, b""),
    ("-", 1, b"-"),
    (" 1", 1, b" 1"),
    ("\u0661", 1, "\u0661".encode()),  # a non-ASCII digit is not [0-9]
])
def test_script_arg_value(text, index, value):
    got = script_arg_value(text, index)
    assert type(got) is type(value) and got == value


def test_arg_global_holds_the_script_arguments():
    fb = FuncBuilder()
    arg = fb.op(Op.GlobalGet, aux=1)
    fb.print(*[fb.op(Op.TableGet, arg, fb.const(i)) for i in range(4)], fb.op(Op.Len, arg))
    fb.ret()
    output, result = run_module(module(fb.func, global_names=["x", "arg"]), args=("my.kp", "5", "five"))
    assert output == b"my.kp\t5\tfive\tnil\t3\n" and result.status == 0


# -- time and the current event

def time_body(kind):
    fb = FuncBuilder(kind, kind)
    fb.print(*[fb.op(Op.Time, aux=unit) for unit in ("ns", "us", "ms", "s")])
    fb.ret()
    return fb.func


def test_time_is_event_time():
    mod = module(time_body("main"), probes=[time_body("probe")], timers=[time_body("timer")],
                 trace_end=time_body("trace_end"))
    s = Session(mod, start_time_ns=1_999_999_999)
    s.run.start()
    s.run.run_probe(0, FakeEvent(3_000_001_234))
    s.run.run_timer(0, 4_000_000_000)
    s.run.finish(time_ns=5_123_456_789)
    assert s.output == (
        b"1999999999\t1999999\t1999\t1\n"
        b"3000001234\t3000001\t3000\t3\n"
        b"4000000000\t4000000\t4000\t4\n"
        b"5123456789\t5123456\t5123\t5\n"
    )


def test_trace_end_time_defaults_to_the_last_time_seen():
    mod = module(body("main"), probes=[body("probe")], trace_end=time_body("trace_end"))
    s = Session(mod, start_time_ns=5)
    s.run.start()
    s.run.run_probe(0, FakeEvent(70))
    s.run.finish()
    assert s.output == b"70\t0\t0\t0\n"


def test_event_values_come_from_the_event():
    fb = FuncBuilder("probe", "probe")
    fb.print(fb.op(Op.EventValue, aux="pid"), fb.op(Op.EventValue, aux="execname"),
             fb.op(Op.EventField, aux="fd"), fb.op(Op.EventField, aux="nope"), fb.op(Op.Stack, aux=StackRequest("kernel")))
    fb.ret()
    s = Session(module(body("main"), probes=[fb.func]))
    s.run.start()
    s.run.run_probe(0, FakeEvent(1, pid=42, execname=b"cat", **{"args.fd": 3, "kernelstack": b"k1\nk2"}))
    s.run.run_probe(0, FakeEvent(2, pid=43, execname=b"sh"))
    assert s.run.finish().status == 0
    assert s.output == b"42\tcat\t3\tnil\tk1\nk2\n43\tsh\tnil\tnil\tnil\n"


# -- internal errors: reported, never a traceback (unless strict)

def event_value_at_top_level():
    fb = FuncBuilder()
    fb.print(fb.const(b"before"))
    fb.op(Op.EventValue, aux="pid", span=at(3, 3))
    fb.ret()
    return module(fb.func, trace_end=body("trace_end", "end"))


def test_internal_errors_are_reported_as_runtime_errors():
    output, result = run_module(event_value_at_top_level(), strict=False)
    assert output == b"before\nend\n" and result.status == 1
    assert isinstance(result.error, InternalError)
    assert result.error.render() == "error: internal error: event value read with no current event at t.kp:3:3"


def test_internal_errors_escape_in_strict_mode():
    with pytest.raises(InternalError):
        run_module(event_value_at_top_level(), strict=True)


def test_python_exceptions_become_internal_errors():
    fb = FuncBuilder()
    fb.op(Op.SnapshotLen, fb.const(5))  # only a builder bug could do this
    fb.ret()
    _, result = run_module(module(fb.func), strict=False)
    assert isinstance(result.error, InternalError)
    assert "TypeError" in result.error.message and "SnapshotLen" in result.error.message
    assert isinstance(result.error.__cause__, TypeError)


def test_malformed_blocks_fail_only_when_reached():
    fb = FuncBuilder()
    fb.print(fb.const(b"ok"))
    fb.ret()
    dead = fb.new_block()  # unreachable, never terminated properly
    fb.at(dead).op(Op.Print, fb.const(1))
    dead.kind = "Bogus"
    output, result = run_module(module(fb.func), strict=True)
    assert output == b"ok\n" and result.status == 0

    fb = FuncBuilder()
    live = fb.new_block()
    fb.jump(live)
    live.kind = "If"  # If without a control
    live.succs = [live, live]
    _, result = run_module(module(fb.func), strict=False)
    assert isinstance(result.error, InternalError) and "malformed IR" in result.error.message


def test_too_many_script_args_for_max_table():
    output, result = run_module(module(body("main", "never"), trace_end=body("trace_end", "end")),
                                Limits(max_table=2), args=("a", "b", "c"))
    assert output == b"end\n"
    assert result.error.message == "table overflow (2 entries)"


def test_runtime_fault_is_the_error_type():
    _, result = run_module(module(body("main", "FAIL@1:2")))
    assert isinstance(result.error, RuntimeFault) and not isinstance(result.error, InternalError)
