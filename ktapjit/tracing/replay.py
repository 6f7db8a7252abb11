"""Running a script over a perf.data file: `ktapjit run --replay FILE`.

The recording describes itself: its tracing data holds the format of every
recorded tracepoint, so probes bind against the formats the events were
recorded with, not against this machine's tracefs.
"""

from __future__ import annotations

import itertools
from typing import Optional

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import has_time
from ktapjit.events.records.merge import order_perf_rounds
from ktapjit.events.records.perfdata import PerfData, TracingData, read_perf_data
from ktapjit.events.schema import EventFormat
from ktapjit.events.errors import EventsError
from ktapjit.events.tracefs import tracepoints_by_id
from ktapjit.ir.func import Module
from ktapjit.diag import CompileError, Diagnostic
from ktapjit.events.records.companion import COMPANION_EVENT
from ktapjit.tracing.companion import CompanionRoutes, missing_warning, wants_companions
from ktapjit.tracing.plan import EventUniverse, StreamPlan, bind_profiles, bind_tracepoints


class RecordingUniverse(EventUniverse):
    def __init__(self, data: PerfData, path: str = ""):
        self.data = data
        self.path = path
        self._dynamic = None  # a replay_dynamic.RecordedDynamicEvents, made on the first dynamic spec
        self._site_tables: Optional[dict] = None  # read when a probe binds to a site event
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

    @property
    def site_tables(self) -> dict:
        if self._site_tables is None:
            self._site_tables = _site_tables(self.data, self.path)
        return self._site_tables

    def site_table(self, system: str, event: str):
        from ktapjit.events.probes.probe_sites import SITES_FEATURE

        if SITES_FEATURE not in self.data.features:
            return None  # no site events: a tracepoint replay needs nothing more of events.probes
        from ktapjit.events.probes.dynamic_probes import GROUP_PREFIX

        return self.site_tables.get((system, event)) if system.startswith(GROUP_PREFIX) else None

    def locate(self, spec):
        """A name this machine cannot resolve stays as written: the events are
        found by the names the live run gave them, which (but for a hex
        offset's FILE_0xOFFSET) do not depend on the file."""
        from ktapjit.events.probes.probe_targets import TargetNotFound

        try:
            return super().locate(spec)
        except TargetNotFound:
            return spec

    def dynamic(self, spec) -> list[tuple[str, str]]:
        """The events a live run made for `spec`, found by the names it gave them."""
        if self._dynamic is None:
            from ktapjit.tracing.replay_dynamic import RecordedDynamicEvents

            self._dynamic = RecordedDynamicEvents(self.tracepoints(), self.path, self.site_tables)
        return self._dynamic.find(spec)


def _site_tables(data: PerfData, path: str) -> dict:
    from ktapjit.events.probes.probe_sites import SITES_FEATURE, SitesFormatError, decode_sites

    blob = data.features.get(SITES_FEATURE)
    if blob is None:
        return {}
    try:
        return decode_sites(blob)
    except SitesFormatError as exc:
        raise EventsError(f"'{path}': {exc}") from None


def _sample_ids(ev) -> list:
    # Without IDENTIFIER or ID in sample_type (a single-event recording),
    # samples carry no id and decode with id None.
    if ev.attr.sample_type & (abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_ID):
        return list(ev.ids)
    return [None]


class Replay:
    """A recording ready to run: its plan, its start time, and its records in
    the order perf delivers them (FINISHED_ROUND-ordered), readable once."""

    def __init__(self, data: PerfData, plan: StreamPlan, warnings: list[str]):
        self.data = data
        self.plan = plan
        self.warnings = warnings  # one line each, for stderr
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
        if has_time(getattr(record, "time", None)):
            break
    return head


def open_replay(path: str, module: Module) -> Replay:
    """Read the file's headers, bind the probes, and find the stream's start."""
    data = read_perf_data(path)
    warnings = [_unfinished_warning(data, path)] if data.recovery else []
    universe = RecordingUniverse(data, path)
    plan = StreamPlan()
    for bound in bind_tracepoints(module, universe, where=f" in recording '{path}'"):
        plan.bound.append(bound)
        plan.attach(universe.ids[(bound.system, bound.event)], bound)
    _bind_recorded_profiles(module, data, plan, path)
    if wants_companions(plan.bound):
        plan.companions = _companion_routes(data)
        if plan.companions is None:
            warnings.append(missing_warning(path))
    return Replay(data, plan, warnings)


def _companion_routes(data: PerfData) -> Optional[CompanionRoutes]:
    """Where a ktapjit recording's companion records are, and each
    tracepoint sample's key to them; None when it has none."""
    routes = CompanionRoutes()
    for ev in data.attrs:
        if ev.name == COMPANION_EVENT and ev.attr.type == abi.PERF_TYPE_SOFTWARE:
            routes.ids.update(_sample_ids(ev))
        elif ev.attr.type == abi.PERF_TYPE_TRACEPOINT:
            for sid in _sample_ids(ev):
                routes.tracepoint_of[sid] = ev.attr.config
    return routes if routes.ids else None


def _unfinished_warning(data: PerfData, path: str) -> str:
    """A file whose writer was killed (or ran out of space) replays its
    complete records (perfdata.Recovery), and says where they end."""
    text = f"'{path}' was never finished (its recorder was killed?): replaying its records up to byte offset " \
           f"{data.recovery.end}"
    if data.recovery.torn_bytes:
        text += f", where {data.recovery.torn_bytes} bytes of an incomplete record are left out"
    if _adopt_local_formats(data, path):
        text += "; event formats from this machine's tracefs"
    return text


def _adopt_local_formats(data: PerfData, path: str) -> bool:
    """perf writes the tracing data at the end, so a killed `perf record`
    leaves none: its tracepoints are read with the formats of this machine's
    tracepoints of the same ids, which are theirs when the recording was
    made on this machine since it booted. Whether that was needed."""
    ids = {ev.attr.config for ev in data.attrs if ev.attr.type == abi.PERF_TYPE_TRACEPOINT}
    if data.tracing is not None or not ids:
        return False
    try:
        data.tracing = TracingData.from_tracefs(sorted(tracepoints_by_id(ids).values()))
    except (EventsError, OSError) as exc:
        raise EventsError(f"'{path}' was never finished and holds no event formats, and this machine's "
                          f"tracefs cannot give them: {getattr(exc, 'strerror', None) or exc}") from None
    return True


def _bind_recorded_profiles(module: Module, data: PerfData, plan: StreamPlan, path: str) -> None:
    """A `profile-N` timer replays the samples of the cpu-clock event a live
    run opened for it, found by its name (plan.bind_profiles)."""
    by_name: dict[str, list] = {}
    for ev in data.attrs:
        if ev.name and ev.attr.type == abi.PERF_TYPE_SOFTWARE and ev.attr.config == abi.PERF_COUNT_SW_CPU_CLOCK:
            by_name.setdefault(ev.name, []).extend(_sample_ids(ev))
    for profile in bind_profiles(module):
        ids = by_name.get(profile.name)
        if ids is None:
            timer = module.timers[profile.timer]
            raise CompileError(Diagnostic(timer.func.span, f"no '{profile.name}' samples for '{profile.text}' in "
                                                           f"recording '{path}' (record it with ktapjit run --record)"))
        plan.profiles.append(profile)
        plan.attach(ids, profile)
