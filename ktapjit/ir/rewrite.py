"""Small CFG and use-list edits that the passes share."""

from __future__ import annotations

from ktapjit.ir.func import Block, Func, Value
from ktapjit.ir.ops import BlockKind


def replace_uses(func: Func, mapping: dict[Value, Value]) -> None:
    """Rewrite every use of a key of `mapping` to its (transitively resolved) value."""
    if not mapping:
        return

    def find(value: Value) -> Value:
        seen = 0
        while value in mapping and seen <= len(mapping):
            value = mapping[value]
            seen += 1
        return value

    for block in func.blocks:
        for value in block.instrs:
            value.args = [find(a) if a in mapping else a for a in value.args]
        block.controls = [find(c) if c in mapping else c for c in block.controls]


def remove_edge(block: Block, succ: Block) -> None:
    """Drop one block -> succ edge, with the matching phi arguments of succ."""
    index = succ.preds.index(block)
    del succ.preds[index]
    for phi in succ.phis():
        del phi.args[index]
    block.succs.remove(succ)


def make_jump(block: Block, target: Block) -> None:
    """Turn an If into a Plain jump to `target`, dropping the other edge."""
    for succ in list(block.succs):
        if succ is not target:
            remove_edge(block, succ)
    if block.succs.count(target) == 2:  # both arms went to target
        remove_edge(block, target)
    block.kind = BlockKind.Plain
    block.controls = []
