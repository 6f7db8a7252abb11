"""Type sets: which dynamic types a value may have at run time.

typeinfer sets `Value.type` to a TypeSet; the JIT reads it to keep a value
unboxed when the set is a single type, the printer shows it as `int`,
`int|nil`, `any`. CELL and KEYS are the IR's internal kinds (a captured
variable's cell, a pairs() key snapshot); `any` is every script-visible type.
"""

from __future__ import annotations

import enum


class TypeSet(enum.IntFlag):
    NIL = 1
    BOOL = 2
    INT = 4
    STRING = 8
    TABLE = 16
    FUNCTION = 32
    CELL = 64
    KEYS = 128

    def __str__(self) -> str:
        return type_name(self)


NONE = TypeSet(0)
ANY = TypeSet.NIL | TypeSet.BOOL | TypeSet.INT | TypeSet.STRING | TypeSet.TABLE | TypeSet.FUNCTION

_NAMES = [(TypeSet.NIL, "nil"), (TypeSet.BOOL, "bool"), (TypeSet.INT, "int"), (TypeSet.STRING, "string"),
          (TypeSet.TABLE, "table"), (TypeSet.FUNCTION, "function"), (TypeSet.CELL, "cell"), (TypeSet.KEYS, "keys")]


def type_name(types: int) -> str:
    """`int`, `int|nil`, `any`, `any|cell`, `none`."""
    if types & ANY == ANY:
        rest = types & ~ANY
        return "|".join(["any"] + [n for bit, n in _NAMES if rest & bit])
    if not types:
        return "none"
    return "|".join(n for bit, n in _NAMES if types & bit)
