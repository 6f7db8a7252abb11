"""Lowering: an IR Module (after the pipeline, types inferred) to LLVM IR.

Every IR value becomes two i64s, its tag and its payload (ktrt.h kval).
When typeinfer proved a single type, the tag is a constant and LLVM folds
the checks on it away, so integers run unboxed. Every IR function becomes
one ``kcode`` (abi.py), so closures, calls and tail calls are uniform.

Errors never unwind: a failing check records its code (k_fail, or the
runtime function that failed did) and its *site*, an index into
``Lowered.sites`` (the op's span), then returns K_RUN_ERROR up the chain.
Sites, string constants and event slots are tables the engine fills or reads
at load time, so the object code holds no process addresses and can be
cached.

May import: llvmlite.ir, ktapjit.ir, ktapjit.jit.abi, ktapjit.diag.
"""

from __future__ import annotations

import os

from typing import Optional

from llvmlite import ir

from ktapjit.diag import Span
from ktapjit.ir.func import Block, Func, Module, Value
from ktapjit.ir.ops import Op
from ktapjit.ir.types import TypeSet
from ktapjit.jit import abi
from ktapjit.jit.abi import I1, I32, I64, KVAL, KVALP
from ktapjit.jit.lowered import HOST_SLOTS, Lowered, entry_functions
from ktapjit.semantics.intmath import TIME_DIVISORS

STRINGS_GLOBAL = "ktap_strings"
# The entries a run enters once (the top level, trace_end): compiled at -O0.
RUN_ONCE = ("main", "trace_end")
# Ops whose arguments go to the runtime in the argv array.
_ARGV_OPS = (Op.Call, Op.Print, Op.Printf, Op.Hist, Op.LHist, Op.Stats)
_EVENT_OPS = {Op.EventValue: "value", Op.EventField: "field", Op.Stack: "stack", Op.EventMemory: "memory"}
_COMPARE = {Op.Lt: "<", Op.Le: "<=", Op.Gt: ">", Op.Ge: ">="}
_INT_BINARY = {Op.Add: "add", Op.Sub: "sub", Op.Mul: "mul", Op.BAnd: "and_", Op.BOr: "or_",
               Op.BXor: "xor"}


# The tag of a value typeinfer proved to have exactly one type.
_EXACT_TAGS = {TypeSet.NIL: abi.NIL, TypeSet.BOOL: abi.BOOLEAN, TypeSet.INT: abi.INTEGER,
               TypeSet.STRING: abi.STRING, TypeSet.TABLE: abi.TABLE, TypeSet.FUNCTION: abi.FUNCTION}


def exact_tag(value: Value) -> Optional[int]:
    """The tag `value` always has, or None when its type is not one type (or not inferred)."""
    return _EXACT_TAGS.get(value.type)


def _c(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


NIL_VALUE = (_c(abi.NIL), _c(0))


def _module_name(path: str) -> str:
    """The LLVM module's name: the script's path, its bytes outside ASCII
    escaped. A path is bytes (os.fsdecode keeps undecodable ones as
    surrogates), and LLVM's IR text, hashed and parsed as UTF-8, has no room
    for surrogates."""
    if not path:
        return "script"
    return os.fsencode(path).decode("ascii", "backslashreplace")


class ModuleLowering:
    def __init__(self, module: Module, triple: str = ""):
        self.module = module
        self.llmod = ir.Module(name=_module_name(module.path))
        if triple:
            self.llmod.triple = triple
        self.sites: list[Optional[Span]] = []
        self.strings: list[bytes] = []
        self._string_index: dict[bytes, int] = {}
        self.event_slots: list[tuple[str, str]] = []
        self._slot_index: dict[tuple[str, str], int] = {}
        self.kernel_symbols = module.kernel_symbol_names()  # their slots follow HOST_SLOTS
        self.runtime = abi.declare_runtime(self.llmod)
        self.functions = {
            func: abi.define_kcode(self.llmod, f"ktap_f{i}_{_symbol_part(func.name)}")
            for i, func in enumerate(module.funcs)
        }
        self.strings_global: Optional[ir.GlobalVariable] = None

    def lower(self) -> Lowered:
        self._declare_strings()
        entries = entry_functions(self.module)
        entry_slots = {}
        for func, llfn in self.functions.items():
            FuncLowering(self, func, llfn).lower()
            if func in entries.values():
                entry_slots[llfn.name] = sorted(self._slot_index[k] for k in _event_keys(func))
            else:
                llfn.linkage = "internal"  # reached only through closures: not exported
        for role in RUN_ONCE:
            if role in entries:
                # Not optimised: code that runs once costs more to optimise
                # than it can save, and LLVM then selects its instructions
                # with FastISel; calls out of it still reach optimised code.
                self.functions[entries[role]].attributes.add("noinline")
                self.functions[entries[role]].attributes.add("optnone")
        return Lowered(
            llvm_ir=str(self.llmod),
            entries={name: self.functions[func].name for name, func in entries.items()},
            sites=self.sites,
            strings=self.strings,
            event_slots=self.event_slots,
            entry_slots=entry_slots,
            nglobals=len(self.module.global_names),
        )

    # -- tables shared by every function

    def site(self, span: Optional[Span]) -> ir.Constant:
        self.sites.append(span)
        return _c(len(self.sites) - 1)

    def string_index(self, data: bytes) -> int:
        index = self._string_index.get(data)
        if index is None:
            index = self._string_index[data] = len(self.strings)
            self.strings.append(data)
        return index

    def string_slot(self, index: int, builder: ir.IRBuilder) -> ir.Value:
        return builder.gep(self.strings_global, [ir.Constant(I32, 0), ir.Constant(I32, index)],
                           inbounds=True)

    def _declare_strings(self) -> None:
        """Every string constant gets a slot in one array, filled at load time
        with its interned kstr (interning is per process, so the object code
        cannot hold the pointer)."""
        for func in self.module.funcs:
            for v in func.values():
                if v.op is Op.Const and isinstance(v.aux, (bytes, bytearray)):
                    self.string_index(bytes(v.aux))
        g = ir.GlobalVariable(self.llmod, ir.ArrayType(I64, max(1, len(self.strings))), STRINGS_GLOBAL)
        g.initializer = ir.Constant(g.value_type, None)
        self.strings_global = g

    def event_slot(self, kind: str, name: str) -> int:
        key = (kind, name)
        index = self._slot_index.get(key)
        if index is None:
            index = self._slot_index[key] = len(self.event_slots)
            self.event_slots.append(key)
        return index


_MIN_FILL = 8  # shorter constructors are cheaper inline


def _constant_fill_end(instrs: list[Value], start: int) -> int:
    """The end of a run of constant stores into one table starting at
    instrs[start] (only constants may sit between them), or 0 when there is
    no run worth a k_table_fill."""
    first = instrs[start]
    if not _constant_store(first):
        return 0
    table, end, count = first.args[0], start, 0
    for j in range(start, len(instrs)):
        v = instrs[j]
        if v.op is Op.Const:
            continue
        if not (_constant_store(v) and v.args[0] is table):
            break
        end, count = j + 1, count + 1
    return end if count >= _MIN_FILL else 0


def _constant_store(v: Value) -> bool:
    return (v.op is Op.TableSet and v.args[1].op is Op.Const and v.args[2].op is Op.Const
            and v.args[1].aux is not None)


def _symbol_part(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)[:40]


def _event_keys(func: Func) -> set[tuple[str, str]]:
    return {(_EVENT_OPS[v.op], v.aux) for v in func.values() if v.op in _EVENT_OPS}


class FuncLowering:
    """One IR function into its kcode."""

    def __init__(self, ml: ModuleLowering, func: Func, llfn: ir.Function):
        self.ml = ml
        self.func = func
        self.fn = llfn
        self.state, self.self_fn, self.args, self.nargs, self.depth, self.ret = llfn.args
        self.vals: dict[Value, tuple[ir.Value, ir.Value]] = {}
        self.heads: dict[Block, ir.Block] = {}
        self.tails: dict[Block, ir.Block] = {}  # the LLVM block that ends each IR block
        self.phis: list[tuple[Value, ir.Value, Optional[ir.Value]]] = []
        self.b = ir.IRBuilder()

    # -- structure

    def lower(self) -> None:
        prologue = self.fn.append_basic_block("prologue")
        for block in self.func.blocks:
            self.heads[block] = self.fn.append_basic_block(f"b{block.id}")
        self.b.position_at_end(prologue)
        self._prologue()
        self.b.branch(self.heads[self.func.entry])
        for block in self.func.blocks:
            self.b.position_at_end(self.heads[block])
            self._block(block)
        for value, tag_phi, payload_phi in self.phis:
            for pred, arg in zip(value.block.preds, value.args):
                tag, payload = self.vals[arg]
                if tag_phi is not None:
                    tag_phi.add_incoming(tag, self.tails[pred])
                payload_phi.add_incoming(payload, self.tails[pred])

    def _prologue(self) -> None:
        b = self.b
        self.tick = b.alloca(I64, name="ticks")
        b.store(_c(0), self.tick)
        width = max([len(v.args) for v in self.func.values() if v.op in _ARGV_OPS]
                    + [1])
        self.argv = b.alloca(ir.ArrayType(KVAL, width), name="argv")
        self.tmp = b.alloca(KVAL, name="tmp")
        self.tmp_int = b.alloca(I64, name="tmp_int")
        for value in self.func.values():
            if value.op is Op.Param:
                self.vals[value] = self._param(value.aux)
            elif value.op is Op.FreeCell:
                cells = b.gep(self.self_fn, [_c(0), ir.Constant(I32, 3), _c(value.aux)], inbounds=True)
                self.vals[value] = (_c(0), b.ptrtoint(b.load(cells), I64))

    def _param(self, index: int) -> tuple[ir.Value, ir.Value]:
        """Argument `index`, or nil when the caller passed fewer."""
        b = self.b
        start = b.block
        load = self.fn.append_basic_block(f"param{index}")
        join = self.fn.append_basic_block(f"param{index}.join")
        b.cbranch(b.icmp_signed(">", self.nargs, _c(index)), load, join)
        b.position_at_end(load)
        tag, payload = self.load_kval(b.gep(self.args, [_c(index)]))
        b.branch(join)
        b.position_at_end(join)
        merged = []
        for got, nil in ((tag, abi.NIL), (payload, 0)):
            phi = b.phi(I64)
            phi.add_incoming(_c(nil), start)
            phi.add_incoming(got, load)
            merged.append(phi)
        return merged[0], merged[1]

    def _block(self, block: Block) -> None:
        instrs = block.instrs
        i = 0
        while i < len(instrs):
            value = instrs[i]
            fill_end = _constant_fill_end(instrs, i)
            if fill_end:
                self._table_fill(instrs[i:fill_end])
                i = fill_end
                continue
            if value.op is Op.Phi:
                self._phi(value)
            elif value.op not in (Op.Param, Op.FreeCell):
                self.vals[value] = LOWER[value.op](self, value)
            i += 1
        self.tails[block] = self.b.block
        TERMINATORS[block.kind](self, block)

    def _phi(self, value: Value) -> None:
        tag = exact_tag(value)
        tag_phi = None if tag is not None else self.b.phi(I64, name=f"v{value.id}.tag")
        payload_phi = self.b.phi(I64, name=f"v{value.id}")
        self.phis.append((value, tag_phi, payload_phi))
        self.vals[value] = (_c(tag) if tag is not None else tag_phi, payload_phi)

    def _table_fill(self, run: list[Value]) -> None:
        """A table constructor's constant stores as one k_table_fill call over
        a constant array: a 450-entry literal would otherwise be 450 inlined
        stores, seconds of LLVM time for nothing."""
        sets = [v for v in run if v.op is Op.TableSet]
        for v in run:
            if v.op is Op.Const:
                self.vals[v] = _const(self, v)
        words = []
        for v in sets:
            for const in v.args[1:]:
                words += self._const_words(const.aux)
        array = ir.GlobalVariable(self.ml.llmod, ir.ArrayType(I64, len(words)),
                                  self.ml.llmod.get_unique_name("ktap_fill"))
        array.initializer = ir.Constant(array.value_type, words)
        array.global_constant = True
        array.linkage = "private"
        first_site = self.ml.site(sets[0].span)
        for v in sets[1:]:
            self.ml.site(v.span)
        b = self.b
        table = _table_ptr(self, sets[0].args[0], first_site)
        zero = ir.Constant(I32, 0)
        rc = self.call("k_table_fill", self.state, table, b.gep(array, [zero, zero], inbounds=True),
                       _c(len(sets)), b.gep(self.ml.strings_global, [zero, zero], inbounds=True),
                       self.tmp_int)
        with b.if_then(b.icmp_signed("!=", rc, ir.Constant(I32, 0)), likely=False):
            b.store(b.add(first_site, b.load(self.tmp_int)), self.state_field("site"))
            b.ret(_c(abi.RUN_ERROR))

    def _const_words(self, aux) -> list[int]:
        if aux is None:
            return [abi.NIL, 0]
        if isinstance(aux, bool):
            return [abi.BOOLEAN, int(aux)]
        if isinstance(aux, int):
            return [abi.INTEGER, aux]
        return [abi.STRING, self.ml.string_index(bytes(aux))]

    # -- helpers

    def arg(self, value: Value) -> tuple[ir.Value, ir.Value]:
        tag, payload = self.vals[value]
        exact = exact_tag(value)
        if exact is not None and not isinstance(tag, ir.Constant):
            tag = _c(exact)
        return tag, payload

    def call(self, name: str, *args) -> ir.Value:
        return self.b.call(self.ml.runtime[name], list(args))

    def state_field(self, name: str) -> ir.Value:
        return self.b.gep(self.state, [_c(0), ir.Constant(I32, abi.STATE_INDEX[name])], inbounds=True)

    def fail_unless(self, ok: ir.Value, site: ir.Constant, code: Optional[int] = None,
                    a: ir.Value = None, b: ir.Value = None) -> None:
        """Continue when `ok`; otherwise record (code, a, b) unless the runtime
        already did, note the site and return K_RUN_ERROR."""
        if isinstance(ok, ir.Constant) and ok.constant:
            return
        bad = self.fn.append_basic_block("fail")
        good = self.fn.append_basic_block("ok")
        self.b.cbranch(ok, good, bad).set_weights([1000, 1])
        self.b.position_at_end(bad)
        if code is not None:
            self.call("k_fail", self.state, ir.Constant(I32, code), a or _c(0), b or _c(0))
        self.b.store(site, self.state_field("site"))
        self.b.ret(_c(abi.RUN_ERROR))
        self.b.position_at_end(good)

    def ok_status(self, rc: ir.Value, site: ir.Constant) -> None:
        self.fail_unless(self.b.icmp_signed("==", rc, ir.Constant(rc.type, 0)), site)

    def not_null(self, ptr: ir.Value, site: ir.Constant) -> None:
        self.fail_unless(self.b.icmp_unsigned("!=", ptr, ir.Constant(ptr.type, None)), site)

    def has_tag(self, tag: ir.Value, want: int) -> ir.Value:
        if isinstance(tag, ir.Constant):
            return ir.Constant(I1, int(tag.constant == want))
        return self.b.icmp_signed("==", tag, _c(want))

    def require_tag(self, value: Value, want: int, site, code: int) -> ir.Value:
        tag, payload = self.arg(value)
        self.fail_unless(self.has_tag(tag, want), site, code, tag)
        return payload

    def truthy(self, value: Value) -> ir.Value:
        tag, payload = self.arg(value)
        if isinstance(tag, ir.Constant) and tag.constant > abi.BOOLEAN:
            return ir.Constant(I1, 1)
        b = self.b
        # nil is (0, 0) and false (1, 0): falsy exactly when tag <= 1 and payload == 0.
        falsy = b.and_(b.icmp_unsigned("<=", tag, _c(abi.BOOLEAN)), b.icmp_signed("==", payload, _c(0)))
        return b.not_(falsy)

    def escaping(self, value: Value) -> tuple[ir.Value, ir.Value]:
        """`value`, about to be stored where it outlives the entry: a table
        or function is reported (k_escape), or k_enter would free it on return."""
        kv = self.arg(value)
        tag = kv[0]
        if isinstance(tag, ir.Constant) and tag.constant not in (abi.TABLE, abi.FUNCTION):
            return kv
        b = self.b
        with b.if_then(b.icmp_unsigned(">=", tag, _c(abi.TABLE))):  # TABLE and FUNCTION are the last tags
            self.call("k_escape", *kv)
        return kv

    def boolean(self, bit: ir.Value) -> tuple[ir.Value, ir.Value]:
        return _c(abi.BOOLEAN), self.b.zext(bit, I64)

    def store_args(self, values: list[Value]) -> ir.Value:
        for i, v in enumerate(values):
            self.store_kval(self.arg(v), self.b.gep(self.argv, [_c(0), _c(i)], inbounds=True))
        return self.b.gep(self.argv, [_c(0), _c(0)], inbounds=True)

    def store_kval(self, kv: tuple[ir.Value, ir.Value], ptr: ir.Value) -> None:
        b = self.b
        b.store(kv[0], b.gep(ptr, [_c(0), ir.Constant(I32, 0)], inbounds=True))
        b.store(kv[1], b.gep(ptr, [_c(0), ir.Constant(I32, 1)], inbounds=True))

    def load_kval(self, ptr: ir.Value) -> tuple[ir.Value, ir.Value]:
        b = self.b
        return (b.load(b.gep(ptr, [_c(0), ir.Constant(I32, 0)], inbounds=True)),
                b.load(b.gep(ptr, [_c(0), ir.Constant(I32, 1)], inbounds=True)))

    def global_slot(self, index: int) -> ir.Value:
        return self.b.gep(self.b.load(self.state_field("globals")), [_c(index)], inbounds=True)

    def as_ptr(self, payload: ir.Value, ty) -> ir.Value:
        return self.b.inttoptr(payload, ty)


LOWER: dict = {}
TERMINATORS: dict = {}


def lowers(*ops: Op):
    def register(fn):
        for op in ops:
            assert op not in LOWER, op
            LOWER[op] = fn
        return fn
    return register


# -- values and variables ------------------------------------------------------

@lowers(Op.Const)
def _const(fl: FuncLowering, v: Value):
    aux = v.aux
    if aux is None:
        return NIL_VALUE
    if isinstance(aux, bool):
        return _c(abi.BOOLEAN), _c(int(aux))
    if isinstance(aux, int):
        return _c(abi.INTEGER), _c(aux)
    slot = fl.ml.string_slot(fl.ml.string_index(bytes(aux)), fl.b)
    return _c(abi.STRING), fl.b.load(slot)


@lowers(Op.GlobalGet)
def _global_get(fl, v):
    return fl.load_kval(fl.global_slot(v.aux))


@lowers(Op.GlobalSet)
def _global_set(fl, v):
    fl.store_kval(fl.escaping(v.args[0]), fl.global_slot(v.aux))


@lowers(Op.CellNew)
def _cell_new(fl, v):
    cell = fl.call("k_cell_new", fl.state, *fl.arg(v.args[0]))
    fl.not_null(cell, fl.ml.site(v.span))
    return _c(0), fl.b.ptrtoint(cell, I64)


@lowers(Op.CellGet)
def _cell_get(fl, v):
    return fl.load_kval(fl.as_ptr(fl.arg(v.args[0])[1], KVALP))


@lowers(Op.CellSet)
def _cell_set(fl, v):
    fl.store_kval(fl.escaping(v.args[1]), fl.as_ptr(fl.arg(v.args[0])[1], KVALP))


# -- arithmetic ------------------------------------------------------------------

def _int_operands(fl: FuncLowering, v: Value) -> list[ir.Value]:
    """The integer payloads of v's operands, each checked in order."""
    site = fl.ml.site(v.span)
    return [fl.require_tag(a, abi.INTEGER, site, abi.E_ARITH) for a in v.args]


@lowers(*_INT_BINARY)
def _int_binary(fl, v):
    x, y = _int_operands(fl, v)
    return _c(abi.INTEGER), getattr(fl.b, _INT_BINARY[v.op])(x, y)


@lowers(Op.Div, Op.Mod)
def _div_mod(fl, v):
    b = fl.b
    site = fl.ml.site(v.span)
    x, y = [fl.require_tag(a, abi.INTEGER, site, abi.E_ARITH) for a in v.args]
    fl.fail_unless(b.icmp_signed("!=", y, _c(0)), site, abi.E_DIV_ZERO)
    # INT64_MIN / -1 traps in hardware; the language wraps it, so divide by
    # 1 instead and fix the result up.
    minus_one = b.icmp_signed("==", y, _c(-1))
    safe = b.select(minus_one, _c(1), y)
    if v.op is Op.Div:
        result = b.select(minus_one, b.sub(_c(0), x), b.sdiv(x, safe))
    else:
        result = b.select(minus_one, _c(0), b.srem(x, safe))
    return _c(abi.INTEGER), result


@lowers(Op.Shl, Op.Shr)
def _shift(fl, v):
    x, y = _int_operands(fl, v)
    count = fl.b.and_(y, _c(63))
    shifted = fl.b.shl(x, count) if v.op is Op.Shl else fl.b.ashr(x, count)
    return _c(abi.INTEGER), shifted


@lowers(Op.Neg)
def _neg(fl, v):
    (x,) = _int_operands(fl, v)
    return _c(abi.INTEGER), fl.b.sub(_c(0), x)


@lowers(Op.BNot)
def _bnot(fl, v):
    (x,) = _int_operands(fl, v)
    return _c(abi.INTEGER), fl.b.xor(x, _c(-1))


# -- logic and comparison -----------------------------------------------------------

@lowers(Op.Not)
def _not(fl, v):
    return fl.boolean(fl.b.not_(fl.truthy(v.args[0])))


@lowers(Op.Eq, Op.Ne)
def _eq(fl, v):
    b = fl.b
    (ta, pa), (tb, pb) = fl.arg(v.args[0]), fl.arg(v.args[1])
    # Interned strings, identities and canonical nil/boolean payloads make
    # equality a compare of both words.
    same = b.and_(b.icmp_signed("==", ta, tb), b.icmp_signed("==", pa, pb))
    return fl.boolean(same if v.op is Op.Eq else b.not_(same))


@lowers(*_COMPARE)
def _compare(fl, v):
    b = fl.b
    sym = _COMPARE[v.op]
    (ta, pa), (tb, pb) = fl.arg(v.args[0]), fl.arg(v.args[1])
    ia, ib = fl.has_tag(ta, abi.INTEGER), fl.has_tag(tb, abi.INTEGER)
    if isinstance(ia, ir.Constant) and isinstance(ib, ir.Constant) and ia.constant and ib.constant:
        return fl.boolean(b.icmp_signed(sym, pa, pb))
    both_int = b.and_(ia, ib)
    site = fl.ml.site(v.span)
    start = b.block
    slow = fl.fn.append_basic_block("cmp.slow")
    join = fl.fn.append_basic_block("cmp.join")
    b.cbranch(both_int, join, slow)
    b.position_at_end(slow)
    rc = fl.call("k_compare", fl.state, ta, pa, tb, pb, fl.tmp_int)
    fl.ok_status(rc, site)
    slow_bit = b.icmp_signed(sym, b.load(fl.tmp_int), _c(0))
    slow_end = b.block
    b.branch(join)
    b.position_at_end(join)
    bit = b.phi(I1)
    bit.add_incoming(_fast_bit(start, sym, pa, pb), start)
    bit.add_incoming(slow_bit, slow_end)
    return fl.boolean(bit)


def _fast_bit(start, sym, pa, pb):
    """The integer comparison, emitted at the end of `start` (before its branch)."""
    b = ir.IRBuilder(start)
    b.position_before(start.terminator)
    return b.icmp_signed(sym, pa, pb)


# -- strings -------------------------------------------------------------------------

def _string_result(fl: FuncLowering, v: Value, name: str, *operands: Value):
    kvs = [x for a in operands for x in fl.arg(a)]
    fl.ok_status(fl.call(name, fl.state, *kvs, fl.tmp), fl.ml.site(v.span))
    return fl.load_kval(fl.tmp)


@lowers(Op.Concat)
def _concat(fl, v):
    return _string_result(fl, v, "k_concat", *v.args)


@lowers(Op.StringOf)
def _stringof(fl, v):
    return _string_result(fl, v, "k_stringof", *v.args)


@lowers(Op.Len)
def _len(fl, v):
    fl.ok_status(fl.call("k_len", fl.state, *fl.arg(v.args[0]), fl.tmp_int), fl.ml.site(v.span))
    return _c(abi.INTEGER), fl.b.load(fl.tmp_int)


# -- tables ------------------------------------------------------------------------------

def _table_ptr(fl: FuncLowering, value: Value, site) -> ir.Value:
    return fl.as_ptr(fl.require_tag(value, abi.TABLE, site, abi.E_INDEX), abi.I8P)


@lowers(Op.TableNew)
def _table_new(fl, v):
    table = fl.call("k_table_new", fl.state)
    site = fl.ml.site(v.span)
    fl.fail_unless(fl.b.icmp_unsigned("!=", table, ir.Constant(abi.I8P, None)), site, abi.E_NOMEM)
    return _c(abi.TABLE), fl.b.ptrtoint(table, I64)


@lowers(Op.TableGet)
def _table_get(fl, v):
    table = _table_ptr(fl, v.args[0], fl.ml.site(v.span))
    fl.call("k_table_get", table, *fl.arg(v.args[1]), fl.tmp)
    return fl.load_kval(fl.tmp)


@lowers(Op.TableSet)
def _table_set(fl, v):
    site = fl.ml.site(v.span)
    table = _table_ptr(fl, v.args[0], site)
    key, value = fl.arg(v.args[1]), fl.arg(v.args[2])
    b = fl.b
    done = _memo_set(fl, table, key, value)
    rc = fl.call("k_table_set", table, *key, *value)
    with b.if_then(b.icmp_signed("!=", rc, ir.Constant(I32, 0)), likely=False):
        fl.call("k_fail_table", fl.state, table, rc)
        b.store(site, fl.state_field("site"))
        b.ret(_c(abi.RUN_ERROR))
    if done is not None:
        b.branch(done)
        b.position_at_end(done)
    return None


def _memo_set(fl, table, key, value) -> Optional[ir.Block]:
    """`t[k] = v` where k_table_set would only overwrite a value: k is the
    key the table's last lookup found (its memo: `t[k] += v` looks k up
    just before), and neither k nor v is nil, a table or a function (no
    delete, no escape). Stores v in place and jumps to the block returned;
    otherwise falls through to the call. None when v's tag rules it out."""
    plain = [_plain_tag(fl, tag) for tag in (key[0], value[0])]
    if any(isinstance(p, ir.Constant) and not p.constant for p in plain):
        return None
    b, fn = fl.b, fl.fn
    check, hit, call, done = (fn.append_basic_block(n) for n in ("memo", "memo_hit", "set", "set_done"))
    b.cbranch(b.and_(*plain), check, call)
    b.position_at_end(check)
    memo_slot = b.load(_table_word(fl, table, abi.CONSTANTS["KTABLE_MEMO_SLOT_AT"], I64))
    memo_tag = b.load(_table_word(fl, table, abi.CONSTANTS["KTABLE_MEMO_KEY_AT"], I64))
    memo_payload = b.load(_table_word(fl, table, abi.CONSTANTS["KTABLE_MEMO_KEY_AT"] + 8, I64))
    same = b.and_(b.icmp_signed("==", memo_payload, key[1]), b.icmp_signed("==", memo_tag, key[0]))
    b.cbranch(b.and_(b.icmp_signed(">=", memo_slot, _c(0)), same), hit, call)
    b.position_at_end(hit)
    index = b.load(_table_word(fl, table, abi.CONSTANTS["KTABLE_INDEX_AT"], I32.as_pointer()))
    entry = b.sext(b.load(b.gep(index, [memo_slot], inbounds=True)), I64)
    entries = b.load(_table_word(fl, table, abi.CONSTANTS["KTABLE_ENTRIES_AT"], abi.I8P))
    at = b.gep(entries, [b.add(b.mul(entry, _c(32)), _c(16))], inbounds=True)  # kentry: key, value
    fl.store_kval(value, b.bitcast(at, abi.KVALP))
    b.branch(done)
    b.position_at_end(call)
    return done


def _plain_tag(fl, tag: ir.Value) -> ir.Value:
    """bool, int or string: what k_table_set neither deletes nor escapes."""
    if isinstance(tag, ir.Constant):
        return ir.Constant(I1, int(abi.BOOLEAN <= tag.constant <= abi.STRING))
    return fl.b.icmp_unsigned("<=", fl.b.sub(tag, _c(abi.BOOLEAN)), _c(abi.STRING - abi.BOOLEAN))


def _table_word(fl, table, offset: int, ty) -> ir.Value:
    return fl.b.bitcast(fl.b.gep(table, [_c(offset)], inbounds=True), ty.as_pointer())


@lowers(Op.OrZero)
def _or_zero(fl, v):
    tag, payload = fl.arg(v.args[0])
    is_nil = fl.has_tag(tag, abi.NIL)
    return fl.b.select(is_nil, _c(abi.INTEGER), tag), fl.b.select(is_nil, _c(0), payload)


@lowers(Op.Delete)
def _delete(fl, v):
    fl.call("k_table_clear", _table_ptr(fl, v.args[0], fl.ml.site(v.span)))


@lowers(Op.PairsSnapshot)
def _pairs_snapshot(fl, v):
    site = fl.ml.site(v.span)
    snap = fl.call("k_snapshot_scratch", fl.state, _table_ptr(fl, v.args[0], site))
    fl.not_null(snap, site)
    return _c(0), fl.b.ptrtoint(snap, I64)


@lowers(Op.SnapshotLen)
def _snapshot_len(fl, v):
    snap = fl.as_ptr(fl.arg(v.args[0])[1], abi.SNAPSHOTP)
    return _c(abi.INTEGER), fl.b.load(fl.b.gep(snap, [_c(0), ir.Constant(I32, 0)], inbounds=True))


@lowers(Op.SnapshotKey)
def _snapshot_key(fl, v):
    snap = fl.as_ptr(fl.arg(v.args[0])[1], abi.SNAPSHOTP)
    index = fl.arg(v.args[1])[1]
    return fl.load_kval(fl.b.gep(snap, [_c(0), ir.Constant(I32, 1), index], inbounds=True))


# -- functions ----------------------------------------------------------------------------

@lowers(Op.Closure)
def _closure(fl, v):
    b = fl.b
    code = fl.ml.functions[v.aux]
    closure = fl.call("k_closure_new", fl.state, b.bitcast(code, abi.I8P),
                      _c(v.aux.nparams), _c(len(v.args)))
    fl.not_null(closure, fl.ml.site(v.span))
    for i, cell in enumerate(v.args):
        slot = b.gep(closure, [_c(0), ir.Constant(I32, 3), _c(i)], inbounds=True)
        b.store(fl.as_ptr(fl.arg(cell)[1], KVALP), slot)
    return _c(abi.FUNCTION), b.ptrtoint(closure, I64)


@lowers(Op.Call)
def _call(fl, v):
    argv = fl.store_args(v.args[1:])
    status = fl.call("k_call", fl.state, *fl.arg(v.args[0]), argv, _c(len(v.args) - 1),
                     fl.depth, fl.tmp, fl.ml.site(v.span))
    b = fl.b
    # The failing call recorded its own site; an exit() unwinds unchanged.
    with b.if_then(b.icmp_signed("!=", status, _c(abi.RUN_OK)), likely=False):
        b.ret(status)
    return fl.load_kval(fl.tmp)


# -- loops ---------------------------------------------------------------------------------

@lowers(Op.LoopTick)
def _loop_tick(fl, v):
    b = fl.b
    count = b.add(b.load(fl.tick), _c(1))
    max_loop = b.load(fl.state_field("max_loop"))
    fl.fail_unless(b.icmp_signed("<=", count, max_loop), fl.ml.site(v.span), abi.E_LOOP_LIMIT, max_loop)
    b.store(count, fl.tick)


@lowers(Op.ForInt)
def _for_int(fl, v):
    payload = fl.require_tag(v.args[0], abi.INTEGER, fl.ml.site(v.span), abi.E_FOR_NOT_INT[v.aux])
    return _c(abi.INTEGER), payload


@lowers(Op.ForStepNonZero)
def _for_step_nonzero(fl, v):
    payload = fl.arg(v.args[0])[1]
    fl.fail_unless(fl.b.icmp_signed("!=", payload, _c(0)), fl.ml.site(v.span), abi.E_FOR_STEP_ZERO)
    return _c(abi.INTEGER), payload


@lowers(Op.ForCont)
def _for_cont(fl, v):
    b = fl.b
    i, limit, stride = (fl.arg(a)[1] for a in v.args)
    up = b.icmp_signed(">", stride, _c(0))
    return fl.boolean(b.select(up, b.icmp_signed("<=", i, limit), b.icmp_signed(">=", i, limit)))


@lowers(Op.ForCanStep)
def _for_can_step(fl, v):
    b = fl.b
    i, stride = (fl.arg(a)[1] for a in v.args)
    checked = b.sadd_with_overflow(i, stride)
    return fl.boolean(b.not_(b.extract_value(checked, 1)))


# -- builtins --------------------------------------------------------------------------------

@lowers(Op.Print)
def _print(fl, v):
    argv = fl.store_args(v.args)
    fl.ok_status(fl.call("k_print", fl.state, argv, _c(len(v.args))), fl.ml.site(v.span))


@lowers(Op.Printf)
def _printf(fl, v):
    fmt = fl.arg(v.args[0]) if v.args else NIL_VALUE
    rest = v.args[1:]
    argv = fl.store_args(rest)
    fl.ok_status(fl.call("k_printf", fl.state, *fmt, argv, _c(len(rest))), fl.ml.site(v.span))


@lowers(Op.PrintHist)
def _print_hist(fl, v):
    rows = fl.arg(v.args[1]) if len(v.args) > 1 else NIL_VALUE
    rc = fl.call("k_print_hist", fl.state, *fl.arg(v.args[0]), *rows)
    fl.ok_status(rc, fl.ml.site(v.span))


@lowers(Op.PrintFolded)
def _print_folded(fl, v):
    fl.ok_status(fl.call("k_print_folded", fl.state, *fl.arg(v.args[0])), fl.ml.site(v.span))


_AGGREGATE_CALLS = {Op.Hist: "k_hist", Op.LHist: "k_lhist", Op.Stats: "k_stats"}


@lowers(*_AGGREGATE_CALLS)
def _aggregate(fl, v):
    # Three kvals and more would not all fit in registers: passed in argv.
    argv = fl.store_args(v.args)
    fl.ok_status(fl.call(_AGGREGATE_CALLS[v.op], fl.state, argv), fl.ml.site(v.span))


@lowers(Op.PrintAgg)
def _print_agg(fl, v):
    fl.ok_status(fl.call("k_print_agg", fl.state, *fl.arg(v.args[0])), fl.ml.site(v.span))


def _host(index: int):
    def lower_host(fl, v):
        return fl.load_kval(fl.global_slot(len(fl.ml.module.global_names) + index))
    return lower_host


for _i, _op in enumerate((Op.NumCpus, Op.Arch, Op.KernelV)):  # HOST_SLOTS' order
    lowers(_op)(_host(_i))


@lowers(Op.KernelSymbol)
def _kernel_symbol(fl, v):
    index = len(HOST_SLOTS) + fl.ml.kernel_symbols.index(v.aux)
    return _host(index)(fl, v)


@lowers(Op.Time)
def _time(fl, v):
    now = fl.b.load(fl.state_field("now_ns"))
    divisor = TIME_DIVISORS[v.aux]
    return _c(abi.INTEGER), now if divisor == 1 else fl.b.sdiv(now, _c(divisor))


@lowers(*_EVENT_OPS)
def _event(fl, v):
    slot = fl.ml.event_slot(_EVENT_OPS[v.op], v.aux)
    b = fl.b
    tag, payload = fl.load_kval(b.gep(b.load(fl.state_field("event")), [_c(slot)], inbounds=True))
    # A negative tag marks a slot the engine could not fill (a corrupt
    # record): reading it is the runtime error, here, as in the interpreter.
    fl.fail_unless(b.icmp_signed(">=", tag, _c(0)), fl.ml.site(v.span), abi.E_EVENT, _c(slot))
    return tag, payload


# -- terminators ----------------------------------------------------------------------------------

def _plain(fl: FuncLowering, block: Block) -> None:
    fl.b.branch(fl.heads[block.succs[0]])


def _if(fl, block):
    yes, no = block.succs
    fl.b.cbranch(fl.truthy(block.controls[0]), fl.heads[yes], fl.heads[no])


def _return(fl, block):
    value = fl.arg(block.controls[0]) if block.controls else NIL_VALUE
    fl.store_kval(value, fl.ret)
    fl.b.ret(_c(abi.RUN_OK))


def _tail_call(fl, block):
    callee, *args = block.controls
    b = fl.b
    buf = fl.call("k_tail_args", fl.state, *fl.arg(callee), _c(len(args)), fl.ml.site(block.span))
    with b.if_then(b.icmp_unsigned("==", buf, ir.Constant(KVALP, None)), likely=False):
        b.ret(_c(abi.RUN_ERROR))
    for i, a in enumerate(args):
        fl.store_kval(fl.arg(a), b.gep(buf, [_c(i)], inbounds=True))
    b.ret(_c(abi.RUN_TAIL))


def _exit(fl, block):
    fl.b.ret(_c(abi.RUN_EXIT))


TERMINATORS.update({"Plain": _plain, "If": _if, "Return": _return, "TailCall": _tail_call,
                    "Exit": _exit})


def lower_module(module: Module, triple: str = "") -> Lowered:
    return ModuleLowering(module, triple).lower()


def _check_tables() -> None:
    from ktapjit.ir.ops import BLOCK_KINDS

    missing = [op for op in Op if op not in LOWER and op not in (Op.Phi, Op.Param, Op.FreeCell)]
    assert not missing, f"ops the JIT cannot lower: {missing}"
    assert set(TERMINATORS) == set(BLOCK_KINDS)


_check_tables()
