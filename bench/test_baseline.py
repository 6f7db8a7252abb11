"""pytest-benchmark: the numba baseline kernels, over decoded columns and over raw records.

The kernel is compiled (or loaded from numba's cache) before timing, and
its summary line must be one the interpreter prints for the same stream.
"""

from __future__ import annotations

import pytest

from bench.workloads import WORKLOADS

numba = pytest.importorskip("numba", reason="the baseline needs numba")

from bench import baseline_numba, baseline_raw  # noqa: E402 - after the importorskip
from bench.columns import decode_columns  # noqa: E402


@pytest.mark.parametrize("name", [w.name for w in WORKLOADS if w.baseline])
def test_baseline_kernel(benchmark, prepared, interp_output, name):
    p = prepared(name)
    columns = decode_columns(p.path, p.workload.columns)
    kernel = baseline_numba.KERNELS[p.workload.baseline]
    fn, args = kernel.prepare(columns)
    fn(*args)  # compile outside the clock
    result = benchmark(fn, *args)
    benchmark.extra_info.update(events=columns.n)
    assert kernel.expect(result) in interp_output(name).decode().splitlines()


@pytest.mark.parametrize("name", sorted(w.name for w in WORKLOADS if w.baseline in baseline_raw.KERNELS))
def test_raw_record_kernel(benchmark, prepared, interp_output, name):
    """The same question answered walking the recording's bytes, as the JIT's feed does."""
    p = prepared(name)
    kernel = baseline_raw.KERNELS[p.workload.baseline]
    fn, args = kernel.prepare(baseline_raw.raw_layout(p.path, kernel.event, kernel.field))
    fn(*args)  # compile outside the clock
    result = benchmark(fn, *args)
    benchmark.extra_info.update(events=result[0])
    assert kernel.expect(result) in interp_output(name).decode().splitlines()
