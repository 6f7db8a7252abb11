"""Companion programs: one small eBPF program per tracepoint whose probes
read memory at event time (user_string, kernel_string, in_iowait). It reads
what they ask, into a per-CPU scratch buffer, and writes it with
bpf_perf_event_output to the session's bpf-output event on the current CPU,
whose ring the session merges with the tracepoint's samples
(tracing/companion.py pairs them; events/records/companion.py is the layout).

The program returns 1: a tracepoint program returning 0 drops the sample of
every perf event on the tracepoint, ours and other tracers'.

Takes plain values (tracing.companion.TracepointReads, fds), so that the
session, which may not import this package, is handed `attach_companions`
by the command line.
"""

from __future__ import annotations

import ctypes
import os

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.attach import attach_carried
from ktapjit.bpf.btf import member_bit_offset
from ktapjit.bpf.build import compile_ir
from ktapjit.bpf.loader import load_object
from ktapjit.bpf.objects import BpfSession, possible_cpus
from ktapjit.events.records import companion as record

_MAP_LOOKUP_ELEM = 1
_PERF_EVENT_OUTPUT = 25
_GET_CURRENT_TASK = 35
_PROBE_READ_KERNEL = 113
_PROBE_READ_USER_STR = 114
_PROBE_READ_KERNEL_STR = 115
_CURRENT_CPU = 0xFFFFFFFF  # BPF_F_CURRENT_CPU
_STR_HELPER = {record.USER_STRING: _PROBE_READ_USER_STR, record.KERNEL_STRING: _PROBE_READ_KERNEL_STR}
OUTPUT_MAP = "ktc_out"
SCRATCH_MAP = "ktc_scratch"


def _call(helper: int, args: str) -> str:
    return f"call i64 inttoptr (i64 {helper} to ptr)({args})"


def program_text(name: str, reads) -> str:
    """One program's LLVM IR: fill the scratch buffer, output it, return 1."""
    lines = [
        "  %key = alloca i32, align 4",
        "  store i32 0, ptr %key",
        f"  %buf = call ptr inttoptr (i64 {_MAP_LOOKUP_ELEM} to ptr)(ptr @{SCRATCH_MAP}, ptr %key)",
        "  %none = icmp eq ptr %buf, null",
        "  br i1 %none, label %done, label %fill",
        "fill:",
    ]

    def store(ty: str, value, at: int, tag: str) -> None:
        lines.append(f"  %at{tag} = getelementptr i8, ptr %buf, i64 {at}")
        lines.append(f"  store {ty} {value}, ptr %at{tag}")

    for i, value in enumerate((record.MAGIC, reads.tracepoint, len(reads.items), reads.room)):
        store("i32", value, 4 * i, f"h{i}")
    for i, item in enumerate(reads.items):
        base = record.HEAD.size + i * (record.ITEM.size + reads.room)
        store("i8", item.kind, base, f"k{i}")
        store("i16", item.offset, base + 2, f"o{i}")
        if item.kind == record.IN_IOWAIT:
            bit, _size = member_bit_offset("task_struct", "in_iowait")
            store("i64", 0, base + 8, f"v{i}")
            lines += [
                f"  %task{i} = {_call(_GET_CURRENT_TASK, '')}",
                f"  %byte{i} = add i64 %task{i}, {bit // 8}",
                f"  %src{i} = inttoptr i64 %byte{i} to ptr",
                f"  %r{i} = {_call(_PROBE_READ_KERNEL, f'ptr %atv{i}, i64 1, ptr %src{i}')}",
                f"  %b{i} = load i8, ptr %atv{i}",
                f"  %s{i} = lshr i8 %b{i}, {bit % 8}",
                f"  %bit{i} = and i8 %s{i}, 1",
                f"  %w{i} = zext i8 %bit{i} to i64",
                f"  store i64 %w{i}, ptr %atv{i}",
            ]
        else:
            width = "i64" if item.size == 8 else "i32"
            lines += [
                f"  %f{i} = getelementptr i8, ptr %ctx, i64 {item.offset}",
                f"  %l{i} = load {width}, ptr %f{i}",
            ]
            pointer = f"%l{i}"
            if width == "i32":
                lines.append(f"  %z{i} = zext i32 %l{i} to i64")
                pointer = f"%z{i}"
            store("i64", pointer, base + 8, f"v{i}")
            lines += [
                f"  %p{i} = inttoptr i64 {pointer} to ptr",
                f"  %dst{i} = getelementptr i8, ptr %buf, i64 {base + record.ITEM.size}",
                f"  %r{i} = {_call(_STR_HELPER[item.kind], f'ptr %dst{i}, i64 {reads.room}, ptr %p{i}')}",
            ]
        lines.append(f"  %rt{i} = trunc i64 %r{i} to i32")
        store("i32", f"%rt{i}", base + 4, f"r{i}")
    size = str(reads.payload_size)
    last = len(reads.items) - 1
    if reads.items and reads.items[last].kind != record.IN_IOWAIT:
        # The last string's room is written only as far as it was copied:
        # a short path makes a short record, not one of --max-string bytes.
        tail = record.HEAD.size + last * (record.ITEM.size + reads.room) + record.ITEM.size
        lines += [
            f"  %neg = icmp slt i64 %r{last}, 0",
            f"  %copied = select i1 %neg, i64 0, i64 %r{last}",
            f"  %over = icmp ugt i64 %copied, {reads.room}",
            f"  %kept = select i1 %over, i64 {reads.room}, i64 %copied",
            f"  %size = add i64 %kept, {tail}",
        ]
        size = "%size"
    lines += [
        f"  %out = {_call(_PERF_EVENT_OUTPUT, f'ptr %ctx, ptr @{OUTPUT_MAP}, i64 {_CURRENT_CPU}, ptr %buf, i64 {size}')}",
        "  br label %done",
        "done:",
        "  ret i64 1",
    ]
    body = "\n".join(lines)
    return f'define i64 @{name}(ptr %ctx) section "ktapjit/{name}" {{\nentry:\n{body}\n}}\n'


def module_text(plans) -> str:
    head = [f"@{OUTPUT_MAP} = external global i8", f"@{SCRATCH_MAP} = external global i8"]
    return "\n".join(head) + "\n\n" + "\n".join(program_text(f"ktc{i}", p) for i, p in enumerate(plans))


class _ProgStats(ctypes.Structure):
    """struct bpf_prog_info up to recursion_misses (Linux 5.12+; zero before)."""

    _fields_ = [("head", ctypes.c_uint8 * 208), ("recursion_misses", ctypes.c_uint64)]


class CompanionPrograms:
    """The loaded companion programs: their maps and programs, and the
    carrier events they are attached through. close() detaches them."""

    def __init__(self):
        self.bpf = BpfSession()
        self.carriers: list[int] = []

    def dropped(self) -> int:
        """Hits the kernel skipped because BPF was busy on their CPU (a
        program running, or a bpf() map call of any process): it runs no
        program then, and drops the tracepoint's samples too."""
        total = 0
        for program in self.bpf.programs:
            total += sc.obj_info(program.live_fd(), _ProgStats()).recursion_misses
        return total

    def close(self) -> None:
        try:
            for fd in self.carriers:
                os.close(fd)
            self.carriers.clear()
        finally:
            self.bpf.close()


def attach_companions(plans, output_fds: dict[int, int]) -> CompanionPrograms:
    """Load one companion program per plan and attach it to its tracepoint
    through a carrier event; `output_fds`: the session's bpf-output event's
    fd per CPU. Close the result when tracing is over. Raises BpfError."""
    loaded = CompanionPrograms()
    try:
        session = loaded.bpf
        # Slack of one room: the verifier may bound the computed record size
        # by its bits (LLVM turns the add into an or), up to twice the room.
        size = max(p.payload_size + p.room for p in plans)
        out = session.create_map(OUTPUT_MAP, sc.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, possible_cpus())
        for cpu, fd in output_fds.items():
            out.update(cpu.to_bytes(4, "little"), fd.to_bytes(4, "little"))
        scratch = session.create_map(SCRATCH_MAP, sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, size, 1)
        programs = load_object(session, compile_ir(module_text(plans)), {OUTPUT_MAP: out, SCRATCH_MAP: scratch},
                               sc.BPF_PROG_TYPE_TRACEPOINT)
        for i, plan in enumerate(plans):
            loaded.carriers.append(attach_carried(plan.tracepoint, programs[f"ktc{i}"],
                                                  f"{plan.system}:{plan.event}"))
    except BaseException:
        loaded.close()
        raise
    return loaded
