"""Blocks, phis, loops and the back-edge limit on hand-built IR."""

import pytest

from ktapjit.diag import RuntimeFault
from ktapjit.interp.frames import EXITED
from ktapjit.ir.ops import Op
from ktapjit.run_api import Limits

from tests.interp.irkit import FuncBuilder, at, evaluate, value_of

LOOP_SPAN = at(2, 1)


def counting_loop(n: int, tick: bool = True):
    """i = 0; s = 0; while (i < n) { s += i; i += 1 } return s"""
    fb = FuncBuilder()
    entry = fb.block
    zero, one, limit = fb.const(0), fb.const(1), fb.const(n)
    head, body, done = fb.new_block(), fb.new_block(), fb.new_block()
    fb.jump(head)
    fb.at(body)
    i = fb.phi(head, zero)
    s = fb.phi(head, zero)
    s2 = fb.op(Op.Add, s, i)
    i2 = fb.op(Op.Add, i, one)
    if tick:
        fb.op(Op.LoopTick, span=LOOP_SPAN)
    fb.jump(head)
    i.args.append(i2)
    s.args.append(s2)
    assert head.preds == [entry, body]
    fb.at(head)
    fb.branch(fb.op(Op.Lt, i, limit), body, done)
    fb.at(done).ret(s)
    return fb.func


def test_loop_with_phis():
    assert value_of(counting_loop(10)) == 45


@pytest.mark.parametrize("n, ok", [(5, True), (6, False)])
def test_loop_limit_is_raised_at_limit_plus_one(n, ok):
    func = counting_loop(n)
    if ok:
        assert value_of(func, Limits(max_loop=5)) == sum(range(n))
    else:
        with pytest.raises(RuntimeFault) as info:
            value_of(func, Limits(max_loop=5))
        assert info.value.message == "loop limit exceeded (5 iterations)"
        assert info.value.span == LOOP_SPAN


def test_phis_are_assigned_in_parallel():
    """a, b = b, a around a loop: each phi reads the other's old value."""
    fb = FuncBuilder()
    entry = fb.block
    a0, b0, n = fb.const(b"a"), fb.const(b"b"), fb.const(3)
    head, body, done = fb.new_block(), fb.new_block(), fb.new_block()
    fb.jump(head)
    a = fb.phi(head, a0)
    b = fb.phi(head, b0)
    k = fb.phi(head, fb.const(0))
    fb.at(head).branch(fb.op(Op.Lt, k, n), body, done)
    fb.at(body)
    k2 = fb.op(Op.Add, k, fb.const(1))
    fb.jump(head)
    a.args.append(b)  # a <- b
    b.args.append(a)  # b <- a
    k.args.append(k2)
    assert head.preds == [entry, body]
    fb.at(done).ret(fb.op(Op.Concat, a, b))
    assert value_of(fb.func) == b"ba"  # three swaps


@pytest.mark.parametrize("cond, expected", [
    (None, b"else"), (False, b"else"), (True, b"then"), (0, b"then"), (b"", b"then"),
])
def test_if_takes_succs0_exactly_when_true(cond, expected):
    fb = FuncBuilder()
    then, other = fb.new_block(), fb.new_block()
    fb.branch(fb.const(cond), then, other)
    fb.at(then).ret(fb.const(b"then"))
    fb.at(other).ret(fb.const(b"else"))
    assert value_of(fb.func) == expected


@pytest.mark.parametrize("cond, expected", [(True, 1), (False, 2)])
def test_if_with_both_edges_to_one_block_picks_the_right_phi_arg(cond, expected):
    fb = FuncBuilder()
    join = fb.new_block()
    one, two = fb.const(1), fb.const(2)
    fb.branch(fb.const(cond), join, join)
    phi = fb.phi(join, one, two)  # preds: [entry (true edge), entry (false edge)]
    fb.at(join).ret(phi)
    assert value_of(fb.func) == expected


def test_diamond_join():
    fb = FuncBuilder()
    left, right, join = fb.new_block(), fb.new_block(), fb.new_block()
    fb.branch(fb.op(Op.Lt, fb.const(1), fb.const(2)), left, right)
    fb.at(left)
    x = fb.const(b"left")
    fb.jump(join)
    fb.at(right)
    y = fb.const(b"right")
    fb.jump(join)
    fb.at(join).ret(fb.phi(join, x, y))
    assert value_of(fb.func) == b"left"


def test_return_without_value_is_nil():
    fb = FuncBuilder()
    fb.ret()
    assert value_of(fb.func) is None


def test_exit_stops_the_block_at_once():
    fb = FuncBuilder()
    fb.print(fb.const(b"before"))
    fb.exit()
    result, out = evaluate(fb.func)
    assert result is EXITED and out == b"before\n"


def test_ops_after_a_fault_do_not_run():
    fb = FuncBuilder()
    fb.print(fb.const(1))
    fb.op(Op.Div, fb.const(1), fb.const(0), span=at(4, 2))
    fb.print(fb.const(2))
    fb.ret()
    out = []
    with pytest.raises(RuntimeFault) as info:
        evaluate(fb.func, out=out.append)
    assert info.value.render() == "error: divide by zero at t.kp:4:2"
    assert b"".join(out) == b"1\n"


def test_numeric_for_shape_stops_at_int64_bound():
    """for (i = MAX-2, MAX) print(i): ForCanStep ends the loop instead of wrapping."""
    MAX = (1 << 63) - 1
    fb = FuncBuilder()
    entry = fb.block
    start = fb.op(Op.ForInt, fb.const(MAX - 2), aux="initial value")
    limit = fb.op(Op.ForInt, fb.const(MAX), aux="limit")
    step = fb.op(Op.ForStepNonZero, fb.op(Op.ForInt, fb.const(1), aux="step"))
    head, body, done = fb.new_block(), fb.new_block(), fb.new_block()
    fb.jump(head)
    i = fb.phi(head, start)
    fb.at(head).branch(fb.op(Op.ForCont, i, limit, step), body, done)
    fb.at(body)
    fb.print(i)
    fb.op(Op.LoopTick)
    latch = fb.new_block()
    fb.branch(fb.op(Op.ForCanStep, i, step), latch, done)
    fb.at(latch)
    nxt = fb.op(Op.Add, i, step)
    fb.jump(head)
    i.args.append(nxt)
    assert head.preds == [entry, latch]
    fb.at(done).ret()
    _, out = evaluate(fb.func)
    assert out == b"".join(b"%d\n" % v for v in (MAX - 2, MAX - 1, MAX))
