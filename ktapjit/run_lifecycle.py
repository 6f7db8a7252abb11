"""How a run proceeds, whatever executes it: the bookkeeping of the Run
protocol (run_api.py) shared by the interpreter and the JIT.

LANGUAGE.md, Builtins and Errors:

- exit() anywhere outside trace_end stops tracing: no more events, then
  trace_end runs. In trace_end it just ends trace_end. Status 0.
- A runtime error outside trace_end stops tracing the same way, and
  trace_end still runs. An error in trace_end ends trace_end.
- Every runtime error is kept, in order, in ``Result.errors``; at most two
  can happen (one before trace_end, one in it). ``Result.error`` is the
  first, the one that ended tracing. Status 1 when there was any.

An engine subclasses RunLifecycle and supplies ``_execute`` (run one entry
function to completion), ``_set_time`` and ``_set_global`` (where the `arg`
table goes).

May import: ktapjit.diag, ktapjit.run_api, ktapjit.semantics,
ktapjit.frontend (ARG_GLOBAL).
"""

from __future__ import annotations

import os
import re
from typing import Optional

from ktapjit.diag import RuntimeFault
from ktapjit.frontend import ARG_GLOBAL
from ktapjit.run_api import Result, RunConfig
from ktapjit.semantics.intmath import INT64_MAX, INT64_MIN
from ktapjit.semantics.values import Table

_INTEGER_ARG = re.compile(r"-?[0-9]+")

# What _execute reports.
RETURNED, EXITED, FAILED = "returned", "exited", "failed"


def script_arg_value(text: str, index: int) -> object:
    """arg[index]: arg[0] stays a string; an integer-looking arg that fits
    int64 becomes an integer; anything else is its bytes as given."""
    if index > 0 and _INTEGER_ARG.fullmatch(text):
        n = int(text)
        if INT64_MIN <= n <= INT64_MAX:
            return n
    return os.fsencode(text)


class RunLifecycle:
    """start / run_probe / run_profile / run_timer / finish, for one module."""

    feeds_natively = False  # True in an engine whose native_feed can give a feed (the JIT)

    def __init__(self, module, config: RunConfig):
        self.module = module
        self.config = config
        self.errors: list[RuntimeFault] = []
        self.exit_called = False
        self.tracing = False  # True between a normal start() and exit()/an error
        self._started = False
        self._result: Optional[Result] = None

    # -- what an engine supplies

    def _execute(self, func, event) -> str:
        """Run entry function `func` (event: the current EventContext or None).
        Returns RETURNED, EXITED, or FAILED after appending to self.errors."""
        raise NotImplementedError

    def _set_time(self, time_ns: int) -> None:
        raise NotImplementedError

    def _set_global(self, index: int, value) -> None:
        """Store a script value in global slot `index`."""
        raise NotImplementedError

    def _set_script_args(self) -> None:
        """Store the `arg` table; raise RuntimeFault when it cannot be built."""
        names = self.module.global_names
        if ARG_GLOBAL not in names:
            return
        table = Table(self.config.limits.max_table)
        for i, text in enumerate(self.config.script_args):
            table.set(i, script_arg_value(text, i))
        self._set_global(names.index(ARG_GLOBAL), table)

    # -- the protocol

    def native_feed(self, plan):
        """No native feed: every event runs through run_probe and its kin."""
        return None

    def attach_kernel(self, events) -> None:
        """Nothing runs in the kernel (the BPF engine's run does)."""

    def poll_kernel(self) -> bool:
        return True

    def gate_kernel(self, on: bool) -> None:
        pass

    def holds_kernel_code(self) -> bool:
        return False

    def detach_kernel(self) -> None:
        pass

    def start(self) -> bool:
        """Run the top level. False when no events should follow (exit() or an error)."""
        if self._started:
            raise RuntimeError(f"{type(self).__name__}.start() called twice")
        self._started = True
        try:
            self._set_script_args()
        except RuntimeFault as fault:  # more arguments than --max-table
            self.errors.append(fault)
            return False
        self.tracing = self._run(self.module.main, None)
        return self.tracing

    def run_probe(self, index: int, event) -> bool:
        """Run probe body `index` for `event` (an EventContext). False once
        tracing has stopped; then nothing runs."""
        return self._run_for_event(self.module.probes[index].func, event)

    def run_profile(self, index: int, event) -> bool:
        """Run `profile-N` timer body `index` for one of its samples."""
        return self._run_for_event(self.module.timers[index].func, event)

    def run_timer(self, index: int, time_ns: int) -> bool:
        """Run timer body `index` at stream time `time_ns`. False once tracing has stopped."""
        if not self.tracing:
            return False
        self._set_time(time_ns)
        self.tracing = self._run(self.module.timers[index].func, None)
        return self.tracing

    def finish(self, time_ns: Optional[int] = None) -> Result:
        """Run trace_end (at stream time `time_ns` when given) and report.
        Calling it again returns the same result."""
        if self._result is not None:
            return self._result
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.finish() before start()")
        self.tracing = False
        if time_ns is not None:
            self._set_time(time_ns)
        if self.module.trace_end is not None:
            self._run(self.module.trace_end, None)
        errors = list(self.errors)
        self._result = Result(status=1 if errors else 0, error=errors[0] if errors else None,
                              exit_called=self.exit_called, errors=errors)
        return self._result

    def _run_for_event(self, func, event) -> bool:
        if not self.tracing:
            return False
        self._set_time(event.time_ns)
        self.tracing = self._run(func, event)
        return self.tracing

    def _run(self, func, event) -> bool:
        outcome = self._execute(func, event)
        if outcome == EXITED:
            self.exit_called = True
        return outcome == RETURNED
