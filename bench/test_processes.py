"""pytest-benchmark: whole commands: start-up, and replay against perf script.

These time child processes (bench/procs.py), so each round includes the
process start; rounds are few because every one costs a start-up.
"""

from __future__ import annotations

import pytest

from bench import perf_compare, streams
from bench.conftest import need
from bench.engines import ENGINE_NAMES, ktapjit_command
from bench.procs import run_timed

REPLAY_EVENTS = 50_000


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_startup_print_hi(benchmark, cli, engine_name):
    need(cli[engine_name])
    argv = [*ktapjit_command(), "run", "--engine", engine_name, "-e", 'print("hi")']
    result = benchmark.pedantic(run_timed, args=(argv,), rounds=5)
    assert result.ok and result.stdout == b"hi\n"


@pytest.fixture(scope="module")
def replay_file(stream_dir):
    return streams.recording(perf_compare.SCRIPT, REPLAY_EVENTS, layout="rounds", directory=stream_dir)


CONTENDERS = ["ktapjit interp", "ktapjit jit", "perf script", "perf script -s (python)"]


@pytest.mark.parametrize("who", CONTENDERS)
def test_replay(benchmark, cli, replay_file, who):
    perf = perf_compare.perf_path()
    if who.startswith("ktapjit"):
        need(cli[who.split()[1]])
    elif perf is None:
        pytest.skip("perf is not installed")
    elif "python" in who:
        reason = perf_compare.perf_python_skip_reason(perf, replay_file)
        if reason:
            pytest.skip(reason)
    people = perf_compare.contenders(ktapjit_command(), [e for e in ENGINE_NAMES if cli[e].available],
                                     replay_file, perf, True)
    c = next(c for c in people if c.name == who)
    result = benchmark.pedantic(run_timed, args=(c.argv,), kwargs={"stdout_to_null": c.discard_stdout},
                                rounds=3)
    assert result.ok, result.stderr_line()
    benchmark.extra_info.update(events=REPLAY_EVENTS)
    if not c.discard_stdout:
        assert result.stdout.startswith(f"{REPLAY_EVENTS} system calls".encode())
