"""Live overhead: what tracing adds to each getppid() system call.

A tiny C program (bench/scripts/getppid_loop.c, built with gcc into a temp
dir) makes N getppid() calls and times the loop from inside, so start-up
and a tracer's set-up and tear-down are not counted. It runs

- untraced;
- under ``ktapjit run --engine E -e 'var n = 0 trace syscalls:sys_enter_getppid
  { n += 1 } trace_end { print(n) }' -- ./loop N`` per engine the command line
  runs (the count it prints is checked against N);
- under ``perf record -e syscalls:sys_enter_getppid -o TMP -- ./loop N``;
- under ``bpftrace -e 'tracepoint:syscalls:sys_enter_getppid /pid == cpid/
  { @n = count(); }' -c './loop N'`` (its @n is checked against N too), when
  bpftrace is installed (`make setup` installs Debian's package as root).
  The pid test is the one ktapjit's BPF program makes for `-- CMD`: both
  count the loop's calls only, whatever else runs on the machine.

in interleaved rounds; per-call overhead is the traced median ns/call minus
the untraced median. The loop makes over a million calls a second, so the
events each tracer lost (ktapjit's "N events lost" line) are those at that
rate: for probes in the kernel there is no ring to lose them from. Needs root, tracefs with the per-syscall tracepoints,
and gcc; otherwise the section is skipped with the reason. Every tracer is
a child in its own process group, killed on timeout; the tracers remove
what they enabled when they exit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bench.procs import run_timed
from bench.stats import median
from bench.workloads import SCRIPTS

LOOP_SOURCE = SCRIPTS / "getppid_loop.c"
# Engines that trace live events only (no --replay): measured here, not in the other sections.
LIVE_ONLY_ENGINES = ("bpf",)
TRACEPOINT = "syscalls:sys_enter_getppid"
# Passed with -e, as a user would type it; the file keeps it in one place.
KTAPJIT_PROGRAM = (SCRIPTS / "getppid_count.kp").read_text()
_LOOP_LINE = re.compile(rb"loop: (\d+) calls, ([0-9.]+) ns/call")
_LOST_LINE = re.compile(rb"([0-9,]+) events? lost")  # ktapjit reports lost records on stderr
BPFTRACE_PROGRAM = f"tracepoint:{TRACEPOINT} /pid == cpid/ {{ @n = count(); }}"
_BPFTRACE_COUNT = re.compile(rb"^@n: (\d+)$", re.M)  # bpftrace prints its maps at exit
_BPFTRACE_LOST = re.compile(rb"Lost (\d+) events")


def skip_reason() -> Optional[str]:
    """Why live tracing cannot be measured here, or None."""
    if os.geteuid() != 0:
        return "live tracing needs root"
    if shutil.which("gcc") is None:
        return "gcc is not installed (it builds the syscall loop)"
    for root in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (root / "events" / "syscalls" / "sys_enter_getppid").exists():
            return None
    return f"tracefs has no {TRACEPOINT} (not mounted, or no syscall tracepoints)"


def build_loop(directory: Path) -> Path:
    exe = directory / "getppid_loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(LOOP_SOURCE)], check=True, capture_output=True)
    return exe


@dataclass
class Mode:
    name: str  # "untraced", "ktapjit interp", "perf record", "bpftrace"
    argv: list  # the loop command is appended
    ns_per_call: list = field(default_factory=list)
    counted: list = field(default_factory=list)  # what the tracer reported, where it does
    lost: list = field(default_factory=list)  # records the tracer says it lost, per run
    wall_s: list = field(default_factory=list)
    max_rss_kib: int = 0
    error: str = ""

    def as_json(self, base: Optional[float]) -> dict:
        mid = median(self.ns_per_call) if self.ns_per_call else None
        return {"name": self.name, "ns_per_call": self.ns_per_call, "ns_per_call_median": mid,
                "events_per_s": 1e9 / mid if mid else None,
                "overhead_ns_per_call": (mid - base) if mid is not None and base is not None else None,
                "counted": self.counted, "lost": self.lost, "wall_s": self.wall_s, "max_rss_kib": self.max_rss_kib,
                "error": self.error}


def modes(ktapjit: list[str], engines: list[str], tmp: Path) -> tuple[list[Mode], list[dict]]:
    """The ways to run the loop, and the skipped ones with reasons."""
    out = [Mode("untraced", [])]
    skipped = []
    for e in engines:
        out.append(Mode(f"ktapjit {e}", [*ktapjit, "run", "-q", "--engine", e, "-e", KTAPJIT_PROGRAM, "--"]))
    perf = shutil.which("perf")
    if perf:
        out.append(Mode("perf record", [perf, "record", "-q", "-e", TRACEPOINT, "-o", str(tmp / "perf.data"), "--"]))
    else:
        skipped.append({"what": "perf record", "reason": "perf is not installed"})
    bpftrace = shutil.which("bpftrace")
    if bpftrace:
        out.append(Mode("bpftrace", [bpftrace, "-q", "-e", BPFTRACE_PROGRAM, "-c"]))
    else:
        skipped.append({"what": "bpftrace", "reason": "bpftrace is not installed (`make test-tools` installs "
                                                      "Debian's bpftrace as root)"})
    return out, skipped


def _loop_argv(mode: Mode, exe: Path, calls: int) -> list:
    if mode.name == "bpftrace":  # -c takes the command as one string
        return [*mode.argv, f"{exe} {calls}"]
    return [*mode.argv, str(exe), str(calls)]


def run_rounds(all_modes: list[Mode], exe: Path, calls: int, rounds: int, timeout: float) -> None:
    for _ in range(rounds):
        for mode in all_modes:
            if mode.error:
                continue
            result = run_timed(_loop_argv(mode, exe, calls), timeout=timeout)
            found = _LOOP_LINE.search(result.stdout)
            if not result.ok or found is None:
                mode.error = f"status {result.status}: {result.stderr_line() or 'no loop output'}"
                continue
            mode.ns_per_call.append(float(found.group(2)))
            mode.wall_s.append(result.wall_s)
            mode.max_rss_kib = max(mode.max_rss_kib, result.max_rss_kib)
            if mode.name.startswith("ktapjit"):
                # print(n) in trace_end: the last line that is a bare integer.
                counts = [ln for ln in result.stdout.decode().splitlines() if ln.strip().isdigit()]
                mode.counted.append(int(counts[-1]) if counts else None)
                lost = _LOST_LINE.search(result.stderr)
                mode.lost.append(int(lost.group(1).replace(b",", b"")) if lost else 0)
            elif mode.name == "bpftrace":
                count = _BPFTRACE_COUNT.search(result.stdout)
                mode.counted.append(int(count.group(1)) if count else None)
                lost = _BPFTRACE_LOST.search(result.stderr + result.stdout)
                mode.lost.append(int(lost.group(1)) if lost else 0)
