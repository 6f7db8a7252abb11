"""The script value model and the operations on it that are not arithmetic.

Values are plain Python objects: nil is ``None``, booleans are ``bool``,
integers are ``int`` (always in signed 64-bit range), strings are ``bytes``,
tables are ``Table`` and functions are ``Function``. Python's ``bool`` is a
subclass of ``int``, so every check here tests ``type(v) is int`` exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ktapjit.diag import RuntimeFault


class Cell:
    """A mutable box holding one captured variable, shared by closures."""

    __slots__ = ("value",)

    def __init__(self, value: object = None):
        self.value = value


class Function:
    """A closure: opaque code (an IR function) plus its captured cells.

    Equality and hashing are by identity (object defaults), as the language
    requires.
    """

    __slots__ = ("code", "cells")

    def __init__(self, code: object, cells: tuple[Cell, ...]):
        self.code = code
        self.cells = cells


class _BoolKey:
    """Stands for a boolean key, since True == 1 and hash(True) == hash(1)."""

    __slots__ = ("value",)

    def __init__(self, value: bool):
        self.value = value

    def __repr__(self) -> str:
        return f"_BoolKey({self.value})"


_TRUE_KEY = _BoolKey(True)
_FALSE_KEY = _BoolKey(False)


def _norm(key: object) -> object:
    # Only booleans need wrapping: int 1 and b"1" already differ as dict keys,
    # and tables and functions hash by identity.
    if key is True:
        return _TRUE_KEY
    if key is False:
        return _FALSE_KEY
    return key


def _denorm(key: object) -> object:
    return key.value if type(key) is _BoolKey else key


class Table:
    """An insertion-ordered table with a size limit.

    A Python dict gives O(1) access and keeps insertion order; deleting a key
    and storing it again puts it at the end, exactly as the language says.
    Equality and hashing are by identity.
    """

    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int):
        self._entries: dict[object, object] = {}
        self.max_entries = max_entries

    def get(self, key: object) -> object:
        return self._entries.get(_norm(key))

    def set(self, key: object, value: object) -> None:
        if key is None:
            raise RuntimeFault("table index is nil")
        k = _norm(key)
        entries = self._entries
        if value is None:
            entries.pop(k, None)
            return
        if k not in entries and len(entries) >= self.max_entries:
            raise RuntimeFault(f"table overflow ({self.max_entries} entries)")
        entries[k] = value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def keys_snapshot(self) -> list:
        """The keys present now, in insertion order (for ``pairs``)."""
        return [_denorm(k) for k in self._entries]

    def items(self) -> Iterator[tuple[object, object]]:
        """(key, value) pairs in insertion order. Do not mutate while iterating."""
        for k, v in self._entries.items():
            yield _denorm(k), v

    def __repr__(self) -> str:
        return f"<Table {len(self._entries)} entries at {id(self):#x}>"


class Identities:
    """Numbers tables and functions for printing, each kind from 1.

    The number is given on first request, so it follows the order in which
    values are first printed. Values are held (not their ids) so a collected
    object's id can never be reused for a different number.
    """

    __slots__ = ("_tables", "_functions")

    def __init__(self):
        self._tables: dict[Table, int] = {}
        self._functions: dict[Function, int] = {}

    def number(self, v: Table | Function) -> int:
        if type(v) is Table:
            seen = self._tables
        elif type(v) is Function:
            seen = self._functions
        else:
            raise TypeError(f"no identity for {type(v).__name__}")
        n = seen.get(v)
        if n is None:
            n = seen[v] = len(seen) + 1
        return n


_TYPE_NAMES = {
    type(None): "nil",
    bool: "boolean",
    int: "integer",
    bytes: "string",
    Table: "table",
    Function: "function",
}


def type_name(v: object) -> str:
    """The language's name for v's type, as used in error messages."""
    try:
        return _TYPE_NAMES[type(v)]
    except KeyError:
        raise TypeError(f"not a script value: {v!r}") from None


def is_true(v: object) -> bool:
    return v is not None and v is not False


def values_equal(a: object, b: object) -> bool:
    # Exact type match first: True == 1 in Python but not in the language.
    # Tables and functions use object identity for ==.
    return type(a) is type(b) and a == b


def value_text(v: object, identities: Identities) -> bytes:
    """The bytes ``print`` writes for v."""
    t = type(v)
    if t is bytes:
        return v
    if t is int:
        return b"%d" % v
    if v is None:
        return b"nil"
    if t is bool:
        return b"true" if v else b"false"
    if t is Table:
        return b"table: %d" % identities.number(v)
    if t is Function:
        return b"function: %d" % identities.number(v)
    raise TypeError(f"not a script value: {v!r}")


def print_line(args: Sequence[object], identities: Identities) -> bytes:
    """What ``print(a, ...)`` writes: tab-separated texts and a newline."""
    return b"\t".join([value_text(a, identities) for a in args]) + b"\n"


def stringof(v: object, identities: Identities, max_string: int) -> bytes:
    """``stringof(x)``: the print text, limited like any made string."""
    text = value_text(v, identities)
    if len(text) > max_string:
        raise RuntimeFault("string too long")
    return text


def compare(a: object, b: object) -> int:
    """-1, 0 or 1 for the ordering operators; integers or strings only."""
    ta, tb = type(a), type(b)
    # bytes order in Python is unsigned and a proper prefix sorts first.
    if ta is tb and (ta is int or ta is bytes):
        return (a > b) - (a < b)
    raise RuntimeFault(f"attempt to compare {type_name(a)} with {type_name(b)}")


def _concat_part(v: object) -> bytes:
    t = type(v)
    if t is bytes:
        return v
    if t is int:
        return b"%d" % v
    raise RuntimeFault(f"attempt to concatenate a {type_name(v)} value")


def concat(a: object, b: object, max_string: int) -> bytes:
    left = _concat_part(a)
    right = _concat_part(b)
    # Check before joining so an oversized result is never built.
    if len(left) + len(right) > max_string:
        raise RuntimeFault("string too long")
    return left + right


def length(v: object) -> int:
    if type(v) is bytes or type(v) is Table:
        return len(v)
    raise RuntimeFault(f"attempt to get length of a {type_name(v)} value")
