"""The IR verifier: structural invariants every pass must preserve.

It runs after SSA construction and after every pass in tests and under
`--debug=verify`. A failure is a compiler bug, never a user error: it raises
VerifyError naming the pass that broke the invariant.
"""

from __future__ import annotations

from ktapjit.ir.dominators import Dominance
from ktapjit.ir.func import Func, Module, Value
from ktapjit.ir.ops import BLOCK_KINDS, INFO, VARIADIC, BlockKind, Op


class VerifyError(Exception):
    pass


def verify_module(module: Module, after: str = "?") -> None:
    for func in module.funcs:
        verify_func(func, after)


def verify_func(func: Func, after: str = "?") -> None:
    problems: list[str] = []
    _check_blocks(func, problems)
    if not problems:
        _check_values(func, problems)
    if not problems:
        _check_dominance(func, problems)
    if problems:
        raise VerifyError(f"IR invalid after {after!r} in {func.name}: " + "; ".join(problems[:5]))


def _check_blocks(func: Func, problems: list[str]) -> None:
    if not func.blocks:
        problems.append("no blocks")
        return
    if func.entry.preds:
        problems.append("entry block has predecessors")
    members = set(func.blocks)
    for block in func.blocks:
        kind = BLOCK_KINDS.get(block.kind)
        if kind is None:
            problems.append(f"{block}: unknown kind {block.kind}")
            continue
        if kind.ncontrols != VARIADIC and len(block.controls) != kind.ncontrols:
            problems.append(f"{block}: {block.kind} wants {kind.ncontrols} controls")
        if block.kind == BlockKind.Return and len(block.controls) > 1:
            problems.append(f"{block}: Return takes at most one control")
        if block.kind == BlockKind.TailCall and not block.controls:
            problems.append(f"{block}: TailCall needs a callee")
        if len(block.succs) != kind.nsuccs:
            problems.append(f"{block}: {block.kind} wants {kind.nsuccs} successors")
        for succ in block.succs:
            if succ not in members:
                problems.append(f"{block}: successor {succ} not in function")
            elif succ.preds.count(block) != block.succs.count(succ):
                problems.append(f"{block} -> {succ}: pred/succ lists disagree")
        for pred in block.preds:
            if block not in pred.succs:
                problems.append(f"{block}: pred {pred} does not list it as successor")


def _check_values(func: Func, problems: list[str]) -> None:
    seen_ids: set[int] = set()
    for block in func.blocks:
        in_phis = True
        for value in block.instrs:
            if value.id in seen_ids:
                problems.append(f"v{value.id} defined twice")
            seen_ids.add(value.id)
            if value.block is not block:
                problems.append(f"v{value.id} thinks it lives in {value.block}, not {block}")
            if value.op is Op.Phi:
                if not in_phis:
                    problems.append(f"{block}: phi v{value.id} after a non-phi")
                if len(value.args) != len(block.preds):
                    problems.append(f"{block}: phi v{value.id} has {len(value.args)} args for {len(block.preds)} preds")
            else:
                in_phis = False
                _check_arity(value, problems)


def _check_arity(value: Value, problems: list[str]) -> None:
    row = INFO[value.op]
    if row.nargs == VARIADIC:
        if len(value.args) < row.min_args:
            problems.append(f"v{value.id} {value.op.name} wants at least {row.min_args} args")
    elif len(value.args) != row.nargs:
        problems.append(f"v{value.id} {value.op.name} wants {row.nargs} args, has {len(value.args)}")


def _check_dominance(func: Func, problems: list[str]) -> None:
    """Every use is dominated by its definition (a phi's use sits at the end of its pred)."""
    dom = Dominance(func)
    position = {}
    for block in func.blocks:
        for i, value in enumerate(block.instrs):
            position[value] = (block, i)

    def dominates(defn: Value, block, index: int) -> bool:
        if defn not in position:
            return False
        def_block, def_index = position[defn]
        if def_block is block:
            return def_index < index
        return dom.dominates(def_block, block)

    for block in func.blocks:
        if not dom.reachable(block):
            continue  # unreachable code is the deadcode pass's business
        for i, value in enumerate(block.instrs):
            if value.op is Op.Phi:
                for pred, arg in zip(block.preds, value.args):
                    if dom.reachable(pred) and not dominates(arg, pred, len(pred.instrs)):
                        problems.append(f"phi v{value.id}: arg {arg} does not dominate the end of {pred}")
            else:
                for arg in value.args:
                    if not dominates(arg, block, i):
                        problems.append(f"v{value.id}: arg {arg} does not dominate its use")
        for control in block.controls:
            if not dominates(control, block, len(block.instrs)):
                problems.append(f"{block}: control {control} does not dominate the terminator")
