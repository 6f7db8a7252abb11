"""The language's resource limits (LANGUAGE.md): how many loop iterations,
how deep the calls, how many table entries, how long a string. Every stage
that checks or compiles a limit reads it from here: the IR pipeline, each
engine, and the command line that sets them."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_LOOP = 1_000_000
DEFAULT_MAX_DEPTH = 200
DEFAULT_MAX_TABLE = 1_000_000
DEFAULT_MAX_STRING = 4096


@dataclass(frozen=True)
class Limits:
    """The run's resource limits (the --max-* options)."""

    max_loop: int = DEFAULT_MAX_LOOP
    max_depth: int = DEFAULT_MAX_DEPTH
    max_table: int = DEFAULT_MAX_TABLE
    max_string: int = DEFAULT_MAX_STRING
