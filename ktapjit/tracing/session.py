"""A tracing session: where a run's events come from, and driving it.

`replay_session` and `live_session` bind the script's probes up front (so a
bad event stops the script before its top level runs) and fix the stream's
start time; `Session.drive` then feeds the events to a driver, and
`drive_run` does that for an engine run, turning a stream that breaks
midway into an outcome rather than an exception, so trace_end still runs.
When the engine run feeds natively (`Run.feeds_natively`, the JIT), the
session describes its stream as a FeedPlan (feed_plan.py) and asks the run
for a native feed (`Run.native_feed`); the records then go to it without
Python per record: a replay hands over its data section (RawStream,
dispatch.NativeDriver), a live session its drained ring bytes
(dispatch.LiveDriver, NativeRounds); otherwise, or when the run declines
the session, dispatch.StreamDriver runs them one by one.

A live session whose script has uprobes, USDT markers or kprobes owns the
dynamic events it created: one DynamicProbes (made after stale groups of
dead runs are swept) lives from binding through the whole perf session, and
`Session.close()` removes them on whatever path the run ends by (the caller
calls it in a `finally`, after trace_end). SIGINT/SIGTERM are handled from
before the first event is created (live.SignalGuard).

A live session's perf events are closed by `Session.close()` too, first: the
kernel can take long to release them (live.Teardown), and trace_end's output
must not wait for it. Until then they are disabled, and so are dynamic
events that still exist while trace_end runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from ktapjit.events.errors import EventsError
from ktapjit.ir.func import Module
from ktapjit.run_api import Host, KernelAddresses, NativeFeed, Run, monotonic_ns
from ktapjit.semantics.limits import DEFAULT_MAX_STRING
from ktapjit.tracing.dispatch import LiveDriver, NativeDriver, StreamDriver
from ktapjit.tracing.plan import StreamPlan, bind_profiles, has_dynamic_probes
from ktapjit.tracing.stacks import needs_stacks, recorded_on_running_kernel, replay_kernel_symbols

if TYPE_CHECKING:
    from ktapjit.events.probes.symbolize import KernelSymbolizer


@dataclass
class RawStream:
    """The bytes a session's records are decoded from, for an engine that
    runs records natively (Run.native_feed): records' offsets minus `base`
    index `data`, and `attrs()` (a decode.AttrTable) says how to read them."""

    data: object  # a buffer holding every record
    base: int
    attrs: Callable[[], object]  # called only when a native feed is wanted


@dataclass
class Session:
    """A bound event source, ready to drive a run."""

    start_ns: int
    plan: StreamPlan  # sample id -> bound probes (filled in once live events are open)
    drive: Callable  # (driver) -> end time in ns
    host: Host = field(default_factory=Host.local)  # what num_cpus(), arch(), kernel_v() report
    cleanup: Optional[Callable[[], list]] = None  # closes perf events, removes dynamic ones; returns problems
    raw: Optional[RawStream] = None  # set when records come from one buffer (a replay)
    live: bool = False  # records come from perf rings (live.run_live)
    kernel_symbols: Optional[KernelSymbolizer] = None  # for stack(); None: this machine's kallsyms
    warnings: list[str] = field(default_factory=list)  # for stderr, once, before the run
    progress: Optional[object] = None  # a replay's progress.ReplayProgress, told per chunk

    def close(self) -> list[str]:
        """Close what the session opened and remove what it created (perf
        events, dynamic events) and put the signal handlers back; idempotent.
        Returns problems (one line each), if any."""
        cleanup, self.cleanup = self.cleanup, None
        return cleanup() if cleanup is not None else []


@dataclass
class Outcome:
    """How a driven run's stream ended."""

    end_ns: int
    lost: int
    stream_error: Optional[EventsError] = None
    unprocessed: int = 0  # events read live but not run: a stop's deadline passed first


def replay_session(path: str, module: Module, progress=None) -> Session:
    """`progress` (a progress.ReplayProgress, or None) is told how far the
    replay is, once per chunk of records, and closed when it ends."""
    from ktapjit.tracing.replay import open_replay

    replay = open_replay(path, module)
    data = replay.data

    def drive(driver) -> int:
        records = replay.records()
        if progress is None:
            driver.feed(records)
            return driver.last_time
        progress.begin(data.data_size)
        try:
            driver.feed(progress.chunks(records, data.data_offset))
        finally:
            progress.close()  # before trace_end's output, an error line, or after Ctrl-C
        return driver.last_time

    raw = RawStream(data.data_bytes, data.data_offset, data.attr_table)
    # Only a script that takes stacks names kernel frames (StreamDriver).
    kernel_symbols = replay_kernel_symbols(data.kernel_build_id, data.osrelease) \
        if needs_stacks(module, replay.plan) else None
    return Session(replay.start_ns, replay.plan, drive, host=_recorded_host(data, module), raw=raw,
                   kernel_symbols=kernel_symbols, warnings=replay.warnings, progress=progress)


def _recorded_host(data, module: Module) -> Host:
    """The machine a recording was made on, where its headers say; else this one."""
    local = Host.local()
    # ipof(): this machine's kallsyms fits only a recording of this kernel
    # (asked only of a script that calls it: the check imports the ELF reader).
    same_kernel = not module.kernel_symbol_names() or recorded_on_running_kernel(
        data.kernel_build_id, data.osrelease)
    return Host(
        num_cpus=data.nr_cpus_online or local.num_cpus,
        arch=data.arch.encode() if data.arch else local.arch,
        kernel_release=data.osrelease.encode() if data.osrelease else local.kernel_release,
        kernel_symbols=local.kernel_symbols if same_kernel else KernelAddresses.unknown(),
    )


def live_session(module: Module, options) -> Session:
    from ktapjit.tracing.live import Teardown, bind_live, run_live

    owner = _DynamicOwner.open() if has_dynamic_probes(module) else None
    try:
        if owner is None:
            bound = bind_live(module)
        else:
            with owner.guard.deferred():
                bound = bind_live(module, owner.probes)
            if owner.guard.pending is not None:
                raise KeyboardInterrupt  # a signal came while binding: stop as Ctrl-C does
    except BaseException:
        if owner is not None:
            owner.close()  # a binding error, a signal: nothing may stay behind
        raise
    # The clock event keeps tick-N timers firing; profile-N samples are their own events.
    options.heartbeat = any(t.kind == "tick" for t in module.timers)
    refused = list(owner.probes.refused) if owner is not None else []
    plan = StreamPlan(bound=list(bound), profiles=bind_profiles(module), refused=refused)
    session = Session(monotonic_ns(), plan, None, live=True)

    teardown = Teardown(options.status)

    def drive(driver) -> int:
        from ktapjit.tracing.live import LiveOutcome

        live = driver if isinstance(driver, LiveDriver) else LiveDriver(driver)  # `ktapjit record`'s
        try:
            outcome = run_live(live, bound, session.plan, _polling_kernel(options, live.run), session.start_ns,
                               teardown)
        except _KernelStopped:
            outcome = LiveOutcome(live.last_time, 0)
        finally:
            if live.run is not None:
                if live.run.holds_kernel_code():
                    teardown.close()  # kernel code runs until its perf events close: then its tables are final
                live.run.detach_kernel()
        driver.lost = max(driver.lost, outcome.lost)
        driver.unprocessed = outcome.unprocessed
        return outcome.end_ns

    def cleanup() -> list[str]:
        try:
            teardown.close()
        finally:
            problems = owner.close() if owner is not None else []  # perf is closed: nothing holds them
        return problems

    session.drive = drive
    session.cleanup = cleanup
    return session


class _KernelStopped(Exception):
    """Code the run put in the kernel failed: the trace ends at once, as
    when a probe fails in user space (Run.poll_kernel)."""


def _polling_kernel(options, run: Optional[Run]):
    """`options` whose between-rounds step also asks the run about its kernel code."""
    if run is None:
        return options
    from dataclasses import replace

    between = options.between_rounds

    def between_rounds() -> None:
        between()
        if not run.poll_kernel():
            raise _KernelStopped

    return replace(options, between_rounds=between_rounds)


class _DynamicOwner:
    """The dynamic events of one live session and the signal guard around them."""

    def __init__(self, guard, probes):
        self.guard = guard
        self.probes = probes
        self.problems: list[str] = []

    @classmethod
    def open(cls) -> "_DynamicOwner":
        from ktapjit.events.probes.dynamic_probes import DynamicProbes
        from ktapjit.tracing.live import SignalGuard

        guard = SignalGuard().install()  # before anything exists that must be removed
        try:
            with guard.deferred():
                probes = DynamicProbes()  # sweeps the groups of dead runs first
        except BaseException:
            guard.restore()
            raise
        return cls(guard, probes)

    def remove_events(self) -> None:
        with self.guard.deferred():
            self.problems += self.probes.close()  # idempotent

    def close(self) -> list[str]:
        try:
            self.remove_events()
        finally:
            self.guard.restore()
        problems, self.problems = self.problems, []
        return problems


def drive_run(session: Session, run: Run, module: Module, max_table: int,
              max_string: int = DEFAULT_MAX_STRING) -> Outcome:
    """Feed the session's events to an engine run (its top level already ran)."""
    driver = StreamDriver(run, module, session.plan, max_table, session.start_ns, session.kernel_symbols,
                          max_string)
    offer = _feed_offer(run, module)
    if session.live:
        driver = LiveDriver(driver, run, offer)  # chooses once the rings are open
    elif offer is not None:
        driver = _native_driver(session, run, offer) or driver
    try:
        end_ns = session.drive(driver)
    except EventsError as exc:  # a corrupt stream, a lost permission: trace_end still runs
        return Outcome(driver.last_time, driver.lost, exc)
    return Outcome(end_ns, driver.lost, unprocessed=driver.unprocessed)


def _feed_offer(run: Run, module: Module) -> Optional[Callable]:
    """(StreamPlan, attrs, start_ns) -> the run's native feed for that
    session, or None; None when the engine runs every event through Python."""
    if not run.feeds_natively:
        return None
    from ktapjit.tracing.feed_plan import build_feed_plan  # only an engine that feeds natively needs it

    def offer(plan: StreamPlan, attrs, start_ns: int) -> Optional[NativeFeed]:
        feed_plan = build_feed_plan(plan, attrs, start_ns, module)
        return run.native_feed(feed_plan) if feed_plan is not None else None

    return offer


def _native_driver(session: Session, run: Run, offer: Callable) -> Optional[NativeDriver]:
    """A NativeDriver when the session allows it (its records come from one
    buffer) and the run takes it; else None."""
    if session.raw is None:
        return None
    try:
        attrs = session.raw.attrs()
    except EventsError:
        return None  # the per-event path reports it where the stream breaks
    feed = offer(session.plan, attrs, session.start_ns)
    if feed is None:
        return None
    return NativeDriver(run, feed, session.raw.data, session.raw.base, session.progress)
