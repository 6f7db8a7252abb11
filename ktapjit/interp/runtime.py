"""The mutable state of one interpreter run, shared by every op handler.

A Runtime holds what outlives a single call: the script globals, the printed
identities, the output buffer, the current event time and the current event.
Op handlers (eval.py) close over it, so they reach this state without a
lookup per instruction.
"""

from __future__ import annotations

from typing import Callable, Optional

from ktapjit.diag import RuntimeFault, Span
from ktapjit.run_api import EventContext, Host
from ktapjit.semantics.values import Identities

# Output is handed on at the end of each run step at the latest, and earlier
# once this many pieces are buffered, so memory stays bounded in long loops.
FLUSH_PIECES = 1024


class InternalError(RuntimeFault):
    """A bug in ktapjit, caught at the engine boundary and reported like a
    runtime error (never as a traceback). The original exception is
    ``__cause__``."""

    def __init__(self, message: str, span: Optional[Span] = None):
        super().__init__(f"internal error: {message}", span)


class Runtime:
    """Per-run state: globals, identities, output, time and the current event."""

    __slots__ = ("limits", "host", "globals", "identities", "buf", "_out", "now_ns", "event", "structured")

    def __init__(self, limits, nglobals: int, start_time_ns: int, out: Callable[[bytes], None], host=None,
                 structured: bool = False):
        self.limits = limits
        self.host = host or Host.local()  # num_cpus(), arch(), kernel_v()
        self.globals: list = [None] * nglobals
        self.identities = Identities()
        self.buf: list[bytes] = []
        self._out = out
        self.now_ns = start_time_ns
        self.event: Optional[EventContext] = None
        # Structured: buf holds semantics.output Items and `out` takes a list of them.
        self.structured = structured

    def flush(self) -> None:
        buf = self.buf
        if buf:
            data = list(buf) if self.structured else b"".join(buf)
            buf.clear()  # in place: handlers hold buf.append
            self._out(data)

    def current_event(self) -> EventContext:
        event = self.event
        if event is None:
            raise InternalError("event value read with no current event")
        return event
