"""The surface every engine offers, and the values that cross it.

An engine loads a compiled Module and returns a Run. The caller drives the
run: `start()` executes the top-level statements; the stream driver
(tracing/dispatch.py) then calls `run_probe` per matching sample,
`run_profile` per sample of a `profile-N` timer's cpu-clock event and
`run_timer` per due `tick-N` timer; `finish()` runs trace_end and returns the Result.
Output is bytes, handed to `out` as the engine produces it, so the
interpreter and the JIT can be compared byte for byte; with
`RunConfig.structured_output` (-f json) it is a list of semantics.output
Items instead, one per output builtin call.

The JIT will also take whole chunks of records natively; this per-event
surface stays the reference the chunked path is tested against.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from ktapjit.diag import RuntimeFault
# A run's config carries the language's limits; they live with the language.
from ktapjit.semantics.limits import (  # noqa: F401 (names of the run surface)
    DEFAULT_MAX_DEPTH, DEFAULT_MAX_LOOP, DEFAULT_MAX_STRING, DEFAULT_MAX_TABLE, Limits,
)


def monotonic_ns() -> int:
    """Now, in the clock live events are stamped with (CLOCK_MONOTONIC)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@dataclass(frozen=True)
class Host:
    """What num_cpus(), arch() and kernel_v() report: the traced machine, which
    on a replay is the one the recording was made on."""

    num_cpus: int
    arch: bytes
    kernel_release: bytes

    @classmethod
    def local(cls) -> "Host":
        # os.uname() is what platform.machine() and platform.release() read on
        # Linux; the platform module costs ~3 ms of start-up to import.
        uname = os.uname()
        return cls(os.cpu_count() or 1, uname.machine.encode(), uname.release.encode())


class Aborted(BaseException):
    """A second SIGINT/SIGTERM while tracing: ktapjit ends at once, without
    trace_end (its clean-up still runs). A BaseException, like
    KeyboardInterrupt, so that no handler of errors catches it on the way."""


@dataclass(frozen=True)
class RunConfig:
    limits: Limits
    script_args: tuple[str, ...]  # arg[0] is the script path as given
    start_time_ns: int  # stream time before the first event (LANGUAGE.md: event time)
    host: Host = field(default_factory=Host.local)
    # False: `out` takes bytes. True (-f json): `out` takes a list of
    # semantics.output Items, one per output builtin call, in order.
    structured_output: bool = False


@dataclass
class Result:
    """How a run ended. status: 0 normal or exit(), 1 runtime error.
    `errors` holds every runtime error in order; `error` is the first."""

    status: int
    error: Optional[RuntimeFault] = None
    exit_called: bool = False
    errors: list[RuntimeFault] = field(default_factory=list)


class Run(Protocol):
    errors: list[RuntimeFault]  # the runtime errors so far, in order

    def start(self) -> bool:
        """Run the top level. False when no events should follow (exit() or an error)."""

    def run_probe(self, index: int, event) -> bool:
        """Run probe `index` of the Module for `event` (an EventContext); False once stopped."""

    def run_profile(self, index: int, event) -> bool:
        """Run the body of timer `index` (a `profile-N`) for `event`, one of its
        cpu-clock samples (an EventContext with stacks); False once stopped."""

    def run_timer(self, index: int, time_ns: int) -> bool:
        """Run timer `index` (a `tick-N`) at stream time `time_ns`; False once stopped."""

    def finish(self, time_ns: Optional[int] = None) -> Result:
        """Run trace_end at stream time `time_ns` (unless an error happened inside it) and report."""


class Engine(Protocol):
    name: str

    def load(self, module, config: RunConfig, out: Callable[[bytes], None]) -> Run: ...
