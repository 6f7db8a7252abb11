"""Driving an engine run with an ordered record stream.

This is the reference meaning of a stream (LANGUAGE.md, Tracing):
- records arrive in timestamp order; COMM and FORK records keep each
  thread's name current, so `execname` is the comm at the sample's time;
- `tick-N` timers fire at start + k*N, before any record with the same
  timestamp, and never after the last record;
- a sample runs every probe bound to its sample id, in declaration order,
  each after its filter;
- a `profile-N` sample (its cpu-clock event) runs that timer's body with
  the sample as its event; MMAP/MMAP2, FORK, exec COMM and EXIT records keep
  the mappings its ustack() is symbolized with (tracing/stacks.py), as for
  the callchains of probes whose bodies call stack()/ustack();
- once a probe or timer calls exit() or faults, nothing more runs.

NativeDriver gives the same stream to an engine's native feed (the JIT's
native event path, run_api.NativeFeed), in batches of record offsets into
the stream's bytes; the feed applies the rules above itself, without Python
per record. LiveDriver chooses, once the rings are open, how a live
session's drain passes run: NativeRounds pushes their bytes to the feed,
which merges them itself; PythonRounds merges decoded records for a
StreamDriver.
"""

from __future__ import annotations

import heapq
from array import array
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Protocol

from ktapjit.events.records.decode import (
    Comm, DecodeError, Exit, Fork, Lost, LostSamples, Mmap, Mmap2, Sample, has_time, iter_records,
)
from ktapjit.events.records.merge import StreamMerger
from ktapjit.ir.func import Module
from ktapjit.run_api import NativeFeed, Run
from ktapjit.semantics.limits import DEFAULT_MAX_STRING
from ktapjit.tracing.companion import CompanionPairing
from ktapjit.tracing.plan import StreamPlan
from ktapjit.tracing.sample_event import ProfileEvent, SampleEvent
from ktapjit.tracing.stacks import Stacks, needs_stacks

if TYPE_CHECKING:
    from ktapjit.events.probes.symbolize import KernelSymbolizer


# A timer fires at most this many times to catch up with one record's time.
MAX_TIMER_CATCH_UP = 10_000_000


class StreamDriver:
    def __init__(self, run, module: Module, plan: StreamPlan, max_table: int, start_ns: int,
                 kernel_symbols: Optional[KernelSymbolizer] = None, max_string: int = DEFAULT_MAX_STRING):
        self.run = run
        self.plan = plan
        self.max_table = max_table
        self.max_string = max_string
        self.pairing: Optional[CompanionPairing] = None  # made once the plan has companion routes
        # perf names the idle task "swapper" without any COMM record for it.
        self.comms: dict[int, bytes] = {0: b"swapper"}
        self.lost = 0
        # `--engine compare` counts events: each sample bound to a probe, once,
        # whatever its filters say, as a native feed counts them (compare.py).
        self.count_sample = getattr(run, "count_sample", lambda: None)
        self.unprocessed = 0  # events read live but never run: a stop's deadline cut them (tracing/live.py)
        self.last_time = start_ns
        self.active = True
        # (due time, timer index, period): ties fire in declaration order.
        self.timers = [(start_ns + t.period_ns, i, t.period_ns) for i, t in enumerate(module.timers) if t.kind == "tick"]
        heapq.heapify(self.timers)
        # Symbolizers for stack()/ustack(), only when the script samples or a
        # probe body asks for stacks.
        self.stacks = Stacks(kernel_symbols) if needs_stacks(module, plan) else None

    def feed(self, records: Iterable) -> bool:
        """Run the records; False once tracing has stopped (exit() or an error)."""
        for record in records:
            if not self.active:
                return False
            time = getattr(record, "time", None)
            if has_time(time):  # synthesized records carry time 0: they do not move the clock
                self.advance(time, record)
                if not self.active:
                    return False
            if isinstance(record, Sample):
                self.sample(record)
            elif isinstance(record, Comm):
                self.comms[record.tid] = record.comm
                if self.stacks is not None:
                    self.stacks.exec(record)
            elif isinstance(record, Fork):
                if record.ptid in self.comms:
                    self.comms[record.tid] = self.comms[record.ptid]
                if self.stacks is not None:
                    self.stacks.fork(record)
            elif isinstance(record, (Lost, LostSamples)):
                self.lost += record.lost
            elif self.stacks is not None:
                if isinstance(record, (Mmap, Mmap2)):
                    self.stacks.mmap(record)
                elif isinstance(record, Exit):
                    self.stacks.exit(record)
        return self.active

    def advance(self, time: int, record=None) -> None:
        """Move stream time to `time`, firing every timer due at or before it."""
        timers = self.timers
        if timers and time - timers[0][0] > MAX_TIMER_CATCH_UP * timers[0][2]:
            # Only a corrupt timestamp jumps this far; firing every tick would hang.
            raise DecodeError(f"timestamp {time} jumps {time - self.last_time} ns ahead of the stream",
                              getattr(record, "offset", 0))
        while self.active and timers and timers[0][0] <= time:
            due, index, period = heapq.heappop(timers)
            heapq.heappush(timers, (due + period, index, period))
            self.active = self.run.run_timer(index, due)
        if time > self.last_time:
            self.last_time = time

    def sample(self, sample: Sample) -> None:
        companion = None
        if self.plan.companions is not None:
            if self.pairing is None:
                self.pairing = CompanionPairing(self.plan.companions, self.max_string)
            if self.pairing.keep(sample):
                return
            companion = self.pairing.take(sample)
        bound_events = self.plan.by_id.get(sample.id)
        if not bound_events:
            return
        self.count_sample()
        comm = self.comms.get(sample.tid)
        if comm is None:
            comm = b":%d" % (sample.tid or 0)  # as perf script names an unknown thread
        filter_comm = _kernel_comm(sample, comm)
        time = sample.time if has_time(sample.time) else self.last_time
        for bound in bound_events:
            if bound.is_profile:
                event = ProfileEvent(sample, bound, comm, time, self.stacks)
                if not self.run.run_profile(bound.timer, event):
                    self.active = False
                    return
                continue
            if bound.matches is not None and not bound.matches(sample.raw or b"", sample.cpu, filter_comm):
                continue
            event = SampleEvent(sample, bound, comm, self.max_table, time, self.stacks, companion)
            if not self.run.run_probe(bound.probe, event):
                self.active = False
                return


def _kernel_comm(sample: Sample, comm: bytes) -> bytes:
    """The task name a kernel filter's `comm` sees: perf calls the idle task
    `swapper`, but the kernel names each CPU's idle task `swapper/N`."""
    if sample.tid == 0:
        return b"swapper/%d" % (sample.cpu or 0)
    return comm


class NativeDriver:
    """Drives a run's native feed (Run.native_feed) with a session's records:
    the same records, in the same order, as StreamDriver.feed would see, but
    handed over as batches of offsets into `data`, the bytes they were
    decoded from (`base`: the offset of data[0] in the records' numbering).

    A decode error behaves as StreamDriver's: it surfaces when the record
    after the last one run is fetched, so it is raised unless tracing
    stopped on an earlier record."""

    BATCH = 4096
    unprocessed = 0  # a replay runs every record (StreamDriver's count is for live streams)

    def __init__(self, run: Run, feed: NativeFeed, data, base: int, progress=None):
        self.run = run
        self.native = feed
        self.buffer = data
        self.base = base
        # Told per batch when the order comes from native code (records from
        # the Python decoder report through progress.chunks themselves).
        self.progress = progress

    @property
    def last_time(self) -> int:
        return self.native.last_time

    @property
    def lost(self) -> int:
        return self.native.lost

    def feed(self, records: Iterable) -> bool:
        """Run the records; False once tracing has stopped (exit() or an error).
        When the feed can order the whole buffer itself (every record decodes),
        `records` is not even read: the offsets come from native code."""
        self.data = self.native.pin(self.buffer)  # the bytes stay where they are, no copy
        try:
            order = self.native.order(self.data)
            if order is not None:
                return self._feed_ordered(order)
            return self._feed_records(records)
        finally:
            self.data.release()

    def _feed_records(self, records: Iterable) -> bool:
        """The records the Python decoder gives, in batches of offsets."""
        it: Iterator = iter(records)
        base = self.base
        while True:
            batch = array("Q")
            try:
                for record in it:
                    batch.append(record.offset - base)
                    if len(batch) >= self.BATCH:
                        break
            except BaseException:  # whatever fetching raises, StreamDriver would raise it here too
                if self._run(batch) or self.native.stopped_at == len(batch) - 1:
                    raise
                return False
            if not batch:
                return self.run.tracing
            if not self._run(batch):
                if self.native.stopped_at == len(batch) - 1:
                    next(it, None)  # StreamDriver fetches the next record before it stops
                return False

    def _feed_ordered(self, order: array) -> bool:
        step = 4 * self.BATCH
        progress, done = self.progress, 0
        for start in range(0, len(order), step):
            batch = order[start:start + step]
            if not self._run(batch):
                return False
            if progress is not None:
                done = max(done, batch[-1])
                progress.update(done, start + len(batch))
        return self.run.tracing

    def _run(self, batch: array) -> bool:
        if not batch:
            return self.run.tracing
        going = self.run.feed_chunk(self.data, batch, self.base)
        problem = self.native.stream_error()
        if problem is not None:
            raise DecodeError(*problem)
        return going


class LiveDriver:
    """A live session's driver, whatever runs its records. It knows no events
    until the rings are open; then open_rounds chooses, once, how each drain
    pass runs: through the run's native feed for these events, when `offer`
    gives one (NativeRounds), else decoded, merged and handed to `python`
    record by record (PythonRounds). tracing/live.py drives what it returns."""

    def __init__(self, python, run=None, offer: Optional[Callable] = None):
        self.python = python  # a StreamDriver (or record.RecordingDriver)
        self.run = run
        self.offer = offer  # (StreamPlan, attrs, start_ns) -> Optional[NativeFeed]
        self.rounds: Optional[LiveRounds] = None
        self._lost = 0
        self.unprocessed = 0

    def open_rounds(self, plan: StreamPlan, attrs, start_ns: int) -> "LiveRounds":
        feed = self.offer(plan, attrs, start_ns) if self.offer is not None else None
        if feed is None:
            self.rounds = PythonRounds(self.python, attrs)
        else:
            self.rounds = NativeRounds(self.run, feed, attrs)
        return self.rounds

    @property
    def last_time(self) -> int:
        return (self.rounds or self.python).last_time

    @property
    def lost(self) -> int:
        return max(self._lost, (self.rounds or self.python).lost)

    @lost.setter
    def lost(self, value: int) -> None:
        self._lost = value  # the session's own count (the rings'), when it knows more


class LiveRounds(Protocol):
    """How a live session's drain passes run: each pass is pushed, then its
    round ends (perf's rule releases what is safe to run); `go_on()` is asked
    between records or native steps, so a stop's deadline can cut a round."""

    last_time: int
    lost: int

    def head(self, data: bytes) -> bool:
        """Run records already in stream order (the synthesized head)."""

    def push(self, chunks: list[tuple[int, bytes]]) -> None:
        """Queue one drain pass: (cpu, bytes) per ring."""

    def end_round(self, go_on: Callable[[], bool]) -> bool:
        """Run what the round releases; False once tracing has stopped."""

    def finish(self, go_on: Callable[[], bool]) -> bool:
        """Run everything still queued; False once tracing has stopped."""

    def abandon(self) -> int:
        """Drop what is queued and not run; how many of those were samples."""


class PythonRounds:
    """The rounds of a Python driver (the interpreter, `ktapjit record`):
    each pass is decoded and merged here, and the records are handed over
    one at a time, so a stop's deadline can cut a round between two."""

    def __init__(self, driver, attrs):
        self.driver = driver
        self.attrs = attrs
        self.merger = StreamMerger()
        self.left: list = []  # the part of a round the deadline cut off

    @property
    def last_time(self) -> int:
        return self.driver.last_time

    @property
    def lost(self) -> int:
        return self.driver.lost

    def head(self, data: bytes) -> bool:
        return self.driver.feed(iter_records(data, self.attrs))

    def push(self, chunks) -> None:
        for cpu, data in chunks:
            self.merger.push(cpu, iter_records(data, self.attrs))

    def end_round(self, go_on) -> bool:
        return self.driver.feed(self._hand_over(self.merger.end_round(), go_on))

    def finish(self, go_on) -> bool:
        return self.driver.feed(self._hand_over(self.merger.finish(), go_on))

    def _hand_over(self, records: list, go_on):
        for i, record in enumerate(records):
            if not go_on():
                self.left = records[i:]
                return
            yield record

    def abandon(self) -> int:
        left = self.left + self.merger.discard()
        self.left = []
        return sum(isinstance(r, Sample) for r in left)


class NativeRounds:
    """The rounds of a run's native feed: drained bytes are pushed per CPU
    and each round releases what perf's rule allows, as
    events/merge.StreamMerger does, all in native code.

    A round is run in native steps of at most BUDGET records, so that between
    them a signal's handler runs and the caller can cut a round short."""

    BUDGET = 16384

    def __init__(self, run, feed: NativeFeed, attrs):
        self.run = run
        self.feed = feed
        self.attrs = attrs

    @property
    def last_time(self) -> int:
        return self.feed.last_time

    @property
    def lost(self) -> int:
        return self.feed.lost

    def head(self, data: bytes) -> bool:
        going = self.run.feed_chunk(data)
        self._raise_stream_error()
        return going

    def push(self, chunks) -> None:
        for cpu, data in chunks:
            if not self.feed.push(cpu, data):
                for _record in iter_records(data, self.attrs):  # raises the decoder's own error
                    pass
                raise DecodeError("a record the native event path cannot read", 0)

    def end_round(self, go_on) -> bool:
        return self._release(False, go_on)

    def finish(self, go_on) -> bool:
        return self._release(True, go_on)

    def _release(self, final: bool, go_on) -> bool:
        while True:
            going = self.run.feed_release(final, self.BUDGET)
            self._raise_stream_error()
            if not (going and self.feed.more and go_on()):
                return going

    def abandon(self) -> int:
        return self.feed.discard()

    def _raise_stream_error(self) -> None:
        problem = self.feed.stream_error()
        if problem is not None:
            raise DecodeError(*problem)
