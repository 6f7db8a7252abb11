"""The errors every part of ktapjit.events raises, and their common base.

Each has a ``str()`` that is one line meant for the user. The errors of one
concept (a format file, a perf.data file, an ELF file) subclass
:class:`EventsError` where that concept lives; the ones here are shared, so
that no module imports another just for an exception class.
"""

from __future__ import annotations

__all__ = [
    "EventsError",
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
