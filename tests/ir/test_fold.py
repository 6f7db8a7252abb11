"""fold: constants are evaluated with the shared semantics; anything that
would raise a runtime error stays for run time."""

import pytest

from ktapjit.ir.ops import Op
from ktapjit.ir.passes.deadcode import deadcode
from ktapjit.ir.passes.fold import fold

from tests.ir.irtext import build, run_passes

FOLDED = [
    ("1 + 2 * 3", 7),
    ("7 / -2", -3),
    ("-7 % 2", -1),
    ("0x7fffffffffffffff + 1", -(2**63)),
    ("1 << 65", 2),
    ("-8 >> 1", -4),
    ("~0", -1),
    ('"a" .. 1 .. "b"', b"a1b"),
    ('"ab" < "b"', True),
    ("1 == \"1\"", False),
    ("!nil", True),
    ('len("abc")', 3),
]

KEPT = [
    ("1 / 0", Op.Div),
    ("1 % 0", Op.Mod),
    ('1 + "a"', Op.Add),
    ("1 < \"a\"", Op.Lt),
    ("-true", Op.Neg),
    ('"abcdefgh" .. "i"', Op.Concat),  # over --max-string 8
]


def printed_arg(module):
    (p,) = [v for v in module.main.values() if v.op is Op.Print]
    return p.args[0]


@pytest.mark.parametrize("expr,expected", FOLDED, ids=[c[0] for c in FOLDED])
def test_constant_expressions_fold(expr, expected):
    arg = printed_arg(run_passes(build(f"print({expr})"), fold, fold, deadcode, max_string=8))
    assert arg.op is Op.Const and arg.aux == expected and type(arg.aux) is type(expected)


@pytest.mark.parametrize("expr,op", KEPT, ids=[c[0] for c in KEPT])
def test_faulting_expressions_stay_for_run_time(expr, op):
    arg = printed_arg(run_passes(build(f"print({expr})"), fold, deadcode, max_string=8))
    assert arg.op is op and arg.span is not None


def test_branch_on_constant_becomes_jump_and_dead_arm_goes():
    module = run_passes(build('if (0) { print("yes") } else { print("no") }'), fold, deadcode)
    prints = [v for v in module.main.values() if v.op is Op.Print]
    assert [p.args[0].aux for p in prints] == [b"yes"]  # 0 is true
    assert all(b.kind != "If" for b in module.main.blocks)


def test_for_checks_on_integer_constants_disappear():
    module = run_passes(build("for (i = 1, 3) { }"), fold, deadcode)
    ops = [v.op for v in module.main.values()]
    assert Op.ForInt not in ops


def test_for_check_on_non_integer_stays():
    module = run_passes(build('for (i = "a", 3) { }'), fold, deadcode)
    checks = [v for v in module.main.values() if v.op is Op.ForInt]
    assert [c.aux for c in checks] == ["initial value"]
