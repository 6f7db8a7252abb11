"""Compile latency per example: script to IR, and IR to native code once the JIT exists.

*Script to IR* is what `ktapjit run` does before anything runs: parse
(frontend/lalr.py over tables generated from the lark grammar), resolve,
SSA construction and the pass pipeline. It is timed in-process after one
warm-up compile, so the one-off costs (imports, compiling the lexer's
regular expressions) are not charged to every script; the median of the
repetitions is reported.

*IR to native* is the JIT engine's ``load()`` of the compiled module:
lowering, LLVM optimisation and machine code, and loading it. The JIT keeps
compiled objects in an on-disk cache, so loads are timed inside a private
``KTAPJIT_CACHE_DIR`` (``JitSandbox``): its runtime library is built once,
untimed, and everything a load adds to the directory is removed before
each timed compile, which therefore never hits the cache. A second load
right after is timed too: the *cached* load a user's second run gets.

Per probe is script-to-IR plus IR-to-native over the script's probes and
timers (at least one), since DESIGN.md states the target per probe.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.engines import compile_source
from bench.stats import median


@dataclass
class CompileTiming:
    script: str
    probes: int  # probes + timers: the entry points native code needs
    to_ir_ms: float
    to_native_ms: Optional[float] = None  # None while no JIT runs here
    cached_load_ms: Optional[float] = None  # load() when the object cache has the script
    native_error: str = ""

    @property
    def per_probe_ms(self) -> float:
        return (self.to_ir_ms + (self.to_native_ms or 0.0)) / max(self.probes, 1)

    def as_json(self) -> dict:
        return {"script": self.script, "probes": self.probes, "to_ir_ms": self.to_ir_ms,
                "to_native_ms": self.to_native_ms, "cached_load_ms": self.cached_load_ms,
                "per_probe_ms": self.per_probe_ms, "native_error": self.native_error}


def _time_ir(source: bytes, path: str, reps: int):
    compile_source(source, path)  # warm-up: imports, the lexer's regular expressions
    samples, module = [], None
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        module = compile_source(source, path)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return median(samples), module


def _files(root: str) -> set:
    return {os.path.join(d, f) for d, _dirs, names in os.walk(root) for f in names}


class JitSandbox:
    """A private JIT cache directory for the duration of a `with` block."""

    def __init__(self, factory):
        self.factory = factory
        self.root = ""
        self.saved: Optional[str] = None
        self.keep: set = set()

    def __enter__(self) -> "JitSandbox":
        self.root = tempfile.mkdtemp(prefix="ktapjit-bench-jitcache-")
        self.saved = os.environ.get("KTAPJIT_CACHE_DIR")
        os.environ["KTAPJIT_CACHE_DIR"] = self.root
        self.load_ms(compile_source(b'print("warm-up")'))  # builds the runtime library, untimed
        self.keep = _files(self.root)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is None:
            os.environ.pop("KTAPJIT_CACHE_DIR", None)
        else:
            os.environ["KTAPJIT_CACHE_DIR"] = self.saved
        shutil.rmtree(self.root, ignore_errors=True)

    def forget_objects(self) -> None:
        """Remove whatever loads added since the runtime was built."""
        for path in _files(self.root) - self.keep:
            os.unlink(path)

    def load_ms(self, module) -> float:
        from ktapjit.run_api import Limits, RunConfig, monotonic_ns

        config = RunConfig(limits=Limits(), script_args=("-e",), start_time_ns=monotonic_ns())
        t0 = time.perf_counter_ns()
        self.factory().load(module, config, lambda data: None)
        return (time.perf_counter_ns() - t0) / 1e6


def _time_native(jit: JitSandbox, module, reps: int) -> tuple[float, float]:
    """(median ms of a compile with an empty object cache, median ms of a cached load)."""
    cold, cached = [], []
    for _ in range(reps):
        jit.forget_objects()
        cold.append(jit.load_ms(module))
        cached.append(jit.load_ms(module))
    return median(cold), median(cached)


def measure(script: Path, label: str, reps: int, jit: Optional[JitSandbox] = None) -> CompileTiming:
    source = script.read_bytes()
    to_ir, module = _time_ir(source, label, reps)
    timing = CompileTiming(label, len(module.probes) + len(module.timers), to_ir)
    if jit is not None:
        try:
            timing.to_native_ms, timing.cached_load_ms = _time_native(jit, module, reps)
        except Exception as exc:  # noqa: BLE001 - a script the JIT cannot compile yet is reported, not fatal
            timing.native_error = f"{type(exc).__name__}: {exc}"
    return timing
