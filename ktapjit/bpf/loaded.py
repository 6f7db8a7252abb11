"""The ktapjit programs loaded on this machine, by any process: found by
walking the kernel's BPF program ids and keeping the programs bound to a
``ktapjit_src`` map (what ``ktapjit ps`` lists)."""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.source_map import KEY, NAME, Carried, decode


@dataclass
class LoadedSession:
    """One ktapjit session's programs, as the kernel lists them."""

    carried: Carried
    map_id: int
    programs: list[tuple[int, str]] = field(default_factory=list)  # (prog id, name)


def loaded_sessions() -> list[LoadedSession]:
    """Every session with a program loaded now, oldest first. Programs and
    maps that vanish while we look are skipped: their session ended."""
    sessions: dict[int, LoadedSession | None] = {}  # map id -> session; None: not a ktapjit_src map
    for prog_id, info, map_ids in sc.loaded_programs():
        for map_id in map_ids:
            if map_id not in sessions:
                sessions[map_id] = _read_carrier(map_id)
            found = sessions[map_id]
            if found is not None:
                found.programs.append((prog_id, info.name.decode("utf-8", "replace")))
    live = [s for s in sessions.values() if s is not None and s.programs]
    return sorted(live, key=lambda s: (s.carried.started_ns, s.map_id))


def _read_carrier(map_id: int) -> LoadedSession | None:
    fd = sc.fd_by_id(sc.BPF_MAP_GET_FD_BY_ID, map_id)
    if fd is None:
        return None
    try:
        info = sc.map_info(fd)
        if info.name.decode("utf-8", "replace") != NAME or info.type != sc.BPF_MAP_TYPE_ARRAY:
            return None
        value = sc.map_lookup(fd, KEY, info.value_size)
    finally:
        os.close(fd)
    carried = decode(value) if value is not None else None
    return LoadedSession(carried, map_id) if carried is not None else None


def one_line(text: str) -> str:
    """A command line on one row: its newlines and tabs shown as \\n and \\t."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def render(sessions: list[LoadedSession], verbose: bool = False) -> list[str]:
    """``ktapjit ps``'s lines: one per program; with ``verbose``, each
    session's source follows its programs."""
    lines = [f"{'PID':>7}  {'STARTED':19}  {'PROGRAM':15}  COMMAND"]
    for session in sessions:
        carried = session.carried
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(carried.started_ns / 1e9))
        command = one_line(shlex.join(carried.argv))
        for _prog_id, name in session.programs:
            lines.append(f"{carried.pid:>7}  {started:19}  {name:15}  {command}")
        if verbose:
            lines.append(f"{'':7}  source:")
            text = carried.source.decode("utf-8", "replace")
            lines += [f"{'':9}  {line}".rstrip() for line in text.splitlines()]
    return lines
