"""`ktapjit run --engine compare --bpf`: the BPF engine traces live while
the same perf events are recorded (its programs keep every sample), the
interpreter replays the recording, and what the script made is compared
(docs/bpf.md, "Comparing with the interpreter"). With default flags, as a
user runs it.

Every example runs over examples/demo.c built with gcc, and must give
"identical output"; the examples whose probes the placement puts in the
kernel show it in the timing line (`N in the kernel`), so the comparison
is one of kernel code, not of two interpreters.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.bpf.conftest import needs_bpf, open_fds
from tests.cbuild import build_c
from tests.tracing.conftest import clean_tracing_state, status_line  # noqa: F401 (a fixture)

from ktapjit.bpf.loaded import loaded_sessions
from ktapjit.cli import main

pytestmark = [needs_bpf, pytest.mark.live]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
DEMO_PATH = "/tmp/demo"  # where the examples' headers build it
N, SPIN_MS = 100, 300

COUNT = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "demo", EXAMPLES_DIR / "demo.c", "-O0", "-fno-omit-frame-pointer",
                   purpose="examples/demo.c")


def ktapjit(*args: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", *args], stdout=out, stderr=err)
    return status, out.getvalue().decode("latin-1"), err.getvalue().decode("latin-1")


def kernel_fds() -> set[str]:
    """The fds of kernel objects (BPF programs and maps, perf events, rings);
    an ELF file a uprobe was resolved in stays open in the symbol cache."""
    return {fd for fd in open_fds() if "anon_inode:" in fd}


@pytest.fixture
def nothing_left(clean_tracing_state):  # noqa: F811
    """No BPF program or map, perf event or ring of the run outlives it."""
    fds = kernel_fds()
    yield
    assert kernel_fds() - fds == set()
    assert [s for s in loaded_sessions() if s.carried.pid == os.getpid()] == []


def loaded_libc(program: Path) -> str:
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd to find this machine's libc")
    out = subprocess.run([ldd, str(program)], capture_output=True, text=True, check=True).stdout
    return re.search(r"libc\.so\.6 => (\S+)", out).group(1)


def example(name: str, demo: Path, tmp_path: Path) -> Path:
    """The example as its header says to run it here: /tmp/demo is the demo
    built here, and libc the one it loads."""
    text = (EXAMPLES_DIR / f"{name}.kp").read_text().replace(DEMO_PATH, str(demo))
    text = re.sub(r"probe:/\S*/libc\.so\.6:", f"probe:{loaded_libc(demo)}:", text)
    copy = tmp_path / f"{name}.kp"
    copy.write_text(text)
    return copy


# (example, perf events the status line counts, whether its probes run in the kernel)
EXAMPLES = [
    ("syscount", 1, True),
    ("syscount_by_process", 1, True),
    ("schedtime", 2, False),  # order-dependent: the time a pid was switched in
    ("syslat", 2, False),  # the slowest call so far: order-dependent
    ("filtered", 2, False),  # it prints
    ("sysdist", 2, False),  # gettimeofday_ns() in a recorded run (docs/bpf.md)
    ("malloc_sizes", 1, True),  # a uprobe on libc's malloc
    ("funclat", 2, False),  # gettimeofday_ns() in a recorded run
    ("usdt", 1, False),  # `last_n = ...`: the last writer wins
    ("flamegraph", 1, False),  # stack(): in user space
    ("opensnoop", 1, False),  # they print
    ("execsnoop", 1, False),
    ("offcputime", 1, False),  # `left[tid] = ...`: the last writer wins
]


def test_the_examples_cover_examples_dir():
    names = {p.stem for p in EXAMPLES_DIR.glob("*.kp")}
    assert names == {name for name, _n, _k in EXAMPLES} | {"hello"}


@pytest.mark.parametrize("name, events, in_kernel", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_compare_bpf_with_interp_on_the_example(demo, tmp_path, nothing_left, name, events, in_kernel):
    status, out, err = ktapjit("--engine", "compare", "--bpf", str(example(name, demo, tmp_path)),
                               "--", str(demo), str(N), str(SPIN_MS))
    lines = err.splitlines()
    assert status == 0, err
    assert lines[:2] == [status_line(events),
                         f"compare: identical output ({len(out.encode('latin-1'))} bytes, 0 stderr lines, status 0)"]
    [timing] = lines[2:]
    assert timing.startswith("compare: ") and ("in the kernel (not timed)" in timing) == in_kernel, timing


def test_compare_bpf_without_events(nothing_left):
    """hello.kp has neither probes nor timers: both trials run its top level and trace_end."""
    status, out, err = ktapjit("--engine", "compare", "--bpf", str(EXAMPLES_DIR / "hello.kp"))
    assert status == 0, err
    assert err.splitlines() == [f"compare: identical output ({len(out)} bytes, 0 stderr lines, status 0)",
                                "compare: no events; nothing to time per event"]


@pytest.mark.parametrize("flags", [["--engine", "compare", "--bpf"], ["--bpf", "--engine", "compare"]],
                         ids=["compare-then-bpf", "bpf-then-compare"])
def test_a_count_in_the_kernel_equals_the_replay(demo, nothing_left, flags):
    """Either order names the BPF engine as the one compared; its events ran in the kernel."""
    status, out, err = ktapjit(*flags, "-e", COUNT.replace("getppid", "brk"), "--", str(demo), "3")
    lines = err.splitlines()
    assert (status, lines[:2]) == (0, [status_line(1), f"compare: identical output ({len(out)} bytes, "
                                                        "0 stderr lines, status 0)"]), err
    n = int(out)
    assert n > 0 and re.fullmatch(rf"compare: {n} events?; interp [\d,]+ ns/event, bpf {n:,} in the kernel "
                                  r"\(not timed\)", lines[2]), err


def test_a_kernel_fault_is_compared_like_an_interpreter_error(demo, nothing_left):
    """The kernel's fault and the replay's error are the same message at the
    same place, then trace_end runs: identical, status 1."""
    script = 'var t = {}\ntrace raw_syscalls:sys_enter { t[args.id] += 1 }\ntrace_end { print("end") }'
    status, out, err = ktapjit("--engine", "compare", "--bpf", "--max-table", "2", "-e", script,
                               "--", str(demo), "3")
    lines = err.splitlines()
    assert (status, out) == (1, "end\n"), err
    assert lines[:3] == [status_line(1), "error: table overflow (2 entries) at -e:2:33",
                         "compare: identical output (4 bytes, 1 stderr lines, status 1)"], err


def test_replay_is_refused_in_one_line(tmp_path):
    status, out, err = ktapjit("--engine", "compare", "--bpf", "--replay", str(tmp_path / "x.data"),
                               "-e", "trace syscalls:* {}")
    assert (status, out, err) == (2, "", "ktapjit: the BPF engine needs live events: "
                                         "--engine compare --bpf cannot run --replay\n")


# `pace`: 50 getpgid calls a millisecond, forever: a steady load the
# user-space half (which skips the kept samples of kernel probes) keeps up
# with, so that a stop cuts no backlog out of the recording. getpgid, not
# getppid: the other live tests' BPF programs on getppid drop samples of
# every perf event there (docs/bpf.md, "Other tracers").
PACE_C = r"""
#include <unistd.h>
#include <sys/syscall.h>
int main(void) { for (;;) { for (int i = 0; i < 50; i++) syscall(SYS_getpgid, 0); usleep(1000); } }
"""


@pytest.fixture(scope="module")
def pace(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "pace", PACE_C, "-O2", purpose="the load")


def test_a_system_wide_count_under_load_is_the_replays(pace, clean_tracing_state):  # noqa: F811
    """Programs run from their attach to the close of their perf events,
    enabled or not; the gate makes them count exactly while perf samples.
    Without it, a busy tracepoint's hits after the disable (trace_end, the
    close) were counted in the kernel and missing from the recording. As a
    user stops it: Ctrl-C."""
    load = subprocess.Popen([str(pace)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-m", "ktapjit", "run", "--engine", "compare", "--bpf", "-e",
                            "var n = 0\ntrace syscalls:sys_enter_getpgid { n += 1 }\ntrace_end { print(n) }"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert run.stderr.readline().decode() == status_line(1) + "\n"
        time.sleep(0.5)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        load.kill()
        load.wait()
        if run.poll() is None:
            run.kill()
            run.wait()
    out, lines = out.decode(), err.decode().splitlines()
    assert (run.returncode, lines[0]) == (0, f"compare: identical output ({len(out)} bytes, "
                                             "0 stderr lines, status 0)"), err
    assert int(out) > 1000 and lines[1].endswith(" in the kernel (not timed)"), err
