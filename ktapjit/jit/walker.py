"""A record walker compiled per session: one LLVM function (``ktap_walk``,
runtime/ktrt.h's kwalk) that runs the common samples of the session's
stream with everything the generic walker looks up made constant.

When a session binds, its FeedPlan fixes what runtime/feed.c otherwise
reads from tables for every record: where each sample layout keeps its id,
time, task and RAW data, which sample ids run which probes, and how each
event slot of each probe is filled. For the ids whose probes need only the
simple slot kinds (task values and execname, constants, integer fields,
nil) and no kernel filter, the walker reads the record at constant offsets, picks the
route with a switch on the id, checks the record as decode.py and
schema.py would, fills the slots and enters each probe's code by its
symbol. Anything else it declines before changing anything (another record
type, another id, a record the checks refuse, a time that is not real or at
which a timer is due) and the generic walker runs the record, with its
messages; so the compiled walker is an exact shortcut, never a second
meaning (docs/jit.md says where the cut lies and why).

The walker is its own small module, linked against the script's image
(its entry symbols) and the runtime, and cached like a script: its IR text
(which holds the layouts, the routes and the entry symbols) is the key.

May import: ktapjit.jit (feed, loader, codegen, image, rtlib, runtime_abi),
ktapjit.run_api, stdlib.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Optional

from ktapjit.jit import codegen, runtime_abi
from ktapjit.jit.feed import (
    KF_CONST, KF_CPU, KF_EXECNAME, KF_FIELD_NIL, KF_INT_FIELD, KF_NIL, KF_PID, KF_TID, Unsupported, slot_sources,
)
from ktapjit.run_api import ConstValue, FeedPlan, FeedProbe, FieldValue, NilValue, TaskValue

WALK_SYMBOL = "ktap_walk"
CONSTS_SYMBOL = "ktap_walk_consts"
COUNT_SYMBOL = "ktap_walk_count"  # the samples it ran: how tests see that it ran

_TAGS = {m.name: m.value for m in runtime_abi.TAGS.members}
_KT_NIL, _KT_INT, _KT_STR = _TAGS["KT_NIL"], _TAGS["KT_INT"], _TAGS["KT_STR"]
_DECLINED = {m.name: m.value for m in runtime_abi.FEED_STATUSES.members}["K_FEED_DECLINED"]
_STATE = runtime_abi.state_offsets()
_PERF_RECORD_SAMPLE = 9
_TASK_KINDS = {"pid": KF_PID, "tid": KF_TID, "cpu": KF_CPU, "execname": KF_EXECNAME, "uid": KF_NIL}
_FIELD_KINDS = (KF_INT_FIELD, KF_FIELD_NIL)  # the kinds that need the record's fields decoded


@dataclass(frozen=True)
class Layout:
    """Byte offsets of a sample's fields (-1: absent), as k_feed_layout finds them."""

    id: int
    tid: int
    time: int
    cpu: int
    head_end: int
    callchain: bool
    raw: bool


def sample_layout(sample_type: int) -> Layout:
    """The fixed head in kernel order (events/records/decode.py _FIXED)."""
    at, offsets = 8, {"id": -1, "tid": -1, "time": -1, "cpu": -1}
    for bit, name in ((16, "id"), (0, None), (1, "tid"), (2, "time"), (3, None), (6, "id"), (9, None),
                      (7, "cpu"), (8, None)):
        if sample_type >> bit & 1:
            if name is not None:
                offsets[name] = at + 4 if name == "tid" else at
            at += 8
    return Layout(offsets["id"], offsets["tid"], offsets["time"], offsets["cpu"], at,
                  bool(sample_type >> 5 & 1), bool(sample_type >> 10 & 1))


@dataclass(frozen=True)
class Slot:
    slot: int
    kind: int
    offset: int = 0
    size: int = 0
    signed: bool = False
    const: int = -1  # KF_CONST: its index in ktap_walk_consts


@dataclass(frozen=True)
class Probe:
    symbol: str  # the entry's code
    fixed_size: int
    dynamic: tuple  # run_api.DynamicField, in format order: all are checked
    slots: tuple[Slot, ...]

    @property
    def needs_fields(self) -> bool:
        return any(s.kind in _FIELD_KINDS for s in self.slots)

    @property
    def needs_comm(self) -> bool:
        return any(s.kind == KF_EXECNAME for s in self.slots)


@dataclass(frozen=True)
class Route:
    sample_id: Optional[int]  # None: the only route, taken without reading an id
    layout: Layout
    probes: tuple[Probe, ...]


@dataclass(frozen=True)
class WalkerSpec:
    id_at: int  # byte offset of a sample's id (-1: none is read)
    routes: tuple[Route, ...]
    consts: tuple[bytes, ...]


def walker_spec(plan: FeedPlan, program) -> Optional[WalkerSpec]:
    """What the session's walker compiles, or None when no route would."""
    if not plan.layouts:
        return None
    layouts = [sample_layout(layout.sample_type) for layout in plan.layouts]
    consts: list[bytes] = []
    groups = [_group(probes, program, consts) for probes in plan.groups]
    if plan.single_layout:
        id_at = layouts[0].id
        if id_at < 0:  # every sample is read with layout 0 and runs the id-less group
            group = groups[plan.idless_group] if plan.idless_group >= 0 else None
            routes = [Route(None, layouts[0], group)] if _compiles(group, layouts[0]) else []
            return WalkerSpec(-1, tuple(routes), tuple(consts)) if routes else None
    else:
        id_at = 8 + 8 * plan.id_pos
    by_id: dict[int, tuple[int, int]] = {}
    for route in plan.ids:  # k_feed_id: a later route of an id replaces an earlier one
        by_id[route.sample_id] = (route.layout, route.group)
    routes = []
    for sample_id, (layout, group) in by_id.items():
        probes = groups[group] if group >= 0 else None
        if _compiles(probes, layouts[layout]):
            routes.append(Route(sample_id, layouts[layout], probes))
    return WalkerSpec(id_at, tuple(routes), tuple(consts)) if routes else None


def _compiles(probes: Optional[tuple], layout: Layout) -> bool:
    """Whether the walker runs these probes' samples of this layout: it
    needs their time (untimed samples run at the feed's clock) and, for
    execname, their task."""
    if not probes or layout.time < 0:
        return False
    return layout.tid >= 0 or not any(p.needs_comm for p in probes)


def _group(probes: tuple[FeedProbe, ...], program, consts: list[bytes]) -> Optional[tuple[Probe, ...]]:
    """The group's probes as the walker runs them, or None when one needs
    what only the generic walker does."""
    made = []
    for probe in probes:
        if probe.filter is not None:
            return None
        try:
            sources = slot_sources(probe, program)
        except Unsupported:
            return None
        slots = []
        for slot, source in sources:
            spec = _slot(slot, source, consts)
            if spec is None:
                return None
            slots.append(spec)
        symbol = program.lowered.entries[f"{probe.entry}{probe.index}"]
        made.append(Probe(symbol, probe.fixed_size, tuple(probe.dynamic_fields), tuple(slots)))
    return tuple(made)


def _slot(slot: int, source, consts: list[bytes]) -> Optional[Slot]:
    """How feed.py's _slot_spec fills the slot, for the kinds compiled here."""
    if isinstance(source, TaskValue):
        kind = _TASK_KINDS.get(source.name)
        return None if kind is None else Slot(slot, kind)
    if isinstance(source, ConstValue):
        if source.value not in consts:
            consts.append(source.value)
        return Slot(slot, KF_CONST, const=consts.index(source.value))
    if isinstance(source, NilValue):
        return Slot(slot, KF_NIL)
    if isinstance(source, FieldValue):
        if source.shape == "int":
            return Slot(slot, KF_INT_FIELD, source.offset, source.size, source.signed)
        if source.shape == "missing":
            return Slot(slot, KF_FIELD_NIL)
    return None


# -- the LLVM IR ----------------------------------------------------------------------

_KCODE = "i64 (i8*, i8*, i8*, i64, i64, i8*)"


class _Emitter:
    """Builds the text of ktap_walk; values are numbered %vN."""

    def __init__(self):
        self.lines: list[str] = []
        self.n = 0

    def value(self, text: str) -> str:
        self.n += 1
        name = f"%v{self.n}"
        self.lines.append(f"  {name} = {text}")
        return name

    def emit(self, text: str) -> None:
        self.lines.append(text if text.endswith(":") else f"  {text}")

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")

    def at(self, base: str, offset) -> str:
        return self.value(f"getelementptr inbounds i8, i8* {base}, i64 {offset}")

    def load(self, base: str, offset, bits: int, signed: bool = False) -> str:
        """The little-endian integer of `bits` at base+offset, as i64."""
        ptr = self.value(f"bitcast i8* {self.at(base, offset)} to i{bits}*")
        v = self.value(f"load i{bits}, i{bits}* {ptr}, align 1")
        return v if bits == 64 else self.value(f"{'sext' if signed else 'zext'} i{bits} {v} to i64")

    def check(self, cond: str, ok: str) -> None:
        """Go on at `ok` when `cond` holds, else decline."""
        self.emit(f"br i1 {cond}, label %{ok}, label %decline")
        self.label(ok)

    def store(self, base: str, offset, value: str) -> None:
        ptr = self.value(f"bitcast i8* {self.at(base, offset)} to i64*")
        self.emit(f"store i64 {value}, i64* {ptr}")


def walker_ir(spec: WalkerSpec) -> str:
    e = _Emitter()
    e.label("entry")
    e.emit("%comm = alloca [2 x i64]")
    kind = e.load("%rec", 0, 32)
    e.check(e.value(f"icmp eq i64 {kind}, {_PERF_RECORD_SAMPLE}"), "sample")
    if spec.id_at < 0:
        e.emit("br label %route0")
    else:
        e.check(e.value(f"icmp ule i64 {spec.id_at + 8}, %size"), "has_id")
        sample_id = e.load("%rec", spec.id_at, 64)
        cases = " ".join(f"i64 {_signed(r.sample_id)}, label %route{i}" for i, r in enumerate(spec.routes))
        e.emit(f"switch i64 {sample_id}, label %decline [ {cases} ]")
    for i, route in enumerate(spec.routes):
        e.label(f"route{i}")
        _route(e, route, f"r{i}", spec)
    e.label("decline")
    e.emit(f"ret i64 {_DECLINED}")
    entries = sorted({p.symbol for r in spec.routes for p in r.probes})
    head = [f'declare i64 @"{name}"(i8*, i8*, i8*, i64, i64, i8*)' for name in entries]
    head.append("declare i64 @k_enter(i8*, i8*)")
    head.append("declare i32 @k_feed_comm(i8*, i64, i64*)")
    head.append(f"@{COUNT_SYMBOL} = global i64 0")
    head.append(f"@{CONSTS_SYMBOL} = global [{max(1, len(spec.consts))} x i64] zeroinitializer")
    body = "\n".join(e.lines)
    return ("\n".join(head) + f"\n\ndefine i64 @{WALK_SYMBOL}(i8* %s, i8* %f, i8* %rec, i64 %size, i64 %due, "
            f"i64* %io) nounwind {{\n{body}\n}}\n")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _route(e: _Emitter, route: Route, tag: str, spec: WalkerSpec) -> None:
    """One sample id: feed_records.c sample_meta's checks, feed.c run_sample."""
    layout = route.layout
    e.check(e.value(f"icmp ule i64 {layout.head_end}, %size"), f"{tag}_head")
    at = str(layout.head_end)
    if layout.callchain:
        e.check(e.value(f"icmp ule i64 {layout.head_end + 8}, %size"), f"{tag}_cc")
        nr = e.load("%rec", layout.head_end, 64)
        room = e.value(f"udiv i64 {e.value(f'sub i64 %size, {layout.head_end + 8}')}, 8")
        e.check(e.value(f"icmp ule i64 {nr}, {room}"), f"{tag}_ccok")
        at = e.value(f"add i64 {e.value(f'shl i64 {nr}, 3')}, {layout.head_end + 8}")
    raw, n = "null", "0"
    if layout.raw:
        e.check(e.value(f"icmp ule i64 {e.value(f'add i64 {at}, 4')}, %size"), f"{tag}_rawhead")
        n = e.load("%rec", at, 32)
        room = e.value(f"sub i64 {e.value(f'sub i64 %size, {at}')}, 4")
        e.check(e.value(f"icmp ule i64 {n}, {room}"), f"{tag}_raw")
        raw = e.at("%rec", e.value(f"add i64 {at}, 4"))
    time = e.load("%rec", layout.time, 64)
    e.check(e.value(f"icmp sgt i64 {time}, 0"), f"{tag}_timed")  # decode.has_time
    e.check(e.value(f"icmp slt i64 {time}, %due"), f"{tag}_notimer")
    for j, probe in enumerate(route.probes):
        if probe.needs_fields:
            _record_valid(e, probe, raw, n, f"{tag}_p{j}")
    if any(p.needs_comm for p in route.probes):
        _comm(e, layout, tag)
    walked = e.value(f"load i64, i64* @{COUNT_SYMBOL}")
    e.emit(f"store i64 {e.value(f'add i64 {walked}, 1')}, i64* @{COUNT_SYMBOL}")
    io1 = e.value("getelementptr inbounds i64, i64* %io, i64 1")
    e.emit(f"store i64 {time}, i64* %io")
    e.emit(f"store i64 1, i64* {io1}")
    task = _task(e, layout)
    for j, probe in enumerate(route.probes):
        field = e.at("%s", _STATE["event"])
        event = e.value(f"load i8*, i8** {e.value(f'bitcast i8* {field} to i8**')}")
        for slot in probe.slots:
            tag_value, payload = _slot_value(e, slot, task, raw, spec)
            e.store(event, 16 * slot.slot, str(tag_value))
            e.store(event, 16 * slot.slot + 8, payload)
        e.store("%s", _STATE["now_ns"], time)
        code = f'bitcast ({_KCODE}* @"{probe.symbol}" to i8*)'
        status = e.value(f"call i64 @k_enter(i8* %s, i8* {code})")
        last = j == len(route.probes) - 1
        if last:
            e.emit(f"ret i64 {status}")
        else:
            stop = e.value(f"icmp ne i64 {status}, 0")
            e.emit(f"br i1 {stop}, label %{tag}_stop{j}, label %{tag}_next{j}")
            e.label(f"{tag}_stop{j}")
            e.emit(f"ret i64 {status}")
            e.label(f"{tag}_next{j}")


def _record_valid(e: _Emitter, probe: Probe, raw: str, n: str, tag: str) -> None:
    """feed.c record_valid: the format's size, then each dynamic field's span."""
    e.check(e.value(f"icmp sge i64 {n}, {probe.fixed_size}"), f"{tag}_size")
    for k, field in enumerate(probe.dynamic):
        wide = field.size == 4
        loc = e.load(raw, field.offset, 32 if wide else 16)
        start = e.value(f"and i64 {loc}, 65535")
        length = e.value(f"lshr i64 {loc}, 16") if wide else e.value(f"sub i64 {n}, {start}")
        if field.relative:
            start = e.value(f"add i64 {start}, {field.offset + field.size}")
        end = e.value(f"add i64 {start}, {length}")
        e.check(e.value(f"icmp sle i64 {end}, {n}"), f"{tag}_dyn{k}")


def _comm(e: _Emitter, layout: Layout, tag: str) -> None:
    """execname into %comm (feed.c comm_of); a failure is the generic walker's to report."""
    tid = e.load("%rec", layout.tid, 32)
    words = e.value("getelementptr inbounds [2 x i64], [2 x i64]* %comm, i64 0, i64 0")
    rc = e.value(f"call i32 @k_feed_comm(i8* %f, i64 {tid}, i64* {words})")
    e.check(e.value(f"icmp eq i32 {rc}, 0"), f"{tag}_comm")


def _task(e: _Emitter, layout: Layout) -> dict:
    task = {}
    if layout.tid >= 0:
        task[KF_PID] = e.load("%rec", layout.tid - 4, 32)
        task[KF_TID] = e.load("%rec", layout.tid, 32)
    if layout.cpu >= 0:
        task[KF_CPU] = e.load("%rec", layout.cpu, 32)
    return task


def _slot_value(e: _Emitter, slot: Slot, task: dict, raw: str, spec: WalkerSpec) -> tuple[int, str]:
    """(tag, payload) of a slot, as feed.c fill_slots makes it."""
    if slot.kind in (KF_PID, KF_TID, KF_CPU):
        return (_KT_INT, task[slot.kind]) if slot.kind in task else (_KT_NIL, "0")
    if slot.kind == KF_EXECNAME:
        tag = e.value("load i64, i64* " + e.value("getelementptr inbounds [2 x i64], [2 x i64]* %comm, i64 0, i64 0"))
        payload = e.value("load i64, i64* " + e.value("getelementptr inbounds [2 x i64], [2 x i64]* %comm, i64 0, i64 1"))
        return tag, payload
    if slot.kind == KF_CONST:
        count = max(1, len(spec.consts))
        ptr = e.value(f"getelementptr inbounds [{count} x i64], [{count} x i64]* @{CONSTS_SYMBOL}, "
                      f"i64 0, i64 {slot.const}")
        return _KT_STR, e.value(f"load i64, i64* {ptr}")
    if slot.kind == KF_INT_FIELD:
        return _KT_INT, e.load(raw, slot.offset, 8 * slot.size, slot.signed)
    return _KT_NIL, "0"  # KF_NIL, KF_FIELD_NIL (the record checked valid)


# -- building and loading -----------------------------------------------------------------


class Walker:
    """A session's compiled walker, mapped (never unmapped, like all generated code)."""

    def __init__(self, mapped, spec: WalkerSpec, cache_hit: bool):
        self.address = mapped.address(WALK_SYMBOL)
        self._count = ctypes.c_int64.from_address(mapped.address(COUNT_SYMBOL))
        self.spec = spec
        self.cache_hit = cache_hit

    @property
    def samples(self) -> int:
        """The samples it ran (the generic walker ran the rest)."""
        return self._count.value


def attach_walker(feed, plan: FeedPlan, program, rt) -> Optional[Walker]:
    """Compile (or find in the cache) the walker of the session `plan`
    describes and give it to `feed`; None when no sample id of the session
    would take it, or the code is a bundle's (the generic walker then runs
    every record)."""
    if not isinstance(program.code, codegen.LoadedCode):
        return None  # a bundle's code: it runs without LLVM, so with the generic walker
    spec = walker_spec(plan, program)
    if spec is None:
        return None
    mapped, cache_hit = _load(walker_ir(spec), program, rt)
    if spec.consts:
        table = (ctypes.c_int64 * len(spec.consts)).from_address(mapped.address(CONSTS_SYMBOL))
        for i, value in enumerate(spec.consts):
            table[i] = rt.string(value).payload
    walker = Walker(mapped, spec, cache_hit)
    rt.k_feed_walker(feed.ptr, walker.address)
    feed.walker = walker
    return walker


def _load(llvm_ir: str, program, rt):
    """The walker's image, from the cache or compiled into it, mapped with
    its calls bound to the script's entries and to the runtime."""
    from ktapjit.jit.image import ImageError, map_image, store_image
    from ktapjit.jit.loader import _cached, cache_dir, cache_key

    target = codegen.host_target()
    path = cache_dir() / f"walk-{cache_key(llvm_ir, target)}.kimg"
    image = _cached(path)
    cache_hit = image is not None
    if image is None:
        image = codegen.link_image(codegen.emit_object(codegen.optimize(llvm_ir, target)), "walker")
        store_image(path, image)
    script = program.code.mapped

    def resolve(name: str) -> Optional[int]:
        address = script.address(name)
        return address if address is not None else rt.symbols.get(name)

    try:
        return map_image(image, resolve, what="the compiled record walker"), cache_hit
    except ImageError as exc:
        raise codegen.CodegenError(str(exc)) from None
