"""A session's FeedPlan (run_api.py): its StreamPlan and its stream's attrs
described as the plain values a native feed loads.

The plan says how each record finds its layout (decode.AttrTable.routing()),
which probes each sample id runs, in declaration order (the StreamPlan), and
for every bound probe where each event value and field its body may read
comes from: a task value, a constant, a RAW field at an offset the format
fixes (read as events/schema.py reads it), the event's print fmt (argstr),
or a site event's site table (probename). Filters arrive compiled
(kernel_filter/native.py). The engine decides what of this it runs
natively; this module decides only what the stream is.

None when the stream cannot be described: its records do not say which
event wrote them, or a probe's filter has no native program. The session
then runs the per-event path, which reports or handles either.
"""

from __future__ import annotations

from typing import Optional

from ktapjit.events.printfmt.bytecode import UnsupportedArgstr, compile_argstr
from ktapjit.events.records.decode import AttrTable
from ktapjit.events.schema import EventFormat
from ktapjit.ir.func import Module
from ktapjit.run_api import (
    ArgstrValue, ConstValue, DynamicField, FeedPlan, FeedProbe, FieldValue, FilterProgram, IdRoute, NilValue,
    SampleLayout, SiteName, SlotSource, TaskValue,
)
from ktapjit.tracing.plan import BoundEvent, BoundProfile, StreamPlan

_TASK_VALUES = ("pid", "tid", "cpu", "execname", "uid")
_ARG_COUNT = 10  # arg0..arg9
_INT_SIZES = (1, 2, 4, 8)  # the sizes schema.py reads as integers
_MISSING = FieldValue("missing")


class _NoPlan(Exception):
    """The stream cannot be described to a native feed."""


def build_feed_plan(plan: StreamPlan, attrs: AttrTable, start_ns: int,
                    module: Optional[Module] = None) -> Optional[FeedPlan]:
    """The FeedPlan of a session (`module`: the script, whose probe filters
    the plan compiles; a plan with filters needs it), or None."""
    routing = attrs.routing()
    if routing.error:
        return None
    try:
        groups, group_of = _groups(plan, module)
    except _NoPlan:
        return None
    layouts = tuple(SampleLayout(info.sample_type, bool(info.sample_id_all)) for info in routing.layouts)
    if routing.single:
        # Every id reads with the one layout, the plan's own ids too.
        ids = dict.fromkeys([*(sid for sid, _ in routing.layout_of), *(k for k in plan.by_id if k is not None)])
        routes = tuple(IdRoute(sid, 0, group_of.get(sid, -1)) for sid in ids)
    else:
        routes = tuple(IdRoute(sid, layout, group_of.get(sid, -1)) for sid, layout in routing.layout_of)
    return FeedPlan(start_ns, layouts, routing.single, routing.id_pos or 0, routing.is_pos, routes,
                    groups, group_of.get(None, -1))


def _groups(plan: StreamPlan, module: Optional[Module]) -> tuple[tuple, dict]:
    """The probe groups, and sample id -> group index; ids with the same
    bound events share one group."""
    groups: list[tuple[FeedProbe, ...]] = []
    made: dict[tuple, int] = {}
    group_of = {}
    for sid, bound_events in plan.by_id.items():
        key = tuple(id(b) for b in bound_events)
        if key not in made:
            made[key] = len(groups)
            groups.append(tuple(_profile(b) if b.is_profile else _probe(b, module) for b in bound_events))
        group_of[sid] = made[key]
    return tuple(groups), group_of


def _probe(bound: BoundEvent, module: Optional[Module]) -> FeedProbe:
    fmt = bound.fmt
    dynamic = tuple(DynamicField(f.name, f.offset, f.size, f.relative) for f in fmt.all_fields if f.dynamic)
    values: list[tuple[str, SlotSource]] = [(name, TaskValue(name)) for name in _TASK_VALUES]
    probename = SiteName(bound.site_offset, bound.sites) if bound.sites else ConstValue(bound.probename)
    values += [("probename", probename), ("argstr", _argstr(bound))]
    for index in range(_ARG_COUNT):
        arg = field_value(fmt, bound.arg_names[index]) if index < len(bound.arg_names) else NilValue()
        values.append((f"arg{index}", arg))
    fields = tuple((f.name, field_value(fmt, f.name)) for f in fmt.all_fields)
    return FeedProbe("probe", bound.probe, fmt.qualified_name, fmt.fixed_size,
                     f"corrupt {bound.system}:{bound.event} record at byte offset ".encode(), dynamic,
                     _filter(bound, module), tuple(values), fields, _MISSING)


def _profile(bound: BoundProfile) -> FeedProbe:
    """A `profile-N` timer's cpu-clock samples run its body with the task's
    values and its probename; everything of a trace format is nil
    (sample_event.ProfileEvent)."""
    values: list[tuple[str, SlotSource]] = [(name, TaskValue(name)) for name in _TASK_VALUES]
    values += [("probename", ConstValue(bound.probename)), ("argstr", NilValue())]
    values += [(f"arg{index}", NilValue()) for index in range(_ARG_COUNT)]
    return FeedProbe("timer", bound.timer, bound.name, 0, b"", (), None, tuple(values), (), NilValue())


def _filter(bound: BoundEvent, module: Optional[Module]) -> Optional[FilterProgram]:
    if bound.matches is None:
        return None
    # Imported here: a session whose probes have no filter never needs them.
    from ktapjit.kernel_filter.language import parse_filter
    from ktapjit.kernel_filter.native import UnsupportedFilter, compile_program

    try:
        code, patterns = compile_program(parse_filter(module.probes[bound.probe].filter), bound.fmt)
    except UnsupportedFilter:
        raise _NoPlan from None
    return FilterProgram(tuple(code), patterns)


def _argstr(bound: BoundEvent) -> ArgstrValue:
    """The format's argstr as bytecode, when it renders exactly as
    bound.render does without symbols or printk strings."""
    render = bound.render
    if not getattr(render, "plain", False) or render.fallback:
        return ArgstrValue(None, refusal="argstr with symbols, printk strings or [FAILED TO PARSE]")
    try:
        program = compile_argstr(bound.fmt)
    except UnsupportedArgstr as exc:
        return ArgstrValue(None, refusal=str(exc))
    return ArgstrValue(tuple(program.code), program.blob, bound.fmt.qualified_name)


def field_value(fmt: EventFormat, name: str) -> FieldValue:
    """How a format field reads as a script value (schema.py's reader, then
    SampleEvent's script value)."""
    field = fmt.field(name)
    if field is None:
        return _MISSING
    if field.dynamic:
        if field.is_string:
            return FieldValue("string", field.offset, field.size, relative=field.relative)
        elem = field.elem_size or 1
        return FieldValue("dyn_array", field.offset, field.size, elem if elem in _INT_SIZES else 0,
                          field.signed, field.relative)
    if field.array_len is None:
        if field.size in _INT_SIZES:
            return FieldValue("int", field.offset, field.size, signed=field.signed)
        return FieldValue("bytes", field.offset, field.size)
    if field.is_string:
        return FieldValue("chars", field.offset, field.size)
    if field.elem_size in _INT_SIZES and field.elem_size * field.array_len == field.size:
        return FieldValue("array", field.offset, field.size, field.elem_size, field.signed)
    return FieldValue("array", field.offset, field.size)  # its bytes, as schema reads them
