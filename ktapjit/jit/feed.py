"""The native event path: a ``kfeed`` (runtime/feed.c) loaded from a FeedPlan.

A kfeed runs whole chunks of perf records without calling into Python per
record. The session describes its stream as a run_api.FeedPlan (built by
tracing/feed_plan.py): the sample layouts and how a record finds its own,
which probes each sample id runs, in declaration order, and for every bound
probe where each event value and field comes from, its format's fixed size
and dynamic fields (the corrupt-record checks of events/schema.py) and its
filter program. This module loads that plan into the runtime: for every
event slot an entry reads, the slot kind (KF_*) that fills it (a task value,
a constant, a RAW field at an offset, argstr: the print fmt compiled by
events/printfmt/bytecode.py into the plan, or a site event's probename: the name its u32 site index
picks from the event's site table); and the tick timers.

Anything the native path does not reproduce exactly makes ``build_feed``
return None, and the session runs the per-event Python path (the
reference): stacks, sample layouts beyond the fixed head + CALLCHAIN +
RAW, and argstr of an event whose print fmt is outside
printfmt/bytecode.py's subset (byte dumps: %pM/%pI/%pU/%ph,
__print_hex/__print_array/bitmasks; "[FAILED TO PARSE]" formats) or rendered
with symbols or printk strings. Array fields are tables the runtime makes
once per probe run (SampleEvent's one table per event); profile-N samples
run their timer's body with the task's values.

May import: ktapjit.jit (rtlib, runtime_abi), ktapjit.run_api (the
FeedPlan), stdlib. The plan holds plain values, so this module reads nothing of
tracing/ or of the decoder's attr tables.
"""

from __future__ import annotations

import ctypes
from array import array
from typing import Optional

from ktapjit.jit import rtlib, runtime_abi
from ktapjit.jit.rtlib import KVal
from ktapjit.run_api import (
    ArgstrValue, ConstValue, FeedPlan, FeedProbe, FieldValue, FilterProgram, SiteName, TaskValue,
)

# Slot kinds: the ABI table's KF_*, in its order (tests/jit/test_runtime_abi.py).
(KF_NIL, KF_PID, KF_TID, KF_CPU, KF_EXECNAME, KF_CONST, KF_INT_FIELD, KF_BYTES_FIELD, KF_CHARS_FIELD,
 KF_DATALOC_STRING, KF_FIELD_NIL, KF_ARGSTR, KF_ARRAY_FIELD, KF_DYN_ARRAY,
 KF_SITE_NAME) = (m.value for m in runtime_abi.SLOT_KINDS.members)
FEED_STREAM, FEED_BAD, FEED_MORE = rtlib.FEED_STREAM, rtlib.FEED_BAD, rtlib.FEED_MORE

# PERF_SAMPLE_* bits the native layout reads: the fixed head, CALLCHAIN, RAW.
_NATIVE_SAMPLE_BITS = (1 << 0 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 9
                       | 1 << 10 | 1 << 16)
_KA_WIDTH = dict((name, value) for name, value, _doc in runtime_abi.CONSTANTS)["KA_WIDTH"]
_TASK_KINDS = {"pid": KF_PID, "tid": KF_TID, "cpu": KF_CPU, "execname": KF_EXECNAME, "uid": KF_NIL}
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
        self.walker = None  # the session's compiled walker (jit/walker.py), when it has one

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


def build_feed(module, program, plan: FeedPlan, rt=None) -> Optional[NativeFeed]:
    """A kfeed for the session `plan` describes, or None when it must run
    the Python path; `rt` is the runtime the run's code is bound to (by
    default the JIT's)."""
    if any(t.kind not in ("tick", "profile") for t in module.timers):
        return None
    rt = rt if rt is not None else rtlib.load()
    ptr = rt.k_feed_new(plan.start_ns)
    if not ptr:
        return None
    feed = NativeFeed(rt, ptr)
    try:
        load_plan(rt, ptr, plan, program)
        _add_timers(rt, ptr, module, program)
    except Unsupported:
        feed.close()
        return None
    return feed


def load_plan(rt, ptr: int, plan: FeedPlan, program) -> None:
    """The sample layouts, the probe groups, and how a record finds its
    layout and group (as events/records/decode.py's resolver finds its layout)."""
    layouts = []
    for layout in plan.layouts:
        if layout.sample_type & ~_NATIVE_SAMPLE_BITS:
            raise Unsupported("sample_type")
        layouts.append(_check(rt.k_feed_layout(ptr, layout.sample_type, int(layout.sample_id_all))))
    groups = []
    for probes in plan.groups:
        groups.append(_check(rt.k_feed_group(ptr)))
        for probe in probes:
            _add_probe(rt, ptr, groups[-1], probe, program)
    group = lambda index: groups[index] if index >= 0 else -1  # noqa: E731
    if plan.single_layout:
        rt.k_feed_resolver(ptr, 0, 0, -1, group(plan.idless_group))
    else:
        is_pos = -1 if plan.is_pos is None else 8 * plan.is_pos
        rt.k_feed_resolver(ptr, 1, 8 + 8 * plan.id_pos, is_pos, group(plan.idless_group))
    for route in plan.ids:
        _check_ok(rt.k_feed_id(ptr, route.sample_id, layouts[route.layout], group(route.group)))


def _add_probe(rt, ptr: int, group: int, probe: FeedProbe, program) -> None:
    role = f"{probe.entry}{probe.index}"
    index = _check(rt.k_feed_probe(ptr, group, program.entry_address(role), probe.fixed_size,
                                   probe.corrupt_prefix, probe.name.encode()))
    for f in probe.dynamic_fields:
        _check_ok(rt.k_feed_dyn(ptr, index, f.offset, f.size, int(f.relative), f.name.encode()))
    if probe.filter is not None:
        _add_filter(rt, ptr, index, probe.filter)
    sources = slot_sources(probe, program)
    for _slot, source in sources:
        if isinstance(source, ArgstrValue):
            _add_argstr(rt, ptr, index, source)
            break
    for _slot, source in sources:
        if isinstance(source, SiteName):
            _add_sites(rt, ptr, index, source)
            break
    for slot, source in sources:
        _check_ok(rt.k_feed_slot(ptr, index, slot, *_slot_spec(rt, source)))


def slot_sources(probe: FeedProbe, program) -> list[tuple[int, object]]:
    """(event slot, where its value comes from) for every slot the probe's
    entry reads."""
    values, fields = dict(probe.values), dict(probe.fields)
    sources = []
    for slot in program.entry_slots(f"{probe.entry}{probe.index}"):
        kind, name = program.lowered.event_slots[slot]
        if kind == "value":
            if name not in values:
                raise Unsupported(name)
            sources.append((slot, values[name]))
        elif kind == "field":
            sources.append((slot, fields.get(name, probe.unknown_field)))
        elif kind == "memory":
            raise Unsupported("memory read at event time")  # companions are paired in Python
        else:
            raise Unsupported("stacks")  # symbolizing needs the Python Stacks
    return sources


def _add_filter(rt, ptr: int, probe: int, program: FilterProgram) -> None:
    code = array("q", program.code)
    patterns = program.patterns
    _check_ok(rt.k_feed_filter(ptr, probe, code.buffer_info()[0], len(code) // 6, patterns, len(patterns)))


def _add_argstr(rt, ptr: int, probe: int, argstr: ArgstrValue) -> None:
    """The probe's argstr program, when its print fmt renders plainly."""
    if argstr.code is None:
        raise Unsupported(argstr.refusal)
    code = array("q", argstr.code)
    count = len(code) // _KA_WIDTH
    status = rt.k_feed_argstr(ptr, probe, code.buffer_info()[0], count, argstr.blob, len(argstr.blob))
    if status < 0:
        raise AssertionError(f"argstr.c rejects printfmt's bytecode for {argstr.label}")
    _check_ok(status)


def _add_sites(rt, ptr: int, probe: int, site: SiteName) -> None:
    """The site event's probe names, for its KF_SITE_NAME slot."""
    names = (KVal * len(site.names))(*(rt.string(name.encode()) for name in site.names))
    _check_ok(rt.k_feed_sites(ptr, probe, names, len(names)))


def _slot_spec(rt, source) -> tuple:
    """(kind, offset, size, flags, value) of one slot (sample_event.SampleEvent)."""
    if isinstance(source, TaskValue):
        return (_TASK_KINDS[source.name], 0, 0, 0, _NIL)
    if isinstance(source, ConstValue):
        return (KF_CONST, 0, 0, 0, rt.string(source.value))
    if isinstance(source, SiteName):
        return (KF_SITE_NAME, source.offset, 4, 0, _NIL)  # the table _add_sites registered
    if isinstance(source, ArgstrValue):
        return (KF_ARGSTR, 0, 0, 0, _NIL)  # the program _add_argstr registered
    if isinstance(source, FieldValue):
        return _field_spec(source)
    return (KF_NIL, 0, 0, 0, _NIL)


def _field_spec(field: FieldValue) -> tuple:
    """How a format field reads as a script value (schema._field_reader,
    then SampleEvent._script_value)."""
    shape, offset, size = field.shape, field.offset, field.size
    if shape == "int":
        return (KF_INT_FIELD, offset, size, int(field.signed), _NIL)
    if shape == "bytes":
        return (KF_BYTES_FIELD, offset, size, 0, _NIL)
    if shape == "chars":
        return (KF_CHARS_FIELD, offset, size, 0, _NIL)
    if shape == "string":
        return (KF_DATALOC_STRING, offset, size, int(field.relative), _NIL)
    if shape == "dyn_array":
        flags = (field.elem_size | int(field.signed) << 8) if field.elem_size else 1  # else its bytes
        return (KF_DYN_ARRAY, offset, size, flags | int(field.relative) << 9, _NIL)
    if shape == "array":
        if field.elem_size:
            return (KF_ARRAY_FIELD, offset, size // field.elem_size, field.elem_size | int(field.signed) << 8, _NIL)
        return (KF_ARRAY_FIELD, offset, size, 1, _NIL)  # its bytes
    return (KF_FIELD_NIL, 0, 0, 0, _NIL)  # "missing"


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

