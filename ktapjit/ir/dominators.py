"""Reachability, reverse postorder and dominators of a Func's CFG.

Immediate dominators come from Cooper, Harvey and Kennedy's "A Simple, Fast
Dominance Algorithm"; everything here is iterative, since CFGs can be deep.
"""

from __future__ import annotations

from ktapjit.ir.func import Block, Func


def reverse_postorder(func: Func) -> list[Block]:
    """Blocks reachable from the entry, in reverse postorder.

    Successors are visited last-first, so a block's first successor (a loop
    body, a then-branch) is laid out right after it.
    """
    seen = {func.entry}
    order: list[Block] = []
    stack = [(func.entry, reversed(func.entry.succs))]
    while stack:
        block, succs = stack[-1]
        for succ in succs:
            if succ not in seen:
                seen.add(succ)
                stack.append((succ, reversed(succ.succs)))
                break
        else:
            order.append(block)
            stack.pop()
    order.reverse()
    return order


def immediate_dominators(func: Func) -> dict[Block, Block]:
    """idom of every reachable block; the entry is its own idom."""
    order = reverse_postorder(func)
    rank = {b: i for i, b in enumerate(order)}
    idom: dict[Block, Block] = {func.entry: func.entry}

    def intersect(a: Block, b: Block) -> Block:
        while a is not b:
            while rank[a] > rank[b]:
                a = idom[a]
            while rank[b] > rank[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for block in order[1:]:
            new = None
            for pred in block.preds:
                if pred in idom:
                    new = pred if new is None else intersect(pred, new)
            if new is not None and idom.get(block) is not new:
                idom[block] = new
                changed = True
    return idom


class Dominance:
    """Answers `a dominates b` by walking b's idom chain (chains are short in practice)."""

    def __init__(self, func: Func):
        self.idom = immediate_dominators(func)

    def reachable(self, block: Block) -> bool:
        return block in self.idom

    def dominates(self, a: Block, b: Block) -> bool:
        while True:
            if a is b:
                return True
            parent = self.idom.get(b)
            if parent is None or parent is b:
                return False
            b = parent
