"""Where a uprobe's fetch arguments live for a BPF program: the program's
context is the probed task's saved registers (struct pt_regs on x86-64,
struct user_pt_regs on arm64), so a fetch arg that names a register is a
load at that register's offset. Fetch args that dereference memory or
read strings are left unreadable (the lowering refuses a probe that reads
one; it runs in user space)."""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence

from ktapjit.bpf.kernel_plan import CtxField, KernelEvent

# struct pt_regs (arch/x86/include/asm/ptrace.h), by the kernel's register names.
X86_64_PT_REGS = {name: 8 * i for i, name in enumerate(
    ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
     "orig_ax", "ip", "cs", "flags", "sp", "ss"))}
# struct user_pt_regs (arch/arm64/include/uapi/asm/ptrace.h): x0..x30, sp, pc, pstate.
ARM64_PT_REGS = {**{f"x{n}": 8 * n for n in range(31)}, "sp": 248, "pc": 256, "pstate": 264}
PT_REGS = {"x86_64": X86_64_PT_REGS, "aarch64": ARM64_PT_REGS}
RETURN_REGISTER = {"x86_64": "ax", "aarch64": "x0"}

_FETCH = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>%[A-Za-z0-9_]+|\$retval)"
                    r"(?::(?P<type>[sux](?:8|16|32|64)))?$")


def register_field(kernel_arg: str, machine: str) -> CtxField:
    """The CtxField of one translated fetch arg (``NAME=FETCH[:TYPE]``, as
    dynamic_probes.translate_fetchargs writes it)."""
    found = _FETCH.match(kernel_arg)
    regs = PT_REGS.get(machine, {})
    if found is None:
        return CtxField(0, 0, readable=False)
    value = found["value"]
    register = RETURN_REGISTER.get(machine, "") if value == "$retval" else value[1:]
    if register not in regs:
        return CtxField(0, 0, readable=False)
    kind = found["type"] or "u64"  # the kernel's default type for a register
    size = int(kind[1:]) // 8
    # a register's low bytes are at its slot's start (little-endian)
    return CtxField(regs[register], size, signed=kind[0] == "s")


def uprobe_event(probe: int, event: str, kernel_args: Sequence[str], is_return: bool, probename: bytes,
                 pid: Optional[int] = None, kind: Optional[str] = None,
                 machine: Optional[str] = None) -> KernelEvent:
    """The KernelEvent of a uprobe, uretprobe or USDT probe whose fetch args
    are `kernel_args` (argN: the fetch args in order)."""
    machine = machine or {"amd64": "x86_64", "arm64": "aarch64"}.get(os.uname().machine, os.uname().machine)
    fields = {arg.split("=", 1)[0]: register_field(arg, machine) for arg in kernel_args}
    kind = kind or ("uretprobe" if is_return else "uprobe")
    return KernelEvent(probe, event, kind, probename, fields, tuple(fields), pid)
