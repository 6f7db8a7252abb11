"""Fixtures for live tracing tests: a C workload, tracked subprocesses, and a
check that every test leaves the machine's tracing state as it found it.

The workload is C, not Python, so the only syscalls it makes after its start
are the ones counted: ``work N`` makes N getppid and N getpid syscalls;
``work N wait`` first blocks until a byte arrives on stdin, so a tracer can
attach with ``-p PID`` before anything happens; ``work --nr`` prints the
syscall numbers of getppid and getpid (for filters on raw_syscalls' ``id``).
"""

from __future__ import annotations

import functools
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
from tests.cbuild import build_c
from tests.livecheck import live_skip_reason as tracefs_skip_reason
from tests.tracing import runcli

REPO = Path(__file__).resolve().parents[2]
TRACEFS = Path("/sys/kernel/tracing")


def status_line(n: int) -> str:
    """The line a live run prints on stderr once its n perf events are enabled."""
    return f"Tracing {n} event{'' if n == 1 else 's'}... Hit Ctrl-C to end."


WORKLOAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--nr") == 0) {
        printf("%d %d\n", (int)SYS_getppid, (int)SYS_getpid);
        return 0;
    }
    long n = argc > 1 ? atol(argv[1]) : 0;
    if (argc > 2 && strcmp(argv[2], "wait") == 0) {
        char c;
        if (read(0, &c, 1) != 1) return 2;  /* released by the test */
    }
    for (long i = 0; i < n; i++) {
        syscall(SYS_getppid);
        syscall(SYS_getpid);
    }
    return 0;
}
"""


# `burst N MS M`: N getppid syscalls, a sleep of MS ms, then M more: counts
# that are exact while the trace goes on.
BURST_C = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    long n = atol(argv[1]), ms = atol(argv[2]), m = atol(argv[3]);
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    usleep(ms * 1000);
    for (long i = 0; i < m; i++) syscall(SYS_getppid);
    return 0;
}
"""

# `spin`: getppid syscalls as fast as one CPU makes them, forever (a load);
# beat() is a function a uprobe can take.
SPIN_C = r"""
#include <unistd.h>
#include <sys/syscall.h>

__attribute__((noinline)) void beat(long i) { __asm__ volatile("" :: "r"(i)); }

int main(void) {
    for (long i = 0;; i++) {
        syscall(SYS_getppid);
        beat(i);
    }
}
"""


# --- may we trace live at all? -------------------------------------------------------------

def live_skip_reason() -> Optional[str]:
    """None when live tests can run, else the exact reason they cannot."""
    reason = tracefs_skip_reason("live tracing (perf_event_open on tracepoints and tracefs)",
                              "events/syscalls/sys_enter_getppid/id",
                              "this kernel has no syscalls:sys_enter_getppid tracepoint")
    if reason is not None:
        return reason
    try:
        from ktapjit.events.records.perf_abi import PerfError
        from ktapjit.events.records.perf_ring import PerfSession, tracepoint
        with PerfSession([tracepoint("syscalls", "sys_enter_getppid")], pid=os.getpid(),
                         pages=1, track_tasks=False):
            pass
    except (PerfError, OSError) as exc:
        return f"perf_event_open unavailable: {exc}"
    return None


@pytest.fixture(scope="session")
def workload(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "work", WORKLOAD_C, "-O2", purpose="the workload")


@pytest.fixture(scope="session")
def burst(tmp_path_factory) -> str:
    return str(build_c(tmp_path_factory, "burst", BURST_C, "-O2", purpose="the burst workload"))


@pytest.fixture(scope="session")
def spin(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "spin", SPIN_C, "-O2", purpose="the load")


@pytest.fixture(scope="session")
def syscall_nrs(workload) -> tuple[int, int]:
    """(SYS_getppid, SYS_getpid) on this architecture."""
    out = subprocess.run([str(workload), "--nr"], check=True, capture_output=True, text=True).stdout
    getppid, getpid = out.split()
    return int(getppid), int(getpid)


# --- the state every test must leave clean -------------------------------------------------

def perf_fds() -> list[int]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[perf_event]":
                found.append(int(name))
        except OSError:
            pass  # the fd listdir itself used, gone now
    return found


def bpf_fds() -> list[int]:
    """BPF programs and maps (and their links) this process holds."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("anon_inode:bpf"):
                found.append(int(name))
        except OSError:
            pass
    return found


def children() -> list[int]:
    """Processes (zombies included) whose parent is this test process."""
    me = os.getpid()
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        if int(stat.rpartition(")")[2].split()[1]) == me:
            kids.append(int(name))
    return kids


def set_event() -> str:
    return (TRACEFS / "set_event").read_text()


@pytest.fixture
def clean_tracing_state():
    """After the test, even a failed one: no enabled ftrace events, no perf fd,
    BPF program or map, or perf mapping left in this process, no child
    process, default signal handlers. Whatever is found is cleaned up first, then reported as an error."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    problems = []
    events = set_event()
    if events.strip():
        (TRACEFS / "set_event").write_text("")  # restore before reporting
        problems.append(f"set_event not empty: {events.split()}")
    fds = perf_fds()
    if fds:
        for fd in fds:
            os.close(fd)
        problems.append(f"{len(fds)} perf_event fds left open in the test process")
    bpf = bpf_fds()
    if bpf:
        for fd in bpf:
            os.close(fd)
        problems.append(f"{len(bpf)} BPF program or map fds left open in the test process")
    if "perf_event" in Path("/proc/self/maps").read_text():
        problems.append("a perf ring is still mapped in the test process")
    kids = children()
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    if kids:
        problems.append(f"stray child processes: {kids}")
    for sig, handler in handlers.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
            problems.append(f"signal handler for {signal.Signals(sig).name} not restored")
    if problems:
        pytest.fail("tracing state not clean after the test: " + "; ".join(problems))


@pytest.fixture(autouse=True, params=["interp", "jit", "bpf"])
def engine(request):
    """Every event test, under each engine. The BPF engine traces live only:
    a test it cannot apply to says why with `@pytest.mark.not_bpf(reason)`."""
    if request.param == "bpf":
        refused = request.node.get_closest_marker("not_bpf")
        if refused is not None:
            pytest.skip(f"not under --engine bpf: {refused.args[0]}")
        reason = bpf_skip_reason()
        if reason is not None:
            pytest.skip(reason)
    runcli.ENGINE = request.param
    yield request.param
    runcli.ENGINE = "interp"


@functools.lru_cache(maxsize=None)
def bpf_skip_reason() -> Optional[str]:
    from tests.bpf.conftest import bpf_skip_reason as reason

    return reason()


class Procs:
    """Subprocesses a test starts; whatever is still running at teardown is killed."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def workload(self, workload: Path, n: int, wait: bool = True) -> subprocess.Popen:
        argv = [str(workload), str(n)] + (["wait"] if wait else [])
        return self.popen(argv, stdin=subprocess.PIPE)

    def ktapjit(self, *args: str) -> "LiveKtapjit":
        proc = self.popen([sys.executable, "-m", "ktapjit", "run", *runcli.engine_args(args), *args], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return LiveKtapjit(proc)

    def popen(self, argv, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, **kw)
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                pass


@pytest.fixture
def procs(clean_tracing_state):
    """Requests clean_tracing_state, so processes are killed before it checks."""
    tracked = Procs()
    yield tracked
    tracked.cleanup()


def release(proc: subprocess.Popen) -> None:
    """Let a `work N wait` start its syscalls."""
    proc.stdin.write(b"x")
    proc.stdin.close()


class LiveKtapjit:
    """`python -m ktapjit run ...` as a subprocess, as a user runs it."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.stderr_head = b""

    def wait_tracing(self, timeout: float = 20.0) -> str:
        """Block until the status line is on stderr (events are enabled then)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while b"\n" not in self.stderr_head:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no status line within {timeout}s: {self.stderr_head!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"ktapjit ended before tracing: {self.stderr_head!r}, "
                                     f"status {self.proc.wait()}")
            self.stderr_head += chunk
        return self.stderr_head.decode().splitlines()[0]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode("latin-1"), (self.stderr_head + err).decode("latin-1")
