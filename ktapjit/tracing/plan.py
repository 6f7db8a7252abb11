"""Binding a script's probes to concrete events: the StreamPlan.

The plan says, for every sample id of the stream, which probes run and with
what: the event's format (fields, print fmt), its name, and the probe's
filter compiled for that format. The same plan serves a live session (bound
against tracefs) and a replay (bound against the recording's own formats),
so both dispatch identically.

Binding problems (an unknown event, a filter naming a field the event lacks,
a probe kind this machine cannot attach) are reported like compile errors,
at the EVENTDEF or the filter, with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ktapjit.diag import CompileError, Diagnostic, Span
from ktapjit.events.printfmt import compile_print_fmt
from ktapjit.events.schema import EventFormat
from ktapjit.events.tracefs import close_matches_hint, select_tracepoints
from ktapjit.frontend.eventdef import (
    FtraceSpec, KprobeSpec, SdtSpec, TracepointSpec, UprobeSpec, parse_eventdef,
)
from ktapjit.frontend.filter import check_filter, compile_filter, filter_to_kernel_text, parse_filter
from ktapjit.ir.func import Module, ProbeInfo


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

    @property
    def probename(self) -> bytes:
        return self.event.encode()


@dataclass
class StreamPlan:
    """Sample id -> the bound events it runs, in probe declaration order."""

    bound: list[BoundEvent] = field(default_factory=list)
    by_id: dict[int, list[BoundEvent]] = field(default_factory=dict)

    def attach(self, sample_ids: Iterable[int], event: BoundEvent) -> None:
        for sid in sample_ids:
            self.by_id.setdefault(sid, []).append(event)


class EventUniverse:
    """The tracepoints a plan may bind to: a recording's, or the live kernel's."""

    def tracepoints(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def format(self, system: str, event: str) -> EventFormat:
        raise NotImplementedError


def _fail(span: Span, message: str) -> None:
    raise CompileError(Diagnostic(span, message))


def probe_specs(probe: ProbeInfo) -> list:
    return parse_eventdef(probe.eventdef)  # its syntax was checked by resolve


def parse_probe_filter(probe: ProbeInfo):
    return None if probe.filter is None else parse_filter(probe.filter)


def resolve_tracepoints(spec: TracepointSpec, universe: EventUniverse, span: Span, what: str) -> list[tuple[str, str]]:
    known = universe.tracepoints()
    found = select_tracepoints(spec.system, spec.event, known)
    if not found:
        _fail(span, f"unknown event '{spec.text}'{what}{close_matches_hint(spec.text, known)}")
    return found


def unsupported(spec, span: Span) -> None:
    """Probe kinds that arrive with a later issue, or that this kernel lacks."""
    if isinstance(spec, UprobeSpec):
        _fail(span, f"uprobes ('{spec.text}') are not supported yet")
    if isinstance(spec, KprobeSpec):
        _fail(span, f"kprobes ('{spec.text}') are not supported yet")
    if isinstance(spec, SdtSpec):
        _fail(span, f"USDT probes ('{spec.text}') are not supported yet")
    if isinstance(spec, FtraceSpec):
        _fail(span, "ftrace:function is not available: the function tracer is refused on this kernel "
                    "(lockdown) and not supported yet")


def bind_event(module: Module, index: int, system: str, event: str, fmt: EventFormat, filter_node) -> BoundEvent:
    probe = module.probes[index]
    matches = None
    filter_text = None
    if filter_node is not None:
        problems = check_filter(filter_node, fmt)
        if problems:
            message, offset = problems[0]
            _fail(probe.filter_span.shifted(offset), f"filter on {system}:{event}: {message}")
        matches = compile_filter(filter_node, fmt)
        filter_text = filter_to_kernel_text(filter_node)
    return BoundEvent(index, system, event, fmt, filter_text, matches, compile_print_fmt(fmt))


def bind_tracepoints(module: Module, universe: EventUniverse, where: str = "") -> list[BoundEvent]:
    """Every (probe, tracepoint) pair of the module, in probe then event order."""
    bound = []
    for index, probe in enumerate(module.probes):
        filter_node = parse_probe_filter(probe)
        for spec in probe_specs(probe):
            span = probe.eventdef_span.shifted(spec.offset)
            if not isinstance(spec, TracepointSpec):
                unsupported(spec, span)
            for system, event in resolve_tracepoints(spec, universe, span, where):
                bound.append(bind_event(module, index, system, event, universe.format(system, event), filter_node))
    return bound


def check_timers(module: Module) -> None:
    for timer in module.timers:
        if timer.kind == "profile":
            _fail(timer.func.span, f"'{timer.text}' sampling is not supported yet")
