"""The paths a user takes first with `--bpf`, with default flags: a glob over
many tracepoints, stopped with Ctrl-C while events flow. The output is
right, trace_end's comes at once, the exit is clean, and nothing of the
run stays in the kernel. (`trace *:*`, the libc uprobe glob and Ctrl-C under
load also run under bpf in tests/tracing, through its engine parametrisation.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.bpf.conftest import needs_bpf, run_cli as ktapjit
from tests.tracing.conftest import clean_tracing_state, status_line  # noqa: F401 (a fixture)

from ktapjit.bpf.loaded import loaded_sessions

pytestmark = [needs_bpf, pytest.mark.live]

ROOT = Path(__file__).resolve().parents[2]
GENEROUS = 15.0  # seconds, on a loaded 2-CPU VM


def test_a_glob_with_ftraces_own_events_runs_in_user_space_and_says_why(clean_tracing_state):  # noqa: F811
    """`f*:*` takes in ftrace:print, one of ftrace's own events, which perf
    refuses a BPF program: the attach failed, status 1. Now the script runs
    in user space, and -v says why."""
    script = "var n = 0\ntrace f*:* { n += 1 }\ntrace_end { print(n >= 0) }"
    status, out, err = ktapjit("--bpf", "-v", "-e", script, "--", "/bin/true")
    assert (status, out) == (0, "true\n"), err
    assert "ktapjit: bpf: every probe runs in user space: ftrace:print is one of ftrace's own events, " \
           "which take no BPF program" in err.splitlines(), err


def _read_until(stream, pattern: re.Pattern, timeout: float) -> tuple[bytes, float]:
    """What `stream` gives until `pattern` matches it, and when it did."""
    import select

    data, deadline = b"", time.monotonic() + timeout
    while not pattern.search(data):
        left = deadline - time.monotonic()
        assert left > 0 and select.select([stream], [], [], left)[0], data
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, data
        data += chunk
    return data, time.monotonic()


@pytest.mark.slow
def test_ctrl_c_of_a_large_kernel_glob_under_load(clean_tracing_state):  # noqa: F811
    """Every syscall entry, counted in the kernel while a shell loop makes
    syscalls; Ctrl-C: trace_end prints at once (the gate is off, so the
    tables are final before the kernel releases the events), then the
    events are released, and ktapjit exits 0 leaving no program behind."""
    script = "var t = {}\ntrace syscalls:sys_enter_* { t[probename] += 1 }\n" \
             "trace_end { print(t[\"sys_enter_write\"] > 0, len(t) > 3) }"
    load = subprocess.Popen(["sh", "-c", "while :; do echo x > /dev/null; ls / > /dev/null; done"])
    run = subprocess.Popen([sys.executable, "-m", "ktapjit", "run", "--bpf", "-e", script], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        head, _ = _read_until(run.stderr, re.compile(rb"^Tracing (\d+) events\.\.\. Hit Ctrl-C to end\.\n", re.M),
                              timeout=180)
        events = int(re.search(rb"^Tracing (\d+) events", head, re.M).group(1))
        assert [s for s in loaded_sessions() if s.carried.pid == run.pid], "no program in the kernel"
        time.sleep(2)
        run.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        out, came = _read_until(run.stdout, re.compile(rb"\n"), timeout=GENEROUS)
        assert out == b"true\ttrue\n" and came - signalled < GENEROUS
        rest, err = run.communicate(timeout=600)
    finally:
        load.kill()
        load.wait()
        if run.poll() is None:
            run.kill()
            run.wait()
    assert (run.returncode, rest) == (0, b"")
    lines = (head + err).decode().splitlines()
    assert lines[-2:] == [status_line(events), f"Detaching from {events} events..."], lines
    assert [s for s in loaded_sessions() if s.carried.pid == run.pid] == []
