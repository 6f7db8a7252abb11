"""The BPF path's compile time, step by step, and its start-up beside the
other engines' (the live section's sub-tables; root only, like the rest of it).

*Compile* times, in-process and after one warm-up, what ``ktapjit run
--bpf`` does between reading the script and attaching: script to IR,
the placement analysis, reading the events' formats from tracefs (every
engine pays this when it binds the events; it varies most), lowering the kernel-placed probes to LLVM IR,
LLVM to a BPF object (llvmlite, triple bpfel), and creating the maps and
loading the programs (the kernel's verifier). Each repetition loads into
a fresh BpfSession and closes it, so nothing stays in the kernel.

*Start-up* is the wall time of ``ktapjit run --engine E -e PROGRAM --
true``: the whole command with a workload that makes no events, so it is
compiling, opening (and for bpf, loading and attaching), and tearing down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.procs import run_timed
from bench.stats import median

STEPS = ("script -> IR", "placement", "event formats (tracefs)", "lower to LLVM IR", "LLVM -> BPF object", "maps + verifier load")


@dataclass
class CompileSteps:
    """Milliseconds per step (a list of repetitions each), or why not."""

    programs: int = 0
    ms: dict = field(default_factory=lambda: {s: [] for s in STEPS})
    error: str = ""

    def as_json(self) -> dict:
        return {"programs": self.programs, "steps": list(STEPS),
                "ms": self.ms, "median_ms": {s: median(v) if v else None for s, v in self.ms.items()},
                "total_median_ms": sum(median(v) for v in self.ms.values()) if all(self.ms.values()) else None,
                "error": self.error}


def _tracepoint_events(module):
    """Every probe's tracepoints bound from tracefs, as ``ktapjit run`` binds them."""
    from ktapjit.bpf.kernel_plan import tracepoint_event
    from ktapjit.events.tracefs import read_format

    events = []
    for index, probe in enumerate(module.probes):
        for spec in probe.eventdef.split(","):
            system, event = spec.strip().split(":")
            events.append(tracepoint_event(index, read_format(system, event)))
    return events


def _one_compile(source: bytes, into: CompileSteps) -> None:
    from ktapjit.bpf.build import compile_ir
    from ktapjit.bpf.kernel_load import create_maps
    from ktapjit.bpf.loader import load_object
    from ktapjit.bpf.lower import lower_module
    from ktapjit.bpf.objects import BpfSession
    from ktapjit.bpf.placement import analyse_module
    from ktapjit.compiler import compile_script
    from ktapjit.semantics.limits import Limits

    limits = Limits()
    clock = time.perf_counter_ns
    marks = [clock()]
    module = compile_script(source, "-e", limits=limits).module
    marks.append(clock())
    analysis = analyse_module(module, limits)
    marks.append(clock())
    events = _tracepoint_events(module)
    marks.append(clock())
    plan = lower_module(module, analysis, limits, events)
    marks.append(clock())
    objects = [compile_ir(p.llvm_ir) for p in plan.programs]
    marks.append(clock())
    with BpfSession() as session:
        maps = create_maps(session, plan)
        for program, obj in zip(plan.programs, objects):
            load_object(session, obj, maps, program.prog_type)
        marks.append(clock())
    into.programs = len(plan.programs)
    for step, (a, b) in zip(STEPS, zip(marks, marks[1:])):
        into.ms[step].append((b - a) / 1e6)


def measure_compile(source: bytes, reps: int) -> CompileSteps:
    steps = CompileSteps()
    try:
        _one_compile(source, CompileSteps())  # warm-up: imports, llvmlite's targets
        for _ in range(max(reps, 1)):
            _one_compile(source, steps)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        steps.error = f"{type(exc).__name__}: {exc}"
    if steps.error == "" and steps.programs == 0:
        steps.error = "the placement put no probe in the kernel"
    return steps


def measure_startup(argv: list, runs: int, first_line: bytes) -> dict:
    """Wall seconds of `argv` (a whole ktapjit run), `runs` times; it must print `first_line` first."""
    walls, error = [], ""
    for _ in range(max(runs, 1)):
        result = run_timed(argv, timeout=300)
        if not result.ok or not result.stdout.startswith(first_line):
            error = f"status {result.status}: {result.stderr_line() or result.stdout[:80]!r}"
            break
        walls.append(result.wall_s)
    return {"wall_s": walls, "wall_median_s": median(walls) if walls else None, "error": error}
