"""`ktapjit run -d`: what a run would attach, resolved as the run resolves
it, with nothing attached.

A live run binds its probes before it opens anything (live_session): it
lists tracefs's events for globs, reads each event's format, compiles each
filter against it, and creates the dynamic events (uprobes, USDT sites)
that a probe names. A dry run does the same through a universe that reads
but never writes: dynamic probes are resolved in their ELF files
(dynamic_probes.plan_uprobe, plan_usdt) and given the formats the kernel
will give them once created. Errors are therefore the run's own, raised at
the same step. What only opening can tell (whether the kernel accepts a
perf event, which functions of a uprobe glob it refuses) is listed as not
checked. A replay's dry run binds against the recording, as the replay does.

The result is data (DryRun); dry_run_text and dry_run_objects render it
for a reader and for -f json (docs/output-json.md, "dry_run").
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ktapjit.events.probes.dynamic_probes import (
    GROUP_PREFIX, DynamicProbeError, group_name, kprobe_definition_for, kprobes_available, list_dynamic_events,
    plan_uprobe, plan_usdt, planned_format_text, sites_event_name, target_name, unique_name, event_name,
)
from ktapjit.events.schema import EventFormat, parse_format
from ktapjit.events.tracefs import tracefs_root
from ktapjit.frontend.eventdef import KprobeSpec, SdtSpec, UprobeSpec
from ktapjit.ir.func import Module, ProbeInfo, TimerInfo
from ktapjit.tracing.live import LiveUniverse, events_of, kernel_filter
from ktapjit.tracing.plan import BoundEvent, bind_tracepoints, has_dynamic_probes

# What a live run does past binding that a dry run, which opens nothing, cannot check.
NOT_CHECKED_OPEN = ("whether the kernel opens each event: an event a glob matched that it refuses is skipped, "
                    "a named one fails the run")
NOT_CHECKED_SITES = ("which functions of a uprobe glob the kernel refuses to probe: the run tries them "
                     "and leaves those out")
NOT_CHECKED_PID = "whether ktapjit may trace process {pid}: perf_event_open decides"
NOT_CHECKED_NAMES = f"the dynamic events' names: the run makes them in its own group, {GROUP_PREFIX}<its pid>"


@dataclass(frozen=True)
class Site:
    """One address a dynamic event probes."""

    path: str
    function: Optional[str]  # None for a hex offset
    offset: int  # the file offset uprobe_events gets
    address: Optional[int] = None  # the symbol's (or USDT site's) virtual address in the file
    semaphore: Optional[int] = None  # a USDT semaphore's file offset


@dataclass
class PlannedEvent:
    """One perf event the run would open, with the probes it runs."""

    system: str
    event: str
    kind: str  # tracepoint | uprobe | uretprobe | usdt | kprobe | kretprobe
    kernel_filter: Optional[str]  # as the kernel gets it (the OR of the probes' filters)
    optional: bool  # every probe on it came from a glob: skipped if the kernel refuses it
    sites: tuple[Site, ...] = ()
    definition: str = ""  # a kprobe's kprobe_events line


@dataclass
class PlannedProbe:
    index: int  # 1-based, in source order
    info: ProbeInfo
    events: list[PlannedEvent]
    where: str = "user"  # kernel | user
    reasons: tuple[str, ...] = ()  # why not in the kernel (--engine bpf)


@dataclass
class PlannedTimer:
    index: int
    info: TimerInfo
    where: str = "user"
    reasons: tuple[str, ...] = ()


@dataclass
class DryRun:
    engine: str
    scope: str
    probes: list[PlannedProbe]
    timers: list[PlannedTimer]
    not_checked: list[str] = field(default_factory=list)
    source: str = "live"  # or the recording a replay would read
    feed_note: str = ""  # the JIT's native feed, where known


@dataclass
class _Planned:
    kind: str
    kernel_args: tuple[str, ...]  # its format's fields after the probe address
    sites: tuple[Site, ...]
    definition: str = ""

    @property
    def is_return(self) -> bool:
        return self.kind.endswith("retprobe")


class DryUniverse(LiveUniverse):
    """This kernel's tracepoints, and dynamic probes resolved but not created."""

    def __init__(self):
        super().__init__(None)
        self.group = group_name()
        self.planned: dict[tuple[str, str], _Planned] = {}

    def format(self, system: str, event: str) -> EventFormat:
        planned = self.planned.get((system, event))
        if planned is None:
            return super().format(system, event)
        return parse_format(planned_format_text(event, planned.is_return, planned.kernel_args), system=system)

    def dynamic(self, spec) -> list[tuple[str, str]]:
        if isinstance(spec, KprobeSpec):
            available = kprobes_available()
            if not available:
                raise DynamicProbeError(available.reason)
            definition = kprobe_definition_for(spec, self.group)
            name = definition.split()[0].split("/", 1)[1]
            kind = "kretprobe" if spec.is_return else "kprobe"
            return [self._add(name, _Planned(kind, tuple(definition.split()[2:]), (), definition))]
        if isinstance(spec, UprobeSpec):
            return self._uprobes(spec)
        if isinstance(spec, SdtSpec):
            return self._usdt(spec)
        raise TypeError(f"not a dynamic probe spec: {spec!r}")

    def _add(self, base: str, planned: _Planned) -> tuple[str, str]:
        name = unique_name(base, {e for _s, e in self.planned})
        self.planned[(self.group, name)] = planned
        return (self.group, name)

    def _uprobes(self, spec: UprobeSpec) -> list[tuple[str, str]]:
        plan = plan_uprobe(spec.path, spec.symbol, is_return=spec.is_return, fetchargs=spec.fetchargs)
        kind = "uretprobe" if plan.is_return else "uprobe"
        sites = [Site(plan.path, t.symbol.name if t.symbol else None, t.offset,
                      t.symbol.value if t.symbol else None) for t in plan.targets]
        args = plan.kernel_args
        if plan.is_glob:  # one event, the glob's functions its sites (as DynamicProbes.add_sites)
            return [self._add(sites_event_name(plan.path, plan.is_return), _Planned(kind, args, tuple(sites)))]
        return [self._add(target_name(plan.path, t, plan.is_return), _Planned(kind, args, (site,)))
                for t, site in zip(plan.targets, sites)]

    def _usdt(self, spec: SdtSpec) -> list[tuple[str, str]]:
        _machine, prepared = plan_usdt(spec.path, spec.provider, spec.name)
        path = str(Path(spec.path).absolute())
        out = []
        for note, args in prepared:
            site = Site(path, f"{note.provider}:{note.name}", note.pc_offset, note.pc, note.semaphore_offset)
            out.append(self._add(event_name(note.name), _Planned("usdt", tuple(args), (site,))))
        return out


def dry_bind_live(module: Module) -> tuple[list[BoundEvent], DryUniverse]:
    """Bind as live_session does, in the same order, so errors are the run's."""
    universe = DryUniverse()
    if has_dynamic_probes(module):
        # A live run reads uprobe_events first (to sweep dead runs' groups): its errors come first.
        list_dynamic_events(tracefs_root())
    return bind_tracepoints(module, universe), universe


def live_dry_run(module: Module, engine: str, pid: int = -1, command: Optional[list[str]] = None) -> DryRun:
    bound, universe = dry_bind_live(module)
    if command:
        scope = f"the command '{shlex.join(command)}' and its children (a dry run does not start it)"
    elif pid != -1:
        scope = f"process {pid} and its children"
    else:
        scope = "every process, but for ktapjit's own threads (each event's filter gets common_pid != TID for each)"
    dry = DryRun(engine, scope, *_planned(module, bound, universe.planned))
    if bound:
        dry.not_checked.append(NOT_CHECKED_OPEN)
    if any(len(e.sites) > 1 and e.kind.startswith("u") for p in dry.probes for e in p.events):
        dry.not_checked.append(NOT_CHECKED_SITES)
    if universe.planned:
        dry.not_checked.append(NOT_CHECKED_NAMES)
    if pid != -1 and not command:
        dry.not_checked.append(NOT_CHECKED_PID.format(pid=pid))
    if engine == "jit" and bound:
        dry.feed_note = _feed_note(module, bound)
    return dry


def _feed_note(module: Module, bound: list[BoundEvent]) -> str:
    """What is known of the JIT's native feed before the rings are open: a
    filter without a native program sends every event the per-event path."""
    from ktapjit.kernel_filter.language import parse_filter
    from ktapjit.kernel_filter.native import UnsupportedFilter, compile_program

    for b in bound:
        if b.memory_reads:
            return (f"no: probe {b.probe + 1} reads memory at event time ({', '.join(b.memory_reads)}): its "
                    "companion records are paired on the per-event path")
    for b in bound:
        text = module.probes[b.probe].filter
        if text is None:
            continue
        try:
            compile_program(parse_filter(text), b.fmt)
        except UnsupportedFilter as exc:
            return (f"no: the filter of probe {b.probe + 1} on {b.system}:{b.event} has no native program "
                    f"({exc}): every event takes the per-event path")
    return "possible: every filter has a native program (the JIT takes the session once the rings are open)"


def replay_dry_run(path: str, module: Module, engine: str) -> tuple[DryRun, list[str]]:
    """The probes bound against a recording, as a replay binds them; and the replay's warnings."""
    from ktapjit.tracing.replay import open_replay

    replay = open_replay(path, module)
    dry = DryRun(engine, "the recorded processes", *_planned(module, replay.plan.bound, {}), source=path)
    for probe in dry.probes:
        for event in probe.events:
            event.kernel_filter = None  # no kernel filters a recording: ktapjit applies them all
    return dry, list(replay.warnings)


def _planned(module: Module, bound: list[BoundEvent], dynamic: dict) -> tuple[list, list]:
    groups = events_of(bound)
    by_probe: dict[int, list[PlannedEvent]] = {i: [] for i in range(len(module.probes))}
    for b in bound:
        members = groups[(b.system, b.event)]
        planned = dynamic.get((b.system, b.event))
        event = PlannedEvent(b.system, b.event, planned.kind if planned else _kind_of(b), kernel_filter(members),
                             all(m.from_glob for m in members), planned.sites if planned else (),
                             planned.definition if planned else "")
        by_probe[b.probe].append(event)
    probes = [PlannedProbe(i + 1, probe, by_probe[i]) for i, probe in enumerate(module.probes)]
    timers = [PlannedTimer(i + 1, timer) for i, timer in enumerate(module.timers)]
    return probes, timers


def _kind_of(b: BoundEvent) -> str:
    """A replayed dynamic event's kind, from its fields (a recording keeps no definitions)."""
    if not b.system.startswith(GROUP_PREFIX):
        return "tracepoint"
    names = {f.name for f in b.fmt.all_fields}
    return "uretprobe" if "__probe_ret_ip" in names else "uprobe"


# ------------------------------------------------------------------ rendering

def _span(info: ProbeInfo) -> str:
    return info.eventdef_span.location()


def _timer_text(timer: TimerInfo) -> str:
    period = _duration(timer.period_ns)
    if timer.kind == "profile":
        return f"a cpu-clock sample every {period} on each CPU, with callchains"
    return f"every {period} of stream time (a cpu-clock event every 10 ms keeps it firing on a quiet system)"


def _duration(ns: int) -> str:
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % size == 0:
            return f"{ns // size} {unit}"
    return f"{ns} ns"


def _where_text(engine: str, where: str, reasons: tuple[str, ...]) -> list[str]:
    if engine in ("bpf", "compare --bpf"):
        then = ", then interp on the recording" if engine != "bpf" else ""
        if where == "kernel":
            return [f"runs: in the kernel (eBPF){then}"]
        return [f"runs: in user space{then} (--engine bpf cannot run it in the kernel):",
                *(f"    {reason}" for reason in reasons)]
    if engine == "compare":
        return ["runs: in user space (jit live, then interp on the recording)"]
    return [f"runs: in user space ({engine})"]


def _site_text(site: Site) -> str:
    what = site.function or "(offset)"
    text = f"{what} at file offset {site.offset:#x}"
    if site.address is not None:
        text += f", address {site.address:#x}"
    if site.semaphore:
        text += f", semaphore at file offset {site.semaphore:#x}"
    return text


def _event_lines(event: PlannedEvent, live: bool) -> list[str]:
    head = f"{event.kind} {event.system}:{event.event}"
    # A replay has no kernel: ktapjit applies every filter itself.
    lines = [f"  {head}" + ("" if event.kernel_filter or not live else ", no kernel filter")]
    if event.kernel_filter:
        lines.append(f"    kernel filter: {event.kernel_filter}")
    if event.sites:
        paths = sorted({s.path for s in event.sites})
        lines.append(f"    in {', '.join(paths)}, {len(event.sites)} site{'' if len(event.sites) == 1 else 's'}:")
        lines += [f"      {_site_text(s)}" for s in event.sites]
    if event.definition:
        lines.append(f"    kprobe_events: {event.definition}")
    return lines


def dry_run_text(dry: DryRun) -> str:
    """The plan, one block per probe and timer in source order: text a user reads."""
    lines = ["Dry run: nothing was attached.",
             f"engine: {dry.engine}",
             f"events from: {'this kernel' if dry.source == 'live' else 'the recording ' + dry.source}",
             f"traces: {dry.scope}"]
    if dry.feed_note:
        lines.append(f"native feed: {dry.feed_note}")
    if not dry.probes and not dry.timers:
        lines.append("no probes or timers: the script runs its top level and trace_end, and traces nothing")
    for probe in dry.probes:
        lines += ["", f"probe {probe.index} ({_span(probe.info)}): trace {probe.info.eventdef}"
                  + (f" /{probe.info.filter}/" if probe.info.filter is not None else "")]
        lines += ["  " + line for line in _where_text(dry.engine, probe.where, probe.reasons)]
        n = len(probe.events)
        lines.append(f"  {n} event{'' if n == 1 else 's'}:")
        for event in probe.events:
            lines += ["  " + line for line in _event_lines(event, dry.source == "live")]
    for timer in dry.timers:
        lines += ["", f"timer {timer.index}: {timer.info.text}", f"  {_timer_text(timer.info)}"]
        lines += ["  " + line for line in _where_text(dry.engine, timer.where, timer.reasons)]
    if dry.not_checked:
        lines += ["", "not checked without attaching:"]
        lines += [f"  - {text}" for text in dry.not_checked]
    return "".join(line + "\n" for line in lines)


def dry_run_objects(dry: DryRun) -> list[dict]:
    """The plan as -f json objects (type "dry_run"; docs/output-json.md)."""
    head = {"what": "session", "engine": dry.engine, "source": dry.source, "scope": dry.scope,
            "not_checked": dry.not_checked}
    if dry.feed_note:
        head["native_feed"] = dry.feed_note
    out = [head]
    for probe in dry.probes:
        span = probe.info.eventdef_span
        out.append({"what": "probe", "index": probe.index, "eventdef": probe.info.eventdef,
                    "filter": probe.info.filter, "file": span.file, "line": span.line, "col": span.col,
                    "where": probe.where, "reasons": list(probe.reasons),
                    "events": [_event_object(e) for e in probe.events]})
    for timer in dry.timers:
        out.append({"what": "timer", "index": timer.index, "timer": timer.info.text, "kind": timer.info.kind,
                    "period_ns": timer.info.period_ns, "where": timer.where, "reasons": list(timer.reasons)})
    return [{"v": 1, "type": "dry_run", **obj} for obj in out]


def _event_object(event: PlannedEvent) -> dict:
    obj = {"system": event.system, "event": event.event, "kind": event.kind,
           "kernel_filter": event.kernel_filter, "optional": event.optional}
    if event.sites:
        obj["sites"] = [{"path": s.path, "function": s.function, "offset": s.offset, "address": s.address,
                         **({"semaphore": s.semaphore} if s.semaphore else {})} for s in event.sites]
    if event.definition:
        obj["definition"] = event.definition
    return obj

