"""Hand-built IR for the interpreter tests, and a way to run it.

    fb = FuncBuilder()
    x = fb.const(40)
    y = fb.op(Op.Add, x, fb.const(2), span=at(1, 5))
    fb.ret(y)
    assert evaluate(fb.func) == 42
"""

from __future__ import annotations

from ktapjit.diag import Span
from ktapjit.interp.engine import InterpEngine
from ktapjit.interp.frames import Machine
from ktapjit.interp.runtime import Runtime
from ktapjit.ir.func import Block, Func, Module, ProbeInfo, TimerInfo, Value
from ktapjit.ir.ops import Op
from ktapjit.run_api import Limits, RunConfig

PATH = "t.kp"


def at(line: int, col: int) -> Span:
    return Span(PATH, line, col)


class FuncBuilder:
    """Appends to a current block; blocks are made with new_block()."""

    def __init__(self, name: str = "main", kind: str = "main", nparams: int = 0):
        self.func = Func(name, kind, nparams, at(1, 1))
        self.block = self.func.new_block()

    # -- blocks
    def new_block(self) -> Block:
        return self.func.new_block()

    def at(self, block: Block) -> "FuncBuilder":
        self.block = block
        return self

    # -- values
    def op(self, op: Op, *args: Value, aux=None, span=None) -> Value:
        value = self.func.new_value(self.block, op, list(args), aux, span)
        self.block.instrs.append(value)
        return value

    def const(self, x) -> Value:
        return self.op(Op.Const, aux=x)

    def param(self, i: int) -> Value:
        return self.op(Op.Param, aux=i)

    def phi(self, block: Block, *args: Value) -> Value:
        """A phi at the head of block; args in block.preds order (may be filled later)."""
        value = self.func.new_value(block, Op.Phi, list(args), None, None)
        block.instrs.insert(len(block.phis()), value)
        return value

    def call(self, callee: Value, *args: Value, span=None) -> Value:
        return self.op(Op.Call, callee, *args, span=span)

    def print(self, *args: Value) -> Value:
        return self.op(Op.Print, *args)

    # -- terminators
    def jump(self, target: Block) -> None:
        self.block.set_kind("Plain", succs=[target])

    def branch(self, cond: Value, if_true: Block, if_false: Block) -> None:
        self.block.set_kind("If", controls=[cond], succs=[if_true, if_false])

    def ret(self, value: Value | None = None) -> None:
        self.block.set_kind("Return", controls=[value] if value is not None else [])

    def tail(self, callee: Value, *args: Value, span=None) -> None:
        self.block.set_kind("TailCall", controls=[callee, *args], span=span)

    def exit(self) -> None:
        self.block.set_kind("Exit")


def limits(**kw) -> Limits:
    return Limits(**kw)


def evaluate(func: Func, lim: Limits | None = None, nglobals: int = 4, out=None):
    """Run func at depth 0 and return (its return value, its output bytes)."""
    chunks: list[bytes] = []
    rt = Runtime(lim or Limits(), nglobals, 0, out or chunks.append)
    try:
        result = Machine(rt).execute(func)
    finally:
        rt.flush()
    return result, b"".join(chunks)


def value_of(func: Func, lim: Limits | None = None):
    return evaluate(func, lim)[0]


def module(main: Func, *, funcs=(), global_names=("arg",), probes=(), timers=(), trace_end=None) -> Module:
    all_funcs = [main, *funcs, *probes, *timers] + ([trace_end] if trace_end else [])
    return Module(
        path=PATH, source=b"", main=main, funcs=all_funcs, global_names=list(global_names),
        probes=[ProbeInfo("x:y", at(1, 1), None, None, f) for f in probes],
        timers=[TimerInfo("tick", 1_000_000, "tick-1ms", f) for f in timers],
        trace_end=trace_end,
    )


class Session:
    """A loaded run plus everything it wrote, each out() call kept apart."""

    def __init__(self, mod: Module, lim: Limits | None = None, args=(PATH,), start_time_ns: int = 0,
                 strict: bool = True):
        self.chunks: list[bytes] = []
        config = RunConfig(lim or Limits(), tuple(args), start_time_ns)
        self.run = InterpEngine(strict=strict).load(mod, config, self.chunks.append)

    @property
    def output(self) -> bytes:
        return b"".join(self.chunks)


def run_module(mod: Module, lim: Limits | None = None, **kw):
    """start() and finish(); returns (output, result)."""
    s = Session(mod, lim, **kw)
    s.run.start()
    result = s.run.finish()
    return s.output, result


class FakeEvent:
    """An EventContext for tests: event values by name, `args.NAME` fields,
    and stacks under `kernelstack` / `userstack`."""

    def __init__(self, time_ns, **values):
        self.time_ns = time_ns
        self.values = values

    def value(self, name):
        return self.values.get(name)

    def field(self, name):
        return self.values.get("args." + name)

    def stack(self, request):
        return self.values.get(request.part + "stack")
