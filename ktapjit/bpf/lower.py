"""The IR-to-eBPF lowering: one program per (kernel-placed probe, event),
as LLVM IR text for bpfel, and the maps the programs share (docs/bpf.md,
"Lowering").

lower_module drives it: a few rounds over every event, until the maps'
string slots settle, each program lowered by a _ProgramLowering, which
inlines the probe body and the functions it calls, block by block, op by
op (lower_ops.py). Values are lowered_value.Lowered.

What is not lowered yet raises NotLowered at the construct: the probe then
runs in user space (KernelPlan.not_lowered), with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ktapjit.bpf import layout
from ktapjit.bpf import syscall as sc
from ktapjit.bpf.attach import prog_type_for
from ktapjit.bpf.filter_code import filter_test
from ktapjit.bpf.kernel_plan import (FAULT_ARITH, FAULT_CONCAT, FAULT_NOT_AGG, FAULT_OTHER_BOUNDS, FAULT_OVERFLOW,
                                     FAULT_STRING_LONG, AuxMap, ErrorSite, KernelEvent, KernelPlan, KernelProgram,
                                     MapSpec, NotLowered, PAGE_SIZE)
from ktapjit.bpf.layout import TAG_BOOL, TAG_INT, TAG_NIL, TAG_STRING, KeyLayout, ValueLayout, pad8
from ktapjit.bpf.llvm_text import (GET_CURRENT_COMM, GET_CURRENT_PID_TGID, GET_FUNC_IP, GET_SMP_PROCESSOR_ID,
                                   KTIME_GET_NS, MAP_DELETE_ELEM, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM,
                                   PROBE_READ_KERNEL, PROBE_READ_USER,
                                   RINGBUF_OUTPUT, FunctionText, module_text)
from ktapjit.bpf.lower_memory import read_all
from ktapjit.bpf.lower_ops import HANDLERS, op_text
from ktapjit.bpf.lowered_value import NIL, FuncRef, Lowered, int_value
from ktapjit.bpf.placement import KERNEL, KERNEL_STRING_MAX, Analysis, Reason
from ktapjit.bpf.scope import SCOPE_ENTRIES, SCOPE_MAP
from ktapjit.diag import Span
from ktapjit.ir.func import Block, Func, Module, Value
from ktapjit.ir.ops import Op
from ktapjit.semantics.limits import Limits

SEQ_MAP = "ktj_seq"  # per-CPU u64: the sequence part of first-insert stamps
SCRATCH_MAP = "ktj_scratch"  # per-CPU: the strings `..` builds (off the 512-byte stack)
ZERO_MAP = "ktj_zero"  # one zeroed value as large as any map's: what an insert copies
FAULT_MAP = "ktj_faults"  # ring buffer of (site u32, kind u32, detail i64)
GATE_MAP = "ktj_gate"  # one u64, non-zero while the session's perf events are enabled (Run.gate_kernel)
FAULT_RING_BYTES = 64 * 1024
FAULT_RECORD = 16
E2BIG = 7  # an insert into a full map (max_entries = --max-table)
COMM_BYTES = 16  # TASK_COMM_LEN
DECIMAL_MAX = 20  # len("-9223372036854775808")
DECIMAL_BUFFER = 24  # a sign and 20 digits, right-aligned (the leading zeros are never copied)


# ------------------------------------------------------------ the whole plan


def lower_module(module: Module, analysis: Analysis, limits: Limits,
                 events: list[KernelEvent], keep_samples: bool = False) -> KernelPlan:
    """The KernelPlan for the probes `analysis` placed in the kernel, on
    `events` (KernelEvents of other probes are ignored).

    A tracepoint writes its perf sample only when its program returns
    non-zero: `keep_samples` makes every program that ran the body do so,
    for a run that also records the stream (--record, --engine compare).
    A hit outside the traced process tree (KernelEvent.pid set: the scope
    map, scope.py), or of KernelEvent.skip_pid, never writes one."""
    kernel = {id(p.target) for p in analysis.placements if p.where == KERNEL}
    state = _PlanState(module, analysis, limits, int(keep_samples))
    for _round in range(8):  # string slots and refusals settle in a few rounds
        before = (dict(state.slots), dict(state.phi_caps), dict(state.not_lowered))
        state.start_round()
        programs = []
        for index, event in enumerate(events):
            target = event.target(module)
            if id(target) not in kernel or target in state.not_lowered:
                continue
            name = f"{'p' if event.timer else 'k'}{event.probe}e{index}_{event.event}"[:15]
            try:
                programs.append(_ProgramLowering(state, event, name).lower())
            except NotLowered as exc:
                span = exc.span or target.func.span
                state.not_lowered[target] = Reason(f"{exc.construct} (not lowered yet)", span)
        state.spread_thread_state(programs)
        if (dict(state.slots), dict(state.phi_caps), dict(state.not_lowered)) == before:
            break
    programs = [p for p in programs if p.target not in state.not_lowered]
    texts = [KernelProgram(p.probe, p.event, p.name, prog_type_for(p.event.kind),
                           module_text([p.fn], sorted(p.maps_used))) for p in programs]
    used = set().union(*(p.cells_used for p in programs)) if programs else set()
    maps = [state.map_spec(slot) for slot in sorted(used)]
    largest = max([m.value.size for m in maps] + [8])
    scratch = max([p.scratch_size for p in programs] + [0])
    aux = [AuxMap(SEQ_MAP, sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
           AuxMap(GATE_MAP, sc.BPF_MAP_TYPE_ARRAY, 4, 8, 1),
           AuxMap(ZERO_MAP, sc.BPF_MAP_TYPE_ARRAY, 4, largest, 1, sc.BPF_F_RDONLY_PROG),
           AuxMap(FAULT_MAP, sc.BPF_MAP_TYPE_RINGBUF, 0, 0, FAULT_RING_BYTES)] if programs else []
    if scratch:
        aux.append(AuxMap(SCRATCH_MAP, sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, scratch, 1))
    if any(SCOPE_MAP in p.maps_used for p in programs):
        aux.append(AuxMap(SCOPE_MAP, sc.BPF_MAP_TYPE_HASH, 4, 4, SCOPE_ENTRIES))
    return KernelPlan(texts, maps, aux, dict(state.sites), dict(state.not_lowered))


class _PlanState:
    """What the programs of one plan share: the maps' string slots, the
    error sites, and the probes refused so far."""

    def __init__(self, module: Module, analysis: Analysis, limits: Limits, sample_return: int):
        self.module = module
        self.sample_return = sample_return  # what a program that ran the body returns
        self.analysis = analysis
        self.limits = limits
        self.slots: dict[tuple, int] = {}  # (slot, "key"|"value") -> string bytes
        self.phi_caps: dict[tuple, int] = {}  # (program, instance, value id) -> string bytes
        self.not_lowered: dict = {}  # ProbeInfo | TimerInfo -> Reason
        self.sites: dict[int, ErrorSite] = {}

    def start_round(self) -> None:
        self.sites = {}

    def site(self, span: Optional[Span], kind: int, limit: int = 0, text: str = "") -> int:
        site = len(self.sites) + 1
        self.sites[site] = ErrorSite(site, span, kind, limit, text)
        return site

    def need(self, slot: int, part: str, cap: int) -> int:
        """The string slot of a map's keys or values, grown to hold `cap`."""
        key = (slot, part)
        self.slots[key] = max(self.slots.get(key, 0), cap)
        return self.slots[key]

    def cell(self, slot: int, table: bool) -> str:
        return f"{'t' if table else 'g'}{slot}"

    def family(self, slot: int, span: Optional[Span]) -> tuple:
        table = slot in self.analysis.table_globals
        name = self.module.global_names[slot]
        use = self.analysis.cells.get(self.cell(slot, table))
        if use is None or not use.written:
            return ("readonly",)
        if use.thread_local:
            return ("thread",)
        families = set(use.families)
        if families and all(f[0] in _AGGREGATIONS for f in families):
            return ("agg", max(_buckets_of(f) for f in families))
        if len(families) != 1:
            raise NotLowered(f"`{name}` is updated in more than one way in one map", span)
        [family] = families
        if family[0] in ("+=", "max", "min") or (family[0] == "const" and family[1] is not None):
            return family
        raise NotLowered(f"{_family_name(family)} updates of `{name}`", span)

    def map_name(self, slot: int) -> str:
        return f"m{slot}_{self.module.global_names[slot]}"[:15]

    def map_spec(self, slot: int) -> MapSpec:
        table = slot in self.analysis.table_globals
        family = self.family(slot, None)
        percpu = family[0] in ("+=", "max", "min", "const", "agg")
        if table:
            map_type = sc.BPF_MAP_TYPE_PERCPU_HASH if percpu else sc.BPF_MAP_TYPE_HASH
            entries = self.limits.max_table
        else:
            map_type = sc.BPF_MAP_TYPE_PERCPU_ARRAY if percpu else sc.BPF_MAP_TYPE_ARRAY
            entries = 1
        return MapSpec(self.map_name(slot), self.module.global_names[slot], slot, not table, family, map_type,
                       KeyLayout(self.slots.get((slot, "key"), 0)), self.value_layout(slot, family), entries)

    def value_layout(self, slot: int, family: tuple) -> ValueLayout:
        if family[0] == "agg":
            return ValueLayout(0, True, family[1])
        return ValueLayout(self.value_slot(slot))

    def value_slot(self, slot: int) -> int:
        """The string slot of a map's values: the longest string kernel
        code stores, or that the top level may leave there (the analysis'
        bound; the placement refused unbounded ones)."""
        table = slot in self.analysis.table_globals
        bound = self.analysis.string_bounds.get(self.cell(slot, table)) or 0
        return max(self.slots.get((slot, "value"), 0), min(bound, KERNEL_STRING_MAX))

    def spread_thread_state(self, programs: list["_ProgramLowering"]) -> None:
        """Per-thread state runs on one side: a refused probe takes the
        others that share such a table with it."""
        refused_cells = set()
        for target in self.not_lowered:
            refused_cells |= self._cells_of(target.func)
        for program in programs:
            shared = {c for c in program.cells_used if self.family(c, None) == ("thread",)} & refused_cells
            if shared and program.target not in self.not_lowered:
                slot = min(shared)
                self.not_lowered[program.target] = Reason(
                    f"`{self.module.global_names[slot]}` is per-thread state also used by a probe that is "
                    "not lowered yet", program.target.func.span)

    def _cells_of(self, func: Func) -> set[int]:
        out = set()
        for value in _reachable_values(func, self.analysis):
            if value.op is Op.GlobalGet and value.aux in self.analysis.table_globals:
                out.add(value.aux)
        return out


def _reachable_values(func: Func, analysis: Analysis, seen=None):
    seen = seen if seen is not None else set()
    if func in seen:
        return
    seen.add(func)
    for value in func.values():
        yield value
        if value.op is Op.GlobalGet and value.aux in analysis.func_globals:
            yield from _reachable_values(analysis.func_globals[value.aux], analysis, seen)


_AGGREGATIONS = ("hist", "lhist", "stats")


def _buckets_of(family: tuple) -> int:
    if family[0] == "hist":
        return layout.HIST_BUCKETS
    if family[0] == "lhist":
        return layout.lhist_buckets(*family[1:])
    return 0


def _family_name(family: tuple) -> str:
    if family[0] == "const":
        return "`= nil` (delete)"
    return {"=": "computed"}.get(family[0], family[0] if not family[0].isalpha() else family[0] + "()")


# ------------------------------------------------------------ one program


@dataclass
class _Instance:
    """One inlined copy of an IR function: its values, its blocks' labels."""

    func: Func
    prefix: str
    args: list
    values: dict = field(default_factory=dict)
    exits: dict = field(default_factory=dict)  # IR block -> the LLVM label it ends in
    phis: list = field(default_factory=list)  # (phi Value, its three result names, cap), filled at the end
    returns: list = field(default_factory=list)  # (label, Lowered) of each return
    tick: str = ""  # the back-edge counter of this call


class _ProgramLowering:
    def __init__(self, state: _PlanState, event: KernelEvent, name: str):
        self.state = state
        self.event = event
        self.probe = event.probe
        self.target = event.target(state.module)
        self.name = name
        self.fn = FunctionText(name)
        self.maps_used: set[str] = set()
        self.cells_used: set[int] = set()
        self.buffers: dict[tuple, str] = {}
        self.scratch_size = 0  # bytes of the per-CPU scratch value this program uses
        self.instances = 0
        self.depth = 0
        self.memory: dict[str, Lowered] = {}  # EventMemory aux -> its value, read before the body

    # -- driving

    def lower(self) -> "_ProgramLowering":
        """The program: skip hits while the gate is off, other processes'
        hits and filtered-out events (no sample: the interpreter never sees
        them), then the body."""
        probe = self.target
        fn = self.fn
        self.use_map(SEQ_MAP)
        self.use_map(FAULT_MAP)
        fn.lines.append(";scratch")  # the scratch lookup goes here, if a `..` needs it
        self.skip_unless_gate_on()
        if self.event.pid is not None:  # the traced process tree (scope.py keeps the map)
            pid_tgid = fn.helper(GET_CURRENT_PID_TGID, "i64", "")
            key = self.buffer(("scope",), 4)
            fn.store("i32", fn.op(f"trunc i64 {fn.op(f'lshr i64 {pid_tgid}, 32')} to i32"), key)
            found = self.lookup(self.use_map(SCOPE_MAP), key)
            self.skip_unless(fn.op(f"icmp ne ptr {found}, null"))
        elif self.event.skip_pid is not None:
            tgid = fn.op(f"lshr i64 {fn.helper(GET_CURRENT_PID_TGID, 'i64', '')}, 32")
            self.skip_unless(fn.op(f"icmp ne i64 {tgid}, {self.event.skip_pid}"))
        if getattr(probe, "filter", None) is not None:
            self.skip_unless(filter_test(fn, probe.filter, probe.filter_span, self.event.fields))
        self.memory = read_all(self, _reachable_values(probe.func, self.state.analysis))
        self.inline(probe.func, [])
        self.fill_scratch()
        return self

    def skip_unless_gate_on(self) -> None:
        """A program runs from its attach to the close of its perf event,
        enabled or not; the gate (GATE_MAP) makes it run only while perf
        samples, so that it sees the events the stream holds."""
        fn = self.fn
        zero = self.buffer(("zero",), 8)
        fn.store("i32", "0", zero)
        gate = self.lookup(self.use_map(GATE_MAP), zero)
        self.skip_unless(fn.op(f"icmp ne ptr {gate}, null"))
        self.skip_unless(fn.op(f"icmp ne i64 {fn.load('i64', gate)}, 0"))

    def skip_unless(self, passes: str) -> None:
        fn = self.fn
        body, skip = fn.new_label("body"), fn.new_label("skip")
        fn.cond_br(passes, body, skip)
        fn.start(skip)
        fn.emit("ret i64 0")
        fn.start(body)

    def fill_scratch(self) -> None:
        at = self.fn.lines.index(";scratch")
        if not self.scratch_size:
            del self.fn.lines[at]
            return
        zero = self.buffer(("zero",), 8)
        self.fn.lines[at:at + 1] = [
            f"  store i32 0, ptr {zero}",
            f"  %scratch = call ptr inttoptr (i64 {MAP_LOOKUP_ELEM} to ptr)(ptr {self.use_map(SCRATCH_MAP)}, "
            f"ptr {zero})",
            "  %noscratch = icmp eq ptr %scratch, null",
            "  br i1 %noscratch, label %scratchless, label %scratched",
            "scratchless:",
            f"  ret i64 {self.state.sample_return}",
            "scratched:"]

    def scratch(self, size: int) -> str:
        """`size` bytes of this CPU's scratch value, for this op alone."""
        at = self.scratch_size
        self.scratch_size += pad8(size)
        return self.fn.gep("%scratch", at) if at else self.fn.op("getelementptr i8, ptr %scratch, i64 0", "p")

    def inline(self, func: Func, args: list) -> _Instance:
        """Lower `func` here; its returns jump to a fresh label, which is
        where lowering goes on (the caller reads `returns`)."""
        self.instances += 1
        instance = _Instance(func, f"i{self.instances}", args)
        fn = self.fn
        tick = fn.alloca(8)
        fn.store("i64", "0", tick)
        instance.tick = tick
        fn.br(self.label(instance, func.entry))
        for block in func.blocks:
            fn.start(self.label(instance, block))
            self.lower_block(instance, block)
        self.fill_phis(instance)
        return instance

    def label(self, instance: _Instance, block: Block) -> str:
        return f"{instance.prefix}b{block.id}"

    def lower_block(self, instance: _Instance, block: Block) -> None:
        for value in block.instrs:
            instance.values[value] = self.lower_value(instance, value)
        self.terminate(instance, block)

    def terminate(self, instance: _Instance, block: Block) -> None:
        fn = self.fn
        kind = block.kind
        if kind == "TailCall":
            callee, *args = [instance.values[c] for c in block.controls]
            result = self.call(callee, args, block.span)
            self.finish_return(instance, block, result)
            return
        if kind == "Return":
            result = instance.values[block.controls[0]] if block.controls else NIL
            self.finish_return(instance, block, result)
            return
        instance.exits[block] = fn.label
        if kind == "Plain":
            fn.br(self.label(instance, block.succs[0]))
        elif kind == "If":
            cond = self.truth(instance.values[block.controls[0]])
            fn.cond_br(cond, self.label(instance, block.succs[0]), self.label(instance, block.succs[1]))
        else:
            raise NotLowered("exit()", block.span)

    def finish_return(self, instance: _Instance, block: Block, result) -> None:
        fn = self.fn
        instance.exits[block] = fn.label
        if instance.prefix == "i1":
            fn.emit(f"ret i64 {self.state.sample_return}")
            return
        if not isinstance(result, Lowered):
            raise NotLowered("a function returning a table or a function", block.span)
        instance.returns.append((fn.label, result))
        fn.br(f"{instance.prefix}ret")

    def fill_phis(self, instance: _Instance) -> None:
        for value, names, cap in instance.phis:
            incoming = []
            for pred, arg in zip(value.block.preds, value.args):
                lowered = instance.values.get(arg)
                if not isinstance(lowered, Lowered):
                    raise NotLowered("a table or a function chosen at run time", value.span)
                incoming.append((instance.exits[pred], lowered))
            key = (self.name, instance.prefix, value.id)
            needed = max((lv.cap for _l, lv in incoming), default=0)
            if needed > self.state.phi_caps.get(key, 0):
                self.state.phi_caps[key] = needed
            tag, bits, sptr = names
            for i, (ty, part) in enumerate((("i64", "tag"), ("i64", "bits"), ("ptr", "sptr"))):
                pairs = ", ".join(f"[ {getattr(lv, part)}, %{label} ]" for label, lv in incoming)
                line_index = self.fn.lines.index(f"  ;phi {names[i]}")
                self.fn.lines[line_index] = f"  {names[i]} = phi {ty} {pairs}"

    # -- values

    def lower_value(self, instance: _Instance, v: Value):
        handler = HANDLERS.get(v.op)
        if handler is None:
            raise NotLowered(op_text(v.op), v.span or self.where(v))
        args = [instance.values.get(a) for a in v.args] if v.op is not Op.Phi else []
        return handler(self, instance, v, args)

    def where(self, v: Value) -> Optional[Span]:
        for before in reversed(v.block.instrs[:v.block.instrs.index(v)]):
            if before.span is not None:
                return before.span
        return v.block.func.span

    def int_operand(self, lv, v: Value, site_kind: int = FAULT_ARITH, text: str = "") -> str:
        """`lv`'s integer; a fault with its type when it is not one."""
        if not isinstance(lv, Lowered):
            raise NotLowered("arithmetic on a table or a function", v.span)
        if lv.tag == str(TAG_INT):
            return lv.bits
        fn = self.fn
        bad = fn.op(f"icmp ne i64 {lv.tag}, {TAG_INT}")
        self.fault_if(bad, self.state.site(v.span, site_kind, text=text), lv.tag)
        return lv.bits

    def fault_if(self, cond: str, site: int, detail: str) -> None:
        """When `cond` holds: report (site, detail) on the fault ring and end
        the program (the run stops tracing, as the interpreter stops)."""
        fn = self.fn
        bad, good = fn.new_label("fault"), fn.new_label("ok")
        fn.cond_br(cond, bad, good)
        fn.start(bad)
        record = self.buffer(("fault",), FAULT_RECORD)
        fn.store("i32", str(site), record)
        kind = self.state.sites[site].kind
        fn.store("i32", str(kind), fn.gep(record, 4))
        fn.store("i64", detail, fn.gep(record, 8))
        self.use_map(FAULT_MAP)
        fn.helper_void(RINGBUF_OUTPUT, f"ptr @{FAULT_MAP}, ptr {record}, i64 {FAULT_RECORD}, i64 0")
        fn.emit(f"ret i64 {self.state.sample_return}")
        fn.start(good)

    def truth(self, lv) -> str:
        """i1: not nil and not false."""
        if not isinstance(lv, Lowered):
            return "true"
        fn = self.fn
        is_nil = fn.op(f"icmp eq i64 {lv.tag}, {TAG_NIL}")
        is_bool = fn.op(f"icmp eq i64 {lv.tag}, {TAG_BOOL}")
        zero = fn.op(f"icmp eq i64 {lv.bits}, 0")
        false = fn.op(f"and i1 {is_bool}, {zero}")
        falsy = fn.op(f"or i1 {is_nil}, {false}")
        return fn.op(f"xor i1 {falsy}, true")

    def boolean(self, cond: str) -> Lowered:
        return Lowered(str(TAG_BOOL), self.fn.op(f"zext i1 {cond} to i64"))

    def string_const(self, text: bytes) -> Lowered:
        fn = self.fn
        cap = max(8, pad8(len(text)))
        buf = fn.alloca(cap)
        padded = text.ljust(cap, b"\0")
        for at in range(0, cap, 8):
            word = int.from_bytes(padded[at:at + 8], "little", signed=True)
            fn.store("i64", str(word), fn.gep(buf, at))
        return Lowered(str(TAG_STRING), str(len(text)), buf, cap)

    # -- maps

    def buffer(self, purpose: tuple, size: int) -> str:
        """A stack buffer shared by every use for one purpose in this
        program: the BPF stack is 512 bytes. Sizes are final in the last
        round of lower_module, where string slots no longer grow."""
        if purpose not in self.buffers:
            self.buffers[purpose] = self.fn.alloca(size)
        return self.buffers[purpose]

    def use_map(self, name: str) -> str:
        self.maps_used.add(name)
        return f"@{name}"

    def map_of(self, slot: int, span: Optional[Span]) -> tuple[MapSpec, str]:
        self.state.family(slot, span)  # refuses what is not lowered yet
        self.cells_used.add(slot)
        spec = self.state.map_spec(slot)
        return spec, self.use_map(spec.name)

    def key_of(self, slot: int, spec: MapSpec, key: Optional[Lowered]) -> str:
        """A stack buffer holding the map key for `key` (the scalar's 0)."""
        fn = self.fn
        if spec.scalar:
            buf = self.buffer(("key", slot), 8)
            fn.store("i32", "0", buf)
            return buf
        size = KeyLayout(self.state.need(slot, "key", key.cap)).size
        buf = self.buffer(("key", slot), size)  # one per map: each access fills it whole
        fn.memset(buf, size)
        fn.store("i8", fn.op(f"trunc i64 {key.tag} to i8"), buf)
        if key.cap:
            is_string = fn.op(f"icmp eq i64 {key.tag}, {TAG_STRING}")
            length = fn.op(f"select i1 {is_string}, i64 {key.bits}, i64 0")
            fn.store("i32", fn.op(f"trunc i64 {length} to i32"), fn.gep(buf, 4))
            copy, scalar, done = fn.new_label("kstr"), fn.new_label("kint"), fn.new_label("kdone")
            fn.cond_br(is_string, copy, scalar)
            fn.start(copy)
            self.copy_text(fn.gep(buf, layout.KEY_HEADER), key, key.cap)
            fn.br(done)
            fn.start(scalar)
            fn.store("i64", key.bits, fn.gep(buf, layout.KEY_HEADER))
            fn.br(done)
            fn.start(done)
        else:
            fn.store("i64", key.bits, fn.gep(buf, layout.KEY_HEADER))
        return buf

    def lookup(self, map_ref: str, key_buf: str) -> str:
        return self.fn.helper(MAP_LOOKUP_ELEM, "ptr", f"ptr {map_ref}, ptr {key_buf}")

    def read_slot(self, spec: MapSpec, ptr: str) -> Lowered:
        """The value a present slot holds (a nil tag in a per-CPU slot this
        CPU never stored into)."""
        fn = self.fn
        tag = fn.load("i64", ptr)
        bits = fn.load("i64", fn.gep(ptr, layout.VALUE_BITS))
        cap = self.state.value_slot(spec.slot)
        if cap:
            return Lowered(tag, bits, fn.gep(ptr, layout.VALUE_STRING), cap)
        return Lowered(tag, bits)

    def read_cell(self, slot: int, key: Optional[Lowered], span: Optional[Span]) -> Lowered:
        fn = self.fn
        spec, ref = self.map_of(slot, span)
        ptr = self.lookup(ref, self.key_of(slot, spec, key))
        found = fn.op(f"icmp ne ptr {ptr}, null")
        here, absent, join = fn.new_label("got"), fn.new_label("absent"), fn.new_label("read")
        fn.cond_br(found, here, absent)
        fn.start(here)
        value = self.read_slot(spec, ptr)
        fn.br(join)
        fn.start(absent)
        fn.br(join)
        fn.start(join)
        # read_slot emits no branches: the block that loads is still `here`
        tag = fn.op(f"phi i64 [ {value.tag}, %{here} ], [ {TAG_NIL}, %{absent} ]")
        bits = fn.op(f"phi i64 [ {value.bits}, %{here} ], [ 0, %{absent} ]")
        sptr = value.sptr
        if value.cap:
            sptr = fn.op(f"phi ptr [ {value.sptr}, %{here} ], [ null, %{absent} ]")
        return Lowered(tag, bits, sptr, value.cap)

    def write_cell(self, slot: int, key: Optional[Lowered], value: Lowered, v: Value) -> None:
        fn = self.fn
        spec, ref = self.map_of(slot, v.span)
        key_buf = self.key_of(slot, spec, key)
        if value.cap:
            self.state.need(slot, "value", value.cap)
        if spec.family == ("thread",) and value.tag == str(TAG_NIL):
            fn.helper_void(MAP_DELETE_ELEM, f"ptr {ref}, ptr {key_buf}")
            return
        ptr = self.lookup(ref, key_buf)
        if not spec.scalar:
            ptr = self.insert_if_absent(spec, ref, key_buf, ptr, v)
        else:
            missing = fn.op(f"icmp eq ptr {ptr}, null")
            self.end_if(missing)
        self.store_slot(spec, ptr, value)
        if not spec.scalar:
            self.stamp_if_new(ptr)

    def end_if(self, cond: str) -> None:
        """Ends the program quietly when `cond` holds (a lookup the verifier
        needs checked, which cannot fail: array slot 0, a key just inserted)."""
        fn = self.fn
        stop, go = fn.new_label("stop"), fn.new_label("go")
        fn.cond_br(cond, stop, go)
        fn.start(stop)
        fn.emit(f"ret i64 {self.state.sample_return}")
        fn.start(go)

    def insert_if_absent(self, spec: MapSpec, ref: str, key_buf: str, ptr: str, v: Value) -> str:
        fn = self.fn
        missing = fn.op(f"icmp eq ptr {ptr}, null")
        insert, have = fn.new_label("insert"), fn.new_label("have")
        before = fn.label
        fn.cond_br(missing, insert, have)
        fn.start(insert)
        zero_key = self.buffer(("zero",), 8)
        fn.store("i32", "0", zero_key)
        init = self.lookup(self.use_map(ZERO_MAP), zero_key)
        self.end_if(fn.op(f"icmp eq ptr {init}, null"))
        rc = fn.helper(MAP_UPDATE_ELEM, "i64", f"ptr {ref}, ptr {key_buf}, ptr {init}, i64 {sc.BPF_NOEXIST}")
        full = fn.op(f"icmp eq i64 {rc}, -{E2BIG}")
        site = self.state.site(v.span, FAULT_OVERFLOW, self.state.limits.max_table)
        self.fault_if(full, site, "0")
        again = self.lookup(ref, key_buf)
        self.end_if(fn.op(f"icmp eq ptr {again}, null"))
        inserted = fn.label
        fn.br(have)
        fn.start(have)
        return fn.op(f"phi ptr [ {ptr}, %{before} ], [ {again}, %{inserted} ]", "p")

    def store_slot(self, spec: MapSpec, ptr: str, value: Lowered) -> None:
        fn = self.fn
        fn.store("i64", value.tag, ptr)
        fn.store("i64", value.bits, fn.gep(ptr, layout.VALUE_BITS))
        slot_bytes = self.state.value_slot(spec.slot)
        if not value.cap or not slot_bytes:
            return
        is_string = fn.op(f"icmp eq i64 {value.tag}, {TAG_STRING}")
        copy, done = fn.new_label("vstr"), fn.new_label("vdone")
        fn.cond_br(is_string, copy, done)
        fn.start(copy)
        target = fn.gep(ptr, layout.VALUE_STRING)
        fn.memset(target, pad8(slot_bytes))
        self.copy_text(target, value, min(value.cap, slot_bytes))
        fn.br(done)
        fn.start(done)

    def stamp_if_new(self, ptr: str, at: int = layout.VALUE_TIME) -> None:
        """The first store into a slot stamps it: event time, CPU, and this
        CPU's next sequence number (docs/bpf.md, "Insertion order"). The
        stamp is `time u64 | cpu u32 | seq u32` at `at`."""
        fn = self.fn
        ptr = fn.gep(ptr, at - layout.VALUE_TIME)
        seq_at = fn.gep(ptr, layout.VALUE_SEQ)
        fresh = fn.op(f"icmp eq i32 {fn.load('i32', seq_at)}, 0")
        stamp, done = fn.new_label("stamp"), fn.new_label("stamped")
        fn.cond_br(fresh, stamp, done)
        fn.start(stamp)
        zero = self.buffer(("zero",), 8)
        fn.store("i32", "0", zero)
        counter = self.lookup(self.use_map(SEQ_MAP), zero)
        self.end_if(fn.op(f"icmp eq ptr {counter}, null"))
        seq = fn.op(f"add i64 {fn.load('i64', counter)}, 1")
        fn.store("i64", seq, counter)
        fn.store("i64", fn.helper(KTIME_GET_NS, "i64", ""), fn.gep(ptr, layout.VALUE_TIME))
        cpu = fn.helper(GET_SMP_PROCESSOR_ID, "i64", "")
        fn.store("i32", fn.op(f"trunc i64 {cpu} to i32"), fn.gep(ptr, layout.VALUE_CPU))
        fn.store("i32", fn.op(f"trunc i64 {seq} to i32"), seq_at)
        fn.br(done)
        fn.start(done)

    # -- aggregations (layout.py: the head, four fields, the buckets)

    def claim_aggregate(self, ptr: str, name: str, bounds: tuple, v: Value) -> None:
        """A fresh slot becomes this kind of aggregation; an existing one
        must be one, with the same lhist bounds (the interpreter's checks)."""
        fn = self.fn
        tag = fn.load("i64", ptr)
        want = layout.AGG_TAGS[name.encode()]
        fresh, held, done = fn.new_label("aggnew"), fn.new_label("agghas"), fn.new_label("aggok")
        fn.cond_br(fn.op(f"icmp eq i64 {tag}, {TAG_NIL}"), fresh, held)
        fn.start(fresh)
        fn.store("i64", str(want), ptr)
        for i, bound in enumerate(bounds):
            fn.store("i64", str(bound), fn.gep(ptr, layout.AGG_FIELDS + 8 * (i + 1)))
        fn.br(done)
        fn.start(held)
        other = fn.op(f"icmp ne i64 {tag}, {want}")
        self.fault_if(other, self.state.site(v.span, FAULT_NOT_AGG, text=name), "0")
        if bounds:
            differ = "false"
            for i, bound in enumerate(bounds):
                field_value = fn.load("i64", fn.gep(ptr, layout.AGG_FIELDS + 8 * (i + 1)))
                differ = fn.op(f"or i1 {differ}, {fn.op(f'icmp ne i64 {field_value}, {bound}')}")
            self.fault_if(differ, self.state.site(v.span, FAULT_OTHER_BOUNDS), "0")
        fn.br(done)
        fn.start(done)

    def update_stats(self, ptr: str, x: str) -> None:
        fn = self.fn
        at = [fn.gep(ptr, layout.AGG_FIELDS + 8 * i) for i in range(4)]
        count, total, least, most = (fn.load("i64", p) for p in at)
        first = fn.op(f"icmp eq i64 {count}, 0")
        fn.store("i64", fn.op(f"add i64 {count}, 1"), at[0])
        fn.store("i64", fn.op(f"add i64 {total}, {x}"), at[1])
        lower = fn.op(f"or i1 {first}, {fn.op(f'icmp slt i64 {x}, {least}')}")
        higher = fn.op(f"or i1 {first}, {fn.op(f'icmp sgt i64 {x}, {most}')}")
        fn.store("i64", fn.op(f"select i1 {lower}, i64 {x}, i64 {least}"), at[2])
        fn.store("i64", fn.op(f"select i1 {higher}, i64 {x}, i64 {most}"), at[3])

    def count_in_bucket(self, ptr: str, x: str, bounds: tuple, buckets: int) -> None:
        fn = self.fn
        sum_at = fn.gep(ptr, layout.AGG_FIELDS)
        fn.store("i64", fn.op(f"add i64 {fn.load('i64', sum_at)}, {x}"), sum_at)
        index = self.lhist_index(x, *bounds) if bounds else self.hist_index(x)
        index = self.clamped(index, buckets - 1)
        offset = fn.op(f"mul i64 {index}, {layout.BUCKET}")
        bucket = fn.op(f"getelementptr i8, ptr {fn.gep(ptr, layout.AGG_BUCKETS)}, i64 {offset}", "p")
        fn.store("i64", fn.op(f"add i64 {fn.load('i64', bucket)}, 1"), bucket)
        self.stamp_if_new(bucket, 8)

    def hist_index(self, x: str) -> str:
        """0 for negatives, 1 for 0, else 2 + floor(log2 x)."""
        fn = self.fn
        rest, log = x, "0"
        for shift in (32, 16, 8, 4, 2, 1):
            big = fn.op(f"icmp uge i64 {rest}, {1 << shift}")
            rest = fn.op(f"select i1 {big}, i64 {fn.op(f'lshr i64 {rest}, {shift}')}, i64 {rest}")
            log = fn.op(f"select i1 {big}, i64 {fn.op(f'add i64 {log}, {shift}')}, i64 {log}")
        positive = fn.op(f"add i64 {log}, 2")
        at_zero = fn.op(f"select i1 {fn.op(f'icmp eq i64 {x}, 0')}, i64 1, i64 {positive}")
        return fn.op(f"select i1 {fn.op(f'icmp slt i64 {x}, 0')}, i64 0, i64 {at_zero}")

    def lhist_index(self, x: str, lo: int, hi: int, step: int) -> str:
        """0 below min, the last at max and above, else 1 + (x - min) / step."""
        fn = self.fn
        offset = fn.op(f"sub i64 {x}, {lo}")
        inside = fn.op(f"add i64 {fn.op(f'udiv i64 {offset}, {step}')}, 1")
        above = fn.op(f"select i1 {fn.op(f'icmp sge i64 {x}, {hi}')}, i64 {layout.lhist_buckets(lo, hi, step) - 1}, "
                      f"i64 {inside}")
        return fn.op(f"select i1 {fn.op(f'icmp slt i64 {x}, {lo}')}, i64 0, i64 {above}")

    def clamped(self, index: str, most: int) -> str:
        """`index`, capped at `most` where the verifier sees it: the value
        goes through a volatile stack slot, so the optimiser cannot drop
        the cap as redundant, and the verifier (which cannot follow a
        division) learns the bound from the comparison."""
        fn = self.fn
        slot = self.buffer(("index",), 8)
        fn.emit(f"store volatile i64 {index}, ptr {slot}")
        opaque = fn.op(f"load volatile i64, ptr {slot}")
        over = fn.op(f"icmp ugt i64 {opaque}, {most}")
        return fn.op(f"select i1 {over}, i64 {most}, i64 {opaque}")

    # -- strings
    #
    # A string's buffer holds at least its length in bytes, and maybe no
    # more: a phi may choose between buffers of different sizes. So text is
    # copied by its length (bpf_probe_read_kernel: the verifier sees the
    # length capped by the target's room), never by the capacity.

    def copy_text(self, target: str, text: Lowered, room: int) -> None:
        """The bytes of string `text` into `target` (zeroed, `room` bytes)."""
        size = self.clamped(text.bits, room)
        self.fn.helper_void(PROBE_READ_KERNEL, f"ptr {target}, i64 {size}, ptr {text.sptr}")

    def padded(self, text: Lowered, cap: int) -> str:
        """A scratch copy of string `text`, zero-padded to `cap` bytes."""
        out = self.scratch(cap)
        self.fn.memset(out, pad8(cap))
        self.copy_text(out, text, cap)
        return out

    def concat(self, x: Lowered, y: Lowered, v: Value) -> Lowered:
        """`x .. y` in a scratch buffer: each part's text (a string's bytes,
        an integer's decimal), copied with bpf_probe_read_kernel, whose
        lengths the verifier sees bounded by the parts' capacities."""
        fn = self.fn
        left = self.text_part(x, v)
        right = self.text_part(y, v)
        total = fn.op(f"add i64 {left[1]}, {right[1]}")
        too_long = fn.op(f"icmp sgt i64 {total}, {self.state.limits.max_string}")
        self.fault_if(too_long, self.state.site(v.span, FAULT_STRING_LONG), "0")
        cap = pad8(left[2] + right[2])
        if cap > KERNEL_STRING_MAX + 8:
            raise NotLowered(f"`..` of up to {cap} bytes", v.span)
        out = self.scratch(cap)
        fn.memset(out, cap)
        at = "0"
        for ptr, length, most in (left, right):
            size = self.clamped(length, most)
            target = fn.op(f"getelementptr i8, ptr {out}, i64 {at}", "p")
            fn.helper_void(PROBE_READ_KERNEL, f"ptr {target}, i64 {size}, ptr {ptr}")
            at = size
        return Lowered(str(TAG_STRING), total, out, cap)

    def text_part(self, part: Lowered, v: Value) -> tuple[str, str, int]:
        """(pointer, length, capacity) of the text `..` makes of `part`."""
        fn = self.fn
        known = part.tag if part.tag.lstrip("-").isdigit() else None  # a tag fixed at compile time
        may_string = part.cap > 0 and known in (None, str(TAG_STRING))
        may_int = known in (None, str(TAG_INT)) or not may_string
        if known not in (str(TAG_INT), str(TAG_STRING)):
            is_int = fn.op(f"icmp eq i64 {part.tag}, {TAG_INT}")
            is_string = fn.op(f"icmp eq i64 {part.tag}, {TAG_STRING}")
            bad = fn.op(f"xor i1 {fn.op(f'or i1 {is_int}, {is_string}')}, true")
            self.fault_if(bad, self.state.site(v.span, FAULT_CONCAT), part.tag)
        if not may_int:
            return part.sptr, part.bits, part.cap
        digits, length = self.decimal(part.bits)
        if not may_string:
            return digits, length, DECIMAL_MAX
        is_string = fn.op(f"icmp eq i64 {part.tag}, {TAG_STRING}")
        ptr = fn.op(f"select i1 {is_string}, ptr {part.sptr}, ptr {digits}", "p")
        length = fn.op(f"select i1 {is_string}, i64 {part.bits}, i64 {length}")
        return ptr, length, max(part.cap, DECIMAL_MAX)

    def decimal(self, x: str) -> tuple[str, str]:
        """An integer's decimal text, right-aligned in a scratch buffer:
        (where it starts, its length)."""
        fn = self.fn
        buf = self.scratch(DECIMAL_BUFFER)
        negative = fn.op(f"icmp slt i64 {x}, 0")
        rest = fn.op(f"select i1 {negative}, i64 {fn.op(f'sub i64 0, {x}')}, i64 {x}")  # |INT64_MIN| as unsigned
        digits = "1"
        for power in range(1, 20):
            more = fn.op(f"icmp uge i64 {rest}, {10 ** power}")
            digits = fn.op(f"add i64 {digits}, {fn.op(f'zext i1 {more} to i64')}")
        for position in range(DECIMAL_BUFFER - 1, DECIMAL_BUFFER - 21, -1):
            digit = fn.op(f"urem i64 {rest}, 10")
            char = fn.op(f"trunc i64 {fn.op(f'add i64 {digit}, 48')} to i8")
            fn.store("i8", char, fn.gep(buf, position))
            rest = fn.op(f"udiv i64 {rest}, 10")
        sign = fn.op(f"zext i1 {negative} to i64")
        length = fn.op(f"add i64 {digits}, {sign}")
        start = fn.op(f"sub i64 {DECIMAL_BUFFER}, {length}")
        minus_at = fn.op(f"getelementptr i8, ptr {buf}, i64 {fn.op(f'sub i64 {DECIMAL_BUFFER - 1}, {digits}')}", "p")
        # just before the digits: '-', or a '0' no copy reaches
        fn.store("i8", fn.op(f"select i1 {negative}, i8 45, i8 48"), minus_at)
        return fn.op(f"getelementptr i8, ptr {buf}, i64 {start}", "p"), length

    # -- calls

    def call(self, callee, args: list, span: Optional[Span]):
        if not isinstance(callee, FuncRef):
            raise NotLowered("call of a function value", span)
        fn = self.fn
        instance = self.inline(callee.func, args)
        fn.start(f"{instance.prefix}ret")
        results = instance.returns
        if not results:
            return NIL
        cap = max(r.cap for _l, r in results)
        tag = fn.op("phi i64 " + ", ".join(f"[ {r.tag}, %{lab} ]" for lab, r in results))
        bits = fn.op("phi i64 " + ", ".join(f"[ {r.bits}, %{lab} ]" for lab, r in results))
        sptr = "null"
        if cap:
            sptr = fn.op("phi ptr " + ", ".join(f"[ {r.sptr}, %{lab} ]" for lab, r in results))
        return Lowered(tag, bits, sptr, cap)

    # -- event values

    def event_value(self, name: str, v: Value):
        fn = self.fn
        if name in ("pid", "tid"):
            pid_tgid = fn.helper(GET_CURRENT_PID_TGID, "i64", "")
            if name == "pid":
                return int_value(fn.op(f"lshr i64 {pid_tgid}, 32"))
            return int_value(fn.op(f"and i64 {pid_tgid}, 4294967295"))
        if name == "cpu":
            return int_value(fn.helper(GET_SMP_PROCESSOR_ID, "i64", ""))
        if name == "uid":
            return NIL  # perf records carry no uid: the interpreter's uid is nil too
        if name == "probename":
            if self.event.sites:
                return self.site_probename()
            return self.string_const(self.event.probename)
        if name == "execname":
            buf = fn.alloca(COMM_BYTES)
            fn.helper_void(GET_CURRENT_COMM, f"ptr {buf}, i64 {COMM_BYTES}")
            return self.cut_at_nul(buf, COMM_BYTES)
        if name.startswith("arg") and name[3:].isdigit():
            index = int(name[3:])
            if index >= len(self.event.arg_names):
                return NIL
            return self.event_field(self.event.arg_names[index], v)
        raise NotLowered(name, v.span or self.where(v))

    def event_field(self, name: str, v: Value):
        where = self.event.fields.get(name)
        if where is None:
            return NIL
        fn = self.fn
        if not where.readable:
            what = "a common field, not in a program's context" if name.startswith("common_") else \
                "an array or dynamic field"
            raise NotLowered(f"args.{name} ({what})", v.span or self.where(v))
        if where.func_ip:
            return int_value(fn.helper(GET_FUNC_IP, "i64", "ptr %ctx"))
        if where.constant is not None:
            return int_value(str(where.constant))
        if where.deref is not None:
            return self.user_memory_field(where)
        if where.string:
            buf = fn.alloca(pad8(where.size))
            fn.helper_void(PROBE_READ_KERNEL, f"ptr {buf}, i64 {where.size}, ptr {fn.gep('%ctx', where.offset)}")
            return self.cut_at_nul(buf, where.size)
        if where.size not in (1, 2, 4, 8):
            raise NotLowered(f"args.{name} (a {where.size}-byte field)", v.span or self.where(v))
        raw = fn.load(f"i{where.size * 8}", fn.gep("%ctx", where.offset))
        if where.size == 8:
            return int_value(raw)
        extend = "sext" if where.signed else "zext"
        return int_value(fn.op(f"{extend} i{where.size * 8} {raw} to i64"))

    def user_memory_field(self, where) -> Lowered:
        """An integer of user memory at a register plus a displacement; 0
        where it cannot be read, as the kernel's fetch gives (the helper
        zeroes its buffer on a fault)."""
        fn = self.fn
        base = fn.load("i64", fn.gep("%ctx", where.offset))
        address = fn.op(f"add i64 {base}, {where.deref}")
        buf = fn.alloca(8)
        fn.helper_void(PROBE_READ_USER, f"ptr {buf}, i64 {where.size}, ptr {fn.op(f'inttoptr i64 {address} to ptr')}")
        raw = fn.load(f"i{where.size * 8}", buf)
        if where.size == 8:
            return int_value(raw)
        extend = "sext" if where.signed else "zext"
        return int_value(fn.op(f"{extend} i{where.size * 8} {raw} to i64"))

    def site_probename(self) -> Lowered:
        """A site event's probename: the name of the site whose address
        has the probed address's offset in its page (KernelEvent.sites),
        chosen word by word into one buffer."""
        fn = self.fn
        sites = self.event.sites
        cap = max(8, *(pad8(len(name)) for _at, name in sites))
        in_page = fn.op(f"and i64 {fn.helper(GET_FUNC_IP, 'i64', 'ptr %ctx')}, {PAGE_SIZE - 1}")
        hits = [fn.op(f"icmp eq i64 {in_page}, {at}") for at, _name in sites[1:]]
        length = str(len(sites[0][1]))
        for hit, (_at, name) in zip(hits, sites[1:]):
            length = fn.op(f"select i1 {hit}, i64 {len(name)}, i64 {length}")
        buf = fn.alloca(cap)
        for word_at in range(0, cap, 8):
            word_of = lambda name: int.from_bytes(name.ljust(cap, b"\0")[word_at:word_at + 8], "little", signed=True)
            word = str(word_of(sites[0][1]))
            for hit, (_at, name) in zip(hits, sites[1:]):
                word = fn.op(f"select i1 {hit}, i64 {word_of(name)}, i64 {word}")
            fn.store("i64", word, fn.gep(buf, word_at))
        return Lowered(str(TAG_STRING), length, buf, cap)

    def cut_at_nul(self, buf: str, size: int) -> Lowered:
        """A C string of at most `size` bytes in `buf` as a script string:
        its length is the first NUL's index, and the bytes from there on are
        zeroed so that equal strings are equal buffers."""
        fn = self.fn
        cap = pad8(size)
        length = str(size)
        for at in reversed(range(size)):
            byte = fn.load("i8", fn.gep(buf, at))
            nul = fn.op(f"icmp eq i8 {byte}, 0")
            length = fn.op(f"select i1 {nul}, i64 {at}, i64 {length}")
        for at in range(cap):
            at_ptr = fn.gep(buf, at)
            keep = fn.op(f"icmp ult i64 {at}, {length}")
            byte = fn.load("i8", at_ptr) if at < size else "0"
            fn.store("i8", fn.op(f"select i1 {keep}, i8 {byte}, i8 0"), at_ptr)
        return Lowered(str(TAG_STRING), length, buf, cap)
