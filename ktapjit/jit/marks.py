"""The JIT's output as structured items (semantics.output), read from the
runtime's output marks (runtime/ktrt.h, "Output marks"; their kinds are the
ABI table's) and the bytes they point into: the same items the interpreter
builds with the formatters.

May import: ktapjit.semantics, ktapjit.jit.runtime_abi.
"""

from __future__ import annotations

from ktapjit.jit import runtime_abi
from ktapjit.semantics.output import AggEntry, Item

# The ABI table's KM_*, in its order (tests/jit/test_runtime_abi.py).
(KM_PRINT, KM_PRINTF, KM_HIST, KM_FOLDED, KM_AGG, KM_ROW, KM_MORE, KM_KEY,
 KM_STATS) = (m.value for m in runtime_abi.MARK_KINDS.members)
_ITEM_KINDS = {KM_PRINT: "print", KM_PRINTF: "printf", KM_HIST: "print_hist",
               KM_FOLDED: "print_folded", KM_AGG: "print_agg"}
_TEXT_ONLY = ("print", "printf")
_AGG_KINDS = ("hist", "lhist", "stats")
_U64 = (1 << 64) - 1


def output_items(data: bytes, marks: list[tuple[int, int, int, int, int]]) -> list[Item]:
    """Split `data` at its item marks and give each item its structure."""
    starts = [i for i, mark in enumerate(marks) if mark[0] in _ITEM_KINDS]
    starts.append(len(marks))
    ends = [marks[i][1] for i in starts[1:-1]]
    ends.append(len(data))
    items = []
    for first, last, end in zip(starts, starts[1:], ends):
        head = marks[first]
        kind = _ITEM_KINDS[head[0]]
        if first + 1 == last and kind in _TEXT_ONLY:  # the common case: print and printf
            items.append(Item(kind, data[head[1]:end]))
        else:
            items.append(_item(data, kind, head[1], marks[first + 1:last], end))
    return items


def _item(data: bytes, kind: str, start: int, parts, end: int) -> Item:
    text = data[start:end]
    if kind == "print_hist":
        rows = tuple((data[at:at + n], a, b) for k, at, n, a, b in parts if k == KM_ROW)
        return Item(kind, text, rows, more=any(k == KM_MORE for k, *_ in parts))
    if kind == "print_folded":
        return Item(kind, text, tuple((data[at:at + n], _uint128(a, b)) for k, at, n, a, b in parts))
    if kind == "print_agg":
        return Item(kind, text, entries=tuple(_agg_entries(data, parts)))
    return Item(kind, text)


def _uint128(low: int, high: int) -> int:
    """A print_folded count: a merged sum of counts may exceed int64."""
    return (low & _U64) | (high & _U64) << 64


def _agg_entries(data: bytes, parts):
    entry = None
    for kind, at, n, a, b in parts:
        if kind == KM_KEY:
            if entry is not None:
                yield _agg_entry(*entry)
            entry = [data[at:at + n], _AGG_KINDS[a], [], None]
        elif kind == KM_ROW:
            entry[2].append((data[at:at + n], a, b))
        elif kind == KM_STATS:
            entry[3] = (at, n, a, b)
    if entry is not None:
        yield _agg_entry(*entry)


def _agg_entry(key: bytes, kind: str, buckets: list, stats) -> AggEntry:
    return AggEntry(key, kind, tuple(buckets), stats)
