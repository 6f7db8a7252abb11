"""argstr of syscall events is the kernel's own text trace, line for line.

A private tracefs instance traces the same syscall events of the same
command as ktapjit does; the text after each line's common prefix in the
instance's `trace` file must be exactly what `print(argstr)` printed, in the
same order, under each engine (conftest's `engine` fixture): the loader's
mmap/mprotect/openat/close, and the workload's own, chosen for the rule's
edges (fd 12 prints as 0xc, fd 3 as 3, a failed openat returns
0xfffffffffffffffe, mmap's fd -1 is 0xffffffff).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.cbuild import build_c
from tests.tracing import runcli
from tests.tracing.conftest import REPO, TRACEFS, live_skip_reason

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = pytest.mark.live

COMM = "argwork"
SYSCALLS = ("close", "openat", "write", "dup2", "mmap", "mprotect", "munmap", "getppid")

WORKLOAD_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    int fd = open("/dev/null", O_WRONLY);
    write(fd, "hello", 5);
    close(dup2(fd, 12));
    close(fd);
    openat(AT_FDCWD, "/nonexistent/ktapjit", O_RDONLY);
    void *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(p, 4096, PROT_READ);
    munmap(p, 8192);
    syscall(SYS_getppid);
    return 0;
}
"""

# "   argwork-3824    [001] ..... 26716.861903: sys_mmap(addr: 0, ...)": the text after the timestamp.
_TRACE_LINE = re.compile(r"^\s*(?P<comm>.+)-(?P<pid>\d+)\s+\[\d+\]\s+\S+\s+\d+\.\d+: (?P<text>.*)$")


@pytest.fixture(scope="module")
def argwork(tmp_path_factory):
    return build_c(tmp_path_factory, COMM, WORKLOAD_C, "-O1", purpose="the syscall workload")


def _events() -> list[str]:
    return [f"syscalls:sys_{kind}_{name}" for name in SYSCALLS for kind in ("enter", "exit")]


@pytest.fixture
def instance():
    """A private tracefs instance tracing the events for COMM only; removed on every path."""
    path = TRACEFS / "instances" / f"ktapjit_argstr_{os.getpid()}"
    path.mkdir()
    try:
        for event in _events():
            control = path / "events" / event.replace(":", "/")
            (control / "filter").write_text(f'comm == "{COMM}"')
            (control / "enable").write_text("1")
        yield path
    finally:
        try:
            (path / "events" / "enable").write_text("0")
        finally:
            for _ in range(50):  # a reader may hold it for a moment
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def _kernel_lines(path) -> list[str]:
    lines = []
    for line in (path / "trace").read_text(errors="surrogateescape").splitlines():
        m = _TRACE_LINE.match(line)
        if m and m.group("comm").strip() == COMM:
            lines.append(m.group("text"))
    return lines


def test_argstr_is_the_kernels_text(argwork, instance, engine, clean_tracing_state):
    script = f"trace {', '.join(_events())} {{ print(argstr) }}"
    proc = subprocess.run([sys.executable, "-m", "ktapjit", "run", *runcli.engine_args(), "-q", "-e", script,
                           "--", str(argwork)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    (instance / "tracing_on").write_text("0")
    kernel = _kernel_lines(instance)
    ours = proc.stdout.splitlines()
    for line in ("sys_dup2(oldfd: 3, newfd: 0xc)", "sys_close(fd: 0xc)", "sys_close(fd: 3)",
                 "sys_write(fd: 3, buf: ", "sys_openat -> 0xfffffffffffffffe", "sys_getppid()",
                 "sys_mprotect -> 0x0"):
        assert any(text.startswith(line) for text in kernel), f"the workload's {line!r} is not in the trace"
    assert ours == kernel
