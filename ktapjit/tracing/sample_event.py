"""One sample as a probe body sees it: the EventContext of LANGUAGE.md's
event values. Fields are decoded lazily, once, on first use."""

from __future__ import annotations

from typing import Optional

from ktapjit.semantics.values import Table
from ktapjit.tracing.plan import BoundEvent

_ARG_NAMES = {f"arg{i}": i for i in range(10)}


class SampleEvent:
    __slots__ = ("sample", "bound", "comm", "max_table", "_fields")

    def __init__(self, sample, bound: BoundEvent, comm: bytes, max_table: int):
        self.sample = sample
        self.bound = bound
        self.comm = comm
        self.max_table = max_table
        self._fields: Optional[dict] = None

    @property
    def time_ns(self) -> int:
        return self.sample.time or 0

    def fields(self) -> dict:
        if self._fields is None:
            self._fields = self.bound.fmt.decode(self.sample.raw or b"")
        return self._fields

    def value(self, name: str) -> object:
        sample = self.sample
        if name == "pid":
            return sample.pid
        if name == "tid":
            return sample.tid
        if name == "cpu":
            return sample.cpu
        if name == "uid":
            return None  # perf records do not carry it: see docs/language-notes.md
        if name == "execname":
            return self.comm
        if name == "probename":
            return self.bound.probename
        if name == "argstr":
            return self.bound.render(self.sample.raw or b"")
        index = _ARG_NAMES[name]
        args = self.bound.arg_names  # a return probe's __probe_ret_ip is skipped (plan.arg_field_names)
        if index >= len(args):
            return None
        return self._script_value(self.fields().get(args[index]))

    def field(self, name: str) -> object:
        return self._script_value(self.fields().get(name))

    def stack(self, which: str) -> object:
        return None  # call stacks arrive with the probes issue

    def _script_value(self, value: object) -> object:
        # Array fields are tables keyed from 0, as in C.
        if isinstance(value, (list, tuple)):
            table = Table(max(self.max_table, len(value)))
            for i, item in enumerate(value):
                table.set(i, item)
            return table
        return value
