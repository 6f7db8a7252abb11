"""AST nodes. Every node carries the Span of the token a diagnostic or a
runtime error about it must point at (LANGUAGE.md, "Error locations"):
the operator of a binary or unary expression, the `(` of a call, the `[` or
`.` of an index, the keyword of a loop.

Scope resolution (resolve.py) fills the `var` slots of Name nodes and the
`builtin` slot of calls; nothing else mutates the tree after parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ktapjit.diag import Span


@dataclass(eq=False, slots=True)
class Variable:
    """One declared variable. Identity matters: two `var x` make two Variables."""

    name: str
    kind: str  # "global" | "local"
    span: Span
    captured: bool = False  # read or written by a nested function: lives in a cell
    slot: int = -1  # globals: index in the global table
    owner: Optional["FuncExpr"] = None  # locals: the function that declares it


# ---------------------------------------------------------------- expressions


@dataclass(eq=False, slots=True)
class IntLit:
    """An integer literal."""

    value: int
    span: Span


@dataclass(eq=False, slots=True)
class StrLit:
    """A string literal, as bytes."""

    value: bytes
    span: Span


@dataclass(eq=False, slots=True)
class NilLit:
    """`nil`."""

    span: Span


@dataclass(eq=False, slots=True)
class BoolLit:
    """`true` or `false`."""

    value: bool
    span: Span


@dataclass(eq=False, slots=True)
class Name:
    """A variable name; `var` is bound by resolve."""

    ident: str
    span: Span
    var: Optional[Variable] = None


@dataclass(eq=False, slots=True)
class Index:
    """`obj[key]` or `obj.key`."""

    obj: "Expr"
    key: "Expr"
    span: Span  # the `[` or `.`


@dataclass(eq=False, slots=True)
class Call:
    """A call; `builtin` is set by resolve when the callee is one."""

    callee: "Expr"
    args: list["Expr"]
    span: Span  # the `(`
    builtin: Optional[str] = None  # set by resolve when the callee names a builtin


@dataclass(eq=False, slots=True)
class Binary:
    """An arithmetic, comparison or concatenation operator."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span  # the operator


@dataclass(eq=False, slots=True)
class Logical:
    """`&&` or `||`: the right side runs only when needed."""

    op: str  # "&&" | "||"
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(eq=False, slots=True)
class Unary:
    """`-x`, `!x` or `~x`."""

    op: str  # "-" | "!" | "~"
    operand: "Expr"
    span: Span


def int_constant(expr: "Expr") -> Optional[int]:
    """The value of an integer literal, or of a negated one (`-1` parses as
    unary minus over 1); None for any other expression."""
    if isinstance(expr, IntLit):
        return expr.value
    if isinstance(expr, Unary) and expr.op == "-" and isinstance(expr.operand, IntLit):
        return -expr.operand.value
    return None


@dataclass(eq=False, slots=True)
class TableItem:
    """One item of a table constructor."""

    key: Optional["Expr"]  # None: positional, numbered from 1
    value: "Expr"
    span: Span


@dataclass(eq=False, slots=True)
class TableCons:
    """A table constructor: `{...}`."""

    items: list[TableItem]
    span: Span


@dataclass(eq=False, slots=True)
class FuncExpr:
    """A function: its parameters, body, and (filled by resolve) its variables."""

    params: list[Name]
    body: "Block"
    span: Span
    name: str = "<anonymous>"
    # Filled by resolve: variables of enclosing functions this one uses.
    free_vars: list[Variable] = field(default_factory=list)
    locals: list[Variable] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class EventValue:
    """pid, tid, cpu, uid, execname, probename, argstr, arg0..arg9."""

    name: str
    span: Span


@dataclass(eq=False, slots=True)
class ArgsField:
    """`args.NAME`: an event field by name."""

    field_name: str
    span: Span


Expr = Union[
    IntLit, StrLit, NilLit, BoolLit, Name, Index, Call, Binary, Logical, Unary,
    TableCons, FuncExpr, EventValue, ArgsField,
]

# ----------------------------------------------------------------- statements


@dataclass(eq=False, slots=True)
class Block:
    """A statement list."""

    stmts: list["Stmt"]
    span: Span


@dataclass(eq=False, slots=True)
class VarDecl:
    """`var a, b = x, y`."""

    names: list[Name]
    values: list[Expr]
    span: Span


@dataclass(eq=False, slots=True)
class FuncDecl:
    """`function NAME(...) ...`."""

    name: Name
    func: FuncExpr
    span: Span


@dataclass(eq=False, slots=True)
class Assign:
    """`a, b = x, y`."""

    targets: list[Expr]  # Name or Index
    values: list[Expr]
    span: Span


@dataclass(eq=False, slots=True)
class CompoundAssign:
    """`target OP= value`."""

    op: str  # the arithmetic operator: "+", "-", "*", "/", "%"
    target: Expr
    value: Expr
    span: Span  # the `+=`


@dataclass(eq=False, slots=True)
class CallStmt:
    """A call whose result is dropped."""

    call: Call
    span: Span


@dataclass(eq=False, slots=True)
class If:
    """`if` with its `elseif` clauses and `else`."""

    clauses: list[tuple[Expr, Block]]
    orelse: Optional[Block]
    span: Span


@dataclass(eq=False, slots=True)
class While:
    """`while COND { ... }`."""

    cond: Expr
    body: Block
    span: Span


@dataclass(eq=False, slots=True)
class Repeat:
    """`repeat { ... } until COND`."""

    body: Block
    cond: Expr
    span: Span


@dataclass(eq=False, slots=True)
class ForNum:
    """`for (i = start, limit[, step])`."""

    var: Name
    start: Expr
    limit: Expr
    step: Optional[Expr]
    body: Block
    span: Span


@dataclass(eq=False, slots=True)
class ForC:
    """`for (init; cond; update)`."""

    var: Name
    init: Expr
    cond: Optional[Expr]
    update: Optional["Stmt"]
    body: Block
    span: Span


@dataclass(eq=False, slots=True)
class ForIn:
    """`for (k, v in pairs(table))`."""

    key: Name
    value: Optional[Name]
    table: Expr
    body: Block
    span: Span
    pairs_span: Span  # the `(` of pairs(...), where a non-table is reported


@dataclass(eq=False, slots=True)
class Break:
    """`break`."""

    span: Span


@dataclass(eq=False, slots=True)
class Return:
    """`return [value]`."""

    value: Optional[Expr]
    span: Span


@dataclass(eq=False, slots=True)
class Trace:
    """`trace EVENTDEF [/FILTER/] { ... }`."""

    eventdef: str
    eventdef_span: Span
    filter: Optional[str]
    filter_span: Optional[Span]
    body: FuncExpr
    span: Span


@dataclass(eq=False, slots=True)
class TraceEnd:
    """`trace_end { ... }`."""

    body: FuncExpr
    span: Span


@dataclass(eq=False, slots=True)
class Timer:
    """`tick-N` or `profile-N { ... }`."""

    kind: str  # "tick" | "profile"
    period_ns: int
    text: str  # as written, e.g. "tick-10ms"
    body: FuncExpr
    span: Span


Stmt = Union[
    Block, VarDecl, FuncDecl, Assign, CompoundAssign, CallStmt, If, While,
    Repeat, ForNum, ForC, ForIn, Break, Return, Trace, TraceEnd, Timer,
]


@dataclass(eq=False, slots=True)
class Program:
    """A parsed script. `main` wraps the top-level statements as a function."""

    main: FuncExpr
    path: str
    source: bytes
    globals: list[Variable] = field(default_factory=list)
    probes: list[Trace] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    trace_end: Optional[TraceEnd] = None
