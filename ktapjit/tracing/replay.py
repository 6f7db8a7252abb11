"""Running a script over a perf.data file: `ktapjit run --replay FILE`.

The recording describes itself: its tracing data holds the format of every
recorded tracepoint, so probes bind against the formats the events were
recorded with, not against this machine's tracefs.
"""

from __future__ import annotations

import itertools

from ktapjit.events import perf_abi as abi
from ktapjit.events.merge import order_perf_rounds
from ktapjit.events.perfdata import PerfData, read_perf_data
from ktapjit.events.schema import EventFormat
from ktapjit.ir.func import Module
from ktapjit.tracing.plan import EventUniverse, StreamPlan, bind_tracepoints, check_timers


class RecordingUniverse(EventUniverse):
    def __init__(self, data: PerfData):
        self.data = data
        self.schemas = data.schemas()
        self.ids: dict[tuple[str, str], list] = {}
        for ev in data.attrs:
            fmt = data.format_of(ev)
            if fmt is not None:
                self.ids.setdefault((fmt[0], fmt[1]), []).extend(_sample_ids(ev))

    def tracepoints(self) -> list[tuple[str, str]]:
        return sorted(self.ids)

    def format(self, system: str, event: str) -> EventFormat:
        return self.schemas[(system, event)]


def _sample_ids(ev) -> list:
    # Without IDENTIFIER or ID in sample_type (a single-event recording),
    # samples carry no id and decode with id None.
    if ev.attr.sample_type & (abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_ID):
        return list(ev.ids)
    return [None]


class Replay:
    """A recording ready to run: its plan, its start time, and its records in
    the order perf delivers them (FINISHED_ROUND-ordered), readable once."""

    def __init__(self, data: PerfData, plan: StreamPlan):
        self.data = data
        self.plan = plan
        ordered = order_perf_rounds(data.records())
        head = _through_first_time(ordered)
        # Synthesized records at the head of a recording carry time 0: the
        # stream starts at the first real timestamp, in delivery order.
        self.start_ns = head[-1].time if head and getattr(head[-1], "time", None) else 0
        self._records = itertools.chain(head, ordered)

    def records(self):
        return self._records


def _through_first_time(records) -> list:
    head = []
    for record in records:
        head.append(record)
        if getattr(record, "time", None):
            break
    return head


def open_replay(path: str, module: Module) -> Replay:
    """Read the file's headers, bind the probes, and find the stream's start."""
    check_timers(module)
    data = read_perf_data(path)
    universe = RecordingUniverse(data)
    plan = StreamPlan()
    for bound in bind_tracepoints(module, universe, where=f" in recording '{path}'"):
        plan.bound.append(bound)
        plan.attach(universe.ids[(bound.system, bound.event)], bound)
    return Replay(data, plan)
