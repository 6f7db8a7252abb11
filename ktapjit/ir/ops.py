"""The op table: one row per IR op, with its arity, result and flags.

Everything else (the Op enum, the verifier's arity checks, the printer, the
passes' purity tests and both engines' dispatch) is derived from OPS, as in
the Go compiler's genericOps.go and LuaJIT's IRDEF. A row's comment is the
op's meaning; `aN` is its N-th argument and `aux` its compile-time payload.

Flags:
  PURE    no effect, cannot fail: removable when unused, foldable on constants
  TRAP    may raise a runtime error; the value's span says where
  EFFECT  writes state (globals, cells, tables, output, counters)
  ALLOC   makes a new identity (a table, a cell, a function)
  COMM    commutative
  EVENT   reads the current event: only in probe bodies
  OUTPUT  writes to the script's output, in event order (print and friends)
  CUPDATE a commutative update of one table cell: updates in any order give
          the same cell (the aggregations); ktapjit.bpf may run it in the kernel

Block kinds are the BlockKind enum; their shapes are the second table, BLOCK_KINDS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PURE = 1
TRAP = 2
EFFECT = 4
ALLOC = 8
COMM = 16
EVENT = 32
OUTPUT = 64
CUPDATE = 128

VARIADIC = -1


@dataclass(frozen=True)
class OpInfo:
    """What an op takes and yields."""

    name: str
    nargs: int  # VARIADIC: any number, checked by min_args
    result: str  # "any", "int", "bool", "string", "table", "cell", "function", "keys", "none"
    flags: int = 0
    min_args: int = 0
    doc: str = ""


OPS: list[OpInfo] = [
    # -- values
    OpInfo("Const", 0, "any", PURE, doc="aux: nil / boolean / integer / string (bytes)"),
    OpInfo("Param", 0, "any", PURE, doc="argument aux (0-based); nil when the caller passed fewer"),
    OpInfo("FreeCell", 0, "cell", PURE, doc="captured cell aux of the running closure"),
    OpInfo("Phi", VARIADIC, "any", PURE, doc="one arg per predecessor, in block.preds order"),
    # -- variables
    OpInfo("GlobalGet", 0, "any", 0, doc="the script global in slot aux"),
    OpInfo("GlobalSet", 1, "none", EFFECT, doc="global slot aux = a0"),
    OpInfo("CellNew", 1, "cell", ALLOC, doc="a new cell holding a0 (a captured local)"),
    OpInfo("CellGet", 1, "any", 0, doc="the value in cell a0"),
    OpInfo("CellSet", 2, "none", EFFECT, doc="cell a0 = a1"),
    # -- arithmetic and bitwise: integers only, wrapping (LANGUAGE.md Operators)
    OpInfo("Add", 2, "int", TRAP | COMM, doc="a0 + a1"),
    OpInfo("Sub", 2, "int", TRAP, doc="a0 - a1"),
    OpInfo("Mul", 2, "int", TRAP | COMM, doc="a0 * a1"),
    OpInfo("Div", 2, "int", TRAP, doc="a0 / a1 truncated; 0 divisor -> 'divide by zero'"),
    OpInfo("Mod", 2, "int", TRAP, doc="a0 % a1, sign of a0; 0 divisor -> 'divide by zero'"),
    OpInfo("BAnd", 2, "int", TRAP | COMM, doc="a0 & a1"),
    OpInfo("BOr", 2, "int", TRAP | COMM, doc="a0 | a1"),
    OpInfo("BXor", 2, "int", TRAP | COMM, doc="a0 ^ a1"),
    OpInfo("Shl", 2, "int", TRAP, doc="a0 << (a1 & 63)"),
    OpInfo("Shr", 2, "int", TRAP, doc="a0 >> (a1 & 63), arithmetic"),
    OpInfo("Neg", 1, "int", TRAP, doc="-a0"),
    OpInfo("BNot", 1, "int", TRAP, doc="~a0"),
    # -- logic and comparison
    OpInfo("Not", 1, "bool", PURE, doc="true exactly when a0 is nil or false"),
    OpInfo("Eq", 2, "bool", PURE | COMM, doc="a0 == a1: any types, strings by content"),
    OpInfo("Ne", 2, "bool", PURE | COMM, doc="a0 != a1"),
    OpInfo("Lt", 2, "bool", TRAP, doc="a0 < a1: two integers or two strings"),
    OpInfo("Le", 2, "bool", TRAP, doc="a0 <= a1"),
    OpInfo("Gt", 2, "bool", TRAP, doc="a0 > a1"),
    OpInfo("Ge", 2, "bool", TRAP, doc="a0 >= a1"),
    # -- strings
    OpInfo("Concat", 2, "string", TRAP, doc="a0 .. a1: strings and integers; --max-string"),
    OpInfo("Len", 1, "int", TRAP, doc="len(a0) of a string or a table"),
    OpInfo("StringOf", 1, "string", TRAP, doc="the text print would write for a0; --max-string"),
    # -- tables
    OpInfo("TableNew", 0, "table", ALLOC, doc="a new empty table"),
    OpInfo("TableGet", 2, "any", TRAP, doc="a0[a1]; nil key or missing key -> nil"),
    OpInfo("TableSet", 3, "none", TRAP | EFFECT, doc="a0[a1] = a2; nil value deletes; --max-table"),
    OpInfo("OrZero", 1, "any", PURE, doc="a0, or 0 when a0 is nil (compound assignment on an element)"),
    OpInfo("Delete", 1, "none", TRAP | EFFECT, doc="empties table a0"),
    OpInfo("PairsSnapshot", 1, "keys", TRAP | ALLOC, doc="the keys of table a0 now, in insertion order"),
    OpInfo("SnapshotLen", 1, "int", PURE, doc="how many keys snapshot a0 holds"),
    OpInfo("SnapshotKey", 2, "any", PURE, doc="key a1 (0-based) of snapshot a0"),
    # -- functions
    OpInfo("Closure", VARIADIC, "function", ALLOC, doc="a function value of IR function aux capturing cells a0.."),
    OpInfo("Call", VARIADIC, "any", TRAP | EFFECT, min_args=1,
           doc="call a0 with a1..; --max-depth; result nil without return"),
    # -- loops
    OpInfo("LoopTick", 0, "none", TRAP | EFFECT, doc="count one back-edge of this call; --max-loop"),
    OpInfo("ForInt", 1, "int", TRAP,
           doc="a0 checked to be an integer: \"'for' <aux> must be an integer\""),
    OpInfo("ForStepNonZero", 1, "int", TRAP, doc="a0 checked non-zero: \"'for' step is zero\""),
    OpInfo("ForCont", 3, "bool", PURE, doc="a0 <= a1 when a2 > 0, a0 >= a1 when a2 < 0 (integers)"),
    OpInfo("ForCanStep", 2, "bool", PURE, doc="a0 + a1 stays within int64 (integers)"),
    # -- builtins
    OpInfo("Print", VARIADIC, "none", EFFECT | OUTPUT, doc="print(a0, ...)"),
    OpInfo("Printf", VARIADIC, "none", TRAP | EFFECT | OUTPUT, doc="printf(a0, a1, ...); no args: a nil format"),
    OpInfo("PrintHist", VARIADIC, "none", TRAP | EFFECT | OUTPUT, min_args=1,
           doc="print_hist(a0 [, a1])"),
    OpInfo("PrintFolded", 1, "none", TRAP | EFFECT | OUTPUT, doc="print_folded(a0): folded stack lines"),
    # aggregations (docs/language-notes.md): update the aggregation table a0[a1] with a2
    OpInfo("Hist", 3, "none", TRAP | EFFECT | ALLOC | CUPDATE, doc="hist(a0, a1, a2): power-of-two buckets"),
    OpInfo("LHist", 6, "none", TRAP | EFFECT | ALLOC | CUPDATE,
           doc="lhist(a0, a1, a2, a3 min, a4 max, a5 step): linear buckets"),
    OpInfo("Stats", 3, "none", TRAP | EFFECT | ALLOC | CUPDATE, doc="stats(a0, a1, a2): count, sum, min, max"),
    OpInfo("PrintAgg", 1, "none", TRAP | EFFECT | OUTPUT, doc="print_agg(a0): every aggregation of a0"),
    OpInfo("NumCpus", 0, "int", PURE, doc="num_cpus()"),
    OpInfo("Arch", 0, "string", PURE, doc="arch()"),
    OpInfo("KernelV", 0, "string", PURE, doc="kernel_v()"),
    OpInfo("KernelSymbol", 0, "any", PURE,
           doc="ipof(aux): kernel symbol aux's (bytes) address, from the host's kallsyms; nil when unknown"),
    OpInfo("Time", 0, "int", 0, doc="gettimeofday_<aux>(), aux in ns us ms s: event time"),
    # -- the current event (probe bodies only)
    OpInfo("EventValue", 0, "any", EVENT,
           doc="aux in pid tid cpu uid execname probename argstr arg0..arg9"),
    OpInfo("EventField", 0, "any", EVENT, doc="args.<aux>; nil when the event has no such field"),
    OpInfo("EventMemory", 0, "any", EVENT,
           doc="user_string/kernel_string/in_iowait: aux is a semantics.memory_read.MemoryRead's aux"),
    OpInfo("Stack", 0, "any", EVENT, doc="stack() or ustack(): aux is the semantics.stack_request.StackRequest"),
]


Op = enum.Enum("Op", [info.name for info in OPS])
Op.__doc__ = "IR opcodes, one per OPS row, in table order."

INFO: dict["Op", OpInfo] = {getattr(Op, info.name): info for info in OPS}


def info(op: "Op") -> OpInfo:
    return INFO[op]


# Binary operator spellings in the source, mapped to their ops.
BINARY_OPS = {
    "+": Op.Add, "-": Op.Sub, "*": Op.Mul, "/": Op.Div, "%": Op.Mod,
    "&": Op.BAnd, "|": Op.BOr, "^": Op.BXor, "<<": Op.Shl, ">>": Op.Shr,
    "==": Op.Eq, "!=": Op.Ne, "<": Op.Lt, "<=": Op.Le, ">": Op.Gt, ">=": Op.Ge,
    "..": Op.Concat,
}
UNARY_OPS = {"-": Op.Neg, "!": Op.Not, "~": Op.BNot}
ARITH_SYMBOL = {
    Op.Add: "+", Op.Sub: "-", Op.Mul: "*", Op.Div: "/", Op.Mod: "%", Op.BAnd: "&",
    Op.BOr: "|", Op.BXor: "^", Op.Shl: "<<", Op.Shr: ">>",
}


class BlockKind(enum.StrEnum):
    """How a block ends. A StrEnum: a kind prints as, and equals, its name."""

    Plain = "Plain"
    If = "If"
    Return = "Return"
    TailCall = "TailCall"
    Exit = "Exit"


@dataclass(frozen=True)
class BlockShape:
    """The controls and successors a terminator has."""

    ncontrols: int  # VARIADIC for TailCall
    nsuccs: int
    doc: str


BLOCK_KINDS = {
    BlockKind.Plain: BlockShape(0, 1, "jump to succs[0]"),
    BlockKind.If: BlockShape(1, 2, "succs[0] when controls[0] is true (not nil/false), else succs[1]"),
    BlockKind.Return: BlockShape(VARIADIC, 0, "return controls[0], or nil with no control"),
    BlockKind.TailCall: BlockShape(VARIADIC, 0, "replace this call with controls[0](controls[1:]); span is the `(`"),
    BlockKind.Exit: BlockShape(0, 0, "exit(): stop the current block; see LANGUAGE.md Builtins"),
}


def _check_table() -> None:
    # Invariants the rest of the compiler relies on, checked at import.
    names = [i.name for i in OPS]
    assert len(names) == len(set(names)), "duplicate op names"
    for row in OPS:
        assert not (row.flags & PURE and row.flags & (TRAP | EFFECT | ALLOC)), row.name
        assert row.nargs == VARIADIC or row.min_args == 0, row.name
        assert not (row.flags & (OUTPUT | CUPDATE)) or row.flags & EFFECT, row.name
        assert not (row.flags & OUTPUT and row.flags & CUPDATE), row.name
    for sym, op in BINARY_OPS.items():
        assert INFO[op].nargs == 2, sym
    assert set(ARITH_SYMBOL) <= set(BINARY_OPS.values())
    assert set(BLOCK_KINDS) == set(BlockKind), "every block kind has a shape"


_check_table()
