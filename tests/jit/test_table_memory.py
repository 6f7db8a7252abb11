"""Tables an entry makes and keeps nowhere are freed when it returns.

A probe that builds a scratch table per event (or reads an array field,
which is a table) must not grow the run's memory with the event count: the
runtime frees, when an entry returns, every table it made that was not
stored in a global, a cell or another table. Those that were live on, and
print as the interpreter prints them. Each case replays the same synthetic
stream under both engines, compares their output, and counts the tables
the JIT run still holds when trace_end starts.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.events.synth import SyntheticStream, write_perf_data
from ktapjit.jit import engine

EVENTS = 2000

# (script, tables alive when trace_end starts: the `arg` table, plus what the
# script kept or stored in another table)
CASES = {
    "scratch table per event": ("trace raw_syscalls:sys_enter { var t = {}; t[args.id] = 1; t[\"n\"] = len(t) }", 1),
    "array field per event": ("var n = 0\ntrace raw_syscalls:sys_enter { n += len(args.args) + len(arg1) }\n"
                              "trace_end { print(n) }", 1),
    "nested scratch tables": ("trace raw_syscalls:sys_enter { var t = {}; t[1] = {}; t[1][2] = {} }",
                              # a table stored in a table is never freed early
                              2 * EVENTS + 1),
    "kept in a global table": ("var keep = {}\nvar n = 0\n"
                               "trace raw_syscalls:sys_enter { n += 1; if (n % 100 == 0) { keep[n] = {n} } }\n"
                               "trace_end { print(len(keep), keep[100][1], keep[2000]) }", EVENTS // 100 + 2),
    "kept in a global": ("var last\ntrace raw_syscalls:sys_enter { var t = {args.id}; last = t }\n"
                         "trace_end { print(last) }", EVENTS + 1),
    "kept in a closure's cell": ("var f\ntrace raw_syscalls:sys_enter { var t = {}; f = function () { return t } }\n"
                                 "trace_end { print(f()) }", EVENTS + 1),
    "printed, then dropped": ("var n = 0\ntrace raw_syscalls:sys_enter { var t = {}; n += 1\n"
                              "  if (n % 500 == 0) { print(t) } }\ntrace_end { var u = {}; print(u) }", 1),
    "passed to a function and returned": ("function wrap(x) { return {x} }\nvar n = 0\n"
                                          "trace raw_syscalls:sys_enter { var t = wrap(wrap(args.id)); n += t[1][1] }\n"
                                          "trace_end { print(n) }", EVENTS + 1),  # the inner ones
}


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("memory") / "syscalls.data"
    write_perf_data(path, SyntheticStream([("raw_syscalls", "sys_enter")], n_events=EVENTS, cpus=2, tasks=4, seed=5))
    return path


@pytest.fixture
def live_tables(monkeypatch):
    """The JIT run's table count as trace_end starts, per run."""
    seen = []
    original = engine.JitRun.finish

    def spy(self, *args, **kwargs):
        seen.append(self.rt.k_tables_live(self.state.ptr))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine.JitRun, "finish", spy)
    return seen


def run(engine_name: str, replay: Path, script: str) -> tuple[bytes, bytes, int]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", engine_name, "--replay", str(replay), "-e", script], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), status


@pytest.mark.parametrize("name", sorted(CASES))
def test_unkept_tables_are_freed(stream, live_tables, name):
    script, alive = CASES[name]
    jit = run("jit", stream, script)
    assert jit == run("interp", stream, script)
    assert jit[2] == 0, jit[1]
    assert live_tables == [alive], f"{live_tables} tables alive after {EVENTS} events"
