"""The one decoder for perf's record stream.

Live ring buffers, perf.data files and ktapjit's own recordings all hold the same
bytes: a sequence of records, each starting with ``perf_event_header``
(``type: u32, misc: u16, size: u16``). ``iter_records`` walks such a buffer and
yields one dataclass per record.

How a PERF_RECORD_SAMPLE is laid out depends on the ``sample_type`` (and
``read_format``, and for two rare bits ``branch_sample_type`` / register masks) of
the event that wrote it. Those come from an ``AttrTable`` that maps sample ids to
``AttrInfo``. A table with a single attr needs no ids at all (a ring with one
event and no IDENTIFIER); with several, every attr must put the id at the same
place, which is what perf requires too (``PERF_SAMPLE_IDENTIFIER`` makes that
trivial: it is the first u64 of a sample and the last u64 of every other record).

Non-sample records carry a ``sample_id`` trailer when the attr has
``sample_id_all``: TID, TIME, ID, STREAM_ID, CPU, IDENTIFIER, as selected by
``sample_type``. Its ``time`` and ``cpu`` land on the record.

Errors: any truncated or inconsistent input raises ``DecodeError(message,
offset)`` with the byte offset of the record at fault. A header size below 8 is
an error, so the walk always advances.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Mapping, NamedTuple

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.errors import EventsError


def has_time(time: int | None) -> bool:
    """Whether a record's time is a real timestamp. perf stamps the records it
    synthesizes at start with 0, and ~0 means "no time"; anything past int64
    cannot be a stream time either."""
    return time is not None and 0 < time <= 0x7FFFFFFFFFFFFFFF


class DecodeError(EventsError):
    """Corrupt or truncated record stream. ``offset`` is the byte offset (in the
    buffer given to the decoder, plus its base) of the record at fault."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} (at byte offset {offset})")
        self.message = message
        self.offset = offset


# --- records -----------------------------------------------------------------------------
# Every record has ``time`` (None when the stream does not say), ``cpu``, ``offset``
# (where the record starts) and ``size`` (its length in bytes), so that merging and
# re-writing can treat records uniformly.

_RARE_SAMPLE_FIELDS = ("branch_stack", "regs_user", "stack_user", "weight", "data_src",
                       "transaction", "regs_intr", "phys_addr", "cgroup",
                       "data_page_size", "code_page_size", "aux")


@dataclass(slots=True)
class Sample:
    """PERF_RECORD_SAMPLE. The first ten fields are the stable contract; a field
    is None when the event's sample_type does not include it. The rarely used
    fields (``weight``, ``regs_user``, ...) live in ``extra`` and read as
    attributes through properties, which keeps construction cheap."""

    id: int | None
    ip: int | None
    pid: int | None
    tid: int | None
    time: int | None
    cpu: int | None
    period: int | None
    raw: bytes | None
    callchain: tuple[int, ...] | None
    stream_id: int | None
    addr: int | None = None
    read: "ReadValues | None" = None
    misc: int = 0
    offset: int = 0
    size: int = 0
    # branch_stack: ((from, to, flags), ...); regs_user/regs_intr: (abi, reg...)
    # as the kernel writes them; stack_user: the dumped bytes; aux: AUX data.
    extra: dict | None = None


def _rare_property(name: str) -> property:
    return property(lambda self: self.extra.get(name) if self.extra else None,
                    doc=f"PERF_SAMPLE_{name.upper()} (None when not sampled)")


for _name in _RARE_SAMPLE_FIELDS:
    setattr(Sample, _name, _rare_property(_name))


@dataclass(slots=True)
class ReadValues:
    """PERF_SAMPLE_READ / PERF_RECORD_READ contents. For a group read, ``values``
    has one (value, id, lost) per member; otherwise exactly one."""

    values: tuple[tuple[int, int | None, int | None], ...]
    time_enabled: int | None = None
    time_running: int | None = None


@dataclass(slots=True)
class Comm:
    """PERF_RECORD_COMM: a thread's new name (`exec`: by execve)."""

    pid: int
    tid: int
    comm: bytes
    time: int | None
    cpu: int | None
    exec: bool
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Fork:
    """PERF_RECORD_FORK: a new process or thread."""

    pid: int
    ppid: int
    tid: int
    ptid: int
    time: int | None
    cpu: int | None
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Exit:
    """PERF_RECORD_EXIT: a process or thread ended."""

    pid: int
    ppid: int
    tid: int
    ptid: int
    time: int | None
    cpu: int | None
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Lost:
    """PERF_RECORD_LOST: records the kernel dropped from a full ring."""

    id: int
    lost: int
    time: int | None
    cpu: int | None
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class LostSamples:
    """PERF_RECORD_LOST_SAMPLES: samples the kernel could not write."""

    lost: int
    time: int | None
    cpu: int | None
    id: int | None = None
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Throttle:
    """PERF_RECORD_THROTTLE or UNTHROTTLE."""

    time: int | None
    id: int
    stream_id: int
    cpu: int | None
    unthrottle: bool = False
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Mmap:
    """PERF_RECORD_MMAP: a mapping of a file."""

    pid: int
    tid: int
    addr: int
    len: int
    pgoff: int
    filename: bytes
    time: int | None
    cpu: int | None
    misc: int = 0
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Mmap2:
    """PERF_RECORD_MMAP2: a mapping, with the file's identity."""

    pid: int
    tid: int
    addr: int
    len: int
    pgoff: int
    maj: int | None
    min: int | None
    ino: int | None
    ino_generation: int | None
    build_id: bytes | None
    prot: int
    flags: int
    filename: bytes
    time: int | None
    cpu: int | None
    misc: int = 0
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Read:
    """PERF_RECORD_READ: counter values."""

    pid: int
    tid: int
    values: ReadValues
    time: int | None
    cpu: int | None
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Switch:
    """PERF_RECORD_SWITCH or SWITCH_CPU_WIDE: a context switch."""

    out: bool
    next_prev_pid: int | None
    next_prev_tid: int | None
    time: int | None
    cpu: int | None
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class FinishedRound:
    """PERF_RECORD_FINISHED_ROUND: the ordering barrier of a perf.data file."""

    time: None = None
    cpu: None = None
    offset: int = 0
    size: int = 0


@dataclass(slots=True)
class Unknown:
    """A record this decoder does not interpret (KSYMBOL, BPF_EVENT, perf's
    header records...). ``data`` is everything after the header."""

    type: int
    misc: int
    data: bytes
    time: int | None = None
    cpu: int | None = None
    offset: int = 0
    size: int = 0


Record = (Sample | Comm | Fork | Exit | Lost | LostSamples | Throttle | Mmap | Mmap2
          | Read | Switch | FinishedRound | Unknown)


# --- attrs ---------------------------------------------------------------------------------

class AttrInfo(NamedTuple):
    """What the decoder needs from a ``perf_event_attr``. The first three items
    are the contract ``(sample_type, read_format, sample_id_all)``; the others
    only matter for BRANCH_STACK and the register dumps."""

    sample_type: int
    read_format: int = 0
    sample_id_all: bool = False
    branch_sample_type: int = 0
    sample_regs_user: int = 0
    sample_regs_intr: int = 0

    @classmethod
    def from_attr(cls, attr: abi.perf_event_attr) -> "AttrInfo":
        return cls(attr.sample_type, attr.read_format, bool(attr.sample_id_all),
                   attr.branch_sample_type, attr.sample_regs_user,
                   attr.sample_regs_intr)


def _id_pos(sample_type: int) -> int | None:
    """Index (in u64 words after the header) of the id in a sample, as perf's
    ``__perf_evsel__calc_id_pos``; None if samples carry no id."""
    if sample_type & abi.PERF_SAMPLE_IDENTIFIER:
        return 0
    if not sample_type & abi.PERF_SAMPLE_ID:
        return None
    bits = (abi.PERF_SAMPLE_IP, abi.PERF_SAMPLE_TID, abi.PERF_SAMPLE_TIME,
            abi.PERF_SAMPLE_ADDR)
    return sum(1 for b in bits if sample_type & b)


def _is_pos(sample_type: int) -> int | None:
    """Index from the end (in u64 words) of the id in a sample_id trailer, as
    perf's ``__perf_evsel__calc_is_pos``; None if there is none."""
    if sample_type & abi.PERF_SAMPLE_IDENTIFIER:
        return 1
    if not sample_type & abi.PERF_SAMPLE_ID:
        return None
    return 1 + sum(1 for b in (abi.PERF_SAMPLE_CPU, abi.PERF_SAMPLE_STREAM_ID)
                   if sample_type & b)


@dataclass(frozen=True)
class LayoutRouting:
    """An AttrTable's public view: the distinct layouts of its records, the
    layout of each sample id, and where a record holds its id when more than
    one layout must be told apart (as _Resolver reads them)."""

    layouts: tuple[AttrInfo, ...]  # distinct; the first is the one id-less records take
    layout_of: tuple[tuple[int, int], ...]  # (sample id, index into layouts)
    single: bool  # one layout: records are read without looking at their id
    id_pos: int | None  # u64 words after a sample's header to its id
    is_pos: int | None  # u64 words from the end of a sample_id trailer to its id
    error: str | None  # why records cannot be told apart (then nothing can be read)


class AttrTable:
    """Maps sample ids to the ``AttrInfo`` of the event that owns them.

    ``AttrTable({id: (sample_type, read_format, sample_id_all), ...})`` or
    ``AttrTable.single(info)`` for a stream written by one event (no ids needed).
    Values may be plain tuples, ``AttrInfo`` or ``perf_event_attr``.
    """

    def __init__(self, mapping: Mapping[int, object] | None = None):
        self._by_id: dict[int, _RecordLayout] = {}
        self._layouts: dict[AttrInfo, _RecordLayout] = {}
        for sample_id, info in (mapping or {}).items():
            self.add([sample_id], info)

    @classmethod
    def single(cls, info: object) -> "AttrTable":
        """A table for a stream that one attr wrote: records need no id."""
        table = cls()
        table._layout(_as_info(info))
        return table

    def add(self, ids, info: object) -> None:
        layout = self._layout(_as_info(info))
        for sample_id in ids:
            self._by_id[sample_id] = layout

    def _layout(self, info: AttrInfo) -> "_RecordLayout":
        if info not in self._layouts:
            self._layouts[info] = _RecordLayout(info)
        return self._layouts[info]

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, sample_id: int) -> bool:
        return sample_id in self._by_id

    def info(self, sample_id: int) -> AttrInfo:
        return self._by_id[sample_id].info

    def routing(self) -> "LayoutRouting":
        """How a reader finds each record's layout, as plain values: what a
        native reader of the stream (the JIT's feed) is given."""
        resolver = _Resolver(self)
        infos = list(dict.fromkeys(p.info for p in self._by_id.values())) or [p.info for p in self._layouts.values()]
        index = {info: i for i, info in enumerate(infos)}
        return LayoutRouting(tuple(infos), tuple((sid, index[p.info]) for sid, p in self._by_id.items()),
                             resolver.only is not None, resolver.id_pos, resolver.is_pos, resolver.error)

    def resolver(self) -> "_Resolver":
        return _Resolver(self)


class _Resolver:
    """Finds the layout of one record: the only layout, or the one named by the id
    found at the position all layouts agree on."""

    def __init__(self, table: AttrTable):
        plans = list(table._layouts.values())
        self.by_id = table._by_id
        self.first = next(iter(table._by_id.values()), None)
        # With a single layout there is nothing to look up.
        self.only: _RecordLayout | None = plans[0] if len(plans) == 1 else None
        self.id_pos = self.is_pos = None
        self.error: str | None = None
        if self.only is None and plans:
            id_pos = {_id_pos(p.info.sample_type) for p in plans}
            is_pos = {_is_pos(p.info.sample_type) if p.info.sample_id_all else None
                      for p in plans}
            if len(id_pos) != 1 or None in id_pos:
                self.error = ("events disagree on where the sample id is "
                              "(set PERF_SAMPLE_IDENTIFIER on every event)")
            else:
                self.id_pos = id_pos.pop()
                self.is_pos = is_pos.pop() if len(is_pos) == 1 else None
        if not plans:
            self.error = "no event attributes known for this stream"

    def for_sample(self, buf, pos: int, size: int) -> "_RecordLayout":
        if self.only is not None:
            return self.only
        if self.error:
            raise DecodeError(self.error, pos)
        word = pos + 8 + 8 * self.id_pos
        if word + 8 > pos + size:
            raise DecodeError("sample too short to hold its id", pos)
        return self._lookup(_U64.unpack_from(buf, word)[0], pos)

    def for_other(self, buf, pos: int, size: int) -> "_RecordLayout | None":
        if self.only is not None:
            return self.only
        if self.is_pos is None:
            return None  # no trailer ids: the record carries no sample_id
        word = pos + size - 8 * self.is_pos
        if word < pos + 8:
            raise DecodeError("record too short to hold its sample_id", pos)
        return self._lookup(_U64.unpack_from(buf, word)[0], pos)

    def _lookup(self, sample_id: int, pos: int) -> "_RecordLayout":
        try:
            return self.by_id[sample_id]
        except KeyError:
            if sample_id == 0 and self.first is not None:
                # perf synthesizes records (kernel MMAP, COMM of existing
                # tasks) with a zeroed sample_id; like perf, give them the
                # first event's layout.
                return self.first
            raise DecodeError(f"unknown sample id {sample_id}", pos) from None


def _as_info(info: object) -> AttrInfo:
    if isinstance(info, AttrInfo):
        return info
    if isinstance(info, abi.perf_event_attr):
        return AttrInfo.from_attr(info)
    return AttrInfo(*info)  # type: ignore[misc]


# --- record layouts --------------------------------------------------------------------

_HDR = struct.Struct("<IHH")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

# The fixed-size head of a sample, in kernel order: (bit, struct code, field names).
_FIXED = (
    (abi.PERF_SAMPLE_IDENTIFIER, "Q", ("id",)),
    (abi.PERF_SAMPLE_IP, "Q", ("ip",)),
    (abi.PERF_SAMPLE_TID, "II", ("pid", "tid")),
    (abi.PERF_SAMPLE_TIME, "Q", ("time",)),
    (abi.PERF_SAMPLE_ADDR, "Q", ("addr",)),
    (abi.PERF_SAMPLE_ID, "Q", ("id",)),
    (abi.PERF_SAMPLE_STREAM_ID, "Q", ("stream_id",)),
    (abi.PERF_SAMPLE_CPU, "II", ("cpu", None)),
    (abi.PERF_SAMPLE_PERIOD, "Q", ("period",)),
)

# The sample_id trailer of non-sample records, in kernel order.
_TRAILER = (
    (abi.PERF_SAMPLE_TID, "II", ("pid", "tid")),
    (abi.PERF_SAMPLE_TIME, "Q", ("time",)),
    (abi.PERF_SAMPLE_ID, "Q", ("id",)),
    (abi.PERF_SAMPLE_STREAM_ID, "Q", ("stream_id",)),
    (abi.PERF_SAMPLE_CPU, "II", ("cpu", None)),
    (abi.PERF_SAMPLE_IDENTIFIER, "Q", ("id",)),
)

_KNOWN_SAMPLE_BITS = abi.PERF_SAMPLE_MAX - 1


def _fixed_struct(sample_type: int, table) -> tuple[struct.Struct, tuple[str | None, ...]]:
    codes, names = "<", []
    for bit, code, fields in table:
        if sample_type & bit:
            codes += code
            names.extend(fields)
    return struct.Struct(codes), tuple(names)


class _RecordLayout:
    """Everything precomputed for decoding records of one attr."""

    def __init__(self, info: AttrInfo):
        self.info = info
        st = info.sample_type
        self.head, head_names = _fixed_struct(st, _FIXED)
        # Where each Sample field sits in ``head.unpack_from(...) + (None,)``;
        # absent fields point at the trailing None.
        none_slot = len(head_names)
        idx = {name: i for i, name in enumerate(head_names) if name}
        self.slots = tuple(idx.get(n, none_slot) for n in
                           ("id", "ip", "pid", "tid", "time", "cpu", "period",
                            "stream_id", "addr"))
        self.has_callchain = bool(st & abi.PERF_SAMPLE_CALLCHAIN)
        self.has_raw = bool(st & abi.PERF_SAMPLE_RAW)
        # Anything beyond CALLCHAIN and RAW takes the slow, general path.
        self.general = bool(st & ~(_KNOWN_FIXED_BITS | abi.PERF_SAMPLE_CALLCHAIN
                                   | abi.PERF_SAMPLE_RAW))
        if info.sample_id_all:
            self.trailer, names = _fixed_struct(st, _TRAILER)
            self.trailer_idx = {n: i for i, n in enumerate(names) if n}
        else:
            self.trailer, self.trailer_idx = struct.Struct("<"), {}
        self.unknown_bits = st & ~_KNOWN_SAMPLE_BITS


_KNOWN_FIXED_BITS = 0
for _bit, _code, _names in _FIXED:
    _KNOWN_FIXED_BITS |= _bit


def _read_words(read_format: int) -> int:
    """u64 words of a non-group read_format block."""
    return 1 + sum(1 for b in (abi.PERF_FORMAT_TOTAL_TIME_ENABLED,
                               abi.PERF_FORMAT_TOTAL_TIME_RUNNING,
                               abi.PERF_FORMAT_ID, abi.PERF_FORMAT_LOST)
                   if read_format & b)


# --- the walk ------------------------------------------------------------------------------

def iter_records(buf: bytes | bytearray | memoryview, attrs: AttrTable,
                 offset: int = 0, end: int | None = None,
                 base: int = 0) -> Iterator[Record]:
    """Decode every record of ``buf[offset:end]`` in order.

    ``base`` is added to reported offsets (e.g. the file position of a chunk), so
    errors and ``Record.offset`` name positions in the original file.
    """
    resolver = attrs.resolver()
    n = len(buf) if end is None else min(end, len(buf))
    pos = offset
    unpack_hdr = _HDR.unpack_from
    while pos < n:
        if n - pos < 8:
            raise DecodeError(f"truncated record header ({n - pos} bytes left)", base + pos)
        rtype, misc, size = unpack_hdr(buf, pos)
        if size < 8:
            raise DecodeError(f"record size {size} is smaller than its header "
                              f"(type {rtype})", base + pos)
        if pos + size > n:
            raise DecodeError(f"truncated record (type {rtype}, size {size}, "
                              f"only {n - pos} bytes left)", base + pos)
        yield decode_record(buf, pos, rtype, misc, size, resolver, base)
        pos += size


def iter_headers(buf: bytes | bytearray | memoryview, offset: int = 0,
                 end: int | None = None, base: int = 0) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(offset, type, misc, size)`` per record without decoding bodies:
    the cheap walk for counting and copying."""
    n = len(buf) if end is None else min(end, len(buf))
    pos = offset
    unpack = _HDR.unpack_from
    while pos < n:
        if n - pos < 8:
            raise DecodeError(f"truncated record header ({n - pos} bytes left)", base + pos)
        rtype, misc, size = unpack(buf, pos)
        if size < 8 or pos + size > n:
            raise DecodeError(f"bad record size {size} (type {rtype}, "
                              f"{n - pos} bytes left)", base + pos)
        yield pos, rtype, misc, size
        pos += size


def decode_record(buf, pos: int, rtype: int, misc: int, size: int,
                  resolver: _Resolver, base: int = 0) -> Record:
    """Decode the record at ``pos`` whose header was already read and checked."""
    try:
        if rtype == abi.PERF_RECORD_SAMPLE:
            plan = resolver.only or resolver.for_sample(buf, pos, size)
            return _decode_sample(buf, pos, misc, size, plan, base)
        rec = _decode_other(buf, pos, rtype, misc, size, resolver)
    except DecodeError as exc:
        if base:
            raise DecodeError(exc.message, exc.offset + base) from None
        raise
    except (struct.error, IndexError, ValueError, OverflowError, MemoryError) as exc:
        raise DecodeError(f"malformed record (type {rtype}, size {size}): {exc}",
                          base + pos) from None
    rec.offset = base + pos
    rec.size = size
    return rec


_NONE = (None,)


def _decode_sample(buf, pos: int, misc: int, size: int, plan: _RecordLayout, base: int) -> Sample:
    end = pos + size
    head = plan.head
    p = pos + 8 + head.size
    if p > end:
        raise DecodeError("sample shorter than its fixed fields", pos)
    v = head.unpack_from(buf, pos + 8) + _NONE
    i_id, i_ip, i_pid, i_tid, i_time, i_cpu, i_period, i_sid, i_addr = plan.slots
    if plan.general:
        s = Sample(v[i_id], v[i_ip], v[i_pid], v[i_tid], v[i_time], v[i_cpu],
                   v[i_period], None, None, v[i_sid], v[i_addr], None, misc,
                   base + pos, size)
        _decode_sample_tail(buf, p, end, pos, plan, s)
        return s
    callchain = raw = None
    if plan.has_callchain:
        if p + 8 > end:
            raise DecodeError("sample field CALLCHAIN runs past the end of the record", pos)
        nr = _U64.unpack_from(buf, p)[0]
        if p + 8 + 8 * nr > end:
            raise DecodeError("sample field CALLCHAIN runs past the end of the record", pos)
        callchain = struct.unpack_from(f"<{nr}Q", buf, p + 8)
        p += 8 + 8 * nr
    if plan.has_raw:
        if p + 4 > end:
            raise DecodeError("sample field RAW runs past the end of the record", pos)
        n = _U32.unpack_from(buf, p)[0]
        if p + 4 + n > end:
            raise DecodeError("sample field RAW runs past the end of the record", pos)
        raw = bytes(buf[p + 4:p + 4 + n])
    return Sample(v[i_id], v[i_ip], v[i_pid], v[i_tid], v[i_time], v[i_cpu],
                  v[i_period], raw, callchain, v[i_sid], v[i_addr], None, misc,
                  base + pos, size)


def _need(p: int, n: int, end: int, pos: int, what: str) -> None:
    if n < 0 or p + n > end:
        raise DecodeError(f"sample field {what} runs past the end of the record", pos)


def _u64s(buf, p: int, count: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{count}Q", buf, p)


def _decode_sample_tail(buf, p: int, end: int, pos: int, plan: _RecordLayout, s: Sample) -> int:
    """The variable-size part of a sample, from READ on, in kernel order."""
    st = plan.info.sample_type
    if plan.unknown_bits:
        raise DecodeError(f"sample_type bits {plan.unknown_bits:#x} are not "
                          "supported by this decoder", pos)
    extra: dict = {}
    if st & abi.PERF_SAMPLE_READ:
        s.read, p = _decode_read(buf, p, end, pos, plan.info.read_format)
    if st & abi.PERF_SAMPLE_CALLCHAIN:
        _need(p, 8, end, pos, "CALLCHAIN")
        nr = _U64.unpack_from(buf, p)[0]
        _need(p + 8, 8 * nr, end, pos, "CALLCHAIN")
        s.callchain = _u64s(buf, p + 8, nr)
        p += 8 + 8 * nr
    if st & abi.PERF_SAMPLE_RAW:
        _need(p, 4, end, pos, "RAW")
        n = _U32.unpack_from(buf, p)[0]
        _need(p + 4, n, end, pos, "RAW")
        s.raw = bytes(buf[p + 4:p + 4 + n])
        p += 4 + n
    if st & abi.PERF_SAMPLE_BRANCH_STACK:
        p = _decode_branch_stack(buf, p, end, pos, plan.info, extra)
    if st & abi.PERF_SAMPLE_REGS_USER:
        extra["regs_user"], p = _decode_regs(buf, p, end, pos, plan.info.sample_regs_user)
    if st & abi.PERF_SAMPLE_STACK_USER:
        _need(p, 8, end, pos, "STACK_USER")
        n = _U64.unpack_from(buf, p)[0]
        p += 8
        if n:
            _need(p, n + 8, end, pos, "STACK_USER")
            dyn = _U64.unpack_from(buf, p + n)[0]
            extra["stack_user"] = bytes(buf[p:p + min(dyn, n)])
            p += n + 8
        else:
            extra["stack_user"] = b""
    for bit, name in ((abi.PERF_SAMPLE_WEIGHT | abi.PERF_SAMPLE_WEIGHT_STRUCT, "weight"),
                      (abi.PERF_SAMPLE_DATA_SRC, "data_src"),
                      (abi.PERF_SAMPLE_TRANSACTION, "transaction")):
        if st & bit:
            _need(p, 8, end, pos, name)
            extra[name] = _U64.unpack_from(buf, p)[0]
            p += 8
    if st & abi.PERF_SAMPLE_REGS_INTR:
        extra["regs_intr"], p = _decode_regs(buf, p, end, pos, plan.info.sample_regs_intr)
    for bit, name in ((abi.PERF_SAMPLE_PHYS_ADDR, "phys_addr"),
                      (abi.PERF_SAMPLE_CGROUP, "cgroup"),
                      (abi.PERF_SAMPLE_DATA_PAGE_SIZE, "data_page_size"),
                      (abi.PERF_SAMPLE_CODE_PAGE_SIZE, "code_page_size")):
        if st & bit:
            _need(p, 8, end, pos, name)
            extra[name] = _U64.unpack_from(buf, p)[0]
            p += 8
    if st & abi.PERF_SAMPLE_AUX:
        _need(p, 8, end, pos, "AUX")
        n = _U64.unpack_from(buf, p)[0]
        _need(p + 8, n, end, pos, "AUX")
        extra["aux"] = bytes(buf[p + 8:p + 8 + n])
        p += 8 + n
    s.extra = extra or None
    return p


def _decode_read(buf, p: int, end: int, pos: int, rf: int) -> tuple[ReadValues, int]:
    enabled = running = None
    if rf & abi.PERF_FORMAT_GROUP:
        _need(p, 8, end, pos, "READ")
        nr = _U64.unpack_from(buf, p)[0]
        p += 8
        if rf & abi.PERF_FORMAT_TOTAL_TIME_ENABLED:
            _need(p, 8, end, pos, "READ")
            enabled = _U64.unpack_from(buf, p)[0]
            p += 8
        if rf & abi.PERF_FORMAT_TOTAL_TIME_RUNNING:
            _need(p, 8, end, pos, "READ")
            running = _U64.unpack_from(buf, p)[0]
            p += 8
        per = 1 + bool(rf & abi.PERF_FORMAT_ID) + bool(rf & abi.PERF_FORMAT_LOST)
        _need(p, 8 * per * nr, end, pos, "READ")
        words = _u64s(buf, p, per * nr)
        p += 8 * per * nr
        values = tuple(_read_entry(words[i * per:(i + 1) * per], rf) for i in range(nr))
        return ReadValues(values, enabled, running), p
    n = _read_words(rf)
    _need(p, 8 * n, end, pos, "READ")
    words = list(_u64s(buf, p, n))
    p += 8 * n
    value = words.pop(0)
    if rf & abi.PERF_FORMAT_TOTAL_TIME_ENABLED:
        enabled = words.pop(0)
    if rf & abi.PERF_FORMAT_TOTAL_TIME_RUNNING:
        running = words.pop(0)
    rest = _read_entry((value, *words), rf)
    return ReadValues((rest,), enabled, running), p


def _read_entry(words, rf: int) -> tuple[int, int | None, int | None]:
    it = iter(words)
    value = next(it)
    ident = next(it) if rf & abi.PERF_FORMAT_ID else None
    lost = next(it) if rf & abi.PERF_FORMAT_LOST else None
    return value, ident, lost


def _decode_branch_stack(buf, p, end, pos, info: AttrInfo, extra: dict) -> int:
    _need(p, 8, end, pos, "BRANCH_STACK")
    nr = _U64.unpack_from(buf, p)[0]
    p += 8
    if info.branch_sample_type & abi.PERF_SAMPLE_BRANCH_HW_INDEX:
        _need(p, 8, end, pos, "BRANCH_STACK")
        p += 8  # hw_idx
    _need(p, 24 * nr, end, pos, "BRANCH_STACK")
    words = _u64s(buf, p, 3 * nr)
    extra["branch_stack"] = tuple(words[i:i + 3] for i in range(0, 3 * nr, 3))
    p += 24 * nr
    if info.branch_sample_type & abi.PERF_SAMPLE_BRANCH_COUNTERS:
        _need(p, 8 * nr, end, pos, "BRANCH_STACK")
        p += 8 * nr
    return p


def _decode_regs(buf, p, end, pos, mask: int) -> tuple[tuple[int, ...], int]:
    _need(p, 8, end, pos, "REGS")
    regs_abi = _U64.unpack_from(buf, p)[0]
    p += 8
    if regs_abi == 0:  # PERF_SAMPLE_REGS_ABI_NONE: no registers follow
        return (0,), p
    n = bin(mask).count("1")
    _need(p, 8 * n, end, pos, "REGS")
    regs = _u64s(buf, p, n)
    return (regs_abi, *regs), p + 8 * n


# --- non-sample records ------------------------------------------------------------------

def _trailer(buf, pos: int, size: int, plan: "_RecordLayout | None") -> tuple[int, dict]:
    """Return (end of the body, trailer fields) for a non-sample record."""
    end = pos + size
    if plan is None or not plan.info.sample_id_all or not plan.trailer.size:
        return end, {}
    start = end - plan.trailer.size
    if start < pos + 8:
        raise DecodeError("record too short for its sample_id trailer", pos)
    values = plan.trailer.unpack_from(buf, start)
    return start, {name: values[i] for name, i in plan.trailer_idx.items()}


def _cstr(buf, start: int, end: int) -> bytes:
    raw = bytes(buf[start:end])
    cut = raw.find(b"\0")
    return raw if cut < 0 else raw[:cut]


_PIDTID = struct.Struct("<II")
_FORK = struct.Struct("<IIIIQ")
_MMAP = struct.Struct("<IIQQQ")
_MMAP2_INO = struct.Struct("<IIQQQIIQQII")
_MMAP2_BUILDID = struct.Struct("<IIQQQBBH20sII")
_LOST = struct.Struct("<QQ")
_THROTTLE = struct.Struct("<QQQ")


def _body(buf, pos: int, body_end: int, st: struct.Struct, what: str):
    if pos + 8 + st.size > body_end:
        raise DecodeError(f"{what} record too short", pos)
    return st.unpack_from(buf, pos + 8)


def _decode_other(buf, pos: int, rtype: int, misc: int, size: int,
                  resolver: _Resolver) -> Record:
    if rtype >= abi.PERF_RECORD_USER_TYPE_START:
        # perf's own records never carry a sample_id trailer.
        if rtype == abi.PERF_RECORD_FINISHED_ROUND:
            return FinishedRound()
        return Unknown(rtype, misc, bytes(buf[pos + 8:pos + size]))
    plan = resolver.for_other(buf, pos, size)
    body_end, tr = _trailer(buf, pos, size, plan)
    time, cpu = tr.get("time"), tr.get("cpu")
    if rtype == abi.PERF_RECORD_COMM:
        pid, tid = _body(buf, pos, body_end, _PIDTID, "COMM")
        return Comm(pid, tid, _cstr(buf, pos + 16, body_end), time, cpu,
                    bool(misc & abi.PERF_RECORD_MISC_COMM_EXEC))
    if rtype in (abi.PERF_RECORD_FORK, abi.PERF_RECORD_EXIT):
        pid, ppid, tid, ptid, t = _body(buf, pos, body_end, _FORK, "FORK/EXIT")
        cls = Fork if rtype == abi.PERF_RECORD_FORK else Exit
        # perf orders (and prints) side-band records by their sample_id time;
        # the body's own time is only a fallback without sample_id_all.
        return cls(pid, ppid, tid, ptid, time if time is not None else t, cpu)
    if rtype == abi.PERF_RECORD_LOST:
        ident, lost = _body(buf, pos, body_end, _LOST, "LOST")
        return Lost(ident, lost, time, cpu)
    if rtype == abi.PERF_RECORD_LOST_SAMPLES:
        (lost,) = _body(buf, pos, body_end, _U64, "LOST_SAMPLES")
        return LostSamples(lost, time, cpu, tr.get("id"))
    if rtype in (abi.PERF_RECORD_THROTTLE, abi.PERF_RECORD_UNTHROTTLE):
        t, ident, stream = _body(buf, pos, body_end, _THROTTLE, "THROTTLE")
        return Throttle(t, ident, stream, cpu, rtype == abi.PERF_RECORD_UNTHROTTLE)
    if rtype == abi.PERF_RECORD_MMAP:
        pid, tid, addr, length, pgoff = _body(buf, pos, body_end, _MMAP, "MMAP")
        name = _cstr(buf, pos + 8 + _MMAP.size, body_end)
        return Mmap(pid, tid, addr, length, pgoff, name, time, cpu, misc)
    if rtype == abi.PERF_RECORD_MMAP2:
        return _decode_mmap2(buf, pos, misc, body_end, time, cpu)
    if rtype == abi.PERF_RECORD_READ:
        pid, tid = _body(buf, pos, body_end, _PIDTID, "READ")
        rf = plan.info.read_format if plan else 0
        values, _ = _decode_read(buf, pos + 16, body_end, pos, rf)
        return Read(pid, tid, values, time, cpu)
    if rtype == abi.PERF_RECORD_SWITCH:
        return Switch(bool(misc & abi.PERF_RECORD_MISC_SWITCH_OUT), None, None, time, cpu)
    if rtype == abi.PERF_RECORD_SWITCH_CPU_WIDE:
        npid, ntid = _body(buf, pos, body_end, _PIDTID, "SWITCH_CPU_WIDE")
        return Switch(bool(misc & abi.PERF_RECORD_MISC_SWITCH_OUT), npid, ntid, time, cpu)
    return Unknown(rtype, misc, bytes(buf[pos + 8:body_end]), time, cpu)


def _decode_mmap2(buf, pos, misc, body_end, time, cpu) -> Mmap2:
    if misc & abi.PERF_RECORD_MISC_MMAP_BUILD_ID:
        (pid, tid, addr, length, pgoff, bid_size, _r1, _r2, bid, prot,
         flags) = _body(buf, pos, body_end, _MMAP2_BUILDID, "MMAP2")
        maj = mnr = ino = gen = None
        build_id = bid[:min(bid_size, 20)]
    else:
        (pid, tid, addr, length, pgoff, maj, mnr, ino, gen, prot,
         flags) = _body(buf, pos, body_end, _MMAP2_INO, "MMAP2")
        build_id = None
    name = _cstr(buf, pos + 8 + _MMAP2_INO.size, body_end)
    return Mmap2(pid, tid, addr, length, pgoff, maj, mnr, ino, gen, build_id,
                 prot, flags, name, time, cpu, misc)
