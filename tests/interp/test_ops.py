"""Each op family on hand-built IR: results, and error texts at the op's span.

A case applies one op to constant operands and returns its result; an Err
expects a RuntimeFault with that message located at the op.
"""

import os
import platform

import pytest

from ktapjit.diag import RuntimeFault
from ktapjit.ir.ops import Op
from ktapjit.run_api import Limits
from ktapjit.semantics.values import Cell, Function, Table

from tests.interp.irkit import FuncBuilder, at, evaluate, value_of

MAX = (1 << 63) - 1
MIN = -(1 << 63)
OP_SPAN = at(3, 7)


class Err:
    def __init__(self, message):
        self.message = message

    def __repr__(self):
        return f"Err({self.message!r})"


def apply(op, *operands, aux=None, lim=None):
    fb = FuncBuilder()
    args = [fb.const(x) for x in operands]
    fb.ret(fb.op(op, *args, aux=aux, span=OP_SPAN))
    return value_of(fb.func, lim)


def check(op, operands, expected, aux=None, lim=None):
    if isinstance(expected, Err):
        with pytest.raises(RuntimeFault) as info:
            apply(op, *operands, aux=aux, lim=lim)
        assert info.value.message == expected.message
        assert info.value.span == OP_SPAN
    else:
        got = apply(op, *operands, aux=aux, lim=lim)
        assert type(got) is type(expected) and got == expected


ARITH = [
    (Op.Add, (1, 2), 3),
    (Op.Add, (MAX, 1), MIN),
    (Op.Add, (True, 1), Err("attempt to perform arithmetic on a boolean value")),
    (Op.Add, (1, None), Err("attempt to perform arithmetic on a nil value")),
    (Op.Add, (b"1", 1), Err("attempt to perform arithmetic on a string value")),
    (Op.Sub, (MIN, 1), MAX),
    (Op.Mul, (MAX, 2), -2),
    (Op.Div, (7, -2), -3),
    (Op.Div, (-7, 2), -3),
    (Op.Div, (7, 0), Err("divide by zero")),
    (Op.Div, (MIN, -1), MIN),
    (Op.Mod, (-7, 2), -1),
    (Op.Mod, (7, -2), 1),
    (Op.Mod, (7, 0), Err("divide by zero")),
    (Op.Mod, (MIN, -1), 0),
    (Op.BAnd, (12, 10), 8),
    (Op.BOr, (12, 10), 14),
    (Op.BXor, (12, 10), 6),
    (Op.Shl, (1, 63), MIN),
    (Op.Shl, (1, 64), 1),
    (Op.Shr, (-8, 1), -4),
    (Op.Shr, (MIN, -1), -1),
    (Op.BAnd, (Table(1), 1), Err("attempt to perform arithmetic on a table value")),
    (Op.Neg, (MIN,), MIN),
    (Op.Neg, (5,), -5),
    (Op.Neg, (False,), Err("attempt to perform arithmetic on a boolean value")),
    (Op.BNot, (0,), -1),
    (Op.BNot, (b"",), Err("attempt to perform arithmetic on a string value")),
]

T1 = Table(10)
F1 = Function(None, ())

LOGIC = [
    (Op.Not, (None,), True),
    (Op.Not, (False,), True),
    (Op.Not, (0,), False),
    (Op.Not, (b"",), False),
    (Op.Eq, (1, True), False),
    (Op.Eq, (1, 1), True),
    (Op.Eq, (b"a", b"a"), True),
    (Op.Eq, (T1, T1), True),
    (Op.Eq, (T1, Table(10)), False),
    (Op.Eq, (None, False), False),
    (Op.Ne, (F1, F1), False),
    (Op.Ne, (1, b"1"), True),
    (Op.Lt, (1, 2), True),
    (Op.Lt, (2, 2), False),
    (Op.Le, (2, 2), True),
    (Op.Gt, (b"b", b"ab"), True),
    (Op.Lt, (b"ab", b"abc"), True),
    (Op.Gt, (b"\xff", b"a"), True),
    (Op.Ge, (MIN, MAX), False),
    (Op.Lt, (1, b"1"), Err("attempt to compare integer with string")),
    (Op.Le, (None, None), Err("attempt to compare nil with nil")),
    (Op.Gt, (True, False), Err("attempt to compare boolean with boolean")),
    (Op.Ge, (T1, T1), Err("attempt to compare table with table")),
]

STRINGS = [
    (Op.Concat, (b"a", 1), b"a1"),
    (Op.Concat, (1, -2), b"1-2"),
    (Op.Concat, (b"a\0", b"b"), b"a\0b"),
    (Op.Concat, (None, b"a"), Err("attempt to concatenate a nil value")),
    (Op.Concat, (b"a", F1), Err("attempt to concatenate a function value")),
    (Op.Len, (b"abc",), 3),
    (Op.Len, (b"",), 0),
    (Op.Len, (1,), Err("attempt to get length of a integer value")),
    (Op.Len, (None,), Err("attempt to get length of a nil value")),
    (Op.StringOf, (5,), b"5"),
    (Op.StringOf, (None,), b"nil"),
    (Op.StringOf, (False,), b"false"),
    (Op.StringOf, (b"x",), b"x"),
    (Op.StringOf, (T1,), b"table: 1"),
]

LOOPS = [
    (Op.ForInt, (1,), 1, "initial value"),
    (Op.ForInt, (True,), Err("'for' initial value must be an integer"), "initial value"),
    (Op.ForInt, (None,), Err("'for' limit must be an integer"), "limit"),
    (Op.ForInt, (b"1",), Err("'for' step must be an integer"), "step"),
    (Op.ForStepNonZero, (0,), Err("'for' step is zero"), None),
    (Op.ForStepNonZero, (-1,), -1, None),
    (Op.ForCont, (1, 2, 1), True, None),
    (Op.ForCont, (2, 2, 1), True, None),
    (Op.ForCont, (3, 2, 1), False, None),
    (Op.ForCont, (3, 2, -1), True, None),
    (Op.ForCont, (1, 2, -1), False, None),
    (Op.ForCanStep, (1, 1), True, None),
    (Op.ForCanStep, (MAX - 1, 1), True, None),
    (Op.ForCanStep, (MAX, 1), False, None),
    (Op.ForCanStep, (MIN, -1), False, None),
    (Op.ForCanStep, (MIN, MAX), True, None),
]

MISC = [
    (Op.OrZero, (None,), 0),
    (Op.OrZero, (5,), 5),
    (Op.OrZero, (False,), False),
    (Op.NumCpus, (), os.cpu_count()),
    (Op.Arch, (), platform.machine().encode()),
    (Op.KernelV, (), platform.release().encode()),
]


@pytest.mark.parametrize("op, operands, expected", ARITH + LOGIC + STRINGS + MISC)
def test_op(op, operands, expected):
    check(op, operands, expected)


@pytest.mark.parametrize("op, operands, expected, aux", LOOPS)
def test_loop_op(op, operands, expected, aux):
    check(op, operands, expected, aux=aux)


@pytest.mark.parametrize("op, operands, expected", [
    (Op.Concat, (b"ab", b"cd"), Err("string too long")),
    (Op.Concat, (b"ab", 1), b"ab1"),
    (Op.Concat, (1000, b""), Err("string too long")),
    (Op.StringOf, (1000,), Err("string too long")),
    (Op.StringOf, (b"abc",), b"abc"),
])
def test_max_string(op, operands, expected):
    check(op, operands, expected, lim=Limits(max_string=3))


# -- tables --------------------------------------------------------------------

def table_program(build, lim=None):
    """build(fb, t) adds ops using table t and returns the value to return."""
    fb = FuncBuilder()
    t = fb.op(Op.TableNew)
    fb.ret(build(fb, t))
    return value_of(fb.func, lim)


def test_table_set_get():
    def build(fb, t):
        fb.op(Op.TableSet, t, fb.const(1), fb.const(b"int"))
        fb.op(Op.TableSet, t, fb.const(b"1"), fb.const(b"str"))
        fb.op(Op.TableSet, t, fb.const(True), fb.const(b"bool"))
        get = lambda k: fb.op(Op.TableGet, t, fb.const(k))  # noqa: E731
        return fb.op(Op.Concat, fb.op(Op.Concat, get(1), get(b"1")), get(True))
    assert table_program(build) == b"intstrbool"


def test_table_get_missing_and_nil_key_give_nil():
    def build(fb, t):
        return fb.op(Op.Eq, fb.op(Op.TableGet, t, fb.const(None)), fb.op(Op.TableGet, t, fb.const(7)))
    assert table_program(build) is True


def test_table_set_nil_deletes_and_len_counts():
    def build(fb, t):
        fb.op(Op.TableSet, t, fb.const(1), fb.const(1))
        fb.op(Op.TableSet, t, fb.const(2), fb.const(2))
        fb.op(Op.TableSet, t, fb.const(1), fb.const(None))
        return fb.op(Op.Len, t)
    assert table_program(build) == 1


def test_table_new_uses_max_table():
    def build(fb, t):
        fb.op(Op.TableSet, t, fb.const(1), fb.const(1))
        fb.op(Op.TableSet, t, fb.const(2), fb.const(2))
        fb.op(Op.TableSet, t, fb.const(2), fb.const(3))  # overwriting is no growth
        fb.op(Op.TableSet, t, fb.const(3), fb.const(3), span=OP_SPAN)
        return t
    with pytest.raises(RuntimeFault) as info:
        table_program(build, Limits(max_table=2))
    assert info.value.message == "table overflow (2 entries)"
    assert info.value.span == OP_SPAN


def test_table_set_nil_key():
    with pytest.raises(RuntimeFault) as info:
        table_program(lambda fb, t: fb.op(Op.TableSet, t, fb.const(None), fb.const(1), span=OP_SPAN))
    assert (info.value.message, info.value.span) == ("table index is nil", OP_SPAN)


@pytest.mark.parametrize("op, extra", [
    (Op.TableGet, (1,)), (Op.TableSet, (1, 2)), (Op.Delete, ()), (Op.PairsSnapshot, ()),
])
@pytest.mark.parametrize("subject, name", [(None, "nil"), (3, "integer"), (b"s", "string"), (F1, "function")])
def test_index_non_table(op, extra, subject, name):
    check(op, (subject, *extra), Err(f"attempt to index a {name} value"))


def test_delete_empties():
    def build(fb, t):
        fb.op(Op.TableSet, t, fb.const(1), fb.const(1))
        fb.op(Op.Delete, t)
        return fb.op(Op.Len, t)
    assert table_program(build) == 0


def test_pairs_snapshot_keeps_keys_of_the_moment():
    def build(fb, t):
        for k in (b"a", 2, False):
            fb.op(Op.TableSet, t, fb.const(k), fb.const(1))
        snap = fb.op(Op.PairsSnapshot, t)
        fb.op(Op.TableSet, t, fb.const(b"later"), fb.const(1))
        fb.op(Op.Delete, t)
        n = fb.op(Op.SnapshotLen, snap)
        keys = [fb.op(Op.SnapshotKey, snap, fb.const(i)) for i in range(3)]
        return fb.op(Op.Closure, n, *keys, aux="tuple-of-values")  # a handy way to return several
    f = table_program(build)
    assert f.cells == (3, b"a", 2, False)


# -- variables, closures -------------------------------------------------------

def test_globals_and_cells():
    fb = FuncBuilder()
    fb.op(Op.GlobalSet, fb.const(b"g"), aux=2)
    cell = fb.op(Op.CellNew, fb.const(1))
    fb.op(Op.CellSet, cell, fb.op(Op.Concat, fb.op(Op.GlobalGet, aux=2), fb.op(Op.CellGet, cell)))
    fb.ret(fb.op(Op.CellGet, cell))
    assert value_of(fb.func) == b"g1"


def test_closure_makes_a_new_function_each_time():
    fb = FuncBuilder()
    cell = fb.op(Op.CellNew, fb.const(1))
    f1 = fb.op(Op.Closure, cell, aux="code")
    f2 = fb.op(Op.Closure, cell, aux="code")
    fb.ret(fb.op(Op.Closure, f1, f2, fb.op(Op.Eq, f1, f2), aux=None))
    f1, f2, same = value_of(fb.func).cells
    assert type(f1) is Function and f1.code == "code" and type(f1.cells[0]) is Cell
    assert f1.cells[0] is f2.cells[0] and f1 is not f2 and same is False


# -- output --------------------------------------------------------------------

def test_print_printf_hist_and_shared_identities():
    fb = FuncBuilder()
    t1, t2 = fb.op(Op.TableNew), fb.op(Op.TableNew)
    fb.op(Op.TableSet, t2, fb.const(b"k"), fb.const(3))
    fb.print(fb.const(1), fb.const(None), fb.const(True), fb.const(b"s\0"), t2)
    fb.op(Op.Printf, fb.const(b"%s %s %5d|\n"), t1, t2, fb.const(42))
    fb.print(fb.op(Op.StringOf, t1))
    fb.op(Op.PrintHist, t2)
    fb.op(Op.PrintHist, t2, fb.const(0))
    fb.print()
    fb.ret()
    _, out = evaluate(fb.func)
    header = b"value ".rjust(31) + b"------------- Distribution -------------" + b" count\n"
    assert out == (
        b"1\tnil\ttrue\ts\0\ttable: 1\n"
        b"table: 2 table: 1    42|\n"
        b"table: 2\n"
        + header + b"k".rjust(31) + b" |" + b"@" * 38 + b"3      \n"
        + header + b"...".rjust(31) + b" |\n"
        + b"\n"
    )


@pytest.mark.parametrize("operands, message", [
    ((), "printf: format must be a string, got nil"),
    ((b"%d",), "printf: not enough arguments"),
    ((1,), "printf: format must be a string, got integer"),
])
def test_printf_errors(operands, message):
    check(Op.Printf, operands, Err(message))


@pytest.mark.parametrize("operands, message", [
    ((None,), "print_hist: expected a table, got nil"),
])
def test_print_hist_errors(operands, message):
    check(Op.PrintHist, operands, Err(message))


def test_printf_failure_writes_nothing():
    fb = FuncBuilder()
    fb.print(fb.const(b"before"))
    fb.op(Op.Printf, fb.const(b"x%d"), fb.const(b"notint"), span=OP_SPAN)
    fb.ret()
    out = []
    with pytest.raises(RuntimeFault):
        evaluate(fb.func, out=out.append)
    assert b"".join(out) == b"before\n"
