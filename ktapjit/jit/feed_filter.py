"""Kernel filters (frontend/filter.py) as programs runtime/feed.c evaluates.

A program is a postfix list of instructions, six int64 words each:
``(code, op, offset, size, signed, value)``. Predicates push a truth value;
NOT, AND and OR combine the top of the stack. Predicates have no side
effects, so evaluating every operand gives what filter.py's short-circuit
all()/any() give.

The native subset: integer fields of 1, 2, 4 or 8 bytes (with filter.py's
reading of short raw data: only the bytes present, sign from the last of
them), the generic `cpu`, whole-string comparisons (==, !=, and ~ without
wildcards) of `comm`, char[N] and __data_loc/__rel_loc strings, and the
predicates filter.py compiles to "never matches". Globs, substrings and
CPUS{} raise UnsupportedFilter, and the session runs the per-event Python
path. String patterns are kept in one byte string beside the program; a
string instruction's value is (pattern offset << 32 | pattern length).

May import: ktapjit.frontend.filter (its field lookup, so that both sides
resolve a name identically), stdlib.
"""

from __future__ import annotations

from array import array

from ktapjit.frontend import filter as kfilter

# Instruction codes (KF_F_* in runtime/feed.c).
F_FALSE, F_CPU, F_FIELD, F_NOT, F_AND, F_OR, F_STRING = range(7)
# Where a string predicate's bytes come from (its `signed` word).
S_COMM, S_STATIC, S_DYNAMIC, S_RELDYNAMIC = range(4)
_OPS = {"==": 0, "!=": 1, "<": 2, "<=": 3, ">": 4, ">=": 5, "&": 6}


class UnsupportedFilter(Exception):
    """A filter the native path does not evaluate."""


def compile_program(node, fmt) -> tuple[array, bytes]:
    """The postfix program of `node` for events of format `fmt`, and its patterns."""
    out = array("q")
    patterns = bytearray()
    stack = [(node, False)]
    while stack:  # iterative: && chains are long
        item, expanded = stack.pop()
        if isinstance(item, kfilter.FilterPredicate):
            out.extend(_predicate(item, fmt, patterns))
        elif isinstance(item, kfilter.FilterNot):
            if expanded:
                out.extend((F_NOT, 0, 0, 0, 0, 0))
            else:
                stack += [(item, True), (item.inner, False)]
        elif expanded:
            out.extend((F_AND if isinstance(item, kfilter.FilterAnd) else F_OR, 0, 0, 0, 0, 0))
        else:
            stack += [(item, True), (item.right, False), (item.left, False)]
    return out, bytes(patterns)


def _predicate(pred, fmt, patterns: bytearray) -> tuple:
    """One predicate, as filter.py's _compile_predicate reads it."""
    never = (F_FALSE, 0, 0, 0, 0, 0)
    target = kfilter._find_field(fmt, pred.field)
    if target is None or pred.modifier is not None or pred.kind == "func":
        return never
    if pred.kind == "str":
        return _string(pred, target, patterns) if kfilter._is_string(target) else never
    if pred.kind != "int":
        raise UnsupportedFilter(pred.kind)  # CPUS{}
    if kfilter._is_string(target):
        return never
    op = _OPS.get(pred.op)
    if op is None:
        raise UnsupportedFilter(pred.op)
    if target == "cpu":
        return (F_CPU, op, 0, 0, 1, _as_signed(pred.value, 32))
    if target.size not in (1, 2, 4, 8):
        return never  # the kernel's no-op predicate
    bits = 8 * target.size
    value = pred.value & ((1 << bits) - 1)
    signed = int(bool(target.signed) and op not in (0, 1, 6))
    if signed:
        value = _as_signed(value, bits)
    return (F_FIELD, op, target.offset, target.size, signed, _as_signed(value, 64))


def _string(pred, target, patterns: bytearray) -> tuple:
    """A whole-string comparison, as filter._regex sets it up: the kernel's
    full match (strncmp up to the length it passes), maybe negated."""
    pattern = pred.value.encode("latin-1")
    if pred.op == "~":
        negate = pattern.startswith(b"!")
        pattern = pattern[1:] if negate else pattern
        if not pattern[:1].isdigit() and any(ch in pattern for ch in b"*[?\\"):
            raise UnsupportedFilter("glob")
    elif pred.op in ("==", "!="):
        negate = pred.op == "!="
    else:
        raise UnsupportedFilter(pred.op)
    if target == "comm":
        source, offset, size = S_COMM, 0, 0
    else:
        kind = kfilter._filter_type(target)
        sources = {"static": S_STATIC, "dynamic": S_DYNAMIC, "reldynamic": S_RELDYNAMIC}
        if kind not in sources:
            return (F_FALSE, 0, 0, 0, 0, 0)  # a char * the kernel cannot read here: no match either way
        source, offset, size = sources[kind], target.offset, target.size
    at = len(patterns)
    patterns += pattern
    return (F_STRING, int(negate), offset, size, source, at << 32 | len(pattern))


def _as_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value
