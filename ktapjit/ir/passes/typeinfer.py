"""typeinfer: which dynamic types each value may have at run time.

An analysis: it changes no op, only sets `Value.type` to a TypeSet
(ir/types.py), printed as `int`, `int|nil`, `any`. The JIT keeps a value unboxed when its set is a
single type and checks tags where it is not; the interpreter ignores types.

Within a function it is a forward dataflow to a fixpoint (phis join their
arguments). Across the program, each global slot's set is the join of every
value stored to it plus nil (a global is nil until its declaration runs).
Parameters, cells and table elements are `any`: refining them needs
interprocedural and escape analysis, left for later.
"""

from __future__ import annotations

from ktapjit.frontend import ARG_GLOBAL
from ktapjit.ir.func import Func, Module, Value
from ktapjit.ir import types
from ktapjit.ir.ops import Op
from ktapjit.ir.types import TypeSet

# The dataflow runs on plain ints (a TypeSet's bits): IntFlag arithmetic is
# slow, and the sets become TypeSets once, at the end.
NIL, BOOL, INT, STRING = int(TypeSet.NIL), int(TypeSet.BOOL), int(TypeSet.INT), int(TypeSet.STRING)
TABLE, FUNCTION, CELL, KEYS = int(TypeSet.TABLE), int(TypeSet.FUNCTION), int(TypeSet.CELL), int(TypeSet.KEYS)
ANY = int(types.ANY)


# Ops whose result type does not depend on their arguments.
_FIXED = {
    Op.Add: INT, Op.Sub: INT, Op.Mul: INT, Op.Div: INT, Op.Mod: INT, Op.BAnd: INT, Op.BOr: INT,
    Op.BXor: INT, Op.Shl: INT, Op.Shr: INT, Op.Neg: INT, Op.BNot: INT, Op.Len: INT,
    Op.SnapshotLen: INT, Op.NumCpus: INT, Op.Time: INT, Op.ForInt: INT, Op.ForStepNonZero: INT,
    Op.Not: BOOL, Op.Eq: BOOL, Op.Ne: BOOL, Op.Lt: BOOL, Op.Le: BOOL, Op.Gt: BOOL, Op.Ge: BOOL,
    Op.ForCont: BOOL, Op.ForCanStep: BOOL,
    Op.Concat: STRING, Op.StringOf: STRING, Op.Arch: STRING, Op.KernelV: STRING,
    Op.KernelSymbol: INT | NIL,
    Op.TableNew: TABLE, Op.Closure: FUNCTION, Op.CellNew: CELL, Op.FreeCell: CELL,
    Op.PairsSnapshot: KEYS,
    Op.Param: ANY, Op.CellGet: ANY, Op.TableGet: ANY, Op.Call: ANY, Op.SnapshotKey: ANY & ~NIL,
    Op.EventField: ANY, Op.Stack: ANY, Op.EventMemory: ANY,
    Op.GlobalSet: 0, Op.CellSet: 0, Op.TableSet: 0, Op.Delete: 0, Op.LoopTick: 0,
    Op.Print: 0, Op.Printf: 0, Op.PrintHist: 0, Op.PrintFolded: 0,
    Op.Hist: 0, Op.LHist: 0, Op.Stats: 0, Op.PrintAgg: 0,
}

# A recording made without TID or CPU in its samples reads nil for those, and
# a profile sample has no argstr; the JIT trusts these sets, so they must hold
# for every stream.
_EVENT_VALUE_TYPES = {"pid": INT | NIL, "tid": INT | NIL, "cpu": INT | NIL, "uid": NIL,
                      "execname": STRING, "probename": STRING, "argstr": STRING | NIL}


def _const_type(aux) -> int:
    if aux is None:
        return NIL
    if isinstance(aux, bool):
        return BOOL
    if isinstance(aux, int):
        return INT
    return STRING


def typeinfer_module(module: Module, ctx=None) -> bool:
    """Infer every function's types, iterating until the global slots settle."""
    # A global is nil until its declaration runs; `arg` is stored by the
    # engine before the top level runs, so it may also be a table.
    globals_ = [TABLE | NIL if name == ARG_GLOBAL else NIL for name in module.global_names]
    types: dict[Value, int] = {}
    changed = True
    while changed:
        changed = False
        for func in module.funcs:
            _infer_func(func, types, globals_)
        for func in module.funcs:
            for value in func.values():
                if value.op is Op.GlobalSet:
                    joined = globals_[value.aux] | types[value.args[0]]
                    if joined != globals_[value.aux]:
                        globals_[value.aux] = joined
                        changed = True
    for value, t in types.items():
        value.type = TypeSet(t)
    return True


def _infer_func(func: Func, types: dict[Value, int], globals_: list[int]) -> None:
    changed = True
    while changed:
        changed = False
        for block in func.blocks:
            for value in block.instrs:
                new = _transfer(value, types, globals_)
                if types.get(value) != new:
                    types[value] = new
                    changed = True


def _transfer(value: Value, types: dict[Value, int], globals_: list[int]) -> int:
    op = value.op
    if op is Op.Const:
        return _const_type(value.aux)
    if op is Op.Phi:
        result = 0
        for arg in value.args:
            result |= types.get(arg, 0)  # not yet visited on a back edge: contributes later
        return result
    if op is Op.GlobalGet:
        return globals_[value.aux]
    if op is Op.OrZero:
        return (types.get(value.args[0], ANY) & ~NIL) | INT
    if op is Op.EventValue:
        return _EVENT_VALUE_TYPES.get(value.aux, ANY)
    return _FIXED[op]


def _check_table() -> None:
    computed = {Op.Const, Op.Phi, Op.GlobalGet, Op.OrZero, Op.EventValue}
    missing = set(Op) - set(_FIXED) - computed
    assert not missing, f"typeinfer has no rule for {sorted(o.name for o in missing)}"


_check_table()
