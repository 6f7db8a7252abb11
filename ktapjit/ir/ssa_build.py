"""AST to SSA IR, by Braun et al., "Simple and Efficient Construction of SSA Form".

Locals that no closure captures become SSA values directly; phis are placed
on demand when a variable is read in a block with several predecessors, and
blocks are sealed once all their predecessors are known. A captured local
lives in a cell: its SSA "value" is the cell, and reads and writes go through
CellGet/CellSet, so closures share it by reference. Globals live in the
global table (GlobalGet/GlobalSet).

Phis that turn out trivial during construction are replaced through a
forwarding map; the copyelim pass later removes the ones that only become
trivial once their whole cycle is known.
"""

from __future__ import annotations

from typing import Optional

from ktapjit.diag import Span
from ktapjit.frontend import ast
from ktapjit.ir.func import Block, Func, Module, ProbeInfo, TimerInfo, Value
from ktapjit.ir.ops import BINARY_OPS, UNARY_OPS, BlockKind, Op, info
from ktapjit.semantics.memory_read import MEMORY_BUILTINS, MemoryRead
from ktapjit.semantics.stack_request import StackRequest

_TIME_UNITS = {"gettimeofday_ns": "ns", "gettimeofday_us": "us", "gettimeofday_ms": "ms", "gettimeofday_s": "s"}
# ktap's ansi library (its runtime/lib_ansi.c): each call prints an escape
# sequence, so it is a printf of a constant format with the call's numbers.
_ANSI_FORMATS = {
    "ansi.clear_screen": b"\x1b[1;1H\x1b[J",
    "ansi.set_color": b"\x1b[%dm",
    "ansi.set_color2": b"\x1b[%d;%dm",
    "ansi.reset_color": b"\x1b[0;0m",
    "ansi.new_line": b"\n",
}
# set_color3 leaves out the attribute when it is 0, as ktap's does.
_ANSI_COLOR3 = b"\x1b[%d;%d;%dm"
_VALUE_BUILTINS = {"num_cpus": Op.NumCpus, "arch": Op.Arch, "kernel_v": Op.KernelV}
# Aggregation updates: op and argument count (missing arguments are nil).
_AGGREGATIONS = {"hist": (Op.Hist, 3), "lhist": (Op.LHist, 6), "stats": (Op.Stats, 3)}
_COMPOUND_OPS = {"+": Op.Add, "-": Op.Sub, "*": Op.Mul, "/": Op.Div, "%": Op.Mod}


def build_module(program: ast.Program) -> Module:
    """Build every function of a resolved program."""
    funcs: list[Func] = []
    main = _FuncBuilder(program.main, "main", funcs).build()
    module = Module(
        path=program.path, source=program.source, main=main, funcs=funcs,
        global_names=[v.name for v in program.globals],
    )
    for probe in program.probes:
        func = _FuncBuilder(probe.body, "probe", funcs).build()
        module.probes.append(ProbeInfo(probe.eventdef, probe.eventdef_span, probe.filter, probe.filter_span, func))
    for timer in program.timers:
        func = _FuncBuilder(timer.body, "timer", funcs).build()
        module.timers.append(TimerInfo(timer.kind, timer.period_ns, timer.text, func))
    if program.trace_end is not None:
        module.trace_end = _FuncBuilder(program.trace_end.body, "trace_end", funcs).build()
    return module


def _memory_read(name: str, args: list[ast.Expr]) -> MemoryRead:
    """resolve checked the shape: no argument, or one event field."""
    if not args:
        return MemoryRead(name)
    arg = args[0]
    return MemoryRead(name, f"args.{arg.field_name}" if isinstance(arg, ast.ArgsField) else arg.name)


def _stack_request(name: str, args: list[ast.Expr]) -> StackRequest:
    # resolve checked that the arguments, if any, are integer constants.
    # A negative depth is ktap's "every frame" (ktap clamped it as unsigned).
    depth, skip = [ast.int_constant(a) for a in args] + [None, 0][len(args):]
    if depth is not None and depth < 0:
        depth = None
    return StackRequest("kernel" if name == "stack" else "user", depth, skip)


class _Loop:
    __slots__ = ("exit",)

    def __init__(self, exit_block: Block):
        self.exit = exit_block


class _FuncBuilder:
    """Builds one Func. Nested function expressions get builders of their own."""

    def __init__(self, node: ast.FuncExpr, kind: str, funcs: list[Func]):
        self.node = node
        self.funcs = funcs
        self.func = Func(node.name, kind, len(node.params), node.span, free_names=[v.name for v in node.free_vars])
        funcs.append(self.func)
        self.block: Block = self.func.new_block()
        self.current_def: dict[ast.Variable, dict[Block, Value]] = {}
        self.sealed: set[Block] = set()
        self.incomplete: dict[Block, list[tuple[ast.Variable, Value]]] = {}
        self.forward: dict[Value, Value] = {}
        self.loops: list[_Loop] = []

    # ------------------------------------------------------------ driver

    def build(self) -> Func:
        self.seal(self.block)
        for i, var in enumerate(self.node.free_vars):
            self.write_var(var, self.block, self.emit(Op.FreeCell, [], aux=i))
        for i, param in enumerate(self.node.params):
            self.declare(param.var, self.emit(Op.Param, [], aux=i))
        self.stmts(self.node.body.stmts)
        if not self.block.terminated():
            self.block.set_kind(BlockKind.Return)
        self.apply_forwarding()
        return self.func

    def apply_forwarding(self) -> None:
        for block in self.func.blocks:
            for value in block.instrs:
                value.args = [self.find(a) for a in value.args]
            block.controls = [self.find(c) for c in block.controls]

    def find(self, value: Value) -> Value:
        while value in self.forward:
            value = self.forward[value]
        return value

    # ------------------------------------------------------------ emission

    def emit(self, op: Op, args: list[Value], aux=None, span: Optional[Span] = None) -> Value:
        value = self.func.new_value(self.block, op, [self.find(a) for a in args], aux, span)
        self.block.instrs.append(value)
        return value

    def const(self, value) -> Value:
        return self.emit(Op.Const, [], aux=value)

    def nil_if_none(self, op: Op, value: Value) -> Value:
        # Ops that produce nothing still give the calling expression a value: nil.
        return self.const(None) if info(op).result == "none" else value

    def start_block(self, block: Block) -> None:
        self.block = block

    def jump(self, target: Block) -> None:
        if not self.block.terminated():
            self.block.set_kind(BlockKind.Plain, succs=[target])

    def branch(self, cond: Value, if_true: Block, if_false: Block) -> None:
        self.block.set_kind(BlockKind.If, controls=[cond], succs=[if_true, if_false])

    def dead_block(self) -> None:
        """Code after return/break/exit: a fresh block with no predecessors."""
        block = self.func.new_block()
        self.seal(block)
        self.start_block(block)

    # ------------------------------------------------------------ SSA variables

    def write_var(self, var: ast.Variable, block: Block, value: Value) -> None:
        self.current_def.setdefault(var, {})[block] = value

    def read_var(self, var: ast.Variable, block: Block) -> Value:
        defs = self.current_def.get(var)
        if defs is not None and block in defs:
            return self.find(defs[block])
        return self.read_var_recursive(var, block)

    def read_var_recursive(self, var: ast.Variable, block: Block) -> Value:
        if block not in self.sealed:
            value = self.new_phi(block)
            self.incomplete.setdefault(block, []).append((var, value))
        elif len(block.preds) == 1:
            value = self.read_var(var, block.preds[0])
        elif not block.preds:
            value = self.undefined(block)
        else:
            value = self.new_phi(block)
            self.write_var(var, block, value)
            value = self.add_phi_operands(var, value)
        self.write_var(var, block, value)
        return value

    def undefined(self, block: Block) -> Value:
        # Only unreachable code reads a variable no path defines.
        value = self.func.new_value(block, Op.Const, [], None, None)
        block.instrs.insert(len(block.phis()), value)
        return value

    def new_phi(self, block: Block) -> Value:
        phi = self.func.new_value(block, Op.Phi, [], None, None)
        block.instrs.insert(len(block.phis()), phi)
        return phi

    def add_phi_operands(self, var: ast.Variable, phi: Value) -> Value:
        for pred in phi.block.preds:
            phi.args.append(self.read_var(var, pred))
        return self.try_remove_trivial_phi(phi)

    def try_remove_trivial_phi(self, phi: Value) -> Value:
        same: Optional[Value] = None
        for arg in phi.args:
            arg = self.find(arg)
            if arg is same or arg is phi:
                continue
            if same is not None:
                return phi
            same = arg
        if same is None:
            same = self.undefined(phi.block)
        phi.block.instrs.remove(phi)
        self.forward[phi] = same
        return same

    def seal(self, block: Block) -> None:
        for var, phi in self.incomplete.pop(block, []):
            self.add_phi_operands(var, phi)
        self.sealed.add(block)

    # ------------------------------------------------------------ variables

    def declare(self, var: ast.Variable, value: Value) -> None:
        if var.kind == "global":
            self.emit(Op.GlobalSet, [value], aux=var.slot)
        elif var.captured:
            self.write_var(var, self.block, self.emit(Op.CellNew, [value]))
        else:
            self.write_var(var, self.block, value)

    def load(self, var: ast.Variable) -> Value:
        if var.kind == "global":
            return self.emit(Op.GlobalGet, [], aux=var.slot)
        value = self.read_var(var, self.block)
        return self.emit(Op.CellGet, [value]) if var.captured else value

    def store(self, var: ast.Variable, value: Value) -> None:
        if var.kind == "global":
            self.emit(Op.GlobalSet, [value], aux=var.slot)
        elif var.captured:
            self.emit(Op.CellSet, [self.read_var(var, self.block), value])
        else:
            self.write_var(var, self.block, value)

    # ------------------------------------------------------------ statements

    def stmts(self, stmts: list[ast.Stmt]) -> None:
        for stmt in stmts:
            getattr(self, "stmt_" + type(stmt).__name__)(stmt)

    def stmt_Trace(self, stmt) -> None:
        pass  # registered at compile time; nothing runs at this point

    stmt_TraceEnd = stmt_Timer = stmt_Trace

    def stmt_VarDecl(self, stmt: ast.VarDecl) -> None:
        values = [self.expr(v) for v in stmt.values]
        for i, name in enumerate(stmt.names):
            self.declare(name.var, values[i] if i < len(values) else self.const(None))

    def stmt_FuncDecl(self, stmt: ast.FuncDecl) -> None:
        var = stmt.name.var
        if var.kind == "local":
            # Declared before its body so that the closure can capture itself.
            self.declare(var, self.const(None))
        self.store(var, self.closure(stmt.func))

    def stmt_Assign(self, stmt: ast.Assign) -> None:
        places = [self.place(t) for t in stmt.targets]
        values = [self.expr(v) for v in stmt.values]
        for i, (target, place) in enumerate(zip(stmt.targets, places)):
            value = values[i] if i < len(values) else self.const(None)
            self.assign_place(target, place, value)

    def place(self, target: ast.Expr):
        """Evaluate the table and key of an assignment target (left to right)."""
        if isinstance(target, ast.Index):
            return (self.expr(target.obj), self.expr(target.key))
        return None

    def assign_place(self, target: ast.Expr, place, value: Value) -> None:
        if place is None:
            self.store(target.var, value)
        else:
            obj, key = place
            self.emit(Op.TableSet, [obj, key, value], span=target.span)

    def stmt_CompoundAssign(self, stmt: ast.CompoundAssign) -> None:
        target = stmt.target
        place = self.place(target)
        if place is None:
            old = self.load(target.var)
        else:
            old = self.emit(Op.TableGet, list(place), span=target.span)
            old = self.emit(Op.OrZero, [old])
        value = self.expr(stmt.value)
        new = self.emit(_COMPOUND_OPS[stmt.op], [old, value], span=stmt.span)
        self.assign_place(target, place, new)

    def stmt_CallStmt(self, stmt: ast.CallStmt) -> None:
        self.expr(stmt.call)

    def stmt_If(self, stmt: ast.If) -> None:
        merge = self.func.new_block()
        for cond, body in stmt.clauses:
            then_block, else_block = self.func.new_block(), self.func.new_block()
            self.branch(self.expr(cond), then_block, else_block)
            self.seal(then_block)
            self.seal(else_block)
            self.start_block(then_block)
            self.stmts(body.stmts)
            self.jump(merge)
            self.start_block(else_block)
        if stmt.orelse is not None:
            self.stmts(stmt.orelse.stmts)
        self.jump(merge)
        self.seal(merge)
        self.start_block(merge)

    def loop(self, exit_block: Block, body) -> None:
        self.loops.append(_Loop(exit_block))
        body()
        self.loops.pop()

    def back_edge(self, span: Span, header: Block) -> None:
        """The end of a completed body: count it, then go back to the top."""
        if not self.block.terminated():
            self.emit(Op.LoopTick, [], span=span)
            self.jump(header)

    def stmt_While(self, stmt: ast.While) -> None:
        header, body, exit_block = self.func.new_block(), self.func.new_block(), self.func.new_block()
        self.jump(header)
        self.start_block(header)
        self.branch(self.expr(stmt.cond), body, exit_block)
        self.seal(body)
        self.start_block(body)
        self.loop(exit_block, lambda: self.stmts(stmt.body.stmts))
        self.back_edge(stmt.span, header)
        self.seal(header)
        self.seal(exit_block)
        self.start_block(exit_block)

    def stmt_Repeat(self, stmt: ast.Repeat) -> None:
        body, again, exit_block = self.func.new_block(), self.func.new_block(), self.func.new_block()
        self.jump(body)
        self.start_block(body)

        def run_body():
            self.stmts(stmt.body.stmts)
            if not self.block.terminated():
                self.branch(self.expr(stmt.cond), exit_block, again)

        self.loop(exit_block, run_body)
        self.seal(again)
        self.start_block(again)
        self.back_edge(stmt.span, body)
        self.seal(body)
        self.seal(exit_block)
        self.start_block(exit_block)

    def stmt_ForNum(self, stmt: ast.ForNum) -> None:
        start = self.expr(stmt.start)
        limit = self.expr(stmt.limit)
        step = self.expr(stmt.step) if stmt.step is not None else self.const(1)
        start = self.emit(Op.ForInt, [start], aux="initial value", span=stmt.span)
        limit = self.emit(Op.ForInt, [limit], aux="limit", span=stmt.span)
        step = self.emit(Op.ForInt, [step], aux="step", span=stmt.span)
        step = self.emit(Op.ForStepNonZero, [step], span=stmt.span)
        header, body, exit_block = self.func.new_block(), self.func.new_block(), self.func.new_block()
        entry = self.block
        self.jump(header)
        self.start_block(header)
        counter = self.new_phi(header)
        self.branch(self.emit(Op.ForCont, [counter, limit, step]), body, exit_block)
        self.seal(body)
        self.start_block(body)
        # The script's variable is a fresh copy each iteration: assigning it
        # in the body never changes the counter.
        self.declare(stmt.var.var, counter)
        self.loop(exit_block, lambda: self.stmts(stmt.body.stmts))
        latch = None
        if not self.block.terminated():
            # The counter never wraps: the loop stops where i + step would leave int64.
            self.emit(Op.LoopTick, [], span=stmt.span)
            latch = self.func.new_block()
            self.branch(self.emit(Op.ForCanStep, [counter, step]), latch, exit_block)
            self.seal(latch)
            self.start_block(latch)
            next_value = self.emit(Op.Add, [counter, step])
            self.jump(header)
        counter.args = [start] + ([next_value] if latch is not None else [])
        assert header.preds == [entry] + ([latch] if latch is not None else [])
        self.seal(header)
        self.seal(exit_block)
        self.start_block(exit_block)

    def stmt_ForC(self, stmt: ast.ForC) -> None:
        self.declare(stmt.var.var, self.expr(stmt.init))
        header, body, exit_block = self.func.new_block(), self.func.new_block(), self.func.new_block()
        self.jump(header)
        self.start_block(header)
        cond = self.expr(stmt.cond) if stmt.cond is not None else self.const(True)
        self.branch(cond, body, exit_block)
        self.seal(body)
        self.start_block(body)
        self.loop(exit_block, lambda: self.stmts(stmt.body.stmts))
        if not self.block.terminated():
            self.emit(Op.LoopTick, [], span=stmt.span)
            if stmt.update is not None:
                self.stmts([stmt.update])
            self.jump(header)
        self.seal(header)
        self.seal(exit_block)
        self.start_block(exit_block)

    def stmt_ForIn(self, stmt: ast.ForIn) -> None:
        table = self.expr(stmt.table)
        keys = self.emit(Op.PairsSnapshot, [table], span=stmt.pairs_span)
        count = self.emit(Op.SnapshotLen, [keys])
        zero, one = self.const(0), self.const(1)
        header, fetch, body, advance, exit_block = (self.func.new_block() for _ in range(5))
        entry = self.block
        self.jump(header)
        self.start_block(header)
        index = self.new_phi(header)
        self.branch(self.emit(Op.Lt, [index, count]), fetch, exit_block)
        self.seal(fetch)
        self.start_block(fetch)
        key = self.emit(Op.SnapshotKey, [keys, index])
        value = self.emit(Op.TableGet, [table, key])
        # A key deleted since the loop began is skipped without running the body.
        self.branch(self.emit(Op.Eq, [value, self.const(None)]), advance, body)
        self.seal(body)
        self.start_block(body)
        self.declare(stmt.key.var, key)
        if stmt.value is not None:
            self.declare(stmt.value.var, value)
        self.loop(exit_block, lambda: self.stmts(stmt.body.stmts))
        if not self.block.terminated():
            self.emit(Op.LoopTick, [], span=stmt.span)
            self.jump(advance)
        self.seal(advance)
        self.start_block(advance)
        next_index = self.emit(Op.Add, [index, one])
        self.jump(header)
        index.args = [zero, next_index]
        assert header.preds == [entry, advance]
        self.seal(header)
        self.seal(exit_block)
        self.start_block(exit_block)

    def stmt_Break(self, stmt: ast.Break) -> None:
        self.jump(self.loops[-1].exit)
        self.dead_block()

    def stmt_Return(self, stmt: ast.Return) -> None:
        value = stmt.value
        if self.is_tail_call(value):
            callee = self.expr(value.callee)
            args = [self.expr(a) for a in value.args]
            self.block.set_kind(BlockKind.TailCall, controls=[callee, *args], span=value.span)
        elif value is not None:
            result = self.expr(value)  # may end in another block (`a || b` does)
            self.block.set_kind(BlockKind.Return, controls=[result])
        else:
            self.block.set_kind(BlockKind.Return)
        self.dead_block()

    def is_tail_call(self, value: Optional[ast.Expr]) -> bool:
        # Only inside a script function, and only a call of a script function.
        return self.func.kind == "function" and isinstance(value, ast.Call) and value.builtin is None

    # ------------------------------------------------------------ expressions

    def expr(self, expr: ast.Expr) -> Value:
        return getattr(self, "expr_" + type(expr).__name__)(expr)

    def expr_IntLit(self, expr: ast.IntLit) -> Value:
        return self.const(expr.value)

    def expr_StrLit(self, expr: ast.StrLit) -> Value:
        return self.const(expr.value)

    def expr_NilLit(self, expr: ast.NilLit) -> Value:
        return self.const(None)

    def expr_BoolLit(self, expr: ast.BoolLit) -> Value:
        return self.const(expr.value)

    def expr_Name(self, expr: ast.Name) -> Value:
        return self.load(expr.var)

    def expr_Index(self, expr: ast.Index) -> Value:
        obj = self.expr(expr.obj)
        key = self.expr(expr.key)
        return self.emit(Op.TableGet, [obj, key], span=expr.span)

    def expr_Binary(self, expr: ast.Binary) -> Value:
        left = self.expr(expr.left)
        right = self.expr(expr.right)
        return self.emit(BINARY_OPS[expr.op], [left, right], span=expr.span)

    def expr_Unary(self, expr: ast.Unary) -> Value:
        operand = self.expr(expr.operand)
        return self.emit(UNARY_OPS[expr.op], [operand], span=expr.span)

    def expr_Logical(self, expr: ast.Logical) -> Value:
        left = self.expr(expr.left)
        right_block, merge = self.func.new_block(), self.func.new_block()
        if expr.op == "&&":
            self.branch(left, right_block, merge)
        else:
            self.branch(left, merge, right_block)
        self.seal(right_block)
        self.start_block(right_block)
        right = self.expr(expr.right)
        self.jump(merge)
        self.seal(merge)
        self.start_block(merge)
        phi = self.new_phi(merge)
        phi.args = [left, right]
        return phi

    def expr_TableCons(self, expr: ast.TableCons) -> Value:
        table = self.emit(Op.TableNew, [])
        position = 0
        for item in expr.items:
            if item.key is None:
                position += 1
                key = self.const(position)
            else:
                key = self.expr(item.key)
            value = self.expr(item.value)
            self.emit(Op.TableSet, [table, key, value], span=item.span)
        return table

    def expr_FuncExpr(self, expr: ast.FuncExpr) -> Value:
        return self.closure(expr)

    def ansi_printf(self, fmt: bytes, args: list[Value], span: Span) -> Value:
        self.emit(Op.Printf, [self.const(fmt), *args], span=span)
        return self.const(None)

    def ansi_set_color3(self, fg: Value, bg: Value, attr: Value, span: Span) -> Value:
        with_attr, without_attr, merge = self.func.new_block(), self.func.new_block(), self.func.new_block()
        self.branch(self.emit(BINARY_OPS["!="], [attr, self.const(0)], span=span), with_attr, without_attr)
        for block, fmt, args in ((with_attr, _ANSI_COLOR3, [fg, bg, attr]),
                                 (without_attr, _ANSI_FORMATS["ansi.set_color2"], [fg, bg])):
            self.seal(block)
            self.start_block(block)
            self.ansi_printf(fmt, args, span)
            self.jump(merge)
        self.seal(merge)
        self.start_block(merge)
        return self.const(None)

    def closure(self, node: ast.FuncExpr) -> Value:
        func = _FuncBuilder(node, "function", self.funcs).build()
        cells = [self.read_var(var, self.block) for var in node.free_vars]
        return self.emit(Op.Closure, cells, aux=func)

    def expr_EventValue(self, expr: ast.EventValue) -> Value:
        return self.emit(Op.EventValue, [], aux=expr.name, span=expr.span)

    def expr_ArgsField(self, expr: ast.ArgsField) -> Value:
        return self.emit(Op.EventField, [], aux=expr.field_name, span=expr.span)

    def expr_Call(self, expr: ast.Call) -> Value:
        if expr.builtin is not None:
            return self.builtin_call(expr)
        callee = self.expr(expr.callee)
        args = [self.expr(a) for a in expr.args]
        return self.emit(Op.Call, [callee, *args], span=expr.span)

    def builtin_call(self, expr: ast.Call) -> Value:
        name = expr.builtin
        args = [self.expr(a) for a in expr.args]  # extra arguments are evaluated, then ignored

        def arg(i: int) -> Value:
            return args[i] if i < len(args) else self.const(None)

        span = expr.span
        if name == "print":
            return self.nil_if_none(Op.Print, self.emit(Op.Print, args, span=span))
        if name == "printf":
            return self.nil_if_none(Op.Printf, self.emit(Op.Printf, args, span=span))
        if name == "print_hist":
            return self.nil_if_none(Op.PrintHist, self.emit(Op.PrintHist, [arg(0)] + args[1:2], span=span))
        if name == "print_folded":
            return self.nil_if_none(Op.PrintFolded, self.emit(Op.PrintFolded, [arg(0)], span=span))
        if name in _AGGREGATIONS:
            op, nargs = _AGGREGATIONS[name]
            return self.nil_if_none(op, self.emit(op, [arg(i) for i in range(nargs)], span=span))
        if name == "print_agg":
            return self.nil_if_none(Op.PrintAgg, self.emit(Op.PrintAgg, [arg(0)], span=span))
        if name == "len":
            return self.emit(Op.Len, [arg(0)], span=span)
        if name == "delete":
            return self.nil_if_none(Op.Delete, self.emit(Op.Delete, [arg(0)], span=span))
        if name == "stringof":
            return self.emit(Op.StringOf, [arg(0)], span=span)
        if name == "table.new":
            return self.emit(Op.TableNew, [])
        if name in _VALUE_BUILTINS:
            return self.emit(_VALUE_BUILTINS[name], [])
        if name == "ipof":  # resolve made sure of one string literal
            return self.emit(Op.KernelSymbol, [], aux=expr.args[0].value, span=span)
        if name in _TIME_UNITS:
            return self.emit(Op.Time, [], aux=_TIME_UNITS[name])
        if name in MEMORY_BUILTINS:
            return self.emit(Op.EventMemory, [], aux=_memory_read(name, expr.args).aux, span=span)
        if name in ("stack", "ustack"):
            return self.emit(Op.Stack, [], aux=_stack_request(name, expr.args), span=span)
        if name in _ANSI_FORMATS:
            return self.ansi_printf(_ANSI_FORMATS[name], [arg(i) for i in range(_ANSI_FORMATS[name].count(b"%d"))], span)
        if name == "ansi.set_color3":
            return self.ansi_set_color3(arg(0), arg(1), arg(2), span)
        if name == "exit":
            self.block.set_kind(BlockKind.Exit)
            self.dead_block()
            return self.const(None)
        raise AssertionError(f"builtin {name} has no lowering")
