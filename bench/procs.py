"""Timed child processes: wall time, peak RSS, output, and no leftovers.

Peak RSS is the child's ``ru_maxrss`` from ``wait4`` (the per-child form of
``resource.getrusage(RUSAGE_CHILDREN)``). Linux carries the parent's
high-water RSS into a child across exec, so a child forked straight from
this (large, numba-loaded) process would report at least our own size.
Each command is therefore started by a tiny launcher (``python -S``),
which spawns it, waits for it with ``wait4`` and reports its wall time and
peak RSS: the figures are then the command's own, with the launcher's few
MiB as a floor (``rss_floor_kib`` measures it). Timing inside the launcher
also keeps the launcher's own start-up out of the wall time.

Every child runs in its own session (process group), so a timeout or an
interrupted benchmark kills the launcher and the command by that group's
id, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

_LAUNCHER = r"""
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(report, "w") as f:
    f.write("%d %r\n" % (usage.ru_maxrss, wall))
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


@dataclass
class ProcResult:
    argv: list[str]
    status: Optional[int]  # exit status (128+N after signal N); None after a timeout
    wall_s: float
    max_rss_kib: int  # ru_maxrss (KiB on Linux)
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.status == 0

    def stderr_line(self) -> str:
        """The last non-empty stderr line, for error reports."""
        lines = [ln for ln in self.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def run_timed(argv: Sequence[str], timeout: float = 600.0, env: Optional[dict] = None,
              cwd: Optional[str] = None, stdout_to_null: bool = False) -> ProcResult:
    """Run `argv` to completion through the launcher; stdout/stderr go to temp
    files (pipes could fill and stall the child while we block in wait)."""
    with tempfile.TemporaryDirectory(prefix="ktapjit-bench-proc-") as tmp, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        report = Path(tmp) / "report"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv],
                                stdout=subprocess.DEVNULL if stdout_to_null else out, stderr=err,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
        status = _wait(proc, timeout)
        wall, rss = time.perf_counter() - t0, 0
        if status is not None and report.exists():
            rss_text, wall_text = report.read_text().split()
            rss, wall = int(rss_text), float(wall_text)
        out.seek(0)
        err.seek(0)
        return ProcResult(list(argv), status, wall, rss, out.read(), err.read())


def _wait(proc: subprocess.Popen, timeout: float) -> Optional[int]:
    """Wait for the launcher; a watchdog thread kills its group at the timeout."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        _kill_group(proc.pid)

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        status = proc.wait()
    except BaseException:  # Ctrl-C while benchmarking: leave no child behind
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    return None if fired.is_set() else status


def rss_floor_kib() -> int:
    """The peak RSS the launcher itself imposes on what it reports (via `true`)."""
    return run_timed(["true"], timeout=60).max_rss_kib
