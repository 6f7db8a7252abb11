"""`--engine bpf` with `-- CMD`: the kernel programs keep running when the
traced command's children exit, and count what `--engine interp` counts
(docs/bpf.md, "Running")."""

from __future__ import annotations

import pytest
from tests.bpf.conftest import needs_bpf
from tests.bpf.test_engine_live import ktapjit, nothing_left  # noqa: F401 (a fixture)
from tests.cbuild import build_c
from tests.tracing.conftest import clean_tracing_state  # noqa: F401 (a fixture)

pytestmark = needs_bpf

N = 1000

# `forks N`: three times, forks a child that exits at once, waits for it,
# then makes N getppid calls and N calls of beat() itself.
FORKS_C = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

__attribute__((noinline)) void beat(long i) { __asm__ volatile("" :: "r"(i)); }

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    for (int round = 0; round < 3; round++) {
        pid_t child = fork();
        if (child == 0) _exit(0);
        waitpid(child, 0, 0);
        for (long i = 0; i < n; i++) { syscall(SYS_getppid); beat(i); }
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
    hang on events of their own, so they still count the command's calls."""
    script = script.replace("{W}", str(forks))
    command = ["-e", script, "--", str(forks), str(N)]
    status, out, err = ktapjit("--bpf", "-v", *command)
    assert (status, out) == (0, f"{3 * N}\n"), err
    assert "kernel" in err
    assert ktapjit("--engine", "interp", *command)[:2] == (status, out)
