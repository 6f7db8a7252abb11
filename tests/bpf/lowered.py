"""Running lowered scripts on the real kernel for the lowering's tests:
compile, place, lower, load, attach to the perf events of a PerfSession,
run a workload, read the maps back."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional

from ktapjit.bpf.attach import attach_all
from ktapjit.bpf.fault_ring import FaultRing
from ktapjit.bpf.kernel_load import LoadedPlan, load_plan
from ktapjit.bpf.scope import SCOPE_MAP, seed
from ktapjit.bpf.kernel_plan import KernelEvent, KernelPlan, tracepoint_event
from ktapjit.bpf.lower import FAULT_MAP, GATE_MAP, lower_module
from ktapjit.bpf.objects import BpfSession
from ktapjit.bpf.placement import KERNEL, analyse_module
from ktapjit.bpf.tables import prefill, read_back, read_stamped
from ktapjit.compiler import compile_script
from ktapjit.events.records.decode import Sample, iter_records
from ktapjit.events.records.perf_ring import PerfSession, tracepoint
from ktapjit.events.tracefs import read_format
from ktapjit.semantics.limits import Limits

# `calls P Q [nowait]`: waits for a byte on stdin (unless `nowait`), then
# makes exactly P getppid and Q getpid syscalls, then exits.
CALLS_C = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    long p = atol(argv[1]), q = atol(argv[2]);
    char c;
    if (argc < 4 || strcmp(argv[3], "nowait")) {
        if (read(0, &c, 1) != 1) return 2;
    }
    for (long i = 0; i < p; i++) syscall(SYS_getppid);
    for (long i = 0; i < q; i++) syscall(SYS_getpid);
    return 0;
}
"""


def gate_on(loaded) -> None:
    """Programs run only while their gate is on: the engine turns it on
    when the session enables its perf events (BpfRun.gate_kernel)."""
    loaded.maps[GATE_MAP].update((0).to_bytes(4, "little"), (1).to_bytes(8, "little"))


def module_of(source: str, path: str = "t.kp"):
    return compile_script(source.encode(), path, verify=True).module


def plan_for(source: str, limits: Limits = Limits(), pid: Optional[int] = None,
             path: str = "t.kp", keep_samples: bool = False) -> tuple[KernelPlan, list[KernelEvent]]:
    """The script's plan with each probe's tracepoints bound from tracefs."""
    module = module_of(source, path)
    analysis = analyse_module(module, limits)
    events = []
    for index, probe in enumerate(module.probes):
        for spec in probe.eventdef.split(","):
            system, event = spec.strip().split(":")
            events.append(tracepoint_event(index, read_format(system, event), pid))
    return lower_module(module, analysis, limits, events, keep_samples), events


def kernel_probes(source: str) -> list[int]:
    module = module_of(source)
    return [i for i, p in enumerate(analyse_module(module).placements) if p.where == KERNEL]


@dataclass
class Outcome:
    tables: dict  # cell name -> [(key, value)] in insertion order
    stamped: dict  # cell name -> [(stamp, key, value)]
    faults: list  # (site, kind, detail) records
    plan: KernelPlan
    samples: list = field(default_factory=list)  # the perf samples of the same events


def run_live(source: str, workload: list[str], base: dict, limits: Limits = Limits(),
             filter_pid: bool = True, more: tuple[list[str], ...] = (), cpus: Optional[list[int]] = None,
             clockid: Optional[int] = None) -> Outcome:
    """Lower `source`, fill its maps from `base` (cell -> [(key, value)], as
    the top level leaves them), attach it, run `workload` and then each of
    `more` in a row (each waits for a byte on stdin; the k-th pinned to
    cpus[k] when given; the pid filter, if any, is the first's), and read
    every map back.
    The perf samples of the same events are decoded into Outcome.samples
    (their clock: `clockid`, or perf's default)."""
    commands = [workload, *more]
    works = [subprocess.Popen(argv, stdin=subprocess.PIPE, preexec_fn=_pin(cpus[k] if cpus else None))
             for k, argv in enumerate(commands)]
    try:
        plan, events = plan_for(source, limits, pid=works[0].pid if filter_pid else None,
                                keep_samples=clockid is not None)
        assert not plan.not_lowered, plan.not_lowered
        perf_events = [tracepoint(*_split(e)) for e in _eventdefs(source)]
        with BpfSession() as bpf, PerfSession(perf_events, pages=256 if clockid else 1, track_tasks=False, clockid=clockid) as perf:
            loaded = load_plan(bpf, plan)
            gate_on(loaded)
            if SCOPE_MAP in loaded.maps:  # the workloads fork nothing: no program need keep it
                seed(loaded.maps[SCOPE_MAP], works[0].pid)
            for spec in plan.maps:
                prefill(spec, loaded.maps[spec.name], base.get(spec.cell, []))
            for program in plan.programs:
                fds = [op.fd for op in perf.opened if op.event is perf_events[_index_of(program.event, events)]]
                attach_all(fds, loaded.programs[program.name])
            for work in works:
                work.stdin.write(b"go")
                work.stdin.close()
                assert work.wait(timeout=60) == 0
            time.sleep(0.05)
            outcome = _read(plan, loaded)
            table = perf.attr_table()
            for _cpu, chunk in perf.drain():
                outcome.samples += [r for r in iter_records(chunk, table) if isinstance(r, Sample)]
            return outcome
    finally:
        for work in works:
            work.kill()
            work.wait()


def _read(plan: KernelPlan, loaded: LoadedPlan) -> Outcome:
    tables, stamped = {}, {}
    for spec in plan.maps:
        stamped[spec.cell] = read_stamped(spec, loaded.maps[spec.name])
        tables[spec.cell] = read_back(spec, loaded.maps[spec.name])
    with FaultRing(loaded.maps[FAULT_MAP]) as ring:
        faults = ring.records()
    return Outcome(tables, stamped, faults, plan)


def _pin(cpu: Optional[int]):
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _eventdefs(source: str) -> list[str]:
    module = module_of(source)
    return [spec.strip() for probe in module.probes for spec in probe.eventdef.split(",")]


def _split(spec: str) -> tuple[str, str]:
    system, event = spec.split(":")
    return system, event


def _index_of(event: KernelEvent, events: list[KernelEvent]) -> int:
    return next(i for i, e in enumerate(events) if e is event)
