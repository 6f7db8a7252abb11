"""`ktapjit run -d`: the plan of a run, resolved as the run resolves it, with
nothing attached.

The plan is checked against independent sources: tracefs's own event list
for globs, binutils (nm, readelf) for uprobe and USDT addresses. Errors are
checked against the run's own: the same script and options through `run`
and `run -d` give the same bytes on stderr and the same status. And a dry
run leaves tracing as it found it: no uprobe_events line, no enabled event,
no perf fd opened (the open itself is watched), no child started.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ktapjit.cli import main
from tests.events.test_elf import build_programs, expected_offset, nm_functions
from tests.tracing.conftest import TRACEFS, children, live_skip_reason, perf_fds, set_event

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def engine(request):
    """The dry run is not an engine test: one engine, the default, unless a test says."""
    yield "jit"


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    return build_programs(tmp_path_factory.mktemp("dry"))


def ktapjit(*args: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", *args], stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode()


def dry(*args: str) -> str:
    status, out, err = ktapjit("-d", *args)
    assert (status, err) == (0, ""), err
    return out


HEAD = """\
Dry run: nothing was attached.
engine: {engine}
events from: this kernel
traces: {scope}
"""
SYSTEM_WIDE = "every process, but for ktapjit's own threads (each event's filter gets common_pid != TID for each)"
NOT_OPENED = """
not checked without attaching:
  - whether the kernel opens each event: an event a glob matched that it refuses is skipped, a named one fails the run
"""


# --- the plan -------------------------------------------------------------------------------

def test_tracepoints_with_filters_and_timers():
    script = ('trace sched:sched_switch /prev_pid == 1/ { }\n'
              'trace sched:sched_switch /next_comm == "a"/ { }\n'
              'tick-1s { }\nprofile-10ms { }\n')
    assert dry("--engine", "interp", "-e", script) == HEAD.format(engine="interp", scope=SYSTEM_WIDE) + """
probe 1 (-e:1:7): trace sched:sched_switch /prev_pid == 1/
  runs: in user space (interp)
  1 event:
    tracepoint sched:sched_switch
      kernel filter: (prev_pid == 1) || (next_comm == "a")

probe 2 (-e:2:7): trace sched:sched_switch /next_comm == "a"/
  runs: in user space (interp)
  1 event:
    tracepoint sched:sched_switch
      kernel filter: (prev_pid == 1) || (next_comm == "a")

timer 1: tick-1s
  every 1 s of stream time (a cpu-clock event every 10 ms keeps it firing on a quiet system)
  runs: in user space (interp)

timer 2: profile-10ms
  a cpu-clock sample every 10 ms on each CPU, with callchains
  runs: in user space (interp)
""" + NOT_OPENED


def test_a_glob_lists_every_event_tracefs_has_in_order():
    events = sorted(name for name in os.listdir(TRACEFS / "events" / "sched")
                    if (TRACEFS / "events" / "sched" / name / "id").exists())
    out = dry("-e", "trace sched:* { }")
    listed = [line.split()[1].rstrip(",") for line in out.splitlines() if line.startswith("    tracepoint ")]
    assert listed == [f"sched:{name}" for name in events]
    assert f"  {len(events)} events:\n" in out


def test_star_star_leaves_dynamic_groups_out():
    out = dry("-e", "trace *:* { }")
    listed = [line.split()[1].rstrip(",") for line in out.splitlines() if line.startswith("    tracepoint ")]
    assert "sched:sched_switch" in listed and "syscalls:sys_enter_openat" in listed
    assert not [name for name in listed if name.startswith("ktapjit_")]


def test_uprobe_glob_sites_match_binutils(programs):
    path = programs.nopie  # addresses and file offsets differ: both are shown
    nm = nm_functions(path)
    out = dry("-e", f"trace probe:{path}:[ags]* {{ }}")
    names = sorted(name for name in nm if name[0] in "ags")
    sites = "".join(f"        {name} at file offset {expected_offset(path, nm[name]):#x}, address {nm[name]:#x}\n"
                    for name in sorted(names, key=lambda n: nm[n]))
    assert out == HEAD.format(engine="jit", scope=SYSTEM_WIDE) + f"""\
native feed: possible: every filter has a native program (the JIT takes the session once the rings are open)

probe 1 (-e:1:7): trace probe:{path}:[ags]*
  runs: in user space (jit)
  1 event:
    uprobe ktapjit_{os.getpid()}:probed_nopie__sites, no kernel filter
      in {path}, {len(names)} sites:
{sites}""" + NOT_OPENED + """\
  - which functions of a uprobe glob the kernel refuses to probe: the run tries them and leaves those out
  - the dynamic events' names: the run makes them in its own group, ktapjit_<its pid>
"""


def test_uprobe_sites_are_the_ones_the_run_creates(programs):
    """The dry run's offsets are exactly what DynamicProbes writes to uprobe_events."""
    from ktapjit.events.probes.dynamic_probes import DynamicProbes

    path = str(programs.pie)
    out = dry("-f", "json", "-e", f"trace probe:{path}:[ags]* {{ }} trace probe:{path}:main%return {{ }}")
    probes = [obj for obj in map(json.loads, out.splitlines()) if obj.get("what") == "probe"]
    planned = [[site["offset"] for event in probe["events"] for site in event["sites"]] for probe in probes]
    with DynamicProbes(sweep=False) as made:
        made.add_uprobe(path, "[ags]*")
        made.add_uprobe(path, "main", is_return=True)
        lines = [line for line in (TRACEFS / "uprobe_events").read_text().splitlines()
                 if f" {made.group}/" in line or f":{made.group}/" in line]
    written = [int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines]
    assert written == planned[0] + planned[1]
    assert [line[0] for line in lines] == ["p"] * len(planned[0]) + ["r"]


def test_usdt_sites_with_their_semaphore(programs):
    from tests.events.test_elf import readelf_notes

    path = programs.nopie
    notes = {n["name"]: n for n in readelf_notes(path)}
    out = dry("-e", f"trace sdt:{path}:ktapjit_test:* {{ }}")
    for name in ("tick", "sema"):
        pc = notes[name]["pc"]
        line = f"ktapjit_test:{name} at file offset {expected_offset(path, pc):#x}, address {pc:#x}"
        assert line in out
    sema = notes["sema"]["sema"]
    assert f", semaphore at file offset {expected_offset(path, sema):#x}\n" in out


def test_replay_binds_against_the_recording():
    data = REPO / "examples" / "data" / "demo.data"
    assert dry("--replay", str(data), "-e", "trace sched:sched_switch /prev_pid == 1/ { }") == f"""\
Dry run: nothing was attached.
engine: jit
events from: the recording {data}
traces: the recorded processes

probe 1 (-e:1:7): trace sched:sched_switch /prev_pid == 1/
  runs: in user space (jit)
  1 event:
    tracepoint sched:sched_switch
"""


def test_scope_of_pid_and_command():
    out = dry("-p", str(os.getpid()), "-e", "trace sched:sched_switch { }")
    assert f"traces: process {os.getpid()} and its children\n" in out
    assert f"  - whether ktapjit may trace process {os.getpid()}: perf_event_open decides\n" in out
    out = dry("-e", "trace sched:sched_switch { }", "--", "touch", "/tmp/ktapjit-dry-run-never")
    assert "traces: the command 'touch /tmp/ktapjit-dry-run-never' and its children (a dry run does not start it)\n" \
        in out
    assert not Path("/tmp/ktapjit-dry-run-never").exists()


def test_json_objects():
    out = dry("-f", "json", "-e", 'trace sched:sched_switch /prev_pid == 1/ { } tick-1s { }')
    objects = [json.loads(line) for line in out.splitlines()]
    assert objects == [
        {"v": 1, "type": "dry_run", "what": "session", "engine": "jit", "source": "live", "scope": SYSTEM_WIDE,
         "not_checked": [NOT_OPENED.splitlines()[-1][4:]],
         "native_feed": "possible: every filter has a native program (the JIT takes the session once the rings "
                        "are open)"},
        {"v": 1, "type": "dry_run", "what": "probe", "index": 1, "eventdef": "sched:sched_switch",
         "filter": "prev_pid == 1", "file": "-e", "line": 1, "col": 7, "where": "user", "reasons": [],
         "events": [{"system": "sched", "event": "sched_switch", "kind": "tracepoint",
                     "kernel_filter": "prev_pid == 1", "optional": False}]},
        {"v": 1, "type": "dry_run", "what": "timer", "index": 1, "timer": "tick-1s", "kind": "tick",
         "period_ns": 1_000_000_000, "where": "user", "reasons": []},
        {"v": 1, "type": "end", "status": 0},
    ]


def test_bpf_engine_says_where_each_probe_runs():
    """--engine bpf: the placement `ktapjit plan` prints, per probe and timer."""
    from ktapjit import cli
    from ktapjit.compiler import compile_script
    from ktapjit.tracing.dry_run import dry_run_text, live_dry_run

    source = ("var n = 0\nvar c = {}\ntrace sched:sched_switch { c[pid] += 1 }\n"
              "trace sched:sched_wakeup { n = n + 1; print(n) }\n")
    module = compile_script(source.encode(), "-e").module
    plan = live_dry_run(module, "bpf")
    cli._place_dry_run(plan, module, cli.Limits())
    shown = io.BytesIO()
    assert main(["plan", "-e", source], stdout=shown) == 0
    kernel, user = shown.getvalue().decode().splitlines()
    assert kernel == "sched:sched_switch\tkernel" and user.split("\t")[:2] == ["sched:sched_wakeup", "user"]
    text = dry_run_text(plan)
    assert "probe 1 (-e:3:7): trace sched:sched_switch\n  runs: in the kernel (eBPF)\n" in text
    reasons = "".join(f"      {r}\n" for r in user.split("\t")[2].split("; "))
    assert ("probe 2 (-e:4:7): trace sched:sched_wakeup\n"
            "  runs: in user space (--engine bpf cannot run it in the kernel):\n" + reasons) in text


@pytest.mark.parametrize("flags", [["--engine", "compare", "--bpf"], ["--bpf", "--record", "x.data"]],
                         ids=["compare-bpf", "bpf-record"])
def test_a_recorded_bpf_run_says_where_each_probe_runs(flags, tmp_path):
    """A run that records its stream keeps clock readings in user space
    (docs/bpf.md, "Comparing with the interpreter"); compare says the
    interpreter replays the recording next."""
    flags = [str(tmp_path / f) if f.endswith(".data") else f for f in flags]
    then = ", then interp on the recording" if "compare" in flags else ""
    text = dry(*flags, "-e", "var n = 0\nvar t = {}\ntrace syscalls:sys_enter_getppid { n += 1 }\n"
                             "trace syscalls:sys_enter_getpid { t[tid] = gettimeofday_ns() }")
    assert f"engine: {'compare --bpf' if then else 'bpf'}\n" in text
    assert f"trace syscalls:sys_enter_getppid\n  runs: in the kernel (eBPF){then}\n" in text
    assert (f"trace syscalls:sys_enter_getpid\n  runs: in user space{then} (--engine bpf cannot run it in the "
            "kernel):\n      -e:4:36: gettimeofday_ns() while the stream is recorded (a replay reads the sample's "
            "time, not the kernel's clock)\n") in text


# --- errors: the run's own ----------------------------------------------------------------------

ERRORS = [
    (["-e", "trace nosuch:event { }"]),
    (["-e", "trace nosuch*:* { }"]),
    (["-e", "trace sched:sched_switch /nosuch == 1/ { }"]),
    (["-e", "trace sched:sched_switch { x = }"]),
    (["-e", "trace probe:/no/such/file:main { }"]),
    (["-e", "trace probe:libc:no_such_function_at_all { }"]),
    (["-e", "trace probe:libc:malloc $retval { }"]),
    (["-e", "trace sdt:libc:nosuch:marker { }"]),
    (["/no/such/script.kp"]),
    (["-p", "999999999", "-e", "trace sched:sched_switch { }"]),
    (["-e", "trace sched:sched_switch { }", "--", "/no/such/command"]),
    (["-e", "print(1)", "--", "true"]),
    (["--replay", "/no/such/recording.data", "-e", "trace sched:sched_switch { }"]),
    (["--metrics", "9", "-e", "var n = 0 trace sched:sched_switch { n += 1 }"]),
    (["--metrics", "127.0.0.1:0", "--export", "nosuch", "-e", "var n = 0 trace sched:sched_switch { n += 1 }"]),
    (["--engine", "compare", "--metrics", "0", "--export", "n", "-e", "var n = 0 trace sched:sched_switch { }"]),
    (["--export", "n", "-e", "var n = 0 trace sched:sched_switch { }"]),
]


@pytest.mark.parametrize("args", ERRORS, ids=lambda a: " ".join(a)[:60])
def test_errors_are_the_runs(args, clean_tracing_state):
    ran = ktapjit(*args)
    planned = ktapjit("-d", *args)
    assert ran[0] != 0 and ran[2].strip()
    assert planned == ran


def _as_nobody(*args: str) -> tuple[int, str, str]:
    """ktapjit(*args) in a forked child that gave up root (every module it
    needs is imported first: as nobody it may not read them)."""
    for name in ("ktapjit.tracing.dry_run", "ktapjit.tracing.session"):
        importlib.import_module(name)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(ktapjit(*args)).encode())
        except BaseException:
            import traceback
            os.write(write, traceback.format_exc().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    assert data.startswith(b"["), data.decode()
    return tuple(json.loads(data))


@pytest.mark.parametrize("script", ["trace sched:sched_switch { }", "trace probe:libc:malloc { }"])
def test_permission_errors_are_the_runs(script):
    """An unprivileged user cannot read tracefs: the dry run says so as the run does."""
    ran = _as_nobody("-e", script)
    assert ran[0] == 2 and "permission denied" in ran[2].lower(), ran
    assert _as_nobody("-d", "-e", script) == ran


# --- nothing attached -----------------------------------------------------------------------

def _special_fds() -> list[str]:
    """What this process's fds that are not files hold (perf events, pipes,
    sockets). Files may stay open: the ELF reader keeps the files it read, as
    a run's does."""
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the fd listdir itself used
        if not target.startswith("/"):
            held.append(target)
    return sorted(held)


def _uprobe_events() -> list[str]:
    return (TRACEFS / "uprobe_events").read_text().splitlines()


def test_tracing_state_untouched(programs, monkeypatch, clean_tracing_state):
    """No perf_event_open, no write to a tracefs control file, no child: the
    calls themselves are watched, and tracefs compared before and after."""
    from ktapjit.events.probes import dynamic_probes
    from ktapjit.events.records import perf_abi

    calls = []
    monkeypatch.setattr(perf_abi, "perf_event_open", lambda *a, **k: calls.append(("perf_event_open", a)))
    monkeypatch.setattr(dynamic_probes, "_write_control", lambda *a, **k: calls.append(("write", a)))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(("Popen", a)))
    monkeypatch.setattr(os, "fork", lambda: calls.append(("fork",)))  # how a run starts -- CMD
    group = f"ktapjit_{os.getpid()}"
    before = (set_event(), [line for line in _uprobe_events() if group in line], perf_fds(), children(), _special_fds())
    script = (f"trace probe:{programs.pie}:[ags]* {{ }}\ntrace probe:libc:malloc%return {{ }}\n"
              f"trace sdt:{programs.pie}:ktapjit_test:tick {{ }}\ntrace syscalls:sys_enter_* {{ }}\n"
              "profile-10ms { }\ntick-1s { }\n")
    for extra in ([], ["--", "true"], ["-p", str(os.getpid())]):
        cut = extra.index("--") if "--" in extra else len(extra)
        out = dry(*extra[:cut], "-e", script, *extra[cut:])
        assert "uprobe" in out and "usdt" in out and "syscalls:sys_enter_openat" in out
    after = (set_event(), [line for line in _uprobe_events() if group in line], perf_fds(), children(), _special_fds())
    assert calls == []
    assert after == before
    assert not (TRACEFS / "events" / group).exists()


def test_examples_plan_without_errors():
    """Every example that needs no workload of its own resolves on this machine."""
    for script in sorted((REPO / "examples").glob("*.kp")):
        if "/tmp/demo" in script.read_text():
            continue  # funclat.kp, usdt.kp probe examples/demo.c, built by their own tests
        out = dry(str(script))
        assert out.startswith("Dry run: nothing was attached.\n")


def test_a_probe_reading_memory_at_event_time_takes_the_per_event_path():
    out = dry("--engine", "jit", "-e", "trace syscalls:sys_enter_openat { print(user_string(args.filename)) }")
    assert out.splitlines()[4] == ("native feed: no: probe 1 reads memory at event time (user_string "
                                   "args.filename): its companion records are paired on the per-event path")
