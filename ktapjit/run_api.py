"""The surface every engine offers, and the values that cross it.

An engine loads a compiled Module and returns a Run. The caller drives the
run: `start()` executes the top-level statements, events are fed in
(`feed`, `advance`), and `finish()` runs trace_end and returns the Result.
Output is bytes, handed to `out` as soon as the engine produces it, so the
interpreter and the JIT can be compared byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from ktapjit.diag import RuntimeFault

DEFAULT_MAX_LOOP = 1_000_000
DEFAULT_MAX_DEPTH = 200
DEFAULT_MAX_TABLE = 1_000_000
DEFAULT_MAX_STRING = 4096


@dataclass(frozen=True)
class Limits:
    max_loop: int = DEFAULT_MAX_LOOP
    max_depth: int = DEFAULT_MAX_DEPTH
    max_table: int = DEFAULT_MAX_TABLE
    max_string: int = DEFAULT_MAX_STRING


@dataclass(frozen=True)
class RunConfig:
    limits: Limits
    script_args: tuple[str, ...]  # arg[0] is the script path as given
    start_time_ns: int  # stream time before the first event (LANGUAGE.md: event time)


@dataclass
class Result:
    """How a run ended. status: 0 normal or exit(), 1 runtime error."""

    status: int
    error: Optional[RuntimeFault] = None
    exit_called: bool = False


class Run(Protocol):
    def start(self) -> bool:
        """Run the top level. False when no events should follow (exit() or an error)."""

    def finish(self) -> Result:
        """Run trace_end (unless an error happened inside it) and report."""


class Engine(Protocol):
    name: str

    def load(self, module, config: RunConfig, out: Callable[[bytes], None]) -> Run: ...
