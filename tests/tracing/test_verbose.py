"""`ktapjit run -v`: every 2 s a stderr line with the events/s read from the
rings and the events lost, and a summary line at the end of the trace.

The workload (`burst N MS M`) makes N getppid syscalls, sleeps MS
milliseconds, then makes M more: with MS past the 2 s interval, the first
rates line falls in the pause, so its total is exactly N, and the summary's
total is exactly N + M, the count the script itself makes.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.tracing.conftest import live_skip_reason, status_line
from tests.tracing.runcli import ktapjit

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state")]


COUNT = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"
RATES = re.compile(r"^ktapjit: ([\d,]+) events/s, ([\d,]+) lost \(last (\d+\.\d) s\); "
                   r"total ([\d,]+) events?, ([\d,]+) lost$")
SUMMARY = re.compile(r"^ktapjit: ([\d,]+) events? in (\d+\.\d) s \(([\d,]+) events/s\), ([\d,]+) lost"
                     r"(?:, ([\d,]+) read but not processed)?$")


def number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.not_bpf("-v counts the samples user space reads, and a kernel probe's are never read; "
                     "under bpf -v first says where each probe runs (tests/bpf/test_engine_live.py)")
def test_rates_lines_and_a_summary_that_match_the_scripts_count(burst):
    first, second = 20000, 30000
    status, out, err = ktapjit("-v", "--", burst, str(first), "3000", str(second), script=COUNT)
    assert (status, out) == (0, f"{first + second}\n"), err
    lines = err.splitlines()
    assert lines[0] == status_line(1)
    rates = [RATES.match(line) for line in lines[1:-1]]
    assert rates and all(rates), err
    # The first line comes 2 s in, while the workload sleeps: exactly the first burst.
    rate, lost, span, total, total_lost = rates[0].groups()
    assert (number(total), number(lost), number(total_lost)) == (first, 0, 0), err
    assert 2.0 <= float(span) < 2.6
    assert abs(number(rate) * float(span) - first) <= 0.05 * first, err
    totals = [number(m.group(4)) for m in rates]
    assert totals == sorted(totals) and totals[-1] <= first + second
    summary = SUMMARY.match(lines[-1])
    assert summary, err
    assert (number(summary.group(1)), number(summary.group(4))) == (first + second, 0)
    assert float(summary.group(2)) >= 3.0


def test_without_v_no_rates_line(burst):
    status, out, err = ktapjit("--", burst, "2000", "0", "0", script=COUNT)
    assert (status, out, err) == (0, "2000\n", status_line(1) + "\n")


@pytest.mark.not_bpf("-v counts the samples user space reads, and a kernel probe's are never read; "
                     "under bpf -v first says where each probe runs (tests/bpf/test_engine_live.py)")
def test_exit_ends_the_lines_with_the_summary(burst):
    script = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1\n if (n == 500) { exit() } }\n" \
             "trace_end { print(n) }"
    status, out, err = ktapjit("-v", "--", burst, "1000", "0", "0", script=script)
    assert (status, out) == (0, "500\n"), err
    lines = err.splitlines()
    assert lines[0] == status_line(1) and len(lines) == 2, err
    # Read: at least what ran; nothing lost.
    summary = SUMMARY.match(lines[1])
    assert summary and number(summary.group(1)) >= 500 and summary.group(4) == "0", err


@pytest.mark.not_bpf("-v counts the samples user space reads, and a kernel probe's are never read; "
                     "under bpf -v first says where each probe runs (tests/bpf/test_engine_live.py)")
def test_ctrl_c_ends_the_lines_with_the_summary(procs, burst):
    # The command sleeps 10 s after its burst: Ctrl-C ends the trace (and stops it).
    live = procs.ktapjit("-v", "-e", COUNT, "--", burst, "1000", "10000", "0")
    assert live.wait_tracing() == status_line(1)
    time.sleep(2.5)  # one rates line
    t0 = time.monotonic()
    status, out, err = live.stop(signal.SIGINT)
    assert time.monotonic() - t0 < 2.0
    lines = err.splitlines()
    assert (status, out, len(lines)) == (0, "1000\n", 3), err
    assert RATES.match(lines[1]) and number(RATES.match(lines[1]).group(4)) == 1000, err
    assert SUMMARY.match(lines[2]) and number(SUMMARY.match(lines[2]).group(1)) == 1000, err


@pytest.mark.not_bpf("-v counts the samples user space reads, and a kernel probe's are never read; "
                     "under bpf -v first says where each probe runs (tests/bpf/test_engine_live.py)")
@pytest.mark.slow
def test_a_stop_under_load_sums_up_what_ran_and_what_did_not(procs, burst):
    """A probe far slower than the syscall: a backlog builds, Ctrl-C cuts it.
    The rates lines still come every 2 s, and every sample read either ran
    (the script's count) or was left (the summary's 'read but not
    processed', also the usual stderr line)."""
    script = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1\n for (i = 1, 3000) { } }\ntrace_end { print(n) }"
    live = procs.ktapjit("-v", "-e", script, "--", burst, "100000000", "0", "0")
    assert live.wait_tracing() == status_line(1)
    time.sleep(3)
    status, out, err = live.stop(signal.SIGINT, timeout=60)
    summaries = [m for m in map(SUMMARY.match, err.splitlines()) if m]
    assert status == 0 and len(summaries) == 1, err
    # On time while one long round runs (the interpreter takes seconds over one drain pass).
    assert RATES.match(err.splitlines()[1]), err
    summary = summaries[0]
    left = number(summary.group(5) or "0")
    assert number(summary.group(1)) == int(out) + left, (out, err)
    assert left == 0 or f"\n{left} events read but not processed (stopped)\n" in err, err


@pytest.mark.parametrize("args, message", [
    (["-q", "-v"], "-v (rates on stderr) and -q (nothing on stderr) contradict each other: give one"),
    (["-v", "--replay", "x.data"],
     "-v reports a live trace's rates: a replay has none (its progress bar shows on a terminal)"),
])
def test_v_refused_with_q_or_replay(args, message):
    status, out, err = ktapjit(*args, script=COUNT)
    assert (status, out, err) == (2, "", f"ktapjit: {message}\n")
