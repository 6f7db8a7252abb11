"""`ktapjit list [GLOB] [-v]`: the tracepoints this kernel offers, and with
-v their fields as probe bodies see them (`arg0`.. in order, `args.NAME`)."""

from __future__ import annotations

import fnmatch
from typing import Iterator

from ktapjit.events.probes.dynamic_probes import GROUP_PREFIX
from ktapjit.events.schema import EventFormat, Field
from ktapjit.events.tracefs import list_events, read_format, select_tracepoints
from ktapjit.tracing.plan import arg_field_names


def matching_events(pattern: str | None) -> list[tuple[str, str]]:
    """SYSTEM:EVENT globs match each part; a pattern without `:` matches the
    whole name. Other runs' dynamic probe groups are not the kernel's events."""
    events = [(s, e) for s, e in list_events() if not s.startswith(GROUP_PREFIX)]
    if not pattern:
        return events
    if ":" in pattern:
        system, _, event = pattern.partition(":")
        return select_tracepoints(system, event, events)
    return [(s, e) for s, e in events if fnmatch.fnmatchcase(f"{s}:{e}", pattern)]


def field_text(field: Field) -> str:
    if field.array_len is None or field.dynamic:
        return f"{field.type} {field.name}"
    return f"{field.type} {field.name}[{field.array_len}]"


def field_lines(fmt: EventFormat) -> Iterator[str]:
    slots = {name: i for i, name in enumerate(arg_field_names(fmt)) if i < 10}
    for field in fmt.args():
        slot = f"arg{slots[field.name]}" if field.name in slots else "    "
        yield f"    {slot}  {field_text(field)}"


def listing(pattern: str | None, verbose: bool) -> Iterator[str]:
    for system, event in matching_events(pattern):
        yield f"{system}:{event}"
        if verbose:
            yield from field_lines(read_format(system, event))
