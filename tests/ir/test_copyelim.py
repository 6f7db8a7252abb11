"""copyelim: phis whose arguments are all one value (or the phi) are removed."""

from ktapjit.ir.ops import Op
from ktapjit.ir.passes.copyelim import copyelim
from ktapjit.ir.passes.deadcode import deadcode

from tests.ir.irtext import build, run_passes


def phis(func):
    return [v for v in func.values() if v.op is Op.Phi]


def test_variable_unchanged_in_loop_needs_no_phi():
    module = run_passes(build("function f(n) { var i = 0\n while (n) { print(i) }\n return i }"), copyelim)
    assert phis(module.funcs[1]) == []


def test_phi_made_trivial_by_dead_predecessor_goes_after_deadcode():
    module = build("function f(n) { if (n) { return n }\n return n }")
    run_passes(module, deadcode, copyelim)
    assert phis(module.funcs[1]) == []


def test_real_merge_keeps_its_phi():
    module = run_passes(build("function f(n) { var x = 1\n if (n) { x = 2 }\n return x }"), copyelim, deadcode)
    (phi,) = phis(module.funcs[1])
    assert sorted(a.aux for a in phi.args) == [1, 2]
