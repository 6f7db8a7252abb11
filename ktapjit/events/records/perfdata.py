"""perf.data files: reading what ``perf record`` wrote, and writing files that
``perf script`` and ``perf report`` read.

A perf.data file (``tools/perf/util/header.c``, file mode) is::

    perf_file_header   magic "PERFILE2", size 104, attr_size, sections
                       attrs, data, event_types, and a 256-bit feature bitmap
    ids                u64 sample ids of each attr (anywhere; attrs point at them)
    attrs              per event: perf_event_attr + perf_file_section(ids)
    data               the record stream (see decode.py)
    feature index      one perf_file_section per set feature bit, in bit order,
                       at data.offset + data.size
    features           TRACING_DATA, HOSTNAME, CMDLINE, EVENT_DESC, ...

The TRACING_DATA feature embeds the tracefs ``format`` files of every
tracepoint recorded, which makes the file self-describing: ``PerfData.formats``
hands that text on to ``schema.parse_format``.

Pipe mode (``perf record -o -``: header size 16, attrs and tracing data as
in-stream records) is read too.

A file whose writer never finished it (killed, or out of space) still has a
data size of 0 in its header: perf and ``PerfDataWriter`` set it last. Such a
file is read up to its last complete record (``PerfData.recovery`` says where
that is). ``PerfDataWriter`` puts the features before the data, with a copy of
their index right after the attrs, so that its unfinished files keep their
formats and event names; perf writes its features at the end, and its
unfinished files have none.

Every problem with a file raises ``PerfDataError`` whose message is one line
and names the byte offset.
"""

from __future__ import annotations

import mmap
import os
import platform
import re
import socket
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import AttrInfo, AttrTable, DecodeError, Record, iter_records
from ktapjit.events.errors import EventsError

PERF_MAGIC = b"PERFILE2"
PERF_MAGIC_SWAPPED = b"2ELIFREP"
FILE_HEADER = struct.Struct("<8sQQ QQ QQ QQ 4Q")  # 104 bytes
PIPE_HEADER_SIZE = 16
SECTION = struct.Struct("<QQ")
_DATA_SIZE_FIELD = 48  # the header's data.size, the last thing a writer sets

# Feature bits (enum perf_header_feature).
HEADER_TRACING_DATA = 1
HEADER_BUILD_ID = 2
HEADER_HOSTNAME = 3
HEADER_OSRELEASE = 4
HEADER_VERSION = 5
HEADER_ARCH = 6
HEADER_NRCPUS = 7
HEADER_CPUDESC = 8
HEADER_CPUID = 9
HEADER_TOTAL_MEM = 10
HEADER_CMDLINE = 11
HEADER_EVENT_DESC = 12
HEADER_AUXTRACE = 18
HEADER_DIR_FORMAT = 24
HEADER_FEAT_BITS = 256
# Features that describe this file's own layout (offsets into it), which a
# writer of new data cannot carry over from another file.
_LAYOUT_FEATURES = frozenset({HEADER_AUXTRACE, HEADER_DIR_FORMAT})

# HEADER_BUILD_ID entries (perf_record_header_build_id): header, pid, 24
# bytes of build-id (its length in byte 20 when misc has BUILD_ID_SIZE),
# then the file name, NUL-padded to 64. The host kernel is pid -1, named:
KERNEL_DSO = b"[kernel.kallsyms]"
_BUILD_ID_ENTRY = struct.Struct("<IHHi20sB3x")  # 36 bytes
_MISC_BUILD_ID_SIZE = 1 << 15
_HOST_KERNEL_PID = -1

# perf 6.1 refuses attrs larger than its own struct (128 bytes, VER7), so
# files meant for it carry VER7 attrs unless config3 is needed.
FILE_ATTR_SIZE = abi.PERF_ATTR_SIZE_VER7


class PerfDataError(EventsError):
    """A corrupt, truncated or unsupported perf.data file."""

    def __init__(self, message: str, offset: int | None = None, path: str | None = None):
        where = f" (at byte offset {offset})" if offset is not None else ""
        prefix = f"{path}: " if path else ""
        super().__init__(f"{prefix}{message}{where}")
        self.message = message
        self.offset = offset
        self.path = path


# --- tracing data (the TRACING_DATA feature) -----------------------------------------------

TRACING_MAGIC = b"\x17\x08\x44tracing"
_NAME_RE = re.compile(rb"^name:\s*(\S+)", re.M)
_ID_RE = re.compile(rb"^ID:\s*(\d+)", re.M)


def format_name_id(text: bytes) -> tuple[str | None, int | None]:
    """The ``name:`` and ``ID:`` of a tracefs format file (None when absent)."""
    name = _NAME_RE.search(text)
    ident = _ID_RE.search(text)
    return (name.group(1).decode("utf-8", "replace") if name else None,
            int(ident.group(1)) if ident else None)


@dataclass
class TracingData:
    """perf's tracing-data blob (``util/trace-event-info.c``), version 0.5/0.6.

    ``systems`` maps a system name to its events' format files, in file order.
    """

    header_page: bytes = b""
    header_event: bytes = b""
    ftrace_formats: list[bytes] = field(default_factory=list)
    systems: dict[str, list[bytes]] = field(default_factory=dict)
    kallsyms: bytes = b""
    printk_formats: bytes = b""
    saved_cmdlines: bytes = b""
    version: str = "0.6"
    big_endian: bool = False
    long_size: int = 8
    page_size: int = 4096

    def formats(self) -> dict[tuple[str, str], str]:
        """{(system, event): format text} for every event format in the blob."""
        out = {}
        for system, texts in self.systems.items():
            for text in texts:
                name, _ = format_name_id(text)
                if name:
                    out[(system, name)] = text.decode("utf-8", "surrogateescape")
        return out

    def formats_by_id(self) -> dict[int, tuple[str, str, str]]:
        """{tracepoint id: (system, event, format text)}."""
        out = {}
        for system, texts in self.systems.items():
            for text in texts:
                name, ident = format_name_id(text)
                if name and ident is not None:
                    out[ident] = (system, name, text.decode("utf-8", "surrogateescape"))
        return out

    # -- building -------------------------------------------------------------------

    @classmethod
    def from_formats(cls, formats: Mapping[tuple[str, str], str | bytes],
                     header_page: bytes | None = None,
                     header_event: bytes | None = None,
                     root: Path | None = None) -> "TracingData":
        """Build a blob from ``{(system, event): format text}``. The two header
        files are read from tracefs unless given (perf needs header_page to learn
        the kernel's long size)."""
        if header_page is None or header_event is None:
            from ktapjit.events.tracefs import tracefs_root
            events = (root or tracefs_root()) / "events"
            header_page = header_page if header_page is not None else \
                (events / "header_page").read_bytes()
            header_event = header_event if header_event is not None else \
                (events / "header_event").read_bytes()
        systems: dict[str, list[bytes]] = {}
        for (system, _event), text in formats.items():
            raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
            systems.setdefault(system, []).append(raw)
        return cls(header_page=header_page, header_event=header_event, systems=systems,
                   page_size=mmap.PAGESIZE, long_size=struct.calcsize("l"))

    @classmethod
    def from_tracefs(cls, events: Iterable[tuple[str, str]],
                     root: Path | None = None) -> "TracingData":
        """Read the format files of ``events`` ((system, event) pairs) from tracefs."""
        from ktapjit.events.tracefs import tracefs_root
        base = (root or tracefs_root()) / "events"
        formats = {(s, e): (base / s / e / "format").read_bytes() for s, e in events}
        return cls.from_formats(formats, root=root)

    # -- serialising ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        out = bytearray(TRACING_MAGIC)
        out += self.version.encode() + b"\0"
        out += bytes([1 if self.big_endian else 0, self.long_size])
        out += struct.pack("<I", self.page_size)
        out += b"header_page\0" + struct.pack("<Q", len(self.header_page)) + self.header_page
        out += b"header_event\0" + struct.pack("<Q", len(self.header_event)) + self.header_event
        out += struct.pack("<I", len(self.ftrace_formats))
        for text in self.ftrace_formats:
            out += struct.pack("<Q", len(text)) + text
        out += struct.pack("<I", len(self.systems))
        for system, texts in self.systems.items():
            out += system.encode() + b"\0" + struct.pack("<I", len(texts))
            for text in texts:
                out += struct.pack("<Q", len(text)) + text
        out += struct.pack("<I", len(self.kallsyms)) + self.kallsyms
        out += struct.pack("<I", len(self.printk_formats)) + self.printk_formats
        if self.version >= "0.6":
            out += struct.pack("<Q", len(self.saved_cmdlines)) + self.saved_cmdlines
        return bytes(out)

    # -- parsing ------------------------------------------------------------------------

    @classmethod
    def parse(cls, blob: bytes | memoryview, base: int = 0) -> "TracingData":
        """Parse a blob; ``base`` is its file offset, for error messages."""
        r = _Reader(blob, base, "tracing data")
        if r.take(len(TRACING_MAGIC)) != TRACING_MAGIC:
            raise PerfDataError("tracing data: bad magic", base)
        td = cls()
        td.version = r.cstr().decode("ascii", "replace")
        endian, td.long_size = r.take(2)
        td.big_endian = bool(endian)
        if td.big_endian:
            raise PerfDataError("tracing data: big-endian recordings are not supported",
                                base + r.pos)
        td.page_size = r.u32()
        td.header_page = r.named_block(b"header_page")
        td.header_event = r.named_block(b"header_event")
        td.ftrace_formats = [r.take(r.u64()) for _ in range(r.count())]
        for _ in range(r.count()):
            system = r.cstr().decode("utf-8", "replace")
            td.systems.setdefault(system, []).extend(r.take(r.u64())
                                                     for _ in range(r.count()))
        td.kallsyms = r.take(r.u32())
        td.printk_formats = r.take(r.u32())
        if td.version >= "0.6" and r.pos < len(r.buf):
            td.saved_cmdlines = r.take(r.u64())
        return td


class _Reader:
    """Bounds-checked little-endian reads that fail with a PerfDataError."""

    def __init__(self, buf: bytes | memoryview, base: int, what: str):
        self.buf, self.base, self.what, self.pos = buf, base, what, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise PerfDataError(f"{self.what}: truncated (wanted {n} bytes, "
                                f"{len(self.buf) - self.pos} left)", self.base + self.pos)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def count(self, limit: int = 1 << 20) -> int:
        at = self.pos
        n = self.u32()
        if n > limit:
            raise PerfDataError(f"{self.what}: implausible count {n}", self.base + at)
        return n

    def cstr(self) -> bytes:
        end = bytes(self.buf[self.pos:self.pos + 4096]).find(b"\0")
        if end < 0:
            raise PerfDataError(f"{self.what}: unterminated string", self.base + self.pos)
        out = self.take(end)
        self.pos += 1
        return out

    def named_block(self, name: bytes) -> bytes:
        at = self.pos
        if self.take(len(name) + 1) != name + b"\0":
            raise PerfDataError(f"{self.what}: expected {name.decode()}", self.base + at)
        return self.take(self.u64())

    def string(self) -> str:
        """perf's feature string: u32 length (padded), then NUL-padded bytes."""
        raw = self.take(self.u32())
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


# --- the file ---------------------------------------------------------------------------

@dataclass
class EventAttr:
    """One event of a recording: its attr, its sample ids and its name."""

    attr: abi.perf_event_attr
    ids: list[int]
    name: str | None = None

    @property
    def info(self) -> AttrInfo:
        return AttrInfo.from_attr(self.attr)


class PerfData:
    """A perf.data file opened for reading (see ``read_perf_data``)."""

    def __init__(self, path: str | os.PathLike, buf: bytes | mmap.mmap):
        self.path = str(path)
        self._buf = buf
        self.view = memoryview(buf)
        self.pipe_mode = False
        self.attrs: list[EventAttr] = []
        self.features: dict[int, bytes] = {}
        self.tracing: TracingData | None = None
        self.data_offset = 0
        self.data_size = 0
        self.hostname = self.osrelease = self.perf_version = self.arch = None
        self.nr_cpus_avail = self.nr_cpus_online = None
        self.cmdline: list[str] | None = None
        self.recovery: Recovery | None = None  # set when the file was never finished

    # -- what callers use ---------------------------------------------------------------

    @property
    def kernel_build_id(self) -> bytes | None:
        """The build-id of the kernel the recording was made on, where its
        BUILD_ID feature names one (perf record --no-buildid writes zeros)."""
        blob = self.features.get(HEADER_BUILD_ID, b"")
        pos = 0
        while pos + _BUILD_ID_ENTRY.size <= len(blob):
            _type, misc, size, pid, build_id, length = _BUILD_ID_ENTRY.unpack_from(blob, pos)
            if size < _BUILD_ID_ENTRY.size or pos + size > len(blob):
                break  # a damaged feature: no build-id rather than a wrong one
            name = blob[pos + _BUILD_ID_ENTRY.size:pos + size].split(b"\0", 1)[0]
            if pid == _HOST_KERNEL_PID and name == KERNEL_DSO:
                build_id = build_id[:length] if misc & _MISC_BUILD_ID_SIZE else build_id
                return build_id if build_id.strip(b"\0") else None
            pos += size
        return None

    @property
    def formats(self) -> dict[tuple[str, str], str]:
        """{(system, event): tracefs format text} from the TRACING_DATA feature."""
        return self.tracing.formats() if self.tracing else {}

    @property
    def formats_by_id(self) -> dict[int, tuple[str, str, str]]:
        """{tracepoint id: (system, event, format text)}."""
        return self.tracing.formats_by_id() if self.tracing else {}

    def schemas(self) -> dict[tuple[str, str], object]:
        """Parsed formats: {(system, event): schema.EventFormat}."""
        from ktapjit.events.schema import parse_format
        return {key: parse_format(text, system=key[0]) for key, text in self.formats.items()}

    def format_of(self, ev: EventAttr) -> tuple[str, str, str] | None:
        """(system, event, format text) of a tracepoint event, else None."""
        if ev.attr.type != abi.PERF_TYPE_TRACEPOINT:
            return None
        return self.formats_by_id.get(ev.attr.config)

    def attr_table(self) -> AttrTable:
        table = AttrTable()
        for ev in self.attrs:
            table.add(ev.ids, ev.info)
        if len(self.attrs) == 1 and not self.attrs[0].ids:
            table = AttrTable.single(self.attrs[0].info)
        return table

    @property
    def data_bytes(self) -> memoryview:
        """The data section (the raw record stream), zero-copy."""
        return self.view[self.data_offset:self.data_offset + self.data_size]

    def records(self) -> Iterator[Record]:
        """Every record of the data section, decoded, in file order. Offsets in
        records and errors are file offsets."""
        try:
            yield from iter_records(self.data_bytes, self.attr_table(), base=self.data_offset)
        except DecodeError as exc:
            raise PerfDataError(exc.message, exc.offset, self.path) from None

    def chunks(self, max_bytes: int = 1 << 20) -> Iterator[tuple[int, memoryview]]:
        """The data section as (file offset, bytes) chunks of whole records, each
        at most ``max_bytes`` (or one record, if a record is larger)."""
        data = self.data_bytes
        start = pos = 0
        n = len(data)
        while pos < n:
            if n - pos < 8:
                raise PerfDataError("truncated record header", self.data_offset + pos,
                                    self.path)
            size = struct.unpack_from("<H", data, pos + 6)[0]
            if size < 8 or pos + size > n:
                raise PerfDataError(f"bad record size {size}", self.data_offset + pos,
                                    self.path)
            if pos + size - start > max_bytes and pos > start:
                yield self.data_offset + start, data[start:pos]
                start = pos
            pos += size
        if pos > start:
            yield self.data_offset + start, data[start:pos]

    def close(self) -> None:
        """Unmap the file. Records already decoded stay valid (they hold copies);
        memoryviews from ``data_bytes``/``chunks`` must not be used afterwards."""
        self.view.release()
        if isinstance(self._buf, mmap.mmap):
            try:
                self._buf.close()
            except BufferError:
                pass  # a caller still holds a view; the mapping goes with it
        self._buf = b""
        self.view = memoryview(self._buf)

    def __enter__(self) -> "PerfData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def event_name(self, sample_id: int) -> str | None:
        for ev in self.attrs:
            if sample_id in ev.ids:
                return ev.name
        return None


def read_perf_data(path: str | os.PathLike) -> PerfData:
    """Open and parse the headers of a perf.data file (file or pipe mode)."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                buf: bytes | mmap.mmap = fh.read()  # a pipe or FIFO (perf record -o -)
            elif info.st_size:
                buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            else:
                buf = b""
    except OSError as exc:
        raise PerfDataError(f"cannot open: {exc.strerror}", path=path) from None
    pd = PerfData(path, buf)
    try:
        _parse(pd)
    except DecodeError as exc:
        raise PerfDataError(exc.message, exc.offset, path) from None
    except (struct.error, ValueError, IndexError, OverflowError, MemoryError) as exc:
        # A guard: every known corruption has its own message with an offset.
        raise PerfDataError(f"malformed perf.data headers: {exc}", path=path) from None
    except PerfDataError as exc:
        if exc.path is None:
            raise PerfDataError(exc.message, exc.offset, path) from None
        raise
    return pd


def _parse(pd: PerfData) -> None:
    buf = pd.view
    if len(buf) < PIPE_HEADER_SIZE:
        raise PerfDataError(f"too short for a perf.data header ({len(buf)} bytes)", 0)
    magic, hsize = struct.unpack_from("<8sQ", buf, 0)
    if magic == PERF_MAGIC_SWAPPED:
        raise PerfDataError("big-endian perf.data files are not supported", 0)
    if magic != PERF_MAGIC:
        raise PerfDataError(f"not a perf.data file (magic {bytes(magic)!r})", 0)
    if hsize == PIPE_HEADER_SIZE:
        _parse_pipe(pd)
        return
    if hsize != FILE_HEADER.size or len(buf) < FILE_HEADER.size:
        raise PerfDataError(f"unsupported or truncated header (size {hsize})", 8)
    (_, _, attr_size, attrs_off, attrs_sz, data_off, data_sz, _et_off, _et_sz,
     *bitmap) = FILE_HEADER.unpack_from(buf, 0)
    _check_section(buf, attrs_off, attrs_sz, "attrs section", 24)
    bits = [i for i in range(HEADER_FEAT_BITS) if bitmap[i // 64] >> (i % 64) & 1]
    if _unfinalized(buf, data_off, data_sz, len(bits)):
        _parse_attrs(pd, attr_size, attrs_off, attrs_sz)
        _recover(pd, bits, attrs_off + attrs_sz, data_off)
        return
    _check_section(buf, data_off, data_sz, "data section", 40)
    pd.data_offset, pd.data_size = data_off, data_sz
    _parse_attrs(pd, attr_size, attrs_off, attrs_sz)
    _parse_features(pd, bits, data_off + data_sz)


def _unfinalized(buf, data_off: int, data_sz: int, nr_features: int) -> bool:
    """Whether the file's writer never finished it (killed, or out of space).

    Both perf and ktapjit leave the header's data size at 0 until they end;
    a finished file with no data has its feature index right at the data
    offset. An index entry starts with a file offset below 2**48, whose top
    16 bits, where a record header keeps its size, are 0. So the bytes at the
    data offset are records, not an index, when they are too few for the
    index or their first 8 bytes read as a record header of size 8 or more.
    """
    if data_sz != 0 or data_off > len(buf):
        return False
    left = len(buf) - data_off
    if left == 0:
        return nr_features > 0
    if left < max(8, SECTION.size * nr_features):
        return True
    return struct.unpack_from("<H", buf, data_off + 6)[0] >= 8


def _complete_records_end(buf, start: int) -> int:
    """The offset after the last whole record from ``start`` on: where a
    torn (partly written) record, or the file, ends the stream."""
    pos, n = start, len(buf)
    while n - pos >= 8:
        size = struct.unpack_from("<H", buf, pos + 6)[0]
        if size < 8 or pos + size > n:
            break
        pos += size
    return pos


@dataclass
class Recovery:
    """What was recovered of an unfinished file: its records from the data
    offset up to ``end``; ``file_size - end`` bytes after them are a torn record."""

    end: int
    file_size: int

    @property
    def torn_bytes(self) -> int:
        return self.file_size - self.end


def _recover(pd: PerfData, bits: list[int], attrs_end: int, data_off: int) -> None:
    """An unfinished file: its data runs to the last complete record, and its
    features are those ktapjit writes before the data (none for perf's)."""
    buf = pd.view
    end = _complete_records_end(buf, data_off)
    pd.data_offset, pd.data_size = data_off, end - data_off
    pd.recovery = Recovery(end, len(buf))
    sections = _early_feature_index(buf, bits, attrs_end, data_off)
    for bit, (off, size) in zip(bits, sections):
        pd.features[bit] = bytes(buf[off:off + size])
        _apply_feature(pd, bit, pd.features[bit], off)


def _early_feature_index(buf, bits: list[int], index_off: int, data_off: int) -> list[tuple[int, int]]:
    """The copy of the feature index ktapjit writes right after the attrs,
    before the data (PerfDataWriter); [] when it is not there, as in perf's
    files, whose data starts right after the attrs."""
    index_end = index_off + SECTION.size * len(bits)
    if not bits or index_end > data_off:
        return []
    sections = [SECTION.unpack_from(buf, index_off + SECTION.size * i) for i in range(len(bits))]
    if all(index_end <= off and off + size <= data_off for off, size in sections):
        return sections
    return []


def _check_section(buf, off: int, size: int, what: str, field_at: int) -> None:
    if off + size > len(buf):
        raise PerfDataError(f"{what} (offset {off}, size {size}) runs past the end of "
                            f"the file ({len(buf)} bytes); file truncated?", field_at)


def _parse_attrs(pd: PerfData, attr_size: int, off: int, size: int) -> None:
    if attr_size < abi.PERF_ATTR_SIZE_VER0 + SECTION.size:
        raise PerfDataError(f"bad attr_size {attr_size}", 16)
    if size % attr_size:
        raise PerfDataError(f"attrs section size {size} is not a multiple of "
                            f"attr_size {attr_size}", 32)
    buf = pd.view
    for at in range(off, off + size, attr_size):
        raw = buf[at:at + attr_size - SECTION.size]
        attr = abi.perf_event_attr.from_bytes(raw)
        ids_off, ids_sz = SECTION.unpack_from(buf, at + attr_size - SECTION.size)
        if ids_sz % 8 or ids_off + ids_sz > len(buf):
            raise PerfDataError(f"bad ids section (offset {ids_off}, size {ids_sz})",
                                at + attr_size - SECTION.size)
        ids = list(struct.unpack_from(f"<{ids_sz // 8}Q", buf, ids_off))
        pd.attrs.append(EventAttr(attr, ids))


def _parse_features(pd: PerfData, bits: list[int], index_off: int) -> None:
    buf = pd.view
    if index_off + SECTION.size * len(bits) > len(buf):
        raise PerfDataError("feature index runs past the end of the file; "
                            "file truncated?", index_off)
    for i, bit in enumerate(bits):
        at = index_off + SECTION.size * i
        off, size = SECTION.unpack_from(buf, at)
        if off + size > len(buf):
            raise PerfDataError(f"feature {bit} section (offset {off}, size {size}) "
                                "runs past the end of the file; file truncated?", at)
        pd.features[bit] = bytes(buf[off:off + size])
        _apply_feature(pd, bit, pd.features[bit], off)


def _apply_feature(pd: PerfData, bit: int, blob: bytes, off: int) -> None:
    """Interpret the features ktapjit cares about; keep the rest as bytes."""
    if bit == HEADER_TRACING_DATA:
        pd.tracing = TracingData.parse(blob, off)
    elif bit in (HEADER_HOSTNAME, HEADER_OSRELEASE, HEADER_VERSION, HEADER_ARCH):
        value = _Reader(blob, off, f"feature {bit}").string()
        attr = {HEADER_HOSTNAME: "hostname", HEADER_OSRELEASE: "osrelease",
                HEADER_VERSION: "perf_version", HEADER_ARCH: "arch"}[bit]
        setattr(pd, attr, value)
    elif bit == HEADER_NRCPUS:
        r = _Reader(blob, off, "NRCPUS feature")
        pd.nr_cpus_avail, pd.nr_cpus_online = r.u32(), r.u32()
    elif bit == HEADER_CMDLINE:
        r = _Reader(blob, off, "CMDLINE feature")
        pd.cmdline = [r.string() for _ in range(r.count())]
    elif bit == HEADER_EVENT_DESC:
        _apply_event_desc(pd, blob, off)


def _apply_event_desc(pd: PerfData, blob: bytes, off: int) -> None:
    r = _Reader(blob, off, "EVENT_DESC feature")
    nr, attr_sz = r.count(), r.u32()
    by_ids = {tuple(ev.ids): ev for ev in pd.attrs}
    for i in range(nr):
        r.take(attr_sz)
        nr_ids = r.count()
        name = r.string()
        ids = tuple(struct.unpack(f"<{nr_ids}Q", r.take(8 * nr_ids)))
        ev = by_ids.get(ids) or (pd.attrs[i] if i < len(pd.attrs) else None)
        if ev is not None:
            ev.name = name


def _parse_pipe(pd: PerfData) -> None:
    """Pipe mode: attrs and tracing data arrive as records before the samples.
    We gather them, and the data section is everything after the header."""
    buf = pd.view
    pd.pipe_mode = True
    pos = PIPE_HEADER_SIZE
    data = bytearray()
    n = len(buf)
    while pos < n:
        if n - pos < 8:
            raise PerfDataError("truncated record header", pos)
        rtype, _misc, size = struct.unpack_from("<IHH", buf, pos)
        if size < 8 or pos + size > n:
            raise PerfDataError(f"bad record size {size} (type {rtype})", pos)
        body = buf[pos + 8:pos + size]
        if rtype == abi.PERF_RECORD_HEADER_ATTR:
            # The attr is attr.size bytes; the event's ids follow it.
            asz = struct.unpack_from("<I", body, 4)[0] or abi.PERF_ATTR_SIZE_VER0
            if asz > len(body):
                raise PerfDataError(f"attr size {asz} exceeds its record", pos)
            attr = abi.perf_event_attr.from_bytes(body[:asz])
            nids = (len(body) - asz) // 8
            ids = list(struct.unpack_from(f"<{nids}Q", body, asz)) if nids > 0 else []
            pd.attrs.append(EventAttr(attr, ids))
        elif rtype == abi.PERF_RECORD_HEADER_TRACING_DATA:
            if size < 12:
                raise PerfDataError("HEADER_TRACING_DATA record too short", pos)
            (tsize,) = struct.unpack_from("<I", buf, pos + 8)
            if pos + size + tsize > n:
                raise PerfDataError("truncated tracing data", pos)
            pd.tracing = TracingData.parse(buf[pos + size:pos + size + tsize], pos + size)
            pos += tsize  # the blob follows the record, outside its size
        elif rtype == abi.PERF_RECORD_EVENT_UPDATE:
            _apply_event_update(pd, body)
        elif rtype == abi.PERF_RECORD_HEADER_FEATURE:
            if len(body) < 8:
                raise PerfDataError("HEADER_FEATURE record too short", pos)
            (bit,) = struct.unpack_from("<Q", body, 0)
            pd.features[bit] = bytes(body[8:])
            try:
                _apply_feature(pd, bit, bytes(body[8:]), pos + 16)
            except PerfDataError:
                pass  # a feature we cannot read never stops replay
        elif rtype < abi.PERF_RECORD_USER_TYPE_START or \
                rtype == abi.PERF_RECORD_FINISHED_ROUND:
            data += buf[pos:pos + size]
        pos += size
    # Re-home the stream records as one contiguous "data section".
    pd._buf = bytes(data)
    pd.view = memoryview(pd._buf)
    pd.data_offset, pd.data_size = 0, len(data)


def _apply_event_update(pd: PerfData, body) -> None:
    # struct perf_record_event_update { u64 type; u64 id; union {...} }
    if len(body) < 16:
        return
    kind, ident = struct.unpack_from("<QQ", body, 0)
    if kind == 1:  # PERF_EVENT_UPDATE__NAME
        name = bytes(body[16:]).split(b"\0", 1)[0].decode("utf-8", "replace")
        for ev in pd.attrs:
            if ident in ev.ids:
                ev.name = name


# --- writing --------------------------------------------------------------------------

def _feature_string(text: str) -> bytes:
    """perf's do_write_string: u32 padded length, then NUL-padded to 64 bytes."""
    raw = text.encode("utf-8", "replace")
    padded = (len(raw) + 1 + 63) // 64 * 64
    return struct.pack("<I", padded) + raw + bytes(padded - len(raw))


def kernel_build_id_feature(build_id: bytes) -> bytes:
    """A BUILD_ID feature naming the host kernel's build-id, as perf record
    writes it: perf and replays then symbolize kernel frames only on that kernel."""
    name = KERNEL_DSO + bytes(64 - len(KERNEL_DSO))
    misc = abi.PERF_RECORD_MISC_KERNEL | _MISC_BUILD_ID_SIZE
    return _BUILD_ID_ENTRY.pack(0, misc, _BUILD_ID_ENTRY.size + len(name), _HOST_KERNEL_PID,
                                build_id, len(build_id)) + name


def _attr_file_bytes(attr: abi.perf_event_attr) -> bytes:
    size = FILE_ATTR_SIZE if attr.config3 == 0 else abi.PERF_ATTR_SIZE_VER8
    return attr.to_bytes(size)


class PerfDataWriteError(EventsError):
    """A recording could not be written (a full disk, a lost device). The
    file keeps the records before ``kept_to``, and ``--replay`` reads them."""

    def __init__(self, message: str, kept_to: int):
        super().__init__(message)
        self.kept_to = kept_to


class PerfDataWriter:
    """Write a perf.data file (file mode) that Debian's perf 6.1 reads, in
    place, so that what it holds can be replayed at every moment, even when
    the writer is killed or the disk fills up.

    The file is laid out as::

        header      data size 0 until close(); the feature bitmap from the start
        ids, attrs
        index copy  the feature index, for a reader of an unfinished file
        features    tracing data, event names, host...: before the data
        data        records, appended with write(2) as they come
        index       perf's feature index, written by close()

    perf finds the index at data offset + data size, and each feature by its
    offset, so a finished file reads like perf's own. Until close() the data
    size stays 0, which tells ``read_perf_data`` to take the data as running
    to the last complete record, and the index copy after the attrs gives it
    the features (formats, names) without which the records cannot be read.

    ``events`` is a list of (attr, ids, name). ``tracing`` is a ``TracingData``,
    its bytes, or ``{(system, event): format text}`` (header files then come from
    tracefs). ``features`` ({bit: bytes}, e.g. another file's ``PerfData.features``)
    are written as given, so that a copy keeps what changes how perf reads its
    original: its build-ids, OS release, architecture and CPU count. Only the
    event descriptions, and the tracing data and command line when given, are
    always this writer's own. Feed whole records with ``write_records``;
    ``close`` writes the feature index and the data size. Usable as a context
    manager.
    """

    def __init__(self, path: str | os.PathLike,
                 events: list[tuple[abi.perf_event_attr, Iterable[int], str | None]],
                 tracing: TracingData | bytes | Mapping | None = None, *,
                 cmdline: list[str] | None = None, hostname: str | None = None,
                 osrelease: str | None = None, nr_cpus: tuple[int, int] | None = None,
                 features: Mapping[int, bytes] | None = None):
        self.path = str(path)
        self.carried = {bit: bytes(blob) for bit, blob in (features or {}).items()
                        if bit not in _LAYOUT_FEATURES}
        self.events = [(attr, [int(i) for i in ids], name) for attr, ids, name in events]
        if isinstance(tracing, Mapping):
            tracing = TracingData.from_formats(tracing)
        self.tracing = tracing.to_bytes() if isinstance(tracing, TracingData) else tracing
        uname = os.uname()
        self.cmdline_given = cmdline is not None
        self.cmdline = cmdline if cmdline is not None else ["ktapjit", "record"]
        self.hostname = hostname or socket.gethostname()
        self.osrelease = osrelease or uname.release
        ncpu = os.cpu_count() or 1
        self.nr_cpus = nr_cpus or (ncpu, ncpu)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        self._closed = False
        self._data_size = 0
        self._failure: PerfDataWriteError | None = None
        try:
            self._write_prologue()
        except BaseException:
            os.close(self._fd)
            raise

    def _write_prologue(self) -> None:
        """Everything but the records, at once: header, ids, attrs, features."""
        raws = [_attr_file_bytes(attr) for attr, _ids, _name in self.events]
        if len({len(raw) for raw in raws}) > 1:
            raise ValueError("all attrs of one file must have the same size")
        self._attr_size = (len(raws[0]) if raws else FILE_ATTR_SIZE) + SECTION.size
        ids_blob, attrs = bytearray(), bytearray()
        for raw, (_attr, ids, _name) in zip(raws, self.events):
            attrs += raw + SECTION.pack(FILE_HEADER.size + len(ids_blob), 8 * len(ids))
            ids_blob += struct.pack(f"<{len(ids)}Q", *ids)
        self._attrs_off = FILE_HEADER.size + len(ids_blob)
        self._attrs_sz = len(attrs)
        feats = self._features()
        self._bits = sorted(feats)
        body_off = self._attrs_off + self._attrs_sz + SECTION.size * len(feats)
        index, bodies = bytearray(), bytearray()
        for bit in self._bits:
            index += SECTION.pack(body_off + len(bodies), len(feats[bit]))
            bodies += feats[bit]
        self._index = bytes(index)
        self._data_off = body_off + len(bodies)
        self._write_all(self._header(0), ids_blob, attrs, index, bodies)

    def _header(self, data_size: int) -> bytes:
        bitmap = [0, 0, 0, 0]
        for bit in self._bits:
            bitmap[bit // 64] |= 1 << (bit % 64)
        return FILE_HEADER.pack(PERF_MAGIC, FILE_HEADER.size, self._attr_size,
                                self._attrs_off, self._attrs_sz,
                                self._data_off, data_size, 0, 0, *bitmap)

    def _write_all(self, *parts) -> None:
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                view = view[os.write(self._fd, view):]

    @property
    def _data_end(self) -> int:
        return self._data_off + self._data_size

    def write_records(self, *parts: bytes | memoryview) -> None:
        """Append whole records (raw perf_event_header-framed bytes, in one or
        more buffers) with write(2): once this returns, they are the kernel's
        to keep, whatever happens to this process. All or nothing: a write
        that fails (ENOSPC) is cut off again and raises PerfDataWriteError,
        and the file then ends after the records of the calls before."""
        if self._failure is not None:
            raise self._failure
        try:
            self._write_all(*parts)
        except OSError as exc:
            self._cut_back()
            self._failure = PerfDataWriteError(
                f"cannot write recording '{self.path}': {exc.strerror or exc}; "
                f"it keeps the records before byte offset {self._data_end}", self._data_end)
            raise self._failure from None
        self._data_size += sum(memoryview(part).nbytes for part in parts)

    def _cut_back(self) -> None:
        """Drop a partial write: the file ends after the last whole one."""
        try:
            os.ftruncate(self._fd, self._data_end)
            os.lseek(self._fd, self._data_end, os.SEEK_SET)
        except OSError:
            pass  # the reader still stops at the torn record

    def _features(self) -> dict[int, bytes]:
        feats: dict[int, bytes] = {
            HEADER_HOSTNAME: _feature_string(self.hostname),
            HEADER_OSRELEASE: _feature_string(self.osrelease),
            HEADER_VERSION: _feature_string("ktapjit"),
            HEADER_ARCH: _feature_string(platform.machine()),
            HEADER_NRCPUS: struct.pack("<II", *self.nr_cpus),
        }
        feats.update(self.carried)
        if self.tracing:
            feats[HEADER_TRACING_DATA] = bytes(self.tracing)
        if self.cmdline_given or HEADER_CMDLINE not in feats:
            feats[HEADER_CMDLINE] = struct.pack("<I", len(self.cmdline)) + b"".join(
                _feature_string(a) for a in self.cmdline)
        feats[HEADER_EVENT_DESC] = self._event_desc()
        return feats

    def _event_desc(self) -> bytes:
        out = bytearray(struct.pack("<II", len(self.events), self._attr_size - SECTION.size))
        for attr, ids, name in self.events:
            out += _attr_file_bytes(attr)
            out += struct.pack("<I", len(ids))
            out += _feature_string(name or "")
            out += struct.pack(f"<{len(ids)}Q", *ids)
        return bytes(out)

    def close(self) -> None:
        """Finish the file; raises PerfDataWriteError when that fails (the
        file then stays unfinished, and replayable), unless a write already did."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
        finally:
            os.close(self._fd)

    def _finish(self) -> None:
        # The index first, the data size last: until that 8-byte write the
        # file is an unfinished one, and reads as one.
        try:
            self._write_all(self._index)
            os.pwrite(self._fd, struct.pack("<Q", self._data_size), _DATA_SIZE_FIELD)
        except OSError as exc:
            self._cut_back()
            if self._failure is None:
                raise PerfDataWriteError(
                    f"cannot finish recording '{self.path}': {exc.strerror or exc}; it keeps the "
                    f"records before byte offset {self._data_end}, which --replay reads", self._data_end) from None

    def __enter__(self) -> "PerfDataWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
