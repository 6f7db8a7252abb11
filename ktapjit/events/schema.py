"""Event schemas: tracefs ``format`` files and decoding raw tracepoint data.

A tracepoint describes its binary record in ``events/SYS/EVT/format``::

    name: sched_wakeup
    ID: 374
    format:
    \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
    ...                                  (blank line ends the common fields)
    \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
    \tfield:__data_loc char[] name;\toffset:24;\tsize:4;\tsigned:0;

    print fmt: "comm=%s pid=%d ...", REC->comm, REC->pid, ...

The same text travels inside perf.data's tracing-data header, so this parser
serves live tracing and recordings alike. ``EventFormat.decode`` turns the
RAW bytes of a sample into script values as LANGUAGE.md defines them:
integers sign- or zero-extended as the format says, ``char[]`` fields as byte
strings cut at the first NUL, other arrays as lists of integers (the engine
makes them tables keyed from 0), and ``__data_loc``/``__rel_loc`` fields
resolved.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ktapjit.events.errors import EventsError

__all__ = [
    "Field",
    "EventFormat",
    "FormatError",
    "EventDecodeError",
    "parse_format",
]


class FormatError(EventsError):
    """A format file we cannot make sense of."""


class EventDecodeError(EventsError):
    """Raw event data that does not fit its format (truncated or corrupt)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a tracepoint record, as its format file declares it.

    ``type`` is the declared C type without the array suffix (``char`` for
    ``char comm[16]``, ``__data_loc char[]`` for a dynamic string).
    ``array_len`` is None for scalars, the element count for fixed arrays and
    0 for dynamic (``__data_loc``/``__rel_loc``) arrays.
    """

    name: str
    type: str
    offset: int
    size: int
    signed: bool
    array_len: int | None = None
    is_string: bool = False
    dynamic: bool = False
    # __rel_loc: the offset is relative to the end of this field.
    relative: bool = False
    # Size of one element: the field size for scalars, size/len for arrays,
    # the C type's size for dynamic arrays.
    elem_size: int = 0

    @property
    def is_array(self) -> bool:
        return self.array_len is not None

    @property
    def is_pointer(self) -> bool:
        return self.array_len is None and self.type.rstrip().endswith("*")


@dataclass(eq=False)
class EventFormat:
    """A parsed tracefs format: the layout of one tracepoint's raw data."""

    system: str | None
    name: str
    id: int
    fields: list[Field]
    common_fields: list[Field]
    print_fmt: str
    _decoder: Callable[[bytes], dict] | None = field(
        default=None, init=False, repr=False
    )
    _by_name: dict[str, Field] | None = field(default=None, init=False, repr=False)

    @property
    def all_fields(self) -> list[Field]:
        return self.common_fields + self.fields

    def args(self) -> list[Field]:
        """The non-common fields in format order: arg0, arg1, ..."""
        return list(self.fields)

    def field(self, name: str) -> Field | None:
        """A field by name, common fields included."""
        if self._by_name is None:
            self._by_name = {f.name: f for f in self.all_fields}
        return self._by_name.get(name)

    @property
    def fixed_size(self) -> int:
        """Bytes the raw data must hold for every fixed field to be present."""
        return max((f.offset + f.size for f in self.all_fields), default=0)

    def decode(self, raw: bytes) -> dict:
        """Field name -> value for one record's raw data (common fields first)."""
        if self._decoder is None:
            self._decoder = _build_decoder(self)
        return self._decoder(raw)

    def encode(self, values: Mapping[str, object]) -> bytes:
        """Raw data for a record holding *values* (the inverse of decode).

        Missing fields are zero (``common_type`` defaults to the event id);
        dynamic fields are appended after the fixed part, strings with their
        NUL, as the kernel lays them out. Used to render argstr from decoded
        values and to synthesise streams.
        """
        return _encode(self, values)

    @property
    def qualified_name(self) -> str:
        return f"{self.system}:{self.name}" if self.system else self.name


# ----------------------------------------------------------------------------
# Parsing the format text

# "field:TYPE NAME[LEN];\toffset:N;\tsize:N;\tsigned:N;" (signed: is absent on
# very old kernels).
_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>-?\d+);)?"
)
_DECL_RE = re.compile(
    r"^(?P<type>.*?)\s*(?<![\w])(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<len>[^\]]*)\])?\s*$"
)

# Sizes of the C element types that appear in dynamic arrays; anything
# unknown falls back to one byte (then a dynamic array reads as bytes).
_C_SIZES = {
    "char": 1, "signed char": 1, "unsigned char": 1, "u8": 1, "s8": 1, "__u8": 1,
    "__s8": 1, "bool": 1, "_Bool": 1,
    "short": 2, "unsigned short": 2, "u16": 2, "s16": 2, "__u16": 2, "__s16": 2,
    "int": 4, "unsigned int": 4, "unsigned": 4, "u32": 4, "s32": 4, "__u32": 4,
    "__s32": 4, "pid_t": 4, "uid_t": 4, "gid_t": 4,
    "long": 8, "unsigned long": 8, "long long": 8, "unsigned long long": 8,
    "u64": 8, "s64": 8, "__u64": 8, "__s64": 8, "size_t": 8, "ssize_t": 8,
    "loff_t": 8, "dma_addr_t": 8, "phys_addr_t": 8, "sector_t": 8,
}

_QUALIFIERS = re.compile(r"\b(const|volatile)\b")


def _base_type(ctype: str) -> str:
    """``__data_loc const char[]`` -> ``char``: the element type, bare."""
    text = ctype.replace("__data_loc", "").replace("__rel_loc", "")
    text = text.replace("[]", "")
    text = _QUALIFIERS.sub("", text)
    return " ".join(text.split())


def _parse_field(line: str, lineno: int) -> Field:
    m = _FIELD_RE.match(line)
    if not m:
        raise FormatError(f"line {lineno}: cannot parse field declaration: {line.strip()!r}")
    decl = m.group("decl").strip()
    d = _DECL_RE.match(decl)
    if not d:
        raise FormatError(f"line {lineno}: cannot parse field declaration: {decl!r}")
    ctype, name, len_text = d.group("type").strip(), d.group("name"), d.group("len")
    offset, size = int(m.group("offset")), int(m.group("size"))
    signed = bool(int(m.group("signed") or 0))
    dynamic = "__data_loc" in ctype or "__rel_loc" in ctype
    base = _base_type(ctype)
    array_len: int | None = None
    elem_size = size
    if dynamic:
        array_len = 0
        elem_size = 8 if base.endswith("*") else _C_SIZES.get(base, 1)
    elif len_text is not None:
        array_len, elem_size = _array_shape(base, size, len_text)
    is_string = array_len is not None and base == "char"
    return Field(
        name=name,
        type=ctype,
        offset=offset,
        size=size,
        signed=signed,
        array_len=array_len,
        is_string=is_string,
        dynamic=dynamic,
        relative="__rel_loc" in ctype,
        elem_size=elem_size,
    )


def _array_shape(base: str, size: int, len_text: str) -> tuple[int, int]:
    """(element count, element size) of ``TYPE name[LEN]`` occupying *size* bytes."""
    try:
        count = int(len_text.strip(), 0)
    except ValueError:
        # A macro such as TASK_COMM_LEN: derive the count from the sizes.
        elem = _C_SIZES.get(base, 8 if base.endswith("*") else 1)
        count = size // elem if elem else size
    if count <= 0:
        return 0, 1
    return count, max(size // count, 1)


def parse_format(text: str, system: str | None = None) -> EventFormat:
    """Parse the text of a tracefs ``format`` file.

    Raises FormatError (one line) for text that is not a format file.
    """
    name: str | None = None
    event_id: int | None = None
    groups: list[list[Field]] = [[]]
    print_fmt = ""
    in_fields = False
    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("name:") and name is None:
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            event_id = _parse_int(stripped[3:], lineno, "ID")
        elif stripped == "format:":
            in_fields = True
        elif stripped.startswith("print fmt:"):
            # The print fmt is the rest of the file: a few events' formats
            # contain raw newlines.
            rest = [line.split("print fmt:", 1)[1]] + lines[lineno:]
            print_fmt = "\n".join(rest).strip()
            break
        elif in_fields and stripped.startswith("field:"):
            groups[-1].append(_parse_field(line, lineno))
        elif in_fields and not stripped and groups[-1]:
            groups.append([])
    if name is None:
        raise FormatError("not a tracefs format file: no 'name:' line")
    if event_id is None:
        raise FormatError(f"format of '{name}' has no 'ID:' line")
    common, rest = _split_common(groups)
    return EventFormat(
        system=system,
        name=name,
        id=event_id,
        fields=rest,
        common_fields=common,
        print_fmt=print_fmt,
    )


def _split_common(groups: list[list[Field]]) -> tuple[list[Field], list[Field]]:
    groups = [g for g in groups if g]
    if not groups:
        return [], []
    # The kernel prints the common fields as the first group, then a blank
    # line. If that separation is missing, fall back on the common_ prefix.
    if len(groups) >= 2:
        return groups[0], [f for g in groups[1:] for f in g]
    flat = groups[0]
    common = [f for f in flat if f.name.startswith("common_")]
    return common, [f for f in flat if not f.name.startswith("common_")]


def _parse_int(text: str, lineno: int, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise FormatError(f"line {lineno}: bad {what} {text.strip()!r}") from None


# ----------------------------------------------------------------------------
# Decoding raw data

_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def _int_struct(size: int, signed: bool, count: int = 1) -> struct.Struct | None:
    code = _INT_CODES.get(size)
    if code is None:
        return None
    return struct.Struct("<" + str(count) + (code if signed else code.upper()))


def _field_reader(ev: EventFormat, f: Field) -> Callable[[bytes], object]:
    """A function raw -> value for one field. Bounds were checked by the caller
    for fixed fields; dynamic fields check their own data."""
    off = f.offset
    if f.dynamic:
        return _dynamic_reader(ev, f)
    if f.array_len is None:
        st = _int_struct(f.size, f.signed)
        if st is None:  # an odd-sized scalar (a struct): its bytes
            return lambda raw: bytes(raw[off:off + f.size])
        unpack = st.unpack_from
        return lambda raw: unpack(raw, off)[0]
    if f.is_string:
        end = off + f.size

        def read_chars(raw: bytes) -> bytes:
            chunk = bytes(raw[off:end])
            nul = chunk.find(b"\0")
            return chunk if nul < 0 else chunk[:nul]

        return read_chars
    st = _int_struct(f.elem_size, f.signed, f.array_len)
    if st is None or st.size != f.size:
        return lambda raw: list(bytes(raw[off:off + f.size]))
    unpack = st.unpack_from
    return lambda raw: list(unpack(raw, off))


def _dynamic_reader(ev: EventFormat, f: Field) -> Callable[[bytes], object]:
    loc_struct = struct.Struct("<I" if f.size == 4 else "<H")
    field_end = f.offset + f.size
    elem = f.elem_size or 1
    elem_struct = _int_struct(elem, f.signed)

    def read(raw: bytes) -> object:
        loc = loc_struct.unpack_from(raw, f.offset)[0]
        start = loc & 0xFFFF
        # Very old kernels had 2-byte locations without a length: the data
        # runs to the end of the record.
        length = (loc >> 16) if f.size == 4 else len(raw) - start
        if f.relative:
            start += field_end
        if start + length > len(raw):
            raise EventDecodeError(
                f"{ev.qualified_name}: field '{f.name}' points to bytes "
                f"{start}..{start + length} but the record has {len(raw)}"
            )
        chunk = bytes(raw[start:start + length])
        if f.is_string:
            nul = chunk.find(b"\0")
            return chunk if nul < 0 else chunk[:nul]
        if elem_struct is None:
            return list(chunk)
        n = length // elem
        return [elem_struct.unpack_from(chunk, i * elem)[0] for i in range(n)]

    return read


def _build_decoder(ev: EventFormat) -> Callable[[bytes], dict]:
    readers = [(f.name, _field_reader(ev, f)) for f in ev.all_fields]
    need = ev.fixed_size
    label = ev.qualified_name

    def decode(raw: bytes) -> dict:
        if len(raw) < need:
            raise EventDecodeError(
                f"{label}: raw data is {len(raw)} bytes, the format needs {need}"
            )
        return {name: read(raw) for name, read in readers}

    return decode


# ----------------------------------------------------------------------------
# Encoding values back into raw data


def _int_bytes(value: object, size: int) -> bytes:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:size]).ljust(size, b"\0")
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")[:size].ljust(size, b"\0")
    return bytes(size)


def _array_bytes(f: Field, value: object, elem: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, Mapping):  # a table keyed from 0
        value = [value[k] for k in sorted(k for k in value if isinstance(k, int))]
    if isinstance(value, (list, tuple)):
        return b"".join(_int_bytes(v, elem) for v in value)
    return b""


def _encode(ev: EventFormat, values: Mapping[str, object]) -> bytes:
    raw = bytearray(ev.fixed_size)
    tail = bytearray()
    for f in ev.all_fields:
        value = values.get(f.name)
        if value is None and f.name == "common_type":
            value = ev.id
        if f.dynamic:
            data = _array_bytes(f, value, f.elem_size or 1)
            if f.is_string:
                data = data.split(b"\0", 1)[0] + b"\0"
            start = len(raw) + len(tail)
            loc = start - (f.offset + f.size) if f.relative else start
            word = ((len(data) & 0xFFFF) << 16) | (loc & 0xFFFF)
            if f.size == 2:  # old kernels: offset only, data runs to the end
                word = loc & 0xFFFF
            raw[f.offset:f.offset + f.size] = word.to_bytes(f.size, "little")
            tail += data
        elif f.array_len is not None:
            data = _array_bytes(f, value, f.elem_size or 1)[: f.size]
            raw[f.offset:f.offset + len(data)] = data
        elif value is not None:
            raw[f.offset:f.offset + f.size] = _int_bytes(value, f.size)
    return bytes(raw + tail)
