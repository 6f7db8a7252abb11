"""Which engines exist here, in-process and on the command line.

An engine is benchmarked only when it really runs: the interpreter always
does; the JIT when ``ktapjit.jit.engine.JitEngine`` imports and runs a
trivial script (in-process), and when ``ktapjit run --engine jit -e
'print("hi")'`` prints ``hi`` with status 0 (command line). Until then it is
reported as not available, with the reason the attempt gave, and no number
is produced for it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ENGINE_NAMES = ("interp", "jit")
NOT_AVAILABLE = "n/a (engine not available)"

_PROBE_PROGRAM = b'var n = 41\nn += 1\nprint("hi", n)\n'


@dataclass
class EngineInfo:
    name: str
    available: bool
    reason: str = ""  # why not, when not available
    factory: Optional[Callable[[], object]] = None  # in-process: () -> Engine

    def as_json(self) -> dict:
        return {"name": self.name, "available": self.available, "reason": self.reason}


def compile_source(source: bytes, path: str = "-e"):
    """Source -> optimised Module, as `ktapjit run` compiles it."""
    from ktapjit.compiler import compile_script

    return compile_script(source, path).module


def _interp_factory():
    from ktapjit.interp.engine import InterpEngine

    return InterpEngine()


def _check_runs(factory: Callable[[], object]) -> Optional[str]:
    """None when the engine runs a trivial script and prints what the
    interpreter prints; else why not."""
    from ktapjit.run_api import Limits, RunConfig, monotonic_ns

    module = compile_source(_PROBE_PROGRAM)
    out = io.BytesIO()
    config = RunConfig(limits=Limits(), script_args=("-e",), start_time_ns=monotonic_ns())
    try:
        run = factory().load(module, config, out.write)
        run.start()
        result = run.finish()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available", with its reason
        return f"{type(exc).__name__}: {exc}"
    if result.status != 0 or out.getvalue() != b"hi\t42\n":
        return f"trivial script gave status {result.status}, output {out.getvalue()!r}"
    return None


def in_process_engines() -> list[EngineInfo]:
    """The engines this process can load, interp first."""
    engines = [EngineInfo("interp", True, factory=_interp_factory)]
    try:
        from ktapjit.jit.engine import JitEngine
    except ImportError as exc:
        engines.append(EngineInfo("jit", False, f"ktapjit.jit.engine.JitEngine does not import ({exc})"))
        return engines
    reason = _check_runs(JitEngine)
    engines.append(EngineInfo("jit", reason is None, reason or "", JitEngine if reason is None else None))
    return engines


def ktapjit_command() -> list[str]:
    """The installed `ktapjit` command of this interpreter's environment."""
    beside = Path(sys.executable).with_name("ktapjit")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ktapjit")
    return [found] if found else [sys.executable, "-m", "ktapjit"]


def cli_engines(timeout: float = 120.0) -> list[EngineInfo]:
    """The engines `ktapjit run --engine NAME` runs, checked by running them."""
    engines = []
    for name in ENGINE_NAMES:
        try:
            proc = subprocess.run([*ktapjit_command(), "run", "--engine", name, "-e", 'print("hi")'],
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            engines.append(EngineInfo(name, False, f"`ktapjit run --engine {name}` timed out"))
            continue
        if proc.returncode == 0 and proc.stdout == b"hi\n":
            engines.append(EngineInfo(name, True))
        else:
            why = proc.stderr.decode(errors="replace").strip().splitlines()
            engines.append(EngineInfo(name, False, f"status {proc.returncode}: {why[0] if why else 'no message'}"))
    return engines
