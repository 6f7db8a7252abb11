"""copyelim: remove trivial phis.

A phi is trivial when its arguments, ignoring the phi itself, are all one
value: it is replaced by that value. Removing one can make another trivial,
so this runs to a fixpoint. SSA construction already removes most trivial
phis; the ones left are those whose cycle only closed later, or that lost
arguments when deadcode or fold removed edges.
"""

from __future__ import annotations

from ktapjit.ir.func import Func, Value
from ktapjit.ir.rewrite import replace_uses


def copyelim(func: Func, ctx) -> bool:
    changed = False
    while True:
        mapping: dict[Value, Value] = {}
        for block in func.blocks:
            for phi in block.phis():
                same = _trivial_value(phi, mapping)
                if same is not None:
                    mapping[phi] = same
        if not mapping:
            return changed
        for block in func.blocks:
            block.instrs = [v for v in block.instrs if v not in mapping]
        replace_uses(func, mapping)
        changed = True


def _trivial_value(phi: Value, mapping: dict[Value, Value]) -> Value | None:
    same = None
    for arg in phi.args:
        while arg in mapping:
            arg = mapping[arg]
        if arg is phi or arg is same:
            continue
        if same is not None:
            return None
        same = arg
    return same
