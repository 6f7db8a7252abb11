"""A script value as a BPF program holds it (lower.py): an i64 tag
(layout.TAG_*), i64 bits (the integer, the boolean, a string's length) and,
for a value that may be a string, a pointer to its bytes. Tables and
functions are compile-time references: a table global is its map, a
function global is inlined where it is called."""

from __future__ import annotations

from dataclasses import dataclass

from ktapjit.bpf.layout import TAG_INT, TAG_NIL
from ktapjit.ir.func import Func


@dataclass
class Lowered:
    tag: str
    bits: str
    sptr: str = "null"
    cap: int = 0  # bytes the string buffer holds; 0: never a string


@dataclass(frozen=True)
class TableRef:
    slot: int


@dataclass(frozen=True)
class FuncRef:
    func: Func


NIL = Lowered(str(TAG_NIL), "0")


def int_value(value: str) -> Lowered:
    return Lowered(str(TAG_INT), value)
