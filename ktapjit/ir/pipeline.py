"""The IR steps of the compile pipeline, as data, and the rule every step
list keeps.

A Step says what it needs and what it makes: facts about the compilation
("resolved", "ssa", "pruned", "types", ...). A step that rewrites the IR
also says which facts it breaks: fold turns branches into jumps and leaves
unreachable blocks behind, so it breaks "pruned", which deadcode makes again;
any rewrite breaks "types", so typeinfer comes after the last one.
check_steps walks a list in order, with and without its optional steps (the
optimisations -O0 skips), and fails at import when a step needs a fact no
earlier step made or left standing, or when the list ends without its goals.

The runner is ktapjit/compiler.py: it strings the frontend steps, these and
the native steps into one list. A step's `run(unit)` reads and updates the
compilation unit; an IR pass reads `unit.module` and takes `unit` as its
context (passes read `ctx.limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ktapjit.ir.passes.copyelim import copyelim
from ktapjit.ir.passes.deadcode import deadcode
from ktapjit.ir.passes.fold import fold
from ktapjit.ir.passes.typeinfer import typeinfer_module


@dataclass(frozen=True)
class Step:
    """One compile step, with the facts it needs and makes."""

    name: str
    run: Callable  # run(unit) -> None
    needs: frozenset[str]
    makes: frozenset[str]
    breaks: frozenset[str] = frozenset()
    optional: bool = False  # an optimisation: -O0 skips it
    stage: str = "ir"  # "frontend" | "ir" | "native": what exists after it, and what a dump shows
    doc: str = ""


def step(name: str, run: Callable, needs: Iterable[str] = (), makes: Iterable[str] = (),
         breaks: Iterable[str] = (), optional: bool = False, stage: str = "ir", doc: str = "") -> Step:
    return Step(name, run, frozenset(needs), frozenset(makes), frozenset(breaks), optional, stage, doc)


def check_steps(steps: list[Step], have: Iterable[str], goals: Iterable[str]) -> None:
    """Fail unless every step finds what it needs, with and without the optional
    steps, and the list ends with its goals (at -O0, those only optional steps make)."""
    names = [s.name for s in steps]
    assert len(set(names)) == len(names), f"step names must be unique: {names}"
    optional_only = set().union(*(s.makes for s in steps if s.optional)) - set().union(
        *(s.makes for s in steps if not s.optional))
    for optimize in (True, False):
        facts = set(have)
        for s in steps:
            if s.optional and not optimize:
                continue
            missing = s.needs - facts
            assert not missing, f"step '{s.name}' needs {sorted(missing)}: no earlier step makes it, or one breaks it"
            assert s.makes, f"step '{s.name}' makes nothing"
            facts = (facts - s.breaks) | s.makes
        wanted = set(goals) if optimize else set(goals) - optional_only
        assert wanted <= facts, f"the steps end without {sorted(wanted - facts)} (optimize={optimize})"


def per_function(fn: Callable) -> Callable:
    """A pass written per function, `fn(func, ctx)`, as a step over the module."""
    def run(unit) -> None:
        for func in unit.module.funcs:
            fn(func, unit)
    return run


def _build(unit) -> None:
    from ktapjit.ir.ssa_build import build_module  # and the AST: a module from the JIT's cache needs neither

    unit.module = build_module(unit.program)


def _typeinfer(unit) -> None:
    typeinfer_module(unit.module, unit)


IR_STEPS = [
    step("build ssa", _build, needs={"resolved"}, makes={"ssa"},
         doc="the resolved AST to SSA form: one Func per body"),
    step("early copyelim", per_function(copyelim), needs={"ssa"}, makes={"minimal phis"}, breaks={"types"},
         optional=True, doc="trivial phis left by SSA construction"),
    step("fold", per_function(fold), needs={"ssa"}, makes={"folded"},
         breaks={"pruned", "minimal phis", "types"}, optional=True,
         doc="constants and branches on constants; leaves unreachable blocks behind"),
    step("deadcode", per_function(deadcode), needs={"ssa"}, makes={"pruned"}, breaks={"minimal phis", "types"},
         doc="unreachable blocks, unused values, RPO layout; removed edges can make phis trivial"),
    step("late copyelim", per_function(copyelim), needs={"ssa"}, makes={"minimal phis"}, breaks={"types"},
         optional=True, doc="phis made trivial by removed edges"),
    step("typeinfer", _typeinfer, needs={"ssa"}, makes={"types"},
         doc="the dynamic types each value may have (an analysis: changes no op)"),
]

# What the engines rely on in the final IR: deadcode's layout, typeinfer's
# sets, and (when optimising) folded constants with no trivial phis.
IR_GOALS = frozenset({"ssa", "pruned", "types", "folded", "minimal phis"})

check_steps(IR_STEPS, have={"resolved"}, goals=IR_GOALS)
