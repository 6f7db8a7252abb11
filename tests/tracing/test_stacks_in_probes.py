"""stack() and ustack() in tracepoint and uprobe bodies.

A probe whose body calls stack()/ustack() (an Op.Stack value in its Func) has
its event opened with callchains (PERF_SAMPLE_CALLCHAIN); its samples are
symbolized as profile-N samples are (tracing/stacks.py). Probes that do not
ask for stacks record none, and their stack() stays nil.

The workload is C built with frame pointers (-O0 -fno-omit-frame-pointer):
`ask_parent()` makes the getppid system call itself, with inline asm, so it is
the innermost user frame (libc's syscall() wrapper keeps no frame pointer and
would hide its caller), called N times from main.
"""

from __future__ import annotations

import re

import pytest

from tests.cbuild import build_c
from tests.tracing.conftest import live_skip_reason
from tests.tracing.runcli import ktapjit

ASK_C = r"""
#include <stdlib.h>
#include <sys/syscall.h>
__attribute__((noinline)) long ask_parent(void) {
    long ret;
    __asm__ __volatile__("syscall" : "=a"(ret) : "a"((long)SYS_getppid) : "rcx", "r11", "memory");
    return ret;
}
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 5;
    for (long i = 0; i < n; i++) ask_parent();
    return 0;
}
"""

FRAME = re.compile(r"\S+\+0x[0-9a-f]+|\[unknown\]")

SCRIPT = """var s = {}
var k = {}
trace syscalls:sys_enter_getppid { s[ustack()] += 1 }
trace sched:sched_process_exit /comm == "ask"/ { k[stack()] += 1 }
trace_end {
  for (st, v in pairs(s)) { printf("user %d\\n%s\\n--\\n", v, st) }
  for (st, v in pairs(k)) { printf("kernel %d\\n%s\\n--\\n", v, st) }
}
"""


def parse(out: str) -> list[tuple[str, int, list[str]]]:
    rows = []
    for block in out.split("\n--\n"):
        if block:
            head, _, stack = block.partition("\n")
            kind, count = head.split()
            rows.append((kind, int(count), stack.split("\n") if stack else []))
    return rows


# --- without tracing ---------------------------------------------------------------------

def compile_module(src: str):
    from ktapjit.compiler import compile_script
    return compile_script(src.encode(), "t.kp", until="build ssa").module


def test_only_probes_calling_stack_ask_for_callchains():
    from ktapjit.tracing.plan import uses_stacks

    module = compile_module("""trace a:b { print(stack()) }
trace a:c { if (pid > 0) { var x = {}; x[ustack()] = 1 } }
trace a:d { print(pid) }
profile-1ms { print(stack()) }
""")
    assert [uses_stacks(p.func) for p in module.probes] == [True, True, False]


@pytest.mark.not_bpf("replays a recording: the BPF engine traces live only")
def test_replay_of_events_without_callchains_gives_nil():
    from pathlib import Path
    data = Path(__file__).resolve().parents[1] / "data" / "sched.data"
    status, out, err = ktapjit("--replay", str(data), script="""var n = 0
trace sched:sched_switch { if (n == 0) { print(stack() == nil, ustack() == nil) } n += 1 }""")
    assert (status, out, err) == (0, "true\ttrue\n", "")


# --- live -------------------------------------------------------------------------------

_REASON = live_skip_reason()


def live_test(func):
    for mark in reversed([pytest.mark.skipif(_REASON is not None, reason=_REASON or ""), pytest.mark.live,
                          pytest.mark.usefixtures("clean_tracing_state")]):
        func = mark(func)
    return func


@pytest.fixture(scope="module")
def ask(tmp_path_factory):
    return build_c(tmp_path_factory, "ask", ASK_C, "-O0", "-fno-omit-frame-pointer", purpose="the workload")


@live_test
def test_tracepoint_user_and_kernel_stacks(ask, tmp_path):
    data = tmp_path / "stacks.data"
    status, out, err = ktapjit("-q", "--record", str(data), "--", str(ask), "7", script=SCRIPT)
    assert (status, err) == (0, ""), err
    rows = parse(out)
    users = [(count, frames) for kind, count, frames in rows if kind == "user"]
    kernels = [(count, frames) for kind, count, frames in rows if kind == "kernel"]
    for _, frames in users + kernels:
        assert all(FRAME.fullmatch(f) for f in frames), frames
    # Every getppid comes from ask_parent, called by main: one stack, 7 calls.
    assert len(users) == 1, out
    count, frames = users[0]
    assert count == 7, out
    assert frames[0].startswith("ask_parent+") and frames[1].startswith("main+"), out
    # The exit of the command: the kernel stack of sched_process_exit has do_exit.
    assert sum(count for count, _ in kernels) == 1, out
    assert any(f.startswith("do_exit+") for f in kernels[0][1]), out
    # A replay of the recording prints the same, byte for byte: the recording
    # names this kernel (its build-id), whose kallsyms names its frames.
    from ktapjit.events.records.perfdata import read_perf_data
    from ktapjit.events.probes.symbolize import running_kernel_build_id
    assert read_perf_data(data).kernel_build_id == running_kernel_build_id()
    assert ktapjit("--replay", str(data), script=SCRIPT) == (0, out, "")


@live_test
def test_uprobe_ustack(ask, tmp_path):
    script = f"""var s = {{}}
trace probe:{ask}:ask_parent {{ s[ustack()] += 1 }}
trace_end {{ for (st, v in pairs(s)) {{ printf("user %d\\n%s\\n--\\n", v, st) }} }}
"""
    data = tmp_path / "uprobe.data"
    status, out, err = ktapjit("-q", "--record", str(data), "--", str(ask), "5", script=script)
    assert (status, err) == (0, ""), err
    rows = parse(out)
    assert sum(count for _, count, _ in rows) == 5, out
    # At a function's entry the probed address is the innermost frame.
    assert all(frames[0] == "ask_parent+0x0" for _, _, frames in rows), out
    assert any(f.startswith("main+") for _, _, frames in rows for f in frames), out
    assert ktapjit("--replay", str(data), script=script) == (0, out, "")


@live_test
def test_ustack_depth_and_skip_pick_frames(ask):
    """ktap's stack(depth, skip): ustack(1) is the probed frame alone,
    ustack(1, 1) the frame that called it, and ustack(-1, 1) every frame
    but the probed one (ktap's -1 depth, as its stack_profile sample uses)."""
    script = f"""var s = {{}}
var rest = {{}}
trace probe:{ask}:ask_parent {{ s[ustack(1) .. "|" .. ustack(1, 1) .. "|" .. ustack(0)] += 1
  rest[ustack(-1, 1)] += 1 }}
trace_end {{ for (st, v in pairs(s)) {{ printf("%s %d\\n", st, v) }}
  for (st, v in pairs(rest)) {{ printf("%d\\n%s\\n", v, st) }} }}
"""
    status, out, err = ktapjit("-q", "--", str(ask), "4", script=script)
    assert (status, err) == (0, ""), err
    line, rest_count, *rest = out.splitlines()
    assert rest_count == "4" and rest[0].startswith("main+") and len(rest) > 1, out
    key, count = line.split()
    first, caller, none = key.split("|")
    assert (first, count, none) == ("ask_parent+0x0", "4", ""), out
    assert caller.startswith("main+"), out
