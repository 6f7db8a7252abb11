"""The command line as a user meets it: every command, its help, and every
kind of bad input ending in one clear line and the right status."""

import io
import os
import shutil
import subprocess
import sys

import pytest

from ktapjit import __version__
from ktapjit.cli import main

ROOT_WITH_TRACEFS = os.geteuid() == 0 and os.path.isdir("/sys/kernel/tracing")
needs_tracefs = pytest.mark.skipif(not ROOT_WITH_TRACEFS, reason="needs root and tracefs at /sys/kernel/tracing")


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode()


CASES = [
    # argv, status, stdout must contain, stderr must contain
    (["--version"], 0, f"ktapjit {__version__}", ""),
    (["--help"], 0, "run", ""),
    (["run", "--help"], 0, "--max-loop", ""),
    (["ir", "--help"], 0, "--dump-after", ""),
    (["list", "--help"], 0, "GLOB", ""),
    (["record", "--help"], 0, "EVENTDEF", ""),
    ([], 2, "", "usage"),
    (["frobnicate"], 2, "", "invalid choice"),
    (["run"], 2, "", "no script given"),
    (["run", "/no/such.kp"], 2, "", "cannot read script '/no/such.kp'"),
    (["run", "--max-loop", "0", "-e", "print(1)"], 2, "", "must be at least 1"),
    (["run", "--max-loop", "x", "-e", "print(1)"], 2, "", "invalid number 'x'"),
    (["run", "--buffer-pages", "3", "-e", "print(1)"], 2, "", "power of two"),
    (["run", "--engine", "jit", "-e", "print(1)"], 0, "1\n", ""),
    (["run", "--jit", "-e", "print(1 / 0)"], 1, "", "error: divide by zero at -e:1:9"),
    (["run", "--engine", "compare", "-e", "print(1)"], 0, "1\n", "compare: identical output"),
    (["run", "-e", "print(1)", "--", "true"], 2, "", "nothing to trace"),
    (["run", "--replay", "x.data", "--record", "y.data", "-e", "print(1)"], 2, "", "cannot be combined"),
    (["ir", "-e", "print(1)", "--", "true"], 2, "", "only for 'ktapjit run'"),
    (["ir", "--dump-after", "nope", "-e", "print(1)"], 2, "", "unknown pass 'nope'"),
    (["run", "-e", "trace sched:sched_switch { }", "--", "/no/such/cmd"], 2, "", "cannot run '/no/such/cmd'"),
    (["run", "-p", "999999999", "-e", "trace sched:sched_switch { }"], 2, "", "no process with pid 999999999"),
    (["run", "-p", "1", "-e", "trace a:b { }", "--", "true"], 2, "", "either -p PID or -- CMD"),
    (["run", "-e", 'print("hi")'], 0, "hi\n", ""),
    (["run", "-e", "print(arg[1], arg[2], arg[0])", "7", "x"], 0, "7\tx\t-e\n", ""),
    (["ir", "-e", "function f(n) { var i = 0\n while (i < n) { i += 1 } return i }"], 0, "Phi", ""),
    (["ir", "-e", "for (i = 1, 3) { print(i) }"], 0, "= Phi", ""),
]


@pytest.mark.parametrize("argv,status,stdout,stderr", CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES])
def test_command_line(argv, status, stdout, stderr):
    got_status, got_out, got_err = cli(*argv)
    assert got_status == status, got_err
    assert stdout in got_out
    assert stderr in got_err
    assert "Traceback" not in got_err


@pytest.mark.parametrize("argv, engine, compared", [
    ([], "jit", "jit"),
    (["--bpf"], "bpf", "jit"),
    (["--engine", "compare"], "compare", "jit"),
    (["--engine", "compare", "--bpf"], "compare", "bpf"),
    (["--bpf", "--engine", "compare"], "compare", "bpf"),
    (["--engine", "compare", "--jit"], "compare", "jit"),
    (["--engine", "compare", "--engine", "interp"], "interp", "jit"),
    (["--engine", "interp", "--jit"], "jit", "jit"),
])
def test_compare_takes_the_engine_named_beside_it(argv, engine, compared):
    """--engine compare checks the JIT, or with --bpf (before or after it)
    the BPF engine, against the interpreter; otherwise the last engine named wins."""
    from ktapjit.cli import _build_parser

    ns = _build_parser("run").parse_args(["run", *argv, "-e", "print(1)"])
    assert (ns.engine, ns.compared) == (engine, compared)


def test_output_file(tmp_path):
    target = tmp_path / "out.txt"
    status, out, _ = cli("run", "-o", str(target), "-e", 'printf("%d\\n", 42)')
    assert (status, out, target.read_text()) == (0, "", "42\n")


def test_unwritable_output_file():
    status, _, err = cli("run", "-o", "/no/such/dir/out.txt", "-e", "print(1)")
    assert status == 2 and "cannot write output file" in err


def test_real_entry_point_prints_no_traceback_on_internal_paths():
    proc = subprocess.run([sys.executable, "-m", "ktapjit", "run", "-e", "print(1"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("-e:1:8: error:") and "Traceback" not in proc.stderr


@needs_tracefs
def test_list_events_and_fields():
    if not os.path.isdir("/sys/kernel/tracing/events/syscalls/sys_enter_getppid"):
        pytest.skip("this kernel has no syscalls:sys_enter_getppid tracepoint (CONFIG_FTRACE_SYSCALLS)")
    status, out, _ = cli("list", "sched:sched_switch", "-v")
    assert status == 0
    assert out.splitlines()[:3] == ["sched:sched_switch", "    arg0  char prev_comm[16]", "    arg1  pid_t prev_pid"]
    status, out, _ = cli("list", "*sys_enter_getpp*")
    assert (status, out) == (0, "syscalls:sys_enter_getppid\n")
    assert cli("list", "nope:*")[0] == 2


@needs_tracefs
@pytest.mark.skipif(shutil.which("perf") is None, reason="perf (Debian linux-perf) is not installed")
def test_record_writes_what_perf_script_reads(tmp_path):
    data = tmp_path / "rec.data"
    status, _, err = cli("record", "-q", "-e", "sched:sched_process_exit", "-o", str(data), "--", "/bin/true")
    assert status == 0, err
    text = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in text.splitlines()] == ["true"]
    status, out, err = cli("run", "--replay", str(data), "-e", "trace sched:sched_process_exit { print(execname) }")
    assert (status, out) == (0, "true\n"), err


@needs_tracefs
def test_record_unknown_event_writes_nothing(tmp_path):
    data = tmp_path / "rec.data"
    status, _, err = cli("record", "-e", "sched:nope", "-o", str(data), "--", "/bin/true")
    assert status == 2 and "unknown event 'sched:nope'" in err and not data.exists()


def run_shell(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True)


KTAPJIT = f"{sys.executable} -m ktapjit"


def test_closed_pipe_ends_quietly():
    proc = run_shell(f"{KTAPJIT} run -e 'for (i = 1, 100000) {{ print(i) }}' | head -1; echo \"${{PIPESTATUS[0]}}\"")
    assert proc.stdout.split() == ["1", "141"] and proc.stderr == ""


def test_full_disk_is_one_line():
    status, _, err = cli("run", "-o", "/dev/full", "-e", "print(1)")
    assert status == 1 and err == "ktapjit: cannot write output: No space left on device\n"


def test_runtime_error_is_reported_before_trace_end_runs():
    proc = run_shell(f"{KTAPJIT} run -e 'print(\"top\")\nvar x = nil + 1\ntrace_end {{ print(\"end\") }}' 2>&1")
    assert proc.stdout.splitlines() == ["top", "error: attempt to perform arithmetic on a nil value at -e:2:13", "end"]


# A real `ktapjit` process gets a real SIGINT at the instant its work is done:
# from a wrapper of main(), right after main() returned, or from an atexit
# hook, while the interpreter shuts down. The run's output stands, its status
# says it ran, and no traceback follows.
_LATE_SIGINT = {
    "as main returns": "cli.main = late(cli.main)",
    "during shutdown": "atexit.register(interrupt)",
}


@pytest.mark.parametrize("when", sorted(_LATE_SIGINT))
def test_a_ctrl_c_as_the_process_exits_is_no_traceback(when):
    program = "\n".join([
        "import atexit, os, signal, sys",
        "import ktapjit.cli as cli",
        "def interrupt(): os.kill(os.getpid(), signal.SIGINT)",
        "def late(main):",
        "    def run(*args, **kwargs):",
        "        status = main(*args, **kwargs)",
        "        interrupt()",
        "        return status",
        "    return run",
        _LATE_SIGINT[when],
        "sys.argv = ['ktapjit', 'run', '-e', 'print(\"hi\")']",
        "cli.entry()",
    ])
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    assert (done.stdout, done.stderr.decode()) == (b"hi\n", {"as main returns": "ktapjit: interrupted\n",
                                                               "during shutdown": ""}[when])
    assert done.returncode == {"as main returns": 130, "during shutdown": 0}[when]
