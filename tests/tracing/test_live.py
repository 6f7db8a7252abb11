"""Live tracing: `ktapjit run SCRIPT -- CMD`, `-p PID`, signals, exit(),
filters, --record, loss.

Each test traces a workload it starts itself (conftest: `work N [wait]`, C, N
getppid and N getpid syscalls), so the expected counts are known exactly and
nothing may be lost. The `clean_tracing_state` fixture checks after every test,
failed ones included, that set_event is empty, that no perf fd, perf mapping or
child process is left in the test process, and that signal handlers are back.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests.tracing.conftest import TRACEFS, live_skip_reason, release, status_line
from tests.tracing.runcli import ktapjit

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state")]
needs_perf = pytest.mark.skipif(shutil.which("perf") is None, reason="perf (Debian linux-perf) is not installed")

COUNT_BOTH = """var t = {}
trace syscalls:sys_enter_getppid, syscalls:sys_enter_getpid { t[probename] += 1 }
trace_end { print(t["sys_enter_getppid"], t["sys_enter_getpid"]) }
"""


def tracefs_matches(glob: str) -> list[str]:
    system, event = glob.split(":")
    return sorted(f"{s.name}:{e.name}" for s in (TRACEFS / "events").iterdir() if s.is_dir()
                  and fnmatch.fnmatchcase(s.name, system)
                  for e in s.iterdir() if (e / "id").exists() and fnmatch.fnmatchcase(e.name, event))


def perf_script_lines(path) -> list[str]:
    done = subprocess.run(["perf", "script", "-i", str(path)], capture_output=True, text=True,
                          errors="replace", timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


# --- -- CMD ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 1000])
def test_exact_counts_for_a_command(workload, n):
    status, out, err = ktapjit("--", str(workload), str(n), script=COUNT_BOTH)
    assert (status, out, err) == (0, f"{n}\t{n}\n", status_line(2) + "\n")


def test_only_the_command_is_traced_and_named(workload):
    """Event values of a -- CMD run: one pid, tid == pid, execname from exec."""
    status, out, err = ktapjit("-q", "--", str(workload), "300", script=(
        "var t = {}\ntrace syscalls:sys_enter_getppid { t[execname .. \" \" .. pid .. \" \" .. tid] += 1 }\n"
        "trace_end { for (k, v in pairs(t)) { print(k, v) } }"))
    assert status == 0 and err == ""
    (line,) = out.splitlines()
    key, count = line.split("\t")
    comm, pid, tid = key.split()
    assert (comm, count, pid) == ("work", "300", tid)


# --- -p PID and signals -----------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_attach_to_pid_then_signal_runs_trace_end(workload, procs, sig):
    n = 2000
    work = procs.workload(workload, n)
    live = procs.ktapjit("-p", str(work.pid), "-e", COUNT_BOTH)
    assert live.wait_tracing() == status_line(2)
    release(work)
    assert work.wait(timeout=30) == 0
    status, out, err = live.stop(sig)
    assert (status, out, err) == (0, f"{n}\t{n}\n", status_line(2) + "\n")


def test_attach_sees_only_that_pid(workload, procs):
    """Two identical workloads run at once; -p traces exactly one of them."""
    n = 500
    traced, other = procs.workload(workload, n), procs.workload(workload, 3 * n)
    live = procs.ktapjit("-p", str(traced.pid), "-e",
                         "var t = {}\ntrace syscalls:sys_enter_getppid { t[pid] += 1 }\n"
                         "trace_end { for (k, v in pairs(t)) { print(k, v) } }")
    live.wait_tracing()
    release(other)
    release(traced)
    assert traced.wait(timeout=30) == 0 and other.wait(timeout=30) == 0
    status, out, err = live.stop(signal.SIGINT)
    assert (status, out) == (0, f"{traced.pid}\t{n}\n"), err


def test_signal_while_command_runs_ends_it_and_runs_trace_end(procs):
    """SIGINT before CMD ends: trace_end runs, and CMD is not left behind."""
    t0 = time.monotonic()
    live = procs.ktapjit("-e", "var who = 0\ntrace syscalls:sys_enter_clock_nanosleep { who = pid }\n"
                         "trace_end { print(who) }", "--", "sleep", "60")
    live.wait_tracing()
    time.sleep(0.5)  # let sleep(1) reach its clock_nanosleep
    status, out, err = live.stop(signal.SIGINT)
    assert status == 0 and err == status_line(1) + "\n"
    who = int(out)
    assert who > 0 and not os.path.exists(f"/proc/{who}")
    assert time.monotonic() - t0 < 20


def test_signal_ends_a_command_that_ignores_sigterm(procs):
    """SIGINT while CMD runs and ignores SIGTERM: CMD gets SIGKILL after 2 s,
    the user is told, trace_end runs, and CMD is not left behind."""
    live = procs.ktapjit("-e", "var who = 0\ntrace syscalls:sys_enter_clock_nanosleep { who = pid }\n"
                         "trace_end { print(who) }", "--", "sh", "-c", "trap '' TERM; exec sleep 60")
    live.wait_tracing()
    time.sleep(0.5)  # let sleep(1) reach its clock_nanosleep
    status, out, err = live.stop(signal.SIGINT)
    assert status == 0 and err == status_line(1) + "\nktapjit: 'sh' did not end within 2 s of SIGTERM: killed\n"
    who = int(out)
    assert who > 0 and not os.path.exists(f"/proc/{who}")


# --- exit() ----------------------------------------------------------------------------------

def test_exit_in_probe_stops_tracing_and_runs_trace_end(workload):
    """The command would run for many seconds; exit() at the 10th event ends the
    trace at once, runs trace_end, and the command is not left behind."""
    t0 = time.monotonic()
    status, out, err = ktapjit("-q", "--", str(workload), "100000000", script=(
        "var n = 0\ntrace syscalls:sys_enter_getppid {\n n += 1\n if (n == 10) { exit() }\n print(n)\n}\n"
        'trace_end { print("end", n) }'))
    assert (status, out, err) == (0, "".join(f"{i}\n" for i in range(1, 10)) + "end\t10\n", "")
    assert time.monotonic() - t0 < 10


def test_timers_alone_tick_on_a_quiet_system(tmp_path):
    """No probes: the clock event keeps stream time moving, so tick-N fires,
    and the recording replays the same ticks."""
    script = ("var n = 0\ntick-20ms { n += 1; if (n == 5) { exit() } }\n"
              "trace_end { print(n, gettimeofday_ns() > 0) }")
    data = tmp_path / "ticks.data"
    status, out, err = ktapjit("-q", "--record", str(data), script=script)
    assert (status, out, err) == (0, "5\ttrue\n", "")
    assert ktapjit("--replay", str(data), script=script) == (0, out, "")


def test_exit_at_top_level_traces_nothing(workload, tmp_path):
    """exit() before any event: trace_end runs, no event is opened, CMD never starts."""
    marker = tmp_path / "ran"
    status, out, err = ktapjit("--", "touch", str(marker), script=(
        'trace syscalls:sys_enter_getppid { print("event") }\nexit()\nprint("after")\n'
        'trace_end { print("end") }'))
    assert (status, out, err) == (0, "end\n", "")
    assert not marker.exists()


# --- status line -----------------------------------------------------------------------------

@pytest.mark.parametrize("events,line", [
    ("syscalls:sys_enter_getppid", "Tracing 1 event... Hit Ctrl-C to end."),
    ("syscalls:sys_enter_getppid, syscalls:sys_enter_getpid", "Tracing 2 events... Hit Ctrl-C to end."),
])
def test_status_line_wording(workload, events, line):
    status, out, err = ktapjit("--", str(workload), "10", script=f"trace {events} {{ }}")
    assert (status, out, err) == (0, "", line + "\n")


@pytest.mark.parametrize("quiet", [False, True], ids=["status", "quiet"])
def test_status_line_counts_resolved_events_and_q_silences_it(workload, quiet):
    glob = "syscalls:sys_enter_getp*"
    matched = tracefs_matches(glob)
    assert "syscalls:sys_enter_getppid" in matched and "syscalls:sys_enter_getpid" in matched
    args = ["-q"] if quiet else []
    status, out, err = ktapjit(*args, "--", str(workload), "10", script=f"trace {glob} {{ }}")
    assert status == 0 and out == ""
    assert err == ("" if quiet else status_line(len(matched)) + "\n")


# --- event definitions -------------------------------------------------------------------------

def test_glob_and_comma_list_resolve_against_tracefs(workload):
    n = 700
    status, out, err = ktapjit("-q", "--", str(workload), str(n), script=(
        "var t = {}\n"
        "trace syscalls:sys_enter_getp*, sysc?lls:sys_exit_getpp[i]d { t[probename] += 1 }\n"
        "trace_end { for (k, v in pairs(t)) { print(k, v) } }"))
    assert status == 0 and err == ""
    counts = dict(line.split("\t") for line in out.splitlines())
    # Of the six sys_enter_getp* events, the workload makes only getppid and getpid.
    assert counts == {"sys_enter_getppid": str(n), "sys_enter_getpid": str(n), "sys_exit_getppid": str(n)}


@pytest.mark.parametrize("filters", [("", ""), ("/common_pid == 1/", "/common_pid > 1/"),
                                     ("/common_pid > 1/", "/common_pid > 0/")], ids=["none", "one", "both"])
def test_one_tracepoint_in_two_probes_runs_both_in_declaration_order(workload, tmp_path, filters):
    """One hit is one sample, running each probe after its own filter, in
    declaration order; the replay of its recording prints the same."""
    fa, fb = filters
    script = (f'trace syscalls:sys_enter_getppid {fa} {{ print("a") }}\n'
              f'trace syscalls:sys_enter_getp?id {fb} {{ print("b", probename) }}')
    data = tmp_path / "two.data"
    status, out, err = ktapjit("--record", str(data), "--", str(workload), "3", script=script)
    # getp?id is getppid and getpgid: two tracepoints are opened, not three.
    assert (status, err) == (0, status_line(2) + "\n")
    a = "" if fa == "/common_pid == 1/" else "a\n"
    assert out == (a + "b\tsys_enter_getppid\n") * 3
    assert ktapjit("--replay", str(data), script=script) == (0, out, "")


def test_unknown_event_is_status_2_with_suggestion_and_touches_nothing(workload, tmp_path):
    marker = tmp_path / "ran"
    status, out, err = ktapjit("--", "touch", str(marker), script=(
        'print("top")\ntrace syscalls:sys_enter_getppidd { }\ntrace_end { print("end") }'))
    assert status == 2 and out == ""
    assert err.startswith("-e:2:7: error: unknown event 'syscalls:sys_enter_getppidd'; did you mean "
                          "syscalls:sys_enter_getppid"), err
    assert "Tracing" not in err and not marker.exists()


def test_unknown_glob_is_status_2(workload):
    status, out, err = ktapjit("--", str(workload), "1", script="trace nosuchsys:* { }")
    assert (status, out) == (2, "") and "unknown event 'nosuchsys:*'" in err


# --- events the kernel refuses -------------------------------------------------------------------
#
# irq_vectors:irq_work_exit may not be sampled, even by root (sampling it would
# raise the irq_work it traces: the kernel answers EPERM); perf record fails
# on it too. ftrace's own entries (ftrace:bprint...) have no id: no glob
# matches them.

REFUSED = "irq_vectors:irq_work_exit"
EPERM_AS_ROOT = ("the kernel refuses it to perf even for root (EPERM: the event may not be sampled, "
                 "or a security policy such as lockdown forbids it)")
needs_refused = pytest.mark.skipif(
    not (TRACEFS / "events/irq_vectors/irq_work_exit/id").exists() or os.geteuid() != 0,
    reason=f"needs root and {REFUSED} (x86), which the kernel refuses to sample")


@needs_refused
def test_a_glob_skips_events_the_kernel_refuses_and_says_which_and_why(workload):
    matched = tracefs_matches("irq_vectors:*")
    assert REFUSED in matched
    status, out, err = ktapjit("--", str(workload), "1", script='trace irq_vectors:* { }\ntrace_end { print("end") }')
    assert (status, out) == (0, "end\n")
    assert err == (f"ktapjit: skipped 1 event a glob matched ({REFUSED}): {EPERM_AS_ROOT}\n"
                   + status_line(len(matched) - 1) + "\n")


@needs_refused
def test_an_explicit_event_the_kernel_refuses_fails_saying_why(workload):
    status, out, err = ktapjit("--", str(workload), "1", script=f'trace {REFUSED} {{ }}\ntrace_end {{ print("end") }}')
    assert (status, out, err) == (1, "end\n", f"ktapjit: cannot open {REFUSED}: {EPERM_AS_ROOT}\n")


@needs_refused
def test_a_glob_of_which_every_event_is_refused_is_an_error(workload):
    assert tracefs_matches("irq_vectors:irq_work_ex*") == [REFUSED]
    status, out, err = ktapjit("--", str(workload), "1", script="trace irq_vectors:irq_work_ex* { }")
    assert (status, out, err) == (
        1, "", f"ktapjit: 'irq_vectors:irq_work_ex*' traces nothing: the kernel refused its event: {EPERM_AS_ROOT}\n")


def test_ftrace_internal_entries_are_no_events(workload):
    """ftrace:bprint has a format but no id: perf cannot open it, no glob matches it."""
    if not (TRACEFS / "events/ftrace/bprint/format").exists():
        pytest.skip("this kernel has no ftrace:bprint entry")
    status, out, err = ktapjit("--", str(workload), "1", script="trace *:bprint { }")
    assert (status, out) == (2, "") and "unknown event '*:bprint'" in err


@pytest.mark.slow
def test_everything_glob_counts_events_for_a_second():
    """`trace *:*` opens every tracepoint perf can open, skips and reports the
    ones the kernel refuses, leaves out ktapjit's own dynamic events, and counts.
    Slow: closing costs the kernel an RCU grace period per tracepoint (about
    40 ms on the test VM, over 2000 tracepoints; perf stat pays the same)."""
    # Ticks count from the run's start, before the seconds of attaching: the
    # first ones may come due before any event is in, so wait for a count.
    status, out, err = ktapjit(script="var n = 0\ntrace *:* { n += 1 }\ntick-1s { if (n > 0) { print(n > 0); exit() } }")
    assert (status, out) == (0, "true\n"), err
    everything = [name for name in tracefs_matches("*:*") if not name.startswith("ktapjit_")]
    skipped = [line for line in err.splitlines() if line.startswith("ktapjit: skipped ")]
    counted = [int(m.group(1)) for m in re.finditer(r"ktapjit: skipped (\d+) event", err)]
    tracing = re.search(r"^Tracing (\d+) events\.\.\. Hit Ctrl-C to end\.$", err, re.M)
    # The status line counts the tick's clock event too.
    assert tracing and int(tracing.group(1)) + sum(counted) == len(everything) + 1, err
    if (TRACEFS / "events/irq_vectors/irq_work_exit/id").exists():
        assert any(REFUSED in line for line in skipped), err


# --- filters: the kernel's selection and ktapjit's agree ---------------------------------------

FILTERS = {
    "pid_and_id": "common_pid == {pid} && id == {getppid}",
    "id_set": "common_pid == {pid} && (id == {getpid} || id == 999999)",
}


@needs_perf
@pytest.mark.parametrize("which", sorted(FILTERS))
def test_filter_live_equals_filter_on_recordings(workload, syscall_nrs, procs, tmp_path, which):
    """One run traces system-wide with a filter, so the kernel selects (its
    recording holds only what passed); another records the same pid unfiltered.
    Replaying either file with the filter, the first checked by the kernel and
    the second by ktapjit, gives exactly the live output."""
    n = 400
    getppid, getpid = syscall_nrs
    work = procs.workload(workload, n)
    flt = FILTERS[which].format(pid=work.pid, getppid=getppid, getpid=getpid)
    script = f"trace raw_syscalls:sys_enter /{flt}/ {{ print(tid, args.id, arg0) }}"
    kernel_data, all_data = tmp_path / "filtered.data", tmp_path / "all.data"
    filtered = procs.ktapjit("--record", str(kernel_data), "-e", script)
    unfiltered = procs.ktapjit("--record", str(all_data), "-p", str(work.pid), "-e",
                               "trace raw_syscalls:sys_enter { print(tid, args.id) }")
    filtered.wait_tracing()
    unfiltered.wait_tracing()
    release(work)
    assert work.wait(timeout=30) == 0
    status, live_out, err = filtered.stop(signal.SIGINT)
    assert (status, err) == (0, status_line(1) + "\n")
    status, all_out, err = unfiltered.stop(signal.SIGINT)
    assert status == 0, err

    wanted = getppid if which == "pid_and_id" else getpid
    assert live_out == f"{work.pid}\t{wanted}\t{wanted}\n" * n
    assert len(all_out.splitlines()) > len(live_out.splitlines())  # the filter did drop events
    assert len([x for x in perf_script_lines(kernel_data) if "raw_syscalls:sys_enter" in x]) == n

    for recording in (kernel_data, all_data):
        status, replayed, err = ktapjit("--replay", str(recording), script=script)
        assert (status, err) == (0, "")
        assert replayed == live_out, recording.name


def test_string_test_on_a_pointer_is_refused_before_tracing(tmp_path):
    """The kernel can compare the user string a char * points to, a recording
    holds only the pointer: live and replay would keep other events, so the
    filter is a compile error, with nothing attached and nothing run."""
    marker = tmp_path / "ran"
    status, out, err = ktapjit("--", "touch", str(marker), script=(
        'trace syscalls:sys_enter_openat /flags > 0 && filename == "/etc/passwd"/ { print(1) }'))
    assert (status, out) == (2, "")
    assert err.startswith("-e:1:47: error: filter on syscalls:sys_enter_openat: 'filename' is a "
                          "pointer (const char *): the kernel would compare"), err
    assert "Tracing" not in err and not marker.exists()


def test_filter_on_common_pid_with_command(workload):
    """-- CMD and a filter naming a pid that is not the command's: nothing passes."""
    status, out, err = ktapjit("-q", "--", str(workload), "100", script=(
        "var n = 0\ntrace syscalls:sys_enter_getppid /common_pid == 1/ { n += 1 }\n"
        "trace_end { print(n) }"))
    assert (status, out, err) == (0, "0\n", "")


# --- --record then --replay ----------------------------------------------------------------------

EVERYTHING = r"""var n = 0
var ticks = 0
trace syscalls:sys_enter_getp*, syscalls:sys_exit_getppid {
    n += 1
    printf("%d %s %d %d %d %s %s %d\n", n, execname, pid, tid, cpu, probename, argstr, gettimeofday_ns())
}
tick-1ms { ticks += 1 }
trace_end { print(n, ticks, gettimeofday_ns()) }
"""


@needs_perf
def test_record_then_replay_prints_the_same_bytes(workload, tmp_path):
    n = 1500
    data = tmp_path / "live.data"
    status, live_out, err = ktapjit("-q", "--record", str(data), "--", str(workload), str(n), script=EVERYTHING)
    assert (status, err) == (0, "")
    assert live_out.splitlines()[-1].split("\t")[0] == str(3 * n)
    status, replay_out, err = ktapjit("--replay", str(data), script=EVERYTHING)
    assert (status, err) == (0, "")
    assert replay_out.encode("latin-1") == live_out.encode("latin-1")
    # The timer adds the clock event's samples (ktapjit:clock) to the recording.
    lines = [x for x in perf_script_lines(data) if "syscalls:" in x]
    assert len(lines) == 3 * n
    assert sum("syscalls:sys_enter_getppid:" in x for x in lines) == n
    assert sum("syscalls:sys_exit_getppid:" in x for x in lines) == n


def test_record_to_an_unwritable_path_is_one_clear_line(workload, tmp_path):
    """Checked before anything runs; no fd (pipe or perf) is left open in ktapjit."""
    before = sorted(os.listdir("/proc/self/fd"))
    path = tmp_path / "no" / "such" / "dir" / "x.data"
    status, out, err = ktapjit("--record", str(path), "--", str(workload), "10", script=(
        'print("top")\ntrace syscalls:sys_enter_getppid { }\ntrace_end { print("end") }'))
    assert (status, out) == (2, "")
    assert err == f"ktapjit: cannot write recording '{path}': {path.parent} is not a writable directory\n"
    assert sorted(os.listdir("/proc/self/fd")) == before


# --- loss ----------------------------------------------------------------------------------------

def test_burst_loses_nothing_at_the_default_buffer(workload):
    """200k getppid (and 200k getpid) as fast as the CPU goes, while the
    interpreter runs a probe for each: the default ring loses nothing."""
    n = 200_000
    status, out, err = ktapjit("--", str(workload), str(n), script=(
        "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"))
    assert (status, out, err) == (0, f"{n}\n", status_line(1) + "\n")


@pytest.mark.not_bpf("its probe runs in the kernel, which writes no samples to lose")
def test_loss_is_counted_and_reported(workload):
    """One ring page cannot keep up with a burst: the loss is reported on
    stderr, and every event is either seen or counted lost."""
    n = 100_000
    status, out, err = ktapjit("-q", "--buffer-pages", "1", "--", str(workload), str(n), script=(
        "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"))
    assert status == 0
    lost_line, = err.splitlines()
    lost, text = lost_line.split(" ", 1)
    assert text == "events lost" and int(lost) > 0
    # Besides samples, the task tracker's EXIT record of the workload may be the one lost more.
    assert n <= int(out) + int(lost) <= n + 1


@pytest.mark.slow
def test_million_events_lose_nothing_at_the_default_buffer(workload):
    n = 1_000_000
    status, out, err = ktapjit("--", str(workload), str(n), script=(
        "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"))
    assert (status, out, err) == (0, f"{n}\n", status_line(1) + "\n")
