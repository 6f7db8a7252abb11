"""IR containers: values, blocks, functions and the module (a whole script).

A Func is a list of Blocks, entry first. A Block holds its instructions
(phis first), a BlockKind, the kind's control values and its
successors. Values are named by id (`v12`), blocks by id (`b3`); ids are
unique within a function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ktapjit.diag import Span
from ktapjit.ir.ops import BlockKind, Op
from ktapjit.ir.types import TypeSet


class Value:
    """One SSA value: the result of an op. `aux` is its compile-time payload."""

    __slots__ = ("id", "op", "args", "aux", "span", "type", "block")

    def __init__(self, vid: int, op: Op, args: list["Value"], aux: Any, span: Optional[Span], block: "Block"):
        self.id = vid
        self.op = op
        self.args = args
        self.aux = aux
        self.span = span
        self.type: Optional[TypeSet] = None  # filled by type inference
        self.block = block

    def __repr__(self) -> str:
        return f"v{self.id}"


class Block:
    __slots__ = ("id", "instrs", "kind", "controls", "succs", "preds", "span", "func")

    def __init__(self, bid: int, func: "Func"):
        self.id = bid
        self.instrs: list[Value] = []
        self.kind = BlockKind.Plain
        self.controls: list[Value] = []
        self.succs: list[Block] = []
        self.preds: list[Block] = []
        self.span: Optional[Span] = None  # TailCall: the `(` of the call
        self.func = func

    def __repr__(self) -> str:
        return f"b{self.id}"

    def phis(self) -> list[Value]:
        out = []
        for v in self.instrs:
            if v.op is not Op.Phi:
                break
            out.append(v)
        return out

    def set_kind(self, kind: BlockKind | str, controls: list[Value] = (), succs: list["Block"] = (),
                 span=None) -> None:
        """Make this block's terminator. Successors learn their new predecessor."""
        assert not self.succs, f"{self} already terminated"
        self.kind = BlockKind(kind)
        self.controls = list(controls)
        self.succs = list(succs)
        self.span = span
        for succ in self.succs:
            succ.preds.append(self)

    def terminated(self) -> bool:
        return self.kind is not BlockKind.Plain or bool(self.succs)


@dataclass(eq=False)
class Func:
    """One IR function: the top level, a probe body, a timer, trace_end, or a script function."""

    name: str
    kind: str  # "main" | "function" | "probe" | "timer" | "trace_end"
    nparams: int
    span: Span
    free_names: list[str] = field(default_factory=list)  # captured cells, in FreeCell order
    blocks: list[Block] = field(default_factory=list)
    next_value_id: int = 0
    next_block_id: int = 0

    @property
    def entry(self) -> Block:
        return self.blocks[0]

    def new_block(self) -> Block:
        block = Block(self.next_block_id, self)
        self.next_block_id += 1
        self.blocks.append(block)
        return block

    def new_value(self, block: Block, op: Op, args: list[Value], aux: Any = None, span: Optional[Span] = None) -> Value:
        value = Value(self.next_value_id, op, list(args), aux, span, block)
        self.next_value_id += 1
        return value

    def values(self):
        for block in self.blocks:
            yield from block.instrs


@dataclass(eq=False)
class ProbeInfo:
    """A `trace EVENTDEF [/FILTER/]` block: what to attach and which Func runs."""

    eventdef: str
    eventdef_span: Span
    filter: Optional[str]
    filter_span: Optional[Span]
    func: Func


@dataclass(eq=False)
class TimerInfo:
    """A `tick-N` or `profile-N` timer and its body."""

    kind: str  # "tick" | "profile"
    period_ns: int
    text: str
    func: Func


@dataclass(eq=False)
class Module:
    """A compiled script: every Func, and which of them the runtime enters."""

    path: str
    source: bytes
    main: Func
    funcs: list[Func]  # every Func, main included, in creation order
    global_names: list[str]
    probes: list[ProbeInfo] = field(default_factory=list)
    timers: list[TimerInfo] = field(default_factory=list)
    trace_end: Optional[Func] = None
    # The JIT's cache key of the inputs compile_script made this module from
    # (jit/script_cache.py); None for a module made any other way.
    inputs_key: Optional[str] = None

    def kernel_symbol_names(self) -> list[bytes]:
        """The names the script's ipof() calls look up, each once, in order."""
        return list(dict.fromkeys(v.aux for f in self.funcs for v in f.values() if v.op is Op.KernelSymbol))
