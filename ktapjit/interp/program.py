"""IR functions prepared for execution: registers, steps and edges.

``prepare(func, rt)`` turns a Func into a Code once per run:

- every value gets a register slot (``value.id + 1``; slot 0 is the frame's
  back-edge counter);
- a frame's registers start as a copy of ``template``, where constants are
  already in place; ``params`` and ``frees`` say which slots receive the
  arguments and the captured cells (Param and FreeCell are pure, so filling
  them on entry is the same as evaluating them where they stand);
- each block is split at its Call instructions into segments
  ``(steps, call)``: ``steps`` are ``(step, dest, value)`` triples run in
  order, ``call`` the CallSite ending the segment (None for the last one);
- each successor edge carries the parallel copy its phis need: the phi
  ``dests`` take the registers ``srcs``, where the source of a phi of block B
  on the edge from P is its argument at P's position in ``B.preds``.
"""

from __future__ import annotations

from typing import Optional

from ktapjit.interp.eval import HANDLERS, TICK_SLOT
from ktapjit.interp.runtime import InternalError, Runtime
from ktapjit.ir.func import Block, Func, Value
from ktapjit.ir.ops import BLOCK_KINDS, Op

# Terminator codes (block kinds of ops.BLOCK_KINDS).
PLAIN, IF, RETURN, TAILCALL, EXIT = range(5)
BROKEN = 5  # malformed IR: raises InternalError only if control gets here
_KIND_CODES = {"Plain": PLAIN, "If": IF, "Return": RETURN, "TailCall": TAILCALL, "Exit": EXIT}
assert set(_KIND_CODES) == set(BLOCK_KINDS)


def slot(value: Value) -> int:
    return value.id + 1


class CallSite:
    """A Call instruction: where its callee and arguments are, where the
    result goes, and the span of its `(`."""

    __slots__ = ("callee", "args", "dest", "span", "value")

    def __init__(self, value: Value):
        self.callee = slot(value.args[0])
        self.args = tuple(slot(a) for a in value.args[1:])
        self.dest = slot(value)
        self.span = value.span
        self.value = value


class CodeBlock:
    """One block, ready to run. See the module docstring."""

    __slots__ = ("segments", "kind", "controls", "edges", "span", "block", "problem", "cause")

    def __init__(self, block: Block):
        self.block = block
        self.segments: tuple = ()
        self.kind = _KIND_CODES.get(block.kind, BROKEN)
        self.controls = tuple(slot(c) for c in block.controls)
        self.edges: tuple = ()  # (target CodeBlock, dests, srcs) per successor
        self.span = block.span
        self.problem = ""  # why the block is BROKEN
        self.cause: Optional[BaseException] = None


class Code:
    """A Func prepared for one run."""

    __slots__ = ("func", "nparams", "template", "params", "frees", "entry")

    def __init__(self, func: Func):
        self.func = func
        self.nparams = func.nparams
        self.template: list = []
        self.params: tuple = ()  # (slot, argument index)
        self.frees: tuple = ()  # (slot, cell index)
        self.entry: Optional[CodeBlock] = None

    def new_regs(self, args, cells) -> list:
        """The registers of a new frame running this code."""
        regs = self.template.copy()
        nargs = len(args)
        for dest, i in self.params:
            regs[dest] = args[i] if i < nargs else None
        for dest, i in self.frees:
            regs[dest] = cells[i]
        return regs


def prepare(func: Func, rt: Runtime) -> Code:
    """Make the Code for func. A block the interpreter cannot run (a
    compiler bug the verifier should catch) becomes BROKEN: reaching it
    raises InternalError, so unreachable garbage never stops a run."""
    if not func.blocks:
        raise InternalError(f"function {func.name!r} has no blocks")
    code = Code(func)
    nregs = 1 + max([func.next_value_id] + [v.id + 1 for b in func.blocks for v in b.instrs])
    template: list = [None] * nregs
    template[TICK_SLOT] = 0
    params, frees = [], []
    blocks = {b: CodeBlock(b) for b in func.blocks}
    for block, cb in blocks.items():
        segments = []
        steps: list = []
        nphis = len(block.phis())
        try:
            for value in block.instrs[nphis:]:
                op = value.op
                if op is Op.Const:
                    template[slot(value)] = value.aux
                elif op is Op.Param:
                    params.append((slot(value), value.aux))
                elif op is Op.FreeCell:
                    frees.append((slot(value), value.aux))
                elif op is Op.Call:
                    segments.append((tuple(steps), CallSite(value)))
                    steps = []
                elif op is Op.Phi:
                    raise _Malformed(f"phi {value} after a non-phi")
                else:
                    args = tuple(slot(x) for x in value.args)
                    steps.append((HANDLERS[op](value, args, rt), slot(value), value))
            _check_terminator(block)
            cb.edges = tuple(_edge(block, j, blocks) for j in range(len(block.succs)))
        except Exception as problem:  # noqa: BLE001 - reported when reached
            cb.kind = BROKEN
            cb.problem = f"malformed IR in {func.name!r} {block}: {problem!r}"
            cb.cause = problem
            segments, steps = [], []  # run nothing of it
        segments.append((tuple(steps), None))
        cb.segments = tuple(segments)
    code.template = template
    code.params = tuple(params)
    code.frees = tuple(frees)
    code.entry = blocks[func.blocks[0]]
    return code


class _Malformed(Exception):
    pass


def _edge(block: Block, j: int, blocks: dict) -> tuple:
    succ = block.succs[j]
    # The k-th edge from block to succ is the k-th occurrence of block in
    # succ.preds (set_kind appends preds in succs order), so an If whose two
    # successors are the same block still picks the right phi arguments.
    k = block.succs[:j].count(succ)
    positions = [i for i, p in enumerate(succ.preds) if p is block]
    if k >= len(positions):
        raise _Malformed(f"{block} is missing from the preds of its succ {succ}")
    index = positions[k]
    dests, srcs = [], []
    for phi in succ.phis():
        if len(phi.args) != len(succ.preds):
            raise _Malformed(f"phi {phi} in {succ} has {len(phi.args)} args for {len(succ.preds)} preds")
        dests.append(slot(phi))
        srcs.append(slot(phi.args[index]))
    return (blocks[succ], tuple(dests), tuple(srcs))


def _check_terminator(block: Block) -> None:
    kind = BLOCK_KINDS.get(block.kind)
    if kind is None:
        raise _Malformed(f"unknown block kind {block.kind!r}")
    ok = len(block.succs) == kind.nsuccs
    if block.kind == "Return":
        ok = ok and len(block.controls) <= 1
    elif block.kind == "TailCall":
        ok = ok and len(block.controls) >= 1
    else:
        ok = ok and len(block.controls) == kind.ncontrols
    if not ok:
        raise _Malformed(f"kind {block.kind} with {len(block.controls)} controls and {len(block.succs)} succs")
