"""SSA construction: the IR a few scripts become, printed."""

from ktapjit.ir.ops import Op
from ktapjit.ir.passes.copyelim import copyelim
from ktapjit.ir.passes.deadcode import deadcode

from tests.ir.irtext import build, run_passes, text


def ops_of(func):
    return [v.op for v in func.values()]


def test_while_loop_counter_becomes_a_phi():
    module = build("function f(n) { var i = 0\n while (i < n) { i += 1 }\n return i }")
    f = run_passes(module, copyelim, deadcode).funcs[1]
    assert text(f) == """\
func f (function, 1 params)
b0:
  v0 = Param [0]
  v1 = Const [0]
  Plain -> b1
b1: <- b0 b2
  v2 = Phi v1 v6
  v4 = Lt v2 v0
  If v4 -> b2 b3
b2: <- b1
  v5 = Const [1]
  v6 = Add v2 v5
  v7 = LoopTick
  Plain -> b1
b3: <- b1
  Return v2"""


def test_numeric_for_has_counter_phi_and_checks():
    module = build("for (i = 1, 3) { print(i) }")
    main = run_passes(module, copyelim, deadcode).main
    ops = ops_of(main)
    assert ops.count(Op.ForInt) == 3 and Op.ForStepNonZero in ops
    header = main.blocks[1]
    assert [v.op for v in header.phis()] == [Op.Phi]
    assert header.kind == "If" and header.controls[0].op is Op.ForCont


def test_captured_local_lives_in_a_cell_shared_by_closures():
    module = build("function mk() { var c = 0\n var inc = function() { c += 1 }\n"
                   " var get = function() { return c }\n return get }")
    mk, inc, get = module.funcs[1], module.funcs[2], module.funcs[3]
    assert Op.CellNew in ops_of(mk)
    closures = [v for v in mk.values() if v.op is Op.Closure]
    assert len(closures) == 2 and closures[0].args == closures[1].args  # the same cell
    assert inc.free_names == ["c"] and Op.CellSet in ops_of(inc)
    assert Op.CellGet in ops_of(get) and Op.CellSet not in ops_of(get)


def test_nested_capture_threads_cell_through_middle_function():
    module = build("function outer() { var x = 1\n return function() { return function() { return x } } }")
    middle, inner = module.funcs[2], module.funcs[3]
    assert middle.free_names == ["x"] and inner.free_names == ["x"]


def test_return_call_in_function_is_tail_call_only_there():
    module = build("function f(n) { return f(n) }\nfunction g() { return print(1) }\ntrace_end { return f(1) }")
    f, g, end = module.funcs[1], module.funcs[2], module.trace_end
    assert f.blocks[0].kind == "TailCall"
    assert g.blocks[0].kind == "Return"  # builtins are never tail calls
    assert end.blocks[0].kind == "Return" and Op.Call in ops_of(end)


def test_multiple_assignment_evaluates_targets_then_values_then_stores():
    module = build("var i = 1\nvar t = {}\ni, t[i] = i + 1, 20")
    main = module.main
    ops = [v.op for v in main.values() if v.op in (Op.GlobalGet, Op.Add, Op.GlobalSet, Op.TableSet)]
    # t and i for the target, then i + 1, then the stores in order.
    assert ops[-6:] == [Op.GlobalGet, Op.GlobalGet, Op.GlobalGet, Op.Add, Op.GlobalSet, Op.TableSet]


def test_short_circuit_merges_operands_with_a_phi():
    module = build("var a, b\nprint(a && b)")
    main = run_passes(module, copyelim, deadcode).main
    phis = [v for v in main.values() if v.op is Op.Phi]
    assert len(phis) == 1 and [a.op for a in phis[0].args] == [Op.GlobalGet, Op.GlobalGet]


def test_probes_timers_and_trace_end_are_registered_functions():
    module = build("trace sched:sched_switch /prev_pid == 0/ { }\ntick-1s { }\nprofile-2ms { }\ntrace_end { }")
    assert [(p.eventdef, p.filter) for p in module.probes] == [("sched:sched_switch", "prev_pid == 0")]
    assert [(t.kind, t.period_ns) for t in module.timers] == [("tick", 10**9), ("profile", 2 * 10**6)]
    assert module.trace_end.kind == "trace_end"
