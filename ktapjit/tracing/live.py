"""Live tracing: perf rings on every CPU, drained in rounds, merged in time
order and fed to the engine; optionally recorded to perf.data as it goes.

A live run is a recording plus a replay: the stream starts with COMM records
for the tasks that exist (stamped with the start time), events carry
CLOCK_MONOTONIC timestamps, and each drain pass is recorded before the
engine runs it, followed by FINISHED_ROUND, so `--replay` of the recording
merges it the same way and prints the same output. When a stop's deadline
cuts the backlog short (_StopFlag), the passes already taken up stay in the
file (docs/events.md, Recording).
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional

from ktapjit.diag import counted
from ktapjit.events.records import perf_abi as abi
from ktapjit.events.probes.probe_sites import SITES_FEATURE, encode_sites
from ktapjit.events.probes.dynamic_probes import GROUP_PREFIX, DynamicProbeError, kprobes_available
from ktapjit.events.records.perf_ring import PerfSession, software_event, synthesize_comms, synthesize_mmaps, tracepoint
from ktapjit.events.records.perfdata import (HEADER_BUILD_ID, PerfDataWriteError, PerfDataWriter, TracingData,
                                     kernel_build_id_feature)
from ktapjit.events.schema import EventFormat
from ktapjit.events.probes.symbolize import running_kernel_build_id
from ktapjit.events.errors import EventsError
from ktapjit.events.tracefs import list_events, read_format
from ktapjit.frontend.eventdef import KprobeSpec
from ktapjit.ir.func import Module
from ktapjit.run_api import Aborted, LiveEvents, OpenedEvent
from ktapjit.tracing.companion import CompanionRoutes, companion_event, plan_reads, wants_companions
from ktapjit.tracing.dispatch import LiveDriver, LiveRounds
from ktapjit.tracing.plan import (
    BoundEvent, EventUniverse, StreamPlan, bind_tracepoints, create_dynamic,
)

POLL_SECONDS = 0.1
HEARTBEAT_NS = 10_000_000
# After a stop signal, what was read before it is run for this long at most;
# the rest is counted, not run, and trace_end follows.
STOP_GRACE_SECONDS = 1.0
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

    def site_table(self, system: str, event: str):
        for ev in self.probes.created if self.probes is not None else ():
            if ev.pair == (system, event):
                return ev.site_table
        return None

    def dynamic(self, spec) -> list[tuple[str, str]]:
        if isinstance(spec, KprobeSpec):
            available = kprobes_available()
            if not available:
                raise DynamicProbeError(available.reason)
        if self.probes is None:
            raise DynamicProbeError(f"'{spec.text}': no DynamicProbes to create it with")
        return [event.pair for event in create_dynamic(self.probes, spec)]


@dataclass
class LiveOptions:
    pages: int
    pid: int = -1  # -p PID
    command: list[str] = field(default_factory=list)  # -- CMD ARGS
    record_path: Optional[str] = None
    heartbeat: bool = False  # add the clock event (scripts with tick-N timers)
    status: Callable[[str], None] = lambda text: None  # stderr notices (silenced by -q)
    warn: Callable[[str], None] = lambda text: print(f"ktapjit: {text}", file=sys.stderr)  # not silenced
    rates: Optional[Callable[[str], None]] = None  # -v: where the rates lines go (tracing/rates.py)
    between_rounds: Callable[[], None] = lambda: None  # on the main thread, at least every POLL_SECONDS
    # Loads companion programs (bpf.companion.attach_companions: plans, bpf-output fds by CPU)
    # for probes that read memory at event time; returns what to close() after.
    companions: Optional[Callable] = None
    max_string: int = 4096  # --max-string: the bound of a string read at event time


@dataclass
class LiveOutcome:
    end_ns: int
    lost: int
    unprocessed: int = 0  # samples read but not run: a stop's deadline passed first


def bind_live(module: Module, probes=None) -> list[BoundEvent]:
    """Bind before anything runs, so a bad event stops the script before its top level.
    Dynamic events are created through `probes` (a DynamicProbes)."""
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
    """SIGINT/SIGTERM while the trace runs; the handlers are restored afterwards.

    The first signal stops the trace: the events are disabled at once (by
    `halt`, set while they are open), what was read before it runs until
    `deadline`, and trace_end follows. A second one aborts: Aborted is raised
    at once inside `abortable()` (the feeding loop), else once the clean-up
    is done (run_live), and trace_end does not run.
    """

    def __init__(self):
        self.stopped = False
        self.deadline: Optional[float] = None  # time.monotonic() when feeding must end
        self.aborted = False
        self.halt: Optional[Callable[[], None]] = None
        self._abortable = False
        self._saved: dict[int, object] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._stop)
        return self

    def _stop(self, signum, frame):
        if self.stopped:
            self.aborted = True
            if self._abortable:
                self._abortable = False
                raise Aborted
            return
        self.stopped = True
        self.deadline = time.monotonic() + STOP_GRACE_SECONDS
        if self.halt is not None:
            self.halt()

    def overdue(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    @contextmanager
    def abortable(self):
        self._abortable = True
        try:
            if self.aborted:
                raise Aborted
            yield
        finally:
            self._abortable = False

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _halter(session: PerfSession, gate: Callable[[bool], None] = lambda on: None) -> Callable[[], None]:
    """Disables the events (and closes the kernel code's gate) from a signal
    handler; a failure there is left for the loop's own disable() to report."""
    def halt() -> None:
        gate(False)
        try:
            session.disable()
        except abi.PerfError:
            pass
    return halt


class Teardown:
    """The perf events of an ended trace, closed only after trace_end ran.

    Closing a tracepoint's last perf event costs the kernel RCU grace periods
    under its event_mutex: tens of ms each, one event after another whoever
    closes them (threads gain nothing; disabling first is done already), so
    about 2 minutes for the 2000-odd events of `trace *:*`. A stop must not
    wait for that: run_live disables the events, ends the command and the
    recording, and hands the fds over here; trace_end runs and prints; then
    Session.close() calls close(). A long close is announced on stderr first.
    Signals during it are noted, not obeyed: a close cut short would leave
    events (and the dynamic events they keep busy) behind.
    """

    # Tracepoint events from which the close is announced: at 40 to 50 ms
    # each on the test VM, 2 s and more. A count, not a timer, so that a run
    # says the same whatever the load (another process holding the kernel's
    # event_mutex can make even one event's close take seconds).
    ANNOUNCE_FROM = 50

    def __init__(self, status: Callable[[str], None] = lambda text: None):
        self.status = status
        self.fds: list[int] = []
        self.tracepoints = 0  # events the kernel releases one by one

    @contextmanager
    def holding(self, session: PerfSession):
        """Takes the session's fds as it ends, on every path."""
        try:
            yield
        finally:
            self.tracepoints = sum(ev.system is not None for ev in session.events)
            self.fds += session.release_fds()

    def close(self) -> None:
        """Close the fds held; idempotent. Runs on the main thread."""
        fds, self.fds = self.fds, []
        if not fds:
            return

        def note_signal(signum, frame) -> None:
            self.status("Still detaching: the kernel releases the events one by one; ending when it is done.")

        saved = {sig: signal.signal(sig, note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            # Said once the handlers are in: a Ctrl-C prompted by it is only noted.
            if self.tracepoints >= self.ANNOUNCE_FROM:
                self.status(f"Detaching from {counted(self.tracepoints, 'event')}...")
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        finally:
            for sig, handler in saved.items():
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
        self.name = argv[0]
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

    # A command still running this long after SIGTERM gets SIGKILL: a stop must end.
    KILL_AFTER = 2.0  # seconds

    def stop(self, warn: Callable[[str], None] = lambda text: None) -> None:
        """On an early exit of ktapjit: don't leave the command behind."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass
        self._close_go()  # after the kill: a child still waiting must not run untraced
        deadline = time.monotonic() + self.KILL_AFTER
        try:
            while not self.exited():
                if time.monotonic() >= deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    warn(f"'{self.name}' did not end within {self.KILL_AFTER:g} s of SIGTERM: killed")
                    return
                time.sleep(0.01)
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
    groups = events_of(bound)
    events = []
    for (system, event), members in groups.items():
        callchain = any(b.callchain for b in members)
        ev = tracepoint(system, event, filter=kernel_filter(members), callchain=callchain)
        # Only a glob may skip an event the kernel refuses: a name the script
        # spells out must open.
        ev.optional = all(b.from_glob for b in members)
        if system.startswith(GROUP_PREFIX):  # ours: name it as the script does
            ev.label = event if ev.optional else members[0].eventdef
        events.append(ev)
    return events, list(groups.values())


def events_of(bound: list[BoundEvent]) -> dict[tuple[str, str], list[BoundEvent]]:
    """The bound events of each distinct tracepoint, in first-bound order."""
    groups: dict[tuple[str, str], list[BoundEvent]] = {}
    for b in bound:
        groups.setdefault((b.system, b.event), []).append(b)
    return groups


def kernel_filter(members: list[BoundEvent]) -> Optional[str]:
    """The filter the kernel gets for one tracepoint: the OR of its probes'
    filters, None when one probe has none or the OR is too long."""
    from ktapjit.kernel_filter.language import MAX_FILTER_TEXT

    texts = list(dict.fromkeys(b.filter_text for b in members))
    if None in texts:
        return None
    if len(texts) == 1:
        return texts[0]
    text = " || ".join(f"({t})" for t in texts)
    if len(text.encode("latin-1")) > MAX_FILTER_TEXT:
        return None  # too long for the kernel: ktapjit alone filters
    return text


# How many refused names a warning lists before it says "and N more".
_NAMES_SHOWN = 5


def _names(names: list[str]) -> str:
    more = len(names) - _NAMES_SHOWN
    return ", ".join(names[:_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def refusal_summary(refused: list[tuple[str, str]]) -> list[str]:
    """One line per distinct reason: how many events a glob skipped, the
    first few names, and why the kernel refused them. ``refused`` holds
    (name, reason) pairs."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in refused:
        by_reason.setdefault(reason, []).append(name)
    lines = []
    for reason, names in by_reason.items():
        lines.append(f"skipped {counted(len(names), 'event')} a glob matched ({_names(names)}): {reason}")
    return lines


def _refusals(plan: StreamPlan, session: PerfSession) -> list[tuple[str, str]]:
    """What globs skipped: functions left out of their site events, and
    events the kernel would not open."""
    return ([(site.shown, abi.refusal_reason(site.errno)) for site in plan.refused]
            + [(r.event.shown, r.reason) for r in session.refused])


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


def _points(events, groups, refused) -> int:
    """How many probe points the session traces: a site event counts each
    of its sites, as the events they would otherwise have been."""
    gone = {id(r.event) for r in refused}
    return sum(max((b.points for b in members if not b.is_profile), default=1)
               for ev, members in zip(events, groups) if id(ev) not in gone)


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


def run_live(driver: LiveDriver, bound: list[BoundEvent], plan: StreamPlan, options: LiveOptions,
             start_ns: int, teardown: Teardown) -> LiveOutcome:
    """Trace until Ctrl-C/SIGTERM, exit(), an error, or the end of CMD. The
    perf events are left disabled in `teardown`, whose close() the caller
    calls after trace_end, on every path."""
    events, groups = _perf_events(bound)
    for profile in plan.profiles:
        events.append(_profile_event(profile))
        groups.append([profile])
    if options.heartbeat:
        events.append(_clock_event())
        groups.append([])
    companion_ev = None
    if wants_companions(bound):
        companion_ev = companion_event()
        events.append(companion_ev)
        groups.append([])
    # The stop handlers go in first and come out last: from here on a signal
    # ends the trace (and trace_end runs) but never cuts short the disabling
    # of the perf events, the closing of the recording or the end of the
    # command. The events are closed later (Teardown), and the removal of
    # dynamic events waits for that (EBUSY while perf is open).
    # User stacks need the mappings: of profile-N samples, or of probes with stacks.
    stacks = bool(plan.profiles) or any(b.callchain for b in bound)
    with _StopFlag() as stop:
        child = _Child(options.command) if options.command else None
        pid = child.pid if child else options.pid
        writer = None
        loaded = None  # the companion programs' maps, held until the perf events are done with
        try:
            # The reader thread exists before the events (and after the fork).
            with _Reader(counting=options.rates is not None) as reader:
                if pid == -1:
                    _exclude_ktapjit(events)
                # CLOCK_MONOTONIC timestamps are comparable with the start time.
                with PerfSession(events, pid=pid, pages=options.pages, enable_on_exec=child is not None,
                                 clockid=time.CLOCK_MONOTONIC, track_mmaps=stacks) as session, \
                        teardown.holding(session):
                    check_globs(bound, session.refused)
                    for line in refusal_summary(_refusals(plan, session)):
                        options.warn(line)
                    members_of = {id(ev): members for ev, members in zip(events, groups)}
                    for ev, (_attr, ids, _name) in zip(session.events, session.attrs()):
                        for b in members_of.get(id(ev), ()):  # the task tracker binds to no probe
                            plan.attach(ids, b)
                    if companion_ev is not None:
                        loaded = _load_companions(session, events, companion_ev, plan, options)
                    gate = lambda on: None  # noqa: E731
                    if driver.run is not None:  # before the events are enabled: no hit is missed
                        driver.run.attach_kernel(_live_events(session, events, groups, pid, options))
                        gate = driver.run.gate_kernel
                    attrs = session.attr_table()
                    rounds = driver.open_rounds(plan, attrs, start_ns)
                    head = _comm_records(session, start_ns, [pid] if pid != -1 else None, stacks)
                    if options.record_path:
                        writer = _open_recording(options.record_path, session, bound)
                        writer.write_records(head)
                    rounds.head(head)
                    try:
                        reader.read_from(session)
                        stop.halt = _halter(session, gate)
                        # Enabled before the status line: a user (or a test) starts the
                        # workload on seeing it, and its first events must be traced.
                        session.enable()
                        # Kernel code runs inside perf's window: a program whose gate is off
                        # drops its sample, so the stream holds exactly the events it ran on.
                        gate(True)
                        counted_events = [(ev, g) for ev, g in zip(events, groups) if ev is not companion_ev]
                        opened = _points([ev for ev, _g in counted_events], [g for _ev, g in counted_events],
                                         session.refused)
                        options.status(f"Tracing {counted(opened, 'event')}... Hit Ctrl-C to end.")
                        if child:
                            child.release()
                        rates = _rate_report(options.rates, reader, session, driver)
                        unprocessed = _loop(session, reader, rounds, writer, child, stop, rates,
                                            options.between_rounds, gate)
                    finally:
                        gate(False)  # exit(), an error: kernel code stops where the trace did
                        reader.stop()  # before the rings are unmapped
                        stop.halt = None  # and the fds closed
                    lost = session.lost()
                    if rates is not None:
                        rates.summary(reader.samples, max(lost, driver.lost), unprocessed)
            outcome = LiveOutcome(driver.last_time, lost, unprocessed)
        finally:
            try:
                if writer is not None:
                    writer.close()
            finally:
                if loaded is not None:
                    _close_companions(loaded, options)
                if child is not None:
                    child.stop(options.warn)
    if stop.aborted:  # a second signal during the clean-up: it is done now
        raise Aborted
    return outcome


def _load_companions(session: PerfSession, events, companion_ev, plan: StreamPlan, options: LiveOptions):
    """The companion programs of the probes that read memory at event time,
    attached before the events are enabled; the stream's routes to pair
    their records with their samples go into the plan."""
    if options.companions is None:
        raise EventsError("user_string(), kernel_string() and in_iowait() need the BPF layer, "
                          "which this command does not load")
    ids = {id(ev): ids for ev, (_attr, ids, _name) in zip(session.events, session.attrs())}
    routes = CompanionRoutes(set(ids.get(id(companion_ev), ())))
    configs = {}
    for ev in session.events:
        if ev.system is not None:
            configs[(ev.system, ev.event)] = ev.attr.config
            for sid in ids.get(id(ev), ()):
                routes.tracepoint_of[sid] = ev.attr.config
    reads = plan_reads([b for b in plan.bound if (b.system, b.event) in configs], options.max_string,
                       lambda system, event: configs[(system, event)])
    if not reads:
        return None
    outputs = {op.cpu: op.fd for op in session.opened if op.event is companion_ev}
    loaded = options.companions(reads, outputs)
    plan.companions = routes
    return loaded


def _close_companions(loaded, options: LiveOptions) -> None:
    try:
        dropped = loaded.dropped()
    finally:
        loaded.close()
    if dropped:
        options.warn(f"the kernel dropped {counted(dropped, 'event')} of the traced tracepoints: BPF was busy on "
                     "their CPU (a program, or any process's bpf() call), and the companion programs there "
                     "make the kernel skip such hits")


def _live_events(session: PerfSession, events, groups, pid: int, options: LiveOptions) -> LiveEvents:
    """The opened perf events as Run.attach_kernel takes them."""
    fds: dict[int, list[int]] = {}
    for op in session.opened:
        fds.setdefault(id(op.event), []).append(op.fd)
    opened = tuple(OpenedEvent(tuple(members), tuple(fds.get(id(ev), ())),
                               ev.system is not None and not ev.system.startswith(GROUP_PREFIX))
                   for ev, members in zip(events, groups) if members)
    return LiveEvents(opened, None if pid == -1 else pid, options.record_path is not None)


def _rate_report(say, reader: "_Reader", session: PerfSession, driver):
    """-v: the RateReport of this session, or None."""
    if say is None:
        return None
    from ktapjit.tracing.rates import RateReport

    return RateReport(say, lambda: reader.samples, lambda: _lost_so_far(session, driver))


def _lost_so_far(session: PerfSession, driver) -> int:
    """The kernel's lost counters (-1 without PERF_FORMAT_LOST), or the
    PERF_RECORD_LOST the engine has run, if more, as the end of the run says."""
    return max(session.lost(), driver.lost)


def _exclude_ktapjit(events) -> None:
    """A system-wide trace leaves ktapjit's own threads out (the main thread,
    the ring reader, any other present now): each tracepoint's kernel filter
    gets `common_pid != TID` for each, after the probes' own filter. Else
    every line ktapjit prints would be an event of `syscalls:*`, and make
    more. Software events (profile-N, the clock) take no filter: their
    samples of ktapjit stay, as in `perf record -a`. -p PID and -- CMD do not
    come here: they trace only their own tasks."""
    from ktapjit.kernel_filter.language import MAX_FILTER_TEXT

    tids = sorted(int(name) for name in os.listdir("/proc/self/task"))
    ours = " && ".join(f"common_pid != {tid}" for tid in tids)
    for event in events:
        if event.system is None:
            continue
        text = f"({event.filter}) && {ours}" if event.filter else ours
        if len(text.encode("latin-1")) > MAX_FILTER_TEXT:
            text = ours  # the probes' filters are still applied by ktapjit, as for a long OR
        event.filter = text


def _open_recording(path: str, session: PerfSession, bound: list[BoundEvent]) -> PerfDataWriter:
    refused = {(r.event.system, r.event.event) for r in session.refused}
    tracing = TracingData.from_tracefs(sorted({(b.system, b.event) for b in bound} - refused))
    # The kernel's build-id tells a replay (and perf) whether its kallsyms fits the kernel frames.
    build_id = running_kernel_build_id()
    fits = build_id is not None and 0 < len(build_id) <= 20  # perf's BUILD_ID_SIZE
    features = {HEADER_BUILD_ID: kernel_build_id_feature(build_id)} if fits else {}
    sites = {(b.system, b.event): b.site_table for b in bound
             if b.site_table is not None and (b.system, b.event) not in refused}
    if sites:  # a replay names each site's samples by this table
        features[SITES_FEATURE] = encode_sites(sites)
    try:
        return PerfDataWriter(path, session.attrs(), tracing, cmdline=["ktapjit", "run", "--record", path],
                              features=features)
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

    The thread starts before the perf events open, idle until `read_from`,
    so that its id is known to the kernel filters that leave ktapjit out
    (a perf event's filter can be set only once).

    When `counting` (-v), `samples` counts the samples read, once per pass
    (before it is queued), the main thread's own drains (`drain`) included.
    """

    def __init__(self, counting: bool = False):
        super().__init__(name="ktapjit-ring-reader", daemon=True)
        self.session: Optional[PerfSession] = None
        self.counting = counting
        self.samples = 0
        # A Queue, not a SimpleQueue: CPython 3.11's SimpleQueue.get(timeout)
        # waits forever when a signal handler (the stop's halt) returns after
        # its deadline, and Ctrl-C would then hang the loop.
        self.passes: queue.Queue = queue.Queue()  # lists of (cpu, bytes), or an exception
        self._stopping = threading.Event()
        self._attached = threading.Event()
        self.quiet_passes = 0  # complete drain passes that found every ring empty since the last queued one

    def read_from(self, session: PerfSession) -> None:
        self.session = session
        self._attached.set()

    def run(self) -> None:
        self._attached.wait()
        try:
            while not self._stopping.is_set():
                chunks = self.session.read_chunks(POLL_SECONDS)
                if chunks:
                    self._count(chunks)
                    self.quiet_passes = 0  # before the put: a quiet pass seen later came after it
                    self.passes.put(chunks)
                else:
                    self.quiet_passes += 1
        except BaseException as exc:  # re-raised in the main thread by next_pass()
            self.passes.put(exc)

    def drain(self) -> list[tuple[int, bytes]]:
        """What the rings hold now, read by the calling thread once this one has stopped."""
        chunks = self.session.drain()
        self._count(chunks)
        return chunks

    def _count(self, chunks) -> None:
        if self.counting:
            self.samples += _count_samples(chunks)

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
        """Wait for the thread to end (at most one poll interval); idempotent.
        Before PerfSession.close() unmaps the rings it reads."""
        self._stopping.set()
        self._attached.set()
        if self.is_alive():
            self.join()

    def __enter__(self) -> "_Reader":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_SWITCH_INTERVAL = 0.001  # seconds; see _loop


def _loop(session: PerfSession, reader: _Reader, rounds: LiveRounds, writer, child, stop: _StopFlag,
          rates=None, between_rounds: Callable[[], None] = lambda: None,
          gate: Callable[[bool], None] = lambda on: None) -> int:
    """Run the drained rounds until the trace ends; the number of samples
    read but not run, because a stop's deadline passed first. A RateReport
    (`rates`, -v) gets a tick between rounds, and between the records or
    native steps of one. `gate(False)` comes before each disable: kernel
    code (Run.gate_kernel) stops with the samples."""
    go_on = lambda: not stop.overdue()  # noqa: E731
    if rates is not None:  # -v: on time also when one round runs for seconds (a slow probe)
        go_on = lambda: rates.tick() or not stop.overdue()  # noqa: E731
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
        with stop.abortable():
            while not stop.overdue():
                done = stop.stopped or (child is not None and child.exited())
                if done:
                    gate(False)
                    session.disable()
                    reader.stop()  # no more polling: the last drain is ours
                    chunks = reader.next_pass(0) or reader.drain()
                else:
                    chunks = reader.next_pass(POLL_SECONDS)
                if rates is not None:
                    rates.tick()
                # One drain pass is one round, released by perf's rule, and the
                # recording marks it with FINISHED_ROUND so a replay orders alike.
                if chunks:
                    _record_pass(writer, chunks, rounds, go_on)
                    rounds.push(chunks)
                    if not rounds.end_round(go_on):
                        return 0  # exit() or an error: nothing more runs
                elif done:
                    if not rounds.finish(go_on):
                        return 0
                    break  # the reader's backlog and the last drain are all in
                elif reader.quiet_passes:
                    # Every queued pass ran and an empty pass came after the last:
                    # an empty round, so perf's rule releases all records held.
                    # Without it, a burst's last round would wait for more events.
                    if not rounds.end_round(go_on):
                        return 0
                between_rounds()  # the engine is between steps: its tables may be read
            # A stop's deadline cut the backlog (else this counts nothing).
            gate(False)
            session.disable()
            reader.stop()
            return rounds.abandon() + _count_samples(_leftover_passes(reader))
    finally:
        reader.stop()
        sys.setswitchinterval(interval)
        if frozen:
            gc.unfreeze()


def _record_pass(writer: Optional[PerfDataWriter], chunks, rounds, go_on) -> None:
    """Append one drain pass and its FINISHED_ROUND to the recording, if any,
    before the engine sees it: a SIGKILL later loses nothing that was read.
    When the file cannot take the pass (a full disk), the records it holds
    that the engine has not run yet run now, and the trace ends: the engine
    has then run exactly what the file keeps, as its replay will."""
    if writer is None:
        return
    try:
        writer.write_records(*(data for _cpu, data in chunks), _FINISHED_ROUND)
    except PerfDataWriteError:
        rounds.finish(go_on)
        raise


def _leftover_passes(reader: _Reader):
    """Every chunk the stopped reader queued, then what the rings still hold."""
    while True:
        chunks = reader.next_pass(0)
        if not chunks:
            break
        yield from chunks
    yield from reader.drain()


_HEADER = struct.Struct("<IxxH")  # perf_event_header: type, (misc), size
_RUN_AFTER = 4  # records of one size in a row before counting by runs
_MIN_WINDOW, _MAX_WINDOW = 64, 1 << 16  # records a run is looked for in, at once


def _count_samples(chunks) -> int:
    """The samples among raw records, per (cpu, bytes) chunk, without
    decoding them: a backlog of millions is counted within the stop's time."""
    return sum(_samples_in(data) for _cpu, data in chunks)


def _samples_in(data: bytes) -> int:
    """Record by record, except where records of one size follow each other
    (a busy tracepoint): then by runs, with strided slices, at C speed. A
    run is exact, not a guess: if the record at P has size S and the size
    field at P + S reads S too, the next record starts at P + 2S, and so on."""
    count, pos, end = 0, 0, len(data)
    same, last, window = 0, 0, _MIN_WINDOW
    while pos + 8 <= end:
        kind, size = _HEADER.unpack_from(data, pos)
        if size < 8:
            break  # a broken header: what follows cannot be framed
        same = same + 1 if size == last else 0
        last = size
        if same >= _RUN_AFTER:
            run = _run_of(data, pos, size, min(end, pos + window * size))
            # The window follows the runs: long ones grow it, short ones keep slicing cheap.
            window = min(_MAX_WINDOW, window * 2) if run == window else max(_MIN_WINDOW, 2 * run)
            count += _samples_in_run(data, pos, size, run)
            pos += run * size
            continue
        count += kind == abi.PERF_RECORD_SAMPLE
        pos += size
    return count


def _run_of(data: bytes, pos: int, size: int, end: int) -> int:
    """How many records of `size` follow each other from `pos`, before `end` (at least 1)."""
    limit = (end - pos) // size
    low = data[pos + 6:pos + limit * size:size]
    high = data[pos + 7:pos + limit * size:size]
    return max(1, min(len(low) - len(low.lstrip(bytes([size & 0xFF]))),
                      len(high) - len(high.lstrip(bytes([size >> 8])))))


def _samples_in_run(data: bytes, pos: int, size: int, run: int) -> int:
    stop = pos + run * size
    if any(data[pos + i:stop:size].count(0) != run for i in (1, 2, 3)):
        # a type above 255 (none in a live ring): one by one
        return sum(_HEADER.unpack_from(data, at)[0] == abi.PERF_RECORD_SAMPLE for at in range(pos, stop, size))
    return data[pos:stop:size].count(abi.PERF_RECORD_SAMPLE)
