"""Fixtures for the BPF kernel layer's tests: they run against the real
kernel (root, bpf(2), tracefs), and each checks that it left no fd and no
program of its own behind."""

from __future__ import annotations

import io
import os
from typing import Optional

import pytest
from tests.cbuild import build_c
from tests.livecheck import live_skip_reason as tracefs_skip_reason

# `getppid N`: blocks until a byte arrives on stdin (so a program can be
# attached first), then makes exactly N getppid syscalls.
GETPPID_C = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    char c;
    if (read(0, &c, 1) != 1) return 2;
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    return 0;
}
"""

# `beats N`: blocks until a byte arrives on stdin, then calls beat() N times
# (a function a uprobe can take).
BEATS_C = r"""
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) void beat(long i) { __asm__ volatile("" :: "r"(i)); }

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    char c;
    if (read(0, &c, 1) != 1) return 2;
    for (long i = 0; i < n; i++) beat(i);
    return 0;
}
"""


def bpf_skip_reason() -> Optional[str]:
    reason = tracefs_skip_reason("BPF (bpf(2), perf_event_open on tracepoints)",
                                 "events/syscalls/sys_enter_getppid/id",
                                 "this kernel has no syscalls:sys_enter_getppid tracepoint")
    if reason is not None:
        return reason
    from ktapjit.bpf import syscall as sc
    from ktapjit.bpf.errors import BpfError
    try:
        os.close(sc.map_create(sc.BPF_MAP_TYPE_ARRAY, 4, 8, 1, "ktapjit_probe"))
    except BpfError as exc:
        return f"bpf(2) unavailable: {exc}"
    return None


_REASON = bpf_skip_reason()
needs_bpf = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def open_fds() -> set[str]:
    """What this process's fds point at, by fd number."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            found.add(f"{name} -> {os.readlink(f'/proc/self/fd/{name}')}")
        except OSError:
            pass  # the fd listdir itself used
    return found


def our_program_ids(names: set[str]) -> list[int]:
    """Ids of loaded programs that carry one of ``names``, loaded by this process
    (the kernel keeps no owner pid, so names made unique to the test tell)."""
    from ktapjit.bpf import syscall as sc
    return [prog_id for prog_id, info, _maps in sc.loaded_programs() if info.name.decode() in names]


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves an fd open."""
    before = open_fds()
    yield
    assert open_fds() - before == set()


@pytest.fixture(scope="session")
def getppid_workload(tmp_path_factory):
    return build_c(tmp_path_factory, "getppid", GETPPID_C, "-O2", purpose="the getppid workload")


@pytest.fixture(scope="session")
def beats_workload(tmp_path_factory):
    return build_c(tmp_path_factory, "beats", BEATS_C, "-O2", purpose="the uprobe workload")


def run_cli(*args: str) -> tuple[int, str, str]:
    """`ktapjit run ARGS` in this process: its status, stdout and stderr."""
    from ktapjit.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", *args], stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode()
