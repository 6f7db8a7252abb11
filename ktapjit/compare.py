"""`--engine compare`: the interpreter and the JIT over one event stream,
checked byte for byte.

Each engine runs as a *trial*: its stdout and its stderr (the script's
runtime errors) are captured, its exit status kept, and the time spent
inside its run steps (top level, probes, timers, trace_end) measured. The
CLI decides which stream each trial sees (the same file, or a live capture
and its recording, starting at the same time); this module times the runs
and judges the outcome. The session's own lines (the status line, events
lost) are about the stream, not the script: they are no part of a trial,
and the CLI shows the user the live trial's, once.

May import: stdlib, ktapjit.diag, ktapjit.run_api.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ktapjit.diag import counted


class TimedRun:
    """A Run (run_api.Run) whose event steps are timed and whose events are
    counted. An event is a sample of the stream bound to a probe or a
    `profile-N` timer, counted once however many probes it runs and whatever
    their filters decide: the per-event path counts them as it dispatches
    them (count_sample), a native feed (the JIT) as it reads them (its
    `samples`). A `tick-N` run is no event: the clock's, not the stream's;
    its time is in the total, as it is inside a native feed's chunks. A run
    that feeds natively keeps its feed: its chunks are timed. A run with
    probes in the kernel (the BPF engine's `kernel_probes` and
    `kernel_timers`) sees their samples only because the stream is
    recorded: those ran in the kernel, where they are not timed, and are
    counted apart (a sample with a probe in the kernel is a kernel event)."""

    def __init__(self, run):
        self.run = run
        self.samples = 0  # counted by the per-event path
        self.kernel_steps = 0  # of those, samples a kernel probe ran on
        self._sample_in_kernel = False
        self.event_s = 0.0
        self.feed = None

    @property
    def errors(self) -> list:
        return self.run.errors

    @property
    def tracing(self) -> bool:
        return self.run.tracing

    @property
    def feeds_natively(self) -> bool:
        return self.run.feeds_natively

    @property
    def events(self) -> int:
        """The events run in user space, and timed."""
        return self.samples - self.kernel_steps + (self.feed.samples if self.feed is not None else 0)

    def count_sample(self) -> None:
        self.samples += 1
        self._sample_in_kernel = False

    def attach_kernel(self, events) -> None:
        self.run.attach_kernel(events)

    def poll_kernel(self) -> bool:
        return self.run.poll_kernel()

    def gate_kernel(self, on: bool) -> None:
        self.run.gate_kernel(on)

    def holds_kernel_code(self) -> bool:
        return self.run.holds_kernel_code()

    def detach_kernel(self) -> None:
        self.run.detach_kernel()

    def native_feed(self, plan):
        self.feed = self.run.native_feed(plan)
        return self.feed

    def feed_chunk(self, *args, **kwargs) -> bool:
        return self._timed_call(self.run.feed_chunk, *args, **kwargs)

    def feed_release(self, *args, **kwargs) -> bool:
        return self._timed_call(self.run.feed_release, *args, **kwargs)

    def _timed_call(self, step, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            self.event_s += time.perf_counter() - t0

    def __getattr__(self, name):
        return getattr(self.run, name)  # errors, tracing, ...: the run's own

    def start(self) -> bool:
        return self.run.start()

    def run_probe(self, index, event) -> bool:
        if index in getattr(self.run, "kernel_probes", ()):
            self._in_kernel()
            return self.run.run_probe(index, event)
        return self._timed(self.run.run_probe, index, event)

    def run_profile(self, index, event) -> bool:
        if index in getattr(self.run, "kernel_timers", ()):
            self._in_kernel()
            return self.run.run_profile(index, event)
        return self._timed(self.run.run_profile, index, event)

    def _in_kernel(self) -> None:
        if not self._sample_in_kernel:
            self._sample_in_kernel = True
            self.kernel_steps += 1

    def run_timer(self, index, time_ns) -> bool:
        return self._timed(self.run.run_timer, index, time_ns)

    def finish(self, time_ns=None):
        return self.run.finish(time_ns)

    def _timed(self, step, a, b) -> bool:
        return self._timed_call(step, a, b)


@dataclass
class Trial:
    engine: str
    stdout: bytes = b""
    stderr: bytes = b""
    status: int = 0
    timed: list = field(default_factory=list)  # the TimedRun(s) of this trial

    @property
    def events(self) -> int:
        """The events this trial ran in user space, and timed."""
        return sum(t.events for t in self.timed)

    @property
    def kernel_events(self) -> int:
        return sum(t.kernel_steps for t in self.timed)

    @property
    def ns_per_event(self) -> float:
        n = self.events
        return sum(t.event_s for t in self.timed) * 1e9 / n if n else 0.0


def first_difference(a: bytes, b: bytes) -> tuple[int, bytes, bytes]:
    """The 1-based number of the first line where a and b differ, and both lines."""
    la, lb = a.split(b"\n"), b.split(b"\n")
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else b"<end of output>"
        y = lb[i] if i < len(lb) else b"<end of output>"
        if x != y:
            return i + 1, x, y
    return 0, b"", b""


def verdict(reference: Trial, candidate: Trial) -> tuple[bool, list[str]]:
    """Whether the candidate behaved exactly as the reference, and the report lines."""
    lines = []
    same = True
    for what, x, y in (("stdout", reference.stdout, candidate.stdout),
                       ("stderr", reference.stderr, candidate.stderr)):
        if x != y:
            same = False
            line, rx, cy = first_difference(x, y)
            lines.append(f"compare: {what} differs at line {line}:")
            lines.append(f"compare:   {reference.engine}: {_show(rx)}")
            lines.append(f"compare:   {candidate.engine}: {_show(cy)}")
    if reference.status != candidate.status:
        same = False
        lines.append(f"compare: exit status differs: {reference.engine} {reference.status}, "
                     f"{candidate.engine} {candidate.status}")
    if same:
        errors = candidate.stderr.count(b"\n")
        lines.insert(0, f"compare: identical output ({len(candidate.stdout)} bytes, "
                        f"{errors} stderr lines, status {candidate.status})")
    lines.append(_timing(reference, candidate))
    return same, lines


def _timing(reference: Trial, candidate: Trial) -> str:
    n, m, k = reference.events, candidate.events, candidate.kernel_events
    if not (n or m or k):
        return "compare: no events; nothing to time per event"
    if k:
        return _timing_with_kernel(reference, candidate)
    a, b = reference.ns_per_event, candidate.ns_per_event
    ratio = f" ({a / b:.1f}x)" if a > 0 and b > 0 else ""
    if n == m:
        counts = counted(n, "event")
    else:
        counts = f"{reference.engine} {counted(n, 'event')}, {candidate.engine} {counted(m, 'event')}"
    return (f"compare: {counts}; {reference.engine} {a:,.0f} ns/event, "
            f"{candidate.engine} {b:,.0f} ns/event{ratio}")


def _timing_with_kernel(reference: Trial, candidate: Trial) -> str:
    """The candidate ran some events in the kernel, untimed: no ratio, and
    its time per event is that of the events it ran in user space."""
    n, m, k = reference.events, candidate.events, candidate.kernel_events
    if n == m + k:
        counts = counted(n, "event")
    else:
        counts = f"{reference.engine} {counted(n, 'event')}, {candidate.engine} {counted(m + k, 'event')}"
    user = f"{candidate.ns_per_event:,.0f} ns/event over {m:,} in user space, " if m else ""
    return (f"compare: {counts}; {reference.engine} {reference.ns_per_event:,.0f} ns/event, "
            f"{candidate.engine} {user}{k:,} in the kernel (not timed)")


def _show(line: bytes) -> str:
    return repr(line)[2:-1] if line != b"<end of output>" else "<end of output>"
