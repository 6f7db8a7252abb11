"""The interpreter as an engine (run_api.py): InterpEngine, InterpRun, Result.

A run goes: ``start()`` runs the top level; then, while tracing continues,
the events layer calls ``run_probe``, ``run_profile`` and ``run_timer``; ``finish()`` runs
trace_end and reports. Each step hands its output to ``out`` before it
returns, so output and error messages interleave exactly.

How a run ends (LANGUAGE.md Builtins and Errors):

- exit() anywhere outside trace_end stops tracing: no more events, then
  trace_end runs. In trace_end it just ends trace_end. Status 0.
- A runtime error outside trace_end stops tracing the same way, and
  trace_end still runs. An error in trace_end ends trace_end.
- Every runtime error is kept, in order, in ``Result.errors``; at most
  two can happen (one before trace_end, one in it). ``Result.error`` is the
  first, the one that ended tracing. Status 1 when there was any.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Optional

from ktapjit.diag import RuntimeFault
from ktapjit.frontend.resolve import ARG_GLOBAL
from ktapjit.interp.frames import EXITED, Machine
from ktapjit.interp.runtime import InternalError, Runtime
from ktapjit.ir.func import Func, Module
from ktapjit.run_api import Result, RunConfig
from ktapjit.semantics.intmath import INT64_MAX, INT64_MIN
from ktapjit.semantics.values import Table

_INTEGER_ARG = re.compile(r"-?[0-9]+")



class InterpEngine:
    """The reference interpreter. ``strict=True`` (for tests) lets internal
    errors (ktapjit bugs) escape as exceptions instead of being reported as
    runtime errors."""

    name = "interp"

    def __init__(self, strict: bool = False):
        self.strict = strict

    def load(self, module: Module, config: RunConfig, out: Callable[[bytes], None]) -> "InterpRun":
        return InterpRun(module, config, out, strict=self.strict)


def script_arg_value(text: str, index: int) -> object:
    """arg[index]: arg[0] stays a string; an integer-looking arg that fits
    int64 becomes an integer; anything else is its bytes as given."""
    if index > 0 and _INTEGER_ARG.fullmatch(text):
        n = int(text)
        if INT64_MIN <= n <= INT64_MAX:
            return n
    return os.fsencode(text)


class InterpRun:
    """One run of a module. See the module docstring for the protocol."""

    def __init__(self, module: Module, config: RunConfig, out: Callable[[bytes], None], strict: bool = False):
        self.module = module
        self.config = config
        self.strict = strict
        self.rt = Runtime(config.limits, len(module.global_names), config.start_time_ns, out, config.host)
        self.machine = Machine(self.rt)
        self.errors: list[RuntimeFault] = []
        self.exit_called = False
        self.tracing = False  # True between a normal start() and exit()/an error
        self._started = False
        self._result: Optional[Result] = None

    # -- the run steps

    def start(self) -> bool:
        """Run the top level. False when no events should follow (exit() or an error)."""
        if self._started:
            raise RuntimeError("InterpRun.start() called twice")
        self._started = True
        try:
            self._set_script_args()
        except RuntimeFault as fault:  # more arguments than --max-table
            self.errors.append(fault)
            return False
        self.tracing = self._run(self.module.main)
        return self.tracing

    def run_probe(self, index: int, event) -> bool:
        """Run probe body ``index`` for ``event`` (an EventContext). False once
        tracing has stopped; then nothing runs."""
        return self._run_for_event(self.module.probes[index].func, event)

    def run_profile(self, index: int, event) -> bool:
        """Run ``profile-N`` timer body ``index`` for one of its samples
        (``event``, an EventContext), as run_probe runs a probe body."""
        return self._run_for_event(self.module.timers[index].func, event)

    def _run_for_event(self, func: Func, event) -> bool:
        if not self.tracing:
            return False
        rt = self.rt
        rt.now_ns = event.time_ns
        rt.event = event
        try:
            self.tracing = self._run(func)
        finally:
            rt.event = None
        return self.tracing

    def run_timer(self, index: int, time_ns: int) -> bool:
        """Run timer body ``index`` at stream time ``time_ns``. False once tracing has stopped."""
        if not self.tracing:
            return False
        self.rt.now_ns = time_ns
        self.tracing = self._run(self.module.timers[index].func)
        return self.tracing

    def finish(self, time_ns: Optional[int] = None) -> Result:
        """Run trace_end (at stream time ``time_ns`` when given) and report.
        Calling it again returns the same result."""
        if self._result is not None:
            return self._result
        if not self._started:
            raise RuntimeError("InterpRun.finish() before start()")
        self.tracing = False
        if time_ns is not None:
            self.rt.now_ns = time_ns
        if self.module.trace_end is not None:
            self._run(self.module.trace_end)
        errors = list(self.errors)
        self._result = Result(
            status=1 if errors else 0,
            error=errors[0] if errors else None,
            exit_called=self.exit_called,
            errors=errors,
        )
        return self._result

    # -- machinery

    def _run(self, func: Func) -> bool:
        """Run one entry function at depth 0. True when it returned normally."""
        try:
            result = self.machine.execute(func)
        except RuntimeFault as fault:
            if self.strict and isinstance(fault, InternalError):
                raise
            self.errors.append(fault)
            return False
        finally:
            self.rt.flush()
        if result is EXITED:
            self.exit_called = True
            return False
        return True

    def _set_script_args(self) -> None:
        names = self.module.global_names
        if ARG_GLOBAL not in names:
            return
        table = Table(self.config.limits.max_table)
        for i, text in enumerate(self.config.script_args):
            table.set(i, script_arg_value(text, i))
        self.rt.globals[names.index(ARG_GLOBAL)] = table
