"""`--engine bpf`: the interpreter for the user-space half of a run, eBPF
programs for the probes the placement puts in the kernel (docs/bpf.md, "Running").

A BpfRun is an interpreter run (top level, timers, trace_end and the probes
that stay in user space, per event as with `--engine interp`). Once the
live session has opened its perf events, and before it enables them, the
session calls `attach_kernel`: the kernel-placed probes are analysed with
the bound events' field shapes, lowered, loaded with the ``ktapjit_src``
map bound to every program (``ktapjit ps``), their maps filled from what
the top level left in the globals, and attached. Their samples then never
reach the ring (unless the run records it). The session turns the
programs' gate on right after enabling the perf events and off right
before disabling them (`gate_kernel`), so they run exactly while perf
samples. Once the gate is off (or else the perf events are closed) the
session calls `detach_kernel`: the maps are read back into the
interpreter's globals, a fault in kernel code becomes the run's error, and
every BPF object is closed; trace_end then runs over the same tables.
Between rounds the session asks `poll_kernel`: a fault in kernel code stops
the trace there, as an error in the interpreter does.

What may go to the kernel: tracepoints, `profile-N` timers, and the
uprobes, uretprobes and USDT probes ktapjit creates, site events (a glob's
one event) included: a uprobe's program reads its fetch args from the
registers, and a site event's program tells its sites apart by where the
probed address falls in its page (uprobe_events.py, probe_regs.py). A
script whose kernel-placed probes need anything else (a kprobe, two sites
at the same offset in a page), or whose top level leaves an aggregation in
a cell the kernel updates, runs wholly in user space, and `-v` says why.

"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Optional

from ktapjit.bpf.errors import BpfError, VerifierError
from ktapjit.bpf.placement import KERNEL, FieldShape, analyse_module
from ktapjit.interp.engine import InterpRun
from ktapjit.ir.func import Module
from ktapjit.run_api import LiveEvents, RunConfig
from ktapjit.semantics.intmath import wrap
from ktapjit.semantics.values import Table


class BpfEngine:
    """`source` and `argv` are what ``ktapjit ps`` shows; `say` takes -v's
    lines (where each probe runs, a verifier's log)."""

    name = "bpf"

    def __init__(self, source: bytes, argv: list[str], verbose: bool = False,
                 say: Callable[[str], None] = lambda text: None):
        self.source = source
        self.argv = argv
        self.verbose = verbose
        self.say = say

    def load(self, module: Module, config: RunConfig, out: Callable[[bytes], None]) -> "BpfRun":
        return BpfRun(module, config, out, self)


_GATE_KEY = (0).to_bytes(4, "little")


@dataclass
class _Cell:
    """A script global held in a map: its spec, its map, and what the top
    level left in it (the base both halves' updates start from)."""

    spec: object  # kernel_plan.MapSpec
    target: object  # objects.Map
    base: list  # [(key, value)]: a global's is [(None, value)]


class BpfRun(InterpRun):
    def __init__(self, module: Module, config: RunConfig, out: Callable[[bytes], None], engine: BpfEngine):
        super().__init__(module, config, out)
        self.engine = engine
        self.kernel_probes: frozenset[int] = frozenset()
        self.kernel_timers: frozenset[int] = frozenset()
        self._bpf = None  # the BpfSession owning every map and program
        self._loaded = None
        self._faults = None  # the FaultRing of the loaded programs
        self._carriers: list[int] = []  # the perf fds the tracepoint and uprobe programs hang on
        self._cells: list[_Cell] = []
        self._gate = None  # the GATE_MAP of the loaded programs
        self._gate_on = False

    # -- the per-event surface: kernel-placed probes ran in the kernel already

    def run_probe(self, index: int, event) -> bool:
        if index in self.kernel_probes:
            return self.tracing  # a kept sample (a recording run): counted in the kernel
        return super().run_probe(index, event)

    def run_profile(self, index: int, event) -> bool:
        if index in self.kernel_timers:
            return self.tracing
        return super().run_profile(index, event)

    # -- the kernel half

    def attach_kernel(self, events: LiveEvents) -> None:
        """Lower, load, fill and attach the kernel-placed probes on the
        session's opened (not yet enabled) perf events."""
        from ktapjit.bpf.lower import lower_module

        module, limits, say = self.module, self.config.limits, self._verbose
        if not self.tracing:
            return
        analysis = analyse_module(module, limits, _field_shapes(module, events), recorded=events.recording)
        attachments, refusal = _kernel_events(module, analysis, events)
        if refusal:
            say(f"bpf: every probe runs in user space: {refusal}")
            return
        kernel_events = [event for event, _fds, _tracepoint in attachments]
        plan = lower_module(module, analysis, limits, kernel_events, keep_samples=events.recording)
        if not events.recording and _shares_an_event(module, events, plan):
            # A program that returns 0 drops the sample for every perf event on its
            # tracepoint: the user-space probes on it would never see theirs.
            plan = lower_module(module, analysis, limits, kernel_events, keep_samples=True)
        refusal = self._aggregation_in_base(plan)
        if refusal:
            say(f"bpf: every probe runs in user space: {refusal}")
            return
        lowered = {p.probe for p in plan.programs if not p.event.timer}
        timers = {p.probe for p in plan.programs if p.event.timer}
        for placement in analysis.placements:
            say(_where(module, placement, plan, lowered, timers))
        if not plan.programs:
            return
        fds_of = {id(event): (fds, tracepoint) for event, fds, tracepoint in attachments}
        self._load(plan, fds_of, events.pid)
        self.kernel_probes, self.kernel_timers = frozenset(lowered), frozenset(timers)

    def _load(self, plan, fds_of: dict, pid: Optional[int]) -> None:
        from ktapjit.bpf.attach import attach_all, attach_carried
        from ktapjit.bpf.fault_ring import FaultRing
        from ktapjit.bpf.lower import FAULT_MAP, GATE_MAP
        from ktapjit.bpf.kernel_load import load_plan
        from ktapjit.bpf.objects import BpfSession
        from ktapjit.bpf.scope import SCOPE_MAP, keep_scope
        from ktapjit.bpf.source_map import create_source_map
        from ktapjit.bpf.tables import prefill

        self._bpf = BpfSession()
        try:
            source_map = create_source_map(self._bpf, self.engine.source, self.engine.argv)
            try:
                self._loaded = load_plan(self._bpf, plan, bind=(source_map,))
            except VerifierError as exc:
                raise self._rejected(plan, exc) from None
            for spec in plan.maps:
                base = self._cell_items(spec)
                target = self._loaded.maps[spec.name]
                prefill(spec, target, base)
                self._cells.append(_Cell(spec, target, base))
            self._faults = FaultRing(self._loaded.maps[FAULT_MAP])
            self._gate = self._loaded.maps[GATE_MAP]
            if SCOPE_MAP in self._loaded.maps:  # -p/--: kept from before the session's events are enabled
                self._carriers += keep_scope(self._bpf, self._loaded.maps[SCOPE_MAP], pid, bind=(source_map,))
            for program in plan.programs:
                fds, tracepoint = fds_of[id(program.event)]
                loaded = self._loaded.programs[program.name]
                if tracepoint is None:  # a cpu-clock program belongs to each CPU's event
                    attach_all(list(fds), loaded)
                else:
                    what = program.event.probename.decode(errors="replace")
                    self._carriers.append(attach_carried(tracepoint, loaded, what))
        except BaseException:
            self.detach_kernel()
            raise

    def _rejected(self, plan, exc: VerifierError) -> BpfError:
        """The verifier's refusal, naming the probe and its line; -v shows its log."""
        from ktapjit.bpf.syscall import last_log_line

        program = next((p for p in plan.programs if p.name == exc.program), None)
        if program is None:
            return exc
        target = program.event.target(self.module)
        what = target.text if program.event.timer else f"trace {target.eventdef}"
        span = target.func.span
        where = span.location() if span is not None else "?"
        if self.engine.verbose and exc.log:
            self._verbose("bpf: verifier log:\n" + exc.log.rstrip("\n"))
        hint = "" if self.engine.verbose else " (-v shows its log)"
        return BpfError(f"{where}: the BPF verifier rejected `{what}` (program '{program.name}'): "
                        f"{last_log_line(exc.log)}{hint}", exc.errno)

    def poll_kernel(self) -> bool:
        """Between rounds: False once kernel code failed (its error is then
        the run's, and tracing stops, as the interpreter stops at an error)."""
        if self._faults is not None:
            self._read_faults()
        return self.tracing

    def gate_kernel(self, on: bool) -> None:
        """The programs run on events only while the session's perf events
        are enabled: from the attach to the close they would see more
        events than perf samples (docs/bpf.md, "The gate")."""
        if self._gate is None or on == self._gate_on:
            return
        self._gate.update(_GATE_KEY, (1 if on else 0).to_bytes(8, "little"))
        self._gate_on = on

    def holds_kernel_code(self) -> bool:
        """Only while the gate is on: with it off the maps are final, and
        trace_end need not wait for the kernel to release the perf events."""
        return self._loaded is not None and self._gate_on

    def detach_kernel(self) -> None:
        """After the perf events are closed, or disabled with the gate off:
        the maps back into the globals, a kernel fault into the errors,
        every BPF object closed. Idempotent; nothing to do when nothing was
        attached."""
        if self._bpf is None:
            return
        self._gate = None  # first: a signal handler's gate_kernel must not write a closed map
        try:
            _close_all(self._carriers)  # the programs stop: the maps hold their last updates
            if self._faults is not None:
                self._read_faults()
            if self._loaded is not None:
                self._read_back()
        finally:
            if self._faults is not None:
                self._faults.close()
            bpf, self._bpf, self._loaded, self._faults, self._cells = self._bpf, None, None, None, []
            bpf.close()

    def _read_back(self) -> None:
        from ktapjit.bpf.tables import read_back

        for cell in self._cells:
            merged = _merge(cell.spec, cell.base, read_back(cell.spec, cell.target), self._cell_items(cell.spec))
            if cell.spec.scalar:
                self._set_global(cell.spec.slot, merged[0][1] if merged else None)
                continue
            table = self.global_value(cell.spec.slot)
            table.clear()
            for key, value in merged:
                table.set(key, value)

    def _read_faults(self) -> None:
        from ktapjit.bpf.fault_ring import first_fault

        fault = first_fault(self._faults.records(), self._loaded.plan.sites)
        if fault is not None and self.tracing:
            self.errors.append(fault)
            self.tracing = False

    # -- the globals the maps hold

    def _cell_items(self, spec) -> list:
        value = self.global_value(spec.slot)
        if spec.scalar:
            return [(None, value)]
        return list(value.items()) if isinstance(value, Table) else []

    def _aggregation_in_base(self, plan) -> Optional[str]:
        for spec in plan.maps:
            if any(isinstance(value, Table) for _key, value in self._cell_items(spec)):
                return f"the top level left an aggregation in `{spec.cell}`, which a map cannot be filled with yet"
        return None

    def _verbose(self, text: str) -> None:
        if self.engine.verbose:
            self.engine.say(text)


def _close_all(fds: list[int]) -> None:
    import os

    while fds:
        os.close(fds.pop())


def _merge(spec, base: list, kernel: list, user: list) -> list:
    """A cell's pairs after the events (docs/bpf.md, "Running"): a key only
    one half changed from `base` (what the top level left) as that half left
    it, a key both changed with both updates (a commutative update of the
    same family), a key too long for the map (prefill left it out) as user
    space holds it. In insertion order: the top level's keys, then the
    kernel's in first-insert order, then those only user space made."""
    base_of, kernel_of, user_of = dict(base), dict(kernel), dict(user)
    merged = []
    for key in dict.fromkeys([k for k, _v in base] + [k for k, _v in kernel] + [k for k, _v in user]):
        b, k, u = base_of.get(key), kernel_of.get(key), user_of.get(key)
        if not (spec.scalar or spec.key.fits(key)) or (u != b and k == b):
            value = u  # the kernel never touched it
        elif u != b and u is not None and k is not None:
            value = _both(spec.family, b, k, u)
        else:
            value = k if u == b else u
        if value is not None:
            merged.append((key, value))
    return merged


def _both(family: tuple, base, kernel, user):
    """One key updated by both halves from `base`."""
    kind = family[0]
    if kind == "+=" and all(type(v) is int for v in (kernel, user)) and type(base) in (int, type(None)):
        return wrap(kernel + user - (base or 0))
    if kind == "max" and type(kernel) is int and type(user) is int:
        return max(kernel, user)
    if kind == "min" and type(kernel) is int and type(user) is int:
        return min(kernel, user)
    return kernel


def _field_shapes(module: Module, events: LiveEvents):
    """Per probe, the shapes of its bound events' fields (the widest over them)."""
    by_probe: dict[int, dict[str, FieldShape]] = {}
    for opened in events.opened:
        for bound in opened.members:
            if bound.is_profile:
                continue
            shapes = by_probe.setdefault(id(module.probes[bound.probe]), {})
            for f in bound.fmt.all_fields:
                shapes[f.name] = _wider(shapes.get(f.name), _shape(f))
    return lambda probe: by_probe.get(id(probe), {})


def _shape(f) -> FieldShape:
    if f.is_string:
        return FieldShape("string", None if f.dynamic else f.size)
    if f.is_array or f.dynamic:
        return FieldShape("array")
    return FieldShape("int")


def _wider(a: Optional[FieldShape], b: FieldShape) -> FieldShape:
    if a is None or a == b:
        return b
    if a.kind == b.kind == "string":
        return FieldShape("string", None if None in (a.size, b.size) else max(a.size, b.size))
    return a if a.kind == "array" else b  # the kinds differ: the one the kernel reads least


def _kernel_events(module: Module, analysis, events: LiveEvents):
    """(KernelEvent, perf fds, trace event id) for each opened event of a
    kernel-placed probe or timer (the id None for a timer's cpu-clock), or a
    reason why they cannot all run in the kernel."""
    from ktapjit.bpf.kernel_plan import KernelEvent, tracepoint_event

    kernel = {id(p.target) for p in analysis.placements if p.where == KERNEL}
    # A system-wide trace leaves ktapjit out: perf's filter (tracing/live.py,
    # _exclude_ktapjit) would, but perf applies it after the program ran.
    skip = os.getpid() if events.pid is None else None
    built = []
    for opened in events.opened:
        if not opened.fds:
            continue  # refused by the kernel (a glob skips it): nothing runs on it
        for member in opened.members:
            if member.is_profile:
                if id(module.timers[member.timer]) in kernel:
                    event = KernelEvent(member.timer, "profile", "profile", member.probename, timer=True)
                    built.append((event, opened.fds, None))
                continue
            if id(module.probes[member.probe]) not in kernel:
                continue
            if opened.tracepoint:
                if member.system == "ftrace":
                    # ftrace's own events (ftrace:print, ...) are no tracepoints: perf refuses them a program.
                    return [], f"{member.system}:{member.event} is one of ftrace's own events, which take no BPF program"
                built.append((tracepoint_event(member.probe, member.fmt, events.pid, skip), opened.fds, member.fmt.id))
                continue
            event, why = _uprobe_event(member, events.pid)
            if why:
                return [], f"{member.eventdef or member.event}: {why}"
            built.append((replace(event, skip_pid=skip), opened.fds, member.fmt.id))
    return built, None


def _uprobe_event(member, pid: Optional[int]):
    """(the KernelEvent of a ktapjit uprobe, uretprobe or USDT event, None),
    or (None, why it cannot run in the kernel)."""
    from ktapjit.bpf.kernel_plan import PAGE_SIZE
    from ktapjit.bpf.probe_regs import uprobe_event
    from ktapjit.bpf.uprobe_events import read_definition
    from ktapjit.events.probes.dynamic_probes import GROUP_PREFIX

    definition = None
    if member.system.startswith(GROUP_PREFIX):
        definition = read_definition(member.system, member.event)
    if definition is None:
        return None, "only tracepoints, uprobes, uretprobes, USDT and profile-N run in the kernel"
    sites = ()
    if member.sites:
        if len(member.sites) != len(definition.offsets):
            return None, f"uprobe_events has {len(definition.offsets)} sites for its {len(member.sites)} functions"
        in_page = [offset % PAGE_SIZE for offset in definition.offsets]
        first = {}
        for name, at in zip(member.sites, in_page):
            if at in first:
                return None, (f"`{first[at]}` and `{name}` are at the same offset in a page ({at:#x}): "
                              "a kernel program cannot tell the sites apart")
            first[at] = name
        sites = tuple((at, name.encode()) for at, name in zip(in_page, member.sites))
    return uprobe_event(member.probe, member.event, definition.kernel_args, definition.is_return, member.probename,
                        pid, definition.kind, arg_names=member.arg_names, sites=sites), None


def _shares_an_event(module: Module, events: LiveEvents, plan) -> bool:
    """Whether a perf event runs both a probe lowered to the kernel and one that stays in user space."""
    lowered = {p.probe for p in plan.programs if not p.event.timer}
    for opened in events.opened:
        probes = {m.probe for m in opened.members if not m.is_profile}
        if probes & lowered and probes - lowered:
            return True
    return False


def _where(module: Module, placement, plan, lowered: set, timers: set) -> str:
    """-v: where one probe or timer runs, and why not in the kernel."""
    target = placement.target
    in_kernel = any(target is module.probes[i] for i in lowered) or any(target is module.timers[i] for i in timers)
    if in_kernel:
        return f"bpf: {placement.spec}: kernel"
    reasons = [r.render() for r in placement.reasons]
    if target in plan.not_lowered:
        reasons.append(plan.not_lowered[target].render())
    return f"bpf: {placement.spec}: user" + (f": {'; '.join(reasons)}" if reasons else "")
