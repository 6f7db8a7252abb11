"""Live tracing: perf rings on every CPU, drained in rounds, merged in time
order and fed to the engine; optionally recorded to perf.data as it goes.

A live run is a recording plus a replay: the stream starts with COMM records
for the tasks that exist (stamped with the start time), events carry
CLOCK_MONOTONIC timestamps, and what is recorded is exactly what the engine
saw, in rounds separated by FINISHED_ROUND, so `--replay` of the recording
reorders it the same way and prints the same output.
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ktapjit.events import perf_abi as abi
from ktapjit.events.decode import iter_records
from ktapjit.events.dynamic_probes import GROUP_PREFIX, DynamicProbeError, kprobes_available
from ktapjit.events.merge import StreamMerger
from ktapjit.events.perf_ring import PerfSession, software_event, synthesize_comms, synthesize_mmaps, tracepoint
from ktapjit.events.perfdata import PerfDataWriter, TracingData
from ktapjit.events.schema import EventFormat
from ktapjit.events.tracefs import EventsError, list_events, read_format
from ktapjit.frontend.eventdef import KprobeSpec
from ktapjit.ir.func import Module
from ktapjit.tracing.plan import BoundEvent, EventUniverse, StreamPlan, bind_tracepoints, check_timers

POLL_SECONDS = 0.1
HEARTBEAT_NS = 10_000_000
_FINISHED_ROUND = struct.pack("<IHH", abi.PERF_RECORD_FINISHED_ROUND, 0, 8)


class LiveUniverse(EventUniverse):
    """This kernel's tracepoints; uprobes, USDT markers and kprobes are created
    through `probes` (a DynamicProbes the session owns and later closes)."""

    def __init__(self, probes=None):
        self._events: Optional[list[tuple[str, str]]] = None
        self.probes = probes

    def tracepoints(self) -> list[tuple[str, str]]:
        if self._events is None:
            # Groups of dynamic events (ours, or another ktapjit run's) are
            # not tracepoints: `*:*` must not pick them up.
            self._events = [(s, e) for s, e in list_events() if not s.startswith(GROUP_PREFIX)]
        return self._events

    def format(self, system: str, event: str) -> EventFormat:
        return read_format(system, event)

    def dynamic(self, spec) -> list[tuple[str, str]]:
        if isinstance(spec, KprobeSpec):
            available = kprobes_available()
            if not available:
                raise DynamicProbeError(available.reason)
        if self.probes is None:
            raise DynamicProbeError(f"'{spec.text}': no DynamicProbes to create it with")
        return [event.pair for event in self.probes.add_spec(spec)]


@dataclass
class LiveOptions:
    pages: int
    pid: int = -1  # -p PID
    command: list[str] = field(default_factory=list)  # -- CMD ARGS
    record_path: Optional[str] = None
    heartbeat: bool = False  # add the clock event (scripts with tick-N timers)
    status: Callable[[str], None] = lambda text: None  # stderr notices (silenced by -q)
    warn: Callable[[str], None] = lambda text: print(f"ktapjit: {text}", file=sys.stderr)  # not silenced


@dataclass
class LiveOutcome:
    end_ns: int
    lost: int


def bind_live(module: Module, probes=None) -> list[BoundEvent]:
    """Bind before anything runs, so a bad event stops the script before its top level.
    Dynamic events are created through `probes` (a DynamicProbes)."""
    check_timers(module)
    return bind_tracepoints(module, LiveUniverse(probes))


class SignalGuard:
    """SIGINT/SIGTERM handling for a session that owns dynamic events, from
    before the first one is created until the last one is removed, so that no
    signal can end ktapjit between the two (SIGTERM's default action would).

    Inside `deferred()` (creating or removing events) a signal is only noted;
    elsewhere it raises KeyboardInterrupt, as Ctrl-C does by default, so the
    top-level statements stay interruptible and every cleanup path runs.
    While the trace runs, _StopFlag's handlers take over (and put these back).
    """

    def __init__(self):
        self.pending: Optional[int] = None
        self._depth = 0
        self._saved: dict[int, object] = {}

    def install(self) -> "SignalGuard":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self._depth:
            self.pending = signum
        else:
            raise KeyboardInterrupt

    def deferred(self):
        guard = self

        class _Deferred:
            def __enter__(self):
                guard._depth += 1

            def __exit__(self, *exc):
                guard._depth -= 1

        return _Deferred()

    def restore(self) -> None:
        saved, self._saved = self._saved, {}
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class _StopFlag:
    """SIGINT/SIGTERM end the trace (trace_end still runs); restored afterwards."""

    def __init__(self):
        self.stopped = False
        self._saved: dict[int, object] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._stop)
        return self

    def _stop(self, signum, frame):
        self.stopped = True

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


class _Child:
    """`-- CMD`: forked now, held before exec until the events are enabled."""

    def __init__(self, argv: list[str]):
        read_fd, self._go = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            try:
                os.close(self._go)
                # Only a released child runs: EOF means ktapjit gave up (or died).
                if os.read(read_fd, 1) == b"x":
                    os.execvp(argv[0], argv)
                os._exit(127)
            except OSError as exc:
                os.write(2, f"ktapjit: cannot run '{argv[0]}': {exc.strerror}\n".encode())
            os._exit(127)
        os.close(read_fd)
        self.status: Optional[int] = None

    def release(self) -> None:
        os.write(self._go, b"x")
        self._close_go()

    def _close_go(self) -> None:
        if self._go is not None:
            os.close(self._go)
            self._go = None

    def exited(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def stop(self) -> None:
        """On an early exit of ktapjit: don't leave the command behind."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass
        self._close_go()  # after the kill: a child still waiting must not run untraced
        if self.status is None:
            try:
                os.waitpid(self.pid, 0)
            except OSError:
                pass


def _perf_events(bound: list[BoundEvent]):
    """One perf event per distinct tracepoint, with the bound events it runs.

    Two perf events on one tracepoint would write each hit twice, in the
    kernel's order rather than the script's, and a replay (which binds by
    tracepoint name) would run each probe on both samples. So a hit is one
    sample running its probes in declaration order, live and replayed alike.

    The kernel gets the OR of the probes' filters (none if one probe has
    none); each probe's own filter is still applied by the dispatcher. The
    event records callchains when any of its probes calls stack()/ustack().
    """
    from ktapjit.frontend.filter import MAX_FILTER_TEXT

    groups: dict[tuple[str, str], list[BoundEvent]] = {}
    for b in bound:
        groups.setdefault((b.system, b.event), []).append(b)
    events = []
    for (system, event), members in groups.items():
        texts = list(dict.fromkeys(b.filter_text for b in members))
        if None in texts:
            kernel_filter = None
        elif len(texts) == 1:
            kernel_filter = texts[0]
        else:
            kernel_filter = " || ".join(f"({t})" for t in texts)
            if len(kernel_filter.encode("latin-1")) > MAX_FILTER_TEXT:
                kernel_filter = None  # too long for the kernel: ktapjit alone filters
        callchain = any(b.callchain for b in members)
        ev = tracepoint(system, event, filter=kernel_filter, callchain=callchain)
        # Only a glob may skip an event the kernel refuses: a name the script
        # spells out must open.
        ev.optional = all(b.from_glob for b in members)
        if system.startswith(GROUP_PREFIX):  # ours: name it as the script does
            ev.label = event if ev.optional else members[0].eventdef
        events.append(ev)
    return events, list(groups.values())


# How many refused names a warning lists before it says "and N more".
_NAMES_SHOWN = 5


def _names(events) -> str:
    names = [ev.shown for ev in events]
    more = len(names) - _NAMES_SHOWN
    return ", ".join(names[:_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def refusal_summary(refused) -> list[str]:
    """One line per distinct reason: how many events a glob skipped, the
    first few names, and why the kernel refused them."""
    by_reason: dict[str, list] = {}
    for r in refused:
        by_reason.setdefault(r.reason, []).append(r.event)
    lines = []
    for reason, events in by_reason.items():
        noun = "event" if len(events) == 1 else "events"
        lines.append(f"skipped {len(events)} {noun} a glob matched ({_names(events)}): {reason}")
    return lines


def check_globs(bound: list[BoundEvent], refused) -> None:
    """A glob of which the kernel refused every event traces nothing: an error."""
    gone = {(r.event.system, r.event.event): r for r in refused}
    by_glob: dict[str, list[BoundEvent]] = {}
    for b in bound:
        if b.from_glob:
            by_glob.setdefault(b.eventdef, []).append(b)
    for glob, members in by_glob.items():
        if all((b.system, b.event) in gone for b in members):
            reason = gone[(members[0].system, members[0].event)].reason
            noun = "its event" if len(members) == 1 else f"all {len(members)} of its events"
            raise EventsError(f"'{glob}' traces nothing: the kernel refused {noun}: {reason}")


def _clock_event():
    """A cpu-clock sample every HEARTBEAT_NS that no probe binds: stream time
    moves with records, and this keeps tick-N firing on a quiet system. Its
    samples are recorded too, so a replay fires the timers at the same times."""
    return software_event(abi.PERF_COUNT_SW_CPU_CLOCK, HEARTBEAT_NS, "ktapjit:clock")


def _profile_event(profile):
    """A `profile-N` timer's event: cpu-clock every N, with callchains."""
    return software_event(abi.PERF_COUNT_SW_CPU_CLOCK, profile.period_ns, profile.name, callchain=True)


def _comm_records(session: PerfSession, start_ns: int, pids, mmaps: bool = False) -> bytes:
    sample_type = session.events[0].attr.sample_type | abi.PERF_SAMPLE_IDENTIFIER
    # Stamped with the start: the replayed stream then starts where the live one did.
    head = synthesize_comms(sample_type, pids, time=start_ns)
    if mmaps:  # the existing processes' executable mappings, for ustack()
        head += synthesize_mmaps(sample_type, pids, time=start_ns)
    return head


def run_live(driver, bound: list[BoundEvent], plan: StreamPlan, options: LiveOptions, start_ns: int) -> LiveOutcome:
    """Trace until Ctrl-C/SIGTERM, exit(), an error, or the end of CMD."""
    events, groups = _perf_events(bound)
    for profile in plan.profiles:
        events.append(_profile_event(profile))
        groups.append([profile])
    if options.heartbeat:
        events.append(_clock_event())
        groups.append([])
    # The stop handlers go in first and come out last: from here on a signal
    # ends the trace (and trace_end runs) but never cuts short the closing of
    # the perf events, the recording or the command, which the removal of
    # dynamic events after this function depends on (EBUSY while perf is open).
    # User stacks need the mappings: of profile-N samples, or of probes with stacks.
    stacks = bool(plan.profiles) or any(b.callchain for b in bound)
    with _StopFlag() as stop:
        child = _Child(options.command) if options.command else None
        pid = child.pid if child else options.pid
        writer = None
        try:
            # CLOCK_MONOTONIC timestamps are comparable with the start time.
            with PerfSession(events, pid=pid, pages=options.pages, enable_on_exec=child is not None,
                             clockid=time.CLOCK_MONOTONIC, track_mmaps=stacks) as session:
                check_globs(bound, session.refused)
                for line in refusal_summary(session.refused):
                    options.warn(line)
                members_of = {id(ev): members for ev, members in zip(events, groups)}
                for ev, (_attr, ids, _name) in zip(session.events, session.attrs()):
                    for b in members_of.get(id(ev), ()):  # the task tracker binds to no probe
                        plan.attach(ids, b)
                attrs = session.attr_table()
                native = _open_native(driver, plan, attrs, start_ns)
                head = _comm_records(session, start_ns, [pid] if pid != -1 else None, stacks)
                if options.record_path:
                    writer = _open_recording(options.record_path, session, bound)
                    writer.write_records(head)
                if native:
                    driver.feed_bytes(head)
                else:
                    driver.feed(iter_records(head, attrs))
                # Enabled before the status line: a user (or a test) starts the
                # workload on seeing it, and its first events must be traced.
                session.enable()
                options.status(f"Tracing {len(events) - len(session.refused)} events... Hit Ctrl-C to end.")
                if child:
                    child.release()
                _loop(session, driver, attrs, writer, child, stop, native)
                lost = session.lost()
            return LiveOutcome(driver.last_time, lost)
        finally:
            if writer is not None:
                writer.close()
            if child is not None:
                child.stop()


def _open_recording(path: str, session: PerfSession, bound: list[BoundEvent]) -> PerfDataWriter:
    refused = {(r.event.system, r.event.event) for r in session.refused}
    tracing = TracingData.from_tracefs(sorted({(b.system, b.event) for b in bound} - refused))
    try:
        return PerfDataWriter(path, session.attrs(), tracing, cmdline=["ktapjit", "run", "--record", path])
    except OSError as exc:
        # One line for the user, and trace_end still runs (EventsError, not OSError).
        raise EventsError(f"cannot write recording '{path}': {exc.strerror or exc}") from None


class _Reader(threading.Thread):
    """Drains the rings in the background, into memory, while the main thread
    decodes, merges and runs the script.

    The interpreter handles around 70k events/s, far below what the kernel
    can produce (draining only between rounds lost a third of a 200k burst at
    the default 1024 pages). This thread wakes at each ring's watermark (it
    needs the GIL only for the copy; CPython hands it over within the 5 ms
    switch interval), so the rings never fill while the script lags: the
    backlog waits in memory, as raw bytes.

    Each `read_chunks` call is one complete drain pass over every CPU, queued
    as one item; the main thread makes each pass one round, as before, so
    perf's round rule holds for the merger and the recording alike. Taking
    one pass at a time also keeps few decoded records alive at once, which
    keeps the garbage collector's full passes (they hold the GIL) short.
    """

    def __init__(self, session: PerfSession):
        super().__init__(name="ktapjit-ring-reader", daemon=True)
        self.session = session
        self.passes: queue.SimpleQueue = queue.SimpleQueue()  # lists of (cpu, bytes), or an exception
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                chunks = self.session.read_chunks(POLL_SECONDS)
                if chunks:
                    self.passes.put(chunks)
        except BaseException as exc:  # re-raised in the main thread by next_pass()
            self.passes.put(exc)

    def next_pass(self, timeout: float) -> list[tuple[int, bytes]]:
        """The oldest queued drain pass ([] if none came within `timeout`)."""
        try:
            item = self.passes.get(timeout=timeout) if timeout else self.passes.get_nowait()
        except queue.Empty:
            return []
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        """Wait for the thread to end (at most one poll interval); idempotent."""
        self._stopping.set()
        if self.is_alive():
            self.join()


def _open_native(driver, plan: StreamPlan, attrs, start_ns: int) -> bool:
    """Whether the driver runs this session's records natively (a
    dispatch.LiveDriver whose run has a native feed for these events): then
    it takes the drained bytes and merges them itself."""
    opener = getattr(driver, "open_native", None)
    return bool(opener is not None and opener(plan, attrs, start_ns))


_SWITCH_INTERVAL = 0.001  # seconds; see _loop


def _loop(session: PerfSession, driver, attrs, writer, child, stop: _StopFlag, native: bool = False) -> None:
    merger = StreamMerger()
    reader = _Reader(session)
    # Full garbage collections hold the GIL, and so keep the reader from the
    # rings, for as long as they scan: leave what existed before tracing (the
    # compiled script, the modules, an in-process caller's heap) out of them.
    frozen = gc.get_freeze_count() == 0
    if frozen:
        gc.freeze()
    # The reader needs the GIL to empty a ring. At CPython's default 5 ms
    # switch interval a burst can fill the ring past its watermark before the
    # busy main thread (the interpreter running probes) hands it over; 1 ms
    # keeps that window small on a loaded machine, for little cost.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, _SWITCH_INTERVAL))
    try:
        reader.start()
        while True:
            done = stop.stopped or (child is not None and child.exited())
            if done:
                session.disable()
                reader.stop()  # no more polling: the last drain is ours
                chunks = reader.next_pass(0) or session.drain()
            else:
                chunks = reader.next_pass(POLL_SECONDS)
            # One drain pass is one round, released by perf's rule, and the
            # recording marks it with FINISHED_ROUND so a replay orders alike.
            if chunks:
                for cpu, data in chunks:
                    if native:
                        driver.push(cpu, data, attrs)
                    else:
                        merger.push(cpu, iter_records(data, attrs))
                    if writer is not None:
                        writer.write_records(data)
                if writer is not None:
                    writer.write_records(_FINISHED_ROUND)
                if not (driver.end_round() if native else driver.feed(merger.end_round())):
                    return
            elif done:
                break  # the reader's backlog and the last drain are all in
    finally:
        reader.stop()  # before PerfSession.close() unmaps the rings it reads
        sys.setswitchinterval(interval)
        if frozen:
            gc.unfreeze()
    if native:
        driver.finish()
    else:
        driver.feed(merger.finish())
