"""Binding a script's probes to concrete events: the StreamPlan.

The plan says, for every sample id of the stream, which probes run and with
what: the event's format (fields, print fmt), its name, and the probe's
filter compiled for that format. The same plan serves a live session (bound
against tracefs) and a replay (bound against the recording's own formats),
so both dispatch identically.

Binding problems (an unknown event, a filter naming a field the event lacks,
a probe kind this machine cannot attach) are reported like compile errors,
at the EVENTDEF or the filter, with status 2.

Uprobes, USDT markers and kprobes are *dynamic* events: the universe makes
them (live, through DynamicProbes) or finds the ones a live run made (in a
recording, by the event names that run gave them); once they exist they
bind like tracepoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from ktapjit.diag import CompileError, Diagnostic, Span
from ktapjit.events.printfmt.closures import compile_print_fmt
from ktapjit.events.schema import EventFormat
from ktapjit.events.errors import EventsError
from ktapjit.events.tracefs import GLOB_CHARS, close_matches_hint, select_tracepoints
from ktapjit.frontend.eventdef import (
    FtraceSpec, KprobeSpec, SdtSpec, TracepointSpec, UprobeSpec, parse_eventdef,
)
from ktapjit.ir.func import Func, Module, ProbeInfo
from ktapjit.ir.ops import Op

if TYPE_CHECKING:
    from ktapjit.events.probes.probe_sites import SiteTable

# Imported where used: site tables, located targets and filters
# (events.probes, kernel_filter) cost start-up that a plain tracepoint
# script, or a replay, never needs (docs/performance-notes.md, Start-up).


@dataclass(eq=False)
class BoundEvent:
    """One (probe, event) pair: what a matching sample runs."""

    probe: int  # index into Module.probes
    system: str
    event: str
    fmt: EventFormat
    filter_text: Optional[str]  # canonical kernel text, for PERF_EVENT_IOC_SET_FILTER
    matches: Optional[Callable]  # (raw, cpu, comm) -> bool, None when unfiltered
    render: Callable[[dict], bytes]  # argstr
    arg_names: tuple[str, ...] = ()  # the fields arg0, arg1, ... read, in order
    callchain: bool = False  # the probe body calls stack()/ustack(): open the event with callchains
    eventdef: str = ""  # the EVENTDEF part (one spec) this event came from, as written
    from_glob: bool = False  # that spec is a glob: the event may be skipped if the kernel refuses it
    site_table: Optional[SiteTable] = None  # a site event's (events.probes.probe_sites), else None
    site_offset: int = 0  # where its records hold their site index
    memory_reads: tuple[str, ...] = ()  # the body's user_string/kernel_string/in_iowait (MemoryRead auxes)

    is_profile = False

    @property
    def probename(self) -> bytes:
        return self.event.encode()

    @property
    def sites(self) -> tuple[str, ...]:
        """The probe names of a site event, by site index; () for others."""
        return self.site_table.names if self.site_table is not None else ()

    @property
    def points(self) -> int:
        """How many probe points the event stands for."""
        return len(self.sites) or 1

    def probename_of(self, raw: bytes) -> Optional[bytes]:
        """The probename of one record: the event's name, or for a site
        event the name of the record's site (None: not in the table)."""
        if not self.sites:
            return self.probename
        from ktapjit.events.probes.probe_sites import site_name

        name = site_name(self.sites, raw, self.site_offset)
        return None if name is None else name.encode()


@dataclass(eq=False)
class BoundProfile:
    """A `profile-N` timer bound to its cpu-clock event: each sample runs the
    timer's body (Run.run_profile) with the sample as its event."""

    timer: int  # index into Module.timers
    name: str  # the perf event's name, e.g. "ktapjit:profile-10ms" (profile_event_names)
    text: str  # the timer as written, e.g. "profile-10ms": its probename
    period_ns: int
    matches = None  # no filter
    is_profile = True

    @property
    def probename(self) -> bytes:
        return self.text.encode()


@dataclass
class StreamPlan:
    """Sample id -> the bound events it runs, in probe declaration order."""

    bound: list[BoundEvent] = field(default_factory=list)
    profiles: list["BoundProfile"] = field(default_factory=list)  # profile-N timers' cpu-clock events
    by_id: dict[int, list] = field(default_factory=dict)  # BoundEvents, or one BoundProfile
    refused: list = field(default_factory=list)  # functions globs matched that the kernel cannot probe
    companions: Optional[object] = None  # tracing.companion.CompanionRoutes, when the stream carries companions

    def attach(self, sample_ids: Iterable[int], event: BoundEvent) -> None:
        for sid in sample_ids:
            self.by_id.setdefault(sid, []).append(event)


DynamicSpec = (UprobeSpec, SdtSpec, KprobeSpec)


class EventUniverse:
    """The tracepoints a plan may bind to: a recording's, or the live kernel's."""

    def tracepoints(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def format(self, system: str, event: str) -> EventFormat:
        raise NotImplementedError

    def site_table(self, system: str, event: str) -> Optional[SiteTable]:
        """The table of a site event (events.probes.probe_sites), else None."""
        return None

    def dynamic(self, spec) -> list[tuple[str, str]]:
        """The (system, event) pairs of a UprobeSpec, SdtSpec or KprobeSpec:
        created live, found in a recording. Raises EventsError (one line,
        reported at the EVENTDEF) when it cannot."""
        raise EventsError(f"'{spec.text}': dynamic probes are not available here")

    def locate(self, spec):
        """The spec with a library or program given by name (`libc` in
        `probe:libc:malloc`) replaced by its file; raises EventsError (one
        line, saying where it looked) when there is none."""
        from ktapjit.events.probes.probe_targets import find_target, is_bare_name

        if isinstance(spec, (UprobeSpec, SdtSpec)) and is_bare_name(spec.path):
            return replace(spec, path=find_target(spec.path))
        return spec


def create_dynamic(probes, spec) -> list:
    """The events (events.probes.dynamic_probes.ProbeEvent) a UprobeSpec, SdtSpec or
    KprobeSpec needs, made through `probes` (a DynamicProbes)."""
    if isinstance(spec, UprobeSpec):
        return probes.add_uprobe(spec.path, spec.symbol, is_return=spec.is_return, fetchargs=spec.fetchargs)
    if isinstance(spec, SdtSpec):
        return probes.add_usdt(spec.path, spec.provider, spec.name)
    if isinstance(spec, KprobeSpec):
        return [probes.add_kprobe(spec.function, is_return=spec.is_return, fetchargs=spec.fetchargs)]
    raise TypeError(f"not a dynamic probe spec: {spec!r}")


def _fail(span: Span, message: str) -> None:
    raise CompileError(Diagnostic(span, message))


def probe_specs(probe: ProbeInfo) -> list:
    return parse_eventdef(probe.eventdef)  # its syntax was checked by resolve


def parse_probe_filter(probe: ProbeInfo):
    if probe.filter is None:
        return None
    from ktapjit.kernel_filter.language import parse_filter

    return parse_filter(probe.filter)


def resolve_tracepoints(spec: TracepointSpec, universe: EventUniverse, span: Span, what: str) -> list[tuple[str, str]]:
    known = universe.tracepoints()
    found = select_tracepoints(spec.system, spec.event, known)
    if not found:
        _fail(span, f"unknown event '{spec.text}'{what}{close_matches_hint(spec.text, known)}")
    return found


def unsupported(spec, span: Span) -> None:
    """Probe kinds that arrive with a later issue, or that this kernel lacks."""
    if isinstance(spec, FtraceSpec):
        # True on any kernel: whether this one has the function tracer is not the reason.
        _fail(span, "ftrace:function is not available: ktapjit does not support the function tracer yet")
    _fail(span, f"'{spec.text}' is not supported")


def _same_file(path: str) -> str:
    """One spelling per file: `libc` located in /lib/x86_64-linux-gnu and
    /usr/lib/x86_64-linux-gnu/libc.so.6 are the same file where /lib is a
    link to /usr/lib."""
    return os.path.realpath(path)


def dynamic_key(spec) -> tuple:
    """What makes two dynamic specs the same events: probes naming the same
    target with the same fetch args share them (one kernel event, one perf
    event, as probes sharing a tracepoint do), live and on replay alike."""
    if isinstance(spec, UprobeSpec):
        return ("uprobe", _same_file(spec.path), spec.symbol, spec.is_return, spec.fetchargs)
    if isinstance(spec, SdtSpec):
        return ("sdt", _same_file(spec.path), spec.provider, spec.name)
    return ("kprobe", spec.function, spec.is_return, spec.fetchargs)


def is_glob(spec) -> bool:
    """Whether a spec is a glob (which may match events the kernel then
    refuses: those are skipped), not names spelled out."""
    if isinstance(spec, TracepointSpec):
        names = (spec.system, spec.event)
    elif isinstance(spec, UprobeSpec):
        names = (spec.symbol,)
    elif isinstance(spec, SdtSpec):
        # As written: ktap's sdt:/path:NAME stands for provider '*', yet names one marker.
        # (What follows the path, which holds no ':'; the path may since have been located.)
        names = (spec.text.split(":", 2)[2],)
    else:
        names = ()
    return any(GLOB_CHARS.search(n) for n in names)


def has_dynamic_probes(module: Module) -> bool:
    return any(isinstance(spec, DynamicSpec) for probe in module.probes for spec in probe_specs(probe))


def arg_field_names(fmt: EventFormat) -> tuple[str, ...]:
    """The fields arg0, arg1, ... read: the non-common ones in format order,
    except a return probe's return address. A uretprobe (or kretprobe) has
    `__probe_func, __probe_ret_ip, FETCHARGS`: arg0 is the function, as arg0
    is the probe address of an entry probe, and the fetch args follow from
    arg1 in both (`args.__probe_ret_ip` still reads the return address)."""
    names = tuple(f.name for f in fmt.args())
    if names[:2] == ("__probe_func", "__probe_ret_ip"):
        return names[:1] + names[2:]
    return names


def uses_stacks(func: Func) -> bool:
    """Whether a probe body calls stack() or ustack() (an Op.Stack value):
    only then is its event opened with callchains (PERF_SAMPLE_CALLCHAIN)."""
    return any(value.op is Op.Stack for value in func.values())


def memory_reads(func: Func) -> tuple[str, ...]:
    """What a probe body asks the kernel to read at event time (Op.EventMemory
    auxes, once each): a companion program then runs on its event."""
    return tuple(dict.fromkeys(value.aux for value in func.values() if value.op is Op.EventMemory))


def bind_event(module: Module, index: int, system: str, event: str, fmt: EventFormat, filter_node) -> BoundEvent:
    probe = module.probes[index]
    matches = None
    filter_text = None
    if filter_node is not None:
        from ktapjit.kernel_filter.language import check_filter, compile_filter, filter_to_kernel_text, unreplayable

        problems = check_filter(filter_node, fmt) or unreplayable(filter_node, fmt)
        if problems:
            message, offset = problems[0]
            _fail(probe.filter_span.shifted(offset), f"filter on {system}:{event}: {message}")
        matches = compile_filter(filter_node, fmt)
        filter_text = filter_to_kernel_text(filter_node)
    return BoundEvent(index, system, event, fmt, filter_text, matches, compile_print_fmt(fmt),
                      arg_field_names(fmt), uses_stacks(probe.func), memory_reads=memory_reads(probe.func))


def bind_tracepoints(module: Module, universe: EventUniverse, where: str = "") -> list[BoundEvent]:
    """Every (probe, tracepoint) pair of the module, in probe then event order."""
    bound = []
    dynamic: dict[tuple, list[tuple[str, str]]] = {}
    for index, probe in enumerate(module.probes):
        filter_node = parse_probe_filter(probe)
        for spec in probe_specs(probe):
            span = probe.eventdef_span.shifted(spec.offset)
            if isinstance(spec, TracepointSpec):
                pairs = resolve_tracepoints(spec, universe, span, where)
            elif isinstance(spec, DynamicSpec):
                try:
                    spec = universe.locate(spec)  # `libc` and its path are one target
                    key = dynamic_key(spec)
                    if key not in dynamic:
                        dynamic[key] = universe.dynamic(spec)
                except EventsError as exc:
                    _fail(span, str(exc))
                pairs = dynamic[key]
            else:
                unsupported(spec, span)
            for system, event in pairs:
                fmt, table, offset = _site_format(universe, system, event, span)
                b = bind_event(module, index, system, event, fmt, filter_node)
                b.eventdef, b.from_glob, b.site_table, b.site_offset = spec.text, is_glob(spec), table, offset
                bound.append(b)
    return bound


def _site_format(universe: EventUniverse, system: str, event: str,
                 span: Span) -> tuple[EventFormat, Optional[SiteTable], int]:
    """The format the probes see, the site table and the site index's
    offset; a site event's format leaves its site field out."""
    fmt = universe.format(system, event)
    table = universe.site_table(system, event)
    if table is None:
        return fmt, None, 0
    from ktapjit.events.probes.probe_sites import SITE_FIELD, site_offset, without_site

    offset = site_offset(fmt)
    if offset is None:
        _fail(span, f"{system}:{event} has a probe site table but its format has no {SITE_FIELD} field")
    return without_site(fmt), table, offset


def bind_profiles(module: Module) -> list[BoundProfile]:
    """One cpu-clock event per `profile-N` timer, in declaration order, named
    `ktapjit:TEXT` (`ktapjit:TEXT_1`, `_2`... for repeats of one TEXT): the
    names a recording keeps, by which a replay finds each timer's samples."""
    bound = []
    seen: dict[str, int] = {}
    for index, timer in enumerate(module.timers):
        if timer.kind != "profile":
            continue
        n = seen.get(timer.text, 0)
        seen[timer.text] = n + 1
        name = f"ktapjit:{timer.text}" + (f"_{n}" if n else "")
        bound.append(BoundProfile(index, name, timer.text, timer.period_ns))
    return bound
