"""Probe sites: many uprobes in one kernel event.

A uprobe glob over a library matches thousands of functions. As one kernel
event each, they cost a grace period each to take down, under the kernel's
global ``event_mutex`` (bench/measured/attach.md: 241 s for libc's 2200).
The kernel lets probes with the same fetch args share one event (a second
``p:GROUP/EVENT`` line with another address appends to it), and enabling or
disabling that event registers or unregisters all of them at once.

So a glob's addresses become the *sites* of one event. Each site's probe
fetches one more argument, the immediate ``ktapjit_site=\\N:u32``: its index
in the event's site table, which names the probes (``malloc``, ``free``...)
as their own events would have been named. The field comes last, after the
script's fetch args, so ``arg0``, ``arg1``... are unchanged; the format a
probe body sees has it removed (``without_site``), as ``argstr`` and
``args`` do not show it.

A recording keeps the site tables in a feature section of its own
(``SITES_FEATURE``): perf ignores feature bits it does not know, and ktapjit
reads the table back to name each sample's probe on replay.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Mapping, Optional

from ktapjit.events.schema import EventFormat

SITE_FIELD = "ktapjit_site"
SITE_TYPE = "u32"
# The last feature bit perf's header has room for: perf numbers its own
# features from 1 up (33 in perf 6.x), and skips set bits it does not know.
SITES_FEATURE = 255
_VERSION = 1


def site_fetcharg(index: int) -> str:
    """The fetch arg that makes a probe's records carry its site index."""
    return f"{SITE_FIELD}=\\{index}:{SITE_TYPE}"


def site_offset(fmt: EventFormat) -> Optional[int]:
    """Where a record of ``fmt`` holds its site index, or None when the
    event has no sites."""
    field = fmt.field(SITE_FIELD)
    if field is None or field.size != 4 or field.dynamic:
        return None
    return field.offset


def without_site(fmt: EventFormat) -> EventFormat:
    """``fmt`` as the probes see it: no site field, in the fields or in the
    print format. The other fields keep their offsets."""
    text, in_format = re.subn(rf" {SITE_FIELD}=%u\"", '"', fmt.print_fmt, count=1)
    text, in_args = re.subn(rf",\s*REC->{SITE_FIELD}\s*$", "", text, count=1)
    if not (in_format and in_args):
        return fmt  # a print format of another shape: argstr shows the site rather than break
    return replace(fmt, fields=[f for f in fmt.fields if f.name != SITE_FIELD], print_fmt=text)


def site_name(sites: tuple[str, ...], raw: bytes, offset: int) -> Optional[str]:
    """The probe name a record's site index gives, or None when the record
    is too short or the index is not in the table (a corrupt record)."""
    if len(raw) < offset + 4:
        return None
    index = int.from_bytes(raw[offset:offset + 4], "little")
    return sites[index] if index < len(sites) else None


@dataclass(frozen=True)
class SiteTable:
    """What a recording keeps of one site event: the file and glob it was
    made for (so a replay finds it for the same glob, or a broader one,
    wherever the file is there) and its probes' names by site index."""

    path: str
    glob: str  # the SYMBOL glob as written
    is_return: bool
    names: tuple[str, ...]


def encode_sites(tables: Mapping[tuple[str, str], SiteTable]) -> bytes:
    """The SITES_FEATURE section: every site event's table, by SYSTEM:EVENT."""
    events = {f"{s}:{e}": {"path": t.path, "glob": t.glob, "return": t.is_return, "names": list(t.names)}
              for (s, e), t in sorted(tables.items())}
    text = json.dumps({"version": _VERSION, "events": events}, separators=(",", ":")).encode()
    return text + b"\0" * (8 - len(text) % 8)  # NUL-padded to 8 bytes, as perf's strings are


class SitesFormatError(ValueError):
    """A SITES_FEATURE section ktapjit cannot read."""


def decode_sites(blob: bytes) -> dict[tuple[str, str], SiteTable]:
    """The tables encode_sites wrote; SitesFormatError (one line) otherwise."""
    try:
        body = json.loads(blob.rstrip(b"\0").decode())
        version, events = body.get("version"), body["events"]
    except (UnicodeDecodeError, ValueError, AttributeError, KeyError) as exc:
        raise SitesFormatError(f"probe site table is not readable: {exc}") from None
    if version != _VERSION:
        raise SitesFormatError(f"probe site table version {version!r}, not {_VERSION}")
    if not isinstance(events, dict):
        raise SitesFormatError("probe site table is not readable: its events are not an object")
    return {_event_key(key): _table(key, entry) for key, entry in events.items()}


def _event_key(key: str) -> tuple[str, str]:
    system, _, event = key.partition(":")
    return system, event


def _table(key: str, entry) -> SiteTable:
    fields = entry if isinstance(entry, dict) else {}
    path, glob, is_return, names = (fields.get(k) for k in ("path", "glob", "return", "names"))
    if not (isinstance(path, str) and isinstance(glob, str) and isinstance(is_return, bool)):
        raise SitesFormatError(f"probe site table of {key} lacks its path, glob or kind")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise SitesFormatError(f"probe site table of {key} holds a name that is not a string")
    return SiteTable(path, glob, is_return, tuple(names))
