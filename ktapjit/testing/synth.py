"""Synthetic event streams: perf record bytes of any size, built from real formats.

DESIGN.md ("The event stream is perf's record stream", *Synthetic*): tests and
benchmarks feed engines the same bytes a live session drains from its rings.
A ``SyntheticStream`` writes exactly that layout: every tracepoint is a
PERF_RECORD_SAMPLE with ``sample_type = IDENTIFIER|TID|TIME|CPU|PERIOD|RAW``
(``perf_ring.SAMPLE_TYPE | RAW``, ``sample_id_all`` set, as ``PerfSession``
opens its events), and the RAW data is the tracepoint record its tracefs
``format`` describes (``common_type`` = the format's id, ``common_pid`` = the
task's tid, dynamic ``__data_loc`` data after the fixed part, as the kernel
lays it out).

API
---
::

    from ktapjit.testing.synth import EventSpec, SyntheticStream, choice, write_perf_data

    stream = SyntheticStream(
        [("syscalls", "sys_enter_openat", None, {"filename": choice(["/etc/passwd", "/tmp/x"])}),
         EventSpec("sched", "sched_switch", weight=0.2)],
        n_events=1_000_000, cpus=2, tasks=16, seed=1)
    data = stream.merged()                  # bytes: every record, time order
    per_cpu = stream.per_cpu()              # {cpu: bytes}, each time ordered
    for chunk in stream.chunks(1 << 20):    # merged, whole records, <= 1 MiB each
        ...
    for rnd in stream.cpu_rounds(1 << 20):  # per drain round: [(cpu, bytes), ...],
        ...                                 # like PerfSession.read_chunks()
    for cpu, chunk in stream.cpu_chunks():  # the same, flattened
        ...
    stream.attr_table()                     # decode.AttrTable for iter_records
    stream.attrs()                          # [(perf_event_attr, ids, name)], live layout
    stream.event_of(sample_id)              # -> (system, event)
    stream.formats(), stream.schemas()      # {(system, event): text / EventFormat}
    stream.stats                            # StreamStats of the last complete pass
    write_perf_data("synth.data", stream)   # for `ktapjit run --replay` and `perf script`

Sample ids are one per (event, CPU), like a live session's per-CPU fds:
``stream.plans[i].ids[cpu]``.

**Event specs.** ``EventSpec(system, event, format=None, fields=None, weight=1.0)``
or a tuple ``(system, event, format, fields[, weight])``. ``format`` is the text
of a tracefs ``format`` file, a parsed ``schema.EventFormat``, or None to load
``SYSTEM/EVENT/format`` with ``load_format`` (the captured files in
tests/data/formats, else tracefs). ``fields`` maps field names to generators;
fields not named get a default by name and type (below). ``weight`` is the
event's relative frequency.

**Field generators.** A value in ``fields`` is one of

- a ``Gen``: ``const(v)``, ``choice(values, weights=None)``, ``ints(lo, hi)``
  (inclusive), ``counter(start=0, step=1)``, ``per_record(fn)``;
- a list or tuple: ``choice`` among its items (use ``const([...])`` for a
  constant array);
- a callable ``fn(draw)``: called per record with a reused ``Draw`` whose
  attributes are ``rng`` (the stream's ``random.Random``), ``index`` (the
  sample's position among all samples), ``time``, ``cpu``, ``pid``, ``tid``,
  ``comm`` and ``event`` ("system:event");
- anything else (int, str, bytes): a constant.

Values are what ``EventFormat.decode`` gives back: ints (masked to the field's
size, sign as the format says), bytes or str for ``char`` arrays and
``__data_loc char[]`` strings, lists of ints for other arrays. A str or bytes
given to a *pointer* field (``const char * filename`` of the syscall
tracepoints: the kernel records the user address, not the string) becomes a
fake user-space address, the same one for the same string; ``stream.user_strings``
maps those addresses back to the strings.

Defaults: ``common_type`` the event id, ``common_pid`` the tid, other
``common_*`` 0; ``__syscall_nr`` the syscall's number (x86-64 or AArch64
table, ``SYSCALL_NUMBERS``), raw_syscalls' ``id`` one of them; ``ret`` a small
byte count or ``-errno``; ``comm``/``pid`` and ``prev_comm``/``prev_pid`` the
current task, other ``X_comm``/``X_pid`` pairs a random task of the pool; other
``char[N]`` and ``__data_loc char[]`` a word (a path when the name mentions
file or path) from a small vocabulary; pointers a plausible kernel (user, for
syscalls) address; ``fd``/``flags``/``mode``/``len``-like ints small values;
other ints uniform in ``[0, min(max, 65535)]``; int arrays lists of those;
odd-sized scalars random bytes.

**Options.** ``n_events`` (samples), ``cpus`` (count), ``tasks`` (pool size,
or a list of ``Task(pid, tid, comm[, ppid])``), ``threads_per_process``,
``start_ns`` (the head COMM records' time; samples come after), ``gap_ns``
(mean gap between consecutive samples, over all CPUs; times strictly
increase), ``gap`` ("exp", "uniform" or "fixed"), ``seed``. Side band:
``churn`` (per sample, the probability that a task exits and a new one forks
from a pool task and execs: EXIT, FORK, COMM with COMM_EXEC), ``lost`` (per
sample, the probability of a PERF_RECORD_LOST of 1..``lost_max`` records),
``track_tasks`` (COMM/FORK/EXIT/LOST carry the id of a ``dummy:tasks``
software event per CPU, as live sessions do; else the first tracepoint's id).
``record_values=True`` keeps, per pass, ``stream.values``: (spec index,
{field: generated value}) per sample in order, for tests.

**Determinism.** The output depends on the specs and options only: a pass
starts a fresh ``random.Random(seed)``, and samples are generated in internal
rounds of ``ROUND`` samples whatever chunk size a caller asks for. Callables
must draw randomness from ``draw.rng`` only. Every pass (``merged()``,
``chunks()``, ...) regenerates the stream; ``stream.stats`` describes the last
complete pass.

**Order.** All records of the stream are in strictly increasing time order;
the head COMM records (one per task, time ``start_ns``) sit on the first
CPU. ``per_cpu()`` and ``cpu_chunks()`` split that order by CPU, so each
CPU's stream is time ordered and a ``merge.StreamMerger`` (or perf's round
rule) reassembles exactly ``merged()``.

**Speed.** Samples are packed with one precompiled ``struct.Struct`` per
event (header, sample fields and the whole fixed part of the RAW data, pad
bytes included), mapped over columns of values generated a round at a time
(randomness drawn in bulk with ``randbytes``); ``__data_loc`` tails are
computed column-wise too. Fields whose layout a single struct cannot express
(overlapping fields, 2-byte data_loc) fall back to ``EventFormat.encode`` per
record. Measured on the 2-core development VM (shared, so +-30%): 1M samples
of one fixed-size event in about 1.5-2 s, of a three-event mix in about
2-3 s; per-record callables, churn and ``record_values`` cost extra.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import random
import struct
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field as dc_field
from itertools import accumulate, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import AttrTable
from ktapjit.events.records.perf_ring import SAMPLE_TYPE, stream_layout
from ktapjit.events.records.perfdata import PerfDataWriter, TracingData
from ktapjit.events.schema import EventFormat, Field, parse_format

__all__ = [
    "EventSpec", "Task", "Draw", "Gen", "SyntheticStream", "StreamStats",
    "const", "choice", "ints", "counter", "per_record", "default_gen",
    "load_format", "format_text", "write_perf_data", "SYSCALL_NUMBERS", "ROUND",
    "HEADER_PAGE", "HEADER_EVENT",
]

# Samples per internal round: the unit of generation, of the per-CPU drain
# rounds and of FINISHED_ROUND in written files. Part of the output's
# definition: changing it changes the bytes for a seed.
ROUND = 4096

SAMPLE_TYPE_RAW = SAMPLE_TYPE | abi.PERF_SAMPLE_RAW
# The sample_id trailer of SAMPLE_TYPE: TID, TIME, CPU, IDENTIFIER.
_TRAILER = struct.Struct("<IIQIIQ")
_HDR = struct.Struct("<IHH")
# header, IDENTIFIER, TID, TIME, CPU(+res), PERIOD, RAW size: 44 bytes.
_SAMPLE_HEAD = "<IHHQIIQIIQI"
_SAMPLE_HEAD_SIZE = struct.calcsize(_SAMPLE_HEAD)
_FINISHED_ROUND = _HDR.pack(abi.PERF_RECORD_FINISHED_ROUND, 0, 8)
_PADS = [bytes(k) for k in range(8)]

# The tracing-data header files of the development VM's tracefs (x86-64, Linux
# 6.18; the same on every 64-bit kernel since 2.6.3x). Built in, so written
# files are the same bytes everywhere and need no tracefs.
HEADER_PAGE = (b"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
               b"\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
               b"\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
               b"\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n")
HEADER_EVENT = (b"# compressed entry header\n\ttype_len    :    5 bits\n"
                b"\ttime_delta  :   27 bits\n\tarray       :   32 bits\n\n"
                b"\tpadding     : type == 29\n\ttime_extend : type == 30\n"
                b"\ttime_stamp : type == 31\n\tdata max type_len  == 28\n")

# Syscall numbers of the syscalls whose formats are captured, and a few more.
_SYSCALLS_X86_64 = {
    "read": 0, "write": 1, "open": 2, "close": 3, "stat": 4, "fstat": 5,
    "poll": 7, "lseek": 8, "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12,
    "ioctl": 16, "pread64": 17, "pwrite64": 18, "nanosleep": 35, "getpid": 39,
    "sendto": 44, "recvfrom": 45, "clone": 56, "execve": 59, "exit": 60,
    "wait4": 61, "kill": 62, "getppid": 110, "futex": 202, "epoll_wait": 232,
    "clock_nanosleep": 230, "exit_group": 231, "openat": 257, "newfstatat": 262,
}
_SYSCALLS_GENERIC = {  # asm-generic (AArch64)
    "read": 63, "write": 64, "close": 57, "lseek": 62, "mmap": 222,
    "mprotect": 226, "munmap": 215, "brk": 214, "ioctl": 29, "pread64": 67,
    "pwrite64": 68, "nanosleep": 101, "getpid": 172, "sendto": 206,
    "recvfrom": 207, "clone": 220, "execve": 221, "exit": 93, "wait4": 260,
    "kill": 129, "getppid": 173, "futex": 98, "clock_nanosleep": 115,
    "exit_group": 94, "openat": 56, "newfstatat": 79, "epoll_pwait": 22,
}
SYSCALL_NUMBERS: dict[str, int] = (
    _SYSCALLS_GENERIC if platform.machine().lower() in ("aarch64", "arm64")
    else _SYSCALLS_X86_64)

_COMMS = [b"bash", b"sshd", b"nginx", b"postgres", b"python3", b"node", b"java",
          b"systemd", b"kworker/0:1", b"cc1", b"make", b"redis-server", b"cron",
          b"rsyslogd", b"containerd", b"sleep", b"grep", b"git", b"vim", b"chrome"]
_WORDS = [b"alpha", b"beta", b"gamma", b"delta", b"eth0", b"lo", b"sda", b"vda1",
          b"nvme0n1", b"kworker", b"events", b"default", b"rcu_sched", b"ext4",
          b"tcp", b"udp", b"mm_percpu_wq", b"writeback", b"timer", b"x"]
_PATHS = [b"/etc/passwd", b"/etc/ld.so.cache", b"/lib/x86_64-linux-gnu/libc.so.6",
          b"/proc/self/stat", b"/tmp/x", b"/var/log/syslog", b"/dev/null",
          b"/usr/bin/python3", b"/home/user/.bashrc", b"/sys/kernel/tracing/trace"]
_RETS = [0, 1, 8, 64, 512, 4096, 0, 1, -2, -11]

_KERNEL_BASE = 0xFFFF888000000000
_USER_BASE = 0x00007F0000000000
# Fake user addresses for strings given to pointer fields.
_STRING_BASE = 0x00005555_0000_0000
_STRING_STRIDE = 0x1000


# --- fast randomness ------------------------------------------------------------------------------
# random.choices costs about 110 ns a value; these draw whole rounds from one
# randbytes() call (C) and map the words to indices: by a mask for powers of
# two (exact), a 16-bit lookup table for m <= 4096 (bias below m / 65536), or
# multiply-shift of wider words (bias below m / 2**32). Bias that small is
# irrelevant to synthetic data.

_U16 = "H"
_U32 = "I" if array("I").itemsize == 4 else "L"
_U64 = "Q"
_POW2_TABLES = {m: bytes(b & (m - 1) for b in range(256)) for m in (2, 4, 8, 16, 32, 64, 128, 256)}


def _words(rng: random.Random, code: str, n: int) -> array:
    a = array(code)
    a.frombytes(rng.randbytes(a.itemsize * n))
    return a


def _indices(rng: random.Random, m: int, n: int) -> list[int]:
    """``n`` uniform random integers in ``[0, m)``."""
    if m <= 1:
        return [0] * n
    table = _POW2_TABLES.get(m)
    if table is not None:
        return list(rng.randbytes(n).translate(table))
    if m <= 1 << 12:  # a table lookup per 16-bit word: bias below m / 65536
        table16 = _scale_table(m)
        return [table16[v] for v in _words(rng, _U16, n)]
    if m <= 1 << 24:
        return [(v * m) >> 32 for v in _words(rng, _U32, n)]
    if m <= 1 << 56:
        return [(v * m) >> 64 for v in _words(rng, _U64, n)]
    return [rng.randrange(m) for _ in range(n)]


_TABLE_BITS = 16


@functools.lru_cache(maxsize=64)
def _scale_table(m: int) -> list[int]:
    return [(v * m) >> 16 for v in range(1 << 16)]


def _weighted_table(cum: Sequence[float]) -> list[int]:
    """Index per 16-bit word for weighted picks (weights resolved to 1/65536;
    an item with a positive weight is never left out)."""
    total = cum[-1]
    n = 1 << _TABLE_BITS
    table = [bisect_right(cum, (k + 0.5) * total / n) for k in range(n)]
    table = [min(i, len(cum) - 1) for i in table]
    seen = set(table)
    prev = 0.0
    for i, c in enumerate(cum):  # give every rare positive weight a slot
        if c > prev and i not in seen:
            table[int(prev / total * n) % n] = i
        prev = c
    return table


def _weighted(rng: random.Random, table: list[int], n: int) -> list[int]:
    return [table[v] for v in _words(rng, _U16, n)]


@functools.lru_cache(maxsize=8)
def _exp_table(mean: float) -> list[int]:
    """Gaps >= 1 ns with an exponential tail and the given mean, by quantile."""
    n = 1 << _TABLE_BITS
    scale = max(mean - 0.5, 1e-9)
    return [1 + int(-math.log(1.0 - (k + 0.5) / n) * scale) for k in range(n)]


# --- tasks and the per-record view ---------------------------------------------------------

@dataclass
class Task:
    """One thread of the pool: ``comm`` is at most 15 bytes (TASK_COMM_LEN)."""

    pid: int
    tid: int
    comm: bytes
    ppid: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.comm, str):
            self.comm = self.comm.encode()
        self.comm = bytes(self.comm[:15])


class Draw:
    """What a per-record callable sees. One instance is reused for every record."""

    __slots__ = ("rng", "index", "time", "cpu", "pid", "tid", "comm", "event")

    def __init__(self, rng: random.Random, event: str):
        self.rng, self.event = rng, event
        self.index = self.time = self.cpu = self.pid = self.tid = 0
        self.comm = b""


class _Cols:
    """The columns of one event's samples within a round."""

    __slots__ = ("n", "idx", "times", "cpus", "slots", "pool", "tids", "pids", "_comms",
                 "_others", "rng", "event")

    def __init__(self, n, idx, times, cpus, slots, pool, rng, event):
        self.n, self.idx, self.times, self.cpus, self.slots = n, idx, times, cpus, slots
        self.pool, self.rng, self.event = pool, rng, event
        self.tids = [pool.tids[s] for s in slots]
        self.pids = [pool.pids[s] for s in slots]
        self._comms = None
        self._others: dict[str, list[int]] = {}

    @property
    def comms(self) -> list[bytes]:
        if self._comms is None:
            comms = self.pool.comms
            self._comms = [comms[s] for s in self.slots]
        return self._comms

    def other_slots(self, prefix: str) -> list[int]:
        """Random pool slots shared by the ``PREFIXcomm``/``PREFIXpid`` fields."""
        if prefix not in self._others:
            self._others[prefix] = _indices(self.rng, len(self.pool.tids), self.n)
        return self._others[prefix]


# --- generators ------------------------------------------------------------------------------

class Gen:
    """A field generator: ``batch(rng, cols)`` returns one value per record.

    ``trusted`` generators produce values already in the field's encoded
    domain (in-range ints, bytes without NUL), so packing skips conversion.
    ``reset()`` runs at the start of every pass.
    """

    trusted = False

    def reset(self) -> None:
        pass

    def batch(self, rng: random.Random, cols: _Cols) -> list:
        raise NotImplementedError


class _Const(Gen):
    def __init__(self, value):
        self.value = value

    def batch(self, rng, cols):
        return repeat(self.value, cols.n)

    def __repr__(self):
        return f"const({self.value!r})"


class _Choice(Gen):
    def __init__(self, values: Sequence, weights: Sequence[float] | None = None):
        self.values = list(values)
        if not self.values:
            raise ValueError("choice() needs at least one value")
        self.table = None
        if weights is not None:
            cum = list(accumulate(weights))
            if len(cum) != len(self.values) or cum[-1] <= 0 or min(weights) < 0:
                raise ValueError("choice(): one weight >= 0 per value, not all 0")
            self.table = _weighted_table(cum)

    def indices(self, rng, n):
        if self.table is not None:
            return _weighted(rng, self.table, n)
        return _indices(rng, len(self.values), n)

    def batch(self, rng, cols):
        values = self.values
        return [values[i] for i in self.indices(rng, cols.n)]

    def __repr__(self):
        return f"choice({self.values!r})"


class _Ints(Gen):
    def __init__(self, lo: int, hi: int, trusted: bool = False):
        if hi < lo:
            raise ValueError(f"ints({lo}, {hi}): empty range")
        self.range = range(lo, hi + 1)
        self.trusted = trusted

    def batch(self, rng, cols):
        lo = self.range.start
        idx = _indices(rng, len(self.range), cols.n)
        return [lo + i for i in idx] if lo else idx

    def __repr__(self):
        return f"ints({self.range.start}, {self.range.stop - 1})"


class _Counter(Gen):
    """start, start+step, ... over the whole pass (per event)."""

    def __init__(self, start: int = 0, step: int = 1):
        self.start, self.step = start, step
        self.next = start

    def reset(self) -> None:
        self.next = self.start

    def batch(self, rng, cols):
        v, step = self.next, self.step
        out = list(range(v, v + step * cols.n, step)) if step else [v] * cols.n
        self.next = v + step * cols.n
        return out


class _PerRecord(Gen):
    def __init__(self, fn: Callable[[Draw], Any]):
        self.fn = fn

    def batch(self, rng, cols):
        fn = self.fn
        d = Draw(rng, cols.event)
        out = []
        append = out.append
        comms = cols.comms
        for j, (i, t, c, p, tid, comm) in enumerate(zip(cols.idx, cols.times, cols.cpus,
                                                        cols.pids, cols.tids, comms)):
            d.index, d.time, d.cpu, d.pid, d.tid, d.comm = i, t, c, p, tid, comm
            append(fn(d))
        return out


def const(value) -> Gen:
    """The same value in every record."""
    return _Const(value)


def choice(values: Sequence, weights: Sequence[float] | None = None) -> Gen:
    """A random item of ``values`` per record (``weights`` relative)."""
    return _Choice(values, weights)


def ints(lo: int, hi: int) -> Gen:
    """A uniform random integer in ``[lo, hi]`` per record."""
    return _Ints(lo, hi)


def counter(start: int = 0, step: int = 1) -> Gen:
    """``start``, ``start + step``, ... in the order the event's samples occur."""
    return _Counter(start, step)


def per_record(fn: Callable[[Draw], Any]) -> Gen:
    """``fn(draw)`` per record (what a bare callable in ``fields`` means)."""
    return _PerRecord(fn)


def _as_gen(value) -> Gen:
    if isinstance(value, Gen):
        return value
    if isinstance(value, (list, tuple)):
        return _Choice(value)
    if callable(value):
        return _PerRecord(value)
    return _Const(value)


# Task-derived defaults ----------------------------------------------------------

class _TaskTid(Gen):
    trusted = True

    def batch(self, rng, cols):
        return cols.tids


class _TaskComm(Gen):
    trusted = True

    def batch(self, rng, cols):
        return cols.comms


class _OtherTid(Gen):
    trusted = True

    def __init__(self, prefix: str):
        self.prefix = prefix

    def batch(self, rng, cols):
        tids = cols.pool.tids
        return [tids[s] for s in cols.other_slots(self.prefix)]


class _OtherComm(_OtherTid):
    def batch(self, rng, cols):
        comms = cols.pool.comms
        return [comms[s] for s in cols.other_slots(self.prefix)]


class _Addr(Gen):
    trusted = True

    def __init__(self, base: int):
        self.base = base

    def batch(self, rng, cols):
        base = self.base
        return [base + (r << 6) for r in _indices(rng, 1 << 22, cols.n)]


class _IntArray(Gen):
    trusted = True

    def __init__(self, count: int, hi: int):
        self.count, self.hi = count, hi

    def batch(self, rng, cols):
        flat = _indices(rng, self.hi + 1, cols.n * self.count)
        c = self.count
        return [flat[i:i + c] for i in range(0, len(flat), c)]


class _DynIntArray(Gen):
    trusted = True

    def __init__(self, hi: int):
        self.hi = hi

    def batch(self, rng, cols):
        flat = _indices(rng, self.hi + 1, 2 * cols.n)
        return [flat[2 * i:2 * i + 1 + (flat[2 * i] & 1)] for i in range(cols.n)]


class _RandBytes(Gen):
    trusted = True

    def __init__(self, size: int):
        self.size = size

    def batch(self, rng, cols):
        return [rng.randbytes(self.size) for _ in range(cols.n)]


class _TrustedChoice(_Choice):
    trusted = True


def _int_limits(f: Field, size: int | None = None) -> tuple[int, int]:
    bits = 8 * (size or f.size)
    if f.signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _small(f: Field, hi: int, size: int | None = None) -> int:
    return min(hi, _int_limits(f, size)[1])


def default_gen(fmt: EventFormat, f: Field, ncpus: int = 1) -> Gen:
    """The generator a field gets when the spec does not name it."""
    name, system = f.name, fmt.system or ""
    if name == "common_type":
        return _Const(fmt.id)
    if name == "common_pid":
        return _TaskTid()
    if name.startswith("common_"):
        return _Const(0)
    if name == "__syscall_nr":
        nr = SYSCALL_NUMBERS.get(fmt.name.split("_", 2)[-1]) \
            if fmt.name.startswith(("sys_enter_", "sys_exit_")) else None
        return _Const(nr) if nr is not None else _Ints(0, 450, trusted=True)
    if system == "raw_syscalls" and name == "id":
        return _TrustedChoice(sorted(SYSCALL_NUMBERS.values()))
    if name == "ret" and f.is_pointer is False and f.array_len is None and f.signed:
        return _TrustedChoice(_RETS)
    if f.dynamic:
        if f.is_string:
            return _TrustedChoice(_PATHS if ("file" in name or "path" in name) else _WORDS)
        return _DynIntArray(_small(f, 255, f.elem_size))
    if f.is_string:  # char name[N]
        if name.endswith("comm"):
            prefix = name[:-4]
            return _TaskComm() if prefix in ("", "prev_") else _OtherComm(prefix)
        return _TrustedChoice([w[:max(f.size - 1, 0)] for w in _WORDS])
    if f.array_len is not None:
        if f.elem_size in (1, 2, 4, 8) and f.array_len:
            return _IntArray(f.array_len, _small(f, 4096, f.elem_size))
        return _RandBytes(f.size)
    if f.size not in (1, 2, 4, 8):
        return _RandBytes(f.size)
    if f.is_pointer:
        return _Addr(_USER_BASE if system == "syscalls" else _KERNEL_BASE) \
            if f.size == 8 else _Ints(0, _int_limits(f)[1], trusted=True)
    if f.size == 4 and (name in ("pid", "tid", "tgid") or name.endswith("_pid")):
        prefix = name[:-3]
        return _TaskTid() if prefix in ("", "prev_") else _OtherTid(prefix)
    lname = name.lower()
    if lname == "cpu" or lname.endswith("_cpu") or lname == "cpu_id":
        return _Ints(0, min(ncpus - 1, _int_limits(f)[1]), trusted=True)
    if lname.endswith("prio") and _int_limits(f)[1] >= 139:
        return _TrustedChoice([100, 120, 120, 120, 139])
    if "bool" in f.type or f.type.strip() == "_Bool":
        return _TrustedChoice([0, 1])
    if lname in ("fd", "dfd", "ufd") or lname.endswith("_fd"):
        return _Ints(0, _small(f, 63), trusted=True)
    if "flags" in lname or lname in ("mode", "state", "prev_state", "op", "cmd"):
        return _TrustedChoice([v for v in (0, 1, 2, 4, 0x80, 0x241) if v <= _int_limits(f)[1]])
    if any(w in lname for w in ("len", "size", "count", "bytes", "nr")):
        return _Ints(0, _small(f, 4096), trusted=True)
    return _Ints(0, _small(f, 65535), trusted=True)


# --- formats -------------------------------------------------------------------------------

def _formats_root() -> Path | None:
    here = Path(__file__).resolve().parents[2] / "tests" / "data" / "formats"
    return here if here.is_dir() else None


def load_format(system: str, event: str, root: str | os.PathLike | None = None) -> str:
    """The text of ``SYSTEM/EVENT/format``: under ``root`` if given, else the
    captured files in tests/data/formats, else tracefs."""
    candidates = []
    if root is not None:
        candidates.append(Path(root))
    else:
        captured = _formats_root()
        if captured is not None:
            candidates.append(captured)
        try:
            from ktapjit.events.tracefs import tracefs_root
            candidates.append(tracefs_root() / "events")
        except Exception:  # no tracefs: only the captured files
            pass
    for base in candidates:
        path = base / system / event / "format"
        try:
            return path.read_text()
        except OSError:
            continue
    raise FileNotFoundError(f"no format file for {system}:{event} "
                            f"(looked under {', '.join(str(c) for c in candidates)})")


def format_text(fmt: EventFormat) -> str:
    """A tracefs format file for a parsed ``EventFormat`` (for tracing data)."""
    lines = [f"name: {fmt.name}", f"ID: {fmt.id}", "format:"]

    def decl(f: Field) -> str:
        if f.dynamic or f.array_len is None:
            return f"{f.type} {f.name}"
        return f"{f.type} {f.name}[{f.array_len}]"

    for group in (fmt.common_fields, fmt.fields):
        for f in group:
            lines.append(f"\tfield:{decl(f)};\toffset:{f.offset};\tsize:{f.size};"
                         f"\tsigned:{int(f.signed)};")
        lines.append("")
    lines.append(f"print fmt: {fmt.print_fmt}")
    return "\n".join(lines) + "\n"


@dataclass
class EventSpec:
    """One tracepoint of a synthetic stream (see the module docstring)."""

    system: str
    event: str
    format: str | EventFormat | None = None
    fields: Mapping[str, Any] | None = None
    weight: float = 1.0

    @classmethod
    def of(cls, spec) -> "EventSpec":
        if isinstance(spec, EventSpec):
            return spec
        if isinstance(spec, str):
            system, _, event = spec.partition(":")
            return cls(system, event)
        return cls(*spec)


# --- packing one event ------------------------------------------------------------------------

_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


class _FieldPlan:
    __slots__ = ("field", "gen", "code", "conv", "kind", "cache")

    def __init__(self, f: Field, gen: Gen, stream: "SyntheticStream"):
        self.field, self.gen = f, gen
        self.cache: dict | None = None
        if f.dynamic:
            self.kind = "dyn"
            self.code = "I" if f.size == 4 else "H"
            safe = _dyn_conv(f, stream)
            fast = (lambda v: v + b"\0") if f.is_string else safe
            if not f.is_string and f.elem_size in _INT_CODES:
                # In-range int lists (struct caches the compiled formats).
                code = _INT_CODES[f.elem_size].upper()
                fast = lambda v, code=code: struct.pack(f"<{len(v)}{code}", *v)
        elif f.array_len is None and f.size in _INT_CODES:
            self.kind = "int"
            code = _INT_CODES[f.size]
            self.code = code if f.signed else code.upper()
            safe, fast = _int_conv(f, stream), None
        else:
            self.kind = "bytes"
            self.code = f"{f.size}s"
            safe = _bytes_conv(f)
            fast = None if (f.is_string or f.array_len is None) else safe
            if fast is not None and f.elem_size in _INT_CODES and f.array_len:
                # In-range int lists: one pack per array.
                pack = struct.Struct(f"<{f.array_len}{_INT_CODES[f.elem_size].upper()}").pack
                fast = lambda v, pack=pack: pack(*v)
        self.conv = fast if gen.trusted else safe

    def column(self, rng, cols: _Cols, keep: bool):
        """(encoded column, generated values or None) for this round's records."""
        gen, conv = self.gen, self.conv
        if isinstance(gen, _Const):
            if self.cache is None:
                self.cache = {"v": conv(gen.value) if conv else gen.value}
            return repeat(self.cache["v"], cols.n), repeat(gen.value, cols.n)
        if isinstance(gen, _Choice):
            idx = gen.indices(rng, cols.n)
            if self.cache is None:
                self.cache = {"enc": [conv(v) for v in gen.values] if conv else gen.values}
            enc, values = self.cache["enc"], gen.values
            return [enc[i] for i in idx], [values[i] for i in idx] if keep else None
        values = gen.batch(rng, cols)
        if conv is None:
            return values, values
        if not isinstance(values, list):
            values = list(values)
        return list(map(conv, values)), values


def _int_conv(f: Field, stream: "SyntheticStream") -> Callable:
    bits = 8 * f.size
    mask, top = (1 << bits) - 1, 1 << bits
    half = 1 << (bits - 1)
    signed, pointer = f.signed, f.is_pointer

    def conv(v):
        if v.__class__ is not int:
            if isinstance(v, (str, bytes, bytearray)):
                if pointer:
                    v = stream._string_address(v)
                else:
                    raw = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
                    v = int.from_bytes(raw[:f.size].ljust(f.size, b"\0"), "little")
            elif v is None:
                v = 0
            else:
                v = int(v)
        v &= mask
        return v - top if signed and v >= half else v

    return conv


def _elem_bytes(f: Field, value, elem: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if not isinstance(value, (list, tuple)) and isinstance(value, Mapping):
        value = [value[k] for k in sorted(k for k in value if isinstance(k, int))]
    if isinstance(value, (list, tuple)):
        m = (1 << (8 * elem)) - 1
        return b"".join((int(v) & m).to_bytes(elem, "little") for v in value)
    if value is None:
        return b""
    raise TypeError(f"field '{f.name}': cannot encode {type(value).__name__} {value!r}")


def _bytes_conv(f: Field) -> Callable:
    size, elem = f.size, f.elem_size or 1
    if f.array_len is None:  # an odd-sized scalar: its bytes
        return lambda v: _elem_bytes(f, v, size) if not isinstance(v, int) \
            else (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return lambda v: _elem_bytes(f, v, elem)  # "Ns" pads and truncates


def _dyn_conv(f: Field, stream) -> Callable:
    elem = f.elem_size or 1
    if f.is_string:
        return lambda v: _elem_bytes(f, v, 1).split(b"\0", 1)[0] + b"\0"
    return lambda v: _elem_bytes(f, v, elem)


class _EventPlan:
    """Everything precomputed to emit one event's samples."""

    def __init__(self, index: int, spec: EventSpec, stream: "SyntheticStream"):
        self.index, self.spec = index, spec
        fmt = spec.format
        if fmt is None:
            fmt = load_format(spec.system, spec.event)
        if isinstance(fmt, EventFormat):
            self.fmt = fmt
            self.text = format_text(fmt)
        else:
            self.text = fmt
            self.fmt = parse_format(fmt, system=spec.system)
        if self.fmt.name != spec.event:
            raise ValueError(f"format of '{self.fmt.name}' given for {spec.system}:{spec.event}")
        self.name = f"{spec.system}:{spec.event}"
        overrides = dict(spec.fields or {})
        unknown = [k for k in overrides if self.fmt.field(k) is None]
        if unknown:
            raise ValueError(f"{self.name} has no field {', '.join(map(repr, unknown))}")
        self.fields = [_FieldPlan(f, _as_gen(overrides[f.name]) if f.name in overrides
                                  else default_gen(self.fmt, f, stream.ncpus), stream)
                       for f in self.fmt.all_fields]
        self.names = [p.field.name for p in self.fields]
        self.ids: list[int] = []
        self._layout()

    def _layout(self) -> None:
        """One struct for header + sample fields + the fixed RAW part, fields in
        offset order with pad bytes between; or None (overlapping fields, old
        2-byte data_loc): then ``EventFormat.encode`` per record."""
        order = sorted(range(len(self.fields)), key=lambda i: self.fields[i].field.offset)
        codes, pos, ok = [], 0, True
        for i in order:
            f = self.fields[i].field
            if f.offset < pos or (f.dynamic and f.size != 4):
                ok = False
                break
            if f.offset > pos:
                codes.append(f"{f.offset - pos}x")
            codes.append(self.fields[i].code)
            pos = f.offset + f.size
        self.fixed_size = self.fmt.fixed_size
        self.order = order
        self.dyn = [j for j, i in enumerate(order) if self.fields[i].kind == "dyn"]
        # For __rel_loc, locations count from the end of the field itself.
        self.dyn_rel = [self.fields[order[j]].field.offset + self.fields[order[j]].field.size
                        if self.fields[order[j]].field.relative else 0 for j in self.dyn]
        # Data goes in field (format) order, as EventFormat.encode does.
        self.dyn_field_order = sorted(self.dyn, key=lambda j: order[j])
        if not ok:
            self.struct = None
            return
        raw = self.fixed_size
        padded = ((raw + 4 + 7) & ~7) - 4
        tail = f"{padded - raw}x" if not self.dyn and padded > raw else ""
        self.struct = struct.Struct(_SAMPLE_HEAD + "".join(codes) + tail)
        self.static_size = _SAMPLE_HEAD_SIZE + padded
        self.static_raw = padded

    def records(self, rng, cols: _Cols, keep_values: bool) -> tuple[list[bytes], list | None]:
        n = cols.n
        enc, vals = [], []
        for p in self.fields:
            e, v = p.column(rng, cols, keep_values)
            enc.append(e)
            vals.append(v)
        ids = self.ids
        idcol = [ids[c] for c in cols.cpus]
        values = None
        if keep_values:
            names = self.names
            values = [dict(zip(names, row)) for row in zip(*vals)] if vals else [{}] * n
        if self.struct is None:
            return self._generic(cols, idcol, enc), values
        ordered = [enc[i] for i in self.order]
        misc = abi.PERF_RECORD_MISC_KERNEL
        if not self.dyn:
            recs = list(map(self.struct.pack, repeat(abi.PERF_RECORD_SAMPLE, n),
                            repeat(misc, n), repeat(self.static_size, n), idcol,
                            cols.pids, cols.tids, cols.times, cols.cpus, repeat(0, n),
                            repeat(1, n), repeat(self.static_raw, n), *ordered))
            return recs, values
        return self._dynamic(n, idcol, cols, ordered, misc), values

    def _dynamic(self, n, idcol, cols, ordered, misc) -> list[bytes]:
        """Samples with __data_loc fields: the location words, sizes and tails
        are computed column-wise, then one pack per record plus its tail."""
        columns = list(ordered)
        starts = [self.fixed_size] * n
        tails = []
        for j in self.dyn_field_order:
            datas = ordered[j] if isinstance(ordered[j], list) else list(ordered[j])
            lens = list(map(len, datas))
            rel = self.dyn_rel[self.dyn.index(j)]
            columns[j] = [((ln & 0xFFFF) << 16) | ((st - rel) & 0xFFFF)
                          for ln, st in zip(lens, starts)]
            starts = list(map(int.__add__, starts, lens))
            tails.append(datas)
        padded = [((st + 11) & ~7) - 4 for st in starts]
        if _SAMPLE_HEAD_SIZE + max(padded) > 0xFFFF:
            raise ValueError(f"{self.name}: a sample of {_SAMPLE_HEAD_SIZE + max(padded)} bytes "
                             "does not fit a perf record (64 KiB); shorten the dynamic fields")
        tails.append([_PADS[p - st] for p, st in zip(padded, starts)])
        heads = map(self.struct.pack, repeat(abi.PERF_RECORD_SAMPLE, n), repeat(misc, n),
                    [_SAMPLE_HEAD_SIZE + p for p in padded], idcol, cols.pids, cols.tids,
                    cols.times, cols.cpus, repeat(0, n), repeat(1, n), padded, *columns)
        return list(map(b"".join, zip(heads, *tails)))

    def _generic(self, cols, idcol, enc) -> list[bytes]:
        head = struct.Struct(_SAMPLE_HEAD)
        names = self.names
        columns = [list(c) if not isinstance(c, list) else c for c in enc]
        out = []
        for k, row in enumerate(zip(*columns)):
            raw = self.fmt.encode(dict(zip(names, row)))
            padded = ((len(raw) + 11) & ~7) - 4
            size = _SAMPLE_HEAD_SIZE + padded
            if size > 0xFFFF:
                raise ValueError(f"{self.name}: a sample of {size} bytes does not fit "
                                 "a perf record (64 KiB)")
            out.append(head.pack(abi.PERF_RECORD_SAMPLE, abi.PERF_RECORD_MISC_KERNEL, size,
                                 idcol[k], cols.pids[k], cols.tids[k], cols.times[k],
                                 cols.cpus[k], 0, 1, padded)
                       + raw + bytes(padded - len(raw)))
        return out


# --- the stream ----------------------------------------------------------------------------------

class _Pool:
    """The task pool of one pass: slots whose occupants change with churn."""

    def __init__(self, tasks: list[Task]):
        self.pids = [t.pid for t in tasks]
        self.tids = [t.tid for t in tasks]
        self.comms = [t.comm for t in tasks]
        self.ppids = [t.ppid for t in tasks]


@dataclass
class StreamStats:
    """What the last complete pass produced."""

    samples: int = 0
    per_event: dict[str, int] = dc_field(default_factory=dict)
    comm: int = 0
    comm_exec: int = 0
    fork: int = 0
    exit: int = 0
    lost_records: int = 0
    lost: int = 0
    bytes: int = 0
    first_time: int = 0
    last_time: int = 0


class SyntheticStream:
    """A deterministic perf record stream (see the module docstring)."""

    def __init__(self, specs: Iterable, n_events: int = 10_000, *, cpus: int = 2,
                 tasks: int | Sequence[Task] = 8, threads_per_process: int = 1,
                 start_ns: int = 1_000_000_000, gap_ns: float = 1000.0, gap: str = "exp",
                 seed: int = 0, churn: float = 0.0, lost: float = 0.0, lost_max: int = 100,
                 track_tasks: bool = True, record_values: bool = False,
                 comms: Sequence[bytes | str] | None = None, id_base: int = 1000):
        self.specs = [EventSpec.of(s) for s in specs]
        if not self.specs:
            raise ValueError("a synthetic stream needs at least one event")
        if cpus < 1:
            raise ValueError("cpus must be at least 1")
        if gap not in ("exp", "uniform", "fixed"):
            raise ValueError(f"gap must be 'exp', 'uniform' or 'fixed', not {gap!r}")
        if gap_ns < 1:
            raise ValueError("gap_ns must be at least 1")
        for what, p in (("churn", churn), ("lost", lost)):
            if not 0 <= p < 1:
                raise ValueError(f"{what} is a probability per sample, in [0, 1)")
        self.n_events, self.ncpus, self.seed = int(n_events), int(cpus), seed
        self.start_ns, self.gap_ns, self.gap = int(start_ns), float(gap_ns), gap
        self.churn, self.lost, self.lost_max = churn, lost, max(1, int(lost_max))
        self.track_tasks, self.record_values = track_tasks, record_values
        self.user_strings: dict[int, bytes] = {}
        self._string_addr: dict[bytes, int] = {}
        self.plans = [_EventPlan(i, s, self) for i, s in enumerate(self.specs)]
        keys = [p.name for p in self.plans]
        if len(set(keys)) != len(keys):
            raise ValueError("an event appears twice in the specs; merge their weights")
        # Sample ids: one per (event, cpu), as a live session's per-CPU fds.
        next_id = id_base
        for plan in self.plans:
            plan.ids = list(range(next_id, next_id + self.ncpus))
            next_id += self.ncpus
        self.tracker_ids = list(range(next_id, next_id + self.ncpus)) if track_tasks else None
        self.side_ids = self.tracker_ids or self.plans[0].ids
        self.tasks = self._make_tasks(tasks, threads_per_process, comms)
        self.weights = list(accumulate(s.weight for s in self.specs))
        if any(s.weight < 0 for s in self.specs) or self.weights[-1] <= 0:
            raise ValueError("event weights must be >= 0 and not all 0")
        self._ev_table = _weighted_table(self.weights) if len(self.plans) > 1 else None
        self.stats = StreamStats()
        self.values: list[tuple[int, dict]] = []

    # -- description ------------------------------------------------------------------------

    def _make_tasks(self, tasks, per_process: int, comms) -> list[Task]:
        if not isinstance(tasks, int):
            out = [t if isinstance(t, Task) else Task(*t) for t in tasks]
            if not out:
                raise ValueError("the task pool is empty")
            self._next_pid = max(max(t.pid, t.tid) for t in out) + 100
            return out
        if tasks < 1:
            raise ValueError("tasks must be at least 1")
        names = [c.encode() if isinstance(c, str) else bytes(c) for c in (comms or _COMMS)]
        rng = random.Random(f"tasks:{self.seed}")
        out, pid = [], 1000
        per_process = max(1, per_process)
        while len(out) < tasks:
            pid += rng.randint(1, 40)
            comm = names[(len(out) // per_process) % len(names)]
            for k in range(min(per_process, tasks - len(out))):
                out.append(Task(pid, pid + k, comm, 1))
            pid += per_process
        self._next_pid = pid + 100
        return out

    def attrs(self) -> list[tuple[abi.perf_event_attr, list[int], str]]:
        """(attr, ids, name) per event, as ``PerfSession.attrs()`` gives them."""
        out = []
        for plan in self.plans:
            attr = abi.perf_event_attr(type=abi.PERF_TYPE_TRACEPOINT, config=plan.fmt.id,
                                       sample_period=1, sample_type=SAMPLE_TYPE_RAW)
            out.append((stream_layout(attr), list(plan.ids), plan.name))
        if self.tracker_ids:
            attr = abi.perf_event_attr(type=abi.PERF_TYPE_SOFTWARE,
                                       config=abi.PERF_COUNT_SW_DUMMY, sample_period=1,
                                       sample_type=SAMPLE_TYPE, comm=1, comm_exec=1, task=1)
            out.append((stream_layout(attr), list(self.tracker_ids), "dummy:tasks"))
        return out

    def attr_table(self) -> AttrTable:
        table = AttrTable()
        for attr, ids, _name in self.attrs():
            table.add(ids, attr)
        return table

    def formats(self) -> dict[tuple[str, str], str]:
        """{(system, event): format text} of every event."""
        return {(p.spec.system, p.spec.event): p.text for p in self.plans}

    def schemas(self) -> dict[tuple[str, str], EventFormat]:
        return {(p.spec.system, p.spec.event): p.fmt for p in self.plans}

    def tracing_data(self) -> TracingData:
        return TracingData.from_formats(self.formats(), header_page=HEADER_PAGE,
                                        header_event=HEADER_EVENT)

    def event_of(self, sample_id: int) -> tuple[str, str] | None:
        for p in self.plans:
            if sample_id in p.ids:
                return p.spec.system, p.spec.event
        return None

    def _string_address(self, value) -> int:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        addr = self._string_addr.get(raw)
        if addr is None:
            addr = _STRING_BASE + _STRING_STRIDE * len(self._string_addr)
            self._string_addr[raw] = addr
            self.user_strings[addr] = raw
        return addr

    # -- generation ------------------------------------------------------------------------------

    def rounds(self) -> Iterator[tuple[list[bytes], list[int]]]:
        """The stream as rounds of (records, their cpus), all in time order.
        The first round starts with the head COMM records."""
        rng = random.Random(self.seed)
        stats = StreamStats(first_time=self.start_ns)
        keep = self.record_values
        values: list[tuple[int, dict]] = []
        for plan in self.plans:
            for fp in plan.fields:
                fp.gen.reset()
        pool = _Pool(self.tasks)
        ncpu, nslots, nev = self.ncpus, len(self.tasks), len(self.plans)
        slot_range, ev_range = range(nslots), range(nev)
        side_ids = self.side_ids
        next_pid = self._next_pid
        per_event = [0] * nev
        ev_table = self._ev_table

        # Head: a COMM per task at start_ns, on the first CPU.
        t = self.start_ns
        head = [_comm_record(pool.pids[s], pool.tids[s], pool.comms[s], t, 0, side_ids[0], False)
                for s in slot_range]
        stats.comm += len(head)
        pending_recs, pending_cpus = head, [0] * len(head)

        gap_fn = self._gaps(rng)
        next_churn = self._next_side(rng, self.churn, 0)
        next_lost = self._next_side(rng, self.lost, 0)
        done = 0
        while done < self.n_events:
            n = min(ROUND, self.n_events - done, next_churn - done, next_lost - done)
            if n > 0:
                times = list(accumulate(gap_fn(n), initial=t))
                del times[0]
                t = times[-1]
                evs = _weighted(rng, ev_table, n) if nev > 1 else None
                cpus = _indices(rng, ncpu, n)
                slots = _indices(rng, nslots, n)
                out: list = [None] * n
                if evs is None:
                    groups = [(0, range(n))]
                else:
                    buckets: list[list[int]] = [[] for _ in ev_range]
                    for i, e in enumerate(evs):
                        buckets[e].append(i)
                    groups = [(e, b) for e, b in enumerate(buckets) if b]
                for e, idx in groups:
                    plan = self.plans[e]
                    if evs is None:
                        cols = _Cols(n, range(done, done + n), times, cpus, slots, pool, rng,
                                     plan.name)
                    else:
                        pick = _picker(idx)
                        cols = _Cols(len(idx), [done + i for i in idx], pick(times),
                                     pick(cpus), pick(slots), pool, rng, plan.name)
                    recs, vals = plan.records(rng, cols, keep)
                    per_event[e] += len(recs)
                    if evs is None:
                        out = recs
                        if keep:
                            values.extend(zip(repeat(e), vals))
                    else:
                        for i, r in zip(idx, recs):
                            out[i] = r
                        if keep:
                            for i, v in zip(idx, vals):
                                evs[i] = (e, v)
                if keep and evs is not None:
                    values.extend(evs)
                done += n
                if pending_recs:
                    pending_recs.extend(out)
                    pending_cpus.extend(cpus)
                    out, cpus = pending_recs, pending_cpus
                    pending_recs, pending_cpus = [], []
                recs_round, cpus_round = out, cpus
            else:
                recs_round, cpus_round = pending_recs, pending_cpus
                pending_recs, pending_cpus = [], []
            # Side band after this round's samples, in time order.
            side, side_cpus = [], []
            if done == next_churn and done < self.n_events:
                t, next_pid = self._churn(rng, pool, t, next_pid, side, side_cpus, stats)
                next_churn = self._next_side(rng, self.churn, done)
            if done == next_lost and done < self.n_events:
                t += 1
                cpu = rng.randrange(ncpu)
                count = rng.randint(1, self.lost_max)
                side.append(_lost_record(self.plans[0].ids[cpu], count, t, cpu, side_ids[cpu]))
                side_cpus.append(cpu)
                stats.lost_records += 1
                stats.lost += count
                next_lost = self._next_side(rng, self.lost, done)
            if side:
                recs_round = recs_round + side
                cpus_round = cpus_round + side_cpus
            if recs_round:
                stats.bytes += sum(map(len, recs_round))
                yield recs_round, cpus_round
        if pending_recs:  # n_events == 0: only the head
            stats.bytes += sum(map(len, pending_recs))
            yield pending_recs, pending_cpus
        stats.samples = done
        stats.per_event = {p.name: c for p, c in zip(self.plans, per_event)}
        stats.last_time = t
        self.stats = stats
        if keep:
            self.values = values

    def _gaps(self, rng: random.Random) -> Callable[[int], list[int]]:
        mean = self.gap_ns
        if self.gap == "fixed":
            g = max(1, round(mean))
            return lambda n: [g] * n
        if self.gap == "uniform":
            span = max(1, round(2 * mean) - 1)
            return lambda n: [1 + i for i in _indices(rng, span, n)]
        if mean <= 1.5:
            return lambda n: [1] * n
        # Quantiles of an exponential, picked by 16-bit words.
        table = _exp_table(mean)
        return lambda n: _weighted(rng, table, n)

    @staticmethod
    def _next_side(rng: random.Random, p: float, done: int) -> int:
        if p <= 0:
            return 1 << 62
        return done + 1 + int(rng.expovariate(p))

    def _churn(self, rng, pool: _Pool, t: int, next_pid: int, side: list, side_cpus: list,
               stats: StreamStats) -> tuple[int, int]:
        """A task of the pool exits; a new process forks from another and execs."""
        nslots = len(pool.tids)
        slot = rng.randrange(nslots)
        parent = rng.randrange(nslots)
        ids = self.side_ids
        cpu = rng.randrange(self.ncpus)
        t += 1
        side.append(_task_record(abi.PERF_RECORD_EXIT, pool.pids[slot], pool.ppids[slot],
                                 pool.tids[slot], pool.ppids[slot], t, cpu, ids[cpu]))
        side_cpus.append(cpu)
        ppid, ptid = pool.pids[parent], pool.tids[parent]
        pid = next_pid
        next_pid += 1 + rng.randrange(8)
        cpu = rng.randrange(self.ncpus)
        t += 1
        side.append(_task_record(abi.PERF_RECORD_FORK, pid, ppid, pid, ptid, t, cpu, ids[cpu]))
        side_cpus.append(cpu)
        comm = _COMMS[rng.randrange(len(_COMMS))]
        t += 1
        side.append(_comm_record(pid, pid, comm, t, cpu, ids[cpu], True))
        side_cpus.append(cpu)
        pool.pids[slot], pool.tids[slot], pool.comms[slot], pool.ppids[slot] = pid, pid, comm, ppid
        stats.exit += 1
        stats.fork += 1
        stats.comm_exec += 1
        return t, next_pid

    # -- views -----------------------------------------------------------------------------------

    def merged(self) -> bytes:
        """Every record, in time order."""
        return b"".join(b"".join(recs) for recs, _ in self.rounds())

    def per_cpu(self) -> dict[int, bytes]:
        """{cpu: that CPU's records, in time order} for every CPU."""
        parts: dict[int, list[bytes]] = {c: [] for c in range(self.ncpus)}
        for recs, cpus in self.rounds():
            for r, c in zip(recs, cpus):
                parts[c].append(r)
        return {c: b"".join(p) for c, p in parts.items()}

    def chunks(self, max_bytes: int = 1 << 20) -> Iterator[bytes]:
        """The merged stream as chunks of whole records, each at most
        ``max_bytes`` (or one record, if a record is larger)."""
        buf: list[bytes] = []
        size = 0
        for recs, _ in self.rounds():
            lens = list(accumulate(map(len, recs)))
            lo, base = 0, 0
            while lo < len(recs):
                room = max_bytes - size
                hi = bisect_right(lens, base + room, lo)
                if hi == lo:  # the next record does not fit
                    if buf:
                        yield b"".join(buf)
                        buf, size = [], 0
                        continue
                    hi = lo + 1  # a single record larger than max_bytes
                buf.extend(recs[lo:hi])
                size += lens[hi - 1] - base
                base = lens[hi - 1]
                lo = hi
        if buf:
            yield b"".join(buf)

    def cpu_rounds(self, max_bytes: int = 1 << 20) -> Iterator[list[tuple[int, bytes]]]:
        """Per round, [(cpu, bytes), ...] in CPU order, each chunk whole records
        of one CPU in time order, at most ``max_bytes``: what
        ``PerfSession.read_chunks`` returns per drain."""
        for recs, cpus in self.rounds():
            parts: dict[int, list[bytes]] = {}
            for r, c in zip(recs, cpus):
                parts.setdefault(c, []).append(r)
            out = []
            for c in sorted(parts):
                out.extend((c, chunk) for chunk in _cut(parts[c], max_bytes))
            yield out

    def cpu_chunks(self, max_bytes: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
        """``cpu_rounds`` flattened: (cpu, bytes) chunks."""
        for rnd in self.cpu_rounds(max_bytes):
            yield from rnd


def _picker(idx: list[int]) -> Callable[[list], list]:
    """``seq -> [seq[i] for i in idx]``, in C."""
    if len(idx) == 1:
        i = idx[0]
        return lambda seq: [seq[i]]
    get = itemgetter(*idx)
    return lambda seq: list(get(seq))


def _cut(recs: list[bytes], max_bytes: int) -> Iterator[bytes]:
    buf, size = [], 0
    for r in recs:
        if buf and size + len(r) > max_bytes:
            yield b"".join(buf)
            buf, size = [], 0
        buf.append(r)
        size += len(r)
    if buf:
        yield b"".join(buf)


# --- side-band records -----------------------------------------------------------------------------

def _comm_record(pid: int, tid: int, comm: bytes, time: int, cpu: int, ident: int,
                 exec_: bool) -> bytes:
    name = bytes(comm[:15]) + b"\0"
    name += bytes(-len(name) % 8)
    size = 16 + len(name) + _TRAILER.size
    misc = abi.PERF_RECORD_MISC_COMM_EXEC if exec_ else 0
    return (struct.pack("<IHHII", abi.PERF_RECORD_COMM, misc, size, pid, tid) + name
            + _TRAILER.pack(pid, tid, time, cpu, 0, ident))


def _task_record(rtype: int, pid: int, ppid: int, tid: int, ptid: int, time: int, cpu: int,
                 ident: int) -> bytes:
    size = 8 + 24 + _TRAILER.size
    return (struct.pack("<IHHIIIIQ", rtype, 0, size, pid, ppid, tid, ptid, time)
            + _TRAILER.pack(pid, tid, time, cpu, 0, ident))


def _lost_record(lost_id: int, count: int, time: int, cpu: int, ident: int) -> bytes:
    size = 8 + 16 + _TRAILER.size
    return (struct.pack("<IHHQQ", abi.PERF_RECORD_LOST, 0, size, lost_id, count)
            + _TRAILER.pack(0, 0, time, cpu, 0, ident))


# --- perf.data -----------------------------------------------------------------------------------

def write_perf_data(path: str | os.PathLike, stream: SyntheticStream, *,
                    layout: str = "rounds", cmdline: list[str] | None = None,
                    features: Mapping[int, bytes] | None = None) -> StreamStats:
    """Write ``stream`` to a perf.data file that ``ktapjit run --replay`` and
    ``perf script -i`` read. ``layout="rounds"`` writes it as a live recording
    does (per round, each CPU's records, then FINISHED_ROUND); ``"merged"``
    writes the merged order without rounds. ``features`` ({bit: bytes}) are
    written as PerfDataWriter's are, e.g. the site tables of a uprobe glob's
    event (events/probes/probe_sites.py). Returns the pass's stats."""
    if layout not in ("rounds", "merged"):
        raise ValueError(f"layout must be 'rounds' or 'merged', not {layout!r}")
    with PerfDataWriter(path, stream.attrs(), stream.tracing_data(),
                        cmdline=cmdline or ["ktapjit", "synth"], hostname="ktapjit-synth",
                        nr_cpus=(stream.ncpus, stream.ncpus), features=features) as writer:
        if layout == "merged":
            for chunk in stream.chunks(4 << 20):
                writer.write_records(chunk)
        else:
            for rnd in stream.cpu_rounds(4 << 20):
                for _cpu, chunk in rnd:
                    writer.write_records(chunk)
                writer.write_records(_FINISHED_ROUND)
    return stream.stats
