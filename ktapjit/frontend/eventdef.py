"""EVENTDEF text (what follows `trace`) to event specifications.

    syscalls:sys_enter_*, sched:sched_switch     tracepoints, with globs
    probe:/bin/bash:readline%return [FETCHARGS]  a uprobe (or uretprobe)
    probe:libc:malloc [FETCHARGS]                a uprobe in a library or program found by name
    probe:do_sys_open [FETCHARGS]                a kprobe
    sdt:/path:provider:name                      a USDT marker
    sdt:/path:name                               (ktap's form) the marker in any provider
    ftrace:function                              the function tracer

A uprobe's or marker's PATH is a path when it holds a '/', else a name
(`libc`, `bash`) that binding looks up (events.probes.probe_targets): the spec
keeps it as written.

Errors carry the character offset inside the EVENTDEF text, which the caller
turns into a source position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


class EventDefError(Exception):
    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class TracepointSpec:
    """`SYSTEM:EVENT`, either part a glob."""

    system: str  # may hold glob characters
    event: str
    text: str
    offset: int


@dataclass(frozen=True)
class UprobeSpec:
    """`probe:PATH:SYMBOL` (or its return probe)."""

    path: str
    symbol: str
    is_return: bool
    fetchargs: tuple[str, ...]
    text: str
    offset: int


@dataclass(frozen=True)
class KprobeSpec:
    """`probe:FUNCTION` (or its return probe)."""

    function: str
    is_return: bool
    fetchargs: tuple[str, ...]
    text: str
    offset: int


@dataclass(frozen=True)
class SdtSpec:
    """`sdt:PATH:PROVIDER:NAME`: a USDT marker."""

    path: str
    provider: str
    name: str
    text: str
    offset: int


@dataclass(frozen=True)
class FtraceSpec:
    """`ftrace:function`."""

    text: str
    offset: int


EventSpec = Union[TracepointSpec, UprobeSpec, KprobeSpec, SdtSpec, FtraceSpec]

_GLOB_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_*?[]!-.")


def parse_eventdef(text: str) -> list[EventSpec]:
    """Split a comma-separated EVENTDEF into specs."""
    specs = []
    offset = 0
    for part in text.split(","):
        stripped = part.strip()
        start = offset + (len(part) - len(part.lstrip()))
        if not stripped:
            raise EventDefError("empty event definition", start)
        specs.append(_parse_one(stripped, start))
        offset += len(part) + 1
    return specs


def _parse_one(text: str, offset: int) -> EventSpec:
    head, sep, rest = text.partition(":")
    if not sep:
        raise EventDefError(f"'{text}' is not an event: expected SYSTEM:EVENT", offset)
    if head == "probe":
        return _parse_probe(rest, text, offset)
    if head == "sdt":
        return _parse_sdt(rest, text, offset)
    if head == "ftrace":
        if rest != "function":
            raise EventDefError(f"unknown ftrace event '{text}': only ftrace:function exists", offset)
        return FtraceSpec(text, offset)
    if " " in text or not rest:
        raise EventDefError(f"'{text}' is not a tracepoint: expected SYSTEM:EVENT", offset)
    for i, ch in enumerate(text):
        if ch != ":" and ch not in _GLOB_OK:
            raise EventDefError(f"unexpected character '{ch}' in event name", offset + i)
    if ":" in rest:
        raise EventDefError(f"'{text}' is not a tracepoint: expected SYSTEM:EVENT", offset)
    return TracepointSpec(head, rest, text, offset)


def _parse_probe(rest: str, text: str, offset: int) -> EventSpec:
    target, *fetchargs = rest.split()
    if not target:
        raise EventDefError("probe: needs a function or /path:symbol", offset)
    is_return = target.endswith("%return")
    if is_return:
        target = target[: -len("%return")]
    # A file: a path (kernel function names have no slash: /usr/bin/x,
    # ./prog), or a name and a symbol (libc:malloc); a kprobe is one word.
    if "/" in target or ":" in target:
        path, sep, symbol = target.rpartition(":")
        if not sep or not path or not symbol:
            raise EventDefError(f"uprobe '{text}' needs /path/to/binary:SYMBOL or LIBRARY:SYMBOL", offset)
        return UprobeSpec(path, symbol, is_return, tuple(fetchargs), text, offset)
    return KprobeSpec(target, is_return, tuple(fetchargs), text, offset)


def _parse_sdt(rest: str, text: str, offset: int) -> SdtSpec:
    path, sep, name = rest.rpartition(":")
    # A path holds no ':' (uprobe_events could not take it): what is left of
    # the last two colons is the path, and a middle part is the provider.
    path2, sep2, provider = path.rpartition(":")
    if not sep2:
        path2, provider = path, "*"  # ktap's sdt:/path:NAME
    if not (sep and path2 and provider and name):
        raise EventDefError(f"USDT probe '{text}' needs sdt:/path:[PROVIDER:]NAME", offset)
    return SdtSpec(path2, provider, name, text, offset)
