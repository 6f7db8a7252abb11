"""The fault ring: runtime errors of kernel code reach user space as
(site u32, kind u32, detail i64) records in a BPF ring buffer, and map back
to the interpreter's message at the op's source position (ErrorSite).

A BPF ring buffer is read through mmap: the consumer position on a page of
its own (writable), then the producer position and the data, mapped twice
in a row so that a record that wraps reads as one (read-only). Each record
is an 8-byte header (length, with a busy and a discard bit) and its data,
padded to 8 bytes."""

from __future__ import annotations

import mmap
import struct
from typing import Mapping

from ktapjit.bpf.kernel_plan import ErrorSite
from ktapjit.bpf.objects import Map
from ktapjit.diag import RuntimeFault

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER = 8


class FaultRing:
    """A reader of one ring buffer map; `close()` unmaps it."""

    def __init__(self, ring: Map):
        self.size = ring.max_entries
        page = mmap.PAGESIZE
        self.consumer = mmap.mmap(ring.live_fd(), page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.producer = mmap.mmap(ring.live_fd(), page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ,
                                  offset=page)
        self.data_at = page

    def records(self) -> list[tuple[int, int, int]]:
        """Every (site, kind, detail) written since the last call."""
        out = []
        consumed = struct.unpack_from("<Q", self.consumer, 0)[0]
        produced = struct.unpack_from("<Q", self.producer, 0)[0]
        while consumed < produced:
            at = self.data_at + (consumed & (self.size - 1))
            length, _page_offset = struct.unpack_from("<II", self.producer, at)
            if length & BUSY_BIT:
                break  # still being written: read it next time
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if not length & DISCARD_BIT and size >= 16:
                out.append(struct.unpack_from("<IIq", self.producer, at + HEADER))
            consumed += (HEADER + size + 7) & ~7
        struct.pack_into("<Q", self.consumer, 0, consumed)
        return out

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()

    def __enter__(self) -> "FaultRing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def first_fault(records: list[tuple[int, int, int]], sites: Mapping[int, ErrorSite]) -> RuntimeFault | None:
    """The interpreter's error for the first record (the run stops at it)."""
    for site, _kind, detail in records:
        found = sites.get(site)
        if found is not None:
            return found.fault(detail)
        return RuntimeFault(f"internal error: a BPF program reported unknown error site {site}")
    return None
