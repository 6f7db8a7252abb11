"""Memory read at event time, carried in the stream (docs/events.md,
"Companion records").

A probe body calling `user_string(args.F)`, `kernel_string(args.F)` or
`in_iowait()` cannot read the memory itself: a sample holds only the
pointer, and the probe may run much later, or on a replay. So the session
asks for a companion program on the probe's tracepoint (bpf/companion.py
builds it; this module says what it reads) that writes what it read as a
bpf-output sample (events/records/companion.py) just before the kernel
writes the tracepoint's own sample, on the same CPU.

Pairing, the same live and on a replay: records arrive in time order; a
companion is kept as the latest of its (CPU, tracepoint), and the next
sample of that tracepoint on that CPU takes it when the same thread wrote
both (else the sample has none: its reads give nil). A companion whose sample
never comes (the kernel filter dropped it, or it was another task's hit
while tracing one process) is overwritten by the next: the program runs
with preemption off, so no other hit of the same tracepoint on the same
CPU comes between a companion and its sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ktapjit.events.records import companion as record
from ktapjit.events.records import perf_abi as abi
from ktapjit.semantics.memory_read import MAX_STRING_READ, STRING_READS, MemoryRead

# The room for items in one companion record, below the u16 record size.
MAX_PAYLOAD = 60 * 1024


@dataclass(frozen=True)
class ReadItem:
    """One thing a companion program reads: its kind (events.records.companion
    USER_STRING, ...) and, for a string, the field holding the pointer."""

    kind: int
    offset: int = 0  # the field's offset in the tracepoint record
    size: int = 0  # the field's size (a pointer: 8)


@dataclass(frozen=True)
class TracepointReads:
    """What the companion program of one tracepoint reads."""

    system: str
    event: str
    tracepoint: int  # its id (the perf attr config)
    items: tuple[ReadItem, ...]
    room: int  # text bytes per item: the string bound + its NUL

    @property
    def payload_size(self) -> int:
        return record.payload_size(len(self.items), self.room)


@dataclass
class CompanionRoutes:
    """Which samples of a stream are companions, and each tracepoint
    sample's tracepoint id (the key companions are paired by)."""

    ids: set = field(default_factory=set)
    tracepoint_of: dict = field(default_factory=dict)  # sample id -> attr config


def read_item(read: MemoryRead, bound) -> Optional[ReadItem]:
    """The item a MemoryRead of a bound event's body reads; None when the
    event has no such field (the call then gives nil)."""
    kind = record.KINDS[read.kind]
    if read.kind not in STRING_READS:
        return ReadItem(kind)
    name = read.field_name(bound.arg_names)
    f = bound.fmt.field(name) if name is not None else None
    if f is None or f.array_len is not None or f.size not in (4, 8):
        return None
    return ReadItem(kind, f.offset, f.size)


def plan_reads(bound: list, max_string: int, tracepoint_id: Callable[[str, str], int]) -> list[TracepointReads]:
    """One TracepointReads per tracepoint whose probes read memory, in
    first-bound order."""
    items: dict[tuple[str, str], dict[ReadItem, None]] = {}
    for b in bound:
        for aux in b.memory_reads:
            item = read_item(MemoryRead.parse(aux), b)
            if item is not None:
                items.setdefault((b.system, b.event), {})[item] = None
    plans = []
    for (system, event), wanted in items.items():
        # A task read needs no text room: an event reading only those stays small.
        room = min(max_string, MAX_STRING_READ) + 1 if any(i.kind != record.IN_IOWAIT for i in wanted) else 0
        plan = TracepointReads(system, event, tracepoint_id(system, event), tuple(wanted), room)
        if plan.payload_size > MAX_PAYLOAD:
            from ktapjit.events.errors import EventsError

            raise EventsError(f"{system}:{event}: {len(wanted)} memory reads of up to {room - 1} bytes do not fit "
                              f"in one companion record; lower --max-string")
        plans.append(plan)
    return plans


def companion_event():
    """The bpf-output event companion programs write to, on every CPU and
    for every task (bpf_perf_event_output writes to the current CPU's
    event, which a per-task event is not while another task runs)."""
    from ktapjit.events.records.perf_ring import SAMPLE_TYPE, TraceEvent  # live only: a replay never opens it

    attr = abi.perf_event_attr(type=abi.PERF_TYPE_SOFTWARE, config=abi.PERF_COUNT_SW_BPF_OUTPUT,
                               sample_period=1, sample_type=SAMPLE_TYPE | abi.PERF_SAMPLE_RAW)
    return TraceEvent(record.COMPANION_EVENT, attr, system_wide=True)


class PairedReads:
    """The companion paired with one sample, as its body's reads see it."""

    __slots__ = ("companion", "max_string")

    def __init__(self, companion: record.Companion, max_string: int):
        self.companion = companion
        self.max_string = max_string

    def value(self, aux: str, bound) -> object:
        """The script value of one read (docs/language-notes.md, "Memory read
        at event time"): nil for a NULL pointer, a fault, or a read the
        companion lacks; a string cut to --max-string bytes, as copied."""
        read = MemoryRead.parse(aux)
        wanted = read_item(read, bound)
        if wanted is None:
            return None
        item = self.companion.items.get((wanted.kind, wanted.offset))
        if item is None or item.result < 0:
            return None
        if wanted.kind == record.IN_IOWAIT:
            return item.value
        if item.value == 0:
            return None
        return item.text[:self.max_string]


class CompanionPairing:
    """The pairing rule (module docstring), for one stream driver."""

    def __init__(self, routes: CompanionRoutes, max_string: int):
        self.routes = routes
        self.max_string = max_string
        self.pending: dict[tuple, tuple] = {}  # (cpu, tracepoint) -> (tid, Companion)

    def keep(self, sample) -> bool:
        """Keep `sample` when it is a companion (True); else False."""
        if sample.id not in self.routes.ids:
            return False
        companion = record.parse(sample.raw or b"", sample.offset)
        self.pending[(sample.cpu, companion.tracepoint)] = (sample.tid, companion)
        return True

    def take(self, sample) -> Optional[PairedReads]:
        """The companion of a tracepoint sample, if one is waiting: written
        by the same thread (a lost companion must not leave its sample
        another task's)."""
        waiting = self.pending.pop((sample.cpu, self.routes.tracepoint_of.get(sample.id)), None)
        if waiting is None or waiting[0] != sample.tid:
            return None
        return PairedReads(waiting[1], self.max_string)


def missing_warning(path: str) -> str:
    return (f"'{path}' holds no companion records (it was not made by ktapjit run --record): "
            "user_string(), kernel_string() and in_iowait() give nil")


def wants_companions(bound: list) -> bool:
    return any(b.memory_reads for b in bound)
