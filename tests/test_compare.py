"""`--engine compare`'s verdict: identical trials pass; any difference in
stdout, stderr or status is reported with its first differing line. Both
trials see one stream, its start included; the session's own lines (events
lost) are shown once and not compared. Live: tests/tracing/test_compare_live.py."""

from __future__ import annotations

import io

import pytest

from ktapjit.cli import main
from ktapjit.compare import TimedRun, Trial, first_difference, verdict
from ktapjit.testing.synth import SyntheticStream, write_perf_data


@pytest.mark.parametrize("a,b,expected", [
    (b"x\ny\n", b"x\ny\n", (0, b"", b"")),
    (b"x\ny\n", b"x\nz\n", (2, b"y", b"z")),
    (b"x\n", b"x\ny\n", (2, b"", b"y")),
    (b"x", b"x\n", (2, b"<end of output>", b"")),
])
def test_first_difference(a, b, expected):
    assert first_difference(a, b) == expected


def trial(engine, stdout=b"1\n", stderr=b"", status=0):
    return Trial(engine, stdout, stderr, status)


def test_identical_trials():
    same, lines = verdict(trial("interp"), trial("jit"))
    assert same
    assert lines == ["compare: identical output (2 bytes, 0 stderr lines, status 0)",
                     "compare: no events; nothing to time per event"]


@pytest.mark.parametrize("jit,report", [
    (trial("jit", stdout=b"2\n"), ["compare: stdout differs at line 1:", "compare:   interp: 1",
                                   "compare:   jit: 2"]),
    (trial("jit", stderr=b"error: x\n"), ["compare: stderr differs at line 1:", "compare:   interp: ",
                                          "compare:   jit: error: x"]),
    (trial("jit", status=1), ["compare: exit status differs: interp 0, jit 1"]),
])
def test_differences_are_reported(jit, report):
    same, lines = verdict(trial("interp"), jit)
    assert not same
    assert lines[:-1] == report


def test_compare_over_a_recording_reports_timing(tmp_path):
    from tests.test_examples import DEMO, EXAMPLES_DIR

    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", "compare", "--replay", str(DEMO), str(EXAMPLES_DIR / "syscount.kp")],
                  stdout=out, stderr=err)
    lines = err.getvalue().decode().splitlines()
    assert status == 0
    assert lines[0].startswith("compare: identical output (")
    assert lines[1].startswith("compare: 1264 events; interp ") and "ns/event" in lines[1]
    assert out.getvalue().startswith(b"1264 system calls")


def compare(*args: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", "compare", *args], stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode()


@pytest.mark.parametrize("call", ["gettimeofday_ns()", "gettimeofday_us()", "gettimeofday_ms()",
                                  "gettimeofday_s()"])
def test_compare_without_events_gives_both_trials_one_start(call):
    """No probes: the stream is only its start, and both trials start there."""
    status, out, err = compare("-e", f"print({call})\ntrace_end {{ print({call}) }}")
    first, last = out.splitlines()
    assert (status, first) == (0, last)
    assert err.splitlines() == [f"compare: identical output ({len(out)} bytes, 0 stderr lines, status 0)",
                                "compare: no events; nothing to time per event"]


def timed_trial(engine: str, events: int, seconds: float) -> Trial:
    """A trial that ran `events` events in `seconds` in all (its run is never called)."""
    run = TimedRun(object())
    run.samples, run.event_s = events, seconds
    return Trial(engine, timed=[run])


@pytest.mark.parametrize("n,m,line", [
    (1, 1, "compare: 1 event; interp 4,000 ns/event, jit 2,000 ns/event (2.0x)"),
    (2, 2, "compare: 2 events; interp 2,000 ns/event, jit 1,000 ns/event (2.0x)"),
    (1, 2, "compare: interp 1 event, jit 2 events; interp 4,000 ns/event, jit 1,000 ns/event (4.0x)"),
])
def test_timing_line_counts_events(n, m, line):
    same, lines = verdict(timed_trial("interp", n, 4e-6), timed_trial("jit", m, 2e-6))
    assert same and lines[-1] == line


@pytest.mark.parametrize("script,counted", [
    # demo.data: 1264 raw_syscalls:sys_enter samples, 2734 samples in all.
    ("trace raw_syscalls:sys_enter { n += 1 }", "1264 events"),
    # A sample is one event however many probes it runs, ...
    ("trace raw_syscalls:sys_enter { n += 1 }\ntrace raw_syscalls:sys_enter { n += 2 }", "1264 events"),
    ("trace *:* { n += 1 }", "2734 events"),
    # ... and whatever its filter decides: the engine read and filtered it.
    ("trace raw_syscalls:sys_enter /id == 0/ { n += 1 }", "1264 events"),
    # A tick-N run is the clock's, not the stream's: no event.
    ("trace raw_syscalls:sys_enter { n += 1 }\ntick-10ms { n += 1 }", "1264 events"),
    ("tick-10ms { n += 1 }", None),
])
def test_both_engines_count_the_same_events(script, counted):
    from tests.test_examples import DEMO

    status, out, err = compare("--replay", str(DEMO), "-e", f"var n = 0\n{script}\ntrace_end {{ print(n) }}")
    timing = err.splitlines()[-1]
    assert status == 0
    if counted is None:
        assert timing == "compare: no events; nothing to time per event"
    else:
        assert timing.startswith(f"compare: {counted}; interp "), timing


def kernel_trial(engine: str, events: int, seconds: float, in_kernel: int) -> Trial:
    """A BPF trial: `events` timed in user space, `in_kernel` run by its programs."""
    trial = timed_trial(engine, events, seconds)
    trial.timed[0].kernel_steps = in_kernel
    trial.timed[0].samples += in_kernel  # the kernel's events are samples of the stream too
    return trial


@pytest.mark.parametrize("n,m,k,line", [
    (3, 0, 3, "compare: 3 events; interp 4,000 ns/event, bpf 3 in the kernel (not timed)"),
    (3, 1, 2, "compare: 3 events; interp 4,000 ns/event, bpf 2,000 ns/event over 1 in user space, "
              "2 in the kernel (not timed)"),
    (4, 0, 3, "compare: interp 4 events, bpf 3 events; interp 3,000 ns/event, bpf 3 in the kernel (not timed)"),
])
def test_timing_line_of_a_run_with_events_in_the_kernel(n, m, k, line):
    """The BPF engine's kernel events are not timed: no ratio, and its
    ns/event is that of the events it ran in user space."""
    same, lines = verdict(timed_trial("interp", n, 12e-6), kernel_trial("bpf", m, 2e-6 * m, k))
    assert same and lines[-1] == line


class KernelRun:
    """A run whose probe 0 is in the kernel (as BpfRun after attach_kernel)."""

    kernel_probes = frozenset({0})
    kernel_timers = frozenset()

    def run_probe(self, index, event) -> bool:
        return True


def test_timed_run_counts_kernel_probes_apart():
    """A sample is a kernel event once, however many kernel probes it runs."""
    run = TimedRun(KernelRun())
    for probes in ((0,), (0, 0), (1,)):
        run.count_sample()
        for index in probes:
            run.run_probe(index, None)
    assert (run.events, run.kernel_steps) == (1, 2)


COUNT = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"


@pytest.mark.parametrize("seed,lost,line", [(3, 1, "1 event lost"), (7, 3, "3 events lost")])
@pytest.mark.parametrize("engine", ["interp", "jit", "compare"])
def test_loss_in_a_recording_is_reported_once(tmp_path, engine, seed, lost, line):
    """A recording with PERF_RECORD_LOST: one line, whichever engine; compare
    shows it once (it is the stream's, not the script's) and agrees."""
    stream = SyntheticStream(["syscalls:sys_enter_getppid"], n_events=100, lost=0.01, lost_max=1, seed=seed)
    path = tmp_path / "lost.data"
    assert write_perf_data(path, stream).lost == lost  # the seed gives this many
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", engine, "--replay", str(path), "-e", COUNT], stdout=out, stderr=err)
    lines = err.getvalue().decode().splitlines()
    assert (status, out.getvalue()) == (0, b"100\n")
    assert lines[0] == line and lines.count(line) == 1
    if engine == "compare":
        assert lines[1:-1] == ["compare: identical output (4 bytes, 0 stderr lines, status 0)"]
    else:
        assert lines == [line]
