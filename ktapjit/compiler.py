"""The compile pipeline: one list of steps from script text to machine code.

STEPS is the frontend steps (parse, resolve), the IR steps of
ir/pipeline.py and the native steps (lower to LLVM IR, optimise, codegen),
each a Step that says what it needs and makes; the whole list is checked at
import. compile_script runs it up to a step (`until`, by default the last
IR step: what the engines load), and every caller compiles through it: the
CLI, the benchmarks and the tests. Each step is timed (`timings`), can be
dumped after (`dump_after`: the AST, the IR, LLVM IR or assembly), and with
`verify` the IR is checked after every IR step.

User errors are collected in the unit's Diagnostics, with the source they
point into; the run stops after the step that found them and raises a
CompileError carrying that source.

The JIT's own path (jit/loader.py: a cache of linked images, then a load)
lowers through the same lower_module; these native steps serve `ktapjit
asm` and `--dump-after`. With `cached`, a run looks the script up in the
JIT's cache first (jit/script_cache.py, keyed by every input of the
compile): a hit is the module the steps made last time, with its native
code, and no step runs.

May import: ktapjit.diag, ktapjit.frontend, ktapjit.ir, ktapjit.semantics,
and ktapjit.jit (only inside the native steps: `ktapjit run --engine interp`
never loads llvmlite).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, TextIO

from ktapjit.diag import CompileError, Diagnostics
from ktapjit.ir.func import Module
from ktapjit.ir.pipeline import IR_GOALS, IR_STEPS, Step, check_steps, step
from ktapjit.semantics.limits import Limits

if TYPE_CHECKING:
    from ktapjit.frontend import ast
    from ktapjit.jit.codegen import Optimized
    from ktapjit.jit.lowered import Lowered


@dataclass
class Compilation:
    """One script on its way through the steps: the inputs, the options, and
    what each step has made so far."""

    path: str
    source: bytes
    limits: Limits = field(default_factory=Limits)
    optimize: bool = True
    verify: bool = False
    target: Optional[str] = None  # a jit.codegen.TARGETS name; None: this machine
    assembly: bool = False  # codegen makes assembly text, not an object
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    program: Optional[ast.Program] = None  # the AST, resolved in place
    module: Optional[Module] = None  # the IR
    lowered: Optional["Lowered"] = None  # LLVM IR text and the engine's tables
    optimized: Optional["Optimized"] = None  # an LLVM module after O2
    machine_code: bytes | str | None = None  # an ELF relocatable object, or assembly text
    timings: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds)


# --- frontend


def _parse(unit: Compilation) -> None:
    from ktapjit.frontend.parse import parse_program  # a cached module needs no front end

    try:
        unit.program = parse_program(unit.source, unit.path)
    except CompileError as exc:  # the parser stops at its first problem
        unit.diagnostics.add(exc.diagnostic)


def _resolve(unit: Compilation) -> None:
    from ktapjit.frontend.resolve import resolve_program

    resolve_program(unit.program, unit.diagnostics)


FRONTEND_STEPS = [
    step("parse", _parse, needs={"source"}, makes={"ast"}, stage="frontend",
         doc="the script's text to an AST with spans"),
    step("resolve", _resolve, needs={"ast"}, makes={"resolved"}, stage="frontend",
         doc="names bound to variables, builtins marked, placement checked"),
]


# --- native


def _target(unit: Compilation) -> tuple[str, str]:
    """(codegen target name, LLVM triple) to compile for."""
    from ktapjit.jit import codegen

    target = unit.target or codegen.host_target()
    return target, codegen.TARGETS.get(target, "")


def _lower(unit: Compilation) -> None:
    from ktapjit.jit.lower import lower_module

    unit.lowered = lower_module(unit.module, _target(unit)[1])


def _optimise(unit: Compilation) -> None:
    from ktapjit.jit import codegen

    unit.optimized = codegen.optimize(unit.lowered.llvm_ir, _target(unit)[0])


def _codegen(unit: Compilation) -> None:
    from ktapjit.jit import codegen

    # One or the other: LLVM's code generation rewrites the module it is
    # given, so a second emission from it would not be the same code.
    emit = codegen.emit_assembly if unit.assembly else codegen.emit_object
    unit.machine_code = emit(unit.optimized)


NATIVE_STEPS = [
    step("lower", _lower, needs={"ssa", "pruned", "types"}, makes={"llvm ir"}, stage="native",
         doc="the IR to LLVM IR; single-type values stay unboxed"),
    step("optimise", _optimise, needs={"llvm ir"}, makes={"optimised llvm ir"}, stage="native",
         doc="LLVM's verifier and its O2 pipeline, for the target machine"),
    step("codegen", _codegen, needs={"optimised llvm ir"}, makes={"machine code"}, stage="native",
         doc="an ELF object, or assembly text, for the target machine"),
]

STEPS = FRONTEND_STEPS + IR_STEPS + NATIVE_STEPS
STEP_NAMES = [s.name for s in STEPS]
IR_END = IR_STEPS[-1].name  # what the engines load

check_steps(STEPS, have={"source"}, goals=IR_GOALS | {"machine code"})


# --- dumps


def _show_ast(unit: Compilation) -> str:
    from ktapjit.frontend.printer import format_program

    return format_program(unit.program)


def _show_ir(unit: Compilation) -> str:
    from ktapjit.ir.printer import format_module

    return format_module(unit.module)


_SHOW = {
    "parse": _show_ast, "resolve": _show_ast,
    "lower": lambda unit: unit.lowered.llvm_ir,
    "optimise": lambda unit: str(unit.optimized.module),
    "codegen": lambda unit: unit.machine_code,
}
# The comment leader of each dump's language, for its `after STEP` header.
_COMMENT = {"lower": ";", "optimise": ";"}


def shown_after(unit: Compilation, name: str) -> str:
    """What `--dump-after NAME` prints, without its header: the AST, the IR,
    LLVM IR or assembly, as the step left it."""
    return _SHOW.get(name, _show_ir)(unit)


# --- the runner


def compile_script(source: bytes, path: str = "-e", *, limits: Optional[Limits] = None, optimize: bool = True,
                   verify: bool = False, target: Optional[str] = None, assembly: bool = False,
                   until: str = IR_END, dump_after: Optional[str] = None,
                   dump_to: Optional[TextIO] = None, cached: bool = False) -> Compilation:
    """Run the steps up to and including `until`. The IR (`.module`) is
    verified after every IR step when `verify`; `dump_after` writes a step's
    result, under an `after STEP` header, to `dump_to` (after codegen: its
    assembly). Raises CompileError with the first user error, ValueError for
    an unknown step name."""
    for name in (until, dump_after):
        if name is not None and name not in STEP_NAMES:
            raise ValueError(f"unknown step '{name}'")
    assembly = assembly or dump_after == "codegen"
    unit = Compilation(path, source, limits or Limits(), optimize, verify, target, assembly,
                       Diagnostics(source=source))
    key = None
    if cached and until == IR_END and dump_after is None and not verify and target is None:
        key = _cached_module(unit)
        if unit.module is not None:
            return unit
    for s in STEPS[:STEP_NAMES.index(until) + 1]:
        if s.optional and not optimize:
            continue
        _run_step(unit, s)
        if s.name == dump_after and dump_to is not None:
            comment = _COMMENT.get(s.name, "#")
            dump_to.write(f"{comment} after {s.name}\n{shown_after(unit, s.name)}\n")
    if key is not None:
        from ktapjit.jit import script_cache

        script_cache.made(key, unit.module)
    return unit


def _cached_module(unit: Compilation) -> Optional[str]:
    """Look `unit` up in the JIT's cache: on a hit, set its module. The key
    (None: nothing is cached)."""
    from ktapjit.jit import script_cache

    start = time.perf_counter()
    key = script_cache.script_key(unit.source, unit.path, unit.limits, unit.optimize)
    if key is not None:
        unit.module = script_cache.find(key)
        if unit.module is not None:
            unit.timings.append(("cache", time.perf_counter() - start))
    return key


def _run_step(unit: Compilation, s: Step) -> None:
    start = time.perf_counter()
    s.run(unit)
    unit.timings.append((s.name, time.perf_counter() - start))
    if unit.diagnostics:
        raise CompileError(unit.diagnostics.first(), unit.diagnostics.source)
    if unit.verify and s.stage == "ir":
        from ktapjit.ir.verify import verify_module  # `ktapjit run` does not need it

        verify_module(unit.module, after=s.name)


def format_timings(unit: Compilation) -> str:
    """One line a step, in milliseconds, and the total: `--time-steps`."""
    lines = [f"{name:<16}{seconds * 1e3:9.3f} ms" for name, seconds in unit.timings]
    lines.append(f"{'total':<16}{sum(s for _, s in unit.timings) * 1e3:9.3f} ms")
    return "\n".join(lines) + "\n"
