"""The lowering of each IR op (lower.py drives them): one handler per op,
registered in HANDLERS, and the ops no handler takes yet with what the
user is told (NOT_LOWERED_OPS). Every op is in exactly one of the two,
checked at import, as the other engines check their op tables.

A handler gets the program lowering (its FunctionText, maps, faults), the
inlined function instance, the IR value and its lowered arguments, and
returns the value's Lowered (or a TableRef / FuncRef)."""

from __future__ import annotations

from ktapjit.bpf.kernel_plan import (FAULT_AGG_VALUE, FAULT_COMPARE, FAULT_DIVZERO, FAULT_FOR,
                                     FAULT_LENGTH, FAULT_LOOP, FAULT_NIL_INDEX, NotLowered)
from ktapjit.bpf.layout import TAG_BOOL, TAG_INT, TAG_NIL, TAG_STRING, pad8
from ktapjit.bpf.llvm_text import KTIME_GET_NS, FunctionText
from ktapjit.bpf.lowered_value import NIL, FuncRef, Lowered, TableRef, int_value
from ktapjit.ir.ops import ARITH_SYMBOL, Op
from ktapjit.semantics.agg import lhist_bounds_error
from ktapjit.semantics.intmath import TIME_DIVISORS

# The longest strings `==` compares byte for byte (KERNEL_STRING_MAX and its padding).
COMPARED_STRING_MAX = 136

# ------------------------------------------------------------ op handlers

HANDLERS = {}


def handles(*ops):
    def register(handler):
        for op in ops:
            HANDLERS[op] = handler
        return handler
    return register


def op_text(op: Op) -> str:
    names = {Op.Concat: "`..`", Op.Len: "len()", Op.Hist: "hist()", Op.LHist: "lhist()", Op.Stats: "stats()",
             Op.NumCpus: "num_cpus()", Op.Arch: "arch()", Op.KernelV: "kernel_v()", Op.Delete: "delete()",
             Op.KernelSymbol: "ipof()"}
    return names.get(op, op.name)


@handles(Op.Const)
def _const(lw, inst, v, a):
    aux = v.aux
    if aux is None:
        return NIL
    if aux is True or aux is False:
        return Lowered(str(TAG_BOOL), str(int(aux)))
    if isinstance(aux, bytes):
        return lw.string_const(aux)
    return int_value(str(aux))


@handles(Op.Param)
def _param(lw, inst, v, a):
    return inst.args[v.aux] if v.aux < len(inst.args) else NIL


@handles(Op.Phi)
def _phi(lw, inst, v, a):
    fn = lw.fn
    names = (fn.tmp("phi"), fn.tmp("phi"), fn.tmp("phi"))
    for name in names:
        fn.lines.append(f"  ;phi {name}")
    cap = lw.state.phi_caps.get((lw.name, inst.prefix, v.id), 0)
    inst.phis.append((v, names, cap))
    return Lowered(names[0], names[1], names[2] if cap else "null", cap)


@handles(Op.GlobalGet)
def _global_get(lw, inst, v, a):
    analysis = lw.state.analysis
    if v.aux in analysis.table_globals:
        return TableRef(v.aux)
    if v.aux in analysis.func_globals:
        return FuncRef(analysis.func_globals[v.aux])
    return lw.read_cell(v.aux, None, v.span)


@handles(Op.GlobalSet)
def _global_set(lw, inst, v, a):
    if not isinstance(a[0], Lowered):
        raise NotLowered("a global set to a table or a function", v.span)
    lw.write_cell(v.aux, None, a[0], v)
    return NIL


@handles(Op.TableGet)
def _table_get(lw, inst, v, a):
    table, key = a
    if not isinstance(table, TableRef) or not isinstance(key, Lowered):
        raise NotLowered("indexing a value that is not a table global", v.span)
    return lw.read_cell(table.slot, key, v.span)


@handles(Op.TableSet)
def _table_set(lw, inst, v, a):
    table, key, value = a
    if not isinstance(table, TableRef) or not isinstance(key, Lowered) or not isinstance(value, Lowered):
        raise NotLowered("storing into a value that is not a table global", v.span)
    fn = lw.fn
    if key.tag != str(TAG_INT):
        nil_key = fn.op(f"icmp eq i64 {key.tag}, {TAG_NIL}")
        lw.fault_if(nil_key, lw.state.site(v.span, FAULT_NIL_INDEX), "0")
    lw.write_cell(table.slot, key, value, v)
    return NIL


@handles(Op.OrZero)
def _or_zero(lw, inst, v, a):
    (x,) = a
    if x.tag == str(TAG_INT):
        return x
    fn = lw.fn
    is_nil = fn.op(f"icmp eq i64 {x.tag}, {TAG_NIL}")
    tag = fn.op(f"select i1 {is_nil}, i64 {TAG_INT}, i64 {x.tag}")
    bits = fn.op(f"select i1 {is_nil}, i64 0, i64 {x.bits}")
    return Lowered(tag, bits, x.sptr, x.cap)


_SIMPLE_ARITH = {Op.Add: "add", Op.Sub: "sub", Op.Mul: "mul", Op.BAnd: "and", Op.BOr: "or", Op.BXor: "xor"}


@handles(*ARITH_SYMBOL)
def _arith(lw, inst, v, a):
    x = lw.int_operand(a[0], v)
    y = lw.int_operand(a[1], v)
    fn = lw.fn
    if v.op in _SIMPLE_ARITH:
        return int_value(fn.op(f"{_SIMPLE_ARITH[v.op]} i64 {x}, {y}"))
    if v.op in (Op.Shl, Op.Shr):
        count = fn.op(f"and i64 {y}, 63")
        return int_value(fn.op(f"{'shl' if v.op is Op.Shl else 'ashr'} i64 {x}, {count}"))
    zero = fn.op(f"icmp eq i64 {y}, 0")
    lw.fault_if(zero, lw.state.site(v.span, FAULT_DIVZERO), "0")
    return int_value(_signed_divide(fn, x, y, v.op is Op.Div))


def _signed_divide(fn: FunctionText, x: str, y: str, quotient: bool) -> str:
    """Truncating signed / and % through unsigned division: cpu v3 has no
    signed division (INT64_MIN / -1 wraps to INT64_MIN, as the language says)."""
    x_neg = fn.op(f"icmp slt i64 {x}, 0")
    y_neg = fn.op(f"icmp slt i64 {y}, 0")
    ax = fn.op(f"select i1 {x_neg}, i64 {fn.op(f'sub i64 0, {x}')}, i64 {x}")
    ay = fn.op(f"select i1 {y_neg}, i64 {fn.op(f'sub i64 0, {y}')}, i64 {y}")
    if quotient:
        q = fn.op(f"udiv i64 {ax}, {ay}")
        flip = fn.op(f"xor i1 {x_neg}, {y_neg}")
        return fn.op(f"select i1 {flip}, i64 {fn.op(f'sub i64 0, {q}')}, i64 {q}")
    r = fn.op(f"urem i64 {ax}, {ay}")
    return fn.op(f"select i1 {x_neg}, i64 {fn.op(f'sub i64 0, {r}')}, i64 {r}")


@handles(Op.Neg, Op.BNot)
def _unary(lw, inst, v, a):
    x = lw.int_operand(a[0], v)
    if v.op is Op.Neg:
        return int_value(lw.fn.op(f"sub i64 0, {x}"))
    return int_value(lw.fn.op(f"xor i64 {x}, -1"))


@handles(Op.Not)
def _not(lw, inst, v, a):
    return lw.boolean(lw.fn.op(f"xor i1 {lw.truth(a[0])}, true"))


@handles(Op.Eq, Op.Ne)
def _equal(lw, inst, v, a):
    x, y = a
    if not isinstance(x, Lowered) or not isinstance(y, Lowered):
        raise NotLowered("comparing tables or functions", v.span or lw.where(v))
    fn = lw.fn
    same = fn.op(f"and i1 {fn.op(f'icmp eq i64 {x.tag}, {y.tag}')}, {fn.op(f'icmp eq i64 {x.bits}, {y.bits}')}")
    common = min(x.cap, y.cap)
    if common > COMPARED_STRING_MAX:
        # Two memory reads at a large --max-string: the zeroed copies would
        # be memsets the BPF backend makes calls of, which it cannot emit.
        raise NotLowered(f"comparing two strings of up to {common} bytes", v.span or lw.where(v))
    if common:
        is_string = fn.op(f"icmp eq i64 {x.tag}, {TAG_STRING}")
        both = fn.op(f"and i1 {same}, {is_string}")
        compare, done = fn.new_label("streq"), fn.new_label("eqdone")
        before = fn.label
        fn.cond_br(both, compare, done)
        fn.start(compare)  # equal lengths, at most `common` bytes: compare padded copies
        left, right = lw.padded(x, common), lw.padded(y, common)
        text_same = "true"
        for at in range(0, pad8(common), 8):
            word_left = fn.load("i64", fn.gep(left, at))
            word_right = fn.load("i64", fn.gep(right, at))
            text_same = fn.op(f"and i1 {text_same}, {fn.op(f'icmp eq i64 {word_left}, {word_right}')}")
        compared = fn.label
        fn.br(done)
        fn.start(done)
        same = fn.op(f"phi i1 [ {same}, %{before} ], [ {text_same}, %{compared} ]")
    elif x.cap or y.cap:
        is_string = fn.op(f"icmp eq i64 {x.tag}, {TAG_STRING}")
        same = fn.op(f"and i1 {same}, {fn.op(f'xor i1 {is_string}, true')}")
    if v.op is Op.Ne:
        same = fn.op(f"xor i1 {same}, true")
    return lw.boolean(same)


_ORDER = {Op.Lt: "slt", Op.Le: "sle", Op.Gt: "sgt", Op.Ge: "sge"}


@handles(*_ORDER)
def _order(lw, inst, v, a):
    x, y = a
    if not isinstance(x, Lowered) or not isinstance(y, Lowered):
        raise NotLowered("ordering tables or functions", v.span)
    if x.cap and y.cap:
        raise NotLowered("ordering of strings", v.span)
    fn = lw.fn
    if x.tag != str(TAG_INT) or y.tag != str(TAG_INT):
        ints = fn.op(f"and i1 {fn.op(f'icmp eq i64 {x.tag}, {TAG_INT}')}, {fn.op(f'icmp eq i64 {y.tag}, {TAG_INT}')}")
        detail = fn.op(f"or i64 {fn.op(f'shl i64 {x.tag}, 4')}, {y.tag}")
        lw.fault_if(fn.op(f"xor i1 {ints}, true"), lw.state.site(v.span, FAULT_COMPARE), detail)
    return lw.boolean(fn.op(f"icmp {_ORDER[v.op]} i64 {x.bits}, {y.bits}"))


@handles(Op.Call)
def _call(lw, inst, v, a):
    callee, *args = a
    return lw.call(callee, args, v.span)


@handles(Op.LoopTick)
def _loop_tick(lw, inst, v, a):
    fn = lw.fn
    count = fn.op(f"add i64 {fn.load('i64', inst.tick)}, 1")
    limit = lw.state.limits.max_loop
    over = fn.op(f"icmp sgt i64 {count}, {limit}")
    lw.fault_if(over, lw.state.site(v.span, FAULT_LOOP, limit), "0")
    fn.store("i64", count, inst.tick)
    return NIL


@handles(Op.ForInt)
def _forint_value(lw, inst, v, a):
    return int_value(lw.int_operand(a[0], v, FAULT_FOR, v.aux))


@handles(Op.ForStepNonZero)
def _for_step(lw, inst, v, a):
    (x,) = a
    fn = lw.fn
    zero = fn.op(f"icmp eq i64 {x.bits}, 0")
    is_int = fn.op(f"icmp eq i64 {x.tag}, {TAG_INT}")
    lw.fault_if(fn.op(f"and i1 {zero}, {is_int}"), lw.state.site(v.span, FAULT_FOR), "0")
    return x


@handles(Op.ForCont)
def _for_cont(lw, inst, v, a):
    i, limit, stride = (x.bits for x in a)
    fn = lw.fn
    up = fn.op(f"icmp sgt i64 {stride}, 0")
    below = fn.op(f"icmp sle i64 {i}, {limit}")
    above = fn.op(f"icmp sge i64 {i}, {limit}")
    return lw.boolean(fn.op(f"select i1 {up}, i1 {below}, i1 {above}"))


@handles(Op.ForCanStep)
def _for_can_step(lw, inst, v, a):
    i, stride = (x.bits for x in a)
    fn = lw.fn
    result = fn.op(f"call {{i64, i1}} @llvm.sadd.with.overflow.i64(i64 {i}, i64 {stride})")
    overflow = fn.op(f"extractvalue {{i64, i1}} {result}, 1")
    return lw.boolean(fn.op(f"xor i1 {overflow}, true"))


@handles(Op.Time)
def _time(lw, inst, v, a):
    now = lw.fn.helper(KTIME_GET_NS, "i64", "")
    divisor = TIME_DIVISORS[v.aux]
    return int_value(now if divisor == 1 else lw.fn.op(f"udiv i64 {now}, {divisor}"))


@handles(Op.EventValue)
def _event_value(lw, inst, v, a):
    return lw.event_value(v.aux, v)


@handles(Op.EventField)
def _event_field(lw, inst, v, a):
    return lw.event_field(v.aux, v)


@handles(Op.EventMemory)
def _event_memory(lw, inst, v, a):
    return lw.memory[v.aux]  # read before the body ran (lower_memory.py)



@handles(Op.Len)
def _len(lw, inst, v, a):
    (x,) = a
    if not isinstance(x, Lowered):
        raise NotLowered("len() of a table", v.span)
    fn = lw.fn
    if x.tag != str(TAG_STRING):
        bad = fn.op(f"icmp ne i64 {x.tag}, {TAG_STRING}")
        lw.fault_if(bad, lw.state.site(v.span, FAULT_LENGTH), x.tag)
    return int_value(x.bits)


_AGG_NAMES = {Op.Hist: "hist", Op.LHist: "lhist", Op.Stats: "stats"}


@handles(Op.Hist, Op.LHist, Op.Stats)
def _aggregate(lw, inst, v, a):
    name = _AGG_NAMES[v.op]
    table, key, value = a[:3]
    if not isinstance(table, TableRef) or not isinstance(key, Lowered):
        raise NotLowered(f"{name}() into a value that is not a table global", v.span)
    bounds = ()
    if v.op is Op.LHist:
        bounds = tuple(b.aux for b in v.args[3:6])
        if not all(type(b) is int for b in bounds) or lhist_bounds_error(*bounds):
            raise NotLowered("lhist() with bounds that fail", v.span)
    fn = lw.fn
    x = lw.int_operand(value, v, FAULT_AGG_VALUE, name)
    if key.tag != str(TAG_INT):
        lw.fault_if(fn.op(f"icmp eq i64 {key.tag}, {TAG_NIL}"), lw.state.site(v.span, FAULT_NIL_INDEX), "0")
    spec, ref = lw.map_of(table.slot, v.span)
    key_buf = lw.key_of(table.slot, spec, key)
    ptr = lw.insert_if_absent(spec, ref, key_buf, lw.lookup(ref, key_buf), v)
    lw.claim_aggregate(ptr, name, bounds, v)
    if v.op is Op.Stats:
        lw.update_stats(ptr, x)
    else:
        lw.count_in_bucket(ptr, x, bounds, spec.value.buckets)
    lw.stamp_if_new(ptr)
    return NIL


@handles(Op.Concat)
def _concat(lw, inst, v, a):
    x, y = a
    if not isinstance(x, Lowered) or not isinstance(y, Lowered):
        raise NotLowered("`..` of a table or a function", v.span)
    return lw.concat(x, y, v)


# Ops the lowering does not take yet; the placement keeps most of them out
# of kernel probes already (output, closures, pairs, stacks).
NOT_LOWERED_OPS = frozenset({
    Op.FreeCell, Op.CellNew, Op.CellGet, Op.CellSet, Op.StringOf, Op.TableNew, Op.Delete, Op.PairsSnapshot,
    Op.SnapshotLen, Op.SnapshotKey, Op.Closure, Op.Print, Op.Printf, Op.PrintHist, Op.PrintFolded,
    Op.PrintAgg, Op.NumCpus, Op.Arch, Op.KernelV, Op.KernelSymbol, Op.Stack,
})


def _check_table() -> None:
    handled = set(HANDLERS)
    assert not handled & NOT_LOWERED_OPS, handled & NOT_LOWERED_OPS
    missing = set(Op) - handled - NOT_LOWERED_OPS
    assert not missing, f"ops neither lowered nor listed as not lowered: {missing}"


_check_table()
