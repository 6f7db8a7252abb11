"""The compile pipeline: one checked list of steps from script text to
machine code, each of which can be dumped and timed, and user errors that
carry the source they point into."""

import io

import pytest

from ktapjit.cli import main
from ktapjit.compiler import STEP_NAMES, STEPS, compile_script
from ktapjit.diag import CompileError
from ktapjit.ir.pipeline import IR_GOALS, IR_STEPS, check_steps, step


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode()


def test_the_steps_in_order():
    assert STEP_NAMES == ["parse", "resolve", "build ssa", "early copyelim", "fold", "deadcode",
                          "late copyelim", "typeinfer", "lower", "optimise", "codegen"]


SCRIPT = "var n = 2\nprint(n + 1)\n"

DUMPS = [
    # step, the header, text the dump holds
    ("parse", "# after parse", "callee: Name ident='print'  @2:1"),
    ("resolve", "# after resolve", "left: Name ident='n' -> global n#1  @2:7"),
    ("build ssa", "# after build ssa", "func <main>#0 (main, 0 params"),
    ("early copyelim", "# after early copyelim", "func <main>#0 (main, 0 params"),
    ("fold", "# after fold", "func <main>#0 (main, 0 params"),
    ("deadcode", "# after deadcode", "func <main>#0 (main, 0 params"),
    ("late copyelim", "# after late copyelim", "func <main>#0 (main, 0 params"),
    ("typeinfer", "# after typeinfer", " : int"),
    ("lower", "; after lower", "define "),
    ("optimise", "; after optimise", "define "),
    ("codegen", "# after codegen", "\t.text"),
]


@pytest.mark.parametrize("name,header,holds", DUMPS, ids=[d[0] for d in DUMPS])
def test_dump_after_any_step(name, header, holds):
    status, out, err = cli("ir", "--dump-after", name, "-e", SCRIPT)
    assert (status, err) == (0, "")
    assert out.split("\n")[0] == header
    assert holds in out.split("\n", 1)[1], out


def test_every_step_has_a_dump_case():
    assert [d[0] for d in DUMPS] == STEP_NAMES


def test_llvm_ir_flag_is_the_dump_after_lower():
    _, dumped, _ = cli("ir", "--dump-after", "lower", "-e", SCRIPT)
    status, llvm_ir, err = cli("asm", "--llvm-ir", "-e", SCRIPT)
    assert (status, err) == (0, "")
    assert dumped == "; after lower\n" + llvm_ir + "\n"


def test_time_steps_lists_each_step_on_stderr():
    status, out, err = cli("ir", "--time-steps", "-e", SCRIPT)
    assert status == 0 and "func <main>" in out
    names = [line.rsplit(None, 2)[0] for line in err.splitlines()]
    assert names == STEP_NAMES[:STEP_NAMES.index("typeinfer") + 1] + ["total"]
    assert all(line.endswith(" ms") for line in err.splitlines())


def test_O0_skips_the_optional_steps():
    unit = compile_script(SCRIPT.encode(), optimize=False)
    assert [name for name, _ in unit.timings] == ["parse", "resolve", "build ssa", "deadcode", "typeinfer"]


ERRORS = [
    # source, the CLI's first line (the error carries the source for the next two)
    (b"print(a)\n", "t.kp:1:7: error: use of undeclared name 'a'"),
    (b"print(1\n", "t.kp:2:1: error: unexpected end of file"),
]


@pytest.mark.parametrize("source,first_line", ERRORS)
def test_user_errors_carry_their_source(source, first_line):
    with pytest.raises(CompileError) as caught:
        compile_script(source, "t.kp")
    assert caught.value.source == source
    assert caught.value.render().split("\n")[0] == first_line
    assert caught.value.render().split("\n")[1] == source.decode().split("\n")[caught.value.diagnostic.span.line - 1]


def test_resolve_collects_every_error_and_reports_the_first():
    with pytest.raises(CompileError) as caught:
        compile_script(b"print(b)\nprint(a)\n", "t.kp")
    assert caught.value.diagnostic.message == "use of undeclared name 'b'"
    assert [name for name, _ in compile_script(b"print(1)").timings][:2] == ["parse", "resolve"]


def _swapped(steps, first, second):
    names = [s.name for s in steps]
    i, j = names.index(first), names.index(second)
    out = list(steps)
    out[i], out[j] = out[j], out[i]
    return out


BAD_ORDERS = [
    # the two steps swapped, what the check says
    ("fold", "deadcode", "the steps end without ['pruned']"),
    ("deadcode", "late copyelim", "the steps end without ['minimal phis']"),
    ("late copyelim", "typeinfer", "the steps end without ['types']"),
    ("build ssa", "early copyelim", "step 'early copyelim' needs ['ssa']"),
]


@pytest.mark.parametrize("first,second,message", BAD_ORDERS, ids=[f"{b[0]}<->{b[1]}" for b in BAD_ORDERS])
def test_a_misordered_list_is_refused(first, second, message):
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_steps(_swapped(IR_STEPS, first, second), have={"resolved"}, goals=IR_GOALS)


def test_a_step_needing_what_no_step_makes_is_refused():
    orphan = step("orphan", lambda unit: None, needs={"call graph"}, makes={"inlined"})
    with pytest.raises(AssertionError, match=r"step 'orphan' needs \['call graph'\]"):
        check_steps([*STEPS, orphan], have={"source"}, goals=())


def test_the_native_steps_need_the_final_ir():
    with pytest.raises(AssertionError, match=r"step 'lower' needs \['types'\]"):
        check_steps([s for s in STEPS if s.name != "typeinfer"], have={"source"}, goals=())
