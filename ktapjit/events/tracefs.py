"""Finding tracefs and the tracepoints it describes.

Every tracepoint lives at ``tracefs/events/SYSTEM/EVENT`` and describes itself
in a ``format`` file (see schema.py). This module locates tracefs (mounting it
when it is absent and we are allowed to), lists events, resolves the globs a
script writes in ``trace EVENTDEF`` (``syscalls:sys_enter_*``, ``sched:*``,
``*:*``) and reads formats.

Every failure is an :class:`EventsError` (errors.py) whose ``str()`` is one line
the user: no permission, tracefs missing, unknown event (with close matches).
"""

from __future__ import annotations

import difflib
import errno
import fnmatch
import os
import re
import subprocess
from pathlib import Path

from ktapjit.events.errors import EventsError, TracefsError, TracefsPermissionError, UnknownEventError
from ktapjit.events.printfmt.closures import parse_printk_formats
from ktapjit.events.schema import EventFormat, FormatError, parse_format

__all__ = [
    "tracefs_root",
    "list_events",
    "resolve_tracepoints",
    "read_format",
    "read_printk_formats",
    "tracepoints_by_id",
]

# Where tracefs lives: its own mount point first, then the legacy path
# inside debugfs (debugfs automounts tracefs there).
_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

# Directories under events/ that are not event systems.
_NOT_SYSTEMS = frozenset({"header_event", "header_page", "enable", "filter"})


def _is_tracefs(path: Path) -> bool:
    # An empty mount point directory has no "events": that tells a mounted
    # tracefs from a bare /sys/kernel/tracing.
    return (path / "events").is_dir()


def _try_mount(path: Path) -> bool:
    """Mount tracefs at *path*; True when it worked. Needs root."""
    if not path.is_dir():
        return False
    try:
        done = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and _is_tracefs(path)


_root_cache: Path | None = None


def tracefs_root() -> Path:
    """The tracefs mount point, mounting tracefs if needed.

    Raises TracefsPermissionError when tracefs is there but unreadable, and
    TracefsError when it is absent and cannot be mounted.
    """
    global _root_cache
    if _root_cache is not None and _is_tracefs(_root_cache):
        return _root_cache
    denied = None
    for path in _CANDIDATES:
        try:
            if _is_tracefs(path):
                _root_cache = path
                return path
            # An unreadable mount point hides "events"; tell that apart from
            # "not mounted" so the user gets the right hint.
            os.listdir(path)
        except PermissionError:
            denied = path
        except OSError:
            pass
    if denied is not None:
        raise TracefsPermissionError(
            f"permission denied reading tracefs at {denied} (run as root)"
        )
    if os.geteuid() == 0 and _try_mount(_CANDIDATES[0]):
        _root_cache = _CANDIDATES[0]
        return _root_cache
    raise TracefsError(
        "tracefs is not mounted at /sys/kernel/tracing and could not be mounted "
        "(try: mount -t tracefs nodev /sys/kernel/tracing as root)"
    )


def _events_dir(root: Path | None) -> Path:
    return (root if root is not None else tracefs_root()) / "events"


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except PermissionError:
        raise TracefsPermissionError(
            f"permission denied reading {path} (run as root)"
        ) from None
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise EventsError(f"cannot read {path}: {exc.strerror}") from None


def list_events(root: Path | None = None) -> list[tuple[str, str]]:
    """Every (system, event) pair perf can open, sorted.

    An event perf can open has an ``id`` file (its perf config). ftrace's
    own entries (``ftrace:bprint``, ``ftrace:kernel_stack``...) have only a
    ``format``: they describe the trace buffer and are no tracepoints, so
    ``perf list`` leaves them out, and so does every glob here."""
    events_dir = _events_dir(root)
    if not events_dir.is_dir():
        raise TracefsError(f"{events_dir} does not exist: is this a tracefs mount?")
    out: list[tuple[str, str]] = []
    for system in _listdir(events_dir):
        sys_dir = events_dir / system
        if system in _NOT_SYSTEMS or not sys_dir.is_dir():
            continue
        for event in _listdir(sys_dir):
            if (sys_dir / event / "id").is_file():
                out.append((system, event))
    out.sort()
    return out


# A glob may use *, ? and [..]; anything else is matched literally.
GLOB_CHARS = re.compile(r"[*?\[]")


def _split_pattern(pattern: str) -> tuple[str, str]:
    text = pattern.strip()
    if text.count(":") != 1:
        raise UnknownEventError(
            f"bad tracepoint '{pattern}': expected SYSTEM:EVENT, e.g. sched:sched_switch"
        )
    system, event = text.split(":")
    if not system or not event:
        raise UnknownEventError(
            f"bad tracepoint '{pattern}': expected SYSTEM:EVENT, e.g. sched:sched_switch"
        )
    return system, event


def _match(glob: str, name: str) -> bool:
    # fnmatchcase: tracepoint names are case-sensitive, and it gives exactly
    # *, ? and [..] ([!..] negates, as in the shell).
    if not GLOB_CHARS.search(glob):
        return glob == name
    return fnmatch.fnmatchcase(name, glob)


def resolve_tracepoints(pattern: str, root: Path | None = None) -> list[tuple[str, str]]:
    """Expand ``SYSTEM:EVENT`` (globs allowed in both parts) to sorted pairs.

    Raises UnknownEventError, suggesting close matches, when nothing matches.
    """
    system_glob, event_glob = _split_pattern(pattern)
    events = list_events(root)
    found = select_tracepoints(system_glob, event_glob, events)
    if found:
        return found
    raise UnknownEventError(_unknown_message(pattern.strip(), events))


def select_tracepoints(system_glob: str, event_glob: str,
                       events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (system, event) pairs of ``events`` matching both globs."""
    return [(s, e) for (s, e) in events if _match(system_glob, s) and _match(event_glob, e)]


def _unknown_message(pattern: str, events: list[tuple[str, str]]) -> str:
    return f"unknown tracepoint '{pattern}'{close_matches_hint(pattern, events)}"


def close_matches_hint(pattern: str, events: list[tuple[str, str]]) -> str:
    """``; did you mean a, b?`` for the names of ``events`` close to ``pattern``, or ''."""
    names = [f"{s}:{e}" for s, e in events]
    # Glob characters would only confuse difflib; compare the literal parts.
    probe = GLOB_CHARS.sub("", pattern)
    close = difflib.get_close_matches(probe, names, n=3, cutoff=0.6)
    if not close:
        # The event part alone often pins it down (wrong system name).
        event_part = probe.split(":", 1)[-1]
        by_event = difflib.get_close_matches(
            event_part, [e for _, e in events], n=3, cutoff=0.75
        )
        close = [n for n in names if n.split(":", 1)[1] in by_event][:3]
    return f"; did you mean {', '.join(close)}?" if close else ""


def read_format(system: str, event: str, root: Path | None = None) -> EventFormat:
    """Read and parse ``events/SYSTEM/EVENT/format``."""
    path = _events_dir(root) / system / event / "format"
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        events = list_events(root)
        raise UnknownEventError(_unknown_message(f"{system}:{event}", events)) from None
    except PermissionError:
        raise TracefsPermissionError(
            f"permission denied reading {path} (run as root)"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise UnknownEventError(f"tracepoint '{system}:{event}' went away") from None
        raise EventsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_format(text, system=system)
    except FormatError as exc:
        raise EventsError(f"{system}:{event}: {exc}") from None


def tracepoints_by_id(ids, root: Path | None = None) -> dict[int, tuple[str, str]]:
    """{id: (system, event)} for those of ``ids`` this kernel has now: what
    a perf attr's ``config`` names. Ids are this boot's, so this answers only
    for recordings made on this machine since it started."""
    wanted, found = set(ids), {}
    for system, event in list_events(root):
        if len(found) == len(wanted):
            break
        try:
            ident = int((_events_dir(root) / system / event / "id").read_text())
        except (OSError, ValueError):
            continue  # gone meanwhile, or no id (not a real event)
        if ident in wanted:
            found[ident] = (system, event)
    return found


def read_printk_formats(root: Path | None = None) -> dict[int, bytes]:
    """Kernel address -> string, from tracefs ``printk_formats``: what a
    ``const char *`` field of tracepoint_string()s points to. Empty when the
    file is missing or unreadable (such fields then print as hex)."""
    path = (root if root is not None else tracefs_root()) / "printk_formats"
    try:
        return parse_printk_formats(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError:
        return {}
