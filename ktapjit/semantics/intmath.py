"""Signed 64-bit integer arithmetic with the language's rules.

Python ints are unbounded, so every result is wrapped back to int64. The
operand check uses ``type(v) is int`` because Python's bool is an int
subclass and booleans are not integers in the language.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.values import type_name

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MASK = (1 << 64) - 1
# gettimeofday_ns/us/ms/s: the clock's nanoseconds divided (truncating) by these.
TIME_DIVISORS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def wrap(x: int) -> int:
    """Reduce any Python int to signed 64 bits (two's complement)."""
    return ((x - INT64_MIN) & UINT64_MASK) + INT64_MIN


def _check(v: object) -> None:
    if type(v) is not int:
        raise RuntimeFault(f"attempt to perform arithmetic on a {type_name(v)} value")


def _div(a: int, b: int) -> int:
    if b == 0:
        raise RuntimeFault("divide by zero")
    q = abs(a) // abs(b)  # truncate toward zero, as C does
    # INT64_MIN / -1 gives 2**63 here, which wraps to INT64_MIN.
    return wrap(-q if (a < 0) != (b < 0) else q)


def _mod(a: int, b: int) -> int:
    if b == 0:
        raise RuntimeFault("divide by zero")
    r = abs(a) % abs(b)  # the sign follows the dividend, as C does
    return -r if a < 0 else r


_BINARY: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: wrap(a + b),
    "-": lambda a, b: wrap(a - b),
    "*": lambda a, b: wrap(a * b),
    "/": _div,
    "%": _mod,
    "&": lambda a, b: a & b,
    "|": lambda a, b: a | b,
    "^": lambda a, b: a ^ b,
    # Python's >> on a negative int is already arithmetic; & 63 of a negative
    # count matches the low bits of its two's complement form.
    "<<": lambda a, b: wrap(a << (b & 63)),
    ">>": lambda a, b: a >> (b & 63),
}

BINARY_OPS = frozenset(_BINARY)


def arith(op: str, a: object, b: object) -> int:
    """``a op b`` for the arithmetic and bitwise operators."""
    _check(a)
    _check(b)
    return _BINARY[op](a, b)


def neg(a: object) -> int:
    _check(a)
    return wrap(-a)


def bnot(a: object) -> int:
    _check(a)
    return ~a


_DECIMAL = re.compile(r"[0-9]+\Z")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+\Z")


def parse_int_literal(text: str) -> int | None:
    """The value of an integer literal, or None when it is out of range.

    Decimal literals go up to INT64_MAX; hex literals up to 2**64-1, read as
    two's complement. Text that is not a literal at all is a lexer bug and
    raises ValueError.
    """
    if _DECIMAL.match(text):
        value = int(text, 10)
        return value if value <= INT64_MAX else None
    if _HEX.match(text):
        value = int(text[2:], 16)
        return wrap(value) if value <= UINT64_MASK else None
    raise ValueError(f"not an integer literal: {text!r}")
