"""deadcode: remove unreachable blocks and unused values, then lay blocks out
in reverse postorder.

A value is removable when nothing uses it and it neither traps nor has an
effect (ops.TRAP / ops.EFFECT): a trapping op must stay, since its runtime
error is observable. Unreachable blocks take their outgoing edges (and the
matching phi arguments) with them.
"""

from __future__ import annotations

from ktapjit.ir.dominators import reverse_postorder
from ktapjit.ir.func import Func, Value
from ktapjit.ir.ops import EFFECT, INFO, TRAP
from ktapjit.ir.rewrite import remove_edge


def deadcode(func: Func, ctx) -> bool:
    changed = _remove_unreachable(func)
    changed |= _remove_unused(func)
    return changed


def _remove_unreachable(func: Func) -> bool:
    order = reverse_postorder(func)
    live = set(order)
    dead = [b for b in func.blocks if b not in live]
    for block in dead:
        for succ in list(block.succs):
            remove_edge(block, succ)
    changed = bool(dead) or order != func.blocks
    func.blocks = order
    return changed


def _removable(value: Value) -> bool:
    return not INFO[value.op].flags & (TRAP | EFFECT)


def _remove_unused(func: Func) -> bool:
    uses: dict[Value, int] = {}
    for value in func.values():
        for arg in value.args:
            uses[arg] = uses.get(arg, 0) + 1
    for block in func.blocks:
        for control in block.controls:
            uses[control] = uses.get(control, 0) + 1
    worklist = [v for v in func.values() if not uses.get(v) and _removable(v)]
    dead: set[Value] = set()
    while worklist:
        value = worklist.pop()
        if value in dead:
            continue
        dead.add(value)
        for arg in value.args:
            uses[arg] -= 1
            if not uses[arg] and _removable(arg) and arg not in dead:
                worklist.append(arg)
    if not dead:
        return False
    for block in func.blocks:
        block.instrs = [v for v in block.instrs if v not in dead]
    return True
