"""ktap's library names on live events, run under each engine:
`kdebug.tracepoint` is a probe on the named tracepoint in whichever
subsystem has it; ipof("NAME") is the address /proc/kallsyms shows."""

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


def _kallsyms() -> list[tuple[int, str]]:
    """(address, name) of every line of /proc/kallsyms, in its order."""
    with open("/proc/kallsyms") as f:
        return [(int(p[0], 16), p[2]) for p in (line.split() for line in f) if len(p) >= 3]


def test_ipof_is_the_address_proc_kallsyms_shows():
    """A name listed once, and one listed several times: its first line."""
    symbols = _kallsyms()
    if not any(address for address, _ in symbols):
        pytest.skip("/proc/kallsyms shows every address as 0 (kptr_restrict)")
    addresses: dict[str, list[int]] = {}
    for address, name in symbols:
        addresses.setdefault(name, []).append(address)
    duplicate = next(name for name, listed in addresses.items() if len(set(listed)) > 1)
    status, out, err = ktapjit("-q", script=(
        f'printf("%x %x %s\\n", ipof("vfs_read"), ipof("{duplicate}"), ipof("ktapjit_no_such_symbol"))'))
    first = {name: listed[0] for name, listed in addresses.items()}
    assert (status, out, err) == (0, f"{first['vfs_read']:x} {first[duplicate]:x} nil\n", "")


SLEEP_TIMER = """trace timer:hrtimer_start {
    if (execname == "sleep" && args.function == ipof("hrtimer_wakeup")) {
        printf("%s arms hrtimer_wakeup at %x\\n", execname, args.function)
        exit()
    }
}
"""


def test_ipof_equals_a_pointer_field_live_and_replayed(tmp_path):
    """sleep(1) arms a timer whose callback is hrtimer_wakeup: the event's
    `void *function` (an int64) equals ipof's address; a replay of the
    recording, made on this kernel, prints the same."""
    wakeup = next((address for address, name in _kallsyms() if name == "hrtimer_wakeup"), 0)
    if not wakeup:
        pytest.skip("/proc/kallsyms has no hrtimer_wakeup address")
    data = tmp_path / "sleep.data"
    status, live, err = ktapjit("-q", "--record", str(data), "--", "sleep", "0.01", script=SLEEP_TIMER)
    assert (status, live, err) == (0, f"sleep arms hrtimer_wakeup at {wakeup:x}\n", "")
    assert ktapjit("--replay", str(data), script=SLEEP_TIMER) == (0, live, "")
