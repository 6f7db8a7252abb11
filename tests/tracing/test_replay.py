"""Replaying perf.data files recorded by `perf record` (on the development VM).

Expected results come from `perf script` on the same file, never from our
own decoder, so the two implementations check each other.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tracing.runcli import ktapjit

DATA = Path(__file__).resolve().parents[1] / "data"
pytestmark = pytest.mark.not_bpf("replays a recording: the BPF engine traces live only")

needs_perf = pytest.mark.skipif(shutil.which("perf") is None, reason="perf (Debian linux-perf) is not installed")


def perf_script(recording: str, *fields: str) -> list[list[str]]:
    text = subprocess.run(
        ["perf", "script", "--ns", "-i", str(DATA / recording), "-F", ",".join(fields)],
        check=True, capture_output=True, text=True, errors="replace",
    ).stdout
    return [line.split() for line in text.splitlines()]


@needs_perf
@pytest.mark.parametrize("recording", ["sched.data", "pipe.data"])
def test_event_values_match_perf_script(recording):
    status, out, err = ktapjit("--replay", str(DATA / recording), script=(
        'trace sched:* { printf("%s %d [%03d] %d.%09d sched:%s:\\n", execname, tid, cpu,'
        " gettimeofday_s(), gettimeofday_ns() % 1000000000, probename) }"))
    assert status == 0, err
    expected = [
        " ".join(f.replace(":", "", 1) if i == 3 else f for i, f in enumerate(row))
        for row in perf_script(recording, "comm,tid,cpu,time,event")
    ]
    assert out.splitlines() == [line.replace(". ", ".") for line in expected]


@needs_perf
@pytest.mark.parametrize("recording", ["sched.data", "pipe.data"])
def test_argstr_is_perf_scripts_trace_text(recording):
    status, out, err = ktapjit("--replay", str(DATA / recording), script="trace *:* { print(argstr) }")
    assert status == 0, err
    text = subprocess.run(["perf", "script", "-i", str(DATA / recording), "-F", "trace"],
                          check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == [line.strip() for line in text.splitlines()]


@needs_perf
def test_syscall_argstr_is_the_kernels_text_not_perfs():
    """perf prints nothing for sys_enter_getppid's empty print fmt; the kernel's text
    trace, and so argstr, prints `sys_getppid()` (test_argstr_kernel_text.py)."""
    path = str(DATA / "getppid.data")
    status, out, err = ktapjit("--replay", path, script="trace *:* { print(argstr) }")
    assert status == 0, err
    events = subprocess.run(["perf", "script", "-i", path, "-F", "event"],
                            check=True, capture_output=True, text=True).stdout.split()
    assert set(events) == {"syscalls:sys_enter_getppid:"}
    assert out.splitlines() == ["sys_getppid()"] * len(events)


@needs_perf
def test_fields_by_name_and_position():
    status, out, err = ktapjit("--replay", str(DATA / "sched.data"), script=(
        "trace sched:sched_switch { print(args.prev_comm, arg1, args.next_pid, arg9, args.nope) }"))
    assert status == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    # sched_switch: prev_comm prev_pid prev_prio prev_state next_comm next_pid next_prio
    expected = []
    for row in perf_script("sched.data", "event,trace"):
        if row[0] == "sched:sched_switch:":
            fields = dict(kv.split("=", 1) for kv in row[1:] if "=" in kv)
            expected.append([fields["prev_comm"], fields["prev_pid"], fields["next_pid"], "nil", "nil"])
    assert rows == expected


@needs_perf
def test_filter_selects_what_its_meaning_says():
    status, out, err = ktapjit("--replay", str(DATA / "sched.data"), script=(
        'trace sched:sched_wakeup /prio < 120 && comm ~ "migr*"/ { print(args.pid, args.prio) }'))
    assert status == 0, err
    expected = []
    for row in perf_script("sched.data", "event,trace"):
        if row[0] == "sched:sched_wakeup:":
            fields = dict(kv.split("=", 1) for kv in row[1:] if "=" in kv)
            if int(fields["prio"]) < 120 and fields["comm"].startswith("migr"):
                expected.append(f"{fields['pid']}\t{fields['prio']}")
    assert out.splitlines() == expected and expected


@needs_perf
def record_times(recording: str) -> list[int]:
    """Every record's timestamp, side-band records (fork, comm, mmap) included."""
    text = subprocess.run(
        ["perf", "script", "--ns", "--show-task-events", "--show-mmap-events", "-i", str(DATA / recording),
         "-F", "time"], check=True, capture_output=True, text=True).stdout
    return [int(line.split()[0].rstrip(":").replace(".", "")) for line in text.splitlines() if line.strip()]


@needs_perf
def test_tick_timers_run_in_stream_time():
    times = [t for t in record_times("sched.data") if t]  # synthesized records carry time 0
    start, end = min(times), max(times)
    status, out, err = ktapjit("--replay", str(DATA / "sched.data"), script=(
        "var ticks = 0\ntick-20ms { ticks += 1; if (ticks == 1) { print(gettimeofday_ns()) } }\n"
        "trace_end { print(ticks, gettimeofday_ns()) }"))
    assert status == 0, err
    first, (count, last) = out.splitlines()[0], out.splitlines()[1].split("\t")
    assert int(first) == start + 20_000_000
    assert int(count) == (end - start) // 20_000_000
    assert int(last) == end


def test_exit_in_probe_stops_events_then_trace_end_runs():
    status, out, err = ktapjit("--replay", str(DATA / "sched.data"), script=(
        "var n = 0\ntrace sched:sched_switch { n += 1; if (n == 3) { exit() } }\ntrace_end { print(n) }"))
    assert (status, out, err) == (0, "3\n", "")


def test_runtime_error_in_probe_reports_location_and_runs_trace_end():
    status, out, err = ktapjit("--replay", str(DATA / "sched.data"), script=(
        "trace sched:sched_switch { print(1 / 0) }\ntrace_end { print(\"end\") }"))
    assert (status, out, err) == (1, "end\n", "error: divide by zero at -e:1:36\n")


@pytest.mark.parametrize("script,message", [
    ("trace sched:sched_swich { }", "-e:1:7: error: unknown event 'sched:sched_swich' in recording"),
    ("trace sched:sched_switch /no_such_field == 1/ { }", "-e:1:27: error: filter on sched:sched_switch"),
    ("trace sched:sched_switch /prev_pid === 1/ { }", "-e:1:38: error: filter:"),
    ("trace probe:/bin/true:main { }",
     "-e:1:7: error: no uprobe event 'main' for 'probe:/bin/true:main' in recording"),
    ("trace sched:sched_switch, sdt:/bin/true:p:mark { }",
     "-e:1:27: error: no USDT event 'mark' for 'sdt:/bin/true:p:mark' in recording"),
    ("trace probe:do_sys_open%return { }",
     "-e:1:7: error: no kprobe event 'do_sys_open__return' for 'probe:do_sys_open%return' in recording"),
    ("trace ftrace:function { }",
     "-e:1:7: error: ftrace:function is not available: ktapjit does not support the function tracer yet\n"),
])
def test_binding_errors_point_into_the_eventdef_or_filter(script, message):
    status, out, err = ktapjit("--replay", str(DATA / "sched.data"), script=script)
    assert status == 2 and err.startswith(message), err


def test_suggests_close_event_names():
    status, _, err = ktapjit("--replay", str(DATA / "sched.data"), script="trace sched:sched_swich { }")
    assert "did you mean sched:sched_switch" in err


@pytest.mark.parametrize("cut", [20, 200, 40000])
def test_truncated_recording_is_a_clear_error_with_offset(tmp_path, cut):
    broken = tmp_path / "broken.data"
    broken.write_bytes((DATA / "sched.data").read_bytes()[:cut])
    status, out, err = ktapjit("--replay", str(broken), script="trace sched:* { }\ntrace_end { print(1) }")
    assert status == 2
    assert "offset" in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_missing_recording():
    status, _, err = ktapjit("--replay", "/nonexistent.data", script="trace sched:* { }")
    assert status == 2 and err.startswith("ktapjit: /nonexistent.data: cannot open") and err.count("\n") == 1


def synthetic_recording(tmp_path, spec, n=3):
    from ktapjit.testing.synth import SyntheticStream, write_perf_data

    path = tmp_path / "synth.data"
    write_perf_data(str(path), SyntheticStream([spec], n_events=n, cpus=1, tasks=1, seed=7))
    return path


def test_unsigned_64_bit_fields_read_as_int64(tmp_path):
    from ktapjit.testing.synth import const

    data = synthetic_recording(tmp_path, ("raw_syscalls", "sys_enter", None,
                                          {"id": 39, "args": const([2**64 - 1, 2**63, 5, 0, 0, 0])}))
    status, out, err = ktapjit("--replay", str(data), script=(
        "trace raw_syscalls:sys_enter { var a = args.args\n print(a[0], a[0] == -1, a[1], a[2]) }"))
    assert (status, err) == (0, "")
    assert out.splitlines() == ["-1\ttrue\t-9223372036854775808\t5"] * 3


def test_corrupt_dynamic_field_is_a_runtime_error_at_the_read(tmp_path):
    from ktapjit.testing.synth import const

    data = synthetic_recording(tmp_path, ("sched", "sched_process_exec", None, {"filename": const("/bin/true")}), n=1)
    raw = bytearray(data.read_bytes())
    where = raw.find(b"/bin/true")
    # The __data_loc word (offset | length << 16) sits in the fixed part; point it far past the record.
    loc = raw.rfind(b"\x0a\x00", 0, where)  # length 10 ("/bin/true\0") in the loc's high half
    raw[loc - 2:loc] = b"\xff\x00"
    data.write_bytes(bytes(raw))
    status, out, err = ktapjit("--replay", str(data), script=(
        'trace sched:sched_process_exec { print(args.filename) }\ntrace_end { print("end") }'))
    assert status == 1 and out == "end\n"
    assert err.startswith("error: corrupt sched:sched_process_exec record at byte offset ") and "at -e:1:40" in err


def test_output_to_the_replayed_file_is_refused():
    status, _, err = ktapjit("--replay", str(DATA / "sched.data"), "-o", str(DATA / "sched.data"),
                             script="trace sched:* { }")
    assert status == 2 and "would overwrite the recording" in err


# --- kernel stacks: named only on the kernel that recorded them ------------------------------

KERNEL_HALF = 0xFFFF800000000000


@needs_perf
def test_kernel_frames_are_named_only_where_perf_names_them():
    """callchain.data was recorded on one build of Linux 6.18 (its BUILD_ID
    feature says which). On that kernel its frames have names; on any other,
    kallsyms would give them another kernel's names, so they are [unknown],
    as perf prints them."""
    status, out, err = ktapjit("--replay", str(DATA / "callchain.data"), script=(
        'trace sched:sched_switch { printf("%s\\n--\\n", stack()) }'))
    assert (status, err) == (0, "")
    ours = [block.split("\n") for block in out.split("\n--\n")[:-1]]
    text = subprocess.run(["perf", "script", "-i", str(DATA / "callchain.data"), "-F", "tid,ip,sym"],
                          check=True, capture_output=True, text=True).stdout
    theirs = []
    for line in filter(None, text.splitlines()):
        if not line.startswith("\t"):
            theirs.append([])
        elif int(line.split()[0], 16) >= KERNEL_HALF:
            theirs[-1].append(line.split(None, 1)[1])
    assert len(ours) == len(theirs) and any(theirs)
    for frames, perf_frames in zip(ours, theirs):
        assert len(frames) == len(perf_frames)
        assert [f == "[unknown]" for f in frames] == [f == "[unknown]" for f in perf_frames], (frames, perf_frames)


def test_which_recordings_the_running_kernel_symbolizes():
    from ktapjit.events.probes.symbolize import running_kernel_build_id
    from ktapjit.tracing.stacks import replay_kernel_symbols

    running, release = running_kernel_build_id(), os.uname().release
    if running is None:
        pytest.skip("the running kernel's build-id is unreadable (/sys/kernel/notes)")
    other = bytes(b ^ 0xFF for b in running)
    for build_id, recorded_release, uses_kallsyms in [
        (running, "another release", True),   # the build-id decides
        (other, release, False),              # same release, another build
        (None, release, True),                # no build-id (perf record --no-buildid): the release
        (None, "another release", False),
        (None, None, True),                   # nothing known: this machine's, as perf does
    ]:
        symbols = replay_kernel_symbols(build_id, recorded_release)
        assert (symbols is None) == uses_kallsyms, (build_id, recorded_release)
        if symbols is not None:
            assert symbols.symbolize(0xFFFFFFFF81000000) == "[unknown]"
