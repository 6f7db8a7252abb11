"""One sample as a probe body sees it: the EventContext of LANGUAGE.md's
event values. Fields are decoded lazily, once, on first use."""

from __future__ import annotations

from typing import Optional

from ktapjit.diag import RuntimeFault
from ktapjit.events.errors import EventsError
from ktapjit.semantics.intmath import wrap
from ktapjit.semantics.values import Table
from ktapjit.tracing.plan import BoundEvent

_ARG_NAMES = {f"arg{i}": i for i in range(10)}
_TASK_VALUES = frozenset({"pid", "tid", "cpu", "uid", "execname"})


def task_value(event, name: str) -> object:
    """The event values every sample has: whose it is and where it ran.
    `uid` is nil: perf records do not carry it (docs/language-notes.md)."""
    sample = event.sample
    if name == "pid":
        return sample.pid
    if name == "tid":
        return sample.tid
    if name == "cpu":
        return sample.cpu
    if name == "execname":
        return event.comm
    return None


class SampleEvent:
    __slots__ = ("sample", "bound", "comm", "max_table", "time_ns", "stacks", "_fields", "_tables", "companion")

    def __init__(self, sample, bound: BoundEvent, comm: bytes, max_table: int, time_ns: int, stacks=None,
                 companion=None):
        self.companion = companion  # tracing.companion.PairedReads: what the kernel read for this sample
        self.sample = sample
        self.bound = bound
        self.comm = comm
        self.max_table = max_table
        self.time_ns = time_ns  # the stream time the driver advanced to for this sample
        self.stacks = stacks  # tracing.stacks.Stacks, when some probe calls stack()/ustack()
        self._fields: Optional[dict] = None
        self._tables: Optional[dict[str, Table]] = None  # array fields, made once per event

    def fields(self) -> dict:
        if self._fields is None:
            try:
                self._fields = self.bound.fmt.decode(self.sample.raw or b"")
            except EventsError as exc:  # a corrupt record: the probe reading it fails, with its location
                raise RuntimeFault(f"corrupt {self.bound.system}:{self.bound.event} record at byte offset "
                                   f"{self.sample.offset}: {exc}") from None
        return self._fields

    def value(self, name: str) -> object:
        if name in _TASK_VALUES:
            return task_value(self, name)
        if name == "probename":
            return self.probename()
        if name == "argstr":
            return self.bound.render(self.sample.raw or b"")
        index = _ARG_NAMES[name]
        args = self.bound.arg_names  # a return probe's __probe_ret_ip is skipped (plan.arg_field_names)
        if index >= len(args):
            return None
        return self.field(args[index])

    def probename(self) -> bytes:
        name = self.bound.probename_of(self.sample.raw or b"")
        if name is None:  # a site index the event's table lacks
            raise RuntimeFault(f"corrupt {self.bound.system}:{self.bound.event} record at byte offset "
                               f"{self.sample.offset}: its probe site is not in the event's site table")
        return name

    def field(self, name: str) -> object:
        tables = self._tables
        if tables is not None and name in tables:
            return tables[name]
        value = self._script_value(self.fields().get(name))
        if type(value) is Table:  # one event, one table: reads see each other's stores
            if tables is None:
                tables = self._tables = {}  # only events with array fields pay for it
            tables[name] = value
        return value

    def stack(self, request) -> object:
        """As for profile samples (tracing/stacks.py); nil when the event was
        recorded without callchains (its probes did not call stack())."""
        if self.stacks is None:
            return None
        return self.stacks.render(self.sample, request)

    def memory(self, read: str) -> object:
        if self.companion is None:
            return None
        return self.companion.value(read, self.bound)

    def _script_value(self, value: object) -> object:
        # Integers are int64 in the language: an unsigned 64-bit field (a
        # pointer, an unsigned long) reads as two's complement, as C casts it.
        if type(value) is int:
            return wrap(value)
        # Array fields are tables keyed from 0, as in C.
        if isinstance(value, (list, tuple)):
            table = Table(max(self.max_table, len(value)))
            for i, item in enumerate(value):
                table.set(i, wrap(item) if type(item) is int else item)
            return table
        return value


class ProfileEvent:
    """A `profile-N` sample (cpu-clock) as its body sees it: pid, tid, cpu,
    execname, probename (the timer as written, e.g. `profile-10ms`), and the
    stacks. It has no trace format: argstr, arg0..arg9 and args.NAME are nil
    (uid too, as for every perf record)."""

    __slots__ = ("sample", "bound", "comm", "time_ns", "stacks")

    def __init__(self, sample, bound, comm: bytes, time_ns: int, stacks):
        self.sample = sample
        self.bound = bound
        self.comm = comm
        self.time_ns = time_ns
        self.stacks = stacks  # tracing.stacks.Stacks

    def value(self, name: str) -> object:
        if name in _TASK_VALUES:
            return task_value(self, name)
        if name == "probename":
            return self.bound.probename
        return None

    def field(self, name: str) -> object:
        return None

    def stack(self, request) -> object:
        return self.stacks.render(self.sample, request)

    def memory(self, read: str) -> object:
        return None  # a cpu-clock sample has no companion
