"""The kernel's tracepoint filter language: the ``/FILTER/`` of ``trace EVT /F/ {}``.

A filter is predicates ``field op value`` joined by ``&&`` and ``||``, with
parentheses and ``!``, exactly what the kernel accepts in
``events/SYS/EVT/filter`` and through PERF_EVENT_IOC_SET_FILTER
(kernel/trace/trace_events_filter.c). Live, the kernel applies it; on a
recording, ``eval_filter`` applies it with the same meaning, quirks included:

- ``&&`` binds tighter than ``||``; ``!`` negates the next predicate or
  parenthesised group;
- operators are ``== != < <= > >= & ~``; numbers are C integers (decimal,
  ``0x`` hex, leading-0 octal, a leading ``-``), checked against the field's
  signedness; comparisons use the field's size and signedness, ``==``/``!=``
  compare the low bits of the field's size, ``&`` is "any common bit";
- strings must be quoted (``'..'`` or ``".."``) and apply to string fields
  with ``==``, ``!=`` and ``~``; ``~`` is the kernel's glob (``*``, ``?``,
  ``[..]``, and a leading ``!`` negates), with its prefix/suffix/substring
  fast paths reproduced byte for byte;
- ``comm``/``COMM`` and ``cpu``/``CPU``/``common_cpu`` are the current task's
  name and the CPU when the event has no field of that name;
- ``CPUS{list}`` values parse and apply to ``cpu``, integer and cpumask
  fields.

What the kernel would read from outside the record when the event happens
is refused at bind time (``unreplayable``): a string test on a ``char *``
field (the kernel compares the memory it points to), and the ``.ustring``
and ``.function`` suffixes (user memory, kallsyms). A recording holds only
the record, so a replay could keep different events than the live run did,
and some kernel builds read those strings where others cannot.

Filter text is the script's bytes decoded as latin-1 (as the parser reads
scripts), so `.encode("latin-1")` gives back exactly the bytes written.

This module imports only the standard library: the frontend, which checks a
filter's syntax, must not import the events package, so the event format is
duck-typed. A format needs
``.name``, ``.fields`` and ``.common_fields`` (each field with ``.name``,
``.type``, ``.offset``, ``.size``, ``.signed``, ``.array_len``, ``.dynamic``)
and, to evaluate from a field dict, ``.encode(fields) -> bytes``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Mapping, Union

__all__ = [
    "FilterSyntaxError",
    "FilterAnd",
    "FilterOr",
    "FilterNot",
    "FilterPredicate",
    "FilterNode",
    "parse_filter",
    "check_filter",
    "unreplayable",
    "compile_filter",
    "cpulist_text",
    "eval_filter",
    "filter_to_kernel_text",
]

# Kernel limits: MAX_FILTER_STR_VAL, the num_buf of parse_pred, and
# PERF_EVENT_IOC_SET_FILTER's strndup_user(arg, PAGE_SIZE).
MAX_STRING = 256
MAX_NUMBER_TEXT = 24
MAX_FILTER_TEXT = 4095
TASK_COMM_LEN = 16
# Ours: nesting of parentheses and '!' (keeps every walk far from Python's
# recursion limit; real filters nest a few levels).
MAX_DEPTH = 64

_OPS = ("~", "!=", "==", "<=", "<", ">=", ">", "&")  # the kernel's order
_STRING_OPS = ("==", "!=", "~")
_CPUS_OPS = ("==", "!=", "&")


class FilterSyntaxError(Exception):
    """A filter the kernel would refuse; ``offset`` is 0-based in the text."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class FilterPredicate:
    """``field op value``. ``kind`` is "int", "str", "cpus" or "func" (a
    ``.function`` value); ``value`` is an int, the string as written between
    the quotes, a frozenset of CPUs, or the symbol text."""

    field: str
    op: str
    value: object
    offset: int = field(default=0, compare=False)
    kind: str = "int"
    modifier: str | None = None  # "ustring" or "function"
    text: str = field(default="", compare=False)  # the value as written
    op_offset: int = field(default=0, compare=False)
    value_offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class FilterAnd:
    left: "FilterNode"
    right: "FilterNode"


@dataclass(frozen=True, slots=True)
class FilterOr:
    left: "FilterNode"
    right: "FilterNode"


@dataclass(frozen=True, slots=True)
class FilterNot:
    inner: "FilterNode"


FilterNode = Union[FilterAnd, FilterOr, FilterNot, FilterPredicate]


# ----------------------------------------------------------------------------
# Parsing


def _isspace(ch: str) -> bool:
    return ch in " \t\n\v\f\r"


def _is_name_char(ch: str) -> bool:
    # The kernel takes isalnum() || '_' for field names (ASCII only).
    return ch.isascii() and (ch.isalnum() or ch == "_")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and _isspace(self.text[self.pos]):
            self.pos += 1

    def at(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def error(self, message: str, offset: int | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(message, self.pos if offset is None else offset)

    def parse(self) -> FilterNode:
        if len(self.text.encode("latin-1")) > MAX_FILTER_TEXT:
            raise self.error(f"filter too long (the kernel takes at most {MAX_FILTER_TEXT} bytes)", 0)
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.error("empty filter")
        node = self.parse_or()
        self.skip_space()
        if self.pos < len(self.text):
            if self.text[self.pos] == ")":
                raise self.error("unbalanced ')': no matching '('")
            raise self.error(self._after_predicate_message())
        return node

    def _after_predicate_message(self) -> str:
        rest = self.text[self.pos:]
        if rest[:1] in ("&", "|"):
            return f"expected '&&' or '||', got '{rest[:1]}'"
        return f"expected '&&', '||' or ')' before '{rest.split()[0] if rest.split() else rest}'"

    def parse_or(self) -> FilterNode:
        node = self.parse_and()
        while True:
            self.skip_space()
            if not self.at("||"):
                return node
            self.pos += 2
            node = FilterOr(node, self.parse_and())

    def parse_and(self) -> FilterNode:
        node = self.parse_unary()
        while True:
            self.skip_space()
            if not self.at("&&"):
                return node
            self.pos += 2
            node = FilterAnd(node, self.parse_unary())

    def parse_unary(self) -> FilterNode:
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.error("expected a predicate at the end of the filter")
        self.depth += 1
        try:
            return self._unary()
        finally:
            self.depth -= 1

    def _unary(self) -> FilterNode:
        if self.depth > MAX_DEPTH:
            raise self.error(f"filter nests too deeply (more than {MAX_DEPTH} levels)")
        ch = self.text[self.pos]
        # "!" negates, but "!=" and "!~" are not negations (the kernel's is_not).
        if ch == "!" and self.text[self.pos + 1:self.pos + 2] not in ("=", "~"):
            self.pos += 1
            return FilterNot(self.parse_unary())
        if ch == "(":
            start = self.pos
            self.pos += 1
            node = self.parse_or()
            self.skip_space()
            if not self.at(")"):
                if self.pos >= len(self.text):
                    raise self.error("unbalanced '(': missing ')'", start)
                raise self.error(self._after_predicate_message())
            self.pos += 1
            return node
        return self.parse_predicate()

    def parse_predicate(self) -> FilterPredicate:
        start = self.pos
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        name = self.text[start:self.pos]
        if not name:
            if self.text[self.pos] == ")":
                raise self.error("unbalanced ')': no matching '('")
            raise self.error(f"expected a field name, got '{self.text[self.pos]}'")
        modifier = None
        for suffix in (".ustring", ".function"):
            if self.at(suffix):
                modifier = suffix[1:]
                self.pos += len(suffix)
                break
        self.skip_space()
        op_offset = self.pos
        op = next((o for o in _OPS if self.at(o)), None)
        if op is None:
            got = self.text[self.pos:self.pos + 1] or "end of filter"
            raise self.error(
                f"invalid operator after '{name}' (expected one of == != < <= > >= & ~), got '{got}'"
            )
        self.pos += len(op)
        self.skip_space()
        value_offset = self.pos
        kind, value, text = self.parse_value(name, modifier)
        return FilterPredicate(
            field=name, op=op, value=value, offset=start, kind=kind, modifier=modifier,
            text=text, op_offset=op_offset, value_offset=value_offset,
        )

    def parse_value(self, name: str, modifier: str | None) -> tuple[str, object, str]:
        rest = self.text[self.pos:]
        if modifier == "function" and rest[:1] and not rest[:1].isdigit():
            # A kernel symbol name, unquoted, up to white space.
            end = self.pos
            while end < len(self.text) and not _isspace(self.text[end]) and self.text[end] not in ")&|":
                end += 1
            word = self.text[self.pos:end]
            self.pos = end
            return "func", word, word
        if rest.startswith("CPUS"):
            return self.parse_cpus()
        if rest[:1] in ("'", '"'):
            return self.parse_string()
        if rest[:1].isdigit() or rest[:1] == "-":
            return self.parse_number()
        if not rest:
            raise self.error(f"missing value after the operator for '{name}'")
        raise self.error("invalid value (did you forget quotes?)")

    def parse_string(self) -> tuple[str, object, str]:
        quote_at = self.pos
        quote = self.text[quote_at]
        end = self.text.find(quote, quote_at + 1)
        if end < 0:
            raise self.error("missing matching quote", quote_at)
        body = self.text[quote_at + 1:end]
        if len(body.encode("latin-1")) >= MAX_STRING:
            raise self.error(f"string too long (the kernel allows {MAX_STRING - 1} bytes)", quote_at)
        self.pos = end + 1
        return "str", body, self.text[quote_at:end + 1]

    def parse_number(self) -> tuple[str, object, str]:
        start = self.pos
        if self.text[self.pos] == "-":
            self.pos += 1
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]) and self.text[self.pos] != "_":
            self.pos += 1
        token = self.text[start:self.pos]
        if len(token) >= MAX_NUMBER_TEXT:
            raise self.error("number too long", start)
        value = _parse_c_integer(token)
        if value is None:
            raise self.error(f"illegal integer value '{token}'", start)
        return "int", value, token

    def parse_cpus(self) -> tuple[str, object, str]:
        start = self.pos
        self.pos += 4
        if not self.at("{"):
            raise self.error("missing '{' after CPUS")
        close = self.text.find("}", self.pos)
        if close < 0:
            raise self.error("missing '}' after CPUS{", start)
        body = self.text[self.pos + 1:close]
        cpus = _parse_cpulist(body)
        if cpus is None:
            raise self.error(f"invalid CPU list '{body}'", self.pos + 1)
        self.pos = close + 1
        return "cpus", cpus, self.text[start:self.pos]


def _parse_c_integer(token: str) -> int | None:
    """kstrtoll/kstrtoull with base 0: [-]digits, 0x hex, leading-0 octal."""
    neg = token.startswith("-")
    digits = token[1:] if neg else token
    if not digits:
        return None
    try:
        if digits[:2].lower() == "0x" and len(digits) > 2:
            value = int(digits[2:], 16)
        elif digits.startswith("0"):
            value = int(digits, 8)
        else:
            value = int(digits, 10)
    except ValueError:
        return None
    value = -value if neg else value
    # Out of range for both kstrtoll and kstrtoull.
    if value >= 1 << 64 or value < -(1 << 63):
        return None
    return value


def _parse_cpulist(body: str) -> frozenset[int] | None:
    """The kernel's cpulist: "0-3,5"; None if malformed or empty."""
    cpus: set[int] = set()
    for part in body.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return None
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a or b >= 1 << 16:
            return None
        cpus.update(range(a, b + 1))
    return frozenset(cpus) if cpus else None


def parse_filter(text: str) -> FilterNode:
    """Parse a filter; FilterSyntaxError(message, offset) on bad syntax."""
    return _Parser(text).parse()


# ----------------------------------------------------------------------------
# Field types as the kernel classifies them (filter_assign_type)

_GENERIC_CPU = ("CPU", "cpu", "common_cpu")
_GENERIC_COMM = ("COMM", "comm")


def _find_field(fmt, name: str):
    """Event fields first, then the generic cpu/comm, then common fields,
    the kernel's trace_find_event_field order. Returns a field, "cpu",
    "comm" or None."""
    for f in fmt.fields:
        if f.name == name:
            return f
    if name in _GENERIC_CPU:
        return "cpu"
    if name in _GENERIC_COMM:
        return "comm"
    for f in getattr(fmt, "common_fields", ()):
        if f.name == name:
            return f
    return None


def _filter_type(f) -> str:
    """"static", "dynamic", "reldynamic", "pointer", "cpumask" or "other"."""
    ctype = f.type
    if "__data_loc" in ctype:
        if "char" in ctype:
            return "dynamic"
        if "cpumask_t" in ctype:
            return "cpumask"
    if "__rel_loc" in ctype and "char" in ctype:
        return "reldynamic"
    if f.array_len is not None and not f.dynamic and "char" in ctype:
        return "static"
    if ctype.strip() in ("char *", "const char *"):
        return "pointer"
    return "other"


def _is_string(target) -> bool:
    if target == "comm":
        return True
    if target == "cpu":
        return False
    return _filter_type(target) in ("static", "dynamic", "reldynamic", "pointer")


def _predicates(node: FilterNode) -> list[FilterPredicate]:
    """The predicates in text order (iterative: && chains are long)."""
    out: list[FilterPredicate] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, FilterPredicate):
            out.append(item)
        elif isinstance(item, FilterNot):
            stack.append(item.inner)
        else:
            stack.append(item.right)
            stack.append(item.left)
    return out


def _chain(node: FilterNode, kind: type) -> list[FilterNode]:
    """The operands of a chain of one operator: a && b && c -> [a, b, c]."""
    out: list[FilterNode] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, kind):
            stack.append(item.right)
            stack.append(item.left)
        else:
            out.append(item)
    return out


def check_filter(node: FilterNode, fmt) -> list[tuple[str, int]]:
    """The errors the kernel would report applying *node* to *fmt*'s event:
    unknown fields and type mismatches, as (message, offset) pairs."""
    errors: list[tuple[str, int]] = []
    for pred in _predicates(node):
        problem = _check_predicate(pred, fmt)
        if problem is not None:
            errors.append(problem)
    return errors


_MODIFIER_SOURCES = {"ustring": "user memory", "function": "the kernel's symbol table"}


def unreplayable(node: FilterNode, fmt) -> list[tuple[str, int]]:
    """The predicates of a filter the kernel accepts whose verdict depends on
    more than the record: a replay could not select the events the live run
    did. ktapjit refuses them; (message, offset) pairs."""
    errors: list[tuple[str, int]] = []
    for pred in _predicates(node):
        target = _find_field(fmt, pred.field)
        if target is None:
            continue
        if pred.modifier is not None:
            errors.append((f"'.{pred.modifier}' reads {_MODIFIER_SOURCES[pred.modifier]} when the "
                           "event happens, which a recording does not hold, so a replay could "
                           "select other events; ktapjit does not take it",
                           pred.offset + len(pred.field)))
        elif pred.kind == "str" and _is_pointer(target):
            errors.append((f"'{pred.field}' is a pointer ({target.type.strip()}): the kernel would "
                           "compare the memory it points to, which a recording does not hold, so "
                           "a replay could select other events; ktapjit does not take string "
                           "tests on pointers", pred.offset))
    return errors


def _is_pointer(target) -> bool:
    return target not in ("cpu", "comm") and _filter_type(target) == "pointer"


def _field_names(fmt) -> list[str]:
    return [f.name for f in list(fmt.fields) + list(getattr(fmt, "common_fields", ()))] + list(
        _GENERIC_CPU + _GENERIC_COMM
    )


def _check_predicate(pred: FilterPredicate, fmt) -> tuple[str, int] | None:
    target = _find_field(fmt, pred.field)
    if target is None:
        close = difflib.get_close_matches(pred.field, _field_names(fmt), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"event '{fmt.name}' has no field '{pred.field}'{hint}", pred.offset
    if pred.modifier == "function":
        if target in ("cpu", "comm") or target.size != 8:
            return f"'.function' needs an address field, and '{pred.field}' is not one", pred.value_offset
        if pred.op not in ("==", "!="):
            return "'.function' works only with == and !=", pred.op_offset
        return None
    if pred.kind == "cpus":
        if _is_string(target):
            return f"CPUS{{}} does not apply to string field '{pred.field}'", pred.value_offset
        if pred.op not in _CPUS_OPS:
            return f"operator '{pred.op}' does not apply to CPUS{{}} (use ==, != or &)", pred.op_offset
        return None
    if pred.kind == "str":
        if pred.op not in _STRING_OPS:
            return (f"operator '{pred.op}' does not apply to strings (use ==, != or ~)",
                    pred.op_offset)
        if not _is_string(target):
            return (f"field '{pred.field}' is numeric: compare it with a number, not a string",
                    pred.value_offset)
        return None
    # A number.
    if _is_string(target):
        return f"field '{pred.field}' is a string: quote the value", pred.value_offset
    if pred.op == "~":
        return "operator '~' (glob) applies only to string fields", pred.op_offset
    signed = True if target == "cpu" else bool(target.signed)
    value = pred.value
    if signed and value >= 1 << 63:
        return f"integer value {pred.text} is out of range for field '{pred.field}'", pred.value_offset
    if not signed and pred.text.startswith("-"):
        return (f"negative value {pred.text} for unsigned field '{pred.field}'",
                pred.value_offset)
    return None


# ----------------------------------------------------------------------------
# Evaluation: the kernel's predicate functions, over raw record bytes

# Matcher signature: (raw, cpu, comm) -> bool
_Match = Callable[[bytes, "int | None", "bytes | None"], bool]
_NR_CPU_IDS = os.cpu_count() or 1


def _strncmp_eq(a: bytes, b: bytes, n: int) -> bool:
    a, b = a[:n], b[:n]
    return a.split(b"\0", 1)[0] == b.split(b"\0", 1)[0]


def _cstr(buf: bytes) -> bytes:
    return buf.split(b"\0", 1)[0]


def _strnstr(s1: bytes, s2: bytes, length: int) -> bool:
    # The kernel's strnstr compares raw bytes (memcmp), NULs included.
    l2 = len(s2)
    if not l2:
        return True
    pos = 0
    while length >= l2:
        length -= 1
        if s1[pos:pos + l2] == s2:
            return True
        pos += 1
    return False


def glob_match(pat: bytes, s: bytes) -> bool:
    """lib/glob.c glob_match: *, ?, [..] with ranges and [!..], and \\ escapes.
    Both are C strings: the first NUL ends them."""
    pat, s = _cstr(pat) + b"\0", _cstr(s) + b"\0"
    p = i = 0
    back_pat = back_str = -1
    while True:
        c = s[i]
        i += 1
        d = pat[p]
        p += 1
        if d == 0x3F:  # '?'
            if c == 0:
                return False
            continue
        if d == 0x2A:  # '*'
            if pat[p] == 0:
                return True
            back_pat = p
            i -= 1
            back_str = i
            continue
        if d == 0x5B:  # '['
            if c == 0:  # a class needs a character (lib/glob.c), even an inverted one
                return False
            matched, inverted = False, pat[p] == 0x21
            cls = p + inverted
            a = pat[cls]
            cls += 1
            literal = False
            while True:
                b = a
                if a == 0:
                    literal = True
                    break
                if pat[cls] == 0x2D and pat[cls + 1] != 0x5D:
                    b = pat[cls + 1]
                    if b == 0:
                        literal = True
                        break
                    cls += 2
                matched |= a <= c <= b
                a = pat[cls]
                cls += 1
                if a == 0x5D:
                    break
            if not literal:
                if matched == inverted:
                    if c == 0 or back_pat < 0:
                        return False
                    p = back_pat
                    back_str += 1
                    i = back_str
                    continue
                p = cls
                continue
            # Malformed class: '[' is a literal character.
        elif d == 0x5C:  # '\\'
            d = pat[p]
            p += 1
        if c == d:
            if d == 0:
                return True
            continue
        if c == 0 or back_pat < 0:
            return False
        p = back_pat
        back_str += 1
        i = back_str


def _regex(pattern: bytes, op: str) -> tuple[Callable[[bytes, int], bool], bool]:
    """(match(str, len), negate) as filter_build_regex sets them up."""
    if op != "~":
        return (lambda s, n: _full(s, pattern, n)), op == "!="
    negate = pattern.startswith(b"!")
    buff = pattern[1:] if negate else pattern
    if buff[:1].isdigit():
        return (lambda s, n: _full(s, buff, n)), negate
    kind = "full"
    search = buff
    for i, ch in enumerate(buff):
        if ch == 0x2A:
            if i == 0:
                kind = "end"
            elif i == len(buff) - 1:
                kind = "middle" if kind == "end" else "front"
                search = buff[:i]
                break
            else:
                return (lambda s, n: glob_match(buff, s)), negate
        elif ch in b"[?\\":
            return (lambda s, n: glob_match(buff, s)), negate
    if buff.startswith(b"*"):
        search = search[1:]
    r = search
    if kind == "full":
        return (lambda s, n: _full(s, r, n)), negate
    if kind == "front":
        return (lambda s, n: not (n and n < len(r)) and _strncmp_eq(s, r, len(r))), negate
    if kind == "middle":
        return (lambda s, n: (r in _cstr(s)) if not n else _strnstr(s, r, n)), negate
    return (lambda s, n: n - 1 >= len(r) and s[n - 1 - len(r):n - 1] == r), negate


def _full(s: bytes, pattern: bytes, n: int) -> bool:
    if not n:
        return _cstr(s) == pattern
    return _strncmp_eq(s, pattern, n)


def _string_source(target, fmt) -> Callable[[bytes, "bytes | None"], "tuple[bytes, int] | None"]:
    """(bytes from the string's start, the length the kernel passes) or None
    when the kernel could not read the string."""
    if target == "comm":
        return lambda raw, comm: None if comm is None else (
            comm[:TASK_COMM_LEN].ljust(TASK_COMM_LEN, b"\0"), TASK_COMM_LEN
        )
    kind = _filter_type(target)
    off, size = target.offset, target.size
    if kind == "static":
        # The kernel reads on past the field (into the record) until NUL.
        return lambda raw, comm: (bytes(raw[off:]) + b"\0", size)
    if kind in ("dynamic", "reldynamic"):
        rel = kind == "reldynamic"

        def dyn(raw: bytes, comm):
            word = int.from_bytes(raw[off:off + 4], "little")
            start, length = word & 0xFFFF, word >> 16
            if rel:
                start += off + 4
            return bytes(raw[start:]) + b"\0", length

        return dyn
    # char * pointers: the kernel reads memory a record does not hold
    # (unreplayable refuses them); nothing matches, keeping the matcher total.
    return lambda raw, comm: None


def _compile_string(pred: FilterPredicate, target, fmt) -> _Match:
    match, negate = _regex(pred.value.encode("latin-1"), pred.op)
    source = _string_source(target, fmt)

    def string_pred(raw: bytes, cpu, comm) -> bool:
        got = source(raw, comm)
        if got is None:
            return False  # before the kernel applies "not": no match either way
        return match(*got) != negate

    return string_pred


def _as_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _compare(op: str, a: int, b: int) -> bool:
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    return False


def _compile_number(pred: FilterPredicate, target) -> _Match:
    if target == "cpu":
        val = _as_signed(pred.value, 32)
        op = pred.op

        def cpu_pred(raw: bytes, cpu, comm) -> bool:
            if cpu is None:
                return False
            if op == "==":
                return cpu == val
            if op == "!=":
                return cpu != val
            return _compare(op, cpu, val)

        return cpu_pred
    size, off = target.size, target.offset
    if size not in (1, 2, 4, 8):
        return lambda raw, cpu, comm: False  # the kernel's no-op predicate
    bits = size * 8
    mask = (1 << bits) - 1
    val = pred.value & mask
    op = pred.op
    if op in ("==", "!="):
        want = op == "=="
        return lambda raw, cpu, comm: (int.from_bytes(raw[off:off + size], "little") == val) == want
    if op == "&":
        return lambda raw, cpu, comm: bool(int.from_bytes(raw[off:off + size], "little") & val)
    if target.signed:
        sval = _as_signed(val, bits)
        return lambda raw, cpu, comm: _compare(
            op, int.from_bytes(raw[off:off + size], "little", signed=True), sval)
    return lambda raw, cpu, comm: _compare(op, int.from_bytes(raw[off:off + size], "little"), val)


def _compile_cpus(pred: FilterPredicate, target) -> _Match:
    mask: frozenset[int] = pred.value
    op = pred.op
    if len(mask) == 1:
        # A single CPU: a plain comparison, with & meaning ==.
        (only,) = mask
        single = FilterPredicate(pred.field, "==" if op == "&" else op, only)
        if target == "cpu":
            return _compile_number(single, "cpu")
        if _filter_type(target) == "cpumask":
            return _cpumask_field(target, op, mask)
        # CPUS{} comparisons treat the field as unsigned.
        unsigned = SimpleNamespace(offset=target.offset, size=target.size, signed=False)
        return _compile_number(single, unsigned)
    if target != "cpu" and _filter_type(target) == "cpumask":
        return _cpumask_field(target, op, mask)

    def scalar_in_mask(raw: bytes, cpu, comm) -> bool:
        if target == "cpu":
            value = cpu
            if value is None:
                return False
        else:
            value = int.from_bytes(raw[target.offset:target.offset + target.size], "little")
            if value >= _NR_CPU_IDS:
                return False
        return {"==": False, "!=": True}.get(op, value in mask)

    return scalar_in_mask


def _cpumask_field(target, op: str, mask: frozenset[int]) -> _Match:
    off = target.offset

    def cpumask(raw: bytes, cpu, comm) -> bool:
        word = int.from_bytes(raw[off:off + 4], "little")
        start, length = word & 0xFFFF, word >> 16
        data = raw[start:start + length]
        have = {i for i in range(len(data) * 8) if data[i // 8] >> (i % 8) & 1}
        if op == "==":
            return have == mask
        if op == "!=":
            return have != mask
        return bool(have & mask)

    return cpumask


def _compile_predicate(pred: FilterPredicate, fmt) -> _Match:
    target = _find_field(fmt, pred.field)
    if target is None or pred.modifier is not None or pred.kind == "func":
        # Unknown fields were reported by check_filter, and .ustring and
        # .function are refused by unreplayable: the verdict here only
        # keeps the matcher total.
        return lambda raw, cpu, comm: False
    if pred.kind == "cpus":
        if _is_string(target):
            return lambda raw, cpu, comm: False
        return _compile_cpus(pred, target)
    if pred.kind == "str":
        if not _is_string(target):
            return lambda raw, cpu, comm: False
        return _compile_string(pred, target, fmt)
    if _is_string(target):
        return lambda raw, cpu, comm: False
    return _compile_number(pred, target)


def compile_filter(node: FilterNode, fmt) -> _Match:
    """``match(raw, cpu=None, comm=None) -> bool`` for one event format.

    *raw* is the record's raw tracepoint data; *cpu* and *comm* (the task's
    name, bytes) serve the generic ``cpu`` and ``comm`` fields.
    """
    if isinstance(node, FilterPredicate):
        return _compile_predicate(node, fmt)
    if isinstance(node, FilterNot):
        inner = compile_filter(node.inner, fmt)
        return lambda raw, cpu=None, comm=None: not inner(raw, cpu, comm)
    # Chains become one flat all()/any(): no recursion however long they are.
    kind = type(node)
    parts = [compile_filter(n, fmt) for n in _chain(node, kind)]
    if kind is FilterAnd:
        return lambda raw, cpu=None, comm=None: all(p(raw, cpu, comm) for p in parts)
    return lambda raw, cpu=None, comm=None: any(p(raw, cpu, comm) for p in parts)


_compiled: dict[tuple[int, int], tuple[object, object, _Match]] = {}


def eval_filter(
    node: FilterNode,
    fields: Mapping[str, object],
    fmt,
    *,
    raw: bytes | None = None,
    cpu: int | None = None,
    comm: bytes | None = None,
) -> bool:
    """Whether the kernel would let this event through *node*.

    Give *raw* (the record's tracepoint data) for exact string semantics;
    otherwise the data is rebuilt from *fields* with ``fmt.encode``.
    """
    key = (id(node), id(fmt))
    entry = _compiled.get(key)
    if entry is None or entry[0] is not node or entry[1] is not fmt:
        if len(_compiled) > 1024:
            _compiled.clear()
        entry = (node, fmt, compile_filter(node, fmt))
        _compiled[key] = entry
    if raw is None:
        raw = fmt.encode(fields)
    return entry[2](raw, cpu, comm)


# ----------------------------------------------------------------------------
# Canonical text for the kernel


def filter_to_kernel_text(node: FilterNode) -> str:
    """Text the kernel parses back to *node* (for PERF_EVENT_IOC_SET_FILTER).

    Spaced for reading; without spaces when that is what fits the kernel's
    4095 bytes (the kernel needs none)."""
    text = _text(node, " ")
    if len(text.encode("latin-1")) > MAX_FILTER_TEXT:
        text = _text(node, "")
    return text


def _text(node: FilterNode, sp: str) -> str:
    if isinstance(node, FilterPredicate):
        return _predicate_text(node, sp)
    if isinstance(node, FilterNot):
        inner = node.inner
        body = _text(inner, sp)
        return "!" + (body if isinstance(inner, (FilterPredicate, FilterNot)) else f"({body})")
    kind = type(node)
    sep = f"{sp}&&{sp}" if kind is FilterAnd else f"{sp}||{sp}"
    return sep.join(_operand(n, kind, sp) for n in _chain(node, kind))


def _operand(node: FilterNode, parent: type, sp: str) -> str:
    text = _text(node, sp)
    # || inside && needs parentheses; && inside || does not (it binds tighter).
    if parent is FilterAnd and isinstance(node, FilterOr):
        return f"({text})"
    return text


def _predicate_text(pred: FilterPredicate, sp: str = " ") -> str:
    name = pred.field + (f".{pred.modifier}" if pred.modifier else "")
    if pred.kind == "str":
        quote = "'" if '"' in pred.value else '"'
        value = f"{quote}{pred.value}{quote}"
    elif pred.kind == "cpus":
        value = "CPUS{" + cpulist_text(pred.value) + "}"
    elif pred.kind == "func":
        value = str(pred.value)
    else:
        value = str(pred.value)
    return f"{name}{sp}{pred.op}{sp}{value}"


def cpulist_text(cpus) -> str:
    """CPU numbers as the kernel's cpulist ("0-3,8"): what CPUS{} takes and
    what a cpumask prints as (%*pbl)."""
    ordered = sorted(cpus)
    parts, i = [], 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
