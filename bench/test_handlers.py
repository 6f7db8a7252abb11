"""pytest-benchmark: feeding one workload's stream to one engine, in-process.

Each round is a fresh run: load (for the JIT, the compile) and the top level
happen in pedantic's untimed setup; only feeding every chunk is timed, as
in `python -m bench`. The output must equal the interpreter's.
"""

from __future__ import annotations

import pytest

from bench import handlers
from bench.conftest import need
from bench.engines import ENGINE_NAMES
from bench.workloads import WORKLOADS


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
@pytest.mark.parametrize("name", [w.name for w in WORKLOADS])
def test_feed_stream(benchmark, prepared, in_process, interp_output, engine_name, name):
    engine = in_process[engine_name]
    need(engine)
    p = prepared(name)
    runs: list[handlers.StartedRun] = []

    def setup():
        runs.append(handlers.start_run(engine.factory(), p.module, p.binding, p.workload.script_label))
        return (runs[-1], p.chunks, []), {}

    benchmark.pedantic(handlers.feed_chunks, setup=setup, rounds=3, iterations=1)
    events = sum(c.samples for c in p.chunks)
    benchmark.extra_info.update(events=events, path=runs[-1].path)
    output, status = handlers.finish_run(runs[-1])
    assert status == 0
    assert output == interp_output(name)
