"""argstr on the native event path: a print fmt compiled for runtime/argstr.c.

``argstr`` is a tracepoint's ``print fmt`` rendered as ``perf script`` does;
closures.py is the reference (ArgstrRenderer). Here the same parse
(parse.parse_print_fmt) is compiled once per bound probe into a flat
program that argstr.c interprets over a sample's RAW bytes: an
``array('q')`` of instructions, WIDTH words each (op, a, b, c), and one
blob holding the literal text, flag and symbol names the program points
into. Numbers live on a small stack (MAX_STACK deep); jumps only go
forward, so every program ends.

The subset is what printfmt evaluates with plain C rules: literal text;
numeric expressions (REC->field reads, indexed arrays, __get_dynamic_array_len,
constants, casts, unary, binary and ternary operators as unsigned 64-bit
values); %d %i %u %x %X %o %c with flags, width, precision, length
modifiers and '*'; %p as a plain pointer and %pS/%ps/%pF/%pf as an address
(printfmt has no symbolizer on this path); %s of fields, __get_str,
string constants, conditionals, __print_flags and __print_symbolic. Every
other construct raises UnsupportedArgstr and the session keeps the Python
path: the %p extensions that print bytes (MAC, IP, sockaddr, UUID, hex) and
__print_hex/__print_array/bitmasks, whose truncated-record behaviour is
printfmt's "[FAILED TO PARSE]" fallback; print fmts printfmt itself cannot
evaluate; '*' for both width and precision; 2-byte __data_loc words.

May import: ktapjit.events.printfmt.parse and .values, ktapjit.events.errors,
stdlib; never ktapjit.jit, which loads the programs this module makes.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from ktapjit.events.errors import PrintFmtError
from ktapjit.events.printfmt.parse import LEN_BITS, parse_print_fmt
from ktapjit.events.printfmt.values import atom_value, cast_mask, const_value

WIDTH = 4  # words an instruction: op, a, b, c
MAX_STACK = 32  # KA_STACK in the runtime ABI table

_MASK = (1 << 64) - 1
_READ_SIZES = (1, 2, 4, 8)
# Conversion flags (printfmt's spec.flags), as argstr.c's F_* bits.
_FLAG_BITS = {"#": 1, "-": 2, "+": 4, "0": 8}
# Where a '*' argument goes: argstr.c's STAR_*.
STAR_NONE, STAR_WIDTH, STAR_PREC = 0, 1, 2


@dataclass(frozen=True)
class OpInfo:
    """One argstr instruction: its stack effect."""

    name: str
    pops: int
    pushes: int
    doc: str


# The instruction set; the order is the runtime ABI table's KA_* (u64 values).
OPS = (
    OpInfo("End", 0, 0, "stop"),
    OpInfo("Const", 0, 1, "push a"),
    OpInfo("Read", 0, 1, "push RAW[a, +b) (b: 1/2/4/8), 0 past the end"),
    OpInfo("ReadAt", 1, 1, "pop i; push RAW[a + i*b, +b), 0 past the end"),
    OpInfo("ReadDyn", 1, 1, "pop i; push RAW[start + i, +b) of the 4-byte loc at a (c: relative)"),
    OpInfo("DynLen", 0, 1, "push the length of the 4-byte loc at a (c: relative)"),
    OpInfo("Mask", 1, 1, "x & a (a cast)"),
    OpInfo("Not", 1, 1, "!x"),
    OpInfo("Inv", 1, 1, "~x"),
    OpInfo("Neg", 1, 1, "-x"),
    OpInfo("Add", 2, 1, "x + y"),
    OpInfo("Sub", 2, 1, "x - y"),
    OpInfo("Mul", 2, 1, "x * y"),
    OpInfo("Div", 2, 1, "x / y, 0 when y is 0"),
    OpInfo("Mod", 2, 1, "x % y, 0 when y is 0"),
    OpInfo("Shl", 2, 1, "x << (y & 63)"),
    OpInfo("Shr", 2, 1, "x >> (y & 63)"),
    OpInfo("And", 2, 1, "x & y"),
    OpInfo("Or", 2, 1, "x | y"),
    OpInfo("Xor", 2, 1, "x ^ y"),
    OpInfo("LAnd", 2, 1, "x && y"),
    OpInfo("LOr", 2, 1, "x || y"),
    OpInfo("Eq", 2, 1, "x == y"),
    OpInfo("Ne", 2, 1, "x != y"),
    OpInfo("Lt", 2, 1, "x < y"),
    OpInfo("Le", 2, 1, "x <= y"),
    OpInfo("Gt", 2, 1, "x > y"),
    OpInfo("Ge", 2, 1, "x >= y"),
    OpInfo("Jz", 1, 0, "pop x; if x == 0 go to instruction a (forward)"),
    OpInfo("Jmp", 0, 0, "go to instruction a (forward)"),
    OpInfo("Lit", 0, 0, "output blob[a, +b)"),
    OpInfo("Int", 1, 0, "pop x (then the '*' argument); output it: a packs conv | flags << 8 | bits << 16"
                        " | star << 24, b width, c precision (-1: none)"),
    OpInfo("StrSpec", 0, 0, "the %s pieces that follow pad to b, cut at c (-1: none), a: flags | star << 8"
                            " (star: pops the '*' argument)"),
    OpInfo("PutText", 0, 0, "output blob[a, +b) as a %s piece"),
    OpInfo("PutRaw", 0, 0, "output RAW[a, +b) (clipped) as a %s piece"),
    OpInfo("PutDyn", 0, 0, "output the string of the 4-byte loc at a (c: relative) as a %s piece"),
    OpInfo("Hex8", 0, 0, "output RAW[a, +8) as %llx (a long field through %s)"),
    OpInfo("Flags", 1, 0, "pop x; __print_flags over the c entries that follow, delimiter blob[a, +b)"),
    OpInfo("Sym", 1, 0, "pop x; __print_symbolic over the c entries that follow"),
    OpInfo("Entry", 0, 0, "a table row: value a, name blob[b, +c)"),
    OpInfo("Ptr", 1, 0, "pop x; output %p: 0x%x, or (nil)"),
    OpInfo("Addr", 1, 0, "pop x; output 0x%x (%pS without symbols)"),
)
OP = {info.name: i for i, info in enumerate(OPS)}

_BINARY = {
    "+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "%": "Mod", "<<": "Shl", ">>": "Shr",
    "&": "And", "|": "Or", "^": "Xor", "&&": "LAnd", "||": "LOr",
    "==": "Eq", "!=": "Ne", "<": "Lt", "<=": "Le", ">": "Gt", ">=": "Ge",
}
_UNARY = {"!": "Not", "~": "Inv", "-": "Neg"}  # "+" is the value itself
# Expressions folded to one Const when their code reads no record data.
_FOLDABLE = frozenset({"cast", "un", "bin", "cond"})
_PURE = frozenset({"Const", "Mask", "Jz", "Jmp", *_UNARY.values(), *_BINARY.values()})
# Argument kinds printfmt prints through %s by dumping record bytes: their
# truncated-record behaviour is its "[FAILED TO PARSE]" fallback.
_BYTE_DUMPS = frozenset({"hex", "intarr", "bitmask"})


class UnsupportedArgstr(Exception):
    """A print fmt outside the native subset: argstr stays on the Python path."""


@dataclass(frozen=True)
class ArgstrProgram:
    """An argstr compiled to instructions and their constant bytes."""

    code: array  # array('q'), WIDTH words an instruction
    blob: bytes

    @property
    def count(self) -> int:
        return len(self.code) // WIDTH


def compile_argstr(fmt) -> ArgstrProgram:
    """*fmt*'s (an EventFormat) argstr as a program, or UnsupportedArgstr."""
    try:
        pieces, args = parse_print_fmt(fmt)
    except PrintFmtError as exc:
        raise UnsupportedArgstr(f"print fmt falls back: {exc}") from None
    except RecursionError:
        raise UnsupportedArgstr("print fmt nests too deeply") from None
    e = _Emitter()
    queue = list(args)
    for kind, item in pieces:
        if kind != "conv":  # literal text, or an unknown conversion printed as ">c<"
            e.emit("Lit", *e.text(item))
            continue
        len_node = None
        if item.width == -1 or item.prec == -1:
            len_node = _take(queue)
        _conversion(e, item, _take(queue), len_node)
    e.emit("End")
    return ArgstrProgram(e.code, bytes(e.blob))


def _take(queue: list) -> tuple:
    if not queue:  # printfmt falls back
        raise UnsupportedArgstr("print fmt has fewer arguments than conversions")
    return queue.pop(0)


class _Emitter:
    """Appends instructions, tracking the stack depth they need."""

    def __init__(self):
        self.code = array("q")
        self.blob = bytearray()
        self.depth = 0

    def emit(self, name: str, a: int = 0, b: int = 0, c: int = 0) -> int:
        info = OPS[OP[name]]
        self.depth += info.pushes - info.pops
        if self.depth > MAX_STACK:
            raise UnsupportedArgstr("print fmt expression too deep")
        at = self.here()
        self.code.extend((OP[name], _s64(a), _s64(b), _s64(c)))
        return at

    def here(self) -> int:
        return len(self.code) // WIDTH

    def patch(self, at: int, target: int) -> None:
        self.code[at * WIDTH + 1] = target

    def pure_since(self, start: int) -> bool:
        """Whether the code from instruction *start* on reads no record data."""
        return all(OPS[op].name in _PURE for op in self.code[start * WIDTH::WIDTH])

    def truncate(self, start: int, depth: int) -> None:
        del self.code[start * WIDTH:]
        self.depth = depth

    def text(self, data: bytes) -> tuple[int, int]:
        """(offset, length) of *data* in the blob; repeats share bytes."""
        found = self.blob.find(data) if data else 0
        if found < 0:
            found = len(self.blob)
            self.blob.extend(data)
        return found, len(data)

    def branch(self, cond: tuple, yes, no) -> None:
        """cond ? yes() : no(), each arm leaving the same stack."""
        _num(self, cond)
        jz = self.emit("Jz")
        start = self.depth
        yes()
        jmp = self.emit("Jmp")
        self.depth = start
        self.patch(jz, self.here())
        no()
        self.patch(jmp, self.here())


def _s64(value: int) -> int:
    value &= _MASK
    return value - (1 << 64) if value >> 63 else value


# ----------------------------------------------------------------------------
# Conversions (closures._compile_conversion)


def _conversion(e: _Emitter, spec, node: tuple, len_node: tuple | None) -> None:
    if spec.width == -1 and spec.prec == -1:
        raise UnsupportedArgstr("'*' for both width and precision")
    star = STAR_NONE if len_node is None else (STAR_WIDTH if spec.width == -1 else STAR_PREC)
    width = -1 if spec.width is None or star == STAR_WIDTH else spec.width
    prec = -1 if spec.prec is None or star == STAR_PREC else spec.prec
    flags = 0
    for ch in spec.flags:
        flags |= _FLAG_BITS[ch]
    if spec.conv.startswith("p"):
        _pointer(e, spec.conv[1:], node)  # the '*' argument is not read (printfmt: only %ph reads it)
        return
    if len_node is not None:
        _num(e, len_node)
    if spec.conv == "s":
        e.emit("StrSpec", flags | star << 8, width, prec)
    else:
        _num(e, node)
        e.emit("Int", ord(spec.conv) | flags << 8 | LEN_BITS[spec.ls] << 16 | star << 24, width, prec)
    if star:
        e.depth -= 1  # the '*' argument was popped too
    if spec.conv == "s":
        _str(e, node)


def _pointer(e: _Emitter, ext: str, node: tuple) -> None:
    c = ext[:1]
    if c in ("M", "m", "I", "i", "U", "h"):
        raise UnsupportedArgstr(f"%p{ext}")
    _num(e, node)
    e.emit("Addr" if c in ("F", "f", "S", "s") else "Ptr")


# ----------------------------------------------------------------------------
# Numbers (values._compile_num): each leaves one value on the stack


def _num(e: _Emitter, node: tuple) -> None:
    start, depth = e.here(), e.depth
    _num_code(e, node)
    if node[0] in _FOLDABLE and e.pure_since(start):  # sched_switch's state masks are constants
        value = const_value(node)
        if value is not None:
            e.truncate(start, depth)
            e.emit("Const", value)


def _num_code(e: _Emitter, node: tuple) -> None:
    kind = node[0]
    if kind == "field":
        _read(e, node[1].offset, node[1].size)
    elif kind == "cast":
        _num(e, node[2])
        _mask(e, cast_mask(node[1]))
    elif kind == "un":
        _num(e, node[2])
        if node[1] in _UNARY:
            e.emit(_UNARY[node[1]])
    elif kind == "bin":
        _num(e, node[2])
        _num(e, node[3])
        e.emit(_BINARY[node[1]])
    elif kind == "cond":
        e.branch(node[1], lambda: _num(e, node[2]), lambda: _num(e, node[3]))
    elif kind == "index":
        _index(e, node)
    elif kind == "dynlen":
        e.emit("DynLen", _dyn_field(node[1]).offset, 0, int(node[1].relative))
    elif kind == "atom":
        e.emit("Const", atom_value(node[1]))
    else:  # strings, flags, arrays have no numeric value (libtraceevent: 0)
        e.emit("Const", 0)


def _read(e: _Emitter, offset: int, size: int) -> None:
    if size in _READ_SIZES and offset + size < 1 << 32:  # RAW sizes are u32
        e.emit("Read", offset, size)
    else:
        e.emit("Const", 0)


def _mask(e: _Emitter, mask: int) -> None:
    if mask != _MASK:
        e.emit("Mask", mask)


def _dyn_field(f):
    if f.size != 4:  # a 2-byte loc runs to the record's end: printfmt's slicing quirks
        raise UnsupportedArgstr(f"2-byte __data_loc field '{f.name}'")
    return f


def _index(e: _Emitter, node: tuple) -> None:
    """REC->array[i], possibly cast (values._compile_index)."""
    base, cast = node[1], None
    while base[0] == "cast":
        cast = cast or base[1]
        base = base[2]
    if base[0] == "field":
        f = base[1]
        elem = f.elem_size or f.size
        k = const_value(node[2])
        if k is not None:
            _read(e, f.offset + k * elem, elem)
        elif elem in _READ_SIZES:
            _num(e, node[2])
            e.emit("ReadAt", f.offset, elem)
        else:
            e.emit("Const", 0)
    elif base[0] == "dynarr" and (base[1].elem_size or 8) in _READ_SIZES:
        f = _dyn_field(base[1])
        _num(e, node[2])
        e.emit("ReadDyn", f.offset, f.elem_size or 8, int(f.relative))
    else:
        e.emit("Const", 0)
    if cast is not None:
        _mask(e, cast_mask(cast, pointer=True))


# ----------------------------------------------------------------------------
# Strings (closures._compile_str): each outputs pieces through the %s spec


def _str(e: _Emitter, node: tuple) -> None:
    kind = node[0]
    if kind == "atom":
        e.emit("PutText", *e.text(node[1].encode("utf-8", "surrogateescape")))
    elif kind == "field":
        f = node[1]
        if not f.is_array and f.size == 8:  # a long: printed as a pointer, %llx
            e.emit("Hex8", f.offset)
        else:
            e.emit("PutRaw", f.offset, f.size)
    elif kind == "getstr":
        e.emit("PutDyn", _dyn_field(node[1]).offset, 0, int(node[1].relative))
    elif kind == "flags":
        _num(e, node[1])
        e.emit("Flags", *e.text(node[2].encode()), len(node[3]))
        _entries(e, node[3])
    elif kind == "sym":
        _num(e, node[1])
        e.emit("Sym", 0, 0, len(node[2]))
        _entries(e, node[2])
    elif kind == "cond":
        e.branch(node[1], lambda: _str(e, node[2]), lambda: _str(e, node[3]))
    elif kind in _BYTE_DUMPS:
        raise UnsupportedArgstr(f"{kind} dump in print fmt")
    # casts, arithmetic and dynamic arrays print nothing through %s


def _entries(e: _Emitter, table: list[tuple[int, str]]) -> None:
    for value, name in table:
        e.emit("Entry", value, *e.text(name.encode("utf-8", "surrogateescape")))
