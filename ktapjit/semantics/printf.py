"""``printf`` formatting: C99 conversions with glibc's choices.

A format is parsed once (and cached) into literal pieces and conversion
specs. Formatting then runs in two steps: the arguments are checked against
the specs left to right, and only when everything is valid is the output
rendered. So a failing printf writes nothing and numbers no table or
function in ``Identities``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.values import Identities, type_name, value_text

MAX_WIDTH = 4096  # also the largest precision

_FLAGS = b"-+ 0#"
_DIGITS = b"0123456789"
_INT_CONVERSIONS = "diuxXoc"
_CONVERSIONS = _INT_CONVERSIONS + "s%"
_UINT64_MASK = (1 << 64) - 1
_UNSIGNED_BASE = {"u": "d", "o": "o", "x": "x", "X": "X"}


@dataclass(frozen=True, slots=True)
class _Spec:
    """One parsed conversion, e.g. ``%-08.3llx``."""

    conv: str
    minus: bool
    plus: bool
    space: bool
    zero: bool
    alt: bool
    width: int
    precision: int | None  # None when absent; "%.d" gives 0


@dataclass(frozen=True, slots=True)
class _Parsed:
    pieces: tuple[bytes | _Spec, ...]
    error: str | None  # raised once the pieces before it are used up


class _FormatError(Exception):
    pass


def format_printf(fmt: object, args: Sequence[object], identities: Identities) -> bytes:
    """The bytes ``printf(fmt, args...)`` writes; extra arguments are ignored."""
    if type(fmt) is not bytes:
        raise RuntimeFault(f"printf: format must be a string, got {type_name(fmt)}")
    parsed = _parse(fmt)
    _check_args(parsed, args)
    return _render(parsed.pieces, args, identities)


def _check_args(parsed: _Parsed, args: Sequence[object]) -> None:
    # Errors must come out in the order the format is scanned, so argument
    # errors of earlier conversions win over a format error further on.
    i = 0
    for piece in parsed.pieces:
        if type(piece) is bytes or piece.conv == "%":
            continue
        if i >= len(args):
            raise RuntimeFault("printf: not enough arguments")
        arg = args[i]
        i += 1
        if piece.conv in _INT_CONVERSIONS and type(arg) is not int:
            raise RuntimeFault(
                f"printf: bad argument for '%{piece.conv}': expected integer, got {type_name(arg)}"
            )
    if parsed.error is not None:
        raise RuntimeFault(parsed.error)


def _render(pieces, args: Sequence[object], identities: Identities) -> bytes:
    out = []
    i = 0
    for piece in pieces:
        if type(piece) is bytes:
            out.append(piece)
        elif piece.conv == "%":
            out.append(b"%")  # glibc ignores flags and width here: "%5%" is "%"
        else:
            out.append(_convert(piece, args[i], identities))
            i += 1
    return b"".join(out)


def _convert(spec: _Spec, arg: object, identities: Identities) -> bytes:
    conv = spec.conv
    if conv == "s":
        text = value_text(arg, identities)
        if spec.precision is not None:
            text = text[: spec.precision]
        return _pad_spaces(spec, text)
    if conv == "c":
        # Precision is ignored with %c, as glibc does.
        return _pad_spaces(spec, bytes((arg & 255,)))
    return _format_int(spec, arg)


def _pad_spaces(spec: _Spec, text: bytes) -> bytes:
    # glibc pads %s and %c with spaces even under the 0 flag.
    if spec.minus:
        return text.ljust(spec.width)
    return text.rjust(spec.width)


def _format_int(spec: _Spec, v: int) -> bytes:
    conv = spec.conv
    if conv in "di":
        prefix = "-" if v < 0 else "+" if spec.plus else " " if spec.space else ""
        magnitude = abs(v)
    else:
        # Unsigned conversions take the uint64 bits; glibc ignores + and space.
        prefix = ""
        magnitude = v & _UINT64_MASK
    digits = format(magnitude, _UNSIGNED_BASE.get(conv, "d"))
    if spec.precision is not None:
        # Precision is the minimum digit count; zero value at precision 0
        # prints no digits at all.
        digits = "" if spec.precision == 0 and magnitude == 0 else digits.zfill(spec.precision)
    if spec.alt:
        # "#" raises the precision of %o to give a leading 0, and prefixes
        # non-zero %x/%X; glibc ignores it for the other conversions.
        if conv == "o" and not digits.startswith("0"):
            digits = "0" + digits
        elif conv in "xX" and magnitude != 0:
            prefix = "0" + conv
    return _pad_number(spec, prefix, digits).encode("ascii")


def _pad_number(spec: _Spec, prefix: str, digits: str) -> str:
    fill = spec.width - len(prefix) - len(digits)
    if fill <= 0:
        return prefix + digits
    if spec.minus:
        return prefix + digits + " " * fill
    # The 0 flag is ignored when a precision is given, as C99 says.
    if spec.zero and spec.precision is None:
        return prefix + "0" * fill + digits
    return " " * fill + prefix + digits


@lru_cache(maxsize=512)
def _parse(fmt: bytes) -> _Parsed:
    pieces: list[bytes | _Spec] = []
    pos = 0
    literal_start = 0
    n = len(fmt)
    while True:
        pos = fmt.find(b"%", pos)
        if pos < 0:
            break
        if pos > literal_start:
            pieces.append(fmt[literal_start:pos])
        try:
            spec, pos = _parse_spec(fmt, pos + 1)
        except _FormatError as e:
            return _Parsed(tuple(pieces), str(e))
        pieces.append(spec)
        literal_start = pos
    if literal_start < n:
        pieces.append(fmt[literal_start:])
    return _Parsed(tuple(pieces), None)


def _parse_spec(fmt: bytes, pos: int) -> tuple[_Spec, int]:
    """Parse the conversion after a '%'; returns it and the position after it."""
    flags = set()
    pos = _skip(fmt, pos)
    while fmt[pos] in _FLAGS:
        flags.add(fmt[pos])
        pos = _skip(fmt, pos + 1)
    width, pos = _number(fmt, pos)
    precision = None
    if fmt[pos] == ord("."):
        precision, pos = _number(fmt, _skip(fmt, pos + 1))
    pos = _length_modifier(fmt, pos)
    conv = chr(fmt[pos])
    if conv not in _CONVERSIONS:
        raise _FormatError(f"printf: invalid conversion '%{_byte_text(fmt[pos])}'")
    spec = _Spec(
        conv=conv,
        minus=ord("-") in flags,
        plus=ord("+") in flags,
        space=ord(" ") in flags,
        zero=ord("0") in flags,
        alt=ord("#") in flags,
        width=width,
        precision=precision,
    )
    return spec, pos + 1


def _skip(fmt: bytes, pos: int) -> int:
    """Return pos, failing if the format ends there (inside a conversion)."""
    if pos >= len(fmt):
        raise _FormatError("printf: incomplete conversion at end of format")
    return pos


def _number(fmt: bytes, pos: int) -> tuple[int, int]:
    start = pos
    while fmt[pos] in _DIGITS:
        pos = _skip(fmt, pos + 1)
    # Strip leading zeros before converting so a very long digit run can
    # neither be slow nor hit Python's int-string limit.
    text = fmt[start:pos].lstrip(b"0")
    if len(text) > len(str(MAX_WIDTH)) or int(text or b"0") > MAX_WIDTH:
        raise _FormatError("printf: width or precision too large")
    return int(text or b"0"), pos


def _length_modifier(fmt: bytes, pos: int) -> int:
    # Only l, ll and h are accepted (and ignored); "hh" or "lh" then fails as
    # an invalid conversion on the second letter.
    if fmt[pos] == ord("l"):
        pos = _skip(fmt, pos + 1)
        if fmt[pos] == ord("l"):
            pos = _skip(fmt, pos + 1)
    elif fmt[pos] == ord("h"):
        pos = _skip(fmt, pos + 1)
    return pos


def _byte_text(b: int) -> str:
    return chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}"
