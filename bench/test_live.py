"""The live section's tracers count every event: bpftrace's @n and
`ktapjit --engine bpf`'s print(n) are read back as exactly the loop's
calls, with nothing lost, and the targets table compares the two.

Runs the real loop under the real tracers (root, gcc, tracefs and
bpftrace needed; otherwise skipped with the reason)."""

from __future__ import annotations

import shutil

import pytest

from bench import live, report
from bench.engines import ktapjit_command
from bench.stats import median

CALLS = 20_000


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    reason = live.skip_reason() or (None if shutil.which("bpftrace") else "bpftrace is not installed")
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("live")
    modes, skipped = live.modes(ktapjit_command(), ["bpf"], tmp)
    assert skipped == [{"what": "perf record", "reason": "perf is not installed"}] or skipped == []
    live.run_rounds(modes, live.build_loop(tmp), CALLS, rounds=1, timeout=300)
    base = median(modes[0].ns_per_call)
    return {"sections": {"live": {"calls": CALLS, "rounds": 1, "rows": [m.as_json(base) for m in modes]}}}


@pytest.mark.parametrize("tracer", ["ktapjit bpf", "bpftrace"])
def test_every_call_is_counted_and_none_lost(measured, tracer):
    row = next(r for r in measured["sections"]["live"]["rows"] if r["name"] == tracer)
    assert (row["error"], row["counted"], row["lost"]) == ("", [CALLS], [0])
    assert row["events_per_s"] > 0


def test_targets_compare_bpf_with_bpftrace(measured):
    target = next(r for r in report.targets_table(measured).rows if r[0].startswith("bpf live overhead"))
    assert target[1].startswith("bpf ") and "bpftrace's" in target[1]
    assert target[2] in ("yes", "no")
    assert target[3] == "bpf lost 0"
