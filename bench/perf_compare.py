"""End-to-end replay of a large recording: ktapjit against `perf script`.

One syscount recording (raw_syscalls:sys_enter, written in perf record's
round layout) is processed, start to exit, by

- ``ktapjit run --engine E --replay FILE examples/syscount.kp`` per engine
  the command line runs;
- ``perf script -i FILE``: perf decoding and printing every event (output to
  /dev/null), the tool users reach for first;
- ``perf script -i FILE -s bench/scripts/perf_syscount.py``: perf's embedded
  Python calling a handler per event that does syscount.kp's count.

The commands run in interleaved rounds (A B C, A B C, ...) so a noisy
neighbour slows them alike; the median wall time and the peak RSS are
reported. ktapjit's summary line must equal the perf handler's, or the
comparison is flagged. A missing perf, or a perf built without Python
scripting (``perf script -g python`` fails), is a skip with its reason.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bench.procs import run_timed
from bench.stats import median
from bench.workloads import SCRIPTS, workload

SCRIPT = workload("syscount")
PERF_HANDLER = SCRIPTS / "perf_syscount.py"


@dataclass
class Contender:
    name: str  # e.g. "ktapjit interp", "perf script"
    argv: list
    walls: list = field(default_factory=list)
    max_rss_kib: int = 0
    first_line: str = ""
    error: str = ""
    discard_stdout: bool = False

    def as_json(self) -> dict:
        return {"name": self.name, "argv": self.argv, "wall_s": self.walls,
                "wall_median_s": median(self.walls) if self.walls else None,
                "max_rss_kib": self.max_rss_kib, "first_line": self.first_line, "error": self.error}


def perf_path() -> Optional[str]:
    return shutil.which("perf")


def perf_python_skip_reason(perf: str, recording: Path) -> Optional[str]:
    """Why `perf script -s` with Python cannot run here, or None when it can."""
    with tempfile.TemporaryDirectory(prefix="ktapjit-bench-perfpy-") as tmp:
        proc = subprocess.run([perf, "script", "-i", str(recording), "-g", "python"], cwd=tmp,
                              capture_output=True, timeout=120)
        if proc.returncode != 0 or not (Path(tmp) / "perf-script.py").exists():
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            return f"perf lacks Python scripting (`perf script -g python`: {lines[-1] if lines else proc.returncode})"
    return None


def contenders(ktapjit: list[str], engines: list[str], recording: Path, perf: Optional[str],
               perf_python: bool) -> list[Contender]:
    out = [Contender(f"ktapjit {e}", [*ktapjit, "run", "-q", "--engine", e, "--replay", str(recording),
                                      str(SCRIPT.script)]) for e in engines]
    if perf:
        out.append(Contender("perf script", [perf, "script", "-i", str(recording)], discard_stdout=True))
        if perf_python:
            out.append(Contender("perf script -s (python)",
                                 [perf, "script", "-i", str(recording), "-s", str(PERF_HANDLER)]))
    return out


def run_rounds(people: list[Contender], rounds: int, timeout: float) -> None:
    """Interleaved rounds; a contender that fails once is not run again."""
    for _ in range(rounds):
        for c in people:
            if c.error:
                continue
            result = run_timed(c.argv, timeout=timeout, stdout_to_null=c.discard_stdout)
            if not result.ok:
                c.error = f"status {result.status}: {result.stderr_line()}"
                continue
            c.walls.append(result.wall_s)
            c.max_rss_kib = max(c.max_rss_kib, result.max_rss_kib)
            if not c.discard_stdout:
                c.first_line = result.stdout.split(b"\n", 1)[0].decode("utf-8", "replace")


def agreement(people: list[Contender]) -> Optional[bool]:
    """Whether every contender that prints the syscount line prints the same one."""
    lines = {c.first_line for c in people if c.first_line and not c.error}
    return None if not lines else len(lines) == 1
