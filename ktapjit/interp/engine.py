"""The interpreter as an engine (run_api.py): InterpEngine and InterpRun.

The run's lifecycle (exit(), errors, trace_end) is run_lifecycle.py's; this
module supplies how one entry function executes: on the frame machine
(frames.py), with output flushed to ``out`` before each step returns.
"""

from __future__ import annotations

from typing import Callable

from ktapjit.diag import RuntimeFault
from ktapjit.interp.frames import EXITED, Machine
from ktapjit.interp.runtime import InternalError, Runtime
from ktapjit.ir.func import Func, Module
from ktapjit.run_api import RunConfig
from ktapjit.run_lifecycle import FAILED, RETURNED, RunLifecycle, script_arg_value
from ktapjit.run_lifecycle import EXITED as RUN_EXITED

__all__ = ["InterpEngine", "InterpRun", "script_arg_value"]


class InterpEngine:
    """The reference interpreter. ``strict=True`` (for tests) lets internal
    errors (ktapjit bugs) escape as exceptions instead of being reported as
    runtime errors."""

    name = "interp"

    def __init__(self, strict: bool = False):
        self.strict = strict

    def load(self, module: Module, config: RunConfig, out: Callable[[bytes], None]) -> "InterpRun":
        return InterpRun(module, config, out, strict=self.strict)


class InterpRun(RunLifecycle):
    """One run of a module on the interpreter."""

    def __init__(self, module: Module, config: RunConfig, out: Callable[[bytes], None], strict: bool = False):
        super().__init__(module, config)
        self.strict = strict
        self.rt = Runtime(config.limits, len(module.global_names), config.start_time_ns, out, config.host,
                          config.structured_output)
        self.machine = Machine(self.rt)
        self.rt.host.kernel_symbols.addresses(module.kernel_symbol_names())  # one kallsyms scan for all

    def _set_time(self, time_ns: int) -> None:
        self.rt.now_ns = time_ns

    def _execute(self, func: Func, event) -> str:
        rt = self.rt
        rt.event = event
        try:
            result = self.machine.execute(func)
        except RuntimeFault as fault:
            if self.strict and isinstance(fault, InternalError):
                raise
            self.errors.append(fault)
            return FAILED
        finally:
            rt.event = None
            rt.flush()
        return RUN_EXITED if result is EXITED else RETURNED

    def _set_global(self, index: int, value) -> None:
        self.rt.globals[index] = value

    def global_value(self, index: int):
        """Global slot `index` as it is now: read it before the next step changes it."""
        return self.rt.globals[index]
