"""ktap's library names on live events: `kdebug.tracepoint` is a probe on
the named tracepoint in whichever subsystem has it, run under each engine."""

from __future__ import annotations

import pytest

from tests.tracing.conftest import live_skip_reason, status_line
from tests.tracing.runcli import ktapjit

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state")]

KDEBUG_COUNT = """var n = 0
kdebug.tracepoint("sys_enter_getppid", function () { n += 1 })
trace_end { print(n) }
"""


def test_kdebug_tracepoint_counts_like_a_trace_block(workload):
    status, out, err = ktapjit("--", str(workload), "500", script=KDEBUG_COUNT)
    assert (status, out, err) == (0, "500\n", status_line(1) + "\n")


def test_kdebug_tracepoint_names_the_event_it_runs_for(workload):
    status, out, err = ktapjit("-q", "--", str(workload), "3", script=(
        'kdebug.tracepoint("sys_enter_getppid", function () { printf("%s %s\\n", execname, probename) })'))
    assert (status, out, err) == (0, "work sys_enter_getppid\n" * 3, "")


def test_kdebug_tracepoint_of_no_event_is_a_located_error(workload):
    status, out, err = ktapjit("--", str(workload), "1", script='kdebug.tracepoint("no_such_tp", function () { })')
    assert status == 2 and out == ""
    assert err.startswith("-e:1:19: error: unknown event '*:no_such_tp'"), err
