"""The verifier rejects broken IR, naming the pass that broke it."""

import pytest

from ktapjit.ir.func import Func
from ktapjit.ir.ops import BlockKind, Op
from ktapjit.ir.verify import VerifyError, verify_func
from ktapjit.diag import Span

SPAN = Span("t.kp", 1, 1)


def straight_line():
    func = Func("f", "function", 0, SPAN)
    entry = func.new_block()
    return func, entry


def emit(func, block, op, args=(), aux=None):
    value = func.new_value(block, op, list(args), aux)
    block.instrs.append(value)
    return value


def test_well_formed_function_passes():
    func, entry = straight_line()
    one = emit(func, entry, Op.Const, aux=1)
    entry.set_kind("Return", controls=[emit(func, entry, Op.Add, [one, one])])
    verify_func(func, after="test")


def test_wrong_arity_is_caught():
    func, entry = straight_line()
    one = emit(func, entry, Op.Const, aux=1)
    entry.set_kind("Return", controls=[emit(func, entry, Op.Add, [one])])
    with pytest.raises(VerifyError, match="after 'fold'.*Add wants 2 args"):
        verify_func(func, after="fold")


def test_phi_arity_must_match_predecessors():
    func, entry = straight_line()
    join = func.new_block()
    one = emit(func, entry, Op.Const, aux=1)
    entry.set_kind("Plain", succs=[join])
    join.set_kind("Return", controls=[emit(func, join, Op.Phi, [one, one])])
    with pytest.raises(VerifyError, match="2 args for 1 preds"):
        verify_func(func)


def test_use_before_definition_is_caught():
    func, entry = straight_line()
    one = func.new_value(entry, Op.Const, [], 1)
    entry.instrs.append(func.new_value(entry, Op.Neg, [one], None))
    entry.instrs.append(one)
    entry.set_kind("Return")
    with pytest.raises(VerifyError, match="does not dominate"):
        verify_func(func)


def test_use_from_sibling_branch_is_caught():
    func, entry = straight_line()
    left, right = func.new_block(), func.new_block()
    cond = emit(func, entry, Op.Const, aux=True)
    entry.set_kind("If", controls=[cond], succs=[left, right])
    x = emit(func, left, Op.Const, aux=1)
    left.set_kind("Return")
    right.set_kind("Return", controls=[emit(func, right, Op.Neg, [x])])
    with pytest.raises(VerifyError, match="does not dominate"):
        verify_func(func)


def test_block_kind_shape_is_checked():
    func, entry = straight_line()
    entry.set_kind("If")
    with pytest.raises(VerifyError, match="wants 1 controls"):
        verify_func(func)


def test_a_block_kind_is_one_of_the_enum():
    func, entry = straight_line()
    with pytest.raises(ValueError, match="'Retrun' is not a valid BlockKind"):
        entry.set_kind("Retrun")
    entry.set_kind("Return")
    assert entry.kind is BlockKind.Return and entry.kind == "Return"
