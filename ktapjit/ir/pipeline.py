"""The pass pipeline, as data, and its runner.

Each step names a pass function `fn(func, ctx) -> changed`. The runner
verifies the IR after construction and after every step when asked (tests,
`--debug=verify`), times each step, and can dump the IR after a named step.
ORDER lists the orderings the pipeline relies on, each with its reason; it
is checked at import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

from ktapjit.frontend import ast
from ktapjit.ir.func import Module
from ktapjit.ir.passes.copyelim import copyelim
from ktapjit.ir.passes.deadcode import deadcode
from ktapjit.ir.passes.fold import fold
from ktapjit.ir.passes.typeinfer import typeinfer_module
from ktapjit.ir.ssa_build import build_module
from ktapjit.semantics.limits import Limits


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable
    required: bool = False
    doc: str = ""
    whole_module: bool = False  # fn(module, ctx) instead of fn(func, ctx) per function


PIPELINE = [
    Pass("early copyelim", copyelim, doc="trivial phis left by SSA construction"),
    Pass("fold", fold, doc="constants and branches on constants"),
    Pass("deadcode", deadcode, required=True, doc="unreachable blocks, unused values, RPO layout"),
    Pass("late copyelim", copyelim, doc="phis made trivial by removed edges"),
    Pass("typeinfer", typeinfer_module, required=True, whole_module=True,
         doc="the dynamic types each value may have (an analysis)"),
]

ORDER = [
    ("fold", "deadcode", "fold turns branches into jumps and leaves unreachable blocks behind"),
    ("deadcode", "late copyelim", "removing dead predecessors makes phis trivial"),
    ("late copyelim", "typeinfer", "types are inferred on the final IR; later rewrites would invalidate them"),
]


def _check_order() -> None:
    names = [p.name for p in PIPELINE]
    assert len(set(names)) == len(names), "pass names must be unique"
    for before, after, reason in ORDER:
        assert names.index(before) < names.index(after), f"{before} must run before {after}: {reason}"


_check_order()


@dataclass
class PassContext:
    limits: Limits = field(default_factory=Limits)
    verify: bool = False
    optimize: bool = True
    dump_after: Optional[str] = None
    dump_to: Optional[TextIO] = None
    timings: list[tuple[str, float]] = field(default_factory=list)


def compile_module(program: ast.Program, ctx: PassContext) -> Module:
    """Resolved AST to an optimised, verified Module."""
    start = time.perf_counter()
    module = build_module(program)
    ctx.timings.append(("build ssa", time.perf_counter() - start))
    _after_step(module, "build ssa", ctx)
    for step in PIPELINE:
        if not (ctx.optimize or step.required):
            continue
        start = time.perf_counter()
        if step.whole_module:
            step.fn(module, ctx)
        else:
            for func in module.funcs:
                step.fn(func, ctx)
        ctx.timings.append((step.name, time.perf_counter() - start))
        _after_step(module, step.name, ctx)
    return module


def _after_step(module: Module, name: str, ctx: PassContext) -> None:
    # The verifier and the printer are imported only when asked for: `ktapjit run` needs neither.
    if ctx.verify:
        from ktapjit.ir.verify import verify_module

        verify_module(module, after=name)
    if ctx.dump_after == name and ctx.dump_to is not None:
        from ktapjit.ir.printer import format_module

        ctx.dump_to.write(f"# after {name}\n{format_module(module)}\n")
