"""Memory read at event time under `--engine bpf`: a kernel-placed probe's
program reads `user_string()` itself (docs/bpf.md, "Memory read at event
time"), and the values are the interpreter's, which pairs the companion
records (docs/language-notes.md): exact paths, cut at --max-string, nil for
NULL and for a fault.

The workload, built with gcc, opens paths it builds on its stack (memory it
has touched, which the kernel can read), a NULL path, an unmapped one and
one longer than the bound; it makes no child process."""

from __future__ import annotations

import re

import pytest
from tests.bpf.conftest import needs_bpf, run_cli as ktapjit
from tests.bpf.test_engine_live import nothing_left  # noqa: F401 (a fixture)
from tests.cbuild import build_c
from tests.tracing.conftest import clean_tracing_state  # noqa: F401 (a fixture)


pytestmark = needs_bpf

OPENS_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    char path[300];
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/nonexistent/ktapjit-mem/f%ld", i % 3);
        syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);
    }
    memset(path, 'x', sizeof path);
    memcpy(path, "/nonexistent/long-", 18);
    path[200] = 0;
    for (long i = 0; i < n; i++) {
        syscall(SYS_openat, AT_FDCWD, NULL, O_RDONLY);
        syscall(SYS_openat, AT_FDCWD, (char *)8, O_RDONLY);  /* unmapped: a fault */
        syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);
    }
    return 0;
}
"""
N = 30

COUNT_PATHS = """var t = {}
trace syscalls:sys_enter_openat {
    var path = user_string(args.filename)
    if (path == nil) { path = "<nil>" }
    t[path] += 1
}
trace_end { for (k, v in pairs(t)) { if (v >= %d) { printf("%%s %%d\\n", k, v) } } }
""" % (N // 3)

LONG = "/nonexistent/long-" + "x" * (100 - len("/nonexistent/long-"))


@pytest.fixture(scope="module")
def opens(tmp_path_factory):
    return build_c(tmp_path_factory, "opens", OPENS_C, "-O2", purpose="the openat workload")


def test_user_string_keys_count_exact_paths_in_the_kernel(opens, nothing_left):  # noqa: F811
    command = ["--max-string", "100", "-e", COUNT_PATHS, "--", str(opens), str(N)]
    status, out, err = ktapjit("--bpf", "-v", *command)
    assert "ktapjit: bpf: syscalls:sys_enter_openat: kernel" in err.splitlines()
    assert (status, out) == (0, f"/nonexistent/ktapjit-mem/f0 {N // 3}\n/nonexistent/ktapjit-mem/f1 {N // 3}\n"
                                f"/nonexistent/ktapjit-mem/f2 {N // 3}\n<nil> {2 * N}\n{LONG} {N}\n")
    assert ktapjit("--engine", "interp", *command)[:2] == (status, out)


def test_at_the_default_max_string_the_probe_stays_in_user_space(opens, nothing_left):  # noqa: F811
    command = ["-e", COUNT_PATHS, "--", str(opens), str(N)]
    status, out, err = ktapjit("--bpf", "-v", *command)
    assert ("ktapjit: bpf: syscalls:sys_enter_openat: user: -e:5:6: the key of `t` is a string of up to 4096 "
            "bytes, above the kernel's 128") in err.splitlines()
    assert (status, out) == ktapjit("--engine", "interp", *command)[:2]
    assert f"{'/nonexistent/long-' + 'x' * 182} {N}\n" in out


def test_compare_bpf_replays_the_companions_of_a_kernel_probe(opens, nothing_left):  # noqa: F811
    """The kernel counts by the paths its program read; the recording still
    holds the companion records, and the interpreter's replay of it counts
    the same paths."""
    status, out, err = ktapjit("--engine", "compare", "--bpf", "--max-string", "100", "-e", COUNT_PATHS,
                               "--", str(opens), str(N))
    lines = err.splitlines()
    assert status == 0, err
    assert f"{LONG} {N}\n" in out and f"<nil> {2 * N}\n" in out
    assert lines[1] == f"compare: identical output ({len(out)} bytes, 0 stderr lines, status 0)", err
    assert lines[2].startswith("compare: ") and "in the kernel (not timed)" in lines[2], err


def test_compare_bpf_on_in_iowait_in_the_kernel(opens, nothing_left):  # noqa: F811
    """A task entering openat is running, not waiting for I/O: 0, read
    through task_struct's BTF offset in both the program and the companion."""
    script = ("var t = {}\ntrace syscalls:sys_enter_openat { t[in_iowait()] += 1 }\n"
              "trace_end { for (k, v in pairs(t)) { printf(\"%s %d\\n\", k, v) } }")
    status, out, err = ktapjit("--engine", "compare", "--bpf", "-e", script, "--", str(opens), str(N))
    lines = err.splitlines()
    assert status == 0, err
    assert lines[1] == f"compare: identical output ({len(out)} bytes, 0 stderr lines, status 0)", err
    assert "in the kernel (not timed)" in lines[2], err
    assert re.fullmatch(r"0 \d+\n", out) and int(out.split()[1]) >= 4 * N, out
