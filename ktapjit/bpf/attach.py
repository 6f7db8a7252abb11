"""Attaching programs to perf events: PERF_EVENT_IOC_SET_BPF on an fd the
perf layer opened (``ktapjit.events.records.perf_ring.PerfSession`` opens one per
event and CPU), then PERF_EVENT_IOC_ENABLE.

The perf event holds the program once attached: closing the program's fd
afterwards keeps it running, and closing the perf fd detaches it. A
tracepoint event still writes its sample to the ring when the program
returns non-zero, so the same events can feed the user-space engines.

Where a program runs depends on the event kind. A tracepoint or uprobe
program joins the tracepoint's own program list (one per trace event, not
per perf event): it runs on every hit on every CPU, whichever task, while
any perf event it was attached through stays open, and attaching it again
through a second CPU's fd is EEXIST. A uprobe the uprobe PMU makes is a
trace event of its own per CPU's fd, each firing on every CPU: attached
through each, the program would run once per CPU for one call. So it is
attached once, through the first fd, and a pid filter must be in the
program (the perf event's pid does not filter it). A cpu-clock program belongs to its one perf event, so
it is attached to each CPU's. ``attach_all`` does the right one.

A tracepoint or uprobe program is attached through a carrier event of its
own (``attach_carried``), never through a session's events: a per-task
session's events are inherited by the traced command's children, and when
an inherited event is freed (the child exits) the kernel takes the program
off the tracepoint, which then runs it no more.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.errors import PERMISSION, BpfError
from ktapjit.bpf.objects import Program
from ktapjit.events.records import perf_abi

# The program type each kind of perf event runs (the kernel checks it at SET_BPF).
PROG_TYPE_FOR_EVENT = {
    "tracepoint": sc.BPF_PROG_TYPE_TRACEPOINT,
    "uprobe": sc.BPF_PROG_TYPE_KPROBE,  # uprobes and uretprobes are kprobe-type programs
    "uretprobe": sc.BPF_PROG_TYPE_KPROBE,
    "usdt": sc.BPF_PROG_TYPE_KPROBE,  # a USDT probe is a uprobe at the note's address
    "profile": sc.BPF_PROG_TYPE_PERF_EVENT,  # cpu-clock sampling
}


def prog_type_for(event_kind: str) -> int:
    try:
        return PROG_TYPE_FOR_EVENT[event_kind]
    except KeyError:
        raise BpfError(f"a BPF program cannot attach to a '{event_kind}' event") from None


def attach(perf_fd: int, program: Program, enable: bool = True) -> None:
    """Run ``program`` on every hit of the perf event behind ``perf_fd``."""
    try:
        perf_abi.perf_ioctl(perf_fd, perf_abi.PERF_EVENT_IOC_SET_BPF, program.live_fd(),
                            "PERF_EVENT_IOC_SET_BPF")
        if enable:
            perf_abi.perf_ioctl(perf_fd, perf_abi.PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")
    except perf_abi.PerfError as exc:
        raise BpfError(_refusal(program, exc.errno), exc.errno) from None


def attach_all(perf_fds: list[int], program: Program) -> None:
    """Attach ``program`` to one event opened on several CPUs (the fds of
    one event, in CPU order), and enable them all."""
    per_event = program.prog_type == sc.BPF_PROG_TYPE_PERF_EVENT
    for i, fd in enumerate(perf_fds):
        if per_event or i == 0:
            attach(fd, program, enable=False)
    for fd in perf_fds:
        try:
            perf_abi.perf_ioctl(fd, perf_abi.PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")
        except perf_abi.PerfError as exc:
            raise BpfError(_refusal(program, exc.errno), exc.errno) from None


def open_carrier(tracepoint: int) -> int:
    """A perf event on trace event `tracepoint` (its tracefs id) that stays
    disabled, for every task, on one CPU, and is not inherited: a program
    attached through it stays on the trace event's program list, running on
    every hit on every CPU, until the fd is closed. A disabled event writes
    no sample. Raises perf_abi.PerfError."""
    from ktapjit.events.records.perf_ring import online_cpus

    attr = perf_abi.perf_event_attr(type=perf_abi.PERF_TYPE_TRACEPOINT, config=tracepoint, sample_period=1,
                                    disabled=1)
    attr.size = ctypes.sizeof(attr)
    return perf_abi.perf_event_open(attr, -1, online_cpus()[0], -1, perf_abi.PERF_FLAG_FD_CLOEXEC)


def attach_carried(tracepoint: int, program: Program, what: str) -> int:
    """Attach a tracepoint or uprobe `program` to trace event `tracepoint`
    through a carrier event of its own; the carrier's fd (close it to
    detach). `what` names the event in an error. Raises BpfError."""
    try:
        fd = open_carrier(tracepoint)
    except perf_abi.PerfError as exc:
        raise BpfError(f"cannot open {what} to attach BPF program '{program.name}': "
                       f"{perf_abi.refusal_reason(exc.errno)}", exc.errno) from None
    try:
        attach(fd, program, enable=False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refusal(program: Program, err: int | None) -> str:
    what = f"cannot attach BPF program '{program.name}' to its perf event"
    if err in (errno.EPERM, errno.EACCES):
        return f"{what}: {PERMISSION}"
    if err == errno.EINVAL:
        kind = sc.PROG_TYPE_NAMES.get(program.prog_type, f"type {program.prog_type}")
        return f"{what}: the event does not take {kind} programs (EINVAL)"
    if err == errno.EEXIST:
        return f"{what}: it is attached to that event already (once per tracepoint or uprobe)"
    return f"{what}: {perf_abi.errno_name(err or 0)}"
