"""A ktapjit uprobe event as the kernel holds it, for its BPF program: the
lines of tracefs ``uprobe_events`` for one group/event (one line per
probe: a site event has one per site), read back after the session made it.

A BPF program attached to a uprobe sees the probed task's registers, not
the record the fetch args would fill; so the lowering needs those fetch
args (which register each one reads, probe_regs.py), the kind of probe,
and for a site event where each site is (its file offset), to tell the
sites apart in the kernel. tracefs is where the kernel keeps exactly what
it runs, so that is what is read (the session's DynamicProbes wrote it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ktapjit.events.probes.dynamic_probes import UPROBE_EVENTS
from ktapjit.events.probes.probe_sites import SITE_FIELD
from ktapjit.events.tracefs import tracefs_root

# p:GROUP/EVENT PATH:0xOFFSET[(0xREF_CTR)] [ARG...]  (r: for a return probe)
_LINE = re.compile(r"^(?P<kind>[pr]):(?P<group>[^/\s]+)/(?P<event>\S+) (?P<path>\S+):0x(?P<offset>[0-9a-fA-F]+)"
                   r"(?:\(0x(?P<ref>[0-9a-fA-F]+)\))?(?P<args>(?: \S+)*)\s*$")
_SITE_ARG = re.compile(rf"^{SITE_FIELD}=\\(\d+):u32$")


@dataclass(frozen=True)
class UprobeDefinition:
    """One uprobe event: its kind (uprobe, uretprobe, usdt: a probe with a
    semaphore), its fetch args without the site index, in the kernel's
    syntax, and its probes' file offsets by site index (one for a plain event)."""

    kind: str
    kernel_args: tuple[str, ...]
    offsets: tuple[int, ...]

    @property
    def is_return(self) -> bool:
        return self.kind == "uretprobe"


def read_definition(group: str, event: str, root: Optional[Path] = None) -> Optional[UprobeDefinition]:
    """The event's definition, or None when uprobe_events has no line for it
    (a kprobe, another tracer's event), a line of a shape not known here, or
    cannot be read."""
    try:
        text = ((root or tracefs_root()) / UPROBE_EVENTS).read_text()
    except OSError:
        return None
    return parse_definition(text, group, event)


def parse_definition(text: str, group: str, event: str) -> Optional[UprobeDefinition]:
    kinds, args, offsets = set(), set(), {}
    for line in text.splitlines():
        found = _LINE.match(line)
        if found is None:
            if line.startswith(("p:", "r:")) and f":{group}/{event} " in line:
                return None  # ours, but not understood: the probe stays in user space
            continue
        if (found["group"], found["event"]) != (group, event):
            continue
        fetch = found["args"].split()
        site = [_SITE_ARG.match(a) for a in fetch if a.startswith(f"{SITE_FIELD}=")]
        index = int(site[0].group(1)) if site and site[0] else 0
        if site and not site[0]:
            return None
        kinds.add("uretprobe" if found["kind"] == "r" else "usdt" if found["ref"] else "uprobe")
        args.add(tuple(a for a in fetch if not a.startswith(f"{SITE_FIELD}=")))
        offsets[index] = int(found["offset"], 16)
    if len(kinds) != 1 or len(args) != 1 or sorted(offsets) != list(range(len(offsets))):
        return None
    return UprobeDefinition(kinds.pop(), args.pop(), tuple(offsets[i] for i in range(len(offsets))))
