"""`--engine bpf` with `-- CMD` and `-p PID`: the kernel programs keep
running when the traced command's children exit, and count the traced
process and every process and thread it starts while traced, as `--engine
interp` does (docs/bpf.md, "Running")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.bpf.conftest import needs_bpf
from tests.bpf.test_engine_live import ktapjit, nothing_left  # noqa: F401 (a fixture)
from tests.cbuild import build_c
from tests.tracing.conftest import LiveKtapjit, Procs, release, status_line
from tests.tracing.conftest import clean_tracing_state, procs  # noqa: F401 (fixtures)

pytestmark = needs_bpf

REPO = Path(__file__).resolve().parents[2]

N = 1000

# `forks N [wait]`: (with `wait`, once a byte arrives on stdin) three times,
# forks a child that makes N getppid calls and N calls of beat(), waits for
# it, then makes as many calls itself.
FORKS_C = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

__attribute__((noinline)) void beat(long i) { __asm__ volatile("" :: "r"(i)); }

static void calls(long n) { for (long i = 0; i < n; i++) { syscall(SYS_getppid); beat(i); } }

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    char c;
    if (argc > 2 && strcmp(argv[2], "wait") == 0 && read(0, &c, 1) != 1) return 2;
    for (int round = 0; round < 3; round++) {
        pid_t child = fork();
        if (child == 0) { calls(n); _exit(0); }
        waitpid(child, 0, 0);
        calls(n);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def forks(tmp_path_factory):
    return build_c(tmp_path_factory, "forks", FORKS_C, "-O2", purpose="the forking workload")


AFTER_A_CHILD_EXITS = [
    ("a tracepoint", "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"),
    ("a uprobe", "var n = 0\ntrace probe:{W}:beat { n += 1 }\ntrace_end { print(n) }"),
]


@pytest.mark.parametrize("name, script", AFTER_A_CHILD_EXITS, ids=[c[0] for c in AFTER_A_CHILD_EXITS])
def test_a_kernel_probe_keeps_counting_after_a_child_exits(forks, nothing_left, name, script):  # noqa: F811
    """Each exiting child frees the perf events it inherited; the programs
    hang on events of their own, so they still count the calls after it."""
    script = script.replace("{W}", str(forks))
    command = ["-e", script, "--", str(forks), str(N)]
    status, out, err = ktapjit("--bpf", "-v", *command)
    assert (status, out) == (0, f"{6 * N}\n"), err
    assert "kernel" in err
    assert ktapjit("--engine", "interp", *command)[:2] == (status, out)


def test_a_shell_commands_children_are_counted_as_the_interpreter_counts(forks, nothing_left):  # noqa: F811
    """sh -c runs three children one after the other (sh's own getppid is the 1)."""
    script = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"
    command = ["-e", script, "--", "/bin/sh", "-c", f"{forks} {N}; {forks} {N}; {forks} {N}"]
    status, out, err = ktapjit("--bpf", "-v", *command)
    assert (status, out) == (0, f"{18 * N + 1}\n"), err
    assert ktapjit("--engine", "interp", *command)[:2] == (status, out)


def test_grandchildren_are_counted_and_other_processes_are_not(forks, nothing_left, tmp_path):  # noqa: F811
    """A child of a child of the command is in scope; a process that runs
    its calls while the trace runs (started beside it, released and waited
    for by the command through two fifos) is not."""
    go, done = tmp_path / "go", tmp_path / "done"
    os.mkfifo(go)
    os.mkfifo(done)
    other = subprocess.Popen(["/bin/sh", "-c", f"read x < {go}; {forks} {N}; echo y > {done}"])
    script = ("var t = {}\ntrace syscalls:sys_enter_getppid { t[execname] += 1 }\n"
              "trace_end { print(t[\"forks\"], len(t)) }")
    run = f"sh -c '{forks} {N} & {forks} {2 * N}; wait'; echo x > {go}; read y < {done}"
    try:
        status, out, err = ktapjit("--bpf", "-v", "-e", script, "--", "/bin/sh", "-c", run)
    finally:
        assert other.wait(timeout=30) == 0
    assert (status, out) == (0, f"{18 * N}\t2\n"), err  # forks and sh
    other = subprocess.Popen(["/bin/sh", "-c", f"read x < {go}; {forks} {N}; echo y > {done}"])
    try:
        assert ktapjit("--engine", "interp", "-e", script, "--", "/bin/sh", "-c", run)[:2] == (status, out)
    finally:
        assert other.wait(timeout=30) == 0


def _traced_by_pid(procs: Procs, forks: Path, engine: str, script: str) -> tuple[int, str, str]:
    """`forks N wait` started first, then traced with -p, then released."""
    work = procs.popen([str(forks), str(N), "wait"], stdin=subprocess.PIPE)
    live = LiveKtapjit(procs.popen([sys.executable, "-m", "ktapjit", "run", "--engine", engine, "-e", script,
                                    "-p", str(work.pid)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert live.wait_tracing() == status_line(1)
    release(work)
    assert work.wait(timeout=30) == 0
    return live.stop(signal.SIGINT)


def test_a_traced_pids_children_are_counted_as_the_interpreter_counts(forks, procs, nothing_left):  # noqa: F811
    script = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"
    status, out, err = _traced_by_pid(procs, forks, "bpf", script)
    assert (status, out) == (0, f"{6 * N}\n"), err
    assert _traced_by_pid(procs, forks, "interp", script)[:2] == (status, out)
