"""Merging per-CPU streams, and perf's FINISHED_ROUND ordering.

The perf.data ordering is checked against perf itself: we write a file with a
hand-made record order (through PerfDataWriter) and ask `perf script` what order
it prints.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import Comm, FinishedRound, Sample, iter_records
from ktapjit.events.records.merge import StreamMerger, merge_streams, order_perf_rounds
from ktapjit.events.records.perfdata import PerfDataWriter, read_perf_data

DATA = Path(__file__).resolve().parent.parent / "data"
PERF = shutil.which("perf") or ("/usr/bin/perf" if os.path.exists("/usr/bin/perf") else None)
needs_perf = pytest.mark.skipif(PERF is None, reason="perf (linux-perf) is not installed")

ST = (abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_TID | abi.PERF_SAMPLE_TIME
      | abi.PERF_SAMPLE_CPU | abi.PERF_SAMPLE_PERIOD)


def sample(time, cpu=0, tid=100, ident=1) -> Sample:
    return Sample(ident, None, tid, tid, time, cpu, 1, None, None, None)


def tids(records) -> list:
    return [r.tid for r in records]


# --- live: (time, cpu, position) -----------------------------------------------------------

def test_ties_break_by_cpu_then_position():
    streams = {
        1: [sample(10, 1, tid=1), sample(20, 1, tid=2), sample(20, 1, tid=3)],
        0: [sample(20, 0, tid=4), sample(30, 0, tid=5)],
    }
    assert tids(merge_streams(streams)) == [1, 4, 2, 3, 5]
    # The same with the CPUs given in the other order: the result is the same.
    assert tids(merge_streams([(0, streams[0]), (1, streams[1])])) == [1, 4, 2, 3, 5]


def test_ring_order_is_not_trusted():
    # An interrupt can land a later-stamped record first in a ring.
    out = merge_streams({0: [sample(50, tid=1), sample(40, tid=2), sample(60, tid=3)]})
    assert tids(out) == [2, 1, 3]


def test_records_without_time_stay_with_their_neighbours():
    lost = Comm(7, 7, b"x", None, None, False)
    out = merge_streams({0: [sample(10, tid=1), lost, sample(30, tid=2)],
                         1: [sample(5, 1, tid=3), sample(20, 1, tid=4)]})
    assert [getattr(r, "tid", None) for r in out] == [3, 1, 7, 4, 2]


def test_rounds_release_up_to_previous_round_max():
    m = StreamMerger()
    m.push(0, [sample(10, tid=1), sample(30, tid=2)])
    m.push(1, [sample(20, 1, tid=3)])
    assert m.end_round() == []          # first round: nothing is safe yet
    m.push(1, [sample(25, 1, tid=4), sample(40, 1, tid=5)])
    assert tids(m.end_round()) == [1, 3, 4, 2]   # up to 30, the max of round 1
    m.push(0, [sample(35, tid=6)])
    assert tids(m.end_round()) == [6, 5]          # up to 40
    assert m.finish() == []


def test_discard_empties_the_queue():
    m = StreamMerger()
    m.push(0, [sample(10, tid=1), sample(30, tid=2)])
    m.end_round()
    m.push(1, [sample(20, 1, tid=3)])
    assert sorted(tids(m.discard())) == [1, 2, 3]
    assert len(m) == 0 and m.end_round() == [] and m.finish() == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 999)), min_size=1, max_size=200),
       st.integers(50, 400))
def test_incremental_rounds_equal_whole_merge(events, window):
    """Data drained round by round (each round holding what happened in one time
    window on every CPU) comes out exactly as the merge of whole streams."""
    per_cpu: dict[int, list[Sample]] = {}
    for n, (cpu, t) in enumerate(sorted(events, key=lambda e: e[1])):
        per_cpu.setdefault(cpu, []).append(sample(t, cpu, tid=n))
    expected = merge_streams(per_cpu)
    assert [r.time for r in expected] == sorted(r.time for r in expected)
    m = StreamMerger()
    out = []
    for k in range(0, 1000 // window + 2):
        for cpu in sorted(per_cpu):
            m.push(cpu, [r for r in per_cpu[cpu] if k * window <= r.time < (k + 1) * window])
        out += m.end_round()
    out += m.finish()
    assert out == expected


# --- perf.data: FINISHED_ROUND semantics ----------------------------------------------------

FILE_ORDER = [  # (time, tid) in file order; None is a FINISHED_ROUND
    (5, 1), (3, 2), None, (4, 3), (10, 4), (10, 5), None, (1, 6), (11, 7), (10, 8), None,
]
# perf: round 1 flushes <= 0 (nothing) and arms 5; round 2 flushes <= 5 and arms
# 10; round 3 flushes <= 10 -- the late tid 6 (time 1) included, ties in file
# order -- and arms 11; the end flushes the rest.
PERF_ORDER = [2, 3, 1, 6, 4, 5, 8, 7]


def _raw_sample(time: int, tid: int, cpu: int = 0) -> bytes:
    body = struct.pack("<QIIQIIQ", 1, tid, tid, time, cpu, 0, 1)
    return struct.pack("<IHH", abi.PERF_RECORD_SAMPLE, 0, 8 + len(body)) + body


def _raw_stream(order) -> bytes:
    return b"".join(struct.pack("<IHH", abi.PERF_RECORD_FINISHED_ROUND, 0, 8) if e is None
                    else _raw_sample(1_000_000 * e[0], e[1]) for e in order)


def test_finished_round_semantics():
    from ktapjit.events.records.decode import AttrTable
    recs = list(iter_records(_raw_stream(FILE_ORDER), AttrTable({1: (ST, 0, True)})))
    assert sum(isinstance(r, FinishedRound) for r in recs) == 3
    assert tids(order_perf_rounds(recs)) == PERF_ORDER


def test_untimed_records_are_delivered_at_once():
    recs = [sample(50, tid=1), Comm(9, 9, b"synth", 0, 0, False), sample(40, tid=2),
            FinishedRound(), Comm(8, 8, b"late", None, None, False)]
    out = list(order_perf_rounds(recs))
    assert [getattr(r, "tid", None) for r in out] == [9, 8, 2, 1]


@needs_perf
def test_finished_round_semantics_agree_with_perf(tmp_path):
    attr = abi.perf_event_attr(type=abi.PERF_TYPE_SOFTWARE, config=abi.PERF_COUNT_SW_CPU_CLOCK,
                               sample_period=1, sample_type=ST, sample_id_all=1)
    path = tmp_path / "rounds.data"
    with PerfDataWriter(path, [(attr, [1], "cpu-clock")]) as w:
        w.write_records(_raw_stream(FILE_ORDER))
    out = subprocess.run([PERF, "script", "-i", str(path), "-F", "tid"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [int(x) for x in out.stdout.split()] == PERF_ORDER
    ours = order_perf_rounds(read_perf_data(path).records())
    assert tids(ours) == PERF_ORDER


@needs_perf
@pytest.mark.parametrize("name", ["sched.data", "cpuclock.data"])
def test_real_files_order_like_perf(name):
    """Two-CPU recordings: the sample order (time, cpu, tid) equals perf's."""
    pd = read_perf_data(DATA / name)
    ours = [(r.time // 1000, r.cpu, r.tid) for r in order_perf_rounds(pd.records())
            if isinstance(r, Sample)]
    out = subprocess.run([PERF, "script", "-i", str(DATA / name), "-F", "tid,cpu,time"],
                         capture_output=True, text=True, timeout=60).stdout
    theirs = []
    for line in out.splitlines():
        tid, cpu, t = line.split()
        sec, us = t.rstrip(":").split(".")
        theirs.append((int(sec) * 10**6 + int(us), int(cpu.strip("[]")), int(tid)))
    assert ours == theirs
    assert len({c for _, c, _ in ours}) == 2
