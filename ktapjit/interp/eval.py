"""Op handlers: what each op of ir/ops.py does, keyed on Op.

HANDLERS maps an Op to a factory. At load time the factory is called once
per instruction with the IR value, the register slots of its arguments and
the run's Runtime, and returns ``step(regs) -> result``: a closure that reads
its arguments from the frame's registers and returns the op's result (None
for ops that produce nothing). So executing an instruction is one closure
call, with no dispatch on the op name.

A step reports a runtime error by raising RuntimeFault, with or without a
span: the executor (frames.py) fills in the value's span when it is None.

Five ops are not steps, and frames.py/program.py handle them directly:
Const, Param and FreeCell are written into a new frame's registers before
its first block runs (all three are pure, so their value never depends on
where they sit), Phi is resolved on control-flow edges, and Call switches
frames. Register slot 0 of every frame holds its back-edge counter
(LoopTick).

All value semantics come from ktapjit.semantics; nothing is reimplemented.
"""

from __future__ import annotations

from typing import Callable

from ktapjit.diag import RuntimeFault
from ktapjit.interp.runtime import FLUSH_PIECES, Runtime
from ktapjit.ir.func import Value
from ktapjit.ir.ops import ARITH_SYMBOL, Op
from ktapjit.semantics import agg
from ktapjit.semantics.folded import folded_item, format_folded
from ktapjit.semantics.hist import format_hist, hist_item
from ktapjit.semantics.intmath import INT64_MAX, INT64_MIN, TIME_DIVISORS, arith, bnot, neg
from ktapjit.semantics.output import Item
from ktapjit.semantics.printf import format_printf
from ktapjit.semantics.values import (
    Cell,
    Function,
    Table,
    compare,
    concat,
    length,
    print_line,
    stringof,
    type_name,
    values_equal,
)

Step = Callable[[list], object]
Factory = Callable[[Value, tuple, Runtime], Step]

TICK_SLOT = 0  # regs[0]: back-edges counted in this call

# Handled outside HANDLERS (see the module docstring).
SPECIAL_OPS = frozenset({Op.Const, Op.Param, Op.FreeCell, Op.Phi, Op.Call})

HANDLERS: dict[Op, Factory] = {}


def handles(*ops: Op):
    def register(factory: Factory) -> Factory:
        for op in ops:
            assert op not in HANDLERS, op
            HANDLERS[op] = factory
        return factory
    return register


def _index_fault(v: object) -> RuntimeFault:
    return RuntimeFault(f"attempt to index a {type_name(v)} value")


# -- variables -------------------------------------------------------------

@handles(Op.GlobalGet)
def _global_get(v, a, rt):
    g, slot = rt.globals, v.aux
    return lambda r: g[slot]


@handles(Op.GlobalSet)
def _global_set(v, a, rt):
    g, slot = rt.globals, v.aux
    (x,) = a

    def step(r):
        g[slot] = r[x]
    return step


@handles(Op.CellNew)
def _cell_new(v, a, rt):
    (x,) = a
    return lambda r: Cell(r[x])


@handles(Op.CellGet)
def _cell_get(v, a, rt):
    (x,) = a
    return lambda r: r[x].value


@handles(Op.CellSet)
def _cell_set(v, a, rt):
    c, x = a

    def step(r):
        r[c].value = r[x]
    return step


# -- arithmetic and bitwise --------------------------------------------------

@handles(*ARITH_SYMBOL)
def _arith(v, a, rt):
    sym = ARITH_SYMBOL[v.op]
    x, y = a
    return lambda r: arith(sym, r[x], r[y])


@handles(Op.Neg)
def _neg(v, a, rt):
    (x,) = a
    return lambda r: neg(r[x])


@handles(Op.BNot)
def _bnot(v, a, rt):
    (x,) = a
    return lambda r: bnot(r[x])


# -- logic and comparison ----------------------------------------------------

@handles(Op.Not)
def _not(v, a, rt):
    (x,) = a
    return lambda r: r[x] is None or r[x] is False


@handles(Op.Eq)
def _eq(v, a, rt):
    x, y = a
    return lambda r: values_equal(r[x], r[y])


@handles(Op.Ne)
def _ne(v, a, rt):
    x, y = a
    return lambda r: not values_equal(r[x], r[y])


@handles(Op.Lt)
def _lt(v, a, rt):
    x, y = a
    return lambda r: compare(r[x], r[y]) < 0


@handles(Op.Le)
def _le(v, a, rt):
    x, y = a
    return lambda r: compare(r[x], r[y]) <= 0


@handles(Op.Gt)
def _gt(v, a, rt):
    x, y = a
    return lambda r: compare(r[x], r[y]) > 0


@handles(Op.Ge)
def _ge(v, a, rt):
    x, y = a
    return lambda r: compare(r[x], r[y]) >= 0


# -- strings -------------------------------------------------------------------

@handles(Op.Concat)
def _concat(v, a, rt):
    x, y = a
    max_string = rt.limits.max_string
    return lambda r: concat(r[x], r[y], max_string)


@handles(Op.Len)
def _len(v, a, rt):
    (x,) = a
    return lambda r: length(r[x])


@handles(Op.StringOf)
def _stringof(v, a, rt):
    (x,) = a
    ids, max_string = rt.identities, rt.limits.max_string
    return lambda r: stringof(r[x], ids, max_string)


# -- tables --------------------------------------------------------------------

@handles(Op.TableNew)
def _table_new(v, a, rt):
    max_table = rt.limits.max_table
    return lambda r: Table(max_table)


@handles(Op.TableGet)
def _table_get(v, a, rt):
    t, k = a

    def step(r):
        table = r[t]
        if type(table) is not Table:
            raise _index_fault(table)
        return table.get(r[k])
    return step


@handles(Op.TableSet)
def _table_set(v, a, rt):
    t, k, x = a

    def step(r):
        table = r[t]
        if type(table) is not Table:
            raise _index_fault(table)
        table.set(r[k], r[x])
    return step


@handles(Op.OrZero)
def _or_zero(v, a, rt):
    (x,) = a

    def step(r):
        value = r[x]
        return 0 if value is None else value
    return step


@handles(Op.Delete)
def _delete(v, a, rt):
    (t,) = a

    def step(r):
        table = r[t]
        if type(table) is not Table:
            raise _index_fault(table)
        table.clear()
    return step


@handles(Op.PairsSnapshot)
def _pairs_snapshot(v, a, rt):
    (t,) = a

    def step(r):
        table = r[t]
        if type(table) is not Table:
            raise _index_fault(table)
        return table.keys_snapshot()
    return step


@handles(Op.SnapshotLen)
def _snapshot_len(v, a, rt):
    (s,) = a
    return lambda r: len(r[s])


@handles(Op.SnapshotKey)
def _snapshot_key(v, a, rt):
    s, i = a
    return lambda r: r[s][r[i]]


# -- functions -------------------------------------------------------------------

@handles(Op.Closure)
def _closure(v, a, rt):
    code = v.aux
    return lambda r: Function(code, tuple([r[c] for c in a]))


# -- loops -----------------------------------------------------------------------

@handles(Op.LoopTick)
def _loop_tick(v, a, rt):
    max_loop = rt.limits.max_loop

    def step(r):
        count = r[TICK_SLOT] + 1
        if count > max_loop:
            raise RuntimeFault(f"loop limit exceeded ({max_loop} iterations)")
        r[TICK_SLOT] = count
    return step


@handles(Op.ForInt)
def _for_int(v, a, rt):
    (x,) = a
    message = f"'for' {v.aux} must be an integer"

    def step(r):
        value = r[x]
        if type(value) is not int:  # a bool is not an integer
            raise RuntimeFault(message)
        return value
    return step


@handles(Op.ForStepNonZero)
def _for_step_nonzero(v, a, rt):
    (x,) = a

    def step(r):
        value = r[x]
        if value == 0:
            raise RuntimeFault("'for' step is zero")
        return value
    return step


@handles(Op.ForCont)
def _for_cont(v, a, rt):
    i, limit, stride = a

    def step(r):
        counter = r[i]
        return counter <= r[limit] if r[stride] > 0 else counter >= r[limit]
    return step


@handles(Op.ForCanStep)
def _for_can_step(v, a, rt):
    i, stride = a
    return lambda r: INT64_MIN <= r[i] + r[stride] <= INT64_MAX


# -- builtins --------------------------------------------------------------------

def _item_step(rt, make):
    """The step of a text-only output builtin when the run's output is
    structured (-f json): it hands on `make(r)`, an output Item."""
    buf, flush = rt.buf, rt.flush

    def step(r):
        buf.append(make(r))
        if len(buf) >= FLUSH_PIECES:
            flush()
    return step


@handles(Op.Print)
def _print(v, a, rt):
    ids, buf, flush = rt.identities, rt.buf, rt.flush
    if rt.structured:
        return _item_step(rt, lambda r: Item("print", print_line([r[x] for x in a], ids)))

    def step(r):
        buf.append(print_line([r[x] for x in a], ids))
        if len(buf) >= FLUSH_PIECES:
            flush()
    return step


@handles(Op.Printf)
def _printf(v, a, rt):
    ids, buf, flush = rt.identities, rt.buf, rt.flush
    fmt, rest = (a[0], a[1:]) if a else (None, ())
    if rt.structured:
        return _item_step(rt, lambda r: Item("printf", format_printf(None if fmt is None else r[fmt],
                                                                     [r[x] for x in rest], ids)))

    def step(r):
        buf.append(format_printf(None if fmt is None else r[fmt], [r[x] for x in rest], ids))
        if len(buf) >= FLUSH_PIECES:
            flush()
    return step


@handles(Op.PrintHist)
def _print_hist(v, a, rt):
    ids, buf, flush = rt.identities, rt.buf, rt.flush
    write = hist_item if rt.structured else format_hist
    t = a[0]
    n = a[1] if len(a) > 1 else None

    def step(r):
        buf.append(write(r[t], None if n is None else r[n], ids))
        if len(buf) >= FLUSH_PIECES:
            flush()
    return step


@handles(Op.PrintFolded)
def _print_folded(v, a, rt):
    ids, buf, flush = rt.identities, rt.buf, rt.flush
    write = folded_item if rt.structured else format_folded
    (t,) = a

    def step(r):
        buf.append(write(r[t], ids))
        if len(buf) >= FLUSH_PIECES:
            flush()
    return step


_AGGREGATE = {Op.Hist: agg.hist, Op.LHist: agg.lhist, Op.Stats: agg.stats}


@handles(*_AGGREGATE)
def _aggregate(v, a, rt):
    update, max_table = _AGGREGATE[v.op], rt.limits.max_table
    return lambda r: update(*[r[x] for x in a], max_table=max_table)


@handles(Op.PrintAgg)
def _print_agg(v, a, rt):
    ids, buf, flush = rt.identities, rt.buf, rt.flush
    write = agg.agg_item if rt.structured else agg.format_agg
    (t,) = a

    def step(r):
        buf.append(write(r[t], ids))
        if len(buf) >= FLUSH_PIECES:
            flush()
    return step


@handles(Op.NumCpus)
def _num_cpus(v, a, rt):
    n = rt.host.num_cpus
    return lambda r: n


@handles(Op.Arch)
def _arch(v, a, rt):
    text = rt.host.arch
    return lambda r: text


@handles(Op.KernelV)
def _kernel_v(v, a, rt):
    text = rt.host.kernel_release
    return lambda r: text


@handles(Op.KernelSymbol)
def _kernel_symbol(v, a, rt):
    address = rt.host.kernel_symbols.addresses([v.aux])[v.aux]
    return lambda r: address


@handles(Op.Time)
def _time(v, a, rt):
    divisor = TIME_DIVISORS[v.aux]

    def step(r):
        t = rt.now_ns
        return t // divisor if t >= 0 else -(-t // divisor)  # truncating
    return step


# -- the current event -------------------------------------------------------------

@handles(Op.EventValue)
def _event_value(v, a, rt):
    name = v.aux
    return lambda r: rt.current_event().value(name)


@handles(Op.EventField)
def _event_field(v, a, rt):
    name = v.aux
    return lambda r: rt.current_event().field(name)


@handles(Op.EventMemory)
def _event_memory(v, a, rt):
    read = v.aux  # a semantics.memory_read.MemoryRead's aux
    return lambda r: rt.current_event().memory(read)


@handles(Op.Stack)
def _stack(v, a, rt):
    request = v.aux  # a semantics.stack_request.StackRequest
    return lambda r: rt.current_event().stack(request)


def _check_table() -> None:
    missing = [op for op in Op if op not in HANDLERS and op not in SPECIAL_OPS]
    assert not missing, f"ops without an interpreter handler: {missing}"
    assert not (SPECIAL_OPS & HANDLERS.keys())


_check_table()
