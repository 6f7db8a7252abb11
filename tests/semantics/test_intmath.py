"""Integer arithmetic: exact cases from LANGUAGE.md, then properties
checked against Python's unbounded ints reduced to signed 64 bits."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.intmath import (
    INT64_MAX,
    INT64_MIN,
    arith,
    bnot,
    neg,
    parse_int_literal,
    wrap,
)
from ktapjit.semantics.values import Table

MIN, MAX = INT64_MIN, INT64_MAX

EXACT = [
    # / truncates toward zero
    (7, "/", 2, 3),
    (-7, "/", 2, -3),
    (7, "/", -2, -3),
    (-7, "/", -2, 3),
    (0, "/", -5, 0),
    # % takes the sign of the dividend
    (7, "%", 2, 1),
    (-7, "%", 2, -1),
    (7, "%", -2, 1),
    (-7, "%", -2, -1),
    (6, "%", -3, 0),
    # the INT64_MIN corner cases
    (MIN, "/", -1, MIN),
    (MIN, "%", -1, 0),
    (MIN, "/", 1, MIN),
    (MIN, "%", MAX, -1),
    (MIN, "/", MIN, 1),
    # wrapping
    (MAX, "+", 1, MIN),
    (MIN, "-", 1, MAX),
    (MAX, "*", 2, -2),
    (MIN, "*", -1, MIN),
    (1 << 32, "*", 1 << 32, 0),
    # shifts: count & 63, >> arithmetic
    (1, "<<", 63, MIN),
    (1, "<<", 64, 1),
    (1, "<<", -1, MIN),
    (3, "<<", 62, MIN + (1 << 62)),
    (MIN, ">>", 63, -1),
    (MIN, ">>", 64, MIN),
    (MIN, ">>", -1, -1),
    (-8, ">>", 1, -4),
    (MAX, ">>", 63, 0),
    (-1, ">>", 100, -1),
    # bitwise
    (0b1100, "&", 0b1010, 0b1000),
    (0b1100, "|", 0b1010, 0b1110),
    (0b1100, "^", 0b1010, 0b0110),
    (-1, "&", MIN, MIN),
    (MIN, "^", MAX, -1),
]


@pytest.mark.parametrize("a, op, b, expected", EXACT)
def test_exact(a, op, b, expected):
    assert arith(op, a, b) == expected


@pytest.mark.parametrize("op", ["/", "%"])
@pytest.mark.parametrize("a", [0, 1, -1, MIN, MAX])
def test_zero_divisor_is_an_error(op, a):
    with pytest.raises(RuntimeFault, match="^divide by zero$"):
        arith(op, a, 0)


@pytest.mark.parametrize(
    "a, expected", [(0, 0), (5, -5), (-5, 5), (MAX, MIN + 1), (MIN, MIN)]
)
def test_neg(a, expected):
    assert neg(a) == expected


@pytest.mark.parametrize("a, expected", [(0, -1), (-1, 0), (MAX, MIN), (MIN, MAX), (5, -6)])
def test_bnot(a, expected):
    assert bnot(a) == expected


BAD_OPERANDS = [
    # (a, b, the type the message names): the left operand is checked first
    (None, 1, "nil"),
    (True, 1, "boolean"),
    (1, False, "boolean"),
    (b"1", 1, "string"),
    (1, b"1", "string"),
    (Table(10), 1, "table"),
    (b"x", None, "string"),
    (None, b"x", "nil"),
]


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"])
@pytest.mark.parametrize("a, b, named", BAD_OPERANDS)
def test_operands_must_be_integers(op, a, b, named):
    with pytest.raises(RuntimeFault) as info:
        arith(op, a, b)
    assert info.value.message == f"attempt to perform arithmetic on a {named} value"


def test_type_error_comes_before_divide_by_zero():
    with pytest.raises(RuntimeFault, match="arithmetic on a nil value"):
        arith("/", None, 0)


@pytest.mark.parametrize("fn", [neg, bnot])
@pytest.mark.parametrize("a, named", [(None, "nil"), (True, "boolean"), (b"", "string")])
def test_unary_operand_must_be_integer(fn, a, named):
    with pytest.raises(RuntimeFault) as info:
        fn(a)
    assert info.value.message == f"attempt to perform arithmetic on a {named} value"


LITERALS = [
    ("0", 0),
    ("123", 123),
    ("9223372036854775807", MAX),
    ("9223372036854775808", None),
    ("99999999999999999999999", None),
    ("0x7b", 123),
    ("0X7B", 123),
    ("0x7fffffffffffffff", MAX),
    ("0x8000000000000000", MIN),
    ("0xffffffffffffffff", -1),
    ("0x0000000000000000ff", 255),
    ("0x10000000000000000", None),
]


@pytest.mark.parametrize("text, expected", LITERALS)
def test_parse_int_literal(text, expected):
    assert parse_int_literal(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "1_000", " 1", "0x", "12a", "0x1g"])
def test_parse_int_literal_rejects_non_literals(text):
    with pytest.raises(ValueError):
        parse_int_literal(text)


# -- properties against Python big ints reduced to signed 64 bits ----------

int64 = st.integers(MIN, MAX)
edgy = st.sampled_from([MIN, MIN + 1, -2, -1, 0, 1, 2, MAX - 1, MAX])
operand = int64 | edgy


def to_signed64(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


REFERENCE = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": c_div,
    "%": lambda a, b: a - b * c_div(a, b),
    "&": lambda a, b: a & b,
    "|": lambda a, b: a | b,
    "^": lambda a, b: a ^ b,
    "<<": lambda a, b: a << (b % 64),
    ">>": lambda a, b: a >> (b % 64),
}


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(sorted(REFERENCE)), a=operand, b=operand)
def test_matches_bigint_reference(op, a, b):
    if op in "/%" and b == 0:
        return
    assert arith(op, a, b) == to_signed64(REFERENCE[op](a, b))


@settings(max_examples=200, deadline=None)
@given(a=operand, b=operand.filter(lambda b: b != 0))
def test_division_identity(a, b):
    # C's rule: (a / b) * b + a % b == a, in wrapping arithmetic.
    q, r = arith("/", a, b), arith("%", a, b)
    assert arith("+", arith("*", q, b), r) == a
    assert abs(r) < abs(b) and (r == 0 or (r < 0) == (a < 0))


@settings(max_examples=200, deadline=None)
@given(x=st.integers(-(1 << 200), 1 << 200))
def test_wrap_agrees_with_twos_complement(x):
    assert wrap(x) == to_signed64(x)
    assert MIN <= wrap(x) <= MAX


@settings(max_examples=200, deadline=None)
@given(a=operand)
def test_unary_matches_bigint_reference(a):
    assert neg(a) == to_signed64(-a)
    assert bnot(a) == to_signed64(~a)


@settings(max_examples=200, deadline=None)
@given(x=st.integers(0, (1 << 64) - 1))
def test_hex_literals_are_twos_complement(x):
    assert parse_int_literal(hex(x)) == to_signed64(x)
