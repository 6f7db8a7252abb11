"""What the lowering hands the run: the programs (LLVM IR per (probe,
event)), the maps they use with their encodings, and the error sites
(docs/bpf.md, "Lowering"). Also what the lowering is given about each
event: where the fields a probe body reads live in the program's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.layout import TYPE_NAMES, KeyLayout, ValueLayout
from ktapjit.bpf.placement import Reason
from ktapjit.diag import RuntimeFault, Span
from ktapjit.events.schema import EventFormat, Field
from ktapjit.ir.func import Module, ProbeInfo, TimerInfo


class NotLowered(Exception):
    """A construct the lowering does not handle yet: its probe stays in
    user space (KernelPlan.not_lowered), with this reason."""

    def __init__(self, construct: str, span: Optional[Span]):
        super().__init__(construct)
        self.construct = construct
        self.span = span


# ------------------------------------------------------------ the input: events


@dataclass(frozen=True)
class CtxField:
    """An integer or a char[N] string at `offset` of the program's context:
    the raw record of a tracepoint (offsets from its format file), or the
    saved registers (struct pt_regs) of a uprobe's fetch argument."""

    offset: int
    size: int
    signed: bool = False
    string: bool = False  # char[N]: `size` bytes, cut at the first NUL
    readable: bool = True  # False: a field the lowering cannot read yet (an array, a __data_loc string)
    func_ip: bool = False  # a uprobe's probed address (__probe_ip, __probe_func): bpf_get_func_ip()
    constant: Optional[int] = None  # a fetch arg's immediate (\IMM), already of its type
    deref: Optional[int] = None  # `size` bytes of user memory at (the register at `offset`) + deref

    @property
    def in_context(self) -> bool:
        """Whether the field is the context's own bytes at `offset` (what a /FILTER/ compares)."""
        return self.readable and not self.func_ip and self.constant is None and self.deref is None


# The kernel writes the pt_regs pointer over the first 8 bytes of the record a
# tracepoint program sees, and the verifier refuses reads there: the common
# fields (common_type, common_flags, common_preempt_count, common_pid) are not
# in the program's context.
TRACEPOINT_CTX_START = 8


def ctx_field(f: Field) -> CtxField:
    """Where a tracepoint field lives in the raw record the program sees."""
    if f.offset < TRACEPOINT_CTX_START:
        return CtxField(f.offset, f.size, f.signed, readable=False)
    if f.is_string and not f.dynamic and f.array_len:
        return CtxField(f.offset, f.size, string=True)
    if f.is_array or f.dynamic or f.size not in (1, 2, 4, 8):
        return CtxField(f.offset, f.size, f.signed, readable=False)
    return CtxField(f.offset, f.size, f.signed)


# A mapping's load address moves by whole pages (4 KiB or a multiple), so an
# address's offset in a 4 KiB page is its file offset's.
PAGE_SIZE = 4096


@dataclass(frozen=True)
class KernelEvent:
    """One event a kernel-placed probe attaches to.

    `kind` is tracepoint | uprobe | uretprobe | usdt | profile (the program
    type follows it, attach.prog_type_for). `fields` maps `args.NAME` to
    where it lives; `arg_names` are the fields arg0, arg1, ... read, in
    order. `pid` set: only that process's hits run the body (a uprobe or
    tracepoint program sees every task, attach.py). `skip_pid` set: that
    process's hits never run it (a system-wide trace leaves ktapjit out).
    `sites`: a site event's (events.probes.probe_sites) probes by site
    index, each as the offset of its address within a page and its
    probename: the kernel program finds the site it runs for from
    bpf_get_func_ip() (a virtual address, which keeps the file offset's
    place in its page whatever the load address)."""

    probe: int  # index into Module.probes (Module.timers for a profile-N timer)
    event: str  # the event's name, e.g. "sys_enter_getppid"
    kind: str
    probename: bytes
    fields: Mapping[str, CtxField] = field(default_factory=dict)
    arg_names: tuple[str, ...] = ()
    pid: Optional[int] = None
    timer: bool = False  # a profile-N timer's cpu-clock event: `probe` indexes Module.timers
    sites: tuple[tuple[int, bytes], ...] = ()  # (address % PAGE_SIZE, probename) by site index
    skip_pid: Optional[int] = None

    def target(self, module: Module) -> Union[ProbeInfo, TimerInfo]:
        return module.timers[self.probe] if self.timer else module.probes[self.probe]


def tracepoint_event(probe: int, fmt: EventFormat, pid: Optional[int] = None,
                     skip_pid: Optional[int] = None) -> KernelEvent:
    """A tracepoint's KernelEvent: every field of its format (common ones
    too), argN the non-common fields in order, probename the event's name."""
    fields = {f.name: ctx_field(f) for f in fmt.all_fields}
    return KernelEvent(probe, fmt.name, "tracepoint", fmt.name.encode(), fields,
                       tuple(f.name for f in fmt.args()), pid, skip_pid=skip_pid)


# ------------------------------------------------------------ the output


@dataclass(frozen=True)
class MapSpec:
    """One BPF map of the plan. `cell` is the script global it holds (a
    table, or a global of one cell); `family` is how kernel code updates it:
    ("+=",), ("const", value), ("max",), ("min",), or ("thread",) for
    per-thread state (any code, keyed by tid, in a shared map)."""

    name: str  # the map's kernel name (<= 15 chars) and its symbol in the programs
    cell: str  # the global's name
    slot: int  # the global's slot
    scalar: bool  # a global of one cell: an array map with one entry
    family: tuple
    map_type: int
    key: KeyLayout
    value: ValueLayout
    max_entries: int

    @property
    def percpu(self) -> bool:
        return self.map_type in (sc.BPF_MAP_TYPE_PERCPU_HASH, sc.BPF_MAP_TYPE_PERCPU_ARRAY)

    @property
    def key_size(self) -> int:
        return 4 if self.scalar else self.key.size

    @property
    def flags(self) -> int:
        return 0 if self.scalar else sc.BPF_F_NO_PREALLOC  # entries only as keys arrive


@dataclass(frozen=True)
class AuxMap:
    """A map the programs use for themselves: the per-CPU sequence of
    stamps, the ring buffer of faults."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0


# Fault kinds a program reports, and the interpreter's message for each
# (detail: a type tag, or the left and right tags packed as left*16+right).
(FAULT_ARITH, FAULT_COMPARE, FAULT_DIVZERO, FAULT_OVERFLOW, FAULT_LOOP, FAULT_NIL_INDEX, FAULT_FOR,
 FAULT_LENGTH, FAULT_AGG_VALUE, FAULT_NOT_AGG, FAULT_OTHER_BOUNDS, FAULT_CONCAT, FAULT_STRING_LONG) = range(13)


@dataclass(frozen=True)
class ErrorSite:
    """Where a program may fail: the op's source position and what fails."""

    site: int
    span: Optional[Span]
    kind: int
    limit: int = 0  # the limit a FAULT_OVERFLOW / FAULT_LOOP exceeded
    text: str = ""  # FAULT_FOR: which 'for' value; the aggregation's name

    def fault(self, detail: int) -> RuntimeFault:
        """The interpreter's error for this site, at the same position."""
        return RuntimeFault(self.message(detail), self.span)

    def message(self, detail: int) -> str:
        if self.kind == FAULT_ARITH:
            return f"attempt to perform arithmetic on a {TYPE_NAMES.get(detail, '?')} value"
        if self.kind == FAULT_COMPARE:
            return f"attempt to compare {TYPE_NAMES.get(detail >> 4, '?')} with {TYPE_NAMES.get(detail & 15, '?')}"
        if self.kind == FAULT_DIVZERO:
            return "divide by zero"
        if self.kind == FAULT_OVERFLOW:
            return f"table overflow ({self.limit} entries)"
        if self.kind == FAULT_LOOP:
            return f"loop limit exceeded ({self.limit} iterations)"
        if self.kind == FAULT_NIL_INDEX:
            return "table index is nil"
        if self.kind == FAULT_CONCAT:
            return f"attempt to concatenate a {TYPE_NAMES.get(detail, '?')} value"
        if self.kind == FAULT_STRING_LONG:
            return "string too long"
        if self.kind == FAULT_LENGTH:
            return f"attempt to get length of a {TYPE_NAMES.get(detail, '?')} value"
        if self.kind == FAULT_AGG_VALUE:
            return f"{self.text}: value must be an integer, got {TYPE_NAMES.get(detail, '?')}"
        if self.kind == FAULT_NOT_AGG:
            return f"{self.text}: existing value is not a {self.text} aggregation"
        if self.kind == FAULT_OTHER_BOUNDS:
            return "lhist: existing aggregation has other bounds"
        if self.kind == FAULT_FOR:
            return f"'for' {self.text} must be an integer" if self.text else "'for' step is zero"
        return f"unknown fault kind {self.kind}"


@dataclass(frozen=True)
class KernelProgram:
    probe: int
    event: KernelEvent
    name: str  # the program's (and its LLVM function's) name, <= 15 chars
    prog_type: int
    llvm_ir: str


@dataclass
class KernelPlan:
    """Everything the run needs to put the kernel-placed probes in the
    kernel: programs, maps (script cells first, then AuxMaps), error sites
    by id, and the probes the placement put in the kernel that the lowering
    does not handle yet (they run in user space, with their reason)."""

    programs: list[KernelProgram]
    maps: list[MapSpec]
    aux_maps: list[AuxMap]
    sites: dict[int, ErrorSite]
    not_lowered: dict[Union[ProbeInfo, TimerInfo], Reason]  # by Placement.target

    def map_for(self, cell: str) -> Optional[MapSpec]:
        return next((m for m in self.maps if m.cell == cell), None)
