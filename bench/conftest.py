"""Fixtures for the pytest-benchmark suites in bench/.

These suites are not part of the default test run (pyproject's testpaths is
tests/). Run them with ``pytest bench/ --benchmark-enable``; without
``--benchmark-enable`` (the project's addopts disable benchmarks) each
benchmark body runs once, untimed, which still checks that it works.

Streams are small (SUITE_EVENTS) and written to a per-session temp dir, so
the suites never touch the benchmark cache of `python -m bench`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import engines, handlers, streams
from bench.workloads import Workload, workload

SUITE_EVENTS = 20_000


@dataclass
class Prepared:
    """A workload's stream, compiled script and binding, ready to feed."""

    workload: Workload
    path: Path
    module: object
    binding: handlers.Binding
    chunks: list


@pytest.fixture(scope="session")
def stream_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-streams")


@pytest.fixture(scope="session")
def in_process() -> dict:
    return {e.name: e for e in engines.in_process_engines()}


@pytest.fixture(scope="session")
def cli() -> dict:
    return {e.name: e for e in engines.cli_engines()}


@pytest.fixture(scope="session")
def prepared(stream_dir):
    """name -> Prepared, built once per session and workload."""
    done: dict[str, Prepared] = {}

    def get(name: str) -> Prepared:
        if name not in done:
            w = workload(name)
            path = streams.recording(w, SUITE_EVENTS, layout="merged", directory=stream_dir)
            module = engines.compile_source(w.script.read_bytes(), w.script_label)
            done[name] = Prepared(w, path, module, handlers.bind_recording(path, module), streams.load_chunks(path))
        return done[name]

    return get


@pytest.fixture(scope="session")
def interp_output(prepared, in_process):
    """name -> the interpreter's output over the workload's stream: the reference."""
    done: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in done:
            p = prepared(name)
            _path, output, _status, _ns = handlers.run_once(in_process["interp"].factory(), p.module, p.binding,
                                                            p.chunks, p.workload.script_label, [])
            done[name] = output
        return done[name]

    return get


def need(engine: engines.EngineInfo) -> None:
    """Skip, with the engine's own reason, when it does not run here."""
    if not engine.available:
        pytest.skip(f"engine '{engine.name}' not available: {engine.reason}")
