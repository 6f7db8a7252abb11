"""C's unsigned 64-bit arithmetic over a record, as libtraceevent evaluates
a print fmt's numbers: expression trees compiled to closures ``raw -> u64``.

The closure back end evaluates every number through them, and both back
ends fold constants with them (``const_value``), so a constant means the
same everywhere.
"""

from __future__ import annotations

import functools
import re
import struct
from typing import Callable

from ktapjit.events.errors import PrintFmtError
from ktapjit.events.schema import EventFormat, Field

__all__ = [
    "atom_value",
    "cast_mask",
    "const_value",
]

_MASK = (1 << 64) - 1


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
