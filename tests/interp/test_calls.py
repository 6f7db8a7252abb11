"""Calls, tail calls, closures, depth and per-call loop counts on hand-built IR."""

import sys

import pytest

from ktapjit.diag import RuntimeFault
from ktapjit.interp.frames import EXITED
from ktapjit.ir.ops import Op
from ktapjit.run_api import Limits

from tests.interp.irkit import FuncBuilder, at, evaluate, value_of

CALL_SPAN = at(9, 4)
F_SLOT = 1  # the global the recursive functions call themselves through


def function(nparams=0, name="f"):
    return FuncBuilder(name, "function", nparams)


def concat_params():
    """f(a, b) { return stringof(a) .. stringof(b) }"""
    f = function(2)
    a, b = f.param(0), f.param(1)
    f.ret(f.op(Op.Concat, f.op(Op.StringOf, a), f.op(Op.StringOf, b)))
    return f.func


def call_with(code, *args, span=CALL_SPAN, lim=None):
    fb = FuncBuilder()
    fn = fb.op(Op.Closure, aux=code)
    fb.ret(fb.call(fn, *[fb.const(a) for a in args], span=span))
    return value_of(fb.func, lim)


@pytest.mark.parametrize("args, expected", [
    ((1, 2), b"12"), ((1,), b"1nil"), ((), b"nilnil"), ((True, b"x"), b"truex"),
])
def test_missing_arguments_are_nil(args, expected):
    assert call_with(concat_params(), *args) == expected


def test_too_many_arguments():
    with pytest.raises(RuntimeFault) as info:
        call_with(concat_params(), 1, 2, 3)
    assert info.value.message == "too many arguments (function takes 2, got 3)"
    assert info.value.span == CALL_SPAN


@pytest.mark.parametrize("callee, name", [(None, "nil"), (1, "integer"), (b"f", "string"), (True, "boolean")])
def test_calling_a_non_function(callee, name):
    fb = FuncBuilder()
    fb.ret(fb.call(fb.const(callee), fb.const(1), span=CALL_SPAN))
    with pytest.raises(RuntimeFault) as info:
        value_of(fb.func)
    assert (info.value.message, info.value.span) == (f"attempt to call a {name} value", CALL_SPAN)


def test_calling_a_table():
    fb = FuncBuilder()
    fb.ret(fb.call(fb.op(Op.TableNew), span=CALL_SPAN))
    with pytest.raises(RuntimeFault, match="attempt to call a table value"):
        value_of(fb.func)


def test_result_is_nil_without_return_value_and_calls_resume_in_place():
    f = function()
    f.print(f.const(b"in f"))
    f.ret()
    fb = FuncBuilder()
    fn = fb.op(Op.Closure, aux=f.func)
    r1 = fb.call(fn)
    fb.print(fb.const(b"between"), r1)
    r2 = fb.call(fn)
    fb.print(fb.const(b"after"), r2)
    fb.ret(fb.const(b"done"))
    assert evaluate(fb.func) == (b"done", b"in f\nbetween\tnil\nin f\nafter\tnil\n")


def down(tail: bool = False):
    """down(n) { if (n == 1) return 1; return [1 +] down(n - 1) }, through global F_SLOT."""
    f = function(1, "down")
    n = f.param(0)
    base, rec = f.new_block(), f.new_block()
    f.branch(f.op(Op.Eq, n, f.const(1)), base, rec)
    f.at(base).ret(f.const(1))
    f.at(rec)
    me = f.op(Op.GlobalGet, aux=F_SLOT)
    m = f.op(Op.Sub, n, f.const(1))
    if tail:
        f.tail(me, m, span=CALL_SPAN)
    else:
        f.ret(f.op(Op.Add, f.const(1), f.call(me, m, span=CALL_SPAN)))
    return f.func


def run_down(n, lim, tail=False):
    fb = FuncBuilder()
    fn = fb.op(Op.Closure, aux=down(tail))
    fb.op(Op.GlobalSet, fn, aux=F_SLOT)
    fb.ret(fb.call(fn, fb.const(n), span=at(1, 1)))
    return value_of(fb.func, lim)


def test_depth_limit_boundary():
    # The top level is at depth 0, so down(n) reaches depth n.
    assert run_down(10, Limits(max_depth=10)) == 10
    with pytest.raises(RuntimeFault) as info:
        run_down(11, Limits(max_depth=10))
    assert info.value.message == "stack overflow (depth 10)"
    assert info.value.span == CALL_SPAN  # the call that would go too deep


def test_first_call_past_depth_zero():
    with pytest.raises(RuntimeFault) as info:
        run_down(1, Limits(max_depth=0))
    assert info.value.span == at(1, 1)


def test_deep_recursion_uses_no_python_stack():
    depth = 100_000
    assert depth > 10 * sys.getrecursionlimit()
    assert run_down(depth, Limits(max_depth=depth)) == depth


def test_tail_calls_do_not_grow_the_depth():
    assert run_down(5000, Limits(max_depth=3), tail=True) == 1


@pytest.mark.parametrize("callee, args, message", [
    (None, (), "attempt to call a nil value"),
    ("code", (1, 2), "too many arguments (function takes 1, got 2)"),
])
def test_tail_call_checks(callee, args, message):
    target = function(1)
    target.ret()
    f = function()
    c = f.op(Op.Closure, aux=target.func) if callee == "code" else f.const(callee)
    f.tail(c, *[f.const(a) for a in args], span=CALL_SPAN)
    with pytest.raises(RuntimeFault) as info:
        call_with(f.func)
    assert (info.value.message, info.value.span) == (message, CALL_SPAN)


def ticks(fb, n, span=None):
    for _ in range(n):
        fb.op(Op.LoopTick, span=span)


def test_each_call_has_its_own_back_edge_count():
    callee = function()
    ticks(callee, 3)
    callee.ret()
    fb = FuncBuilder()
    fn = fb.op(Op.Closure, aux=callee.func)
    ticks(fb, 2)
    fb.call(fn)
    fb.call(fn)
    ticks(fb, 1)  # the caller's count is now 3: still fine
    fb.print(fb.const(b"at limit"))
    ticks(fb, 1, span=at(7, 7))
    fb.ret()
    out = []
    with pytest.raises(RuntimeFault) as info:
        evaluate(fb.func, Limits(max_loop=3), out=out.append)
    assert info.value.message == "loop limit exceeded (3 iterations)"
    assert info.value.span == at(7, 7)
    assert b"".join(out) == b"at limit\n"


def test_a_tail_call_starts_a_new_count():
    """k(n): 3 back-edges, then tail-calls k(n-1): 3 per call is within max_loop=3."""
    f = function(1, "k")
    n = f.param(0)
    ticks(f, 3)
    more, done = f.new_block(), f.new_block()
    f.branch(f.op(Op.Gt, n, f.const(0)), more, done)
    f.at(more).tail(f.op(Op.GlobalGet, aux=F_SLOT), f.op(Op.Sub, n, f.const(1)))
    f.at(done).ret(f.const(b"ok"))
    fb = FuncBuilder()
    fn = fb.op(Op.Closure, aux=f.func)
    fb.op(Op.GlobalSet, fn, aux=F_SLOT)
    fb.ret(fb.call(fn, fb.const(10)))
    assert value_of(fb.func, Limits(max_loop=3)) == b"ok"


def counter_factory():
    """mk() { var x = 0; return function() { x += 1; return x } }"""
    inner = function(0, "inner")
    cell = inner.op(Op.FreeCell, aux=0)
    x = inner.op(Op.Add, inner.op(Op.CellGet, cell), inner.const(1))
    inner.op(Op.CellSet, cell, x)
    inner.ret(x)
    mk = function(0, "mk")
    mk.ret(mk.op(Op.Closure, mk.op(Op.CellNew, mk.const(0)), aux=inner.func))
    return mk.func


def test_closures_capture_cells_by_reference():
    fb = FuncBuilder()
    mk = fb.op(Op.Closure, aux=counter_factory())
    h1 = fb.call(mk)
    h2 = fb.call(mk)
    fb.print(fb.call(h1), fb.call(h1), fb.call(h2), fb.call(h1))
    fb.ret()
    assert evaluate(fb.func)[1] == b"1\t2\t1\t3\n"


def test_exit_unwinds_every_frame():
    g = function(0, "g")
    g.print(g.const(b"in g"))
    g.exit()
    f = function(0, "f")
    f.call(f.op(Op.Closure, aux=g.func))
    f.print(f.const(b"after g"))
    f.ret()
    fb = FuncBuilder()
    fb.call(fb.op(Op.Closure, aux=f.func))
    fb.print(fb.const(b"after f"))
    fb.ret()
    assert evaluate(fb.func) == (EXITED, b"in g\n")


def test_fault_in_a_nested_call_points_at_the_inner_op():
    g = function(1, "g")
    g.ret(g.op(Op.Add, g.param(0), g.const(1), span=at(2, 12)))
    fb = FuncBuilder()
    fb.ret(fb.call(fb.op(Op.Closure, aux=g.func), fb.const(b"x"), span=CALL_SPAN))
    with pytest.raises(RuntimeFault) as info:
        value_of(fb.func)
    assert info.value.render() == "error: attempt to perform arithmetic on a string value at t.kp:2:12"
