"""Per-event handler latency and throughput of an engine, in-process.

A workload's recording is bound the way `ktapjit run --replay` binds it
(``tracing.replay.open_replay``: the recording's own formats, its sample
ids), loaded into memory as chunks of whole records, and fed to a fresh run
of the engine chunk by chunk. Only the feeding is timed, per chunk: from
the chunk's bytes to every probe of every sample in it having run. Compile,
load, the top level and trace_end are outside the clock.

Two ways to feed a chunk:

- ``records``: decode it (``events.records.decode.iter_records``) and hand the
  records to the reference stream driver (``tracing.dispatch.StreamDriver``),
  which calls ``run_probe`` per matching sample. Every engine supports this;
  it is how `ktapjit run` drives the interpreter.
- ``chunk``: when the engine's run has ``feed_chunk(data) -> bool`` (the
  native batch entry DESIGN.md describes: decode, dispatch, filter and body
  in machine code; False once the run stopped) and, optionally,
  ``stream_time() -> int`` (the stream time trace_end runs at), the raw
  bytes go straight in. The harness uses it only when it exists, and says
  which path it measured.

Latency is reported as ns per event within each chunk, p50 and p99 over
chunks; throughput as all events over all timed feeding. A run too short to
time well is repeated (each repetition a fresh run) until ``min_seconds``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from bench.stats import percentile
from bench.streams import Chunk
from bench.workloads import Workload


@dataclass
class Binding:
    """What a recording binds a module to: the plan and the stream's start."""

    plan: object  # tracing.plan.StreamPlan
    start_ns: int
    host: object  # run_api.Host of the recording
    attr_table: object  # events.records.decode.AttrTable


def bind_recording(path: Path, module) -> Binding:
    """Bind `module`'s probes to the recording exactly as --replay does."""
    from ktapjit.events.records.perfdata import read_perf_data
    from ktapjit.tracing.session import replay_session

    session = replay_session(str(path), module)
    with read_perf_data(str(path)) as data:
        table = data.attr_table()
    return Binding(session.plan, session.start_ns, session.host, table)


@dataclass
class HandlerTiming:
    """One engine over one workload's stream."""

    workload: str
    engine: str
    path: str  # "records" or "chunk": how chunks were fed
    events: int  # samples fed per repetition
    chunks: int
    reps: int
    chunk_ns_per_event: list = field(default_factory=list)  # every timed chunk, all repetitions
    total_ns: int = 0
    output: bytes = b""  # of the last repetition
    status: int = 0

    @property
    def p50(self) -> float:
        return percentile(self.chunk_ns_per_event, 50)

    @property
    def p99(self) -> float:
        return percentile(self.chunk_ns_per_event, 99)

    @property
    def events_per_s(self) -> float:
        return self.events * self.reps / (self.total_ns / 1e9) if self.total_ns else 0.0

    @property
    def first_line(self) -> str:
        return self.output.split(b"\n", 1)[0].decode("utf-8", "replace")

    def as_json(self) -> dict:
        return {
            "workload": self.workload, "engine": self.engine, "path": self.path,
            "events": self.events, "chunks": self.chunks, "reps": self.reps,
            "ns_per_event_p50": self.p50, "ns_per_event_p99": self.p99,
            "ns_per_event_mean": self.total_ns / (self.events * self.reps) if self.events else None,
            "events_per_s": self.events_per_s, "status": self.status,
            "output_bytes": len(self.output), "output_sha256": hashlib.sha256(self.output).hexdigest(),
            "first_line": self.first_line,
        }


def _record_feeder(run, module, binding: Binding) -> tuple[Callable[[Chunk], object], Callable[[], int]]:
    """Decode + the reference stream driver; returns (feed, stream end time)."""
    from ktapjit.events.records.decode import iter_records
    from ktapjit.run_api import Limits
    from ktapjit.tracing.dispatch import StreamDriver

    driver = StreamDriver(run, module, binding.plan, Limits().max_table, binding.start_ns)
    table = binding.attr_table

    def feed(chunk: Chunk):
        return driver.feed(iter_records(chunk.data, table, base=chunk.offset))

    return feed, lambda: driver.last_time


def _chunk_feeder(run, module, binding: Binding):
    """The engine's native batch entry (the JIT's feed), when its run feeds
    natively and the script's events can take it (else the per-event path runs)."""
    if not run.feeds_natively:
        return None
    from ktapjit.tracing.feed_plan import build_feed_plan

    plan = build_feed_plan(binding.plan, binding.attr_table, binding.start_ns, module)
    feed = run.native_feed(plan) if plan is not None else None
    if feed is None:
        return None
    return (lambda chunk: run.feed_chunk(chunk.data)), (lambda: feed.last_time)


@dataclass
class StartedRun:
    """An engine run whose top level ran, ready to be fed."""

    run: object
    feed: Callable[[Chunk], object]  # -> False once the run stopped taking events
    end_time: Callable[[], Optional[int]]  # stream time for trace_end
    path: str  # "records" or "chunk"
    out: list  # output pieces, in order
    going: bool  # False when the top level ended tracing (exit() or an error)


def start_run(engine, module, binding: Binding, script: str) -> StartedRun:
    """Load (compile, for the JIT) and run the top level: all outside the clock."""
    from ktapjit.run_api import Limits, RunConfig

    out: list[bytes] = []
    config = RunConfig(limits=Limits(), script_args=(script,), start_time_ns=binding.start_ns, host=binding.host)
    run = engine.load(module, config, out.append)
    native = _chunk_feeder(run, module, binding)
    path, (feed, end_time) = ("chunk", native) if native else ("records", _record_feeder(run, module, binding))
    return StartedRun(run, feed, end_time, path, out, run.start())


def feed_chunks(started: StartedRun, chunks: list[Chunk], timings: list) -> int:
    """Feed every chunk, timing each; appends (ns, samples) per chunk to
    `timings` and returns the total ns."""
    clock = time.perf_counter_ns
    feed = started.feed
    total = 0
    if not started.going:
        return 0
    for chunk in chunks:
        t0 = clock()
        going = feed(chunk)
        elapsed = clock() - t0
        total += elapsed
        timings.append((elapsed, chunk.samples))
        if going is False:
            started.going = False
            break  # exit() or a runtime error: the engine stopped taking events
    return total


def finish_run(started: StartedRun) -> tuple[bytes, int]:
    """trace_end, outside the clock: (all output, exit status)."""
    result = started.run.finish(started.end_time())
    return b"".join(started.out), result.status


def run_once(engine, module, binding: Binding, chunks: list[Chunk], script: str,
             timings: list) -> tuple[str, bytes, int, int]:
    """One fresh run over every chunk; appends per-chunk (ns, samples) to
    `timings`. Returns (path, output, status, timed ns)."""
    started = start_run(engine, module, binding, script)
    total = feed_chunks(started, chunks, timings)
    output, status = finish_run(started)
    return started.path, output, status, total


def measure(engine_name: str, engine_factory, w: Workload, module, binding: Binding,
            chunks: list[Chunk], min_seconds: float, max_reps: int) -> HandlerTiming:
    """Repeat fresh runs of the workload until `min_seconds` of feeding (or `max_reps`)."""
    events = sum(c.samples for c in chunks)
    timing = HandlerTiming(w.name, engine_name, "", events, len(chunks), 0)
    per_chunk: list = []
    while timing.reps < max_reps and (timing.reps == 0 or timing.total_ns < min_seconds * 1e9):
        path, output, status, total = run_once(engine_factory(), module, binding, chunks,
                                               w.script_label, per_chunk)
        timing.path, timing.output, timing.status = path, output, status
        timing.total_ns += total
        timing.reps += 1
    timing.chunk_ns_per_event = [ns / n for ns, n in per_chunk if n]
    return timing


def decode_floor(binding: Binding, chunks: list[Chunk]) -> Optional[float]:
    """ns per event to decode the chunks into record objects, nothing else:
    the part of the `records` path that is Python decoding, not the engine."""
    from ktapjit.events.records.decode import iter_records

    events = sum(c.samples for c in chunks)
    if not events:
        return None
    t0 = time.perf_counter_ns()
    for chunk in chunks:
        for _ in iter_records(chunk.data, binding.attr_table, base=chunk.offset):
            pass
    return (time.perf_counter_ns() - t0) / events
