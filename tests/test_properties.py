"""Hypothesis properties over whole scripts: integer expressions agree with
Python's big integers reduced to signed 64 bits, through parsing, folding and
the interpreter."""

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from ktapjit.cli import main

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
BINARY = ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"]


def wrap(x: int) -> int:
    return (x + 2**63) % 2**64 - 2**63


class DivideByZero(Exception):
    pass


def truncated_quotient(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def reference(op: str, a: int, b: int) -> int:
    if op in "/%" and b == 0:
        raise DivideByZero
    if op == "/":
        return wrap(truncated_quotient(a, b))
    if op == "%":
        return wrap(a - b * truncated_quotient(a, b))
    if op == "<<":
        return wrap(a << (b & 63))
    if op == ">>":
        return a >> (b & 63)
    return wrap({"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}[op])


def literal(n: int) -> str:
    # A decimal literal cannot spell INT64_MIN (its range is checked before the minus).
    return "0x8000000000000000" if n == -(2**63) else f"({n})"


@st.composite
def expressions(draw, depth=3):
    """(source text, value or DivideByZero) for a random fully parenthesised expression."""
    if depth == 0 or draw(st.booleans()):
        n = draw(INT64)
        return literal(n), n
    op = draw(st.sampled_from(BINARY + ["neg", "bnot"]))
    left_src, left = draw(expressions(depth=depth - 1))
    if op in ("neg", "bnot"):
        sym = "-" if op == "neg" else "~"
        value = left if left is DivideByZero else (wrap(-left) if op == "neg" else ~left)
        return f"({sym}{left_src})", value
    right_src, right = draw(expressions(depth=depth - 1))
    if left is DivideByZero or right is DivideByZero:
        return f"({left_src} {op} {right_src})", DivideByZero
    try:
        value = reference(op, left, right)
    except DivideByZero:
        value = DivideByZero
    return f"({left_src} {op} {right_src})", value


def run(source: str) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", "interp", "-e", source], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@settings(max_examples=200, deadline=None)
@given(expressions())
def test_constant_expression_matches_big_int_reference(case):
    source, expected = case
    status, out, err = run(f"print({source})")
    if expected is DivideByZero:
        assert status == 1 and b"error: divide by zero at -e:1:" in err
    else:
        assert (status, out) == (0, f"{expected}\n".encode()), err


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(BINARY), INT64, INT64)
def test_operator_on_variables_matches_reference(op, a, b):
    # Through globals, so the interpreter computes it rather than the folder.
    status, out, err = run(f"var a, b = {literal(a)}, {literal(b)}\nprint(a {op} b)")
    try:
        expected = f"{reference(op, a, b)}\n".encode()
    except DivideByZero:
        assert status == 1 and err == b"error: divide by zero at -e:2:9\n"
        return
    assert (status, out) == (0, expected), err
