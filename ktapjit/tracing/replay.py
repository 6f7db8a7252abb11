"""Running a script over a perf.data file: `ktapjit run --replay FILE`.

The recording describes itself: its tracing data holds the format of every
recorded tracepoint, so probes bind against the formats the events were
recorded with, not against this machine's tracefs.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
from typing import Optional

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.probes.probe_targets import TargetNotFound, names_library
from ktapjit.events.probes.dynamic_probes import (
    GROUP_PREFIX, RETURN_SUFFIX, event_name, is_glob_symbol, sites_event_name, unique_name,
)
from ktapjit.events.probes.probe_sites import SITES_FEATURE, SitesFormatError, decode_sites
from ktapjit.events.probes.elf import is_glob, is_hex_offset, open_elf
from ktapjit.events.records.decode import has_time
from ktapjit.events.records.merge import order_perf_rounds
from ktapjit.events.records.perfdata import PerfData, TracingData, read_perf_data
from ktapjit.events.schema import EventFormat
from ktapjit.events.errors import EventsError
from ktapjit.events.tracefs import close_matches_hint, tracepoints_by_id
from ktapjit.frontend.eventdef import KprobeSpec, SdtSpec, UprobeSpec
from ktapjit.ir.func import Module
from ktapjit.diag import CompileError, Diagnostic
from ktapjit.tracing.plan import EventUniverse, StreamPlan, bind_profiles, bind_tracepoints


class RecordingUniverse(EventUniverse):
    def __init__(self, data: PerfData, path: str = ""):
        self.data = data
        self.path = path
        self._dynamic: Optional[RecordedDynamicEvents] = None
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
        return self.site_tables.get((system, event)) if system.startswith(GROUP_PREFIX) else None

    def locate(self, spec):
        """A name this machine cannot resolve stays as written: the events are
        found by the names the live run gave them, which (but for a hex
        offset's FILE_0xOFFSET) do not depend on the file."""
        try:
            return super().locate(spec)
        except TargetNotFound:
            return spec

    def dynamic(self, spec) -> list[tuple[str, str]]:
        """The events a live run made for `spec`, found by the names it gave them."""
        if self._dynamic is None:
            self._dynamic = RecordedDynamicEvents(self.tracepoints(), self.path, self.site_tables)
        return self._dynamic.find(spec)


def _site_tables(data: PerfData, path: str) -> dict:
    blob = data.features.get(SITES_FEATURE)
    if blob is None:
        return {}
    try:
        return decode_sites(blob)
    except SitesFormatError as exc:
        raise EventsError(f"'{path}': {exc}") from None


class RecordedDynamicEvents:
    """Binding uprobes, USDT markers and kprobes to a recording.

    A live run creates them in its group `ktapjit_<pid>` (dynamic_probes),
    and a recording stores their formats under that group. Replay finds them
    by the event name the live run gave: the symbol (`add`, `add__return`),
    `FILE_0xOFFSET` for a hex offset, the marker name for USDT, the function
    for a kprobe, made unique with `_1`, `_2`... in binding order, exactly as
    DynamicProbes does (probes with the same target and fetch args share
    events, see plan.dynamic_key). The names of a glob, or of a target with
    several addresses (USDT sites, same-named static functions), come from
    the binary when it can be read here; otherwise a glob matches the
    recorded names and a plain name gives its first event.
    """

    def __init__(self, pairs: list[tuple[str, str]], path: str, site_tables: Optional[dict] = None):
        self.path = path
        self.systems: dict[str, list[str]] = {}  # event name -> ktapjit_* systems holding it
        for system, event in pairs:
            if system.startswith(GROUP_PREFIX):
                self.systems.setdefault(event, []).append(system)
        self.tables = {event: table for (_system, event), table in (site_tables or {}).items()}
        self.taken: set[str] = set()

    def find(self, spec) -> list[tuple[str, str]]:
        names = self._exact_names(spec)
        if names is None:
            names = self._matching_names(spec)
        self.taken.update(names)
        return [(system, name) for name in names for system in self.systems[name]]

    def _unique(self, base: str, reserved: set) -> str:
        return unique_name(base, self.taken, reserved)

    def _exact_names(self, spec) -> Optional[list[str]]:
        """The names a live run gave, when they are all in the recording; else
        None. A glob's is its site event, when its table fits the glob; a
        recording made before site events has one event per function, named
        from the binary when it can be read here."""
        if isinstance(spec, UprobeSpec) and is_glob_symbol(spec.symbol):
            name = self._unique(sites_event_name(spec.path, spec.is_return), set())
            if name in self.systems and name in self.tables and _fits(self.tables[name], spec):
                return [name]
        bases = _live_bases(spec)
        if not bases:
            return None
        names: list[str] = []
        for base in bases:
            names.append(self._unique(base, set(names)))
        return names if all(n in self.systems for n in names) else None

    def _matching_names(self, spec) -> list[str]:
        free = sorted(n for n in self.systems if n not in self.taken)
        if isinstance(spec, UprobeSpec) and is_glob_symbol(spec.symbol):
            # The file is named otherwise here (or not found): the site event
            # whose table says it is of this file, for this glob or a narrower one.
            found = [n for n in free if n in self.tables and _fits(self.tables[n], spec)]
            if found:
                return found[:1]
        if isinstance(spec, (UprobeSpec, SdtSpec)) and is_glob(_pattern(spec)):
            pattern, is_return = _pattern(spec), isinstance(spec, UprobeSpec) and spec.is_return
            found = [n for n in free if n.endswith(RETURN_SUFFIX) == is_return
                     and fnmatch.fnmatchcase(n[:-len(RETURN_SUFFIX)] if is_return else n, pattern)]
            if found:
                return found
            base = pattern
        else:
            base = _base_name(spec)
            name = self._unique(base, set())
            if name in self.systems:
                return [name]
        raise EventsError(self._missing(spec, base))

    def _missing(self, spec, base: str) -> str:
        kind = {UprobeSpec: "uprobe", SdtSpec: "USDT", KprobeSpec: "kprobe"}[type(spec)]
        head = f"no {kind} event '{base}' for '{spec.text}' in recording '{self.path}'"
        if not self.systems:
            return f"{head}: it holds no dynamic events (record them with ktapjit run --record or ktapjit record)"
        known = [(self.systems[n][0], n) for n in sorted(self.systems)]
        hint = close_matches_hint(f"{known[0][0]}:{base}", known)
        if not hint:
            shown = ", ".join(f"{s}:{n}" for s, n in known[:5]) + (", ..." if len(known) > 5 else "")
            hint = f"; it has {shown}"
        globs = [f"'{t.path}:{t.glob}'" for t in self.tables.values()]
        if globs:  # the file probed with a glob, of which this asks a part
            hint += (f"; its glob events ({', '.join(globs[:3])}{', ...' if len(globs) > 3 else ''}) replay "
                     "with that glob or a broader one")
        return head + hint


def _pattern(spec) -> str:
    return spec.symbol if isinstance(spec, UprobeSpec) else spec.name


def _base_name(spec) -> str:
    """The name DynamicProbes gives a plain (non-glob) target."""
    if isinstance(spec, UprobeSpec):
        if is_hex_offset(spec.symbol):
            return event_name(f"{os.path.basename(spec.path)}_{int(spec.symbol, 16):#x}", spec.is_return)
        return event_name(spec.symbol.split("@", 1)[0], spec.is_return)
    if isinstance(spec, SdtSpec):
        return event_name(spec.name)
    return event_name(spec.function.split(":")[-1], spec.is_return)


def _fits(table, spec) -> bool:
    """Whether a recorded site table (probe_sites.SiteTable) is of `spec`'s
    file and kind, and made for its glob or a narrower one: then every probe
    it names is one the glob asks for. (A narrower glob on replay, or one
    function by name, would need only some of its sites: not done.)"""
    if table.is_return != spec.is_return or not _same_file_name(table.path, spec.path):
        return False
    return table.glob == spec.symbol or all(fnmatch.fnmatchcase(name, spec.symbol) for name in _bare(table))


def _same_file_name(recorded: str, path: str) -> bool:
    """The recorded file is `path` (by its name: a recording moves between
    machines), or the library `path` names (`libc` for libc.so.6)."""
    name = os.path.basename(recorded)
    if "/" in path:
        return name == os.path.basename(path)
    return names_library(name, path)


def _bare(table) -> list[str]:
    """The table's probe names as functions: without the return suffix."""
    return [n[:-len(RETURN_SUFFIX)] if table.is_return and n.endswith(RETURN_SUFFIX) else n for n in table.names]


def _live_bases(spec) -> Optional[list[str]]:
    """One base name per event plan.create_dynamic made for `spec` before
    globs became site events, read from the binary as it does; None when
    that cannot be done here."""
    if isinstance(spec, KprobeSpec):
        return [_base_name(spec)]
    try:
        elf = open_elf(spec.path)
        if isinstance(spec, UprobeSpec):
            return [event_name(t.symbol.name if t.symbol else f"{os.path.basename(spec.path)}_{t.offset:#x}",
                               spec.is_return) for t in elf.resolve(spec.symbol)]
        return [event_name(note.name) for note in elf.find_sdt(spec.provider, spec.name)]
    except EventsError:
        return None


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
    return Replay(data, plan, warnings)


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
