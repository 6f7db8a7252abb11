"""Start-up wall time and peak RSS of two commands, per engine: `ktapjit run
-e 'print("hi")'` (no events), and the replay `make run` shows
(`--replay examples/data/demo.data examples/syscount.kp`: 3,000 records, so
its time is start-up: reading, binding, loading, and the output).

*Cold* is the first run with empty ktapjit caches: a fresh
``XDG_CACHE_HOME`` and ``KTAPJIT_CACHE_DIR`` (no JIT runtime library or
compiled objects; the parser's tables ship as Python, and lark's cached
grammar is only loaded to diagnose a syntax error), as right after
installing. Python's bytecode and the OS page cache stay warm: dropping
them would need the whole machine's caches flushed. *Warm* is later runs
with those caches filled. Each cold sample gets its own fresh directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from bench.procs import run_timed
from bench.stats import median
from bench.workloads import EXAMPLES

PROGRAM = 'print("hi")'


@dataclass(frozen=True)
class Command:
    """One start-up command: `ktapjit run --engine E ARGV`, its output's
    first line, and issue 17's goal for its warm median on the JIT."""

    name: str
    argv: tuple[str, ...]
    text: str  # ARGV as the report shows it
    first_line: bytes
    goal_s: float


HELLO = Command("print", ("-e", PROGRAM), f"-e '{PROGRAM}'", b"hi\n", 0.100)
REPLAY = Command("replay", ("--replay", str(EXAMPLES / "data" / "demo.data"), str(EXAMPLES / "syscount.kp")),
                 "--replay examples/data/demo.data examples/syscount.kp",
                 b"1264 system calls, 40 different ones\n", 0.150)
COMMANDS = (HELLO, REPLAY)


@dataclass
class StartupTiming:
    engine: str
    cold_s: list
    warm_s: list
    max_rss_kib: int
    error: str = ""
    command: Command = HELLO

    def as_json(self) -> dict:
        return {"engine": self.engine, "command": self.command.name, "goal_s": self.command.goal_s,
                "cold_s": self.cold_s, "warm_s": self.warm_s,
                "cold_median_s": median(self.cold_s) if self.cold_s else None,
                "warm_median_s": median(self.warm_s) if self.warm_s else None,
                "max_rss_kib": self.max_rss_kib, "error": self.error}


def _env(cache: str) -> dict:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = cache
    env["KTAPJIT_CACHE_DIR"] = os.path.join(cache, "ktapjit")
    return env


def measure(ktapjit: list[str], engine: str, cold_runs: int, warm_runs: int,
            command: Command = HELLO) -> StartupTiming:
    """`cold_runs` first runs in fresh cache dirs; `warm_runs` runs after one of them."""
    argv = [*ktapjit, "run", "--engine", engine, *command.argv]
    timing = StartupTiming(engine, [], [], 0, command=command)
    cache = None
    for _ in range(max(cold_runs, 1)):
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
        cache = tempfile.mkdtemp(prefix="ktapjit-bench-cold-")
        result = run_timed(argv, timeout=300, env=_env(cache))
        if not _record(timing, result, timing.cold_s):
            break
    try:
        for _ in range(warm_runs if not timing.error else 0):
            if not _record(timing, run_timed(argv, timeout=300, env=_env(cache)), timing.warm_s):
                break
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return timing


def _record(timing: StartupTiming, result, into: list) -> bool:
    if not result.ok or not result.stdout.startswith(timing.command.first_line):
        timing.error = f"status {result.status}: {result.stderr_line()}"
        return False
    into.append(result.wall_s)
    timing.max_rss_kib = max(timing.max_rss_kib, result.max_rss_kib)
    return True
