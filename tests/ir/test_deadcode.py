"""deadcode: unreachable blocks and unused pure values go; traps and effects stay."""

from ktapjit.ir.ops import Op
from ktapjit.ir.passes.deadcode import deadcode

from tests.ir.irtext import build, run_passes


def test_code_after_return_is_removed():
    module = run_passes(build("function f() { return 1\n print(2) }"), deadcode)
    f = module.funcs[1]
    assert len(f.blocks) == 1 and all(v.op is not Op.Print for v in f.values())


def test_unused_pure_values_are_removed_but_traps_stay():
    module = run_passes(build('var a = 1\nfunction f(x) { var u = x == 1\n var t = x + 1\n var n = len(x) }'), deadcode)
    ops = [v.op for v in module.funcs[1].values()]
    assert Op.Eq not in ops
    assert Op.Add in ops and Op.Len in ops  # may raise: observable


def test_blocks_are_laid_out_in_reverse_postorder():
    module = run_passes(build("var i = 0\nwhile (i < 3) { i += 1 }\nprint(i)"), deadcode)
    main = module.main
    header = main.blocks[1]
    assert header.kind == "If" and main.blocks[2] is header.succs[0]
