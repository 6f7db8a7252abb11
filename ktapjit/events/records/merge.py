"""Putting records from several CPUs into one deterministic order.

Two orders exist, one per source:

**Live rings** (``StreamMerger``, ``merge_streams``): records are ordered by
``(time, cpu, position)``, where position counts records of that CPU's ring in
the order the ring held them. A ring is *nearly* time ordered, but not quite:
the kernel takes a record's timestamp before reserving ring space, so an
interrupt that fires in between writes a later-stamped record first. Hence a
real sort, not a k-way merge of sorted runs. A record without a time (no
sample_id_all) takes the time of the record before it in its ring, so it stays
next to its neighbours.

Live data arrives in drain rounds. ``StreamMerger.end_round()`` releases what
is safe, with perf's rule (``util/ordered-events.c``, OE_FLUSH__ROUND): after
round k, everything up to the highest timestamp seen by the end of round k-1.
A record stamped before that has had a whole drain pass to show up.

**perf.data files** (``order_perf_rounds``): exactly what ``perf script`` and
``perf report`` do, so we print events in the same order as they do. Records
are queued and sorted by time, ties in file order; at each FINISHED_ROUND the
queue is flushed up to the highest timestamp seen before the previous
FINISHED_ROUND; at the end of the file, everything. Records with no timestamp
(time None, 0 or ~0: synthesized COMM/MMAP, header records) are delivered at
once, in file order, like perf. FINISHED_ROUND records themselves are dropped.

A file that ktapjit records holds its records already in live merged order, so
replaying it with ``order_perf_rounds`` gives back the live order.
"""

from __future__ import annotations

import heapq
from typing import Iterable, Iterator, Mapping

from ktapjit.events.records.decode import FinishedRound, Record

_NO_TIME = (None, 0, (1 << 64) - 1)


class StreamMerger:
    """Incremental merge of per-CPU record streams in (time, cpu, position) order.

    ``push(cpu, records)`` after each drain, ``end_round()`` once all rings of a
    drain pass were pushed (returns the records now safe to process), and
    ``finish()`` at the end (returns everything left).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Record]] = []
        self._pos: dict[int, int] = {}
        self._last_time: dict[int, int] = {}
        self._max_time = 0
        self._next_flush: int | None = None

    def push(self, cpu: int, records: Iterable[Record]) -> None:
        pos = self._pos.get(cpu, 0)
        last = self._last_time.get(cpu, 0)
        heap = self._heap
        for rec in records:
            t = rec.time
            if t is None:
                t = last
            else:
                last = t
                if t > self._max_time:
                    self._max_time = t
            heapq.heappush(heap, (t, cpu, pos, rec))
            pos += 1
        self._pos[cpu] = pos
        self._last_time[cpu] = last

    def pop_until(self, limit: int) -> list[Record]:
        """Remove and return, in order, every queued record with time <= limit."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= limit:
            out.append(heapq.heappop(heap)[3])
        return out

    def end_round(self) -> list[Record]:
        out = self.pop_until(self._next_flush) if self._next_flush is not None else []
        self._next_flush = self._max_time
        return out

    def finish(self) -> list[Record]:
        heap = self._heap
        out = [heapq.heappop(heap)[3] for _ in range(len(heap))]
        self._next_flush = None
        return out

    def discard(self) -> list[Record]:
        """Remove and return every queued record, in no particular order
        (a stopped trace counts what it will not run)."""
        out = [entry[3] for entry in self._heap]
        self._heap = []
        self._next_flush = None
        return out

    def __len__(self) -> int:
        return len(self._heap)


def merge_streams(streams: Mapping[int, Iterable[Record]]
                  | Iterable[tuple[int, Iterable[Record]]]) -> list[Record]:
    """Merge complete per-CPU streams ({cpu: records} or [(cpu, records), ...];
    a CPU may appear several times, its parts in order) into one list."""
    merger = StreamMerger()
    items = streams.items() if isinstance(streams, Mapping) else streams
    for cpu, records in items:
        merger.push(cpu, records)
    return merger.finish()


def order_perf_rounds(records: Iterable[Record]) -> Iterator[Record]:
    """Records of a perf.data file (in file order) in the order perf delivers them."""
    heap: list[tuple[int, int, Record]] = []
    seq = 0
    max_time = 0
    next_flush = 0  # perf starts with next_flush 0: the first round flushes nothing
    for rec in records:
        if isinstance(rec, FinishedRound):
            while heap and heap[0][0] <= next_flush:
                yield heapq.heappop(heap)[2]
            next_flush = max_time
            continue
        t = rec.time
        if t in _NO_TIME:
            yield rec
            continue
        heapq.heappush(heap, (t, seq, rec))
        seq += 1
        if t > max_time:
            max_time = t
    while heap:
        yield heapq.heappop(heap)[2]
