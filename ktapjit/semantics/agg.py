"""Aggregations: ``hist``, ``lhist``, ``stats`` and ``print_agg``.

An aggregation is an ordinary table kept under a key of a script's table
(docs/language-notes.md, "Aggregations"): a ``kind`` field, the integer
fields of its kind, and buckets keyed by the least value they count. The
updates only add or keep a minimum or maximum, so they commute; the printer
writes bpftrace's layout.
"""

from __future__ import annotations

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.intmath import INT64_MIN, wrap
from ktapjit.semantics.output import AggEntry, Item
from ktapjit.semantics.values import Identities, Table, type_name, value_text

LHIST_MAX_BUCKETS = 1000
BAR_WIDTH = 52
LABEL_WIDTH = 16
COUNT_WIDTH = 8

# The fields of each kind after `kind`, in the order a new aggregation stores them.
FIELDS = {
    b"hist": (b"sum",),
    b"lhist": (b"min", b"max", b"step", b"sum"),
    b"stats": (b"count", b"sum", b"min", b"max"),
}
_KIND = b"kind"
_POWER_SUFFIXES = ("", "K", "M", "G", "T", "P", "E")


# -- buckets ---------------------------------------------------------------------

def hist_bucket(value: int) -> int:
    """The key of hist's bucket for value: the least value it counts."""
    if value < 0:
        return INT64_MIN
    return 1 << (value.bit_length() - 1) if value else 0


def lhist_bucket(value: int, lo: int, hi: int, step: int) -> int:
    """The key of lhist's bucket for value."""
    if value < lo:
        return INT64_MIN
    if value >= hi:
        return hi
    return lo + (value - lo) // step * step


def lhist_bounds_error(lo: int, hi: int, step: int) -> str | None:
    """Why (min, max, step) cannot make an lhist, or None."""
    if step <= 0:
        return "step must be positive"
    if lo >= hi:
        return "min must be less than max"
    if (hi - lo) % step:
        return "max - min must be a multiple of step"
    if (hi - lo) // step > LHIST_MAX_BUCKETS:
        return f"too many buckets (more than {LHIST_MAX_BUCKETS})"
    return None


def bucket_keys(agg: Table) -> list[int]:
    """Every bucket key of a well-formed histogram, in ascending order."""
    if agg.get(_KIND) == b"hist":
        return [INT64_MIN, 0] + [1 << j for j in range(63)]
    lo, hi, step = agg.get(b"min"), agg.get(b"max"), agg.get(b"step")
    below = [INT64_MIN] if lo > INT64_MIN else []
    return below + list(range(lo, hi, step)) + [hi]


# -- updates -------------------------------------------------------------------

def hist(table: object, key: object, value: object, *, max_table: int) -> None:
    """``hist(t, k, v)``; a new aggregation table holds at most max_table entries."""
    _check_target("hist", table, value)
    _update_histogram("hist", table, key, value, hist_bucket(value), (), max_table)


def lhist(table: object, key: object, value: object, lo: object, hi: object, step: object, *,
          max_table: int) -> None:
    """``lhist(t, k, v, min, max, step)``."""
    _check_target("lhist", table, value)
    for name, bound in (("min", lo), ("max", hi), ("step", step)):
        if type(bound) is not int:
            raise RuntimeFault(f"lhist: {name} must be an integer, got {type_name(bound)}")
    error = lhist_bounds_error(lo, hi, step)
    if error:
        raise RuntimeFault(f"lhist: {error}")
    bounds = ((b"min", lo), (b"max", hi), (b"step", step))
    _update_histogram("lhist", table, key, value, lhist_bucket(value, lo, hi, step), bounds, max_table)


def stats(table: object, key: object, value: object, *, max_table: int) -> None:
    """``stats(t, k, v)``."""
    _check_target("stats", table, value)
    agg = _existing(table, key)
    if agg is None:
        fields = ((b"count", 1), (b"sum", value), (b"min", value), (b"max", value))
        table.set(key, _new_aggregation(max_table, b"stats", fields))
        return
    _check_kind("stats", agg)
    count, total, least, most = (agg.get(f) for f in FIELDS[b"stats"])
    if not all(type(x) is int for x in (count, total, least, most)):
        raise _not_an_aggregation("stats")
    agg.set(b"count", wrap(count + 1))
    agg.set(b"sum", wrap(total + value))
    agg.set(b"min", min(least, value))
    agg.set(b"max", max(most, value))


def _check_target(name: str, table: object, value: object) -> None:
    if type(table) is not Table:
        raise RuntimeFault(f"{name}: expected a table, got {type_name(table)}")
    if type(value) is not int:
        raise RuntimeFault(f"{name}: value must be an integer, got {type_name(value)}")


def _existing(table: Table, key: object) -> object:
    if key is None:
        raise RuntimeFault("table index is nil")
    return table.get(key)


def _update_histogram(name: str, table: Table, key: object, value: int, bucket: int,
                      bounds: tuple, max_table: int) -> None:
    agg = _existing(table, key)
    if agg is None:
        fields = (*bounds, (b"sum", value), (bucket, 1))
        table.set(key, _new_aggregation(max_table, name.encode(), fields))
        return
    _check_kind(name, agg)
    for field, bound in bounds:
        held = agg.get(field)
        if type(held) is not int or held != bound:
            raise RuntimeFault("lhist: existing aggregation has other bounds")
    total, count = agg.get(b"sum"), agg.get(bucket)
    if type(total) is not int or (count is not None and type(count) is not int):
        raise _not_an_aggregation(name)
    agg.set(bucket, wrap((count or 0) + 1))  # only a new bucket can overflow: first
    agg.set(b"sum", wrap(total + value))


def _new_aggregation(max_table: int, kind: bytes, fields) -> Table:
    agg = Table(max_table)
    agg.set(_KIND, kind)
    for field, value in fields:
        agg.set(field, value)
    return agg


def _check_kind(name: str, agg: object) -> None:
    if type(agg) is not Table or agg.get(_KIND) != name.encode():
        raise _not_an_aggregation(name)


def _not_an_aggregation(name: str) -> RuntimeFault:
    return RuntimeFault(f"{name}: existing value is not a {name} aggregation")


# -- print_agg -----------------------------------------------------------------

def format_agg(table: object, identities: Identities) -> bytes:
    """The bytes ``print_agg(table)`` writes."""
    return agg_item(table, identities).text


def agg_item(table: object, identities: Identities) -> Item:
    """What ``print_agg(table)`` writes, with its entries (output.AggEntry)."""
    if type(table) is not Table:
        raise RuntimeFault(f"print_agg: expected a table, got {type_name(table)}")
    entries = list(table.items())
    # Validate every value before printing anything or numbering any key.
    for _, agg in entries:
        if not is_well_formed(agg):
            raise RuntimeFault("print_agg: values must be aggregations (hist, lhist or stats)")
    shown = tuple(_agg_entry(value_text(key, identities), agg) for key, agg in entries)
    return Item("print_agg", b"".join(_entry_text(entry) for entry in shown), entries=shown)


def is_well_formed(agg: object) -> bool:
    """Whether agg is an aggregation print_agg (and an exporter) can read."""
    if type(agg) is not Table:
        return False
    kind = agg.get(_KIND)
    fields = FIELDS.get(kind) if type(kind) is bytes else None
    if fields is None or not all(type(agg.get(f)) is int for f in fields):
        return False
    if kind == b"stats":
        return agg.get(b"count") >= 1 and len(agg) == 1 + len(fields)
    if kind == b"lhist" and lhist_bounds_error(agg.get(b"min"), agg.get(b"max"), agg.get(b"step")):
        return False
    for key, count in agg.items():
        if type(key) is bytes and (key == _KIND or key in fields):
            continue
        if type(key) is not int or not _is_bucket(agg, kind, key):
            return False
        if type(count) is not int or count < 0:
            return False
    return True


def _is_bucket(agg: Table, kind: bytes, key: int) -> bool:
    if kind == b"hist":
        return key == INT64_MIN or key == 0 or (key > 0 and key & (key - 1) == 0)
    lo, hi, step = agg.get(b"min"), agg.get(b"max"), agg.get(b"step")
    if key < lo:
        return key == INT64_MIN
    return key == hi or (key < hi and (key - lo) % step == 0)


def stats_average(count: int, total: int) -> int:
    """A stats' average: total / count truncated toward zero."""
    return abs(total) // count * (-1 if total < 0 else 1)


def _agg_entry(key_text: bytes, agg: Table) -> AggEntry:
    kind = agg.get(_KIND)
    if kind == b"stats":
        return AggEntry(key_text, "stats", stats=tuple(agg.get(f) for f in FIELDS[b"stats"]))
    return AggEntry(key_text, kind.decode(), buckets=_histogram_rows(agg, kind))


def _entry_text(entry: AggEntry) -> bytes:
    if entry.stats is not None:
        count, total, least, most = entry.stats
        return entry.key + b": count %d, average %d, total %d, min %d, max %d\n" % (
            count, stats_average(count, total), total, least, most)
    return entry.key + b":\n" + b"".join(_row(*bucket) for bucket in entry.buckets) + b"\n"


def _histogram_rows(agg: Table, kind: bytes) -> tuple:
    """The buckets print_agg shows: (label, count, bar length), ascending."""
    counts = {k: c for k, c in agg.items() if type(k) is int}
    if not counts:
        return ()
    keys = bucket_keys(agg)
    shown = keys[keys.index(min(counts)):keys.index(max(counts)) + 1]
    most = max(counts.values())
    label = _hist_label if kind == b"hist" else _lhist_labeller(agg)
    return tuple((label(keys, k).encode(), counts.get(k, 0), _bar(counts.get(k, 0), most)) for k in shown)


def _bar(count: int, most: int) -> int:
    return count * BAR_WIDTH // most if most else 0


def _row(label: bytes, count: int, bar: int) -> bytes:
    return (label.ljust(LABEL_WIDTH) + b"%*d" % (COUNT_WIDTH, count) + b" |"
            + (b"@" * bar).ljust(BAR_WIDTH) + b"|\n")


def _hist_label(keys: list[int], key: int) -> str:
    if key == INT64_MIN:
        return "(..., 0)"
    if key <= 1:
        return f"[{key}]"
    power = key.bit_length() - 1
    return f"[{_power_text(power)}, {_power_text(power + 1)})"


def _power_text(power: int) -> str:
    return f"{1 << power % 10}{_POWER_SUFFIXES[power // 10]}"


def _lhist_labeller(agg: Table):
    lo, hi, step = agg.get(b"min"), agg.get(b"max"), agg.get(b"step")

    def number(n: int) -> str:
        for unit, suffix in ((1 << 20, "M"), (1 << 10, "K")):
            if n and step % unit == 0 and n % unit == 0:
                return f"{n // unit}{suffix}"
        return str(n)

    def label(keys: list[int], key: int) -> str:
        if key < lo:
            return f"(..., {number(lo)})"
        if key == hi:
            return f"[{number(hi)}, ...)"
        return f"[{number(key)}, {number(key + step)})"
    return label
