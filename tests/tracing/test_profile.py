"""`profile-N` sampling: the cpu-clock event with callchains, stack() and
ustack(), live and replayed.

The workload is C built with frame pointers (-O0 -fno-omit-frame-pointer) so
the kernel can walk its user stack: for about 0.3 s (or argv[1] seconds) it alternates `spin()`, a
user-mode loop, and `kwork()`, which reads /dev/zero (time in the kernel).
"""

from __future__ import annotations

import re
import resource

import pytest

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.perf_ring import online_cpus
from ktapjit.semantics.stack_request import StackRequest
from ktapjit.tracing.stacks import Stacks, split_callchain
from tests.cbuild import build_c
from tests.tracing.conftest import live_skip_reason
from tests.tracing.runcli import ktapjit

SPIN_C = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static volatile unsigned long sink;
static char buf[1 << 16];
__attribute__((noinline)) void spin(void) {
    for (int i = 0; i < 100000; i++) sink += i;
}
__attribute__((noinline)) void kwork(int fd) {
    for (int i = 0; i < 8; i++) sink += read(fd, buf, sizeof buf);
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    int fd = open("/dev/zero", O_RDONLY);
    double end = now() + (argc > 1 ? atof(argv[1]) : 0.3);
    while (now() < end) {
        spin();
        kwork(fd);
    }
    return 0;
}
"""

FRAME = re.compile(r"\S+\+0x[0-9a-f]+|\[unknown\]")

# Every sample of the command: its user and kernel stack, one row per distinct pair.
STACKS = """var s = {}
profile-1ms { if (execname == "spin") { s[ustack() .. "|" .. stack()] += 1 } }
trace_end {
  for (k, v in pairs(s)) { printf("%d\\t%s\\n--\\n", v, k) }
}
"""


def parse_rows(out: str) -> list[tuple[int, list[str], list[str]]]:
    """(count, user frames, kernel frames) per row STACKS prints."""
    rows = []
    for block in out.split("\n--\n"):
        if not block:
            continue
        count, _, key = block.partition("\t")
        user, _, kernel = key.partition("|")
        rows.append((int(count), user.split("\n") if user else [], kernel.split("\n") if kernel else []))
    return rows


# --- without tracing ---------------------------------------------------------------------

def test_split_callchain_parts():
    chain = (abi.PERF_CONTEXT_KERNEL, 0xffff1, 0xffff2, abi.PERF_CONTEXT_USER, 0x401000, 0x402000)
    assert split_callchain(chain) == ([0xffff1, 0xffff2], [0x401000, 0x402000])
    assert split_callchain((abi.PERF_CONTEXT_USER, 0x10)) == ([], [0x10])
    assert split_callchain(()) == ([], [])


def test_stack_strings_join_frames_innermost_first():
    from ktapjit.events.records.decode import Sample
    from ktapjit.events.probes.symbolize import KernelSymbolizer

    kernel = KernelSymbolizer(text="ffffffff81000000 T inner\nffffffff81001000 T outer\n")
    stacks = Stacks(kernel)
    chain = (abi.PERF_CONTEXT_KERNEL, 0xffffffff81000010, 0xffffffff81001020, abi.PERF_CONTEXT_USER, 0x1234)
    sample = Sample(1, 0, 7, 7, 1, 0, 1, None, chain, None)
    assert stacks.render(sample, KERNEL) == b"inner+0x10\nouter+0x20"
    assert stacks.render(sample, USER) == b"[unknown]"  # pid 7 has no mappings
    no_kernel = Sample(1, 0, 7, 7, 1, 0, 1, None, (abi.PERF_CONTEXT_USER, 0x1234), None)
    assert stacks.render(no_kernel, KERNEL) == b""
    assert stacks.render(Sample(1, 0, 7, 7, 1, 0, 1, None, None, None), KERNEL) is None


KERNEL, USER = StackRequest("kernel"), StackRequest("user")
FRAMES = "a b c d e".split()


@pytest.mark.parametrize("depth,skip,kept", [
    (None, 0, "a b c d e"),  # stack(): every frame
    (2, 0, "a b"),  # stack(2)
    (2, 1, "b c"),  # stack(2, 1): the innermost frame left out
    (10, 3, "d e"),  # fewer frames than asked for
    (0, 0, ""),
    (3, 9, ""),  # everything skipped
])
def test_stack_depth_and_skip_keep_frames_like_ktap(depth, skip, kept):
    assert list(StackRequest("kernel", depth, skip).frames(FRAMES)) == kept.split()


@pytest.mark.not_bpf("replays a recording: the BPF engine traces live only")
def test_replay_without_profile_samples_is_a_binding_error():
    data = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "sched.data"
    status, out, err = ktapjit("--replay", str(data), script="profile-1ms { print(pid) }")
    assert status == 2 and out == ""
    assert "error: no 'ktapjit:profile-1ms' samples for 'profile-1ms' in recording" in err


# --- live -------------------------------------------------------------------------------

_REASON = live_skip_reason()
live = [pytest.mark.skipif(_REASON is not None, reason=_REASON or ""), pytest.mark.live,
        pytest.mark.usefixtures("clean_tracing_state")]


@pytest.fixture(scope="module")
def spin(tmp_path_factory):
    return build_c(tmp_path_factory, "spin", SPIN_C, "-O0", "-fno-omit-frame-pointer", purpose="the workload")


def live_test(func):
    for mark in reversed(live):
        func = mark(func)
    return func


@live_test
def test_user_and_kernel_stacks_of_a_command(spin):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    status, out, err = ktapjit("-q", "--", str(spin), script=STACKS)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (status, err) == (0, "")
    rows = parse_rows(out)
    total = sum(count for count, _, _ in rows)
    # One sample per ms of the command's CPU time (0.3 s when it has a CPU to itself).
    cpu_ms = 1000 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    assert 20 <= total and cpu_ms * 0.8 - 20 <= total <= cpu_ms * 1.2 + 20, (cpu_ms, out)
    for _, user, kernel in rows:
        assert all(FRAME.fullmatch(f) for f in user + kernel), (user, kernel)
    in_spin = sum(count for count, user, _ in rows if user and user[0].startswith("spin+"))
    assert in_spin >= total // 10, out
    # main calls spin: the frame pointers were followed past the innermost frame.
    assert any(user[:2] and user[0].startswith("spin+") and user[1].startswith("main+") for _, user, _ in rows)
    in_kernel = [(user, kernel) for _, user, kernel in rows if kernel]
    assert in_kernel, out
    assert any(any("read" in f for f in kernel) for _, kernel in in_kernel), out
    # A sample in read(2) still has the user side that called it (libc's read
    # keeps no frame pointer, so frame-pointer unwinding goes from it to main).
    assert any(any(f.startswith("main+") for f in user) for user, _ in in_kernel), out


@live_test
def test_record_then_replay_prints_the_same(spin, tmp_path):
    data = tmp_path / "profile.data"
    script = STACKS.replace("trace_end {", "var h = {}\nprofile-2ms { h[stack()] += 1 }\n"
                            "trace_end {\n  print_hist(h, 5)")
    status, out, err = ktapjit("-q", "--record", str(data), "--", str(spin), script=script)
    assert (status, err) == (0, "")
    assert "spin+" in out
    assert ktapjit("--replay", str(data), script=script) == (0, out, "")


@live_test
def test_event_values_in_a_profile_body(spin):
    script = """var seen = {}
profile-5ms {
  if (execname == "spin") {
    if (pid == tid && cpu >= 0 && argstr == nil && arg0 == nil && args.x == nil) { seen[probename] = 1 }
    else { seen["unexpected"] = 1 }
  }
}
trace_end { for (k, v in pairs(seen)) { print(k) } }
"""
    status, out, err = ktapjit("-q", "--", str(spin), script=script)
    assert (status, out, err) == (0, "profile-5ms\n", "")


@live_test
def test_system_wide_samples_every_cpu(spin, procs):
    """Without -p or -- CMD the cpu-clock runs on every CPU, idle ones included,
    and a task that existed before tracing has its mappings (synthesized from
    /proc/PID/maps), so its user stack is symbolized."""
    workload = procs.popen([str(spin), "20"])  # killed once traced
    script = """var cpus = {}
var n = 0
var s = {}
profile-1ms {
  cpus[cpu] = 1
  n += 1
  if (execname == "spin") { s[ustack()] += 1 }
  if (n >= 100 * num_cpus()) { exit() }  # about 100 ms of every CPU
}
trace_end {
  var c = 0
  for (k, v in pairs(cpus)) { c += 1 }
  print("cpus", c)
  for (k, v in pairs(s)) { print(k) }
}
"""
    status, out, err = ktapjit("-q", script=script)
    workload.kill()
    workload.wait(10)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"cpus\t{len(online_cpus())}", out
    assert any(line.startswith("spin+") for line in lines[1:]), out
