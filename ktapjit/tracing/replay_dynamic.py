"""Binding a recording's uprobes, USDT markers and kprobes: the events a
live run made, found by the names it gave them (RecordedDynamicEvents).

Apart from replay.py so that a replay of tracepoints never imports the
dynamic-probe machinery (events.probes: ELF reading, target lookup):
RecordingUniverse.dynamic imports this module on the first dynamic spec.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Optional

from ktapjit.events.probes.probe_targets import names_library
from ktapjit.events.probes.dynamic_probes import (
    GROUP_PREFIX, RETURN_SUFFIX, event_name, is_glob_symbol, sites_event_name, unique_name,
)
from ktapjit.events.probes.elf import is_glob, is_hex_offset, open_elf
from ktapjit.events.errors import EventsError
from ktapjit.events.tracefs import close_matches_hint
from ktapjit.frontend.eventdef import KprobeSpec, SdtSpec, UprobeSpec


class RecordedDynamicEvents:
    """Binding uprobes, USDT markers and kprobes to a recording.

    A live run creates them in its group `ktapjit_<pid>` (dynamic_probes),
    and a recording stores their formats under that group. Replay finds them
    by the event name the live run gave: the symbol (`add`, `add__return`),
    `FILE_0xOFFSET` for a hex offset, the marker name for USDT, the function
    for a kprobe, made unique with `_1`, `_2`... in binding order, exactly as
    DynamicProbes does (probes with the same target and fetch args share
    events, see plan.dynamic_key). The names of a glob, or of a target with
    several addresses (USDT sites, same-named static functions), come from
    the binary when it can be read here; otherwise a glob matches the
    recorded names and a plain name gives its first event.
    """

    def __init__(self, pairs: list[tuple[str, str]], path: str, site_tables: Optional[dict] = None):
        self.path = path
        self.systems: dict[str, list[str]] = {}  # event name -> ktapjit_* systems holding it
        for system, event in pairs:
            if system.startswith(GROUP_PREFIX):
                self.systems.setdefault(event, []).append(system)
        self.tables = {event: table for (_system, event), table in (site_tables or {}).items()}
        self.taken: set[str] = set()

    def find(self, spec) -> list[tuple[str, str]]:
        names = self._exact_names(spec)
        if names is None:
            names = self._matching_names(spec)
        self.taken.update(names)
        return [(system, name) for name in names for system in self.systems[name]]

    def _unique(self, base: str, reserved: set) -> str:
        return unique_name(base, self.taken, reserved)

    def _exact_names(self, spec) -> Optional[list[str]]:
        """The names a live run gave, when they are all in the recording; else
        None. A glob's is its site event, when its table fits the glob; a
        recording made before site events has one event per function, named
        from the binary when it can be read here."""
        if isinstance(spec, UprobeSpec) and is_glob_symbol(spec.symbol):
            name = self._unique(sites_event_name(spec.path, spec.is_return), set())
            if name in self.systems and name in self.tables and _fits(self.tables[name], spec):
                return [name]
        bases = _live_bases(spec)
        if not bases:
            return None
        names: list[str] = []
        for base in bases:
            names.append(self._unique(base, set(names)))
        return names if all(n in self.systems for n in names) else None

    def _matching_names(self, spec) -> list[str]:
        free = sorted(n for n in self.systems if n not in self.taken)
        if isinstance(spec, UprobeSpec) and is_glob_symbol(spec.symbol):
            # The file is named otherwise here (or not found): the site event
            # whose table says it is of this file, for this glob or a narrower one.
            found = [n for n in free if n in self.tables and _fits(self.tables[n], spec)]
            if found:
                return found[:1]
        if isinstance(spec, (UprobeSpec, SdtSpec)) and is_glob(_pattern(spec)):
            pattern, is_return = _pattern(spec), isinstance(spec, UprobeSpec) and spec.is_return
            found = [n for n in free if n.endswith(RETURN_SUFFIX) == is_return
                     and fnmatch.fnmatchcase(n[:-len(RETURN_SUFFIX)] if is_return else n, pattern)]
            if found:
                return found
            base = pattern
        else:
            base = _base_name(spec)
            name = self._unique(base, set())
            if name in self.systems:
                return [name]
        raise EventsError(self._missing(spec, base))

    def _missing(self, spec, base: str) -> str:
        kind = {UprobeSpec: "uprobe", SdtSpec: "USDT", KprobeSpec: "kprobe"}[type(spec)]
        head = f"no {kind} event '{base}' for '{spec.text}' in recording '{self.path}'"
        if not self.systems:
            return f"{head}: it holds no dynamic events (record them with ktapjit run --record or ktapjit record)"
        known = [(self.systems[n][0], n) for n in sorted(self.systems)]
        hint = close_matches_hint(f"{known[0][0]}:{base}", known)
        if not hint:
            shown = ", ".join(f"{s}:{n}" for s, n in known[:5]) + (", ..." if len(known) > 5 else "")
            hint = f"; it has {shown}"
        globs = [f"'{t.path}:{t.glob}'" for t in self.tables.values()]
        if globs:  # the file probed with a glob, of which this asks a part
            hint += (f"; its glob events ({', '.join(globs[:3])}{', ...' if len(globs) > 3 else ''}) replay "
                     "with that glob or a broader one")
        return head + hint


def _pattern(spec) -> str:
    return spec.symbol if isinstance(spec, UprobeSpec) else spec.name


def _base_name(spec) -> str:
    """The name DynamicProbes gives a plain (non-glob) target."""
    if isinstance(spec, UprobeSpec):
        if is_hex_offset(spec.symbol):
            return event_name(f"{os.path.basename(spec.path)}_{int(spec.symbol, 16):#x}", spec.is_return)
        return event_name(spec.symbol.split("@", 1)[0], spec.is_return)
    if isinstance(spec, SdtSpec):
        return event_name(spec.name)
    return event_name(spec.function.split(":")[-1], spec.is_return)


def _fits(table, spec) -> bool:
    """Whether a recorded site table (probe_sites.SiteTable) is of `spec`'s
    file and kind, and made for its glob or a narrower one: then every probe
    it names is one the glob asks for. (A narrower glob on replay, or one
    function by name, would need only some of its sites: not done.)"""
    if table.is_return != spec.is_return or not _same_file_name(table.path, spec.path):
        return False
    return table.glob == spec.symbol or all(fnmatch.fnmatchcase(name, spec.symbol) for name in _bare(table))


def _same_file_name(recorded: str, path: str) -> bool:
    """The recorded file is `path` (by its name: a recording moves between
    machines), or the library `path` names (`libc` for libc.so.6)."""
    name = os.path.basename(recorded)
    if "/" in path:
        return name == os.path.basename(path)
    return names_library(name, path)


def _bare(table) -> list[str]:
    """The table's probe names as functions: without the return suffix."""
    return [n[:-len(RETURN_SUFFIX)] if table.is_return and n.endswith(RETURN_SUFFIX) else n for n in table.names]


def _live_bases(spec) -> Optional[list[str]]:
    """One base name per event plan.create_dynamic made for `spec` before
    globs became site events, read from the binary as it does; None when
    that cannot be done here."""
    if isinstance(spec, KprobeSpec):
        return [_base_name(spec)]
    try:
        elf = open_elf(spec.path)
        if isinstance(spec, UprobeSpec):
            return [event_name(t.symbol.name if t.symbol else f"{os.path.basename(spec.path)}_{t.offset:#x}",
                               spec.is_return) for t in elf.resolve(spec.symbol)]
        return [event_name(note.name) for note in elf.find_sdt(spec.provider, spec.name)]
    except EventsError:
        return None
