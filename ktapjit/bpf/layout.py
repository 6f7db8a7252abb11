"""Fixed-size encodings of script values in BPF map keys and values
(docs/bpf.md, "Lowering").

A key is an 8-byte header, `tag u8 | 3 zero bytes | length u32`, then the
payload: an int64 (integers, booleans 0/1) or the bytes of a string,
zero-padded to the map's string slot. Every byte of a key is defined, so
equal script values are equal byte strings and hash alike.

A value is the tagged value as the kernel code holds it, `tag u64 | bits
i64` (bits: the integer, the boolean, or a string's length), the first-insert
stamp `time u64 | cpu u32 | seq u32` (seq 0: this slot was never stored
into), then the string slot. Per-CPU maps hold one such value per CPU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from ktapjit.semantics.intmath import wrap

TAG_NIL, TAG_BOOL, TAG_INT, TAG_STRING = 0, 1, 2, 3
TYPE_NAMES = {TAG_NIL: "nil", TAG_BOOL: "boolean", TAG_INT: "integer", TAG_STRING: "string"}

KEY_HEADER = 8
VALUE_TAG, VALUE_BITS, VALUE_TIME, VALUE_CPU, VALUE_SEQ, VALUE_STRING = 0, 8, 16, 24, 28, 32


def pad8(n: int) -> int:
    return (n + 7) & ~7


def decode_scalar(tag: int, bits: int, text: bytes) -> object:
    if tag == TAG_BOOL:
        return bits != 0
    if tag == TAG_INT:
        return wrap(bits)
    if tag == TAG_STRING:
        return text[:bits]
    return None


@dataclass(frozen=True)
class KeyLayout:
    """Keys of one map: `string_slot` bytes hold its longest string key."""

    string_slot: int = 0

    @property
    def size(self) -> int:
        return KEY_HEADER + max(8, pad8(self.string_slot))

    def encode(self, value: object) -> bytes:
        """The key bytes the kernel builds for `value` (user space writes
        keys this way when it fills a map before the events)."""
        if value is None:
            head, body = struct.pack("<B3xI", TAG_NIL, 0), b""
        elif value is True or value is False:
            head, body = struct.pack("<B3xI", TAG_BOOL, 0), struct.pack("<q", int(value))
        elif type(value) is int:
            head, body = struct.pack("<B3xI", TAG_INT, 0), struct.pack("<q", value)
        elif type(value) is bytes and len(value) <= self.string_slot:
            head, body = struct.pack("<B3xI", TAG_STRING, len(value)), value
        else:
            raise ValueError(f"no key encoding for {value!r} in a {self.string_slot}-byte string slot")
        return (head + body).ljust(self.size, b"\0")

    def fits(self, value: object) -> bool:
        return value is None or type(value) in (bool, int) or (type(value) is bytes
                                                               and len(value) <= self.string_slot)

    def decode(self, raw: bytes) -> object:
        tag, length = struct.unpack_from("<B3xI", raw)
        if tag == TAG_STRING:
            return raw[KEY_HEADER:KEY_HEADER + length]
        return decode_scalar(tag, struct.unpack_from("<q", raw, KEY_HEADER)[0], b"")


@dataclass(frozen=True, order=True)
class Stamp:
    """When a key was first stored into on one CPU: orders as the
    interpreter orders events (time, then CPU, then position)."""

    time: int
    cpu: int
    seq: int


@dataclass(frozen=True)
class ValueLayout:
    string_slot: int = 0
    aggregate: bool = False  # an aggregation map: the layout below
    buckets: int = 0  # its most buckets (hist 65; lhist by its bounds)

    @property
    def size(self) -> int:
        if self.aggregate:
            return agg_value_size(self.buckets)
        return VALUE_STRING + pad8(self.string_slot)

    def decode(self, raw: bytes) -> tuple[object, Optional[Stamp]]:
        """The script value one slot holds and its stamp (None: never stored)."""
        tag, bits, time, cpu, seq = struct.unpack_from("<QqQII", raw)
        value = decode_scalar(tag, bits, raw[VALUE_STRING:VALUE_STRING + self.string_slot])
        return value, (Stamp(time, cpu, seq) if seq else None)

    def encode(self, value: object, stamp: Optional[Stamp] = None) -> bytes:
        if value is None:
            tag, bits, text = TAG_NIL, 0, b""
        elif value is True or value is False:
            tag, bits, text = TAG_BOOL, int(value), b""
        elif type(value) is int:
            tag, bits, text = TAG_INT, value, b""
        elif type(value) is bytes and len(value) <= self.string_slot:
            tag, bits, text = TAG_STRING, len(value), value
        else:
            raise ValueError(f"no value encoding for {value!r} in a {self.string_slot}-byte string slot")
        stamp = stamp or Stamp(0, 0, 0)
        head = struct.pack("<QqQII", tag, bits, stamp.time, stamp.cpu, stamp.seq)
        return (head + text).ljust(self.size, b"\0")


# ------------------------------------------------------------ aggregations
#
# A value of an aggregation map (hist, lhist, stats under any keys) is the
# 32-byte head (tag TAG_HIST/TAG_LHIST/TAG_STATS, the key's stamp), four
# int64 fields, then the buckets: `count u64 | stamp (time u64, cpu u32,
# seq u32)` each, stamped at their first hit (pairs() walks an aggregation's
# buckets in that order). Fields: hist `sum`; lhist `sum min max step`;
# stats `count sum min max`. Bucket i of hist counts INT64_MIN (negatives),
# 0, then 1 << (i - 2); of lhist, below min, then min + (i - 1) * step, and
# the last one max and above.

TAG_HIST, TAG_LHIST, TAG_STATS = 4, 5, 6
AGG_TAGS = {b"hist": TAG_HIST, b"lhist": TAG_LHIST, b"stats": TAG_STATS}
AGG_FIELDS = 32
AGG_BUCKETS = 64
BUCKET = 24
HIST_BUCKETS = 65


def lhist_buckets(lo: int, hi: int, step: int) -> int:
    return (hi - lo) // step + 2


def agg_value_size(buckets: int) -> int:
    return AGG_BUCKETS + BUCKET * buckets


@dataclass(frozen=True)
class AggSlot:
    """One CPU's partial aggregation."""

    kind: bytes
    fields: tuple[int, int, int, int]
    buckets: dict  # bucket key -> (count, Stamp)
    stamp: Optional[Stamp]


def decode_agg(raw: bytes) -> Optional[AggSlot]:
    tag, _bits, time, cpu, seq = struct.unpack_from("<QqQII", raw)
    kind = {v: k for k, v in AGG_TAGS.items()}.get(tag)
    if kind is None:
        return None
    fields = struct.unpack_from("<4q", raw, AGG_FIELDS)
    buckets = {}
    if kind != b"stats":
        keys = hist_bucket_keys() if kind == b"hist" else lhist_bucket_keys(*fields[1:])
        for i, key in enumerate(keys):
            count, b_time, b_cpu, b_seq = struct.unpack_from("<QQII", raw, AGG_BUCKETS + i * BUCKET)
            if b_seq:
                buckets[key] = (count, Stamp(b_time, b_cpu, b_seq))
    return AggSlot(kind, fields, buckets, Stamp(time, cpu, seq) if seq else None)


def hist_bucket_keys() -> list[int]:
    return [-(1 << 63), 0] + [1 << j for j in range(63)]


def lhist_bucket_keys(lo: int, hi: int, step: int) -> list[int]:
    return [-(1 << 63)] + list(range(lo, hi, step)) + [hi]
