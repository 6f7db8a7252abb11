"""Output items: what one output builtin wrote, with its structure.

Text output is only the bytes (``Item.text``); ``-f json`` writes each item
as a JSON object, from the structure kept here, never by reading the text
back. Both engines produce the same items: the interpreter builds them with
the formatters of this package, the JIT from its runtime's output marks.

Kinds: ``print`` and ``printf`` (text only); ``print_hist`` (rows: key,
count, bar length; more: rows were left out); ``print_folded`` (rows:
stack, count); ``print_agg`` (entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class AggEntry:
    """One key of ``print_agg``: a histogram's buckets (label, count, bar
    length) or the numbers of a ``stats`` (count, total, min, max)."""

    key: bytes
    kind: str  # "hist" | "lhist" | "stats"
    buckets: tuple = ()
    stats: Optional[tuple[int, int, int, int]] = None


@dataclass(frozen=True)
class Item:
    """One piece of a run's output."""

    kind: str
    text: bytes
    rows: tuple = ()
    more: bool = False
    entries: tuple = ()
