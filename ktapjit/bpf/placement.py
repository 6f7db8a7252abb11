"""Where each probe runs: in the kernel, as an eBPF program, or in user space
over the perf ring, as every probe runs today (docs/bpf.md, "Where a probe
runs").

A probe may run in the kernel only if its result cannot depend on how events
on different CPUs interleave, and only if the verifier can accept it. The
analysis decides that on the optimised IR, in three steps:

1. every body (top level, probes, timers, trace_end, with the script
   functions they call inlined) is evaluated over abstract values: the kinds
   a value may have, the most bytes a string may hold, which table it is,
   and a structural key that says when two values are equal within one
   event. Each construct the kernel cannot run is a Reason at its source
   position, and each access to a script table or global is recorded;
2. every table or global written at event time (a *shared cell*) is judged
   over all its accesses: reads that feed only a commutative update of the
   same cell, updates of one commutative kind, or state private to one
   thread (keyed by `tid`) are order-independent; anything else is a reason;
3. sides are settled to a fixpoint: a kernel probe that writes a cell which
   user-space code reads at event time, or per-thread state shared with a
   user-space probe, moves to user space too.

The result is one Placement per probe and per timer, with its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Union

from ktapjit.diag import Span
from ktapjit.ir.dominators import Dominance
from ktapjit.ir.func import Block, Func, Module, ProbeInfo, TimerInfo, Value
from ktapjit.ir.ops import CUPDATE, EVENT, OUTPUT, PURE, Op, info
from ktapjit.semantics.limits import Limits
from ktapjit.semantics.memory_read import MAX_STRING_READ, MemoryRead

# Strings the kernel builds or keys by live in fixed-size slots; this is the
# largest slot (a key and a value of this size still fit the 512-byte BPF
# stack, and every example's key fits it).
KERNEL_STRING_MAX = 128
# bpf_loop() runs a callback at most this many times (BPF_MAX_LOOPS).
BPF_LOOP_MAX = 1 << 23
INT_TEXT_MAX = len("-9223372036854775808")  # an integer written by `..`
COMM_MAX = 15  # TASK_COMM_LEN - 1: execname
EVENT_NAME_MAX = 64  # MAX_EVENT_NAME_LEN of the kernel's dynamic events: probename
ARCH_MAX = 16
KERNEL_RELEASE_MAX = 64  # struct new_utsname's release

KERNEL = "kernel"
USER = "user"

_KINDS = frozenset({"nil", "bool", "int", "string", "table", "function", "keys", "cell"})
_NOT_ENCODABLE = ("table", "function", "keys", "cell")
_TID = ("event", "tid")
_SCALAR_KEY = ("cell",)
_UPDATE_FAMILY = {Op.Add: "+=", Op.Sub: "+=", Op.Mul: "*=", Op.BOr: "|=", Op.BAnd: "&=", Op.BXor: "^="}
_MAX_OPS = {Op.Gt: "max", Op.Ge: "max", Op.Lt: "min", Op.Le: "min"}
_FLIPPED = {"max": "min", "min": "max"}
_BUILTIN = {Op.Print: "print", Op.Printf: "printf", Op.PrintHist: "print_hist", Op.PrintFolded: "print_folded",
            Op.PrintAgg: "print_agg", Op.Hist: "hist", Op.LHist: "lhist", Op.Stats: "stats"}


@dataclass(frozen=True)
class Reason:
    """Why a probe stays in user space: the construct, and where it is."""

    construct: str
    span: Span

    def render(self) -> str:
        return f"{self.span.location()}: {self.construct}"


@dataclass(frozen=True)
class Placement:
    """Where one probe or timer runs; `reasons` is empty exactly when in the kernel."""

    spec: str  # the EVENTDEF or the timer as written
    where: str  # KERNEL | USER
    reasons: tuple[Reason, ...]
    target: Union[ProbeInfo, TimerInfo] = field(compare=False, repr=False)

    def render(self) -> str:
        text = f"{self.spec}\t{self.where}"
        if self.reasons:
            text += "\t" + "; ".join(r.render() for r in self.reasons)
        return text


@dataclass(frozen=True)
class FieldShape:
    """An event field as its format declares it, for the binder to pass in:
    kind "int", "string" (at most `size` bytes; None for a `__data_loc`
    string, unbounded) or "array" (a table of integers)."""

    kind: str
    size: Optional[int] = None


# Per probe, the shapes of the fields its events have (the most a field may
# take over every event the EVENTDEF matches). Without it, `args.NAME` and
# `argN` are taken to be integers: `ktapjit plan` reads no event formats.
FieldShapes = Callable[[ProbeInfo], Mapping[str, FieldShape]]


def place_module(module: Module, limits: Limits = Limits(),
                 field_shapes: Optional[FieldShapes] = None, recorded: bool = False) -> list[Placement]:
    """One Placement per probe and timer of the module, in source order."""
    return analyse_module(module, limits, field_shapes, recorded).placements


@dataclass(frozen=True)
class CellUse:
    """How event-time code uses one script global (a table, or a global of
    one cell): the update families its writers use, whether it is
    per-thread state, and whether event-time code writes it at all (a cell
    only the top level writes is constant while events run)."""

    cell: str  # "t<slot>" a table global, "g<slot>" a scalar global
    families: frozenset
    thread_local: bool
    written: bool


@dataclass(frozen=True)
class Analysis:
    """The placements, and what the lowering needs to know of the globals:
    how each cell is used, which slots hold one table or one function for
    the whole run."""

    placements: list[Placement]
    cells: Mapping[str, CellUse]
    table_globals: frozenset
    func_globals: Mapping[int, Func]
    string_bounds: Mapping[str, Optional[int]] = field(default_factory=dict)  # cell -> longest string it holds


def analyse_module(module: Module, limits: Limits = Limits(),
                   field_shapes: Optional[FieldShapes] = None, recorded: bool = False) -> Analysis:
    """`recorded`: the run records its stream (--record, --engine compare),
    whose replay must print what the run printed; what a replay cannot
    give again then stays in user space."""
    analysis = _Analysis(module, limits, field_shapes, recorded)
    placements = analysis.run()
    bounds = {cell: v.strlen for cell, v in analysis.values_in.items() if "string" in v.kinds}
    return Analysis(placements, analysis.cell_uses, frozenset(analysis.table_globals),
                    dict(analysis.func_globals), bounds)


# ------------------------------------------------------------ abstract values


@dataclass(frozen=True)
class _Abs:
    kinds: frozenset = _KINDS
    strlen: Optional[int] = None  # the most bytes a string of it may hold; None: unbounded
    table: Optional[str] = None  # "t<slot>" a table global, "event" an array field, "?" any other
    func: Optional[Func] = None  # the function a call of it runs, when known statically
    key: Optional[tuple] = None  # equal keys: equal values within one event

    def join(self, other: "_Abs") -> "_Abs":
        if self == other:
            return self
        strlen = None if self.strlen is None or other.strlen is None else max(self.strlen, other.strlen)
        return _Abs(self.kinds | other.kinds, strlen, _same(self.table, other.table, "?"),
                    _same(self.func, other.func, None), self.key if self.key == other.key else None)


def _same(a, b, conflict):
    if a is None or a == b:
        return b
    return a if b is None else conflict


def _kind(*kinds: str, strlen: Optional[int] = 0, key=None, table=None, func=None) -> _Abs:
    return _Abs(frozenset(kinds), strlen, table, func, key)


_NIL = _kind("nil")
_TOP = _Abs(table="?")
_BOTTOM = _Abs(frozenset(), 0)
_RESULT_KINDS = {"int": _kind("int"), "bool": _kind("bool"), "string": _Abs(frozenset({"string"}), None),
                 "keys": _kind("keys"), "none": _NIL, "table": _kind("table", table="?"),
                 "function": _kind("function"), "cell": _kind("cell")}


def _const(aux) -> _Abs:
    if aux is None:
        return _kind("nil", key=("const", None))
    if isinstance(aux, bool):
        return _kind("bool", key=("const", aux))
    if isinstance(aux, bytes):
        return _kind("string", strlen=len(aux), key=("const", aux))
    return _kind("int", key=("const", aux))


def _text_bytes(value: _Abs) -> Optional[int]:
    """The most bytes `..` may make of this operand (integers in decimal)."""
    if "string" in value.kinds and value.strlen is None:
        return None
    return max(value.strlen if "string" in value.kinds else 0, INT_TEXT_MAX if "int" in value.kinds else 0)


# ------------------------------------------------------------ what a body does


@dataclass(frozen=True)
class _Access:
    cell: str  # "t<slot>" a table global, "g<slot>" a scalar global (a table of one cell)
    kind: str  # read | write | len | iterate | delete
    key: Optional[tuple]
    span: Span
    family: Optional[tuple] = None  # a write's update kind: ("+=",), ("const", v), ("max",), ("hist",), ...
    consumed: bool = False  # a read that feeds only a commutative update of its own cell


@dataclass
class _Body:
    name: str
    func: Func
    target: Union[ProbeInfo, TimerInfo, None]
    event_time: bool
    shapes: Mapping[str, FieldShape] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    accesses: list[_Access] = field(default_factory=list)

    def why(self, construct: str, span: Span) -> None:
        reason = Reason(construct, span)
        if reason not in self.reasons:
            self.reasons.append(reason)


class _Analysis:
    def __init__(self, module: Module, limits: Limits, field_shapes: Optional[FieldShapes], recorded: bool = False):
        self.module = module
        self.limits = limits
        self.field_shapes = field_shapes
        self.recorded = recorded
        self.users: dict[Func, dict[Value, list]] = {}
        self._classify_globals()
        self.values_in: dict[str, _Abs] = dict(self.preset)
        self.values_out: dict[str, _Abs] = dict(self.preset)

    # -- the globals: which hold one function or one table for the whole run

    def _classify_globals(self) -> None:
        stores: dict[int, list[Value]] = {}
        for func in self.module.funcs:
            for value in func.values():
                if value.op is Op.GlobalSet:
                    stores.setdefault(value.aux, []).append(value)
        main = self.module.main
        dom = Dominance(main)
        returns = [b for b in main.blocks if b.kind == "Return" and dom.reachable(b)]

        def set_once_in_main(slot: int) -> Optional[Value]:
            found = stores.get(slot, [])
            if len(found) == 1 and found[0].block.func is main and all(
                    dom.dominates(found[0].block, r) for r in returns):
                return found[0]
            return None

        self.func_globals: dict[int, Func] = {}
        self.table_globals: set[int] = set()
        self.table_allocs: dict[Value, int] = {}
        self.main_only: set[int] = set()
        self.preset: dict[str, _Abs] = {}
        for slot, name in enumerate(self.module.global_names):
            if all(s.block.func is main for s in stores.get(slot, [])):
                self.main_only.add(slot)
            store = set_once_in_main(slot)
            if store is not None and store.args[0].op is Op.Closure and not store.args[0].args:
                self.func_globals[slot] = store.args[0].aux
            elif store is not None and store.args[0].op is Op.TableNew:
                self.table_globals.add(slot)
                self.table_allocs[store.args[0]] = slot
            elif name == "arg" and slot not in stores:  # the script arguments, set by the runtime
                self.table_globals.add(slot)
                self.preset[f"t{slot}"] = _Abs(frozenset({"int", "string"}), None)

    def cell_name(self, cell: str) -> str:
        return self.module.global_names[int(cell[1:])]

    # -- driving

    def bodies(self) -> list[_Body]:
        out = [_Body("top level", self.module.main, None, False)]
        for probe in self.module.probes:
            shapes = self.field_shapes(probe) if self.field_shapes else {}
            out.append(_Body(f"trace {probe.eventdef}", probe.func, probe, True, shapes))
        for timer in self.module.timers:
            out.append(_Body(timer.text, timer.func, timer, True))
        if self.module.trace_end is not None:
            out.append(_Body("trace_end", self.module.trace_end, None, False))
        return out

    def run(self) -> list[Placement]:
        for _round in range(6):  # the values tables hold, to a fixpoint (widened at the end)
            self.memo: dict[tuple, _Abs] = {}
            bodies = self.bodies()
            for body in bodies:
                self.eval_body(body)
            if self.values_out == self.values_in:
                break
            self.values_in, self.values_out = self._widened(self.values_out, _round), dict(self.preset)
        verdict = _Verdict(self, bodies)
        placements = verdict.placements()
        self.cell_uses = verdict.cell_uses()
        return placements

    def _widened(self, values: dict[str, _Abs], round_: int) -> dict[str, _Abs]:
        if round_ < 3:
            return values
        return {cell: replace(v, strlen=None) if v != self.values_in.get(cell) else v for cell, v in values.items()}

    def eval_body(self, body: _Body) -> None:
        self.body = body
        self.eval_func(body.func, [], (body.func,), record=True)

    # -- one function, over abstract values

    def eval_func(self, func: Func, args: list[_Abs], stack: tuple, record: bool) -> _Abs:
        # Without recording, a call's result depends only on its arguments and
        # on what tables hold this round: nested calls are evaluated once each.
        memo_key = (func, tuple(args))
        if not record and memo_key in self.memo:
            return self.memo[memo_key]
        env: dict[Value, _Abs] = {}
        for round_ in range(8):
            changed, _ret = self.walk(func, args, env, stack, None, widen=round_ >= 3)
            if not changed:
                break
        consumed, families = self.patterns(func, env) if record else (set(), {})
        _changed, ret = self.walk(func, args, env, stack, (consumed, families) if record else None, widen=True)
        self.memo[memo_key] = ret
        return ret

    def walk(self, func: Func, args, env, stack, record, widen: bool) -> tuple[bool, _Abs]:
        changed = False
        ret = _BOTTOM
        for block in func.blocks:
            for value in block.instrs:
                new = self.transfer(value, args, env, stack, record)
                old = env.get(value)
                if old is not None and new != old:
                    new = old.join(new)
                    if widen and value.op is Op.Phi and new.strlen != old.strlen:
                        new = replace(new, strlen=None)
                if new != old:
                    env[value] = new
                    changed = True
            ret = ret.join(self.terminator(block, env, stack, record))
        return changed, ret

    def terminator(self, block: Block, env, stack, record) -> _Abs:
        if block.kind == "Return":
            return env.get(block.controls[0], _TOP) if block.controls else _NIL
        if block.kind == "TailCall":
            callee, *args = [env.get(c, _TOP) for c in block.controls]
            return self.call(callee, args, block.span or self.where_block(block), stack, record)
        if block.kind == "Exit" and record:
            self.body.why("exit()", self.where_block(block))
        return _BOTTOM

    def where(self, value: Value) -> Span:
        """The value's position; for ops that carry none, the first user's that
        does, else the last one's before it in its block."""
        if value.span is not None:
            return value.span
        for user in self.users_of(value.block.func).get(value, []):
            span = user.span if isinstance(user, Value) else None
            if span is not None:
                return span
        block = value.block.instrs  # a store: the statement it ends (`+=`, the last operand)
        for before in reversed(block[:block.index(value)]):
            if before.span is not None:
                return before.span
        return self.where_block(value.block)

    def where_block(self, block: Block) -> Span:
        if block.span is not None:
            return block.span
        for value in reversed(block.instrs):
            if value.span is not None:
                return value.span
        return block.func.span

    def users_of(self, func: Func) -> dict[Value, list]:
        if func not in self.users:
            users: dict[Value, list] = {}
            for block in func.blocks:
                for value in block.instrs:
                    for arg in value.args:
                        users.setdefault(arg, []).append(value)
                for control in block.controls:
                    users.setdefault(control, []).append(block)
            self.users[func] = users
        return self.users[func]

    # -- the transfer function, op by op

    def transfer(self, v: Value, params, env, stack, record) -> _Abs:
        args = [env.get(a, _BOTTOM) for a in v.args]
        why = self.body.why if record is not None else (lambda construct, span: None)
        op = v.op
        flags = info(op).flags
        if op is Op.Const:
            return _const(v.aux)
        if op is Op.Param:
            return params[v.aux] if v.aux < len(params) else _NIL
        if op is Op.Phi:
            out = _BOTTOM
            for a in v.args:
                if a in env:
                    out = out.join(env[a])
            return out
        if op is Op.GlobalGet:
            return self.global_get(v, record)
        if op is Op.GlobalSet:
            self.global_set(v, args[0], record)
            return _NIL
        if op is Op.TableNew:
            if v in self.table_allocs:
                return _kind("table", table=f"t{self.table_allocs[v]}")
            why("table constructor (the kernel cannot allocate tables)", self.where(v))
            return _kind("table", table="?")
        if op is Op.TableGet:
            return self.table_get(v, args, record)
        if op is Op.TableSet:
            self.table_set(v, args, record)
            return _NIL
        if flags & CUPDATE:
            self.aggregate(v, args, record)
            return _NIL
        if op in (Op.Len, Op.Delete, Op.PairsSnapshot):
            self.whole_table(v, args[0], record)
            return _kind("int") if op is Op.Len else _RESULT_KINDS[info(op).result]
        if flags & OUTPUT:
            why(f"{_BUILTIN[op]}() writes output, in event order", self.where(v))
            if op is not Op.Print and op is not Op.Printf:
                self.whole_table(v, args[0], record)
            return _NIL
        if op is Op.Call:
            return self.call(args[0], args[1:], self.where(v), stack, record)
        if op is Op.Closure:
            why("function expression (a closure)", v.aux.span)
            return _kind("function", func=None if v.args else v.aux)
        if op is Op.CellNew:
            users = self.users_of(v.block.func).get(v, [])
            closures = [u for u in users if isinstance(u, Value) and u.op is Op.Closure]
            why("variable captured by a closure", closures[0].aux.span if closures else self.where(v))
        if op in (Op.CellNew, Op.CellGet, Op.FreeCell):
            return _TOP
        if op is Op.SnapshotKey:  # a key of a table: keys are checked where they are stored
            return _kind("bool", "int", "string", strlen=KERNEL_STRING_MAX)
        if op is Op.StringOf:
            why("stringof() (its text numbers tables and functions in print order)", self.where(v))
            return _RESULT_KINDS["string"]
        if op is Op.LoopTick and self.limits.max_loop > BPF_LOOP_MAX:
            why(f"loop: --max-loop {self.limits.max_loop} is above bpf_loop()'s {BPF_LOOP_MAX}", self.where(v))
        if op is Op.Concat:
            return self.concat(v, args, env, why)
        if op is Op.OrZero:
            a = args[0]
            return _Abs((a.kinds - {"nil"}) | {"int"}, a.strlen, a.table, a.func, None)
        if flags & EVENT:
            return self.event_value(v, why)
        if op is Op.Time:
            if self.recorded:
                # The kernel reads the clock before perf stamps the sample (docs/bpf.md,
                # "The stamp and the clock"): a replay, on the sample's time, would differ.
                why(f"gettimeofday_{v.aux}() while the stream is recorded (a replay reads the "
                    f"sample's time, not the kernel's clock)", self.where(v))
            return _kind("int", key=("time", v.aux))
        if op is Op.Arch:
            return _kind("string", strlen=ARCH_MAX, key=("arch",))
        if op is Op.KernelV:
            return _kind("string", strlen=KERNEL_RELEASE_MAX, key=("kernel_v",))
        if op is Op.KernelSymbol:
            why("ipof() (its address is looked up in kallsyms in user space when the run starts)", self.where(v))
            return _kind("int", "nil")
        result = _RESULT_KINDS.get(info(op).result, _TOP)
        keys = [a.key for a in args]
        if (flags & PURE or info(op).result in ("int", "bool")) and None not in keys:
            result = replace(result, key=(op.name, v.aux, *keys))
        return result

    def event_value(self, v: Value, why) -> _Abs:
        name = v.aux
        if v.op is Op.Stack:
            why(str(v.aux), self.where(v))  # a StackRequest prints as the call: stack(), ustack(2, 1)
            return _RESULT_KINDS["string"]
        if v.op is Op.EventMemory:
            # The program reads it itself (lower_memory.py), once per event:
            # every use in one event sees one value.
            key = ("memory", name)
            if MemoryRead.parse(name).kind == "in_iowait":
                return _kind("int", "nil", key=key)
            return _kind("string", "nil", strlen=min(self.limits.max_string, MAX_STRING_READ), key=key)
        if v.op is Op.EventValue and name in ("pid", "tid", "cpu"):
            return _kind("int", "nil", key=("event", name))
        if name == "uid":
            return _NIL
        if name == "execname":
            return _kind("string", strlen=COMM_MAX, key=("event", name))
        if name == "probename":
            return _kind("string", strlen=EVENT_NAME_MAX, key=("event", name))
        if name == "argstr":
            why("argstr (the event's trace text is rendered in user space)", self.where(v))
            return _RESULT_KINDS["string"]
        shape = self.body.shapes.get(name) if self.body.shapes else FieldShape("int")
        key = ("event", name)
        if shape is None:
            return _kind("nil", key=key)
        if shape.kind == "array":
            return _kind("table", "nil", table="event", key=key)
        if shape.kind == "string":
            return _kind("string", "nil", strlen=shape.size, key=key)
        return _kind("int", "nil", key=key)

    def concat(self, v: Value, args: list[_Abs], env, why) -> _Abs:
        parts = [_text_bytes(a) for a in args]
        size = None if None in parts else sum(parts)
        keys = [a.key for a in args]
        out = _kind("string", strlen=size, key=None if None in keys else ("Concat", *keys))
        over = size is None or size > KERNEL_STRING_MAX
        inner_over = any(a.op is Op.Concat and _over(env.get(a, _BOTTOM)) for a in v.args)
        if over and not inner_over:
            if size is None:
                why("`..` builds a string of unbounded size", self.where(v))
            else:
                why(f"`..` builds a string of up to {size} bytes, above the kernel's {KERNEL_STRING_MAX}",
                    self.where(v))
        return out

    def call(self, callee: _Abs, args: list[_Abs], span: Span, stack: tuple, record) -> _Abs:
        why = self.body.why if record is not None else (lambda construct, at: None)
        func = callee.func
        if func is None:
            why("call of a function value the analysis cannot resolve", span)
            return _TOP
        if func in stack:
            why(f"recursive call of {func.name} (the kernel inlines every call)", span)
            return _TOP
        if len(stack) > self.limits.max_depth:
            why(f"calls nested deeper than --max-depth {self.limits.max_depth}", span)
            return _TOP
        return self.eval_func(func, args, stack + (func,), record is not None)

    # -- tables and globals

    def access(self, record, access: _Access) -> None:
        if record is not None:
            self.body.accesses.append(access)

    def global_get(self, v: Value, record) -> _Abs:
        slot = v.aux
        if slot in self.func_globals:
            return _kind("function", func=self.func_globals[slot], key=("global", slot))
        if slot in self.table_globals:
            return _kind("table", table=f"t{slot}", key=("global", slot))
        cell = f"g{slot}"
        consumed = record is not None and v in record[0]
        self.access(record, _Access(cell, "read", _SCALAR_KEY, self.where(v), consumed=consumed))
        value = self.values_in.get(cell, _BOTTOM).join(_NIL)
        if record is not None:
            self.check_fixed(value, f"the value of `{self.cell_name(cell)}`", self.where(v), reading=True)
        # Only a function global set once at top level is inlined (func_globals).
        return replace(value, func=None, key=("global", slot) if slot in self.main_only else None)

    def global_set(self, v: Value, value: _Abs, record) -> None:
        slot = v.aux
        if slot in self.func_globals or slot in self.table_globals:
            return  # their one store, at top level
        cell = f"g{slot}"
        self.store_value(cell, value)
        if record is not None:
            self.check_fixed(value, f"the value stored in `{self.cell_name(cell)}`", self.where(v))
            family = record[1].get(v, ("=",))
            self.access(record, _Access(cell, "write", _SCALAR_KEY, self.where(v), family=family))

    def store_value(self, cell: str, value: _Abs) -> None:
        old = self.values_out.get(cell)
        self.values_out[cell] = replace(value, key=None) if old is None else old.join(replace(value, key=None))

    def table_cell(self, v: Value, table: _Abs, record, what: str) -> Optional[str]:
        """The shared cell a table operand names, or None (with a reason) when there is none."""
        if table.table is not None and table.table.startswith("t"):
            return table.table
        if record is not None and ("table" in table.kinds or table.table == "?"):
            self.body.why(f"{what} a table the analysis cannot name", self.where(v))
        return None

    def table_get(self, v: Value, args: list[_Abs], record) -> _Abs:
        table, key = args
        if table.table == "event":
            return _kind("int", "nil")
        cell = self.table_cell(v, table, record, "indexes")
        if cell is None:
            return _TOP
        if record is not None:
            self.check_fixed(key, f"the key of `{self.cell_name(cell)}`", self.where(v))
        consumed = record is not None and v in record[0]
        self.access(record, _Access(cell, "read", key.key, self.where(v), consumed=consumed))
        value = self.values_in.get(cell, _BOTTOM).join(_NIL)
        if record is not None:
            self.check_fixed(value, f"a value of `{self.cell_name(cell)}`", self.where(v), reading=True)
        return replace(value, func=None)  # a function kept in a table is never inlined

    def table_set(self, v: Value, args: list[_Abs], record) -> None:
        table, key, value = args
        if table.table == "event":
            if record is not None:
                self.body.why("store into an event's array field", self.where(v))
            return
        cell = self.table_cell(v, table, record, "stores into")
        if cell is None:
            return
        self.store_value(cell, value)
        if record is not None:
            name = self.cell_name(cell)
            self.check_fixed(key, f"the key of `{name}`", self.where(v))
            self.check_fixed(value, f"the value stored in `{name}`", self.where(v))
            family = record[1].get(v, ("=",))
            self.access(record, _Access(cell, "write", key.key, self.where(v), family=family))

    def aggregate(self, v: Value, args: list[_Abs], record) -> None:
        cell = self.table_cell(v, args[0], record, "updates")
        if cell is None:
            return
        self.store_value(cell, _kind("table", table="?"))
        if record is None:
            return
        self.check_fixed(args[1], f"the key of `{self.cell_name(cell)}`", self.where(v))
        family: tuple = (_BUILTIN[v.op],)
        if v.op is Op.LHist:
            bounds = v.args[3:6]
            if not all(b.op is Op.Const for b in bounds):
                self.body.why("lhist() with bounds not known at compile time (no fixed-size encoding)",
                              self.where(v))
            family += tuple(b.aux if b.op is Op.Const else None for b in bounds)
        self.access(record, _Access(cell, "write", args[1].key, self.where(v), family=family))

    def whole_table(self, v: Value, table: _Abs, record) -> None:
        if record is None:
            return
        if v.op is Op.PairsSnapshot:
            self.body.why("pairs() (the kernel cannot walk a map in insertion order)", self.where(v))
        if v.op is Op.Len and "table" not in table.kinds and table.table is None:
            return  # a string's length
        kind = {Op.Len: "len", Op.Delete: "delete"}.get(v.op, "iterate")
        cell = self.table_cell(v, table, record, "reads")
        if cell is not None:
            self.access(record, _Access(cell, kind, None, self.where(v)))

    def check_fixed(self, value: _Abs, what: str, span: Span, reading: bool = False) -> None:
        """Keys and values in kernel maps need a fixed-size encoding. A value
        read may also name a table global: the kernel reads that map."""
        named = reading and value.table is not None and value.table.startswith("t")
        bad = [k for k in _NOT_ENCODABLE if k in value.kinds and not (named and k == "table")]
        if bad:
            self.body.why(f"{what} may be a {bad[0]} (no fixed-size encoding)", span)
        elif "string" in value.kinds and value.strlen is None:
            self.body.why(f"{what} is a string of unbounded size", span)
        elif "string" in value.kinds and value.strlen > KERNEL_STRING_MAX:
            self.body.why(f"{what} is a string of up to {value.strlen} bytes, above the kernel's "
                          f"{KERNEL_STRING_MAX}", span)

    # -- commutative updates, recognised on the IR

    def patterns(self, func: Func, env) -> tuple[set, dict]:
        """The reads that feed only a commutative update of their own cell,
        and each store's update family."""
        consumed: set[Value] = set()
        families: dict[Value, tuple] = {}
        users = self.users_of(func)
        for value in func.values():
            if value.op is Op.TableSet:
                cell = env.get(value.args[0], _BOTTOM).table
                key = _key_of(value.args[1], env)
                stored = value.args[2]
            elif value.op is Op.GlobalSet:
                cell, key, stored = f"g{value.aux}", _SCALAR_KEY, value.args[0]
            else:
                continue
            if cell is None or not cell.startswith(("t", "g")) or key is None:
                continue
            found = self.update_family(value, stored, cell, key, env, users)
            if found is not None:
                families[value], reads = found
                consumed |= reads
        return consumed, families

    def update_family(self, store: Value, stored: Value, cell, key, env, users):
        if stored.op is Op.Const:
            return ("const", stored.aux), set()
        if stored.op in _UPDATE_FAMILY and users.get(stored) == [store]:
            for i, operand in enumerate(stored.args):
                if stored.op is Op.Sub and i != 0:
                    break
                reads = self.read_of(operand, cell, key, env, users, stored)
                if reads:
                    return (_UPDATE_FAMILY[stored.op],), reads
        return self.min_max(store, stored, cell, key, env, users)

    def read_of(self, value: Value, cell, key, env, users, consumer) -> set:
        """{the read} when `value` is a read of the cell (through OrZero) used only by `consumer`."""
        chain = {value}
        if value.op is Op.OrZero:
            if users.get(value) != [consumer]:
                return set()
            consumer, value = value, value.args[0]
            chain.add(value)
        if users.get(value) != [consumer]:
            return set()
        if value.op is Op.GlobalGet and cell == f"g{value.aux}":
            return {value}
        if value.op is Op.TableGet and env.get(value.args[0], _BOTTOM).table == cell \
                and _key_of(value.args[1], env) == key:
            return {value}
        return set()

    def min_max(self, store: Value, stored: Value, cell, key, env, users):
        """`if (e > t[k]) { t[k] = e }`, optionally `if (t[k] == nil || e > t[k])`: a
        branch that stores only e, taken when e beats the cell."""
        block = store.block
        if len(block.preds) != 1 or block.kind != "Plain":
            return None
        if any(info(v.op).flags & ~(PURE | EVENT) and v is not store and v.op is not Op.GlobalGet
               for v in block.instrs):
            return None
        head = block.preds[0]
        if head.kind != "If" or head.succs[0] is not block:
            return None
        cond = head.controls[0]
        conds = cond.args if cond.op is Op.Phi and users.get(cond) == [head] else [cond]
        want = env.get(stored, _BOTTOM).key
        family, reads = None, set()
        for c in conds:
            if c.op is Op.Eq and len(c.args) == 2 and c.args[1].op is Op.Const and c.args[1].aux is None:
                found = self.read_of(c.args[0], cell, key, env, users, c)
                if not found:
                    return None
                reads |= found
                continue
            if c.op not in _MAX_OPS or want is None:
                return None
            left, right = c.args
            kind = _MAX_OPS[c.op]
            if env.get(left, _BOTTOM).key == want:
                found = self.read_of(right, cell, key, env, users, c)
            elif env.get(right, _BOTTOM).key == want:
                found, kind = self.read_of(left, cell, key, env, users, c), _FLIPPED[kind]
            else:
                return None
            if not found or family not in (None, kind):
                return None
            family, reads = kind, reads | found
        return ((family,), reads) if family is not None else None


def _key_of(value: Value, env) -> tuple:
    """Equal for two IR values that are equal within one event: the same SSA
    value, or the same structural key."""
    key = env.get(value, _BOTTOM).key
    return key if key is not None else ("ssa", id(value))


def _over(value: _Abs) -> bool:
    return value.strlen is None or value.strlen > KERNEL_STRING_MAX


# ------------------------------------------------------------ the verdict


class _Verdict:
    """Judges each shared cell over every body's accesses, then settles sides."""

    def __init__(self, analysis: _Analysis, bodies: list[_Body]):
        self.analysis = analysis
        self.bodies = [b for b in bodies if b.event_time]
        self.reasons = {id(b): self.place_reasons(b) + list(b.reasons) for b in self.bodies}

    def place_reasons(self, body: _Body) -> list[Reason]:
        target = body.target
        if isinstance(target, TimerInfo):
            if target.kind == "tick":
                return [Reason(f"{target.text} runs in user space, in stream time", target.func.span)]
            return []
        for spec in target.eventdef.split(","):
            if spec.strip().startswith("ftrace:"):
                return [Reason("ftrace:function (a BPF program cannot attach to the function tracer)",
                               target.eventdef_span)]
        return []

    def why(self, body: _Body, construct: str, span: Span) -> bool:
        reason = Reason(construct, span)
        mine = self.reasons[id(body)]
        if reason in mine:
            return False
        mine.append(reason)
        return True

    def placements(self) -> list[Placement]:
        cells = self.shared_cells()
        for cell, accesses in cells.items():
            self.judge(cell, accesses)
        self.settle(cells)
        out = []
        for body in sorted(self.bodies, key=lambda b: (b.func.span.line, b.func.span.col)):
            reasons = tuple(sorted(self.reasons[id(body)], key=lambda r: (r.span.line, r.span.col, r.construct)))
            out.append(Placement(body.name.removeprefix("trace "), USER if reasons else KERNEL, reasons, body.target))
        return out

    def shared_cells(self) -> dict[str, list[tuple[_Body, _Access]]]:
        """Cells written at event time, with every event-time access to them."""
        cells: dict[str, list[tuple[_Body, _Access]]] = {}
        for body in self.bodies:
            for access in body.accesses:
                cells.setdefault(access.cell, []).append((body, access))
        return {cell: accs for cell, accs in cells.items()
                if any(a.kind in ("write", "delete") for _b, a in accs)}

    def cell_uses(self) -> dict[str, CellUse]:
        cells: dict[str, list] = {}
        for body in self.bodies:
            for access in body.accesses:
                cells.setdefault(access.cell, []).append((body, access))
        return {cell: CellUse(cell, frozenset(a.family for _b, a in accs if a.kind == "write"),
                              self.thread_local(accs), any(a.kind in ("write", "delete") for _b, a in accs))
                for cell, accs in cells.items()}

    @staticmethod
    def thread_local(accesses) -> bool:
        return all(a.key == _TID and a.kind in ("read", "write") for _b, a in accesses) and all(
            not isinstance(b.target, TimerInfo) or b.target.kind == "profile" for b, _a in accesses)

    def judge(self, cell: str, accesses) -> None:
        if self.thread_local(accesses):
            return
        name = self.analysis.cell_name(cell)
        writers = sorted({b.name for b, a in accesses if a.kind in ("write", "delete")})
        writes = [a for _b, a in accesses if a.kind == "write"]
        for body, a in accesses:
            if a.kind == "read" and not a.consumed:
                self.why(body, f"reads `{name}`, which {_who(writers)}: the value read depends on "
                               "the order of events", a.span)
            elif a.kind == "len":
                self.why(body, f"len() of `{name}`, which {_who(writers)}: it depends on the order "
                               "of events", a.span)
            elif a.kind == "delete":
                self.why(body, f"delete() of `{name}` at event time", a.span)
            elif a.kind == "write" and a.family == ("=",):
                self.why(body, f"stores a computed value into `{name}`: the last writer wins", a.span)
            elif a.kind == "write":
                families = {w.family for w in writes if _may_alias(w.key, a.key)}
                if len(families) > 1:
                    shown = ", ".join(sorted(_family_text(f) for f in families))
                    self.why(body, f"`{name}` is updated in more than one way ({shown})", a.span)

    def settle(self, cells) -> None:
        """Kernel writers of a cell that user space reads or deletes while
        events run move to user space; so do all users of per-thread state
        when one of them is in user space."""
        changed = True
        while changed:
            changed = False
            for cell, accesses in cells.items():
                name = self.analysis.cell_name(cell)
                user_side = [(b, a) for b, a in accesses if self.reasons[id(b)]]
                if not user_side:
                    continue
                if self.thread_local(accesses):
                    other = user_side[0][0]
                    for body, a in accesses:
                        if not self.reasons[id(body)]:
                            changed |= self.why(body, f"`{name}` is per-thread state also used by "
                                                      f"{other.name}, which runs in user space", a.span)
                    continue
                users = [(b, a) for b, a in user_side if a.kind != "write" and not a.consumed]
                if not users:
                    continue
                user, where = users[0]
                for body, a in accesses:
                    if a.kind in ("write", "delete") and not self.reasons[id(body)]:
                        changed |= self.why(body, f"`{name}` is also used while events run by {user.name}, "
                                                  f"in user space ({where.span.location()})", a.span)


def _may_alias(a: Optional[tuple], b: Optional[tuple]) -> bool:
    """Whether two keys may name one cell: only two different constants cannot."""
    return not (a and b and a[0] == "const" and b[0] == "const" and a != b)


def _who(writers: list[str]) -> str:
    if len(writers) == 1:
        return f"{writers[0]} writes"
    return f"{writers[0]} and {len(writers) - 1} other{'s' if len(writers) > 2 else ''} write"


def _family_text(family: tuple) -> str:
    if family[0] == "const":
        aux = family[1]
        return "= nil (delete)" if aux is None else f"= {aux.decode('latin-1') if isinstance(aux, bytes) else aux}"
    if family[0] in ("max", "min"):
        return family[0]
    if family[0] in ("hist", "lhist", "stats"):
        return family[0] + "()"
    return family[0]
