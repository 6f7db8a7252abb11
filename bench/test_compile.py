"""pytest-benchmark: compiling each example, to IR and (with the JIT) to native code."""

from __future__ import annotations

import pytest

from bench.compile_latency import JitSandbox
from bench.conftest import need
from bench.engines import compile_source
from bench.workloads import EXAMPLES

EXAMPLE_SCRIPTS = sorted(EXAMPLES.glob("*.kp"))


@pytest.mark.parametrize("script", EXAMPLE_SCRIPTS, ids=lambda p: p.name)
def test_script_to_ir(benchmark, script):
    source = script.read_bytes()
    compile_source(source, script.name)  # the grammar and imports, outside the clock
    module = benchmark(compile_source, source, script.name)
    benchmark.extra_info.update(probes=len(module.probes) + len(module.timers))


@pytest.fixture(scope="module")
def jit_sandbox(in_process):
    need(in_process["jit"])
    with JitSandbox(in_process["jit"].factory) as sandbox:
        yield sandbox


@pytest.mark.parametrize("script", EXAMPLE_SCRIPTS, ids=lambda p: p.name)
def test_ir_to_native(benchmark, jit_sandbox, script):
    module = compile_source(script.read_bytes(), script.name)
    # Every round compiles: the objects the previous load cached are removed first.
    benchmark.pedantic(jit_sandbox.load_ms, args=(module,), setup=jit_sandbox.forget_objects, rounds=3)
