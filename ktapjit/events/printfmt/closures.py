"""Rendering ``argstr``: an event's ``print fmt`` evaluated the way ``perf script`` does.

A tracepoint's format file ends with its TP_printk as text::

    print fmt: "comm=%s pid=%d prio=%d target_cpu=%03d", REC->comm, REC->pid, ...

``perf script`` (through libtraceevent) parses that string and the C-like
argument expressions once, then evaluates them for every record. This module
does the same, aiming to be byte-for-byte identical with ``perf script -F
trace``. That means copying libtraceevent's rules, including its quirks:

- every value is an unsigned 64-bit integer; fields are read zero-extended
  and comparisons, division and shifts are unsigned;
- a ``%d``/``%u``/``%x`` conversion casts the value to the C type its length
  modifier names (none: int, ``h``: short, ``hh``: char, ``l``/``ll``/``z``:
  64 bits) and prints it with C printf rules;
- ``%s`` of a non-array 8-byte field prints it as ``%llx`` (a pointer);
- ``__print_flags``/``__print_symbolic`` values that are unconverted enum
  names are unknown (-1), so ``mode=0x0`` is printed as perf does;
- ``%pS``/``%ps`` resolve kernel symbols only when a symbolizer is given,
  otherwise they print ``0x...`` like libtraceevent without kallsyms.

A print fmt that uses a helper we cannot evaluate (``UNSUPPORTED_HELPERS``,
or any other unknown function) is rendered as libtraceevent renders events it
failed to parse: ``[FAILED TO PARSE]`` followed by `` name=value`` for every
field.
"""

from __future__ import annotations

import bisect
import re
import socket
import struct
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ktapjit.events.errors import PrintFmtError
from ktapjit.events.printfmt.parse import LEN_BITS, _Spec, parse_print_fmt
from ktapjit.events.printfmt.values import _MASK, _compile_num, _dyn_loc, _reader
from ktapjit.events.schema import EventFormat, Field

__all__ = [
    "UNSUPPORTED_HELPERS",
    "ArgstrRenderer",
    "compile_print_fmt",
    "kallsyms_symbolizer",
    "parse_printk_formats",
    "symbols_from_pairs",
]

# Helpers that appear in kernels' print fmts and that we do not evaluate
# (perf's libtraceevent does not either, short of plugins). Events using them,
# or GNU statement expressions "({ ... })" (dma:dma_map_sg, kvmmmu:*), render
# as "[FAILED TO PARSE] name=value ...". Listed for the docs.
UNSUPPORTED_HELPERS = (
    "jiffies_to_msecs",
    "mc_event_error_type",
    "trace_seq_buffer_ptr",
    "trace_seq_printf",
)

# A symbolizer maps a kernel address to (symbol name, symbol start) or None.
Symbolizer = Callable[[int], "tuple[str, int] | None"]


# ----------------------------------------------------------------------------
# C printf for the conversions print fmts use

def _format_int(spec: _Spec, value: int, width: int | None, prec: int | None) -> bytes:
    bits = LEN_BITS[spec.ls]
    value &= (1 << bits) - 1
    conv = spec.conv
    flags = spec.flags
    if conv == "c":
        body = bytes([value & 0xFF])
        return _pad(body, width, "-" in flags)
    sign = ""
    if conv in "di":
        if value >> (bits - 1):
            value -= 1 << bits
        if value < 0:
            sign, value = "-", -value
        elif "+" in flags:
            sign = "+"
        elif " " in flags:
            sign = " "
    base = {"d": 10, "i": 10, "u": 10, "x": 16, "X": 16, "o": 8}[conv]
    digits = "" if (prec == 0 and value == 0) else _digits(value, base, conv == "X")
    if prec is not None and len(digits) < prec:
        digits = "0" * (prec - len(digits)) + digits
    prefix = ""
    if "#" in flags:
        if conv in "xX" and value:
            prefix = "0x" if conv == "x" else "0X"
        elif conv == "o" and not digits.startswith("0"):
            digits = "0" + digits
    head = sign + prefix
    if width is not None and "0" in flags and "-" not in flags and prec is None:
        digits = digits.rjust(width - len(head), "0")
    return _pad((head + digits).encode(), width, "-" in flags)


def _digits(value: int, base: int, upper: bool) -> str:
    if base == 10:
        return str(value)
    text = format(value, "x" if base == 16 else "o")
    return text.upper() if upper else text


def _pad(body: bytes, width: int | None, left: bool) -> bytes:
    if width is None or len(body) >= width:
        return body
    fill = b" " * (width - len(body))
    return body + fill if left else fill + body


def _format_str(spec: _Spec, text: bytes, width: int | None, prec: int | None) -> bytes:
    nul = text.find(b"\0")
    if nul >= 0:
        text = text[:nul]
    if prec is not None and prec >= 0:
        text = text[:prec]
    return _pad(text, width, "-" in spec.flags)


def _star(spec: _Spec, len_arg: int | None) -> tuple[int | None, int | None, _Spec]:
    """Width and precision, with a '*' filled from the (int) length argument."""
    width, prec = spec.width, spec.prec
    if len_arg is not None:
        star = len_arg & 0xFFFFFFFF
        if star >> 31:
            star -= 1 << 32
        if width == -1:
            if star < 0:
                spec = _Spec(spec.text, spec.flags + "-", None, prec, spec.ls, spec.conv)
                star = -star
            width = star
        elif prec == -1:
            prec = star if star >= 0 else None
    return width, prec, spec


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What compiling one print fmt needs besides the expression trees."""

    ev: EventFormat
    symbolizer: "Symbolizer | None"
    strings: Mapping[int, bytes]


# ----------------------------------------------------------------------------
# Arguments printed through %s (libtraceevent print_str_arg)

_Out = bytearray
_StrFn = Callable[[bytes, _Out], None]


def _compile_str(node: tuple, ctx: _Ctx, put: Callable[[bytes, _Out], None]) -> _StrFn:
    """A function (raw, out) that prints *node* as a string. *put* applies the
    conversion's width and precision to each string piece."""
    kind = node[0]
    if kind == "atom":
        text = node[1].encode("utf-8", "surrogateescape")
        return lambda raw, out: put(text, out)
    if kind == "field":
        return _str_field(node[1], put, ctx.strings)
    if kind == "flags":
        return _str_flags(node, ctx, put)
    if kind == "sym":
        return _str_symbolic(node, ctx, put)
    if kind == "getstr":
        f = node[1]

        def get_str(raw: bytes, out: _Out) -> None:
            off, length = _dyn_loc(f, raw)
            if length:  # libtraceevent prints nothing for an empty string
                put(raw[off:off + length], out)

        return get_str
    if kind == "hex":
        return _str_hex(node, ctx)
    if kind == "intarr":
        return _str_intarr(node, ctx)
    if kind == "bitmask":
        return _str_bitmask(node[1], node[2], put)
    if kind == "cond":
        cond = _compile_num(node[1], ctx)
        yes = _compile_str(node[2], ctx, put)
        no = _compile_str(node[3], ctx, put)
        return lambda raw, out: (yes if cond(raw) else no)(raw, out)
    # Casts, arithmetic and dynamic arrays print nothing through %s.
    return lambda raw, out: None


def _str_field(f: Field, put: Callable[[bytes, _Out], None], strings: Mapping[int, bytes]) -> _StrFn:
    if not f.is_array and f.size == 8:
        # libtraceevent assumes a long-sized scalar is a pointer: a string
        # the kernel registered (tracepoint_string, trace_printk) or %llx.
        read = _reader(f.offset, 8)

        def pointer(raw: bytes, out: _Out) -> None:
            addr = read(raw)
            text = strings.get(addr)
            out.extend(b"%x" % addr if text is None else text)

        return pointer
    start, end = f.offset, f.offset + f.size
    return lambda raw, out: put(bytes(raw[start:end]), out)


def _str_flags(node: tuple, ctx: _Ctx, put) -> _StrFn:
    value_fn, delim, table = _compile_num(node[1], ctx), node[2].encode(), node[3]
    entries = [(fval, name.encode("utf-8", "surrogateescape")) for fval, name in table]

    def flags(raw: bytes, out: _Out) -> None:
        val = value_fn(raw)
        printed = False
        for fval, name in entries:
            if not val and fval < 0:
                put(name, out)
                break
            if fval > 0 and (val & fval) == fval:
                if printed and delim:
                    out.extend(delim)
                put(name, out)
                printed = True
                val &= ~fval
        if val:
            if printed and delim:
                out.extend(delim)
            out.extend(b"0x%x" % val)

    return flags


def _str_symbolic(node: tuple, ctx: _Ctx, put) -> _StrFn:
    value_fn = _compile_num(node[1], ctx)
    table = {}
    for fval, name in node[2]:
        table.setdefault(fval & _MASK, name.encode("utf-8", "surrogateescape"))

    def symbolic(raw: bytes, out: _Out) -> None:
        val = value_fn(raw)
        name = table.get(val)
        if name is None:
            out.extend(b"0x%x" % val)
        else:
            put(name, out)

    return symbolic


def _array_bytes(node: tuple, ctx: _Ctx) -> Callable[[bytes], tuple[int, int]]:
    """(offset, available) of the array a __print_hex/__print_array names."""
    if node[0] == "dynarr":
        f = node[1]
        return lambda raw: _dyn_loc(f, raw)
    if node[0] == "field":
        f = node[1]
        return lambda raw: (f.offset, len(raw) - f.offset)
    raise PrintFmtError("__print_hex/__print_array of something that is not a field")


def _str_hex(node: tuple, ctx: _Ctx) -> _StrFn:
    spaced, where, length = node[1], _array_bytes(node[2], ctx), _compile_num(node[3], ctx)

    def hex_dump(raw: bytes, out: _Out) -> None:
        off = where(raw)[0]
        n = length(raw)
        data = raw[off:off + n]
        out.extend((b" " if spaced else b"").join(b"%02x" % b for b in data))

    return hex_dump


def _str_intarr(node: tuple, ctx: _Ctx) -> _StrFn:
    where = _array_bytes(node[1], ctx)
    count_fn, size_fn = _compile_num(node[2], ctx), _compile_num(node[3], ctx)

    def int_array(raw: bytes, out: _Out) -> None:
        off = where(raw)[0]
        count, el_size = count_fn(raw), size_fn(raw)
        out.extend(b"{")
        for i in range(count):
            if i:
                out.extend(b",")
            if el_size in (1, 2, 4, 8):
                chunk = raw[off:off + el_size]
                out.extend(b"0x%x" % int.from_bytes(chunk, "little"))
            else:
                out.extend(b"BAD SIZE:%d 0x%x" % (el_size, raw[off] if off < len(raw) else 0))
                el_size = 1
            off += el_size
        out.extend(b"}")

    return int_array


def _str_bitmask(f: Field, cpumask: bool, put) -> _StrFn:
    def bitmask(raw: bytes, out: _Out) -> None:
        off, length = _dyn_loc(f, raw)
        data = bytes(raw[off:off + length])
        put(_cpumask_text(data) if cpumask else _bitmask_text(data), out)

    return bitmask


def _bitmask_text(data: bytes) -> bytes:
    """Hex, most significant byte first, a comma every 32 bits."""
    text = "".join(f"{b:02x}" for b in reversed(data))
    groups = []
    while len(text) > 8:
        groups.insert(0, text[-8:])
        text = text[:-8]
    groups.insert(0, text)
    return ",".join(g for g in groups if g).encode()


def _cpumask_text(data: bytes) -> bytes:
    """CPU list with ranges: "0-3,8"."""
    bits = [i for i in range(len(data) * 8) if data[i // 8] >> (i % 8) & 1]
    from ktapjit.kernel_filter.language import cpulist_text  # kernel_filter costs start-up few formats need

    return cpulist_text(bits).encode()


# ----------------------------------------------------------------------------
# %p conversions (libtraceevent print_arg_pointer)


def _pointer_hex(ext: str, node: tuple, len_fn) -> _StrFn:
    """%*ph: the first LEN bytes of a dynamic array as hex (default 1)."""
    if node[0] != "dynarr":
        return lambda raw, out: out.extend(b"ARG TYPE NOT FIELD BUT 0")
    f = node[1]
    delim = {"C": b":", "D": b"-", "N": b""}.get(ext[1:2], b" ")

    def hex_bytes(raw: bytes, out: _Out) -> None:
        off, length = _dyn_loc(f, raw)
        want = len_fn(raw) & 0xFFFFFFFF if len_fn else 1
        if want >> 31:
            want -= 1 << 32
        n = min(want, length)
        if n >= 1:
            out.extend(delim.join(b"%02x" % b for b in raw[off:off + n]))

    return hex_bytes


def _compile_pointer(spec: _Spec, node: tuple, ctx: _Ctx, len_fn=None) -> _StrFn:
    ext = spec.conv[1:]
    c = ext[:1]
    if c in ("F", "f", "S", "s"):
        symbolizer = ctx.symbolizer
        value = _compile_num(node, ctx)
        with_offset = c in ("F", "S")

        def function(raw: bytes, out: _Out) -> None:
            val = value(raw)
            found = symbolizer(val) if symbolizer else None
            if found is None:
                out.extend(b"0x%x" % val)
                return
            name, start = found
            out.extend(name.encode("utf-8", "surrogateescape"))
            if with_offset:
                out.extend(b"+0x%x" % ((val - start) & _MASK))

        return function
    if c in ("M", "m"):
        return _pointer_mac(ext, node)
    if c in ("I", "i"):
        return _pointer_ip(ext, node, ctx)
    if c == "U":
        return _pointer_uuid(ext, node)
    if c == "h":
        return _pointer_hex(ext, node, len_fn)
    value = _compile_num(node, ctx)

    def plain(raw: bytes, out: _Out) -> None:
        val = value(raw)
        out.extend(b"0x%x" % val if val else b"(nil)")  # glibc's %p

    return plain


def _strip_casts(node: tuple) -> tuple:
    while node[0] == "cast":
        node = node[2]
    return node


def _field_bytes(node: tuple, size: int) -> Callable[[bytes], bytes | None]:
    node = _strip_casts(node)
    if node[0] != "field":
        raise PrintFmtError("pointer extension on something that is not a field")
    f = node[1]
    if f.size != size:
        return lambda raw: None
    return lambda raw: bytes(raw[f.offset:f.offset + size])


def _pointer_mac(ext: str, node: tuple) -> _StrFn:
    get = _field_bytes(node, 6)
    sep = "" if ext[:1] == "m" else ("-" if ext[1:2] == "F" else ":")
    reverse = ext[1:2] == "R"

    def mac(raw: bytes, out: _Out) -> None:
        buf = get(raw)
        if buf is None:
            out.extend(b"INVALIDMAC")
            return
        if reverse:
            buf = buf[::-1]
        out.extend(sep.join(f"{b:02x}" for b in buf).encode())

    return mac


def _ip4_text(buf: bytes, leading: bool) -> bytes:
    return (".".join((f"{b:03d}" if leading else str(b)) for b in buf)).encode()


def _ip6_text(buf: bytes, colons: bool) -> bytes:
    words = [f"{buf[j]:02x}{buf[j + 1]:02x}" for j in range(0, 16, 2)]
    return (":" if colons else "").join(words).encode()


def _ip6c_text(buf: bytes) -> bytes:
    # Python's compressed form matches the kernel's %pI6c except for the
    # v4-mapped/ISATAP tail, which both print dotted.
    return socket.inet_ntop(socket.AF_INET6, buf).encode()


def _pointer_ip(ext: str, node: tuple, ctx: _Ctx) -> _StrFn:
    leading = ext[:1] == "i"
    version = ext[1:2]
    rest = ext[2:]
    if version == "4":
        get = _field_bytes(node, 4)
        reverse = rest[:1] in ("h", "l")

        def ip4(raw: bytes, out: _Out) -> None:
            buf = get(raw)
            if buf is None:
                out.extend(b"INVALIDIPv4")
                return
            out.extend(_ip4_text(buf[::-1] if reverse else buf, leading))

        return ip4
    if version == "6":
        get = _field_bytes(node, 16)
        compressed = ext[:1] == "I" and rest[:1] == "c"

        def ip6(raw: bytes, out: _Out) -> None:
            buf = get(raw)
            if buf is None:
                out.extend(b"INVALIDIPv6")
            elif compressed:
                out.extend(_ip6c_text(buf))
            else:
                out.extend(_ip6_text(buf, ext[:1] == "I"))

        return ip6
    if version == "S":
        return _pointer_sockaddr(ext, node, ctx)
    return lambda raw, out: None


def _pointer_sockaddr(ext: str, node: tuple, ctx: _Ctx) -> _StrFn:
    opts = ext[2:] if ext[:1] == "I" else ""
    with_port = "p" in opts
    compressed = "c" in opts
    node = _strip_casts(node)
    if node[0] == "field":
        f = node[1]
        where = lambda raw: (f.offset, f.size)  # noqa: E731
    elif node[0] == "dynarr":
        f = node[1]
        where = lambda raw: _dyn_loc(f, raw)  # noqa: E731
    else:
        return lambda raw, out: out.extend(b"ARG NOT FIELD NOR DYNAMIC ARRAY BUT TYPE 0")

    def sockaddr(raw: bytes, out: _Out) -> None:
        off, length = where(raw)
        sa = bytes(raw[off:off + length])
        family = int.from_bytes(sa[0:2], "little") if len(sa) >= 2 else -1
        if family == socket.AF_INET:
            if length < 16:
                out.extend(b"INVALIDIPv4")
                return
            out.extend(_ip4_text(sa[4:8], ext[:1] == "i"))
            if with_port:
                out.extend(b":%d" % int.from_bytes(sa[2:4], "big"))
        elif family == socket.AF_INET6:
            if length < 28:
                out.extend(b"INVALIDIPv6")
                return
            if with_port:
                out.extend(b"[")
            addr = sa[8:24]
            out.extend(_ip6c_text(addr) if compressed else _ip6_text(addr, ext[:1] == "I"))
            if with_port:
                out.extend(b"]:%d" % int.from_bytes(sa[2:4], "big"))

    return sockaddr


def _pointer_uuid(ext: str, node: tuple) -> _StrFn:
    get = _field_bytes(node, 16)
    mode = ext[1:2]
    upper = mode in ("L", "B")
    order = [3, 2, 1, 0, 5, 4, 7, 6] + list(range(8, 16)) if mode in ("L", "l") else list(range(16))

    def uuid(raw: bytes, out: _Out) -> None:
        buf = get(raw)
        if buf is None:
            out.extend(b"INVALIDUUID")
            return
        hexes = [(f"{buf[k]:02X}" if upper else f"{buf[k]:02x}") for k in order]
        groups = ["".join(hexes[0:4]), "".join(hexes[4:6]), "".join(hexes[6:8]),
                  "".join(hexes[8:10]), "".join(hexes[10:16])]
        out.extend("-".join(groups).encode())

    return uuid


# ----------------------------------------------------------------------------
# Putting it together


def _put_plain(text: bytes, out: _Out) -> None:
    """%s without width or precision: the C string."""
    nul = text.find(b"\0")
    out.extend(text if nul < 0 else text[:nul])


def _string_with_star(spec: _Spec, node: tuple, ctx: _Ctx, len_fn) -> _StrFn:
    """%*s / %.*s: the width or precision comes from an argument."""
    # The value changes per record: the piece printer reads it from a cell
    # that render fills before printing.
    cell: list = [spec, None, None]

    def put(text: bytes, out: _Out) -> None:
        out.extend(_format_str(cell[0], text, cell[1], cell[2]))

    body = _compile_str(node, ctx, put)

    def render(raw: bytes, out: _Out) -> None:
        width, prec, sp = _star(spec, len_fn(raw))
        cell[:] = [sp, width, prec]
        body(raw, out)

    return render


def _compile_conversion(
    spec: _Spec, node: tuple, len_node: tuple | None, ctx: _Ctx
) -> _StrFn:
    len_fn = _compile_num(len_node, ctx) if len_node is not None else None
    if spec.conv.startswith("p"):
        return _compile_pointer(spec, node, ctx, len_fn)
    if spec.conv == "s":
        if len_fn is not None:
            return _string_with_star(spec, node, ctx, len_fn)
        if spec.width is None and spec.prec is None:
            return _compile_str(node, ctx, _put_plain)
        return _compile_str(
            node, ctx, lambda text, out: out.extend(_format_str(spec, text, spec.width, spec.prec))
        )
    value = _compile_num(node, ctx)
    if len_fn is None:
        return lambda raw, out: out.extend(_format_int(spec, value(raw), spec.width, spec.prec))

    def number_with_len(raw: bytes, out: _Out) -> None:
        width, prec, sp = _star(spec, len_fn(raw))
        out.extend(_format_int(sp, value(raw), width, prec))

    return number_with_len



def _build(ev: EventFormat, symbolizer, strings: Mapping[int, bytes]) -> Callable[[bytes], bytes]:
    ctx = _Ctx(ev, symbolizer, strings)
    pieces, args = parse_print_fmt(ev)
    steps: list[_StrFn] = []
    queue = list(args)
    for kind, item in pieces:
        if kind in ("lit", "bad"):
            text = item
            steps.append(lambda raw, out, _t=text: out.extend(_t))
            continue
        spec = item
        len_node = None
        if spec.width == -1 or spec.prec == -1:
            if not queue:
                raise PrintFmtError("print fmt has fewer arguments than conversions")
            len_node = queue.pop(0)
        if not queue:
            raise PrintFmtError("print fmt has fewer arguments than conversions")
        steps.append(_compile_conversion(spec, queue.pop(0), len_node, ctx))

    def render(raw: bytes) -> bytes:
        out = bytearray()
        for step in steps:
            step(raw, out)
        return bytes(out)

    return render


# ----------------------------------------------------------------------------
# The fallback: libtraceevent's "[FAILED TO PARSE]" plus raw fields


def _raw_field_text(f: Field, raw: bytes) -> bytes:
    """One field as libtraceevent's print_field_raw prints it."""
    if f.is_array:
        if f.dynamic:
            off, length = _dyn_loc(f, raw)
        else:
            off, length = f.offset, f.size
        data = bytes(raw[off:off + length])
        stringish = any(t in f.type for t in ("char", "u8", "s8"))
        cut = data.split(b"\0", 1)[0]
        if stringish and all(32 <= b < 127 or b in b"\t\n\v\f\r" for b in cut):
            return cut
        return b"ARRAY[" + b", ".join(b"%02x" % b for b in data) + b"]"
    val = _reader(f.offset, f.size)(raw)
    is_long = "long" in f.type
    if f.type.rstrip().endswith("*"):
        return b"0x%x" % val
    if f.signed:
        if f.size == 4:
            sval = val - (1 << 32) if val >> 31 else val
            return b"0x%x" % (val if sval >= 0 else sval & 0xFFFFFFFF) if is_long else b"%d" % sval
        if f.size == 2:
            return b"%2d" % (val - (1 << 16) if val >> 15 else val)
        if f.size == 1:
            return b"%1d" % (val - (1 << 8) if val >> 7 else val)
        return b"%d" % (val - (1 << 64) if val >> 63 else val)
    return b"0x%x" % val if is_long else b"%d" % val


def _fallback(ev: EventFormat) -> Callable[[bytes], bytes]:
    fields = list(ev.fields)

    def render(raw: bytes) -> bytes:
        out = bytearray(b"[FAILED TO PARSE]")
        for f in fields:
            out.extend(b" " + f.name.encode() + b"=")
            out.extend(_raw_field_text(f, raw))
        return bytes(out)

    return render


class ArgstrRenderer:
    """``render(record) -> bytes`` for one event; see compile_print_fmt.

    ``fallback`` is True when the print fmt could not be evaluated and the
    renderer prints ``[FAILED TO PARSE] name=value ...``; ``reason`` says why.
    ``plain`` is True when it has no symbolizer and no printk strings, so its
    output depends on the record and parse_print_fmt's result only.
    """

    __slots__ = ("event", "fallback", "reason", "plain", "_render", "_failed")

    def __init__(
        self,
        ev: EventFormat,
        symbolizer: Symbolizer | None = None,
        strings: Mapping[int, bytes] | None = None,
    ):
        self.event = ev
        # Neither symbols nor printk strings: what parse_print_fmt alone tells.
        self.plain = symbolizer is None and not strings
        self._failed = _fallback(ev)
        self.reason: str | None = None
        try:
            self._render = _build(ev, symbolizer, strings or {})
        except PrintFmtError as exc:
            self._render, self.reason = self._failed, str(exc)
        except RecursionError:
            self._render, self.reason = self._failed, "print fmt nests too deeply"
        self.fallback = self.reason is not None

    def __call__(self, record: "bytes | Mapping[str, object]") -> bytes:
        raw = self.event.encode(record) if isinstance(record, Mapping) else record
        try:
            return self._render(raw)
        except (IndexError, ValueError, struct.error, OverflowError):
            # Corrupt data must never kill a run: show what the fields hold.
            return self._failed(raw)


def compile_print_fmt(
    ev: EventFormat,
    symbolizer: Symbolizer | None = None,
    strings: Mapping[int, bytes] | None = None,
) -> ArgstrRenderer:
    """Parse *ev*'s print fmt once; return ``render(record) -> bytes``.

    *record* is the event's raw data (exact and fast) or a field dict as
    ``EventFormat.decode`` returns it (re-encoded first). Rendering never
    raises for odd data: fields beyond the data read as 0, as in perf.
    *symbolizer* resolves ``%pS``/``%ps`` addresses (see kallsyms_symbolizer).
    *strings* maps kernel addresses to the strings behind them, from tracefs
    ``printk_formats`` (see parse_printk_formats): events that pass a
    ``const char *`` to ``%s`` (rcu:rcu_utilization) print that text.
    """
    return ArgstrRenderer(ev, symbolizer, strings)


def kallsyms_symbolizer(path: str = "/proc/kallsyms") -> Symbolizer | None:
    """A symbolizer from a kallsyms file, or None when it is unreadable or its
    addresses are hidden (kptr_restrict). Text and data symbols count, as in
    perf's kernel map."""
    starts: list[int] = []
    names: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3 or parts[1].upper() not in "TWDB":
                    continue
                addr = int(parts[0], 16)
                if addr:
                    starts.append(addr)
                    names.append(parts[2])
    except (OSError, ValueError):
        return None
    if not starts:
        return None
    order = sorted(range(len(starts)), key=starts.__getitem__)
    starts = [starts[k] for k in order]
    names = [names[k] for k in order]

    def lookup(addr: int) -> tuple[str, int] | None:
        k = bisect.bisect_right(starts, addr) - 1
        if k < 0:
            return None
        return names[k], starts[k]

    return lookup


def symbols_from_pairs(pairs: Sequence[tuple[int, str]]) -> Symbolizer:
    """A symbolizer from (address, name) pairs (tests, recorded symbol maps)."""
    ordered = sorted(pairs)
    starts = [a for a, _ in ordered]

    def lookup(addr: int) -> tuple[str, int] | None:
        k = bisect.bisect_right(starts, addr) - 1
        return None if k < 0 else (ordered[k][1], ordered[k][0])

    return lookup


def parse_printk_formats(text: str) -> dict[int, bytes]:
    """tracefs ``printk_formats`` (``0xADDR : "text"`` lines) as a map, read
    the way libtraceevent reads it: quotes and a trailing ``\\n`` dropped."""
    strings: dict[int, bytes] = {}
    for line in text.splitlines():
        addr_text, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            addr = int(addr_text.strip(), 16)
        except ValueError:
            continue
        fmt = rest[1:] if rest.startswith(" ") else rest
        if fmt.startswith('"'):
            fmt = fmt[1:]
        if fmt.endswith('"'):
            fmt = fmt[:-1]
        if fmt.endswith("\\n"):
            fmt = fmt[:-2]
        strings[addr] = fmt.encode("utf-8", "surrogateescape")
    return strings
