"""A tracing session: where a run's events come from, and driving it.

`replay_session` and `live_session` bind the script's probes up front (so a
bad event stops the script before its top level runs) and fix the stream's
start time; `Session.drive` then feeds the events to a driver, and
`drive_run` does that for an engine run, turning a stream that breaks
midway into an outcome rather than an exception, so trace_end still runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from ktapjit.events.tracefs import EventsError
from ktapjit.ir.func import Module
from ktapjit.tracing.dispatch import StreamDriver
from ktapjit.tracing.plan import StreamPlan


@dataclass
class Session:
    start_ns: int
    plan: StreamPlan  # sample id -> bound probes (filled in once live events are open)
    drive: Callable  # (driver) -> end time in ns; live also records the command's status
    command_status: Optional[int] = None


@dataclass
class Outcome:
    end_ns: int
    lost: int
    stream_error: Optional[EventsError] = None


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def replay_session(path: str, module: Module) -> Session:
    from ktapjit.tracing.replay import open_replay

    replay = open_replay(path, module)

    def drive(driver) -> int:
        driver.feed(replay.records())
        return driver.last_time

    return Session(replay.start_ns, replay.plan, drive)


def live_session(module: Module, options) -> Session:
    from ktapjit.tracing.live import bind_live, run_live

    bound = bind_live(module)
    session = Session(monotonic_ns(), StreamPlan(bound=list(bound)), None)

    def drive(driver) -> int:
        outcome = run_live(driver, bound, session.plan, options, session.start_ns)
        session.command_status = outcome.command_status
        driver.lost = max(driver.lost, outcome.lost)
        return outcome.end_ns

    session.drive = drive
    return session


def drive_run(session: Session, run, module: Module, max_table: int) -> Outcome:
    """Feed the session's events to an engine run (its top level already ran)."""
    driver = StreamDriver(run, module, session.plan, max_table, session.start_ns)
    try:
        end_ns = session.drive(driver)
    except EventsError as exc:  # a corrupt stream, a lost permission: trace_end still runs
        return Outcome(driver.last_time, driver.lost, exc)
    return Outcome(end_ns, driver.lost)
