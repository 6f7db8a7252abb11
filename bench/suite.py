"""The benchmark sections, each producing a JSON-able dict for bench/report.py.

A section measures only what really runs here: engines that are not
available, and tools that are missing (perf, perf's Python scripting,
bpftrace, root for live tracing), become entries in ``ctx.skipped`` with
the reason, never numbers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from bench import streams
from bench.engines import EngineInfo, compile_source
from bench.profiles import Profile
from bench.stats import median
from bench.workloads import EXAMPLES, WORKLOADS, Workload

SECTIONS = ("handlers", "baseline", "replay", "compile", "startup", "live")


@dataclass
class Context:
    profile: Profile
    in_process: list[EngineInfo]  # engines this process loads
    cli: list[EngineInfo]  # engines `ktapjit run --engine` runs
    ktapjit: list[str]  # the command
    skipped: list = field(default_factory=list)  # {"section", "what", "reason"}
    interp_output: dict = field(default_factory=dict)  # workload -> the interpreter's output bytes
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)

    def skip(self, section: str, what: str, reason: str) -> None:
        self.skipped.append({"section": section, "what": what, "reason": reason})
        self.log(f"[{section}] skipped {what}: {reason}")

    def workloads(self) -> list[Workload]:
        names = self.profile.workloads
        return [w for w in WORKLOADS if names is None or w.name in names]

    def cli_available(self) -> list[str]:
        return [e.name for e in self.cli if e.available]


# -- handlers -------------------------------------------------------------------------------


def run_handlers(ctx: Context) -> dict:
    from bench import handlers

    p = ctx.profile
    rows, decode = [], {}
    for w in ctx.workloads():
        path = streams.recording(w, p.handler_events, layout="merged")
        chunks = streams.load_chunks(path)
        module = compile_source(w.script.read_bytes(), w.script_label)
        binding = handlers.bind_recording(path, module)
        decode[w.name] = handlers.decode_floor(binding, chunks)
        for engine in ctx.in_process:
            if not engine.available:
                rows.append({"workload": w.name, "engine": engine.name, "available": False, "reason": engine.reason})
                continue
            ctx.log(f"[handlers] {w.name} on {engine.name}")
            timing = handlers.measure(engine.name, engine.factory, w, module, binding, chunks,
                                      p.handler_min_s, p.handler_max_reps)
            row = {**timing.as_json(), "available": True}
            if engine.name == "interp":
                ctx.interp_output[w.name] = timing.output
            elif w.name in ctx.interp_output:  # the engines must agree byte for byte
                row["agrees_with_interp"] = timing.output == ctx.interp_output[w.name]
            rows.append(row)
    for engine in ctx.in_process:
        if not engine.available:
            ctx.skip("handlers", f"engine {engine.name}", engine.reason)
    return {"events": p.handler_events, "chunk_bytes": streams.CHUNK_BYTES, "rows": rows,
            "decode_ns_per_event": decode,
            "workloads": {w.name: {"script": w.script_label, "what": w.what} for w in ctx.workloads()}}


# -- numba baseline -------------------------------------------------------------------------


def run_baseline(ctx: Context) -> dict:
    try:
        from bench import baseline_numba
        from bench.columns import decode_columns
    except ImportError as exc:
        ctx.skip("baseline", "numba baseline", f"numba/numpy not importable ({exc})")
        return {"rows": []}
    rows = []
    for w in ctx.workloads():
        if w.baseline is None:
            rows.append({"workload": w.name, "available": False,
                         "reason": "no native kernel: the script's work is printf formatting"})
            continue
        ctx.log(f"[baseline] {w.name}")
        path = streams.recording(w, ctx.profile.handler_events, layout="merged")
        columns = decode_columns(path, w.columns)
        timing = baseline_numba.measure(w.baseline, w.name, columns, ctx.profile.baseline_min_s)
        output = ctx.interp_output.get(w.name)
        row = {**timing.as_json(), "available": True, "agrees_with_interp": _agrees(timing, output),
               "raw": _raw_baseline(ctx, w, path, output)}
        rows.append(row)
    return {"events": ctx.profile.handler_events, "rows": rows}


def _agrees(timing, output) -> Optional[bool]:
    # A kernel must compute what the script computes: its summary line must
    # be a line of the interpreter's output on the same stream.
    return None if output is None else timing.expected_line in output.decode("utf-8", "replace").splitlines()


def _raw_baseline(ctx: Context, w, path, output) -> dict:
    """The same question answered by numba walking the recording's bytes."""
    from bench import baseline_raw

    if w.baseline not in baseline_raw.KERNELS:
        return {"available": False, "reason": "no raw-record kernel for this workload"}
    try:
        timing = baseline_raw.measure(w.baseline, w.name, path, ctx.profile.baseline_min_s)
    except baseline_raw.Unavailable as exc:
        return {"available": False, "reason": str(exc)}
    return {**timing.as_json(), "available": True, "agrees_with_interp": _agrees(timing, output)}


# -- end-to-end replay ----------------------------------------------------------------------


def run_replay(ctx: Context) -> dict:
    from bench import perf_compare

    p = ctx.profile
    path = streams.recording(perf_compare.SCRIPT, p.replay_events, layout="rounds")
    for engine in ctx.cli:
        if not engine.available:
            ctx.skip("replay", f"ktapjit --engine {engine.name}", engine.reason)
    perf = perf_compare.perf_path()
    perf_python = False
    if perf is None:
        ctx.skip("replay", "perf script", "perf is not installed")
    else:
        reason = perf_compare.perf_python_skip_reason(perf, path)
        perf_python = reason is None
        if reason:
            ctx.skip("replay", "perf script -s (python)", reason)
    people = perf_compare.contenders(ctx.ktapjit, ctx.cli_available(), path, perf, perf_python)
    ctx.log(f"[replay] {p.replay_events} events: {', '.join(c.name for c in people)}")
    perf_compare.run_rounds(people, p.replay_rounds, timeout=1800)
    return {"events": p.replay_events, "recording_bytes": path.stat().st_size, "script": str(perf_compare.SCRIPT.script_label),
            "rows": [c.as_json() for c in people], "outputs_agree": perf_compare.agreement(people)}


# -- compile latency ------------------------------------------------------------------------


def run_compile(ctx: Context) -> dict:
    from contextlib import nullcontext

    from bench import compile_latency

    jit = next((e for e in ctx.in_process if e.name == "jit"), None)
    native = jit is not None and jit.available
    if not native:
        ctx.skip("compile", "IR to native code", jit.reason if jit else "no JIT engine")
    rows = []
    with compile_latency.JitSandbox(jit.factory) if native else nullcontext() as sandbox:
        for script in sorted(EXAMPLES.glob("*.kp")):
            if ctx.profile.examples is not None and script.name not in ctx.profile.examples:
                continue
            label = str(script.relative_to(EXAMPLES.parent))
            ctx.log(f"[compile] {label}")
            rows.append(compile_latency.measure(script, label, ctx.profile.compile_reps, sandbox).as_json())
    return {"rows": rows, "native_available": native}


# -- start-up -------------------------------------------------------------------------------


def run_startup(ctx: Context) -> dict:
    from bench import startup

    rows = []
    for command in startup.COMMANDS:
        for engine in ctx.cli:
            if not engine.available:
                rows.append({"engine": engine.name, "command": command.name, "available": False,
                             "reason": engine.reason})
                ctx.skip("startup", f"ktapjit --engine {engine.name} ({command.name})", engine.reason)
                continue
            ctx.log(f"[startup] {command.name} {engine.name}")
            timing = startup.measure(ctx.ktapjit, engine.name, ctx.profile.startup_cold, ctx.profile.startup_warm,
                                     command)
            rows.append({**timing.as_json(), "available": True})
    return {"program": startup.PROGRAM, "commands": {c.name: c.text for c in startup.COMMANDS},
            "rows": rows}


# -- live overhead --------------------------------------------------------------------------


def run_live(ctx: Context) -> dict:
    from bench import live

    reason = live.skip_reason()
    if reason:
        ctx.skip("live", "live overhead", reason)
        return {"rows": [], "skipped": reason}
    for engine in ctx.cli:
        if not engine.available:
            ctx.skip("live", f"ktapjit --engine {engine.name}", engine.reason)
    p = ctx.profile
    with tempfile.TemporaryDirectory(prefix="ktapjit-bench-live-") as tmp:
        exe = live.build_loop(Path(tmp))
        modes, skipped = live.modes(ctx.ktapjit, [*ctx.cli_available(), *live.LIVE_ONLY_ENGINES], Path(tmp))
        for s in skipped:
            ctx.skip("live", s["what"], s["reason"])
        ctx.log(f"[live] {p.live_calls} getppid calls: {', '.join(m.name for m in modes)}")
        live.run_rounds(modes, exe, p.live_calls, p.live_rounds, timeout=1800)
    base = modes[0]  # untraced
    base_ns = median(base.ns_per_call) if base.ns_per_call else None
    return {"calls": p.live_calls, "rounds": p.live_rounds, "tracepoint": live.TRACEPOINT,
            "rows": [m.as_json(base_ns) for m in modes], **_bpf_path(ctx)}


def _bpf_path(ctx: Context) -> dict:
    """The BPF path's compile steps, and every engine's start-up on the live program."""
    from bench import bpf_path, live

    ctx.log("[live] BPF compile steps")
    steps = bpf_path.measure_compile(live.KTAPJIT_PROGRAM.encode(), ctx.profile.compile_reps)
    startup = []
    for engine in [*ctx.cli_available(), *live.LIVE_ONLY_ENGINES]:
        ctx.log(f"[live] start-up {engine}")
        argv = [*ctx.ktapjit, "run", "--engine", engine, "-e", live.KTAPJIT_PROGRAM, "--", "true"]
        startup.append({"engine": engine, **bpf_path.measure_startup(argv, ctx.profile.startup_warm, b"0\n")})
    return {"bpf_compile": steps.as_json(), "startup": startup}


RUNNERS = {"handlers": run_handlers, "baseline": run_baseline, "replay": run_replay,
           "compile": run_compile, "startup": run_startup, "live": run_live}


def run_sections(ctx: Context, names: list[str]) -> dict:
    """Run the named sections in SECTIONS order; a section that crashes is
    recorded with its error (and makes the command fail), the others still run."""
    import traceback

    results = {}
    for name in SECTIONS:
        if name not in names:
            continue
        t0 = time.perf_counter()
        try:
            results[name] = RUNNERS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - reported in the table and the exit status
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            ctx.log(traceback.format_exc())
        results[name]["seconds"] = round(time.perf_counter() - t0, 2)
    return results
