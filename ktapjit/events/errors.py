"""The errors every part of ktapjit.events raises, and their common base.

Each :class:`EventsError` has a ``str()`` that is one line meant for the
user. The errors of one concept (a format file, a perf.data file, an ELF
file) subclass it where that concept lives; the ones here are shared, so that
no module imports another just for an exception class. :class:`PrintFmtError`
never reaches the user: a print fmt that raises it renders as perf's
"[FAILED TO PARSE]" instead.
"""

from __future__ import annotations

__all__ = [
    "EventsError",
    "PrintFmtError",
    "TracefsError",
    "TracefsPermissionError",
    "UnknownEventError",
]


class EventsError(Exception):
    """Base of every error in ktapjit.events; ``str()`` is one line for the user."""


class TracefsError(EventsError):
    """tracefs is missing and could not be mounted."""


class TracefsPermissionError(EventsError):
    """tracefs exists but we may not read it (usually: not root)."""


class UnknownEventError(EventsError):
    """An event name or glob matched nothing."""


class PrintFmtError(Exception):
    """The print fmt cannot be evaluated; the renderer falls back."""
