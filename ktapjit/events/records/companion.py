"""Companion records: memory a small eBPF program read when a tracepoint
fired, carried in the stream beside that tracepoint's sample.

A recording holds only the pointers an event passed; a replay cannot
dereference them. So the kernel reads the memory at event time and writes it
as the raw data of a sample of perf's ``bpf-output`` software event
(PERF_COUNT_SW_BPF_OUTPUT), named COMPANION_EVENT in the stream. The program
runs before the tracepoint's own sample is written, on the same CPU, with
preemption off: a companion is always older than its sample, and the pairing
rule (tracing/companion.py) is "the latest companion of this tracepoint on
this CPU belongs to its next sample there".

The payload (little-endian, fixed size for one tracepoint):

    u32 magic 'KTC1'  u32 tracepoint id (its perf attr config)
    u32 item count    u32 bytes of text room per item (the read bound + 1)
    then per item:
      u8 kind  u8 0  u16 field offset (0 for a task read)
      i32 result: the read helper's return (< 0: a fault; for a string,
          the bytes copied including the NUL)
      u64 value: the pointer read from the field (a string), or the task
          field's value (in_iowait)
      room bytes: the string as copied, NUL-terminated; the last item's
          room is cut after its NUL (the record is as long as it needs)

This module only reads and writes payloads; it knows nothing of scripts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ktapjit.events.records.decode import DecodeError

COMPANION_EVENT = "ktapjit:companion"
MAGIC = 0x3143544B  # b"KTC1" read as a little-endian u32
HEAD = struct.Struct("<IIII")
ITEM = struct.Struct("<BBHiQ")

# What an item holds.
USER_STRING = 1
KERNEL_STRING = 2
IN_IOWAIT = 3
KINDS = {"user_string": USER_STRING, "kernel_string": KERNEL_STRING, "in_iowait": IN_IOWAIT}


@dataclass(frozen=True)
class Item:
    kind: int
    offset: int  # the field's offset in the tracepoint record; 0 for a task read
    result: int
    value: int
    text: bytes  # up to (not including) the first NUL; empty for a task read


@dataclass(frozen=True)
class Companion:
    tracepoint: int
    items: dict[tuple[int, int], Item]  # by (kind, offset)


def payload_size(nitems: int, room: int) -> int:
    return HEAD.size + nitems * (ITEM.size + room)


def parse(raw: bytes, offset: int) -> Companion:
    """The companion in a bpf-output sample's raw data. ``offset`` is the
    sample's byte offset in the stream, for the error a corrupt one raises.
    The kernel pads raw data to 8 bytes: bytes after the items are ignored;
    the last item's text room may be short."""
    if len(raw) < HEAD.size:
        raise DecodeError(f"corrupt companion record: {len(raw)} bytes, shorter than its header", offset)
    magic, tracepoint, count, room = HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise DecodeError(f"corrupt companion record: bad magic 0x{magic:08x}", offset)
    if count and payload_size(count, room) - room > len(raw):
        raise DecodeError(f"corrupt companion record: {count} items of {room} bytes do not fit "
                          f"in its {len(raw)} bytes", offset)
    items = {}
    pos = HEAD.size
    for _ in range(count):
        kind, _pad, field_offset, result, value = ITEM.unpack_from(raw, pos)
        if kind not in KINDS.values():
            raise DecodeError(f"corrupt companion record: unknown item kind {kind}", offset)
        text = b""
        if kind != IN_IOWAIT and result > 0:
            copied = raw[pos + ITEM.size:pos + ITEM.size + min(result, room)]
            text = copied.split(b"\0", 1)[0]
        items[(kind, field_offset)] = Item(kind, field_offset, result, value, text)
        pos += ITEM.size + room
    return Companion(tracepoint, items)


def build(tracepoint: int, room: int, items: list[Item]) -> bytes:
    """A payload, as the kernel program writes it (for tests and synthetic streams)."""
    out = bytearray(HEAD.pack(MAGIC, tracepoint, len(items), room))
    for item in items:
        text = item.text[:max(room - 1, 0)] + b"\0"
        out += ITEM.pack(item.kind, 0, item.offset, item.result, item.value)
        out += text.ljust(room, b"\0")[:room]
    return bytes(out)
