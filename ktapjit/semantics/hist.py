"""``print_hist``: ktap's text histogram of a table of counts.

The layout is ktap's, written as the printf calls LANGUAGE.md gives; the
row order is fully determined (value descending, ties in insertion order).
"""

from __future__ import annotations

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.output import Item
from ktapjit.semantics.values import Identities, Table, type_name, value_text

DEFAULT_ROWS = 20
BAR_WIDTH = 38

# printf("%31s%s%s\n", "value ", "------------- Distribution -------------", " count")
_HEADER = b"value ".rjust(31) + b"------------- Distribution -------------" + b" count\n"
# printf("%31s |\n", "...")
_CUT_ROW = b"...".rjust(31) + b" |\n"


def format_hist(table: object, n: object, identities: Identities) -> bytes:
    """The bytes ``print_hist(table [, n])`` writes; ``n`` is None when omitted."""
    return hist_item(table, n, identities).text


def hist_item(table: object, n: object, identities: Identities) -> Item:
    """What ``print_hist(table [, n])`` writes, with its rows (key, count, bar length)."""
    if type(table) is not Table:
        raise RuntimeFault(f"print_hist: expected a table, got {type_name(table)}")
    rows = _row_count(n)
    entries = list(table.items())
    # Validate every value before printing anything or numbering any key.
    for _, count in entries:
        if type(count) is not int or count < 0:
            raise RuntimeFault("print_hist: values must be non-negative integers")
    total = sum(count for _, count in entries)  # exact, no int64 wrap
    entries.sort(key=lambda kv: -kv[1])  # stable: ties keep insertion order
    shown = [(value_text(key, identities), count, _bar(count, total)) for key, count in entries[:rows]]
    out = [_HEADER]
    out.extend(_row(*row) for row in shown)
    more = len(entries) > rows
    if more:
        out.append(_CUT_ROW)
    return Item("print_hist", b"".join(out), tuple(shown), more)


def _row_count(n: object) -> int:
    if n is None:
        return DEFAULT_ROWS
    if type(n) is not int:
        raise RuntimeFault(f"print_hist: row count must be an integer, got {type_name(n)}")
    return max(n, 0)


def _bar(count: int, total: int) -> int:
    return count * BAR_WIDTH // total if total else 0


def _row(key_text: bytes, count: int, bar: int) -> bytes:
    # printf("%31s |%s%-7d\n", key, bar, count); "%31d" for an integer key
    # gives the same text as "%31s" of its decimal form.
    return key_text.rjust(31) + b" |" + (b"@" * bar).ljust(BAR_WIDTH) + b"%-7d\n" % count
