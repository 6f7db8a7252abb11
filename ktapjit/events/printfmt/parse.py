"""The print-fmt front end: a tracepoint's ``print fmt`` parsed as
libtraceevent parses it, once, for both back ends (closures.py and
bytecode.py).

The format string becomes pieces: literal text and conversions (``_Spec``,
C printf's flags, width, precision and length modifier); the arguments
become expression trees, tuples ``(kind, ...)`` built with C precedence by
a recursive-descent parser. Flag tables are folded to numbers here, through
values.py, as libtraceevent reads them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from ktapjit.events.errors import PrintFmtError
from ktapjit.events.printfmt.syscalls import kernel_text_print_fmt
from ktapjit.events.printfmt.values import _const_eval
from ktapjit.events.schema import EventFormat

__all__ = [
    "LEN_BITS",
    "parse_print_fmt",
]


# ----------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True, slots=True)
class _Tok:
    """A token of a print fmt's argument list."""

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


# ----------------------------------------------------------------------------
# Conversions: the parts of one, and the bits of its length modifier

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


def parse_print_fmt(ev: EventFormat) -> tuple[tuple[tuple[str, object], ...], tuple[tuple, ...]]:
    """(pieces, args) of *ev*'s print fmt, for both back ends (closures.py,
    and the JIT's native renderer, bytecode.py).

    *pieces* are ("lit", bytes), ("bad", bytes) (an unknown conversion,
    printed as is) and ("conv", spec) with spec's text, flags, width, prec
    (None: absent, -1: '*'), ls (length modifier: -2 hh .. 2 ll) and conv;
    *args* are the argument expression trees (tuples, see _Parser). A syscall
    event's print fmt is the kernel text trace's (syscalls.py). Raises
    PrintFmtError (and RecursionError) as compile_print_fmt falls back.
    Parsed once per format: both back ends take it, for each of the
    thousands of formats `trace *:*` binds."""
    parsed = _parsed.get(ev)
    if parsed is None:
        # Syscall events render as the kernel's text trace does, not as their print fmt says (syscalls.py).
        fmt_text, arg_text = _split_print_fmt(kernel_text_print_fmt(ev) or ev.print_fmt)
        args = _Parser(_lex(arg_text), ev).arg_list()
        parsed = _parsed[ev] = (tuple(_split_format(fmt_text)), tuple(args))
    return parsed


_parsed: "weakref.WeakKeyDictionary[EventFormat, tuple]" = weakref.WeakKeyDictionary()
