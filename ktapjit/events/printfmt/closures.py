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
import functools
import re
import socket
import struct
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ktapjit.events.schema import EventFormat, Field
from ktapjit.kernel_filter.language import cpulist_text

__all__ = [
    "UNSUPPORTED_HELPERS",
    "PrintFmtError",
    "ArgstrRenderer",
    "atom_value",
    "cast_mask",
    "compile_print_fmt",
    "const_value",
    "kallsyms_symbolizer",
    "parse_print_fmt",
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

_MASK = (1 << 64) - 1


class PrintFmtError(Exception):
    """The print fmt cannot be evaluated; the renderer falls back."""


# ----------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "id", "num", "str", "chr", "op", "end"
    text: str


_OPS3 = ("<<=", ">>=")
_OPS2 = ("->", "==", "!=", "<=", ">=", "<<", ">>", "&&", "||", "++", "--")
_OPS1 = "()[]{},?:+-*/%&|^!~<>.=;"


def _lex(text: str) -> list[_Tok]:
    """Tokens of a C-ish expression list. Quoted strings keep their escapes
    (libtraceevent prints argument strings raw); adjacent strings join."""
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "\"'":
            body, i = _read_quoted(text, i)
            kind = "str" if ch == '"' else "chr"
            if kind == "str" and toks and toks[-1].kind == "str":
                toks[-1] = _Tok("str", toks[-1].text + body)
            else:
                toks.append(_Tok(kind, body))
        elif ch.isalnum() or ch == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            toks.append(_Tok("num" if ch.isdigit() else "id", word))
            i = j
        else:
            for op in _OPS3 + _OPS2:
                if text.startswith(op, i):
                    toks.append(_Tok("op", op))
                    i += len(op)
                    break
            else:
                if ch not in _OPS1:
                    raise PrintFmtError(f"unexpected character {ch!r} in print fmt")
                toks.append(_Tok("op", ch))
                i += 1
    toks.append(_Tok("end", ""))
    return toks


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    j = i + 1
    out = []
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text):
            out.append(text[j:j + 2])
            j += 2
            continue
        if ch == quote:
            return "".join(out), j + 1
        out.append(ch)
        j += 1
    raise PrintFmtError("unterminated string in print fmt")


# ----------------------------------------------------------------------------
# Expression trees: tuples (kind, ...), built by a recursive-descent parser
# with C precedence.

_BINARY_PREC = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5,
    "==": 6, "!=": 6, "<": 7, "<=": 7, ">": 7, ">=": 7,
    "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
}

_TYPE_WORDS = frozenset(
    """unsigned signed int long short char void bool _Bool const volatile struct
    enum union u8 u16 u32 u64 s8 s16 s32 s64 __u8 __u16 __u32 __u64 __s8 __s16
    __s32 __s64 size_t ssize_t pid_t uid_t gid_t gfp_t umode_t loff_t""".split()
)


class _Parser:
    def __init__(self, toks: list[_Tok], ev: EventFormat):
        self.toks = toks
        self.pos = 0
        self.ev = ev

    # -- token helpers
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.pos += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind == "op" and tok.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise PrintFmtError(f"expected '{text}' in print fmt, got '{self.peek().text}'")

    # -- grammar
    def arg_list(self) -> list[tuple]:
        args: list[tuple] = []
        if self.peek().kind == "end":
            return args
        while True:
            args.append(self.expr())
            if self.accept(","):
                continue
            if self.peek().kind != "end":
                raise PrintFmtError(f"unexpected '{self.peek().text}' in print fmt")
            return args

    def expr(self) -> tuple:
        cond = self.binary(1)
        if self.accept("?"):
            yes = self.expr()
            self.expect(":")
            no = self.expr()
            return ("cond", cond, yes, no)
        return cond

    def binary(self, min_prec: int) -> tuple:
        left = self.unary()
        while True:
            tok = self.peek()
            prec = _BINARY_PREC.get(tok.text) if tok.kind == "op" else None
            if prec is None or prec < min_prec:
                return left
            self.pos += 1
            right = self.binary(prec + 1)
            left = ("bin", tok.text, left, right)

    def unary(self) -> tuple:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("!", "~", "-", "+"):
            self.pos += 1
            return ("un", tok.text, self.unary())
        if tok.kind == "op" and tok.text == "(":
            cast = self._cast_type()
            if cast is not None:
                return ("cast", cast, self.unary())
        return self.postfix(self.primary())

    def _cast_type(self) -> str | None:
        """At '(': if it opens a type cast, consume it and return the type."""
        words: list[str] = []
        k = 1
        while True:
            tok = self.peek(k)
            if tok.kind == "id" and tok.text != "REC":
                words.append(tok.text)
            elif tok.kind == "op" and tok.text == "*":
                words.append("*")
            elif tok.kind == "op" and tok.text == ")":
                break
            else:
                return None
            k += 1
        if not words or words[0] == "*":
            return None
        after = self.peek(k + 1)
        # libtraceevent's rule: "(X)" followed by an item or "(" is a cast.
        # Plain C type names may also cast a unary expression: (long)-4095.
        unary_ok = all(w in _TYPE_WORDS or w == "*" for w in words)
        if (
            after.kind in ("id", "num", "str", "chr")
            or (after.kind == "op" and after.text == "(")
            or (unary_ok and after.kind == "op" and after.text in ("-", "~", "!"))
        ):
            self.pos += k + 1
            return " ".join(words)
        return None

    def postfix(self, node: tuple) -> tuple:
        while True:
            if self.accept("->"):
                if node[0] != "rec":
                    raise PrintFmtError("'->' on something other than REC")
                name = self.next()
                node = ("field", self._field(name.text))
            elif self.accept("["):
                index = self.expr()
                self.expect("]")
                node = ("index", node, index)
            else:
                return node

    def _field(self, name: str) -> Field:
        f = self.ev.field(name)
        if f is None:
            raise PrintFmtError(f"print fmt names unknown field '{name}'")
        return f

    def primary(self) -> tuple:
        tok = self.next()
        if tok.kind == "num":
            return ("atom", tok.text)
        if tok.kind == "str":
            return ("atom", tok.text)
        if tok.kind == "chr":
            return ("atom", str(ord(tok.text[0])) if tok.text else "0")
        if tok.kind == "id":
            if tok.text == "REC":
                return ("rec",)
            if self.peek().kind == "op" and self.peek().text == "(":
                self.pos += 1
                return self.call(tok.text)
            return ("atom", tok.text)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        raise PrintFmtError(f"unexpected '{tok.text}' in print fmt")

    # -- helpers (the '(' is consumed)
    def call(self, name: str) -> tuple:
        if name in ("__print_flags", "__print_flags_u64"):
            value = self.expr()
            self.expect(",")
            delim = ""
            if self.peek().kind in ("str", "id", "num"):
                delim = self.next().text
            self.expect(",")
            table = self._flag_table()
            return ("flags", value, delim, table)
        if name in ("__print_symbolic", "__print_symbolic_u64"):
            value = self.expr()
            self.expect(",")
            return ("sym", value, self._flag_table())
        if name in ("__get_str", "__get_rel_str"):
            return ("getstr", self._field_arg())
        if name in ("__get_dynamic_array", "__get_rel_dynamic_array", "__get_sockaddr",
                    "__get_rel_sockaddr", "__get_sockaddr_rel"):
            return ("dynarr", self._field_arg())
        if name in ("__get_dynamic_array_len", "__get_rel_dynamic_array_len"):
            return ("dynlen", self._field_arg())
        if name in ("__get_bitmask", "__get_rel_bitmask"):
            return ("bitmask", self._field_arg(), False)
        if name in ("__get_cpumask", "__get_rel_cpumask"):
            return ("bitmask", self._field_arg(), True)
        if name in ("__print_hex", "__print_hex_str"):
            arr = self.expr()
            self.expect(",")
            length = self.expr()
            self.expect(")")
            return ("hex", name == "__print_hex", arr, length)
        if name == "__print_array":
            arr = self.expr()
            self.expect(",")
            count = self.expr()
            self.expect(",")
            el_size = self.expr()
            self.expect(")")
            return ("intarr", arr, count, el_size)
        if name == "__builtin_expect":
            cond = self.expr()
            self.expect(",")
            self.expr()
            self.expect(")")
            return cond
        if name == "sizeof":
            return ("atom", str(self._sizeof()))
        raise PrintFmtError(f"helper {name}() is not supported")

    def _field_arg(self) -> Field:
        tok = self.next()
        if tok.kind != "id":
            raise PrintFmtError("expected a field name")
        self.expect(")")
        return self._field(tok.text)

    def _flag_table(self) -> list[tuple[int, str]]:
        table: list[tuple[int, str]] = []
        while True:
            self.expect("{")
            if self.accept("}"):  # an empty table: "{ }"
                if not self.accept(","):
                    break
                continue
            value = self.expr()
            self.expect(",")
            name = self.expr()
            self.expect("}")
            table.append((_flag_value(value), _flag_name(name)))
            if not self.accept(","):
                break
        self.expect(")")
        return table

    def _sizeof(self) -> int:
        words = []
        while not (self.peek().kind == "op" and self.peek().text == ")"):
            tok = self.next()
            if tok.kind == "end":
                raise PrintFmtError("unterminated sizeof")
            words.append(tok.text)
        self.expect(")")
        if len(words) == 3 and words[0] == "REC" and words[1] == "->":
            f = self._field(words[2])
            if f.is_array:
                raise PrintFmtError("sizeof of an array field")
            return f.size
        size = _SIZEOF.get(" ".join(words))
        if size is None:
            raise PrintFmtError(f"sizeof({' '.join(words)}) is not supported")
        return size


_SIZEOF = {
    "int": 4, "unsigned int": 4, "unsigned": 4, "long": 8, "unsigned long": 8,
    "long long": 8, "unsigned long long": 8, "short": 2, "unsigned short": 2,
    "char": 1, "unsigned char": 1, "u64": 8, "s64": 8, "__u64": 8, "__s64": 8,
    "u32": 4, "s32": 4, "__u32": 4, "__s32": 4, "u16": 2, "s16": 2, "__u16": 2,
    "__s16": 2, "u8": 1, "s8": 1, "__u8": 1, "__s8": 1,
}

# Names libtraceevent knows in flag tables when the kernel left them unconverted.
_KNOWN_FLAG_NAMES = {
    "HI_SOFTIRQ": 0, "TIMER_SOFTIRQ": 1, "NET_TX_SOFTIRQ": 2, "NET_RX_SOFTIRQ": 3,
    "BLOCK_SOFTIRQ": 4, "IRQ_POLL_SOFTIRQ": 5, "TASKLET_SOFTIRQ": 6,
    "SCHED_SOFTIRQ": 7, "HRTIMER_SOFTIRQ": 8, "RCU_SOFTIRQ": 9,
    "HRTIMER_NORESTART": 0, "HRTIMER_RESTART": 1,
}


def _flag_value(node: tuple) -> int:
    """A flag-table value as libtraceevent sees it: evaluated as a signed
    constant, printed with %lld and read back; anything that is not a
    non-negative number (an unconverted enum name, say) becomes -1."""
    if node[0] == "atom" and not node[1][:1].isdigit():
        return _KNOWN_FLAG_NAMES.get(node[1], -1)
    value = _const_eval(node)
    if value is None:
        return -1
    signed = value - (1 << 64) if value >> 63 else value
    return signed if signed >= 0 else -1


def _flag_name(node: tuple) -> str:
    """A flag table's name: a string, or (for "{ 0, NULL }") the number as
    text, which is what libtraceevent makes of it."""
    if node[0] == "atom":
        return node[1]
    value = _const_eval(node)
    if value is None:
        raise PrintFmtError("flag table name is not a constant")
    return str(value - (1 << 64) if value >> 63 else value)


def _const_eval(node: tuple) -> int | None:
    try:
        return _compile_num(node, None)(b"")
    except (PrintFmtError, _NotConstant):
        return None


class _NotConstant(Exception):
    pass


# ----------------------------------------------------------------------------
# Numeric evaluation (libtraceevent's eval_num_arg): closures raw -> u64

_NUM_RE = re.compile(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _strtoull(text: str) -> int:
    """C strtoull(text, NULL, 0): the longest numeric prefix, else 0."""
    m = _NUM_RE.match(text)
    if not m:
        return 0
    digits = m.group(1)
    if digits[:2] in ("0x", "0X"):
        return int(digits, 16) & _MASK
    if digits.startswith("0"):
        return int(digits, 8) & _MASK if len(digits) > 1 else 0
    return int(digits) & _MASK


@functools.lru_cache(maxsize=4096)
def _reader(offset: int, size: int) -> Callable[[bytes], int]:
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}.get(size)
    if fmt is None:
        return lambda raw: 0
    unpack = struct.Struct(fmt).unpack_from
    end = offset + size

    def read(raw: bytes) -> int:
        # A field beyond the data reads as 0, as in libtraceevent.
        return unpack(raw, offset)[0] if len(raw) >= end else 0

    return read


def _cast(value: int, ctype: str, pointer: bool = False) -> int:
    """libtraceevent's eval_type_str: only narrow unsigned masks matter."""
    ctype = ctype.strip()
    if pointer:
        if not ctype.endswith("*"):
            return value
        ctype = ctype[:-1].strip()
    if ctype.endswith("*") or ctype.startswith("struct"):
        return value
    if ctype in ("u8", "s8"):
        return value & 0xFF
    if ctype in ("u16", "s16"):
        return value & 0xFFFF
    if ctype in ("u32", "s32"):
        return value & 0xFFFFFFFF
    if ctype.startswith("unsigned "):
        ctype = ctype[9:]
    return {"char": value & 0xFF, "short": value & 0xFFFF, "int": value & 0xFFFFFFFF}.get(
        ctype, value
    )


def _dyn_loc(f: Field, raw: bytes) -> tuple[int, int]:
    """(offset, length) of a dynamic field's data; (0, 0) when out of range."""
    if f.offset + f.size > len(raw):
        return 0, 0
    word = int.from_bytes(raw[f.offset:f.offset + f.size], "little")
    off = word & 0xFFFF
    length = len(raw) - off if f.size == 2 else (word >> 16) & 0xFFFF
    if f.relative:
        off += f.offset + f.size
    if off > len(raw):
        off = 0
    if off + length > len(raw):
        length = 0
    return off, length


def _binop(op: str) -> Callable[[int, int], int]:
    table: dict[str, Callable[[int, int], int]] = {
        "+": lambda a, b: (a + b) & _MASK,
        "-": lambda a, b: (a - b) & _MASK,
        "*": lambda a, b: (a * b) & _MASK,
        "/": lambda a, b: a // b if b else 0,
        "%": lambda a, b: a % b if b else 0,
        "<<": lambda a, b: (a << (b & 63)) & _MASK,
        ">>": lambda a, b: a >> (b & 63),
        "&": lambda a, b: a & b,
        "|": lambda a, b: a | b,
        "^": lambda a, b: a ^ b,
        "&&": lambda a, b: int(bool(a) and bool(b)),
        "||": lambda a, b: int(bool(a) or bool(b)),
        "==": lambda a, b: int(a == b),
        "!=": lambda a, b: int(a != b),
        "<": lambda a, b: int(a < b),
        "<=": lambda a, b: int(a <= b),
        ">": lambda a, b: int(a > b),
        ">=": lambda a, b: int(a >= b),
    }
    return table[op]


def _compile_num(node: tuple, ev: EventFormat | None) -> Callable[[bytes], int]:
    """Numeric value of *node*. With ev None, fields are not constants."""
    kind = node[0]
    if kind == "atom":
        value = _strtoull(node[1])
        return lambda raw: value
    if kind == "field":
        if ev is None:
            raise _NotConstant()
        f = node[1]
        return _reader(f.offset, f.size)
    if kind == "cast":
        inner = _compile_num(node[2], ev)
        ctype = node[1]
        return lambda raw: _cast(inner(raw), ctype)
    if kind == "un":
        inner = _compile_num(node[2], ev)
        return {
            "!": lambda raw: int(not inner(raw)),
            "~": lambda raw: ~inner(raw) & _MASK,
            "-": lambda raw: -inner(raw) & _MASK,
            "+": lambda raw: inner(raw),
        }[node[1]]
    if kind == "bin":
        left, right = _compile_num(node[2], ev), _compile_num(node[3], ev)
        fn = _binop(node[1])
        return lambda raw: fn(left(raw), right(raw))
    if kind == "cond":
        cond, yes, no = (_compile_num(n, ev) for n in node[1:])
        return lambda raw: yes(raw) if cond(raw) else no(raw)
    if kind == "index":
        return _compile_index(node, ev)
    if kind == "dynlen":
        if ev is None:
            raise _NotConstant()
        f = node[1]
        return lambda raw: _dyn_loc(f, raw)[1]
    if ev is None:
        raise _NotConstant()
    # Strings, flags, arrays... have no numeric value (libtraceevent: 0).
    return lambda raw: 0


def _compile_index(node: tuple, ev: EventFormat | None) -> Callable[[bytes], int]:
    if ev is None:
        raise _NotConstant()
    base, index = node[1], _compile_num(node[2], ev)
    cast = None
    while base[0] == "cast":
        cast = cast or base[1]
        base = base[2]
    if base[0] == "field":
        f = base[1]
        elem = f.elem_size or f.size
        const = _const_eval(node[2])
        if const is not None:  # REC->args[0]: the usual case, read directly
            read_elem = _reader(f.offset + const * elem, elem)
        else:

            def read_elem(raw: bytes) -> int:
                return _reader(f.offset + index(raw) * elem, elem)(raw)

    elif base[0] == "dynarr":
        f = base[1]
        elem = f.elem_size or 8

        def read_elem(raw: bytes) -> int:
            # libtraceevent adds the index in bytes, not elements.
            off = _dyn_loc(f, raw)[0] + index(raw)
            return _reader(off, elem)(raw)

    else:
        return lambda raw: 0
    if cast is None:
        return read_elem
    return lambda raw: _cast(read_elem(raw), cast, pointer=True)


# ----------------------------------------------------------------------------
# C printf for the conversions print fmts use

LEN_BITS = {-2: 8, -1: 16, 0: 32, 1: 64, 2: 64}  # the bits of hh h - l ll


@dataclass(frozen=True, slots=True)
class _Spec:
    """One conversion: the format text (e.g. "%-08lx") split into parts."""

    text: str
    flags: str
    width: int | None  # None: absent; -1: taken from an argument ('*')
    prec: int | None
    ls: int
    conv: str


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


# ----------------------------------------------------------------------------
# The format string: literal pieces and conversions (libtraceevent parse_args)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _split_format(fmt: str) -> list[tuple[str, object]]:
    """[("lit", bytes) | ("conv", _Spec) | ("bad", bytes)] in order."""
    pieces: list[tuple[str, object]] = []
    lit: list[str] = []
    i, n = 0, len(fmt)

    def flush() -> None:
        if lit:
            pieces.append(("lit", "".join(lit).encode("utf-8", "surrogateescape")))
            lit.clear()

    while i < n:
        ch = fmt[i]
        if ch == "\\" and i + 1 < n:
            lit.append(_ESCAPES.get(fmt[i + 1], fmt[i + 1]))
            i += 2
        elif ch == "%" and fmt[i + 1:i + 2] == "%":
            lit.append("%")
            i += 2
        elif ch == "%":
            flush()
            piece, i = _parse_conversion(fmt, i)
            if piece is not None:
                pieces.append(piece)
        else:
            lit.append(ch)
            i += 1
    flush()
    return pieces


def _parse_conversion(fmt: str, start: int) -> tuple[tuple[str, object] | None, int]:
    i = start + 1
    flags, ls = "", 0
    width: int | None = None
    prec: int | None = None
    in_prec = False
    while i < len(fmt):
        ch = fmt[i]
        if ch in "#-+0" and width is None and not in_prec:
            flags += ch
        elif ch == "h":
            ls -= 1
        elif ch == "l":
            ls += 1
        elif ch == "L":
            ls = 2
        elif ch in "zZ":
            ls = 1
        elif ch == ".":
            in_prec, prec = True, 0
        elif ch.isdigit():
            if in_prec:
                prec = (prec or 0) * 10 + int(ch)
            else:
                width = (width or 0) * 10 + int(ch)
        elif ch == "*":
            if in_prec:
                prec = -1
            else:
                width = -1
        elif ch in "cduixXo":
            if not -2 <= ls <= 2:
                raise PrintFmtError(f"bad length modifier in '{fmt[start:i + 1]}'")
            return ("conv", _Spec(fmt[start:i + 1], flags, width, prec, ls, ch)), i + 1
        elif ch == "s":
            return ("conv", _Spec(fmt[start:i + 1], flags, width, prec, 0, "s")), i + 1
        elif ch == "p":
            ext = _pointer_ext(fmt, i + 1)
            end = i + 1 + ext
            return ("conv", _Spec(fmt[start:end], flags, width, prec, 0, "p" + fmt[i + 1:end])), end
        else:
            # libtraceevent prints an unknown conversion as ">c<" and moves on.
            return ("bad", f">{ch}<".encode("utf-8", "surrogateescape")), i + 1
        i += 1
    return None, i


def _pointer_ext(fmt: str, i: int) -> int:
    """How many characters after %p belong to it (parse_arg_format_pointer)."""
    c = fmt[i:i + 1]
    nxt = fmt[i + 1:i + 2]
    if c in ("F", "S", "f", "s"):
        return 1
    if c in ("M", "m"):
        return 2 if nxt in ("R", "F") else 1
    if c in ("I", "i"):
        return _ip_ext(fmt, i)
    if c == "U":
        return 2 if nxt in ("L", "l", "B", "b") else 1
    if c == "h":
        return 2 if nxt in ("C", "D", "N") else 1
    return 0


def _ip_ext(fmt: str, i: int) -> int:
    ret, index = 0, 2
    kind = fmt[i + 1:i + 2]
    if kind == "S":
        while fmt[i + index:i + index + 1] in ("p", "f", "s") and fmt[i + index:i + index + 1]:
            ret += 1
            index += 1
    if kind in ("S", "4"):
        if fmt[i + index:i + index + 1] in ("h", "n", "l", "b") and fmt[i + index:i + index + 1]:
            ret += 1
            index += 1
        if kind == "4":
            return ret + 2
    if kind in ("S", "6"):
        if fmt[i + index:i + index + 1] == "c":
            ret += 1
        ret += 1
    return ret + 1


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


def _split_print_fmt(text: str) -> tuple[str, str]:
    """'"fmt" "more", args' -> (format string with escapes, argument text)."""
    text = text.strip()
    if not text.startswith('"'):
        raise PrintFmtError("print fmt does not start with a string")
    fmt_parts = []
    i = 0
    while i < len(text) and text[i] == '"':
        body, i = _read_quoted(text, i)
        fmt_parts.append(body)
        while i < len(text) and text[i].isspace():
            i += 1
    rest = text[i:].strip()
    if rest.startswith(","):
        rest = rest[1:]
    elif rest:
        raise PrintFmtError("expected ',' after the print fmt string")
    return "".join(fmt_parts), rest


def parse_print_fmt(ev: EventFormat) -> tuple[list[tuple[str, object]], list[tuple]]:
    """(pieces, args) of *ev*'s print fmt, for evaluators other than this
    module's (the JIT's native renderer, bytecode.py).

    *pieces* are ("lit", bytes), ("bad", bytes) (an unknown conversion,
    printed as is) and ("conv", spec) with spec's text, flags, width, prec
    (None: absent, -1: '*'), ls (length modifier: -2 hh .. 2 ll) and conv;
    *args* are the argument expression trees (tuples, see _Parser). Raises
    PrintFmtError (and RecursionError) as compile_print_fmt falls back."""
    fmt_text, arg_text = _split_print_fmt(ev.print_fmt)
    args = _Parser(_lex(arg_text), ev).arg_list()
    return _split_format(fmt_text), args


def atom_value(text: str) -> int:
    """The numeric value of an atom (a number, a name, a string): C strtoull."""
    return _strtoull(text)


def cast_mask(ctype: str, pointer: bool = False) -> int:
    """The mask a cast to *ctype* applies (all ones: none); *pointer* for
    the element cast of an indexed array."""
    return _cast(_MASK, ctype, pointer)


def const_value(node: tuple) -> int | None:
    """*node*'s value when it reads no record data, else None."""
    return _const_eval(node)


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
