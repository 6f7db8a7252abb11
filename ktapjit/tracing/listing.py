"""`ktapjit list [GLOB] [-v]`: the tracepoints this kernel offers, and with
-v their fields as probe bodies see them (`args.NAME`, `arg0`.. in order)."""

from __future__ import annotations

import fnmatch
from typing import Iterator

from ktapjit.events.schema import Field
from ktapjit.events.tracefs import list_events, read_format


def matching_events(pattern: str | None) -> list[tuple[str, str]]:
    """SYSTEM:EVENT globs match each part; a pattern without `:` matches the whole name."""
    events = list_events()
    if not pattern:
        return events
    if ":" in pattern:
        system, _, event = pattern.partition(":")
        return [(s, e) for s, e in events if fnmatch.fnmatchcase(s, system) and fnmatch.fnmatchcase(e, event)]
    return [(s, e) for s, e in events if fnmatch.fnmatchcase(f"{s}:{e}", pattern)]


def field_text(field: Field) -> str:
    if field.array_len is None:
        return f"{field.type} {field.name}"
    if field.dynamic:
        return f"{field.type} {field.name}"
    return f"{field.type} {field.name}[{field.array_len}]"


def listing(pattern: str | None, verbose: bool) -> Iterator[str]:
    for system, event in matching_events(pattern):
        yield f"{system}:{event}"
        if verbose:
            for i, field in enumerate(read_format(system, event).args()):
                slot = f"arg{i}" if i < 10 else "    "
                yield f"    {slot}  {field_text(field)}"
