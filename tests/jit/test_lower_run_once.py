"""The entries a run enters once (the top level and trace_end) are compiled
without optimisation: optimising them cost more compile time than they ever
run (docs/performance-notes.md, compile latency). Probes, timers and every
function they may call stay optimised."""

from __future__ import annotations

import io

import pytest

from ktapjit.cli import main
from ktapjit.compiler import compile_script
from ktapjit.jit.lower import lower_module

SCRIPT = b"""var t = {}
function add(k) { t[k] += 1 }
for (i = 1, 3) { add(i) }
trace syscalls:sys_enter_getpid { add(0) }
tick-1s { add(9) }
trace_end { for (k, v in pairs(t)) { add(k) } print(t[1]) }
"""


def attributes_of(role: str) -> set[str]:
    lowered = lower_module(compile_script(SCRIPT, "s.kp").module)
    symbol = lowered.entries[role] if role in lowered.entries else "ktap_f1_add"
    [define] = [line for line in lowered.llvm_ir.splitlines()
                if line.startswith("define") and f'@"{symbol}"(' in line]
    return set(define.rsplit(")", 1)[1].split())


@pytest.mark.parametrize("role, optimised", [
    ("main", False), ("trace_end", False), ("probe0", True), ("timer0", True), ("a closure", True),
])
def test_only_the_run_once_entries_skip_optimisation(role, optimised):
    assert ({"optnone", "noinline"} <= attributes_of(role)) is not optimised


def test_the_unoptimised_top_level_runs_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    out, err = io.BytesIO(), io.BytesIO()
    program = "var n = 0\nfor (i = 1, 100000) { n += i * 2 % 7 }\ntrace_end { print(n) }"
    assert main(["run", "--jit", "-e", program], stdout=out, stderr=err) == 0
    assert (out.getvalue(), err.getvalue()) == (b"%d\n" % sum(i * 2 % 7 for i in range(1, 100001)), b"")
