"""`ktapjit run --engine bpf` (`--bpf`) on live events: the probes the
placement puts in the kernel run as eBPF programs on the perf events the
live session opens, the rest in the interpreter, and the output is the
interpreter's (docs/bpf.md, "Running")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.bpf.conftest import needs_bpf, open_fds, run_cli as ktapjit
from tests.bpf.lowered import CALLS_C
from tests.cbuild import build_c
from tests.tracing.conftest import clean_tracing_state, status_line  # noqa: F401 (a fixture)

from ktapjit.bpf.loaded import loaded_sessions

pytestmark = needs_bpf

REPO = Path(__file__).resolve().parents[2]
P, Q = 3000, 20
GETPPID, GETPID, EXIT_GROUP = 110, 39, 231  # x86-64 syscall numbers


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    return build_c(tmp_path_factory, "calls", CALLS_C, "-O2", purpose="the syscall workload")


def our_programs(pid: int = os.getpid()) -> list:
    """The programs loaded by process `pid` that the kernel still holds
    (other tests on the machine load their own at the same time)."""
    return [prog for s in loaded_sessions() if s.carried.pid == pid for prog in s.programs]


@pytest.fixture
def nothing_left(clean_tracing_state):  # noqa: F811
    """No fd, perf event or BPF program of the run outlives it."""
    fds = open_fds()
    yield
    assert open_fds() - fds == set()
    assert our_programs() == []


def test_the_done_when_count_runs_in_the_kernel(calls, nothing_left):
    script = "var n = 0 trace syscalls:sys_enter_getppid { n += 1 } trace_end { print(n) }"
    status, out, err = ktapjit("--bpf", "-e", script, "--", str(calls), "20000", "0", "nowait")
    assert (status, out) == (0, "20000\n")
    assert err.splitlines() == [status_line(1)]


# Scripts whose output under --engine bpf must be --engine interp's, on the
# same workload (`calls P Q`), with where each probe runs (-v).
SAME_AS_INTERP = [
    ("a table keyed by probename over two events",
     "var t = {}\ntrace syscalls:sys_enter_getppid, syscalls:sys_enter_getpid { t[probename] += 1 }\n"
     "trace_end { for (k, v in pairs(t)) { printf(\"%s %d\\n\", k, v) } }",
     f"sys_enter_getppid {P}\nsys_enter_getpid {Q}\n",
     ["syscalls:sys_enter_getppid, syscalls:sys_enter_getpid: kernel"]),
    ("a table keyed by args.id",
     "var t = {}\ntrace raw_syscalls:sys_enter { t[args.id] += 1 }\n"
     "trace_end { for (k, v in pairs(t)) { if (v >= 20) { printf(\"%d %d\\n\", k, v) } } }",
     f"{GETPPID} {P}\n{GETPID} {Q}\n",
     ["raw_syscalls:sys_enter: kernel"]),
    ("a kernel probe beside a user-space probe that prints",
     "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\n"
     "trace syscalls:sys_enter_getpid { printf(\"getpid %d\\n\", n) }\n"
     "trace_end { print(n) }",
     None,  # the interpreter's
     ["syscalls:sys_enter_getppid: user"]),  # getpid's probe reads n while events run
    ("a global and a table both halves update",
     "var n = 5\nvar t = {}\nt[\"top\"] = 1\n"
     "trace syscalls:sys_enter_getppid { n += 1; t[\"k\"] += 1 }\n"
     "trace syscalls:sys_enter_getpid { n += 1; t[\"u\"] += 1; t[\"k\"] += 1; print(\"x\") }\n"
     "trace_end { print(n); for (k, v in pairs(t)) { printf(\"%s %d\\n\", k, v) } }",
     "x\n" * Q + f"{P + Q + 5}\ntop 1\nk {P + Q}\nu {Q}\n",
     ["syscalls:sys_enter_getppid: kernel", "syscalls:sys_enter_getpid: user: -e:5:74: print() writes output"]),
    ("a top-level key too long for the map stays in its place",
     "var t = {}\nt[\"a key longer than any string the kernel programs build\"] = 1\n"
     "trace syscalls:sys_enter_getppid { t[probename] += 1 }\n"
     "trace_end { for (k, v in pairs(t)) { printf(\"%s %d\\n\", k, v) } }",
     f"a key longer than any string the kernel programs build 1\nsys_enter_getppid {P}\n",
     ["syscalls:sys_enter_getppid: kernel"]),
    # The common fields are not in a tracepoint program's context: the verifier refused.
    ("a filter on common_pid", "var n = 0\ntrace syscalls:sys_enter_getppid /common_pid != 1/ { n += 1 }\n"
     "trace_end { print(n) }", f"{P}\n", ["syscalls:sys_enter_getppid: kernel"]),
    ("args.common_pid stays in user space",
     "var t = {}\ntrace syscalls:sys_enter_getppid { t[args.common_pid] += 1 }\ntrace_end { print(len(t)) }",
     "1\n", ["syscalls:sys_enter_getppid: user: -e:2:38: args.common_pid (a common field, not in a program's "
             "context) (not lowered yet)"]),
    ("a top-level base the kernel adds to",
     "var n = 0\nn = 7\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }",
     f"{P + 7}\n",
     ["syscalls:sys_enter_getppid: kernel"]),
    # Each program hangs on a perf event of its own: a second one on the same
    # tracepoint was refused (EEXIST) when both went through the session's fd.
    ("two probes on one tracepoint",
     "var a, b = 0, 0\ntrace syscalls:sys_enter_getppid { a += 1 }\n"
     "trace syscalls:sys_enter_getppid { b += 2 }\ntrace_end { print(a, b) }",
     f"{P}\t{2 * P}\n", ["syscalls:sys_enter_getppid: kernel"]),
    ("ipof() looks its address up in user space",
     "var t = {}\ntrace syscalls:sys_enter_getppid { t[ipof(\"vfs_read\")] += 1 }\n"
     "trace_end { print(t[ipof(\"vfs_read\")], len(t)) }",
     f"{P}\t1\n",
     ["syscalls:sys_enter_getppid: user: -e:2:42: ipof()"]),
]


@pytest.mark.parametrize("name, script, expected, where", SAME_AS_INTERP, ids=[c[0] for c in SAME_AS_INTERP])
def test_the_output_is_the_interpreters(calls, nothing_left, name, script, expected, where):
    command = ["--", str(calls), str(P), str(Q), "nowait"]
    status, out, err = ktapjit("--engine", "bpf", "-v", "-e", script, *command)
    interp = ktapjit("--engine", "interp", "-e", script, *command)
    assert (status, out) == interp[:2]
    if expected is not None:
        assert out == expected
    shown = [line.removeprefix("ktapjit: bpf: ") for line in err.splitlines() if line.startswith("ktapjit: bpf: ")]
    for line in where:
        assert any(s.startswith(line) for s in shown), (line, shown)


def test_a_user_space_probe_beside_a_kernel_probe(calls, nothing_left):
    """getpid's probe prints and updates nothing the kernel probe writes: each runs on its side."""
    script = ("var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\n"
              "trace syscalls:sys_enter_getpid { print(probename) }\ntrace_end { print(n) }")
    command = ["--", str(calls), str(P), "3", "nowait"]
    status, out, err = ktapjit("--bpf", "-v", "-e", script, *command)
    assert (status, out) == (0, "sys_enter_getpid\n" * 3 + f"{P}\n")
    assert "ktapjit: bpf: syscalls:sys_enter_getppid: kernel" in err.splitlines()
    assert any(line.startswith("ktapjit: bpf: syscalls:sys_enter_getpid: user: ") for line in err.splitlines())
    assert ktapjit("--engine", "interp", "-e", script, *command)[:2] == (status, out)


def test_a_user_space_probe_on_the_tracepoint_of_a_kernel_probe_still_gets_its_samples(calls, nothing_left):
    script = ("var n = 0\ntrace syscalls:sys_enter_getpid { n += 1 }\n"
              "trace syscalls:sys_enter_getpid { print(probename) }\ntrace_end { print(n) }")
    command = ["--", str(calls), str(P), "3", "nowait"]
    status, out, err = ktapjit("--bpf", "-v", "-e", script, *command)
    assert (status, out) == (0, "sys_enter_getpid\n" * 3 + "3\n")
    assert "ktapjit: bpf: syscalls:sys_enter_getpid: kernel" in err.splitlines()


def test_a_recorded_run_keeps_every_sample_for_the_interpreters_replay(calls, nothing_left, tmp_path):
    script = ("var t = {}\ntrace syscalls:sys_enter_getppid, syscalls:sys_enter_getpid { t[probename] += 1 }\n"
              "trace_end { for (k, v in pairs(t)) { printf(\"%s %d\\n\", k, v) } }")
    recording = str(tmp_path / "bpf.data")
    status, out, _err = ktapjit("--bpf", "-q", "--record", recording, "-e", script,
                                "--", str(calls), str(P), str(Q), "nowait")
    assert (status, out) == (0, f"sys_enter_getppid {P}\nsys_enter_getpid {Q}\n")
    assert ktapjit("--engine", "interp", "--replay", recording, "-e", script)[:2] == (status, out)


def test_a_profile_timer_counts_in_the_kernel(calls, nothing_left):
    script = "var n = 0\nprofile-1ms { n += 1 }\ntrace_end { print(n > 0) }"
    status, out, err = ktapjit("--bpf", "-v", "-e", script, "--", str(calls), "300000", "0", "nowait")
    assert (status, out) == (0, "true\n")
    assert "ktapjit: bpf: profile-1ms: kernel" in err.splitlines()


def test_a_tick_that_reads_a_global_keeps_its_writer_in_user_space(calls, nothing_left):
    script = ("var n, s = 0, 0\ntrace syscalls:sys_enter_getppid { n += 1 }\n"
              "tick-100ms { s += n; n = 0 }\ntrace_end { print(s + n) }")
    status, out, err = ktapjit("--bpf", "-v", "-e", script, "--", str(calls), str(P), "0", "nowait")
    assert (status, out) == (0, f"{P}\n")
    [where] = [line for line in err.splitlines() if line.startswith("ktapjit: bpf: syscalls:sys_enter_getppid")]
    assert where == "ktapjit: bpf: syscalls:sys_enter_getppid: user: -e:2:38: `n` is updated in more than one way (+=, = 0)"


def test_a_kernel_fault_is_the_interpreters_error_then_trace_end_runs(calls, nothing_left):
    script = ("var t = {}\ntrace raw_syscalls:sys_enter { t[args.id] += 1 }\n"
              "trace_end { print(\"end\") }")
    command = ["--max-table", "2", "-e", script, "--", str(calls), "10", "10", "nowait"]
    status, out, err = ktapjit("--bpf", *command)
    interp = ktapjit("--engine", "interp", *command)
    assert (status, out) == (1, "end\n") == interp[:2]
    [error] = [line for line in err.splitlines() if line.startswith("error:")]
    assert error == "error: table overflow (2 entries) at -e:2:33"
    assert error in interp[2].splitlines()


def test_a_kernel_fault_ends_a_system_wide_trace_by_itself(calls):
    """Nothing else would end it: no command, no Ctrl-C. The workload runs
    once the status line says the trace started (on an idle machine its
    syscalls are the only ones that overflow the table)."""
    script = "var t = {}\ntrace raw_syscalls:sys_enter { t[args.id] += 1 }\ntrace_end { print(\"end\") }"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-m", "ktapjit", "run", "--bpf", "--max-table", "2", "-e", script],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        started = run.stderr.readline()
        subprocess.run([str(calls), "10", "10", "nowait"], check=True)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert started == status_line(1) + "\n"
    assert (run.returncode, out, err) == (1, "end\n", "error: table overflow (2 entries) at -e:2:33\n")


@pytest.mark.slow  # the verifier walks a million instructions, twice
def test_a_verifier_rejection_names_the_probe_and_its_line(calls, nothing_left):
    script = "var n = 0\ntrace syscalls:sys_enter_getppid { for (i = 1, 300000) { n += i } }"
    command = ["--max-loop", "1000000", "-e", script, "--", str(calls), "1", "0", "nowait"]
    status, out, err = ktapjit("--bpf", *command)
    assert (status, out) == (1, "")
    assert err == ("ktapjit: -e:2:1: the BPF verifier rejected `trace syscalls:sys_enter_getppid` "
                   "(program 'k0e0_sys_enter_'): BPF program is too large. Processed 1000001 insn "
                   "(-v shows its log)\n")
    status, _out, err = ktapjit("--bpf", "-v", *command)
    lines = err.splitlines()
    assert status == 1 and "ktapjit: bpf: verifier log:" in lines and len(lines) > 10
    assert lines[-1].endswith("rejected `trace syscalls:sys_enter_getppid` (program 'k0e0_sys_enter_'): "
                              "BPF program is too large. Processed 1000001 insn")


def test_replay_is_refused_in_one_line(tmp_path):
    status, out, err = ktapjit("--bpf", "--replay", str(tmp_path / "x.data"), "-e", "trace syscalls:* {}")
    assert (status, out, err) == (2, "", "ktapjit: the BPF engine needs live events: --engine bpf cannot run --replay\n")


def test_without_privileges_one_line():
    """The perf layer refuses first (tracefs), before anything is loaded."""
    # Imports first: nobody cannot read this Python's installation.
    code = ("import os, sys\nfrom ktapjit.cli import main\n"
            "import ktapjit.bpf.engine, ktapjit.bpf.lower, ktapjit.bpf.kernel_load, ktapjit.bpf.attach\n"
            "import ktapjit.bpf.source_map, ktapjit.bpf.tables, ktapjit.bpf.fault_ring, ktapjit.interp.engine\n"
            "import ktapjit.tracing.session, ktapjit.tracing.live, ktapjit.tracing.dispatch\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(main(['run', '--bpf', '-q', '-e', "
            "'var n = 0 trace syscalls:sys_enter_getppid { n += 1 } trace_end { print(n) }']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode in (1, 2)
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("ktapjit: ") and "ermission" in line


def test_ps_shows_the_running_sessions_source(calls):
    script = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }\n"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KTAPJIT_CACHE_DIR": os.environ.get("KTAPJIT_CACHE_DIR", "")}
    run = subprocess.Popen([sys.executable, "-m", "ktapjit", "run", "--bpf", "-e", script],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert run.stderr.readline().rstrip("\n") == status_line(1)
        ps = subprocess.run([sys.executable, "-m", "ktapjit", "ps", "-v"], capture_output=True, text=True,
                            env=env, timeout=60)
        assert ps.returncode == 0
        assert str(run.pid) in ps.stdout
        assert all(f"  {line}\n" in ps.stdout for line in script.splitlines())
        subprocess.run([str(calls), "5", "0", "nowait"], check=True)
        time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        out, _err = run.communicate(timeout=30)
        assert run.returncode == 0
        assert int(out) >= 5
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
