"""The traced process tree of `-p PID` and `-- CMD` for kernel probes: a
hash map of tgids (and of the tids of threads started while tracing)
that a probe looks its task's tgid up in, kept by two small programs.

The perf events of such a session are per-task and inherited: they see the
process and every thread and process it creates after the trace starts.
The map follows the same tree. It is seeded with the traced pid; on
sched:sched_process_fork, run in the forking task before the child first
runs, a task whose tgid is in the map adds `child_pid` (a new process's
tgid, or a new thread's tid); on sched:sched_process_exit an exiting
thread takes its own tid out, and the last thread of a process (or, on a
kernel without `group_dead`, the leader) its tgid, so a pid the kernel
reuses later is not in scope.

Both programs return 1: a tracepoint program returning 0 drops every perf
event's sample of that hit. They hang on carrier events of their own
(attach.attach_carried), attached before the session enables its events.
"""

from __future__ import annotations

import os

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.attach import attach_carried
from ktapjit.bpf.build import compile_ir
from ktapjit.bpf.errors import BpfError
from ktapjit.bpf.llvm_text import GET_CURRENT_PID_TGID, MAP_DELETE_ELEM, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM
from ktapjit.bpf.loader import load_object
from ktapjit.bpf.objects import BpfSession, Map

SCOPE_MAP = "ktj_scope"  # u32 tgid (or tid) -> u32 1
SCOPE_ENTRIES = 65536  # tasks in scope at once: a fork past it is not followed


def _call(helper: int, result: str, args: str) -> str:
    return f"call {result} inttoptr (i64 {helper} to ptr)({args})"


def _program(name: str, body: list[str]) -> str:
    text = "\n".join("  " + line if not line.endswith(":") else line for line in body)
    return f'define i64 @{name}(ptr %ctx) section "ktapjit/{name}" {{\nentry:\n{text}\n}}\n'


def fork_text(child_pid_offset: int) -> str:
    """On sched_process_fork: a child of a task in scope joins it."""
    return _program("ktj_fork", [
        "%key = alloca i32, align 4",
        "%one = alloca i32, align 4",
        f"%pt = {_call(GET_CURRENT_PID_TGID, 'i64', '')}",
        "%hi = lshr i64 %pt, 32",
        "%tgid = trunc i64 %hi to i32",
        "store i32 %tgid, ptr %key",
        f"%in = {_call(MAP_LOOKUP_ELEM, 'ptr', f'ptr @{SCOPE_MAP}, ptr %key')}",
        "%out = icmp eq ptr %in, null",
        "br i1 %out, label %done, label %add",
        "add:",
        f"%at = getelementptr i8, ptr %ctx, i64 {child_pid_offset}",
        "%child = load i32, ptr %at",
        "store i32 %child, ptr %key",
        "store i32 1, ptr %one",
        f"%r = {_call(MAP_UPDATE_ELEM, 'i64', f'ptr @{SCOPE_MAP}, ptr %key, ptr %one, i64 0')}",
        "br label %done",
        "done:",
        "ret i64 1",
    ])


def exit_text(group_dead_offset: int | None) -> str:
    """On sched_process_exit: a thread's own key out, and the process's
    tgid with its last thread."""
    if group_dead_offset is None:
        last = ["%last = icmp eq i32 %tid, %tgid"]  # no group_dead: the leader's exit
    else:
        last = [f"%at = getelementptr i8, ptr %ctx, i64 {group_dead_offset}",
                "%dead = load i8, ptr %at",
                "%last = icmp ne i8 %dead, 0"]
    return _program("ktj_exit", [
        "%key = alloca i32, align 4",
        f"%pt = {_call(GET_CURRENT_PID_TGID, 'i64', '')}",
        "%hi = lshr i64 %pt, 32",
        "%tgid = trunc i64 %hi to i32",
        "%tid = trunc i64 %pt to i32",
        "%thread = icmp ne i32 %tid, %tgid",
        "br i1 %thread, label %own, label %group",
        "own:",
        "store i32 %tid, ptr %key",
        f"{_call(MAP_DELETE_ELEM, 'i64', f'ptr @{SCOPE_MAP}, ptr %key')}",
        "br label %group",
        "group:",
        *last,
        "br i1 %last, label %leave, label %done",
        "leave:",
        "store i32 %tgid, ptr %key",
        f"{_call(MAP_DELETE_ELEM, 'i64', f'ptr @{SCOPE_MAP}, ptr %key')}",
        "br label %done",
        "done:",
        "ret i64 1",
    ])


def seed(scope: Map, pid: int) -> None:
    """Put process `pid` in scope."""
    scope.update(pid.to_bytes(4, "little"), (1).to_bytes(4, "little"))


def keep_scope(session: BpfSession, scope: Map, pid: int, bind: tuple[Map, ...] = ()) -> list[int]:
    """Seed `scope` (the plan's SCOPE_MAP) with `pid` and attach the two
    programs that keep it; their carrier fds, to close (before the maps are
    read) when tracing is over. Raises BpfError."""
    from ktapjit.events.errors import EventsError
    from ktapjit.events.tracefs import read_format

    try:
        fork, leave = read_format("sched", "sched_process_fork"), read_format("sched", "sched_process_exit")
    except EventsError as exc:
        raise BpfError(f"cannot follow the traced process's children in the kernel: {exc}") from None
    child = fork.field("child_pid")
    if child is None or child.size != 4:
        raise BpfError("cannot follow the traced process's children in the kernel: "
                       "sched:sched_process_fork has no 4-byte child_pid field")
    dead = leave.field("group_dead")
    text = "\n".join([f"@{SCOPE_MAP} = external global i8", "",
                      fork_text(child.offset), exit_text(dead.offset if dead is not None else None)])
    seed(scope, pid)
    programs = load_object(session, compile_ir(text), {SCOPE_MAP: scope}, sc.BPF_PROG_TYPE_TRACEPOINT, bind)
    carriers: list[int] = []
    try:
        for name, fmt in (("ktj_fork", fork), ("ktj_exit", leave)):
            carriers.append(attach_carried(fmt.id, programs[name], f"sched:{fmt.name}"))
    except BaseException:
        for fd in carriers:
            os.close(fd)
        raise
    return carriers
