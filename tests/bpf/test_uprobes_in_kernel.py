"""Uprobes, uretprobes, USDT markers and uprobe globs (one site event)
under `ktapjit run --bpf`: their kernel-placed bodies run as BPF programs on
the uprobe events ktapjit creates (docs/bpf.md, "Uprobes"), and give
exactly the interpreter's output over the same workload.

The workload, built here with gcc (-O2 and -O0: arguments in registers,
or USDT arguments on the stack), calls tick(i) N times and tock(i) for
every third i, and passes the USDT marker ktapjit_bpf:step (i, 42) N
times, so every count and sum is known. `apart` has two functions aligned
to a page each: a site event of both cannot tell them apart in the kernel.
"""

from __future__ import annotations


import pytest
from tests.bpf.conftest import needs_bpf, run_cli as ktapjit
from tests.cbuild import build_c
from tests.events.test_elf import SDT_H
from tests.tracing.conftest import clean_tracing_state  # noqa: F401 (a fixture)

from ktapjit.bpf.loaded import loaded_sessions

pytestmark = needs_bpf

N = 3000
TOCKS = len(range(0, N, 3))

WORK_C = SDT_H + r"""
#include <stdlib.h>
__attribute__((noinline)) long tick(long x) { __asm__ volatile("" :: "r"(x)); return x * 2; }
__attribute__((noinline)) long tock(long x) { __asm__ volatile("" :: "r"(x)); return x + 1; }
int main(int argc, char **argv) {
    long n = atol(argv[1]), s = 0;
    for (long i = 0; i < n; i++) {
        s += tick(i);
        if (i % 3 == 0) s += tock(i);
        KT_SDT2(ktapjit_bpf, step, "0", i, 42);
    }
    return s == 1;
}
"""

APART_C = r"""
#include <stdlib.h>
__attribute__((noinline, aligned(4096))) long left_page(long x) { __asm__ volatile("" :: "r"(x)); return x; }
__attribute__((noinline, aligned(4096))) long right_page(long x) { __asm__ volatile("" :: "r"(x)); return x; }
int main(int argc, char **argv) {
    long n = atol(argv[1]), s = 0;
    for (long i = 0; i < n; i++) s += left_page(i) + right_page(i);
    return s == 1;
}
"""


@pytest.fixture(scope="module", params=["-O2", "-O0"])
def work(request, tmp_path_factory):
    return build_c(tmp_path_factory, "work", WORK_C, request.param, purpose="the uprobe workload")


@pytest.fixture(scope="module")
def apart(tmp_path_factory):
    return build_c(tmp_path_factory, "apart", APART_C, "-O2", purpose="the page-aligned workload")


def our_programs() -> list:
    import os
    return [prog for s in loaded_sessions() if s.carried.pid == os.getpid() for prog in s.programs]


PAIRS = 'trace_end { for (k, v in pairs(t)) { printf("%s %d\\n", k, v) } }'

# (name, script with W for the workload's path, the exact output)
CASES = [
    ("a uprobe count", "var n = 0\ntrace probe:W:tick { n += 1 }\ntrace_end { print(n) }", f"{N}\n"),
    ("a register argument summed", "var s = 0\ntrace probe:W:tick x=%di:s64 { s += args.x }\ntrace_end { print(s) }",
     f"{N * (N - 1) // 2}\n"),
    ("arg0 is the probed address", "var t = {}\ntrace probe:W:tick { t[arg0 > 0] += 1 }\n" + PAIRS, f"true {N}\n"),
    ("a uretprobe's return value", "var s = 0\ntrace probe:W:tick%return $retval { s += arg1 }\ntrace_end { print(s) }",
     f"{N * (N - 1)}\n"),
    ("a glob's sites by probename", "var t = {}\ntrace probe:W:t* { t[probename] += 1 }\n" + PAIRS,
     f"tick {N}\ntock {TOCKS}\n"),
    ("a return glob's sites", "var t = {}\ntrace probe:W:t*%return $retval { t[probename] += arg1 }\n" + PAIRS,
     f"tick__return {N * (N - 1)}\ntock__return {sum(i + 1 for i in range(0, N, 3))}\n"),
    ("a USDT marker's arguments, per key",
     "var t = {}\ntrace sdt:W:ktapjit_bpf:step { t[arg1 % 3] += arg2 }\n" + PAIRS,
     f"0 {42 * TOCKS}\n1 {42 * len(range(1, N, 3))}\n2 {42 * len(range(2, N, 3))}\n"),
]


@pytest.mark.parametrize("name, script, expected", CASES, ids=[c[0] for c in CASES])
def test_in_the_kernel_exactly_as_the_interpreter(work, clean_tracing_state, name, script, expected):  # noqa: F811
    script = script.replace("W", str(work))
    command = ["-e", script, "--", str(work), str(N)]
    status, out, err = ktapjit("--bpf", "-v", *command)
    assert (status, out) == (0, expected), err
    where = [line for line in err.splitlines() if line.startswith("ktapjit: bpf: ")]
    assert where and all(line.endswith(": kernel") for line in where), where
    assert ktapjit("--engine", "interp", *command)[:2] == (0, expected)
    assert our_programs() == []


def test_sites_at_one_offset_in_a_page_stay_in_user_space(apart, clean_tracing_state):  # noqa: F811
    script = f"var t = {{}}\ntrace probe:{apart}:*_page {{ t[probename] += 1 }}\n" + PAIRS
    status, out, err = ktapjit("--bpf", "-v", "-e", script, "--", str(apart), "500")
    assert (status, out) == (0, "left_page 500\nright_page 500\n")
    assert (f"ktapjit: bpf: every probe runs in user space: probe:{apart}:*_page: `left_page` and `right_page` "
            "are at the same offset in a page (0x0): a kernel program cannot tell the sites apart") in err.splitlines()
    assert our_programs() == []
