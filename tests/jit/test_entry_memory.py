"""What an entry makes and keeps nowhere is freed when it returns.

A probe that builds a scratch table per event (or reads an array field,
which is a table), or makes a closure it only calls, must not grow the
run's memory with the event count. When an entry returns, the runtime frees
every table it made that was not stored in a global, a cell or another
table, and the cells and closures it made when no function was stored so.
What was kept lives on and prints as the interpreter prints it. Each case
replays synthetic streams under both engines, compares their output, and
measures what the JIT run still holds when trace_end starts.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.testing.synth import SyntheticStream, write_perf_data
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


# Closures made per event: the bytes of cells and closures held after a
# stream must not depend on its length.
CLOSURES = {
    "a closure called and dropped": "var n = 0\ntrace raw_syscalls:sys_enter { var k = args.id\n"
                                    "  var f = function (x) { return x + k }; n += f(1) }\ntrace_end { print(n) }",
    "nested closures": "var n = 0\ntrace raw_syscalls:sys_enter { var a = 1\n"
                       "  var f = function () { var b = a + 1; return function () { return a + b } }\n"
                       "  n += f()() }\ntrace_end { print(n) }",
    "a captured local updated": "var n = 0\ntrace raw_syscalls:sys_enter { var c = 0\n"
                                "  var inc = function () { c += 1 }; inc(); inc(); n += c }\ntrace_end { print(n) }",
}


def _stream(tmp_path_factory, events: int) -> Path:
    path = tmp_path_factory.mktemp("memory") / f"syscalls-{events}.data"
    write_perf_data(path, SyntheticStream([("raw_syscalls", "sys_enter")], n_events=events, cpus=2, tasks=4, seed=5))
    return path


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    return _stream(tmp_path_factory, EVENTS)


@pytest.fixture(scope="module")
def short_stream(tmp_path_factory) -> Path:
    return _stream(tmp_path_factory, 10)


@pytest.fixture
def held(monkeypatch):
    """(tables, arena bytes) the JIT run holds as trace_end starts, per run."""
    seen = []
    original = engine.JitRun.finish

    def spy(self, *args, **kwargs):
        seen.append((self.rt.k_tables_live(self.state.ptr), self.rt.k_arena_bytes(self.state.ptr)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine.JitRun, "finish", spy)
    return seen


def run(engine_name: str, replay: Path, script: str) -> tuple[bytes, bytes, int]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", engine_name, "--replay", str(replay), "-e", script], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), status


@pytest.mark.parametrize("name", sorted(CASES))
def test_unkept_tables_are_freed(stream, held, name):
    script, alive = CASES[name]
    jit = run("jit", stream, script)
    assert jit == run("interp", stream, script)
    assert jit[2] == 0, jit[1]
    assert [tables for tables, _ in held] == [alive], f"{held} tables alive after {EVENTS} events"


@pytest.mark.parametrize("name", sorted(CLOSURES))
def test_unkept_closures_are_freed(stream, short_stream, held, name):
    script = CLOSURES[name]
    jit = run("jit", stream, script)
    assert jit == run("interp", stream, script)
    assert jit[2] == 0, jit[1]
    run("jit", short_stream, script)
    long_run, short_run = held
    assert long_run == short_run, f"{EVENTS} events hold {long_run}, 10 events {short_run}"


def test_kept_closures_live_on(stream, held):
    script = ("var fs = {}\nvar n = 0\ntrace raw_syscalls:sys_enter { var k = args.id; n += 1\n"
              "  if (n % 100 == 0) { fs[n] = function () { return k } } }\n"
              "trace_end { var s = 0; for (i, f in pairs(fs)) { s += f() } print(len(fs), s, fs[100] == fs[100]) }")
    jit = run("jit", stream, script)
    assert jit == run("interp", stream, script) and jit[2] == 0
