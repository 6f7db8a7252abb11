"""The native event path's plan: building a ``kfeed`` (runtime/feed.c).

A kfeed runs whole chunks of perf records without calling into Python per
record. This module decides whether a session can run that way and, if so,
describes it to the runtime: the sample layouts (sample_type), which probes
each sample id runs (tracing.plan.StreamPlan, declaration order), and for
every bound probe how each event slot its entry reads is filled (a task
value, a constant, a RAW field at an offset the format fixes, argstr:
the print fmt compiled by printfmt/bytecode.py, or a site event's probename: the
name its u32 site index picks from the event's site table), the format's
fixed size and dynamic fields (the corrupt-record checks of
events/schema.py), and the tick timers.

Anything the native path does not reproduce exactly makes ``build_feed``
return None, and the session runs the per-event Python path (the
reference): stacks, sample layouts beyond the fixed head + CALLCHAIN +
RAW, and argstr of an event whose print fmt is outside
printfmt/bytecode.py's subset (byte dumps: %pM/%pI/%pU/%ph,
__print_hex/__print_array/bitmasks; "[FAILED TO PARSE]" formats) or rendered
with symbols or printk strings. Array fields are tables the runtime makes
once per probe run (SampleEvent's one table per event); profile-N samples
run their timer's body with the task's values.

May import: ktapjit.jit (rtlib), ktapjit.events.printfmt (bytecode),
ktapjit.kernel_filter (parse_filter and its native compiler), stdlib. Plans,
formats and attr tables arrive as objects (duck-typed), so this module
imports nothing of tracing/.
"""

from __future__ import annotations

import ctypes
from array import array
from typing import Optional

from ktapjit.kernel_filter.language import parse_filter
from ktapjit.jit import rtlib
from ktapjit.events.printfmt.bytecode import UnsupportedArgstr, compile_argstr
from ktapjit.kernel_filter.native import UnsupportedFilter, compile_program
from ktapjit.jit.rtlib import KVal

# Slot kinds (KF_* in ktrt.h).
KF_NIL, KF_PID, KF_TID, KF_CPU, KF_EXECNAME, KF_CONST = range(6)
KF_INT_FIELD, KF_BYTES_FIELD, KF_CHARS_FIELD, KF_DATALOC_STRING, KF_FIELD_NIL, KF_ARGSTR = range(6, 12)
KF_ARRAY_FIELD, KF_DYN_ARRAY, KF_SITE_NAME = 12, 13, 14
FEED_STREAM, FEED_BAD, FEED_MORE = rtlib.FEED_STREAM, rtlib.FEED_BAD, rtlib.FEED_MORE

# PERF_SAMPLE_* bits the native layout reads: the fixed head, CALLCHAIN, RAW.
_NATIVE_SAMPLE_BITS = (1 << 0 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 9
                       | 1 << 10 | 1 << 16)
_TASK_KINDS = {"pid": KF_PID, "tid": KF_TID, "cpu": KF_CPU, "execname": KF_EXECNAME, "uid": KF_NIL}
_ARG_NAMES = {f"arg{i}": i for i in range(10)}
_INT_SIZES = (1, 2, 4, 8)  # what schema._int_struct reads as integers
_NIL = KVal(rtlib.NIL, 0)  # a slot's value where its kind needs none


class Unsupported(Exception):
    """Something of the session the native path does not do."""


class NativeFeed:
    """One kfeed, owned by a run; freed with it."""

    def __init__(self, rt, ptr: int):
        self.rt = rt
        self.ptr = ptr
        self.info = (ctypes.c_int64 * 7)()
        self.status = rtlib.RUN_OK
        self.runs = 0  # k_feed calls: proof that the session took the native path
        self.ordered = False  # the records' order came from k_feed_order, not the Python decoder
        self.more = False  # the last release() used its budget: more of its round is due

    def close(self) -> None:
        if self.ptr:
            self.rt.k_feed_free(self.ptr)
            self.ptr = None

    def __del__(self):
        self.close()

    def run(self, state_ptr: int, data, offsets, count: int, base: int) -> int:
        """k_feed over `data` (bytes or a PinnedBuffer) at `offsets` (array("Q"), or None for
        every record in order). A K_RUN_* or FEED_* status."""
        offsets_ptr = offsets.buffer_info()[0] if offsets is not None else None
        self.status = self.rt.k_feed(state_ptr, self.ptr, _address(data), len(data), offsets_ptr, count, base)
        self.runs += 1
        self.rt.k_feed_info(self.ptr, self.info)
        return self.status

    def push(self, cpu: int, data) -> bool:
        """Queue one CPU's drained bytes in the live merger; False when a
        record is one the Python decoder would reject (nothing queued)."""
        return self.rt.k_feed_push(self.ptr, cpu, data, len(data)) == 0

    def release(self, state_ptr: int, final: bool, budget: int = 0) -> int:
        """Run what the live merger releases (final: everything queued), at
        most `budget` records (0: all); then `more` says whether the round
        has records left, which the next call runs."""
        status = self.rt.k_feed_release(state_ptr, self.ptr, int(final), budget)
        self.more = status == FEED_MORE
        self.status = rtlib.RUN_OK if self.more else status
        self.runs += 1
        self.rt.k_feed_info(self.ptr, self.info)
        return self.status

    def discard(self) -> int:
        """Drop what the live merger holds; the number of samples dropped."""
        self.more = False
        return self.rt.k_feed_discard(self.ptr)

    def keep(self) -> None:
        """From now on, copy every record release() runs (take_kept())."""
        self.rt.k_feed_keep(self.ptr, 1)

    def take_kept(self) -> bytes:
        """The records release() ran since the last call, in the order they ran."""
        size = ctypes.c_uint64()
        address = self.rt.k_feed_kept(self.ptr, ctypes.byref(size))
        if size.value == (1 << 64) - 1:
            raise MemoryError("the native event path could not keep the records it ran")
        if not size.value:
            return b""
        data = ctypes.string_at(address, size.value)
        self.rt.k_feed_kept_clear(self.ptr)
        return data

    @staticmethod
    def pin(buffer) -> "PinnedBuffer":
        """`buffer` (bytes, a memoryview of a read-only mapping...) made
        passable to run() and order() without a copy; release() it after."""
        return PinnedBuffer(buffer)

    def order(self, data) -> Optional[array]:
        """The offsets of `data`'s records (a perf.data data section) in the
        order perf delivers them, or None when some record is one the Python
        decoder would reject: then the records must come from it."""
        count = self.rt.k_feed_count(_address(data), len(data))
        if count < 0:
            return None
        out = array("Q", bytes(8 * count))
        got = self.rt.k_feed_order(self.ptr, _address(data), len(data), out.buffer_info()[0], count)
        if got < 0:
            return None
        self.ordered = True
        return out[:got]  # FINISHED_ROUND records are not delivered

    def stream_error(self) -> Optional[tuple[str, int]]:
        """(message, byte offset) when the last run stopped on a broken
        stream rather than on the script."""
        if self.status == FEED_STREAM:
            return self.message(), self.error_offset
        if self.status == FEED_BAD:
            return "a record the native event path cannot read", self.error_offset
        return None

    @property
    def last_time(self) -> int:
        return self.info[0]

    @property
    def lost(self) -> int:
        return (self.info[6] % (1 << 64)) << 64 | self.info[1] % (1 << 64)

    @property
    def stopped_at(self) -> int:
        return self.info[3]

    @property
    def error_offset(self) -> int:
        return self.info[4]

    @property
    def samples(self) -> int:
        return self.info[5]

    def fault(self, slot: int) -> str:
        """Why the body could not read event slot `slot` of the last record."""
        return self.rt.k_feed_fault(self.ptr, slot).decode("utf-8", "replace")

    def message(self) -> str:
        return self.rt.k_feed_message(self.ptr).decode("utf-8", "replace")


class _PyBuffer(ctypes.Structure):
    """CPython's Py_buffer (Include/pybuffer.h)."""

    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


class PinnedBuffer:
    """The address of a contiguous buffer, held (the exporter cannot move or
    unmap it) until release(). ctypes takes only writable buffers itself, and
    a replay's data section is a read-only mapping: copying it would cost
    more than running its records."""

    def __init__(self, buffer):
        self._view = _PyBuffer()
        # PyBUF_SIMPLE (0): a read-only, contiguous view of the bytes.
        if ctypes.pythonapi.PyObject_GetBuffer(ctypes.py_object(buffer), ctypes.byref(self._view), 0):
            raise BufferError("no contiguous buffer")
        self.address = self._view.buf or 0
        self.length = self._view.len
        self._held = True

    def __len__(self) -> int:
        return self.length

    def release(self) -> None:
        if self._held:
            self._held = False
            ctypes.pythonapi.PyBuffer_Release(ctypes.byref(self._view))

    def __del__(self):
        self.release()


def _address(data):
    """What ctypes passes as the records' pointer: bytes as they are."""
    return data.address if isinstance(data, PinnedBuffer) else data


def build_feed(module, program, plan, attrs, start_ns: int) -> Optional[NativeFeed]:
    """A kfeed for the session, or None when it must run the Python path."""
    try:
        _check_session(module, plan)
    except Unsupported:
        return None
    rt = rtlib.load()
    ptr = rt.k_feed_new(start_ns)
    if not ptr:
        return None
    feed = NativeFeed(rt, ptr)
    try:
        _add_layouts(rt, ptr, plan, attrs, program, module)
        _add_timers(rt, ptr, module, program)
    except Unsupported:
        feed.close()
        return None
    return feed


def _check_session(module, plan) -> None:
    if any(t.kind not in ("tick", "profile") for t in module.timers):
        raise Unsupported("timer kind")


def _add_layouts(rt, ptr: int, plan, attrs, program, module=None) -> None:
    """The sample layouts and the resolver, as events/records/decode.py's _Resolver
    finds a record's layout, then every sample id's probes."""
    resolver = attrs.resolver()
    if resolver.error:
        raise Unsupported(resolver.error)
    # The attr table's own id -> layout map: the resolver's view of it.
    by_id = attrs.layout_by_id()
    plans = list(dict.fromkeys([resolver.first, *by_id.values()]) if resolver.first else attrs.layouts())
    index = {}
    for p in plans:
        info = p.info
        if info.sample_type & ~_NATIVE_SAMPLE_BITS:
            raise Unsupported("sample_type")
        index[id(p)] = _check(rt.k_feed_layout(ptr, info.sample_type, int(bool(info.sample_id_all))))
    groups = _add_groups(rt, ptr, plan, program, module)
    if resolver.only is not None:
        rt.k_feed_resolver(ptr, 0, 0, -1, groups.get(None, -1))
        for sid in by_id.keys() | {k for k in plan.by_id if k is not None}:
            _check_ok(rt.k_feed_id(ptr, sid, 0, groups.get(sid, -1)))
        return
    is_pos = -1 if resolver.is_pos is None else 8 * resolver.is_pos
    rt.k_feed_resolver(ptr, 1, 8 + 8 * resolver.id_pos, is_pos, groups.get(None, -1))
    for sid, p in by_id.items():
        _check_ok(rt.k_feed_id(ptr, sid, index[id(p)], groups.get(sid, -1)))


def _add_groups(rt, ptr: int, plan, program, module) -> dict:
    """Sample id -> group index; a group holds the id's probes in order."""
    groups = {}
    made: dict[tuple, int] = {}  # ids with the same probe list share one group
    for sid, bound_events in plan.by_id.items():
        key = tuple(id(b) for b in bound_events)
        if key not in made:
            made[key] = _check(rt.k_feed_group(ptr))
            for bound in bound_events:
                if bound.is_profile:
                    _add_profile(rt, ptr, made[key], bound, program)
                else:
                    _add_probe(rt, ptr, made[key], bound, program, module)
        groups[sid] = made[key]
    return groups


def _add_probe(rt, ptr: int, group: int, bound, program, module) -> None:
    role = f"probe{bound.probe}"
    fmt = bound.fmt
    prefix = f"corrupt {bound.system}:{bound.event} record at byte offset ".encode()
    probe = _check(rt.k_feed_probe(ptr, group, program.entry_address(role), fmt.fixed_size, prefix,
                                   fmt.qualified_name.encode()))
    for f in fmt.all_fields:
        if f.dynamic:
            _check_ok(rt.k_feed_dyn(ptr, probe, f.offset, f.size, int(f.relative), f.name.encode()))
    if bound.matches is not None:
        _add_filter(rt, ptr, probe, module.probes[bound.probe].filter, fmt)
    slots = [(slot, *program.lowered.event_slots[slot]) for slot in program.entry_slots(role)]
    reads = [(kind, name) for _, kind, name in slots]
    if ("value", "argstr") in reads:
        _add_argstr(rt, ptr, probe, bound)
    if ("value", "probename") in reads and bound.sites:
        _add_sites(rt, ptr, probe, bound)
    for slot, kind, name in slots:
        spec = _slot_spec(rt, bound, kind, name)
        _check_ok(rt.k_feed_slot(ptr, probe, slot, *spec))


def _add_profile(rt, ptr: int, group: int, bound, program) -> None:
    """A `profile-N` timer's cpu-clock samples run its body with the task's
    values and its probename; everything of a trace format is nil
    (sample_event.ProfileEvent)."""
    role = f"timer{bound.timer}"
    probe = _check(rt.k_feed_probe(ptr, group, program.entry_address(role), 0, b"", bound.name.encode()))
    for slot in program.entry_slots(role):
        kind, name = program.lowered.event_slots[slot]
        if kind not in ("value", "field"):
            raise Unsupported("stacks")  # symbolizing needs the Python Stacks
        spec = (_task_spec(rt, bound, name) if kind == "value" else None) or (KF_NIL, 0, 0, 0, _NIL)
        _check_ok(rt.k_feed_slot(ptr, probe, slot, *spec))


def _add_filter(rt, ptr: int, probe: int, text: str, fmt) -> None:
    try:
        program, patterns = compile_program(parse_filter(text), fmt)
    except UnsupportedFilter as exc:
        raise Unsupported(str(exc)) from None
    _check_ok(rt.k_feed_filter(ptr, probe, program.buffer_info()[0], len(program) // 6, patterns, len(patterns)))


def _add_argstr(rt, ptr: int, probe: int, bound) -> None:
    """The probe's argstr program, when it renders exactly as bound.render."""
    render = bound.render
    if not getattr(render, "plain", False) or render.fallback:
        raise Unsupported("argstr with symbols, printk strings or [FAILED TO PARSE]")
    try:
        prog = compile_argstr(bound.fmt)
    except UnsupportedArgstr as exc:
        raise Unsupported(str(exc)) from None
    code = prog.code.buffer_info()[0]
    status = rt.k_feed_argstr(ptr, probe, code, prog.count, prog.blob, len(prog.blob))
    if status < 0:
        raise AssertionError(f"argstr.c rejects printfmt.bytecode's program for {bound.fmt.qualified_name}")
    _check_ok(status)


def _add_sites(rt, ptr: int, probe: int, bound) -> None:
    """The site event's probe names, for its KF_SITE_NAME slot."""
    names = (KVal * len(bound.sites))(*(rt.string(name.encode()) for name in bound.sites))
    _check_ok(rt.k_feed_sites(ptr, probe, names, len(names)))


def _task_spec(rt, bound, name: str) -> Optional[tuple]:
    """The slot of a value every sample has (sample_event.task_value and
    probename), or None."""
    if name in _TASK_KINDS:
        return (_TASK_KINDS[name], 0, 0, 0, _NIL)
    if name == "probename":
        if getattr(bound, "sites", ()):  # the table _add_sites registered
            return (KF_SITE_NAME, bound.site_offset, 4, 0, _NIL)
        return (KF_CONST, 0, 0, 0, rt.string(bound.probename))
    return None


def _slot_spec(rt, bound, kind: str, name: str) -> tuple:
    """(kind, offset, size, flags, value) of one slot (sample_event.SampleEvent)."""
    if kind == "field":
        return _field_spec(bound.fmt, name)
    if kind != "value":
        raise Unsupported("stacks")
    task = _task_spec(rt, bound, name)
    if task is not None:
        return task
    if name == "argstr":
        return (KF_ARGSTR, 0, 0, 0, _NIL)  # the program _add_argstr registered
    if name not in _ARG_NAMES:
        raise Unsupported(name)
    index = _ARG_NAMES[name]
    if index >= len(bound.arg_names):
        return (KF_NIL, 0, 0, 0, _NIL)
    return _field_spec(bound.fmt, bound.arg_names[index])


def _field_spec(fmt, name: str) -> tuple:
    """How a format field reads as a script value (schema._field_reader,
    then SampleEvent._script_value)."""
    field = fmt.field(name)
    if field is None:
        return (KF_FIELD_NIL, 0, 0, 0, _NIL)
    if field.dynamic:
        if not field.is_string:
            elem = field.elem_size or 1
            flags = (elem | int(field.signed) << 8) if elem in _INT_SIZES else 1  # else its bytes
            flags |= int(field.relative) << 9
            return (KF_DYN_ARRAY, field.offset, field.size, flags, _NIL)
        return (KF_DATALOC_STRING, field.offset, field.size, int(field.relative), _NIL)
    if field.array_len is None:
        if field.size in _INT_SIZES:
            return (KF_INT_FIELD, field.offset, field.size, int(field.signed), _NIL)
        return (KF_BYTES_FIELD, field.offset, field.size, 0, _NIL)
    if field.is_string:
        return (KF_CHARS_FIELD, field.offset, field.size, 0, _NIL)
    if field.elem_size in _INT_SIZES and field.elem_size * field.array_len == field.size:
        return (KF_ARRAY_FIELD, field.offset, field.array_len, field.elem_size | int(field.signed) << 8, _NIL)
    return (KF_ARRAY_FIELD, field.offset, field.size, 1, _NIL)  # its bytes, as schema reads them


def _add_timers(rt, ptr: int, module, program) -> None:
    for i, timer in enumerate(module.timers):
        if timer.kind == "tick":
            _check_ok(rt.k_feed_timer(ptr, timer.period_ns, program.entry_address(f"timer{i}")))


def _check(index: int) -> int:
    if index < 0:
        raise MemoryError("kfeed")
    return index


def _check_ok(code: int) -> None:
    if code:
        raise MemoryError("kfeed")

