"""The native baseline: hand-written numba kernels doing each script's work.

What a careful C programmer would write for the same question, given the
fields already decoded (bench/columns.py): one pass over the rows with
open-addressing hash tables in flat arrays. Tables are sized up front from
the stream (twice its distinct keys, a power of two) and never grow, which
favours the baseline over any engine that must grow its tables.

Strings are ids (interned, as the JIT's strings are), so a string-keyed
table is an integer-keyed one here; `execname .. " " .. pid` becomes the
pair (comm id, pid) packed in one int64. syscount.kp keys by syscall name
through a number->name table; the mapping is one-to-one, so counting by
number answers the same question.

Each kernel returns the numbers its script prints in one summary line, and
``KERNELS[name].expect`` formats that line, so the baseline is checked
against the interpreter's output (a baseline computing something else
would be a meaningless yardstick).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit

from bench.columns import Columns

_M = np.uint64(0xFF51AFD7ED558CCD)
_S = np.uint64(33)
_ONE = np.uint64(1)


@njit(inline="always", cache=True)
def _slot(keys, used, key):
    """The slot of `key`: where it is, or the free slot where it belongs."""
    mask = np.uint64(keys.size - 1)
    x = np.uint64(key)
    x ^= x >> _S
    x *= _M
    x ^= x >> _S
    i = x & mask
    while used[i] and keys[i] != key:
        i = (i + _ONE) & mask
    return i


def capacity(distinct: int) -> int:
    """A power of two at least twice `distinct` (load factor <= 1/2)."""
    cap = 16
    while cap < 2 * distinct:
        cap <<= 1
    return cap


@njit(cache=True)
def count_by_key(keys_col, cap):
    """counts[key] += 1 per row -> (rows, distinct keys)."""
    keys = np.empty(cap, np.int64)
    used = np.zeros(cap, np.bool_)
    counts = np.zeros(cap, np.int64)
    distinct = 0
    for r in range(keys_col.size):
        k = keys_col[r]
        i = _slot(keys, used, k)
        if not used[i]:
            used[i] = True
            keys[i] = k
            distinct += 1
        counts[i] += 1
    return keys_col.size, distinct


@njit(cache=True)
def count_by_two_keys(first, second, cap1, cap2):
    """by_name[first] += 1; by_pid[(first, second)] += 1 -> (rows, distinct firsts)."""
    k1 = np.empty(cap1, np.int64)
    u1 = np.zeros(cap1, np.bool_)
    c1 = np.zeros(cap1, np.int64)
    k2 = np.empty(cap2, np.int64)
    u2 = np.zeros(cap2, np.bool_)
    c2 = np.zeros(cap2, np.int64)
    distinct = 0
    for r in range(first.size):
        a = first[r]
        i = _slot(k1, u1, a)
        if not u1[i]:
            u1[i] = True
            k1[i] = a
            distinct += 1
        c1[i] += 1
        pair = (a << 32) | (second[r] & 0xFFFFFFFF)
        j = _slot(k2, u2, pair)
        if not u2[j]:
            u2[j] = True
            k2[j] = pair
        c2[j] += 1
    return first.size, distinct


@njit(cache=True)
def filter_count(ret, comm, nr, rejected_comm, cap):
    """filter_heavy.kp: /ret < 0 && ret != -2 && ret != -11 && comm != X/ then
    failed[nr] += 1 -> (matches, distinct nrs)."""
    keys = np.empty(cap, np.int64)
    used = np.zeros(cap, np.bool_)
    counts = np.zeros(cap, np.int64)
    total = 0
    distinct = 0
    for r in range(ret.size):
        v = ret[r]
        if v < 0 and v != -2 and v != -11 and comm[r] != rejected_comm:
            k = nr[r]
            i = _slot(keys, used, k)
            if not used[i]:
                used[i] = True
                keys[i] = k
                distinct += 1
            counts[i] += 1
            total += 1
    return total, distinct


@njit(cache=True)
def _log2(n):
    bits = 0
    while n > 1:
        n >>= 1
        bits += 1
    return bits


@njit(cache=True)
def syscall_latency(event, time, tid, exit_event, cap):
    """syslat.kp: entered[tid] at enter; at exit, the log2 histogram of the
    time since -> (calls timed, exits without an entry)."""
    keys = np.empty(cap, np.int64)
    used = np.zeros(cap, np.bool_)
    present = np.zeros(cap, np.bool_)  # entered[tid] ~= nil
    since = np.zeros(cap, np.int64)
    hist = np.zeros(64, np.int64)
    calls = 0
    unmatched = 0
    slowest = -1
    for r in range(event.size):
        t = tid[r]
        i = _slot(keys, used, t)
        if not used[i]:
            used[i] = True
            keys[i] = t
        if event[r] != exit_event:
            present[i] = True
            since[i] = time[r]
        elif not present[i]:
            unmatched += 1
        else:
            present[i] = False
            ns = time[r] - since[i]
            hist[_log2(ns)] += 1
            calls += 1
            if ns > slowest:
                slowest = ns
    return calls, unmatched


@njit(cache=True)
def sched_accounting(event, time, prev_pid, next_pid, prev_state, woken, switch_event, end_ns, cap):
    """schedtime.kp: run and sleep time per pid from sched_switch and
    sched_wakeup, closed at the stream's end -> (tasks named, ns run, ns slept)."""
    keys = np.empty(cap, np.int64)
    used = np.zeros(cap, np.bool_)
    named = np.zeros(cap, np.bool_)
    on_cpu = np.zeros(cap, np.bool_)
    on_since = np.zeros(cap, np.int64)
    asleep = np.zeros(cap, np.bool_)
    asleep_since = np.zeros(cap, np.int64)
    ran = np.zeros(cap, np.int64)
    slept = np.zeros(cap, np.int64)
    switches = np.zeros(cap, np.int64)
    for r in range(event.size):
        now = time[r]
        if event[r] == switch_event:
            prev = prev_pid[r]
            if prev != 0:
                i = _slot(keys, used, prev)
                used[i] = True
                keys[i] = prev
                named[i] = True
                switches[i] += 1
                if on_cpu[i]:
                    ran[i] += now - on_since[i]
                    on_cpu[i] = False
                state = prev_state[r]
                if (state & 0x30) != 0:
                    asleep[i] = False
                elif (state & 0xFF) != 0:
                    asleep[i] = True
                    asleep_since[i] = now
            nxt = next_pid[r]
            if nxt != 0:
                j = _slot(keys, used, nxt)
                used[j] = True
                keys[j] = nxt
                named[j] = True
                on_cpu[j] = True
                on_since[j] = now
        else:
            w = woken[r]
            i = _slot(keys, used, w)
            if used[i] and asleep[i]:
                slept[i] += now - asleep_since[i]
                asleep[i] = False
    tasks = 0
    total_ran = 0
    total_slept = 0
    for i in range(cap):
        if on_cpu[i]:
            ran[i] += end_ns - on_since[i]
        if asleep[i]:
            slept[i] += end_ns - asleep_since[i]
        if named[i]:
            tasks += 1
            total_ran += ran[i]
            total_slept += slept[i]
    return tasks, total_ran, total_slept


# -- per workload: the kernel's arguments from the columns, and its summary line


def _distinct(*arrays) -> int:
    return int(sum(len(np.unique(a)) for a in arrays)) if arrays else 0


def _syscount(c: Columns):
    return count_by_key, (c.arrays["f_id"], capacity(_distinct(c.arrays["f_id"])))


def _by_process(c: Columns):
    comm, pid = c.arrays["comm"], c.arrays["pid"]
    pairs = len(np.unique((comm << 32) | (pid & 0xFFFFFFFF)))
    return count_by_two_keys, (comm, pid, capacity(_distinct(comm)), capacity(pairs))


def _filter_heavy(c: Columns):
    a = c.arrays
    return filter_count, (a["f_ret"], a["comm"], a["f_id"], c.string_id(b"systemd"), capacity(_distinct(a["f_id"])))


def _syslat(c: Columns):
    a = c.arrays
    exit_event = c.events.index("raw_syscalls:sys_exit")
    return syscall_latency, (a["event"], a["time"], a["tid"], exit_event, capacity(_distinct(a["tid"])))


def _schedtime(c: Columns):
    a = c.arrays
    pids = np.concatenate([a["f_prev_pid"], a["f_next_pid"], a["f_pid"]])
    return sched_accounting, (a["event"], a["time"], a["f_prev_pid"], a["f_next_pid"], a["f_prev_state"],
                              a["f_pid"], c.events.index("sched:sched_switch"), c.end_ns,
                              capacity(_distinct(pids)))


def _ms(ns: int) -> str:
    return f"{ns // 1000000:8d}.{ns // 1000 % 1000:03d}"


@dataclass(frozen=True)
class Kernel:
    prepare: Callable  # Columns -> (kernel, args)
    expect: Callable  # kernel result -> the line the script prints


KERNELS = {
    "syscount": Kernel(_syscount, lambda r: f"{r[0]} system calls, {r[1]} different ones"),
    "count_int_key": Kernel(_syscount, lambda r: f"{r[0]} events, {r[1]} keys"),
    "count_str_key": Kernel(lambda c: (count_by_key, (c.arrays["comm"], capacity(_distinct(c.arrays["comm"])))),
                            lambda r: f"{r[0]} events, {r[1]} keys"),
    "syscount_by_process": Kernel(_by_process, lambda r: f"{r[0]} system calls by {r[1]} process names"),
    "filter_heavy": Kernel(_filter_heavy, lambda r: f"{r[0]} failed system calls, {r[1]} different ones"),
    "syslat": Kernel(_syslat, lambda r: f"{r[0]} system calls timed, {r[1]} exits without an entry"),
    "schedtime": Kernel(_schedtime, lambda r: f"{'(all)':<16s} {r[0]:7d} {_ms(r[1])} {_ms(r[2])}"),
}


@dataclass
class BaselineTiming:
    workload: str
    events: int
    reps: int
    ns_per_event: float  # median over repetitions
    ns_per_event_min: float
    compile_s: float  # the first call: numba compiling (or loading its cache)
    expected_line: str

    @property
    def events_per_s(self) -> float:
        return 1e9 / self.ns_per_event if self.ns_per_event else 0.0

    def as_json(self) -> dict:
        return {"workload": self.workload, "events": self.events, "reps": self.reps,
                "ns_per_event": self.ns_per_event, "ns_per_event_min": self.ns_per_event_min,
                "events_per_s": self.events_per_s, "compile_s": self.compile_s,
                "expected_line": self.expected_line}


def measure(name: str, workload: str, columns: Columns, min_seconds: float, max_reps: int = 1000) -> BaselineTiming:
    """Run kernel `name` over the columns until `min_seconds` (at least 3 times)."""
    kernel = KERNELS[name]
    fn, args = kernel.prepare(columns)
    result, compile_s, samples = time_kernel(fn, args, min_seconds, max_reps)
    return timing(workload, columns.n, samples, compile_s, kernel.expect(result))


def time_kernel(fn, args, min_seconds: float, max_reps: int):
    """(result, compile seconds, sorted ns per call): the first call compiles
    (or loads numba's cache), then calls until `min_seconds`, at least 3."""
    t0 = time.perf_counter()
    result = fn(*args)
    compile_s = time.perf_counter() - t0
    samples, spent = [], 0.0
    while len(samples) < max_reps and (len(samples) < 3 or spent < min_seconds):
        t0 = time.perf_counter_ns()
        fn(*args)
        elapsed = time.perf_counter_ns() - t0
        samples.append(elapsed)
        spent += elapsed / 1e9
    return result, compile_s, sorted(samples)


def timing(workload: str, events: int, samples: list[int], compile_s: float, expected_line: str) -> BaselineTiming:
    n = max(events, 1)
    return BaselineTiming(workload, events, len(samples), samples[len(samples) // 2] / n, samples[0] / n,
                          compile_s, expected_line)
