"""`ktapjit run --engine compare` live, with default flags (no -q).

The JIT traces live while the stream is recorded; the interpreter replays the
recording. What is compared is what the script made (stdout, its errors, its
status); the session's own lines (the status line, events lost) are shown to
the user once, as a live run shows them, and never compared.
"""

from __future__ import annotations

import pytest

from tests.tracing import runcli
from tests.tracing.conftest import live_skip_reason, release, status_line
from tests.tracing.runcli import ktapjit

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state")]

COUNT = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"

# Each time is the stream's: the top level's is its start, trace_end's its last event.
TIMES = """var n = 0
print(gettimeofday_ns())
trace syscalls:sys_enter_getppid {
    if (n == 0) { print(gettimeofday_us()) }
    n += 1
}
trace_end { print(n, gettimeofday_ns(), num_cpus(), arch(), kernel_v()) }
"""

ERROR = 'var n = 0\ntrace syscalls:sys_enter_getppid { n += 1\n if (n == 3) { print(1 / 0) } }\ntrace_end { print(n) }'


@pytest.fixture(autouse=True)
def engine():
    """Replaces conftest's interp/jit parametrisation: these tests are about compare."""
    runcli.ENGINE = "compare"
    yield "compare"
    runcli.ENGINE = "interp"


def split_report(err: str) -> tuple[list[str], str]:
    """stderr's lines before the timing line, and the timing line (its ns/event vary)."""
    *lines, timing = err.splitlines()
    return lines, timing


N = 100


@pytest.mark.parametrize("script,stdout_lines,stderr_lines,status,events", [
    (COUNT, 1, ["compare: identical output (4 bytes, 0 stderr lines, status 0)"], 0, N),
    (TIMES, 3, ["compare: identical output ({bytes} bytes, 0 stderr lines, status 0)"], 0, N),
    # An error stops the trace at the third event: the error is the script's, so compared.
    (ERROR, 1, ["error: divide by zero at -e:3:24",
                "compare: identical output (2 bytes, 1 stderr lines, status 1)"], 1, 3),
], ids=["count", "times", "runtime-error"])
def test_live_compare_with_a_command(workload, script, stdout_lines, stderr_lines, status, events):
    """The status line once, then the script's errors, then the verdict."""
    got_status, out, err = ktapjit("--", str(workload), str(N), script=script)
    lines, timing = split_report(err)
    expected = [status_line(1)] + [line.format(bytes=len(out)) for line in stderr_lines]
    assert (got_status, lines) == (status, expected), err
    assert len(out.splitlines()) == stdout_lines
    assert timing.startswith(f"compare: {events} events; interp ") and timing.endswith(")"), timing


def test_live_compare_shows_the_status_line_while_tracing(workload, procs):
    """-p PID and Ctrl-C, as a user runs it: the status line comes when the
    events are enabled (a user starts the workload then), not at the end."""
    n = 2000
    work = procs.workload(workload, n)
    live = procs.ktapjit("-p", str(work.pid), "-e", COUNT)
    assert live.wait_tracing() == status_line(1)
    release(work)
    assert work.wait(timeout=30) == 0
    status, out, err = live.stop()
    lines, timing = split_report(err)
    assert (status, out) == (0, f"{n}\n"), err
    assert lines == [status_line(1), "compare: identical output (5 bytes, 0 stderr lines, status 0)"]
    assert timing.startswith(f"compare: {n} events; interp "), timing


def test_live_compare_reports_loss_once_and_does_not_compare_it(workload):
    """One ring page cannot keep up (tests/tracing/test_live.py): the live
    trial counts loss from the rings, the replay only from the recording's
    LOST records. The count is the session's, shown once; the outputs agree."""
    n = 100_000
    status, out, err = ktapjit("--buffer-pages", "1", "--", str(workload), str(n), script=COUNT)
    lines, _timing = split_report(err)
    assert status == 0, err
    assert lines[0] == status_line(1)
    lost, text = lines[1].split(" ", 1)
    assert text == ("event lost" if lost == "1" else "events lost") and int(lost) > 0
    assert lines[2:] == [f"compare: identical output ({len(out)} bytes, 0 stderr lines, status 0)"]
    assert n <= int(out) + int(lost) <= n + 1
