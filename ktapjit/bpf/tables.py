"""Script tables and globals in BPF maps, seen from user space: filling a map
with what the top level left in the cell before the events, and reading it
back as the interpreter would hold it (docs/bpf.md, "Lowering").

A per-CPU map holds one partial value per CPU. The partials combine exactly
by the cell's update family: `+=` adds them (int64, wrapping), `max`/`min`
keep the greatest/least, `= CONST` is the constant if any CPU stored it.
Keys come back in first-insert order: each key's least stamp over the CPUs
that stored into it (time, then CPU, then that CPU's sequence: the
interpreter's event order)."""

from __future__ import annotations

from typing import Iterable, Optional

from ktapjit.bpf.kernel_plan import MapSpec
from ktapjit.bpf.layout import AggSlot, Stamp, decode_agg
from ktapjit.bpf.objects import Map, possible_cpus
from ktapjit.semantics.intmath import wrap
from ktapjit.semantics.values import Table

SCALAR_KEY = b"\0\0\0\0"


def prefill(spec: MapSpec, target: Map, items: Iterable[tuple[object, object]]) -> None:
    """Write the cell's value before the events (`items`: the (key, value)
    pairs in insertion order; for a global, one pair with key None).

    The kernel code reads and updates its own CPU's partial, so each CPU's
    slot must hold something the update can start from: for `+=` the value
    itself on CPU 0 and 0 elsewhere (0 of the same type: a nil or a string
    stays so on every CPU, and fails there as the interpreter would), for
    max, min and constants the value on every CPU (they are idempotent).
    Stamps (time 0) put these keys before every key an event inserts.
    Keys longer than the map's string slot are left out: kernel code never
    builds them, and user space keeps the cell's own copy (the run merges
    the map's pairs into it)."""
    for seq, (key, value) in enumerate(items, start=1):
        stamp = Stamp(0, 0, seq)
        if not spec.scalar and not spec.key.fits(key):
            continue  # a key no kernel code can build (a longer string): never looked up there
        raw_key = SCALAR_KEY if spec.scalar else spec.key.encode(key)
        if not spec.percpu:
            target.update(raw_key, spec.value.encode(value, stamp))
            continue
        first = spec.value.encode(value, stamp)
        rest = first
        if spec.family == ("+=",) and type(value) is int:
            rest = spec.value.encode(0, None)
        target.update(raw_key, [first] + [rest] * (possible_cpus() - 1))


def read_back(spec: MapSpec, source: Map) -> list[tuple[object, object]]:
    """The cell's (key, value) pairs in insertion order; a global gives one
    pair with key None. Keys whose value combines to nil are absent, as in
    the interpreter's tables."""
    return [(key, value) for _stamp, key, value in read_stamped(spec, source)]


def read_stamped(spec: MapSpec, source: Map) -> list[tuple[Stamp, object, object]]:
    """(first-insert stamp, key, value) for each key, in insertion order."""
    found = []
    for raw_key, raw in source.items():
        slots = raw if isinstance(raw, list) else [raw]
        if spec.value.aggregate:
            merged = merge_aggregation([decode_agg(slot) for slot in slots], spec.max_entries)
            if merged is not None:
                found.append((merged[0], spec.key.decode(raw_key), merged[1]))
            continue
        decoded = [spec.value.decode(slot) for slot in slots]
        value = combine(spec.family, [v for v, _stamp in decoded])
        stamps = [stamp for _v, stamp in decoded if stamp is not None]
        if value is None:
            continue
        key = None if spec.scalar else spec.key.decode(raw_key)
        found.append((min(stamps) if stamps else Stamp(0, 0, 0), key, value))
    found.sort(key=lambda item: item[0])
    return found


def combine(family: tuple, partials: list[object]) -> Optional[object]:
    """One value from the per-CPU partials of a cell (nil partials are CPUs
    that never stored into it)."""
    present = [p for p in partials if p is not None]
    if not present:
        return None
    kind = family[0]
    if kind == "+=" and all(type(p) is int for p in present):
        return wrap(sum(present))
    if kind == "max" and all(type(p) is int for p in present):
        return max(present)
    if kind == "min" and all(type(p) is int for p in present):
        return min(present)
    if kind == "const":
        return family[1] if any(p == family[1] and type(p) is type(family[1]) for p in present) else present[0]
    return present[0]  # one CPU's value: shared maps, or the one partial there is


def merge_aggregation(partials: list[Optional[AggSlot]], max_table: int) -> Optional[tuple[Stamp, Table]]:
    """The aggregation table the interpreter holds, from the CPUs' partials:
    its fields in the order a new aggregation stores them (semantics.agg),
    then its buckets in first-hit order; with the key's first-insert stamp.
    The partials of one key are of one kind: a CPU whose slot held another
    kind faulted instead of updating it."""
    present = [p for p in partials if p is not None]
    if not present:
        return None
    kind = present[0].kind
    present = [p for p in present if p.kind == kind]
    agg = Table(max_table)
    agg.set(b"kind", kind)
    if kind == b"stats":
        counted = [p for p in present if p.fields[0]]
        agg.set(b"count", wrap(sum(p.fields[0] for p in counted)))
        agg.set(b"sum", wrap(sum(p.fields[1] for p in counted)))
        agg.set(b"min", min(p.fields[2] for p in counted))
        agg.set(b"max", max(p.fields[3] for p in counted))
    else:
        if kind == b"lhist":
            for name, bound in zip((b"min", b"max", b"step"), present[0].fields[1:]):
                agg.set(name, bound)
        agg.set(b"sum", wrap(sum(p.fields[0] for p in present)))
        buckets: dict[int, tuple[int, Stamp]] = {}
        for partial in present:
            for key, (count, stamp) in partial.buckets.items():
                held = buckets.get(key)
                buckets[key] = (count, stamp) if held is None else (held[0] + count, min(held[1], stamp))
        for key, (count, _stamp) in sorted(buckets.items(), key=lambda item: item[1][1]):
            agg.set(key, wrap(count))
    stamps = [p.stamp for p in present if p.stamp is not None]
    return (min(stamps) if stamps else Stamp(0, 0, 0)), agg
