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
    value: int
    span: Span


@dataclass(eq=False, slots=True)
class StrLit:
    value: bytes
    span: Span


@dataclass(eq=False, slots=True)
class NilLit:
    span: Span


@dataclass(eq=False, slots=True)
class BoolLit:
    value: bool
    span: Span


@dataclass(eq=False, slots=True)
class Name:
    ident: str
    span: Span
    var: Optional[Variable] = None


@dataclass(eq=False, slots=True)
class Index:
    obj: "Expr"
    key: "Expr"
    span: Span  # the `[` or `.`


@dataclass(eq=False, slots=True)
class Call:
    callee: "Expr"
    args: list["Expr"]
    span: Span  # the `(`
    builtin: Optional[str] = None  # set by resolve when the callee names a builtin


@dataclass(eq=False, slots=True)
class Binary:
    op: str
    left: "Expr"
    right: "Expr"
    span: Span  # the operator


@dataclass(eq=False, slots=True)
class Logical:
    op: str  # "&&" | "||"
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(eq=False, slots=True)
class Unary:
    op: str  # "-" | "!" | "~"
    operand: "Expr"
    span: Span


@dataclass(eq=False, slots=True)
class TableItem:
    key: Optional["Expr"]  # None: positional, numbered from 1
    value: "Expr"
    span: Span


@dataclass(eq=False, slots=True)
class TableCons:
    items: list[TableItem]
    span: Span


@dataclass(eq=False, slots=True)
class FuncExpr:
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
    stmts: list["Stmt"]
    span: Span


@dataclass(eq=False, slots=True)
class VarDecl:
    names: list[Name]
    values: list[Expr]
    span: Span


@dataclass(eq=False, slots=True)
class FuncDecl:
    name: Name
    func: FuncExpr
    span: Span


@dataclass(eq=False, slots=True)
class Assign:
    targets: list[Expr]  # Name or Index
    values: list[Expr]
    span: Span


@dataclass(eq=False, slots=True)
class CompoundAssign:
    op: str  # the arithmetic operator: "+", "-", "*", "/", "%"
    target: Expr
    value: Expr
    span: Span  # the `+=`


@dataclass(eq=False, slots=True)
class CallStmt:
    call: Call
    span: Span


@dataclass(eq=False, slots=True)
class If:
    clauses: list[tuple[Expr, Block]]
    orelse: Optional[Block]
    span: Span


@dataclass(eq=False, slots=True)
class While:
    cond: Expr
    body: Block
    span: Span


@dataclass(eq=False, slots=True)
class Repeat:
    body: Block
    cond: Expr
    span: Span


@dataclass(eq=False, slots=True)
class ForNum:
    var: Name
    start: Expr
    limit: Expr
    step: Optional[Expr]
    body: Block
    span: Span


@dataclass(eq=False, slots=True)
class ForC:
    var: Name
    init: Expr
    cond: Optional[Expr]
    update: Optional["Stmt"]
    body: Block
    span: Span


@dataclass(eq=False, slots=True)
class ForIn:
    key: Name
    value: Optional[Name]
    table: Expr
    body: Block
    span: Span
    pairs_span: Span  # the `(` of pairs(...), where a non-table is reported


@dataclass(eq=False, slots=True)
class Break:
    span: Span


@dataclass(eq=False, slots=True)
class Return:
    value: Optional[Expr]
    span: Span


@dataclass(eq=False, slots=True)
class Trace:
    eventdef: str
    eventdef_span: Span
    filter: Optional[str]
    filter_span: Optional[Span]
    body: FuncExpr
    span: Span


@dataclass(eq=False, slots=True)
class TraceEnd:
    body: FuncExpr
    span: Span


@dataclass(eq=False, slots=True)
class Timer:
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
