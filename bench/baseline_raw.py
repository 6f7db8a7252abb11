"""The raw-record baseline: numba kernels that walk the recording's bytes.

bench/baseline_numba.py times a script's logic over columns decoded
beforehand, which leaves out the work every engine must do: walking the
records. These kernels read the same bytes the JIT's native feed reads (the
data section of the workload's "merged" recording, in one buffer) the way a
careful C programmer would write a tool for exactly this stream:

- each record's header gives its type and size;
- a sample's fields are at offsets fixed by the event's ``sample_type``,
  computed once here in Python, and the tracepoint field at an offset from
  its format;
- the sample id is matched by comparing with the event's few ids;
- ``execname`` comes from COMM records (and FORK, which copies the parent's
  comm), kept in a hash table by tid, as the engines keep it.

Only streams whose samples have one fixed layout up to the RAW data are
walked (no callchain or read values before it); for others the baseline is
reported unavailable, with the reason. The result line each kernel gives is
the script's own summary line, checked against the interpreter's output on
the same recording, as for the column baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from numba import njit

from bench.baseline_numba import BaselineTiming, _slot, time_kernel, timing
from ktapjit.events.records import perf_abi as abi

# The sample fields before RAW, in the order the kernel writes them, and their sizes.
_BEFORE_RAW = (
    (abi.PERF_SAMPLE_IDENTIFIER, 8), (abi.PERF_SAMPLE_IP, 8), (abi.PERF_SAMPLE_TID, 8),
    (abi.PERF_SAMPLE_TIME, 8), (abi.PERF_SAMPLE_ADDR, 8), (abi.PERF_SAMPLE_ID, 8),
    (abi.PERF_SAMPLE_STREAM_ID, 8), (abi.PERF_SAMPLE_CPU, 8), (abi.PERF_SAMPLE_PERIOD, 8),
)
_VARIABLE_BEFORE_RAW = abi.PERF_SAMPLE_READ | abi.PERF_SAMPLE_CALLCHAIN
_HEADER = 8
_SWAPPER = int.from_bytes(b"swapper".ljust(8, b"\0"), "little")
_UNKNOWN = np.int64(-1)  # second comm word of a tid without a COMM record: ":TID"


class Unavailable(Exception):
    """The recording's layout is not one these kernels walk; the text says why."""


@dataclass(frozen=True)
class RawLayout:
    """Where a sample's parts are, in 4-byte words from the record's start."""

    words: np.ndarray  # the data section as uint32 (records are 8-byte aligned)
    samples: int  # PERF_RECORD_SAMPLEs in it
    ids: np.ndarray  # the traced event's sample ids
    id_word: int
    tid_word: int
    field_word: int  # the tracepoint field's first word (-1: no field)


def raw_layout(path: Path, event: str, field: Optional[str]) -> RawLayout:
    from ktapjit.events.records.perfdata import read_perf_data

    with read_perf_data(str(path)) as data:
        ev = next((e for e in data.attrs if _name(data, e) == event), None)
        if ev is None:
            raise Unavailable(f"the recording has no event {event}")
        sample_type = ev.attr.sample_type
        if sample_type & _VARIABLE_BEFORE_RAW or not sample_type & abi.PERF_SAMPLE_RAW:
            raise Unavailable(f"samples of {event} have no fixed layout up to RAW (sample_type {sample_type:#x})")
        offsets = _fixed_offsets(sample_type)
        field_word = -1
        if field is not None:
            system, name = event.split(":")
            f = data.schemas()[(system, name)].field(field)
            byte = _HEADER + offsets["raw"] + 4 + f.offset
            if f.size != 8 or byte % 4:
                raise Unavailable(f"{event}'s field {field} is not an 8-byte field at a 4-byte offset")
            field_word = byte // 4
        blob = np.frombuffer(bytes(data.view[data.data_offset:data.data_offset + data.data_size]), np.uint8)
    words = blob.copy().view(np.uint32)  # a fresh buffer: aligned, and no page faults on the file
    return RawLayout(words, _count_samples(words), np.array(ev.ids, np.int64),
                     (_HEADER + offsets[abi.PERF_SAMPLE_IDENTIFIER]) // 4,
                     (_HEADER + offsets[abi.PERF_SAMPLE_TID]) // 4, field_word)


def _name(data, ev) -> Optional[str]:
    fmt = data.format_of(ev)
    return f"{fmt[0]}:{fmt[1]}" if fmt else None


def _fixed_offsets(sample_type: int) -> dict:
    offsets, at = {}, 0
    for bit, size in _BEFORE_RAW:
        if sample_type & bit:
            offsets[bit] = at
            at += size
    if abi.PERF_SAMPLE_IDENTIFIER not in offsets or abi.PERF_SAMPLE_TID not in offsets:
        raise Unavailable(f"samples carry no IDENTIFIER or TID (sample_type {sample_type:#x})")
    offsets["raw"] = at
    return offsets


@njit(cache=True)
def _count_samples(words):
    n, pos = 0, 0
    while pos < words.size:
        n += words[pos] == 9
        pos += (words[pos + 1] >> 16) >> 2
    return n


@njit(inline="always", cache=True)
def _u64(words, at):
    return np.int64(words[at]) | (np.int64(words[at + 1]) << np.int64(32))


@njit(inline="always", cache=True)
def _traced(words, pos, id_word, ids):
    sid = _u64(words, pos + id_word)
    for i in range(ids.size):
        if ids[i] == sid:
            return True
    return False


@njit(cache=True)
def raw_count_field(words, id_word, ids, field_word, cap):
    """counts[field] += 1 per sample of the event -> (events, distinct keys)."""
    keys = np.empty(cap, np.int64)
    used = np.zeros(cap, np.bool_)
    counts = np.zeros(cap, np.int64)
    events = distinct = pos = 0
    while pos < words.size:
        if words[pos] == 9 and _traced(words, pos, id_word, ids):
            k = _u64(words, pos + field_word)
            i = _slot(keys, used, k)
            if not used[i]:
                used[i] = True
                keys[i] = k
                distinct += 1
            counts[i] += 1
            events += 1
        pos += (words[pos + 1] >> 16) >> 2
    return events, distinct


@njit(inline="always", cache=True)
def _comm_key(comm_lo, comm_hi):
    # The two words of a 16-byte comm, mixed into one slot key; both are kept.
    return comm_lo ^ (comm_hi * np.int64(0x9E3779B97F4A7C15))


@njit(cache=True)
def raw_count_comm(words, id_word, tid_word, ids, tid_cap, cap):
    """counts[execname] += 1 per sample of the event -> (events, distinct comms)."""
    tids = np.empty(tid_cap, np.int64)
    tid_used = np.zeros(tid_cap, np.bool_)
    lo = np.zeros(tid_cap, np.int64)
    hi = np.zeros(tid_cap, np.int64)
    keys = np.empty(cap, np.int64)
    used = np.zeros(cap, np.bool_)
    key_lo = np.zeros(cap, np.int64)
    key_hi = np.zeros(cap, np.int64)
    counts = np.zeros(cap, np.int64)
    mask = np.uint64(cap - 1)
    events = distinct = pos = 0
    while pos < words.size:
        rtype = words[pos]
        if rtype == 9 and _traced(words, pos, id_word, ids):
            tid = np.int64(words[pos + tid_word + 1])
            t = _slot(tids, tid_used, tid)
            if tid_used[t]:
                c_lo, c_hi = lo[t], hi[t]
            elif tid == 0:
                c_lo, c_hi = np.int64(_SWAPPER), np.int64(0)
            else:
                c_lo, c_hi = tid, _UNKNOWN
            k = _comm_key(c_lo, c_hi)
            i = _slot(keys, used, k)
            while used[i] and (key_lo[i] != c_lo or key_hi[i] != c_hi):
                i = (i + np.uint64(1)) & mask  # a mixed-key collision: probe on
            if not used[i]:
                used[i] = True
                keys[i] = k
                key_lo[i], key_hi[i] = c_lo, c_hi
                distinct += 1
            counts[i] += 1
            events += 1
        elif rtype == 3:  # COMM: pid, tid, comm (NUL-padded)
            tid = np.int64(words[pos + 3])
            t = _slot(tids, tid_used, tid)
            tid_used[t] = True
            tids[t] = tid
            lo[t] = _u64(words, pos + 4)
            hi[t] = _u64(words, pos + 6) if _no_zero_byte(lo[t]) else np.int64(0)
        elif rtype == 7:  # FORK: the child starts with its parent's comm
            child, parent = np.int64(words[pos + 4]), np.int64(words[pos + 5])
            p = _slot(tids, tid_used, parent)
            if tid_used[p]:
                c = _slot(tids, tid_used, child)
                tid_used[c] = True
                tids[c] = child
                lo[c], hi[c] = lo[p], hi[p]
        pos += (words[pos + 1] >> 16) >> 2
    return events, distinct


@njit(inline="always", cache=True)
def _no_zero_byte(word):
    # A comm's first 8 bytes without its NUL: the record holds 8 more bytes of
    # it (NUL-padded); otherwise what follows is the sample id, not the comm.
    for shift in range(0, 64, 8):
        if (word >> np.int64(shift)) & np.int64(0xFF) == 0:
            return False
    return True


@dataclass(frozen=True)
class RawKernel:
    event: str
    field: Optional[str]  # None: keyed by execname
    expect: Callable  # (events, distinct) -> the script's summary line

    def prepare(self, layout: RawLayout):
        # Fixed-size tables, as a tool written for this stream would size them
        # (the workloads have a few hundred keys and tasks); measure() checks
        # that the keys found fit at load factor <= 1/2.
        if self.field is None:
            return raw_count_comm, (layout.words, layout.id_word, layout.tid_word, layout.ids, TID_SLOTS, KEY_SLOTS)
        return raw_count_field, (layout.words, layout.id_word, layout.ids, layout.field_word, KEY_SLOTS)


KEY_SLOTS = 1 << 12
TID_SLOTS = 1 << 16

KERNELS = {
    "syscount": RawKernel("raw_syscalls:sys_enter", "id", lambda r: f"{r[0]} system calls, {r[1]} different ones"),
    "count_int_key": RawKernel("raw_syscalls:sys_enter", "id", lambda r: f"{r[0]} events, {r[1]} keys"),
    "count_str_key": RawKernel("raw_syscalls:sys_enter", None, lambda r: f"{r[0]} events, {r[1]} keys"),
}


def measure(name: str, workload: str, path: Path, min_seconds: float, max_reps: int = 1000) -> BaselineTiming:
    """Run raw kernel `name` over the recording's bytes until `min_seconds`
    (at least 3 times). Raises Unavailable when the layout is not walkable."""
    kernel = KERNELS[name]
    layout = raw_layout(path, kernel.event, kernel.field)
    fn, args = kernel.prepare(layout)
    result, compile_s, samples = time_kernel(fn, args, min_seconds, max_reps)
    if 2 * result[1] > KEY_SLOTS:
        raise Unavailable(f"{result[1]} distinct keys: more than the baseline's fixed table holds")
    return timing(workload, layout.samples, samples, compile_s, kernel.expect(result))
