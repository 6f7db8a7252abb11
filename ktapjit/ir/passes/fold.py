"""fold: evaluate ops whose arguments are constants, and branches on constants.

Folding uses the shared semantics, so a folded value is exactly what the
engines would compute. An op whose evaluation would raise a runtime error is
left alone: the error must still happen, at run time, at its location.
Concatenation respects the run's --max-string (ctx.limits). Folded values
become Const in place; unused leftovers are deadcode's to remove.
"""

from __future__ import annotations

from ktapjit.diag import RuntimeFault
from ktapjit.ir.func import Func, Value
from ktapjit.ir.ops import ARITH_SYMBOL, BlockKind, Op
from ktapjit.ir.rewrite import make_jump, replace_uses
from ktapjit.semantics import intmath, values


def fold(func: Func, ctx) -> bool:
    changed = False
    forward: dict[Value, Value] = {}
    for block in func.blocks:
        for value in block.instrs:
            if value.op is Op.ForInt or value.op is Op.ForStepNonZero:
                if _passes_check(value, forward):
                    forward[value] = value.args[0]
                continue
            if value.op is Op.Const or not value.args:
                continue
            if all(a.op is Op.Const for a in value.args):
                changed |= _fold_value(value, ctx)
    if forward:
        replace_uses(func, forward)
        for block in func.blocks:
            block.instrs = [v for v in block.instrs if v not in forward]
        changed = True
    for block in func.blocks:
        if block.kind is BlockKind.If and block.controls[0].op is Op.Const:
            taken = block.succs[0] if values.is_true(block.controls[0].aux) else block.succs[1]
            make_jump(block, taken)
            changed = True
    return changed


def _passes_check(value: Value, forward: dict[Value, Value]) -> bool:
    arg = value.args[0]
    while arg in forward:
        arg = forward[arg]
    if arg.op is not Op.Const or type(arg.aux) is not int:
        return False
    return value.op is Op.ForInt or arg.aux != 0


def _fold_value(value: Value, ctx) -> bool:
    consts = [a.aux for a in value.args]
    try:
        result = _evaluate(value.op, consts, ctx)
    except RuntimeFault:
        return False  # the error belongs to run time
    if result is _NO_FOLD:
        return False
    value.op = Op.Const
    value.args = []
    value.aux = result
    value.span = None
    return True


_NO_FOLD = object()

_COMPARE = {Op.Lt: lambda c: c < 0, Op.Le: lambda c: c <= 0, Op.Gt: lambda c: c > 0, Op.Ge: lambda c: c >= 0}


def _evaluate(op: Op, args: list, ctx):
    if op in ARITH_SYMBOL:
        return intmath.arith(ARITH_SYMBOL[op], args[0], args[1])
    if op is Op.Neg:
        return intmath.neg(args[0])
    if op is Op.BNot:
        return intmath.bnot(args[0])
    if op is Op.Not:
        return not values.is_true(args[0])
    if op is Op.Eq:
        return values.values_equal(args[0], args[1])
    if op is Op.Ne:
        return not values.values_equal(args[0], args[1])
    if op in _COMPARE:
        return _COMPARE[op](values.compare(args[0], args[1]))
    if op is Op.Concat:
        return values.concat(args[0], args[1], ctx.limits.max_string)
    if op is Op.Len and isinstance(args[0], bytes):
        return len(args[0])
    if op is Op.OrZero:
        return 0 if args[0] is None else args[0]
    return _NO_FOLD
