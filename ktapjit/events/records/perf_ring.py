"""Live tracing through perf ring buffers.

``PerfSession`` opens every requested event on every CPU with
``perf_event_open``, maps one ring per CPU (further events on that CPU are
redirected into it with PERF_EVENT_IOC_SET_OUTPUT, as perf does), and hands back
what the kernel wrote as raw record bytes, per CPU, ready for ``decode`` and
``merge``. Each sample carries PERF_SAMPLE_IDENTIFIER, so ids name the event.

The ring protocol (``perf_event_mmap_page``): the kernel advances ``data_head``
after writing whole records; we copy ``[data_tail, data_head)`` out of the
power-of-two data area (it may wrap) and then store the new ``data_tail``, which
frees the space. Ordering: on x86-64 (TSO) loads are not reordered with loads
and stores are not reordered with earlier loads, which is exactly the
rmb()-after-head / mb()-before-tail the kernel asks of readers; on other
architectures we issue a full barrier through membarrier(2).

Lost records are never hidden: the kernel writes PERF_RECORD_LOST into the
stream, and ``lost()`` reads each event's PERF_FORMAT_LOST counter.

Everything opened is closed on every exit path, exceptions included.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import select
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import AttrTable

PAGE_SIZE = mmap.PAGESIZE
# Data pages per CPU ring (a power of two). 1024 pages = 4 MiB per CPU: measured
# on the 2-core VM, a burst of 1M getppid tracepoint hits (about 64 MB of
# records) drains with 0 lost; 64 pages lost records in the same test. See
# tests/events/test_perf_ring.py::test_burst_no_loss.
DEFAULT_PAGES = 1024
# Wake the reader when a ring is 1/WAKEUP_FRACTION full.
WAKEUP_FRACTION = 4

SAMPLE_TYPE = (abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_TID | abi.PERF_SAMPLE_TIME
               | abi.PERF_SAMPLE_CPU | abi.PERF_SAMPLE_PERIOD)
READ_FORMAT = abi.PERF_FORMAT_ID | abi.PERF_FORMAT_LOST


@dataclass
class TraceEvent:
    """One event to open on every CPU: a tracepoint or a software event.

    An ``optional`` event (one a glob expanded to) that the kernel refuses is
    left out of the session and listed in ``PerfSession.refused``; any other
    refusal fails the whole session."""

    name: str
    attr: abi.perf_event_attr
    filter: str | None = None
    system: str | None = None
    event: str | None = None
    optional: bool = False
    label: str | None = None  # how messages name it, when not by ``name`` (a probe as the script wrote it)
    system_wide: bool = False  # opened for every task even in a per-task session (a bpf-output event)

    @property
    def shown(self) -> str:
        return self.label or self.name


@dataclass
class Refusal:
    """An optional event the kernel would not open: its errno and why, in words."""

    event: TraceEvent
    errno: int
    reason: str


def tracepoint_id(system: str, event: str, root: Path | None = None) -> int:
    """The tracepoint's id from tracefs ``events/SYSTEM/EVENT/id``."""
    from ktapjit.events.errors import UnknownEventError
    from ktapjit.events.tracefs import tracefs_root
    path = (root or tracefs_root()) / "events" / system / event / "id"
    try:
        return int(path.read_text())
    except FileNotFoundError:
        raise UnknownEventError(f"unknown tracepoint '{system}:{event}'") from None
    except PermissionError:
        raise abi.PerfError(f"permission denied reading {path} (run as root)",
                            errno.EACCES) from None


def tracepoint(system: str, event: str, filter: str | None = None,
               callchain: bool = False, root: Path | None = None) -> TraceEvent:
    """A tracepoint event sampling every hit (sample_period 1), with RAW data."""
    st = SAMPLE_TYPE | abi.PERF_SAMPLE_RAW
    if callchain:
        st |= abi.PERF_SAMPLE_CALLCHAIN
    attr = abi.perf_event_attr(type=abi.PERF_TYPE_TRACEPOINT,
                               config=tracepoint_id(system, event, root),
                               sample_period=1, sample_type=st)
    return TraceEvent(f"{system}:{event}", attr, filter, system, event)


def software_event(config: int, period: int, name: str,
                   callchain: bool = False) -> TraceEvent:
    """A sampling software event, e.g. cpu-clock every ``period`` ns (with IP)."""
    st = SAMPLE_TYPE | abi.PERF_SAMPLE_IP
    if callchain:
        st |= abi.PERF_SAMPLE_CALLCHAIN
    attr = abi.perf_event_attr(type=abi.PERF_TYPE_SOFTWARE, config=config,
                               sample_period=period, sample_type=st)
    return TraceEvent(name, attr)


def _groups(ev: TraceEvent) -> bool:
    """Whether ``ev`` joins its CPU's group of tracepoints (PerfSession.enable
    says why). Tracepoints never compete for a counter, so a group is always
    scheduled whole, and traces what its events would alone."""
    return ev.attr.type == abi.PERF_TYPE_TRACEPOINT and not ev.system_wide  # a group has one task


def _task_tracker(sample_type: int, mmaps: bool = False) -> TraceEvent:
    """A dummy event that only makes the kernel emit COMM/FORK/EXIT records
    (and, with ``mmaps``, MMAP2 records of executable mappings, for user
    stacks). It shares the tracepoints' sample_type so every record has the
    same sample_id trailer layout."""
    attr = abi.perf_event_attr(type=abi.PERF_TYPE_SOFTWARE,
                               config=abi.PERF_COUNT_SW_DUMMY, sample_period=1,
                               sample_type=sample_type, comm=1, comm_exec=1, task=1,
                               mmap=int(mmaps), mmap2=int(mmaps))
    return TraceEvent("dummy:tasks", attr)


def _trailer_bytes(sample_type: int, time: int) -> bytes:
    """A sample_id trailer of zeros (TIME set to ``time``) for ``sample_type``."""
    words = [bit for bit in (abi.PERF_SAMPLE_TID, abi.PERF_SAMPLE_TIME, abi.PERF_SAMPLE_ID,
                             abi.PERF_SAMPLE_STREAM_ID, abi.PERF_SAMPLE_CPU, abi.PERF_SAMPLE_IDENTIFIER)
             if sample_type & bit]
    return b"".join(struct.pack("<Q", time if bit == abi.PERF_SAMPLE_TIME else 0) for bit in words)


_MMAP2_BODY = struct.Struct("<IIQQQIIQQII")
_PROT_EXEC = 4
_MAP_PRIVATE = 2


def synthesize_mmaps(sample_type: int, pids: Iterable[int] | None = None,
                     proc: Path = Path("/proc"), time: int = 0) -> bytes:
    """PERF_RECORD_MMAP2 records for the executable, file-backed mappings of
    processes that already exist (every process, or ``pids``), from
    /proc/PID/maps, as ``perf record`` synthesizes them at start; the
    trailer is as in ``synthesize_comms``. With the kernel's own MMAP2
    records (``track_mmaps``) they let user stacks be symbolized, live and
    on replay alike."""
    trailer = _trailer_bytes(sample_type, time)
    if pids is None:
        pids = sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    out = bytearray()
    for pid in pids:
        try:
            text = (proc / str(pid) / "maps").read_bytes()
        except OSError:
            continue  # gone, or a kernel thread's empty maps
        for line in text.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 6 or b"x" not in parts[1] or not parts[5].startswith(b"/"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split(b"-"))
            major, minor = (int(x, 16) for x in parts[3].split(b":"))
            path = parts[5]
            if path.endswith(b" (deleted)"):
                path = path[:-len(b" (deleted)")]
            name = path + b"\0"
            name += bytes(-len(name) % 8)
            size = 8 + _MMAP2_BODY.size + len(name) + len(trailer)
            out += struct.pack("<IHH", abi.PERF_RECORD_MMAP2, abi.PERF_RECORD_MISC_USER, size)
            out += _MMAP2_BODY.pack(pid, pid, lo, hi - lo, int(parts[2], 16), major, minor,
                                    int(parts[4]), 0, _PROT_EXEC | 1, _MAP_PRIVATE)
            out += name + trailer
    return bytes(out)


def synthesize_comms(sample_type: int, pids: Iterable[int] | None = None,
                     proc: Path = Path("/proc"), time: int = 0) -> bytes:
    """PERF_RECORD_COMM records for threads that already exist (every process,
    or ``pids``), as ``perf record`` synthesizes them from /proc at start: the
    sample_id trailer (sized by ``sample_type``) is zero, so time is 0 and perf
    (and ``merge.order_perf_rounds``) deliver them first. Put them at the start
    of a recording so pids have names from the first event on. ``time`` stamps
    them (into the trailer's TIME slot) instead of 0, e.g. with a stream's start."""
    trailer_bytes = _trailer_bytes(sample_type, time)
    trailer = len(trailer_bytes)
    if pids is None:
        pids = sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    out = bytearray()
    for pid in pids:
        try:
            tids = sorted(int(t) for t in os.listdir(proc / str(pid) / "task"))
        except OSError:
            continue  # the process exited meanwhile
        for tid in tids:
            try:
                comm = (proc / str(pid) / "task" / str(tid) / "comm").read_bytes().rstrip(b"\n")
            except OSError:
                continue
            name = comm[:15] + b"\0"
            name += bytes(-len(name) % 8)
            size = 8 + 8 + len(name) + trailer
            out += struct.pack("<IHHII", abi.PERF_RECORD_COMM, 0, size, pid, tid)
            out += name + trailer_bytes
    return bytes(out)


# --- memory ordering ---------------------------------------------------------------------

_MEMBARRIER_NR = {"aarch64": 283, "arm64": 283}
_MEMBARRIER_CMD_PRIVATE_EXPEDITED = 1 << 3
_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 1 << 4


def _make_barrier():
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return lambda: None  # TSO: the ordering the ring needs is free
    nr = _MEMBARRIER_NR.get(machine)
    libc = ctypes.CDLL(None, use_errno=True)
    if nr is None or libc.syscall(nr, _MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0):
        return lambda: None
    return lambda: libc.syscall(nr, _MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)


_barrier = _make_barrier()


# --- one ring --------------------------------------------------------------------------

class _Ring:
    """One CPU's mmapped ring: control page plus 2^n data pages."""

    def __init__(self, fd: int, cpu: int, pages: int):
        self.fd, self.cpu = fd, cpu
        self.map = None
        try:
            self.map = mmap.mmap(fd, (1 + pages) * PAGE_SIZE, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            hint = ("; fewer pages, root, or a larger "
                    "/proc/sys/kernel/perf_event_mlock_kb may help"
                    if exc.errno in (errno.EPERM, errno.ENOMEM) else "")
            raise abi.PerfError(f"cannot map a {pages}-page perf ring on cpu {cpu}: "
                                f"{exc.strerror}{hint}", exc.errno) from None
        self._head = ctypes.c_uint64.from_buffer(self.map, abi.perf_event_mmap_page.data_head.offset)
        self._tail = ctypes.c_uint64.from_buffer(self.map, abi.perf_event_mmap_page.data_tail.offset)
        off_size = struct.unpack_from("<QQ", self.map, abi.perf_event_mmap_page.data_offset.offset)
        # Kernels before 4.1 leave data_offset/size zero: the data area then
        # starts right after the control page.
        self.data_offset = off_size[0] or PAGE_SIZE
        self.data_size = off_size[1] or pages * PAGE_SIZE
        self.tail = self._tail.value
        self.bytes_read = 0

    def drain(self) -> bytes | None:
        """Copy out everything the kernel published and release the space."""
        head = self._head.value  # a fresh load every time: ctypes reads memory
        _barrier()
        tail = self.tail
        if head == tail:
            return None
        size = head - tail
        if size > self.data_size:  # cannot happen unless the ring was corrupted
            raise abi.PerfError(f"perf ring on cpu {self.cpu}: head {head} is more "
                                f"than a ring ahead of tail {tail}")
        start = tail & (self.data_size - 1)
        base = self.data_offset
        if start + size <= self.data_size:
            chunk = self.map[base + start:base + start + size]
        else:  # the records wrap around the end of the data area
            first = self.data_size - start
            chunk = self.map[base + start:base + self.data_size] + \
                self.map[base:base + size - first]
        _barrier()
        self._tail.value = head
        self.tail = head
        self.bytes_read += size
        return chunk

    def close(self) -> None:
        # Drop the ctypes views first: mmap refuses to close while they exist.
        self._head = self._tail = None
        if self.map is not None:
            self.map.close()
            self.map = None


# --- the session ----------------------------------------------------------------------

def stream_layout(attr: abi.perf_event_attr, read_format: int = READ_FORMAT) -> abi.perf_event_attr:
    """Set what fixes the record layout of a session's streams (synthetic
    streams use it too, so they decode exactly like live ones)."""
    attr.disabled = 1
    # Every event in a ring must put its id in the same place, so that
    # records can be told apart: IDENTIFIER is first in samples and last
    # in every other record's sample_id.
    attr.sample_type |= abi.PERF_SAMPLE_IDENTIFIER
    attr.sample_id_all = 1
    attr.read_format = read_format
    return attr


def online_cpus() -> list[int]:
    """CPUs listed in /sys/devices/system/cpu/online (e.g. "0-1,4")."""
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


@dataclass
class _Opened:
    event: TraceEvent
    cpu: int
    fd: int
    id: int
    leads: bool = False  # the group leader of its CPU's tracepoints


@dataclass
class SessionStats:
    bytes_read: int = 0
    wakeups: int = 0
    per_cpu_bytes: dict[int, int] = field(default_factory=dict)


class PerfSession:
    """Open ``events`` on every CPU (or ``cpus``), optionally only for task
    ``pid`` (with its children when ``inherit``), and read their rings.

    ::

        with PerfSession([tracepoint("sched", "sched_switch")]) as s:
            s.enable()
            chunks = s.read_chunks(0.1)   # [(cpu, bytes), ...]
            s.disable()
        # every fd is closed and every ring unmapped here

    ``pages``: data pages per CPU ring (power of two). ``track_tasks`` adds a
    dummy event per CPU so COMM/FORK/EXIT records appear in the stream;
    ``track_mmaps`` makes it report executable mmaps too (MMAP2 records).
    ``enable_on_exec`` arms the events to start when ``pid`` next execs.
    ``clockid`` (e.g. ``time.CLOCK_MONOTONIC``) stamps every record with that
    clock instead of the kernel's local clock.
    """

    def __init__(self, events: Iterable[TraceEvent], *, cpus: Iterable[int] | None = None,
                 pid: int = -1, inherit: bool | None = None, pages: int = DEFAULT_PAGES,
                 track_tasks: bool = True, track_mmaps: bool = False, enable_on_exec: bool = False,
                 wakeup_fraction: int = WAKEUP_FRACTION, clockid: int | None = None):
        if pages < 1 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, got {pages}")
        self.events = list(events)
        if not self.events:
            raise ValueError("PerfSession needs at least one event")
        self.cpus = list(cpus) if cpus is not None else online_cpus()
        self.pid = pid
        self.inherit = (pid != -1) if inherit is None else inherit
        self.pages = pages
        self.enable_on_exec = enable_on_exec
        self.clockid = clockid
        self.wakeup_bytes = max(1, pages * PAGE_SIZE // max(1, wakeup_fraction))
        if track_tasks:
            self.events.append(_task_tracker(self.events[0].attr.sample_type & SAMPLE_TYPE, track_mmaps))
        self.opened: list[_Opened] = []
        self.rings: dict[int, _Ring] = {}
        self._epoll: select.epoll | None = None
        self._hung_up: set[int] = set()
        self.stats = SessionStats()
        self._lost_format = True
        self._ids: dict[int, list[int]] = {}
        self._event_by_id: dict[int, TraceEvent] = {}
        self.refused: list[Refusal] = []  # optional events left out, in the order given
        self._leaders: dict[int, int] = {}  # cpu -> fd of the group its tracepoints join

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> "PerfSession":
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Open every event on every CPU; the first event opened on a CPU owns
        its ring and the others write into it. Optional events the kernel
        refuses are dropped from ``events`` into ``refused``."""
        self._epoll = select.epoll()
        kept = []
        for ev in self.events:
            try:
                opened = self._open_everywhere(ev)
            except abi.PerfError as exc:
                if not (ev.optional and exc.errno in abi.REFUSALS):
                    raise
                self.refused.append(Refusal(ev, exc.errno, abi.refusal_reason(exc.errno)))
                continue
            kept.append(ev)
            for op in opened:
                ring = self.rings.get(op.cpu)
                if ring is None:
                    self.rings[op.cpu] = _Ring(op.fd, op.cpu, self.pages)
                    self._epoll.register(op.fd, select.EPOLLIN)
                else:
                    abi.perf_ioctl(op.fd, abi.PERF_EVENT_IOC_SET_OUTPUT, ring.fd,
                                   "PERF_EVENT_IOC_SET_OUTPUT")
        self.events = kept

    def _open_everywhere(self, ev: TraceEvent) -> list[_Opened]:
        """``ev`` on every CPU, or on none: a refusal on a later CPU closes
        the CPUs already opened for it."""
        opened = []
        try:
            for cpu in self.cpus:
                opened.append(self._open_one(ev, cpu))
        except abi.PerfError:
            for op in opened:
                self._forget(op)
            raise
        return opened

    def _forget(self, op: _Opened) -> None:
        self.opened.remove(op)
        if op.leads:  # no event joined it yet: the refusal came before the next event
            del self._leaders[op.cpu]
        os.close(op.fd)
        self._event_by_id.pop(op.id, None)
        ids = self._ids.get(id(op.event), [])
        if op.id in ids:
            ids.remove(op.id)

    def _attr_for(self, ev: TraceEvent) -> abi.perf_event_attr:
        attr = stream_layout(abi.perf_event_attr.from_bytes(bytes(ev.attr)),
                             READ_FORMAT if self._lost_format else abi.PERF_FORMAT_ID)
        attr.size = ctypes.sizeof(attr)
        attr.inherit = int(self.inherit and not ev.system_wide)
        attr.enable_on_exec = int(self.enable_on_exec and not ev.system_wide)
        attr.watermark = 1
        attr.wakeup_watermark = self.wakeup_bytes
        if self.clockid is not None:
            # Events sharing a ring must share a clock, or SET_OUTPUT fails.
            attr.use_clockid = 1
            attr.clockid = self.clockid
        return attr

    def _open_one(self, ev: TraceEvent, cpu: int) -> _Opened:
        try:
            fd = self._perf_event_open(ev, cpu)
        except abi.PerfError as exc:
            raise abi.PerfError(f"cannot open {ev.shown}: {abi.refusal_reason(exc.errno)}",
                                exc.errno) from None
        op = _Opened(ev, cpu, fd, 0, _groups(ev) and cpu not in self._leaders)
        self.opened.append(op)  # recorded before anything else can fail
        if op.leads:
            self._leaders[cpu] = fd
        if ev.filter:
            abi.set_filter(fd, ev.filter)
        op.id = abi.event_id(fd)
        # Kept after close(), so a finished session can still describe itself.
        self._ids.setdefault(id(ev), []).append(op.id)
        self._event_by_id[op.id] = ev
        return op

    def _perf_event_open(self, ev: TraceEvent, cpu: int) -> int:
        group = self._leaders.get(cpu, -1) if _groups(ev) else -1
        pid = -1 if ev.system_wide else self.pid
        try:
            return abi.perf_event_open(self._attr_for(ev), pid, cpu, group, abi.PERF_FLAG_FD_CLOEXEC)
        except abi.PerfError as exc:
            # Kernels before 6.0 reject PERF_FORMAT_LOST with EINVAL; so does
            # an event this kernel cannot open. Only the first open can tell:
            # when it works without LOST, LOST was the problem.
            if exc.errno != errno.EINVAL or not self._lost_format or self.opened:
                raise
            self._lost_format = False
            try:
                return abi.perf_event_open(self._attr_for(ev), pid, cpu, group, abi.PERF_FLAG_FD_CLOEXEC)
            except abi.PerfError:
                self._lost_format = True
                raise exc from None

    def close(self) -> None:
        """Disable and close everything; safe to call twice and after errors."""
        for op in self.opened:
            try:
                abi.perf_ioctl(op.fd, abi.PERF_EVENT_IOC_DISABLE, 0)
            except abi.PerfError:
                pass
        for ring in self.rings.values():
            ring.close()
        self.rings.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for op in self.opened:
            try:
                os.close(op.fd)
            except OSError:
                pass
        self.opened.clear()
        self._leaders.clear()

    def release_fds(self) -> list[int]:
        """Disable everything, unmap the rings, and hand the fds over to the
        caller to close, when it chooses: closing a tracepoint's last perf event
        costs the kernel RCU grace periods under its event_mutex (tens of ms
        each, one event after another whoever closes them), which a caller may
        rather pay after more urgent work. close() then has no fd left to close."""
        fds = [op.fd for op in self.opened]
        for fd in fds:
            try:
                abi.perf_ioctl(fd, abi.PERF_EVENT_IOC_DISABLE, 0)
            except abi.PerfError:
                pass
        self.opened.clear()
        self._leaders.clear()
        self.close()
        return fds

    # -- control ---------------------------------------------------------------------------

    def enable(self) -> None:
        # Enabling an event reschedules every event of its CPU context, so
        # N events enabled one by one cost the kernel N*N steps (seconds for
        # `*:*`). A group member enabled while its leader is off costs little;
        # the leaders, last, bring their whole groups in at once.
        for op in sorted(self.opened, key=lambda op: op.leads):
            abi.perf_ioctl(op.fd, abi.PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")

    def disable(self) -> None:
        for op in self.opened:
            abi.perf_ioctl(op.fd, abi.PERF_EVENT_IOC_DISABLE, 0, "PERF_EVENT_IOC_DISABLE")

    # -- description, for decoding and for perf.data -----------------------------------

    def attrs(self) -> list[tuple[abi.perf_event_attr, list[int], str]]:
        """(attr, ids, name) per event, in the order given: what PerfDataWriter
        and AttrTable need."""
        return [(self._attr_for(ev), list(self._ids.get(id(ev), [])), ev.name)
                for ev in self.events]

    def attr_table(self) -> AttrTable:
        table = AttrTable()
        for attr, ids, _name in self.attrs():
            table.add(ids, attr)
        return table

    def event_of(self, sample_id: int) -> TraceEvent | None:
        return self._event_by_id.get(sample_id)

    # -- reading -------------------------------------------------------------------------

    def read_chunks(self, timeout: float | None = 0.0) -> list[tuple[int, bytes]]:
        """Wait up to ``timeout`` seconds (None: forever; 0: don't wait) for a
        ring to pass its watermark, then drain every ring. Returns (cpu, bytes)
        per CPU that had data, in CPU order; each chunk is whole records."""
        if self._epoll is None:
            raise abi.PerfError("PerfSession is not open")
        if timeout is None or timeout > 0:
            ready = self._epoll.poll(-1 if timeout is None else timeout)
            self.stats.wakeups += bool(ready)
            for fd, mask in ready:
                if mask & (select.EPOLLHUP | select.EPOLLERR):
                    # The traced task exited: stop polling this fd, or epoll
                    # would report it forever. The ring is still drained.
                    self._epoll.unregister(fd)
                    self._hung_up.add(fd)
        return self.drain()

    def drain(self) -> list[tuple[int, bytes]]:
        """Copy out every ring without waiting."""
        out = []
        for cpu, ring in self.rings.items():
            chunk = ring.drain()
            if chunk:
                out.append((cpu, chunk))
                self.stats.bytes_read += len(chunk)
                self.stats.per_cpu_bytes[cpu] = self.stats.per_cpu_bytes.get(cpu, 0) + len(chunk)
        return out

    @property
    def hung_up(self) -> bool:
        """True once every ring reported POLLHUP (the traced task and its
        children are gone)."""
        return bool(self.rings) and len(self._hung_up) == len(self.rings)

    def lost(self) -> int:
        """Samples the kernel dropped because a ring was full, summed over all
        events and CPUs (PERF_FORMAT_LOST; -1 when the kernel lacks it)."""
        if not self._lost_format:
            return -1
        total = 0
        for op in self.opened:
            raw = os.read(op.fd, 24)  # value, id, lost
            if len(raw) == 24:
                total += struct.unpack("<QQQ", raw)[2]
        return total
