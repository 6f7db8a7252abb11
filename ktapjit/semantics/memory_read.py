"""What a `user_string(p)`, `kernel_string(p)` or `in_iowait()` call asks the
kernel to read when its event fires (docs/language-notes.md, "Memory read at
event time").

The IR carries the request as the aux string of an EventMemory value:
"user_string args.filename", "kernel_string arg1", "in_iowait". A string
read names where its pointer comes from, an event field, because the read
happens in the kernel, before the probe body runs: the program that reads
it must know the pointer then."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

STRING_READS = ("user_string", "kernel_string")
TASK_READS = ("in_iowait",)
MEMORY_BUILTINS = frozenset(STRING_READS + TASK_READS)
# The most bytes one string read copies, whatever --max-string says: a
# companion record is one perf sample, whose size is a u16.
MAX_STRING_READ = 4096


@dataclass(frozen=True)
class MemoryRead:
    kind: str  # one of MEMORY_BUILTINS
    source: Optional[str] = None  # "args.NAME" or "argN" for a string read

    @property
    def aux(self) -> str:
        return self.kind if self.source is None else f"{self.kind} {self.source}"

    @classmethod
    def parse(cls, aux: str) -> "MemoryRead":
        kind, _, source = aux.partition(" ")
        return cls(kind, source or None)

    def field_name(self, arg_names: tuple[str, ...]) -> Optional[str]:
        """The event field holding the pointer, given the event's argN
        names; None when the event has no such field."""
        if self.source is None:
            return None
        if self.source.startswith("args."):
            return self.source[len("args."):]
        index = int(self.source[len("arg"):])
        return arg_names[index] if index < len(arg_names) else None

    def __str__(self) -> str:
        return f"{self.kind}({self.source or ''})"
