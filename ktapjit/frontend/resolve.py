"""Scope resolution and placement checks.

Binds every Name to its Variable, marks builtin calls, records which locals
closures capture (they will live in cells), and registers probes, timers and
trace_end. Also makes the compile-time checks LANGUAGE.md assigns to this
stage: undeclared names, placement of trace/trace_end/timers, `break` outside
a loop, event values outside a probe body, `pairs` outside for-in, builtins
used as values. Problems are collected as diagnostics; the first one in
source order is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ktapjit.diag import CompileError, Diagnostics, Span
from ktapjit.frontend import ARG_GLOBAL
from ktapjit.frontend import ast
from ktapjit.frontend.parse import FFI_UNSUPPORTED
from ktapjit.semantics.memory_read import MEMORY_BUILTINS, STRING_READS

# ktap's library namespaces: `ns.member(...)` calls a builtin while `ns` is
# not a declared name (a script may declare its own `ansi`).
LIBRARIES = {
    "table": frozenset({"new"}),
    "ansi": frozenset({"clear_screen", "set_color", "set_color2", "set_color3", "reset_color", "new_line"}),
}
# Builtins callable by name, and the library namespaces (not values either).
BUILTINS = frozenset({
    "print", "printf", "print_hist", "print_folded", "len", "delete", "stringof", "num_cpus",
    "hist", "lhist", "stats", "print_agg", "arch", "kernel_v", "exit", "gettimeofday_ns", "gettimeofday_us",
    "gettimeofday_ms", "gettimeofday_s", "pairs", "stack", "ustack", "ipof",
}) | MEMORY_BUILTINS | LIBRARIES.keys()
# Builtins that read the current event: probe bodies only, like event values.
EVENT_BUILTINS = frozenset({"stack", "ustack"}) | MEMORY_BUILTINS

IPOF_SHAPE = (
    "ipof takes a kernel symbol's name as a string literal: ipof(\"vfs_read\"); "
    "ktap's ipof(ADDRESS), the function at an address, is not supported "
    "(in a profile-N probe, stack(1) names the sampled function)"
)
KDEBUG_SHAPE = (
    "kdebug.tracepoint takes an event name and a function literal, at top level; "
    "or write `trace *:NAME { ... }`"
)


def _expr_span(expr: ast.Expr) -> Span:
    """Where an expression starts: its leftmost token."""
    while True:
        if isinstance(expr, (ast.Binary, ast.Logical)):
            expr = expr.left
        elif isinstance(expr, ast.Index):
            expr = expr.obj
        elif isinstance(expr, ast.Call):
            expr = expr.callee
        else:
            return expr.span


def _is_kdebug_tracepoint(callee: ast.Expr) -> bool:
    return (
        isinstance(callee, ast.Index) and isinstance(callee.obj, ast.Name) and callee.obj.ident == "kdebug"
        and isinstance(callee.key, ast.StrLit) and callee.key.value == b"tracepoint"
    )


def _is_event_field(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.ArgsField) or (
        isinstance(expr, ast.EventValue) and expr.name.startswith("arg") and expr.name[3:].isdigit())


# builtin_name's answer for `ns.member` whose member the library lacks: reported.
_NOT_IN_LIBRARY = "<not in library>"


@dataclass
class _Scope:
    """One block's names, inside its parent's."""

    names: dict[str, ast.Variable] = field(default_factory=dict)
    parent: Optional["_Scope"] = None

    def lookup(self, name: str) -> Optional[ast.Variable]:
        scope: Optional[_Scope] = self
        while scope is not None:
            var = scope.names.get(name)
            if var is not None:
                return var
            scope = scope.parent
        return None


@dataclass
class _FuncContext:
    """The function being resolved, and what its body may use."""

    func: ast.FuncExpr
    parent: Optional["_FuncContext"]
    event_kind: Optional[str]  # "trace" / "profile" inside such a body, else None
    loop_depth: int = 0


def resolve_program(program: ast.Program, diags: Optional[Diagnostics] = None) -> ast.Program:
    """Resolve in place. Problems go to `diags` when given (the caller
    decides when to stop); without it, the first one is raised as a CompileError."""
    collect = diags is not None
    diags = diags if collect else Diagnostics()
    _Resolver(program, diags).run()
    if diags and not collect:
        raise CompileError(diags.first())
    return program


class _Resolver:
    def __init__(self, program: ast.Program, diags: Diagnostics):
        self.program = program
        self.diags = diags
        self.global_scope = _Scope()
        self.scope = self.global_scope
        self.ctx: Optional[_FuncContext] = None

    # ------------------------------------------------------------ driver

    def run(self) -> None:
        main = self.program.main
        self.declare_global(ARG_GLOBAL, main.span)
        for stmt in main.body.stmts:
            if isinstance(stmt, ast.VarDecl):
                for name in stmt.names:
                    self.declare_global(name.ident, name.span)
            elif isinstance(stmt, ast.FuncDecl):
                self.declare_global(stmt.name.ident, stmt.name.span)
        if "kdebug" not in self.global_scope.names:
            main.body.stmts = [self.kdebug_as_trace(stmt) for stmt in main.body.stmts]
        self.register_probes(main.body.stmts)
        self.ctx = _FuncContext(main, None, None)
        for stmt in main.body.stmts:
            self.top_level_stmt(stmt)

    def kdebug_as_trace(self, stmt: ast.Stmt) -> ast.Stmt:
        """ktap's `kdebug.tracepoint("NAME", function () {...})` at top level is
        `trace *:NAME {...}`: ktap found the tracepoint by its name alone, in
        any subsystem, and ran the function with the event's values."""
        call = stmt.call if isinstance(stmt, ast.CallStmt) else None
        if call is None or not _is_kdebug_tracepoint(call.callee):
            return stmt
        args = call.args
        if (
            len(args) != 2 or not isinstance(args[0], ast.StrLit)
            or not isinstance(args[1], ast.FuncExpr) or args[1].params
        ):
            self.diags.error(call.span, KDEBUG_SHAPE)
            return stmt
        name, body = args[0].value.decode("latin-1"), args[1]
        eventdef = f"*:{name}"
        body.name = f"trace {eventdef}"
        return ast.Trace(eventdef, args[0].span, None, None, body, stmt.span)

    def declare_global(self, name: str, span: Span) -> ast.Variable:
        var = self.global_scope.names.get(name)
        if var is None:
            var = ast.Variable(name, "global", span, slot=len(self.program.globals))
            self.global_scope.names[name] = var
            self.program.globals.append(var)
        return var

    def register_probes(self, stmts: list[ast.Stmt]) -> None:
        # Probes are registered at compile time, wherever they appear in the file.
        for stmt in stmts:
            if isinstance(stmt, ast.Trace):
                self.program.probes.append(stmt)
                self.check_probe_syntax(stmt)
            elif isinstance(stmt, ast.Timer):
                self.program.timers.append(stmt)
            elif isinstance(stmt, ast.TraceEnd):
                if self.program.trace_end is not None:
                    self.diags.error(stmt.span, "a script may have only one trace_end")
                else:
                    self.program.trace_end = stmt

    def check_probe_syntax(self, probe: ast.Trace) -> None:
        """EVENTDEF and FILTER syntax; whether the events exist is known only when binding."""
        # Imported here: scripts without probes should not pay for them at start-up.
        from ktapjit.frontend.eventdef import EventDefError, parse_eventdef

        try:
            parse_eventdef(probe.eventdef)
        except EventDefError as exc:
            self.diags.error(probe.eventdef_span.shifted(exc.offset), exc.message)
        if probe.filter is not None:
            from ktapjit.kernel_filter.language import FilterSyntaxError, parse_filter

            try:
                parse_filter(probe.filter)
            except FilterSyntaxError as exc:
                self.diags.error(probe.filter_span.shifted(exc.offset), f"filter: {exc.message}")

    def top_level_stmt(self, stmt: ast.Stmt) -> None:
        if isinstance(stmt, ast.Trace):
            self.function_body(stmt.body, event_kind="trace")
        elif isinstance(stmt, ast.Timer):
            self.function_body(stmt.body, event_kind="profile" if stmt.kind == "profile" else None)
        elif isinstance(stmt, ast.TraceEnd):
            self.function_body(stmt.body, event_kind=None)
        elif isinstance(stmt, ast.VarDecl):
            # Top-level names are globals declared up front; `var x = x` reads the same global.
            for value in stmt.values:
                self.expr(value)
            for name in stmt.names:
                name.var = self.global_scope.names[name.ident]
        elif isinstance(stmt, ast.FuncDecl):
            stmt.name.var = self.global_scope.names[stmt.name.ident]
            self.function_body(stmt.func, event_kind=None)
        else:
            self.stmt(stmt)

    # ------------------------------------------------------------ scopes

    def push(self) -> None:
        self.scope = _Scope(parent=self.scope)

    def pop(self) -> None:
        assert self.scope.parent is not None
        self.scope = self.scope.parent

    def declare_local(self, name: ast.Name) -> ast.Variable:
        assert self.ctx is not None
        var = ast.Variable(name.ident, "local", name.span, owner=self.ctx.func)
        self.scope.names[name.ident] = var
        self.ctx.func.locals.append(var)
        name.var = var
        return var

    def function_body(self, func: ast.FuncExpr, event_kind: Optional[str]) -> None:
        outer_scope, outer_ctx = self.scope, self.ctx
        self.ctx = _FuncContext(func, outer_ctx, event_kind)
        self.scope = _Scope(parent=outer_scope)
        for param in func.params:
            self.declare_local(param)
        self.block_stmts(func.body)
        self.scope, self.ctx = outer_scope, outer_ctx

    def block(self, block: ast.Block) -> None:
        self.push()
        self.block_stmts(block)
        self.pop()

    def block_stmts(self, block: ast.Block) -> None:
        for stmt in block.stmts:
            self.stmt(stmt)

    def use(self, name: ast.Name, assigning: bool) -> None:
        var = self.scope.lookup(name.ident)
        if var is None:
            if name.ident in BUILTINS and not assigning:
                self.diags.error(name.span, f"builtin '{name.ident}' is not a value")
            elif name.ident == "ffi":
                self.diags.error(name.span, FFI_UNSUPPORTED)
            elif name.ident == "kdebug":
                self.diags.error(name.span, KDEBUG_SHAPE)
            else:
                verb = "assignment to" if assigning else "use of"
                self.diags.error(name.span, f"{verb} undeclared name '{name.ident}'")
            return
        name.var = var
        if var.kind == "local":
            self.note_capture(var)

    def note_capture(self, var: ast.Variable) -> None:
        # Every function between the use and the declaring function carries the cell.
        ctx = self.ctx
        while ctx is not None and ctx.func is not var.owner:
            var.captured = True
            if var not in ctx.func.free_vars:
                ctx.func.free_vars.append(var)
            ctx = ctx.parent

    # ------------------------------------------------------------ statements

    def stmt(self, stmt: ast.Stmt) -> None:
        getattr(self, "stmt_" + type(stmt).__name__)(stmt)

    def misplaced(self, stmt, what: str) -> None:
        self.diags.error(stmt.span, f"'{what}' is only allowed at top level")

    def stmt_Trace(self, stmt: ast.Trace) -> None:
        self.misplaced(stmt, "trace")

    def stmt_TraceEnd(self, stmt: ast.TraceEnd) -> None:
        self.misplaced(stmt, "trace_end")

    def stmt_Timer(self, stmt: ast.Timer) -> None:
        self.misplaced(stmt, stmt.text)

    def stmt_VarDecl(self, stmt: ast.VarDecl) -> None:
        for value in stmt.values:
            self.expr(value)
        for name in stmt.names:
            self.declare_local(name)

    def stmt_FuncDecl(self, stmt: ast.FuncDecl) -> None:
        self.declare_local(stmt.name)
        self.function_body(stmt.func, event_kind=None)

    def stmt_Assign(self, stmt: ast.Assign) -> None:
        for target in stmt.targets:
            self.target(target)
        for value in stmt.values:
            self.expr(value)

    def target(self, target: ast.Expr) -> None:
        if isinstance(target, ast.Name):
            self.use(target, assigning=True)
        else:
            self.expr(target)

    def stmt_CompoundAssign(self, stmt: ast.CompoundAssign) -> None:
        self.target(stmt.target)
        self.expr(stmt.value)

    def stmt_CallStmt(self, stmt: ast.CallStmt) -> None:
        self.expr(stmt.call)

    def stmt_If(self, stmt: ast.If) -> None:
        for cond, body in stmt.clauses:
            self.expr(cond)
            self.block(body)
        if stmt.orelse is not None:
            self.block(stmt.orelse)

    def loop_body(self, body: ast.Block) -> None:
        assert self.ctx is not None
        self.ctx.loop_depth += 1
        self.block_stmts(body)
        self.ctx.loop_depth -= 1

    def stmt_While(self, stmt: ast.While) -> None:
        self.expr(stmt.cond)
        self.push()
        self.loop_body(stmt.body)
        self.pop()

    def stmt_Repeat(self, stmt: ast.Repeat) -> None:
        self.push()
        self.loop_body(stmt.body)
        self.expr(stmt.cond)  # `until` sees the body's locals
        self.pop()

    def stmt_ForNum(self, stmt: ast.ForNum) -> None:
        for expr in (stmt.start, stmt.limit, stmt.step):
            if expr is not None:
                self.expr(expr)
        self.push()
        self.declare_local(stmt.var)
        self.loop_body(stmt.body)
        self.pop()

    def stmt_ForC(self, stmt: ast.ForC) -> None:
        self.expr(stmt.init)
        self.push()
        self.declare_local(stmt.var)
        if stmt.cond is not None:
            self.expr(stmt.cond)
        if stmt.update is not None:
            self.stmt(stmt.update)
        self.loop_body(stmt.body)
        self.pop()

    def stmt_ForIn(self, stmt: ast.ForIn) -> None:
        self.expr(stmt.table)
        self.push()
        self.declare_local(stmt.key)
        if stmt.value is not None:
            self.declare_local(stmt.value)
        self.loop_body(stmt.body)
        self.pop()

    def stmt_Break(self, stmt: ast.Break) -> None:
        assert self.ctx is not None
        if self.ctx.loop_depth == 0:
            self.diags.error(stmt.span, "'break' outside a loop")

    def stmt_Return(self, stmt: ast.Return) -> None:
        if stmt.value is not None:
            self.expr(stmt.value)

    # ------------------------------------------------------------ expressions

    def expr(self, expr: ast.Expr) -> None:
        getattr(self, "expr_" + type(expr).__name__)(expr)

    def expr_IntLit(self, expr) -> None:
        pass

    expr_StrLit = expr_NilLit = expr_BoolLit = expr_IntLit

    def expr_Name(self, expr: ast.Name) -> None:
        self.use(expr, assigning=False)

    def expr_Index(self, expr: ast.Index) -> None:
        self.expr(expr.obj)
        self.expr(expr.key)

    def expr_Call(self, expr: ast.Call) -> None:
        builtin = self.builtin_name(expr.callee)
        if builtin is None:
            self.expr(expr.callee)
        elif builtin is not _NOT_IN_LIBRARY:
            expr.builtin = builtin
            self.check_builtin_placement(expr)
        for arg in expr.args:
            self.expr(arg)

    def builtin_name(self, callee: ast.Expr) -> Optional[str]:
        if isinstance(callee, ast.Name):
            if callee.ident in BUILTINS and callee.ident not in LIBRARIES and self.scope.lookup(callee.ident) is None:
                return callee.ident
            return None
        if (
            isinstance(callee, ast.Index)
            and isinstance(callee.obj, ast.Name)
            and callee.obj.ident in LIBRARIES
            and isinstance(callee.key, ast.StrLit)
            and self.scope.lookup(callee.obj.ident) is None
        ):
            library, member = callee.obj.ident, callee.key.value.decode("latin-1")
            if member in LIBRARIES[library]:
                return f"{library}.{member}"
            if library != "table":  # `table.x` keeps its "not a value" error
                self.diags.error(callee.obj.span, f"library '{library}' has no function '{member}'")
                return _NOT_IN_LIBRARY
        return None

    def check_builtin_placement(self, call: ast.Call) -> None:
        if call.builtin == "pairs":
            self.diags.error(call.callee.span, "'pairs' is only allowed as the iterator of a for-in loop")
        elif call.builtin in EVENT_BUILTINS:
            self.check_event_context(call.callee.span, f"{call.builtin}()")
            if call.builtin in MEMORY_BUILTINS:
                self.check_memory_arguments(call)
            else:
                self.check_stack_arguments(call)
        elif call.builtin == "ipof":
            self.check_ipof_argument(call)

    def check_memory_arguments(self, call: ast.Call) -> None:
        # The kernel reads the memory before the body runs, so the pointer
        # must be one the reading program can find then: an event field.
        name = call.builtin
        if name not in STRING_READS:
            if call.args:
                self.diags.error(_expr_span(call.args[0]), f"{name}() takes no arguments")
            return
        if len(call.args) != 1 or not _is_event_field(call.args[0]):
            where = _expr_span(call.args[0]) if call.args else call.span
            self.diags.error(where, f"{name}() takes one event field, args.NAME or argN: "
                                    "the kernel reads the string when the event happens")

    def check_stack_arguments(self, call: ast.Call) -> None:
        # The frames kept are fixed per call site, like ktap's: the callchain
        # depth a probe needs is then known when its event is opened.
        for position, arg in enumerate(call.args[:2]):
            value = ast.int_constant(arg)
            if value is None:
                self.diags.error(_expr_span(arg), f"{call.builtin}(depth, skip) takes integer constants")
            elif value < 0 and position == 1:
                self.diags.error(_expr_span(arg), f"{call.builtin}(depth, skip): skip cannot be negative")
        if len(call.args) > 2:
            self.diags.error(_expr_span(call.args[2]), f"{call.builtin}() takes at most 2 arguments (depth, skip)")

    def check_ipof_argument(self, call: ast.Call) -> None:
        # The name is fixed per call site so that engines look every address
        # up once, when the run starts, and compiled code holds none (KASLR).
        if not call.args:
            self.diags.error(call.span, IPOF_SHAPE)
            return
        bad = [a for i, a in enumerate(call.args) if i > 0 or not isinstance(a, ast.StrLit)]
        if bad:
            self.diags.error(_expr_span(bad[0]), IPOF_SHAPE)

    def check_event_context(self, span: Span, what: str) -> None:
        assert self.ctx is not None
        if self.ctx.event_kind is None:
            self.diags.error(span, f"event value '{what}' is only allowed in a probe body")

    def expr_Binary(self, expr: ast.Binary) -> None:
        self.expr(expr.left)
        self.expr(expr.right)

    expr_Logical = expr_Binary

    def expr_Unary(self, expr: ast.Unary) -> None:
        self.expr(expr.operand)

    def expr_TableCons(self, expr: ast.TableCons) -> None:
        for item in expr.items:
            if item.key is not None:
                self.expr(item.key)
            self.expr(item.value)

    def expr_FuncExpr(self, expr: ast.FuncExpr) -> None:
        self.function_body(expr, event_kind=None)

    def expr_EventValue(self, expr: ast.EventValue) -> None:
        self.check_event_context(expr.span, expr.name)

    def expr_ArgsField(self, expr: ast.ArgsField) -> None:
        self.check_event_context(expr.span, f"args.{expr.field_name}")
