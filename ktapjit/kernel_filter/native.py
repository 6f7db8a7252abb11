"""Kernel filters (language.py) as programs the JIT runtime's filter.c evaluates.

Every filter filter.py accepts runs natively, with the verdict of
filter.py's compiled matcher (``compile_filter``) byte for byte:

- integer fields of 1, 2, 4 or 8 bytes and the generic ``cpu``, with
  filter.py's reading of short raw data (only the bytes present, the sign
  from the last of them);
- strings (``comm``, char[N] read on past the field to a NUL,
  __data_loc/__rel_loc) with ``==``, ``!=`` and ``~``: the kernel's match
  kinds as ``filter._regex`` picks them (whole string, prefix ``abc*``,
  suffix ``*abc``, substring ``*abc*``, lib/glob.c's glob otherwise, a
  leading ``!`` negating), each with the length the kernel passes;
- ``CPUS{list}`` on ``cpu``, on scalar fields (unsigned, any size; against
  several CPUs a value of filter.py's nr_cpu_ids, this machine's CPU count,
  or more never matches) and on __data_loc cpumask_t fields (set equality
  for ``==``/``!=``, a common CPU for ``&``);
- the predicates filter.py compiles to "never matches": ``.ustring`` and
  ``.function`` (they read memory or kallsyms, which a recording lacks),
  ``char *`` strings, type mismatches, odd-sized integers.

A program is a postfix list of instructions, six int64 words each:
``(code, op, offset, size, kind, value)``. Predicates push a truth value;
NOT, AND and OR combine the top of the stack. Predicates have no side
effects, so evaluating every operand gives what filter.py's short-circuit
all()/any() give. String patterns and CPU bitmaps (bit i of byte i // 8 is
CPU i) are kept in one byte string beside the program; an instruction names
its bytes as (offset << 32 | length).

Imports language.py (its field lookup and constants, so that both sides
resolve a name identically) and the standard library.
"""

from __future__ import annotations

from array import array

from ktapjit.kernel_filter import language as kfilter

# Instruction codes (KF_F_* in runtime/filter.c).
(F_FALSE, F_CPU, F_FIELD, F_NOT, F_AND, F_OR, F_STRING,
 F_CPU_IN, F_FIELD_IN, F_CPUMASK) = range(10)
# Where a string predicate's bytes come from (its `kind` word).
S_COMM, S_STATIC, S_DYNAMIC, S_RELDYNAMIC = range(4)
# How a string predicate matches (its `op` word: negate | kind << 1).
M_FULL, M_FRONT, M_MIDDLE, M_END, M_GLOB = range(5)
_OPS = {"==": 0, "!=": 1, "<": 2, "<=": 3, ">": 4, ">=": 5, "&": 6}
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_NEVER = (F_FALSE, 0, 0, 0, 0, 0)


class UnsupportedFilter(Exception):
    """A filter the native path does not evaluate (none today; kept so a
    future predicate kind can still send a session to the Python path)."""


def compile_program(node, fmt) -> tuple[array, bytes]:
    """The postfix program of `node` for events of format `fmt`, and its
    pattern bytes."""
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
    """One predicate, as filter._compile_predicate reads it."""
    target = kfilter._find_field(fmt, pred.field)
    if target is None or pred.modifier is not None or pred.kind == "func":
        return _NEVER
    if pred.kind == "cpus":
        return _NEVER if kfilter._is_string(target) else _cpus(pred, target, patterns)
    if pred.kind == "str":
        return _string(pred, target, patterns) if kfilter._is_string(target) else _NEVER
    if kfilter._is_string(target):
        return _NEVER
    return _number(pred.op, pred.value, target, bool(target != "cpu" and target.signed))


def _number(op: str, value: int, target, signed: bool) -> tuple:
    """An integer comparison (filter._compile_number); `signed` is the
    field's signedness as filter.py takes it for this predicate."""
    if target == "cpu":
        if op not in _COMPARISONS:
            return _NEVER  # & and ~ on cpu never match (filter._compare)
        return (F_CPU, _OPS[op], 0, 0, 1, _as_signed(value, 32))
    if target.size not in (1, 2, 4, 8) or op not in _OPS:
        return _NEVER  # the kernel's no-op predicate; ~ on a number
    bits = 8 * target.size
    value &= (1 << bits) - 1
    # ==, != and & look at the low bits; the order comparisons at the sign.
    signed = signed and op not in ("==", "!=", "&")
    if signed:
        value = _as_signed(value, bits)
    return (F_FIELD, _OPS[op], target.offset, target.size, int(signed), _as_signed(value, 64))


def _cpus(pred, target, patterns: bytearray) -> tuple:
    """CPUS{list} (filter._compile_cpus)."""
    cpus, op = pred.value, pred.op
    # Against a set: ==, != and, for any other operator, &.
    list_op = _OPS[op] if op in ("==", "!=") else _OPS["&"]
    if target != "cpu" and kfilter._filter_type(target) == "cpumask":
        return (F_CPUMASK, list_op, target.offset, 0, 0, _bytes_ref(patterns, _bitmap(cpus)))
    if len(cpus) == 1:
        # One CPU is a plain comparison, & meaning ==, the field unsigned.
        (only,) = cpus
        return _number("==" if op == "&" else op, only, target, False)
    # Several, against a number: == never matches, != always does and &
    # asks whether the number is one of them (a field's value of
    # nr_cpu_ids or more fails all three).
    ref = _bytes_ref(patterns, _bitmap(cpus))
    if target == "cpu":
        return (F_CPU_IN, list_op, 0, 0, 0, ref)
    return (F_FIELD_IN, list_op, target.offset, target.size, kfilter._NR_CPU_IDS, ref)


def _bitmap(cpus) -> bytes:
    bits = bytearray(max(cpus) // 8 + 1)
    for cpu in cpus:
        bits[cpu // 8] |= 1 << (cpu % 8)
    return bytes(bits)


def _string(pred, target, patterns: bytearray) -> tuple:
    """A string predicate (filter._compile_string)."""
    kind, search, negate = _match_kind(pred.value.encode("latin-1"), pred.op)
    if target == "comm":
        source, offset, size = S_COMM, 0, kfilter.TASK_COMM_LEN
    else:
        sources = {"static": S_STATIC, "dynamic": S_DYNAMIC, "reldynamic": S_RELDYNAMIC}
        source = sources.get(kfilter._filter_type(target))
        if source is None:
            return _NEVER  # a char * the kernel cannot read here: no match either way
        offset, size = target.offset, target.size
    return (F_STRING, int(negate) | kind << 1, offset, size, source, _bytes_ref(patterns, search))


def _match_kind(pattern: bytes, op: str) -> tuple[int, bytes, bool]:
    """(kind, the bytes it searches for, negate), as filter._regex sets the
    kernel's filter_build_regex up: only ~ has kinds, and only a pattern
    whose sole metacharacters are a leading and/or trailing * gets a fast
    one; a pattern starting with a digit is always a whole string."""
    if op != "~":
        return M_FULL, pattern, op == "!="
    negate = pattern.startswith(b"!")
    body = pattern[1:] if negate else pattern
    if body[:1].isdigit():
        return M_FULL, body, negate
    leading = body.startswith(b"*")
    for i, ch in enumerate(body):
        if ch in b"[?\\":
            return M_GLOB, body, negate
        if ch != 0x2A or i == 0:
            continue
        if i < len(body) - 1:
            return M_GLOB, body, negate  # a * inside the pattern
        # A trailing *: what is before it is searched for (after a leading *).
        return (M_MIDDLE if leading else M_FRONT), body[int(leading):i], negate
    return (M_END, body[1:], negate) if leading else (M_FULL, body, negate)


def _bytes_ref(patterns: bytearray, data: bytes) -> int:
    at = len(patterns)
    patterns += data
    return at << 32 | len(data)


def _as_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value
