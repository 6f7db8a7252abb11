"""typeinfer: the dynamic types each value may have, as printed by `ktapjit ir`."""

import pytest

from ktapjit.ir.ops import Op
from ktapjit.ir.passes.typeinfer import typeinfer_module
from ktapjit.ir.types import TypeSet, type_name

from tests.ir.irtext import build


def types_of(source: str, op: Op, func_index: int = 0) -> list[str]:
    module = build(source)
    typeinfer_module(module)
    return [type_name(v.type) for v in module.funcs[func_index].values() if v.op is op]


CASES = [
    # source, op, function index, expected types of that op's values in order
    ("print(1 + 2)", Op.Add, 0, ["int"]),
    ('print("a" .. 1)', Op.Concat, 0, ["string"]),
    ("print(1 < 2)", Op.Lt, 0, ["bool"]),
    ("for (i = 1, 3) { print(i) }", Op.Phi, 0, ["int"]),  # the counter never holds nil
    ("function f(n) { var i = 0\n while (i < n) { i += 1 } return i }", Op.Phi, 1, ["int"]),
    ("function f(n) { var x = 1\n if (n) { x = \"s\" } return x }", Op.Phi, 1, ["int|string"]),
    ("var n = 0\nfunction f() { return n }", Op.GlobalGet, 1, ["nil|int"]),
    ("var t = {}\nt[1] = 2\nprint(t[1])", Op.TableGet, 0, ["any"]),
    ("var t = {}\nt[1] += 1", Op.OrZero, 0, ["bool|int|string|table|function"]),
    ("trace a:b { print(pid, execname, uid, arg0) }", Op.EventValue, 1, ["nil|int", "string", "nil", "any"]),
]


@pytest.mark.parametrize("source,op,func_index,expected", CASES, ids=[c[0][:40] for c in CASES])
def test_types(source, op, func_index, expected):
    assert types_of(source, op, func_index) == expected


def test_global_type_joins_every_store():
    module = build('var g = 1\nfunction f() { g = "s" }\nfunction h() { return g }')
    typeinfer_module(module)
    (get,) = [v for v in module.funcs[2].values() if v.op is Op.GlobalGet]
    assert get.type == TypeSet.NIL | TypeSet.INT | TypeSet.STRING  # a set, not text
