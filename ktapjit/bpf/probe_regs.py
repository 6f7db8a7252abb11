"""Where a uprobe's fetch arguments live for a BPF program: the program's
context is the probed task's saved registers (struct pt_regs on x86-64,
struct user_pt_regs on arm64), so a fetch arg that names a register is a
load at that register's offset, one that reads memory at a register plus a
displacement (``-24(%bp)``, as USDT arguments do) a read of user memory
there, and an immediate (``\\42``) a constant. Fetch args that dereference
twice or read strings are left unreadable (the lowering refuses a probe
that reads one; it runs in user space)."""

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
INSTRUCTION_POINTER = {"x86_64": "ip", "aarch64": "pc"}

_FETCH = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?:(?P<value>%[A-Za-z0-9_]+|\$retval)"
                    r"|\\(?P<imm>-?(?:0x[0-9a-fA-F]+|\d+))|(?P<disp>[+-]?\d+)\((?P<base>%[A-Za-z0-9_]+)\))"
                    r"(?::(?P<type>[sux](?:8|16|32|64)))?$")


def register_field(kernel_arg: str, machine: str) -> CtxField:
    """The CtxField of one translated fetch arg (``NAME=FETCH[:TYPE]``, as
    dynamic_probes.translate_fetchargs writes it)."""
    found = _FETCH.match(kernel_arg)
    regs = PT_REGS.get(machine, {})
    if found is None:
        return CtxField(0, 0, readable=False)
    kind = found["type"] or "u64"  # the kernel's default type
    size, signed = int(kind[1:]) // 8, kind[0] == "s"
    if found["imm"] is not None:
        return CtxField(0, size, signed, constant=_typed(int(found["imm"], 0), size, signed))
    value = found["value"] or found["base"]
    register = RETURN_REGISTER.get(machine, "") if value == "$retval" else value[1:]
    if register not in regs:
        return CtxField(0, 0, readable=False)
    if found["disp"] is not None:
        return CtxField(regs[register], size, signed, deref=int(found["disp"]))
    # a register's low bytes are at its slot's start (little-endian)
    return CtxField(regs[register], size, signed)


def _typed(value: int, size: int, signed: bool) -> int:
    """An immediate as the kernel stores it in a field of `size` bytes."""
    bits = size * 8
    value &= (1 << bits) - 1
    return value - (1 << bits) if signed and value >> (bits - 1) else value


def address_fields(is_return: bool, machine: str) -> dict[str, CtxField]:
    """The fields the kernel puts before a uprobe's fetch args: an entry
    probe's ``__probe_ip``; a return probe's ``__probe_func`` (both the
    probed address, which bpf_get_func_ip() gives a uprobe's program) and
    ``__probe_ret_ip``, where the function returns to: the saved
    instruction pointer once it has returned."""
    if not is_return:
        return {"__probe_ip": CtxField(0, 8, func_ip=True)}
    regs = PT_REGS.get(machine, {})
    ip = regs.get(INSTRUCTION_POINTER.get(machine, ""))
    ret_ip = CtxField(ip, 8) if ip is not None else CtxField(0, 0, readable=False)
    return {"__probe_func": CtxField(0, 8, func_ip=True), "__probe_ret_ip": ret_ip}


def host_machine() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(os.uname().machine, os.uname().machine)


def uprobe_event(probe: int, event: str, kernel_args: Sequence[str], is_return: bool, probename: bytes,
                 pid: Optional[int] = None, kind: Optional[str] = None,
                 machine: Optional[str] = None, arg_names: Optional[Sequence[str]] = None,
                 sites: Sequence[tuple[int, bytes]] = ()) -> KernelEvent:
    """The KernelEvent of a uprobe, uretprobe or USDT probe whose fetch args
    are `kernel_args`. argN: `arg_names` (the bound event's, so that arg0 is
    the probe address as in user space), by default the fetch args in order."""
    machine = machine or host_machine()
    fields = {arg.split("=", 1)[0]: register_field(arg, machine) for arg in kernel_args}
    names = tuple(fields) if arg_names is None else tuple(arg_names)
    fields = {**address_fields(is_return, machine), **fields}
    kind = kind or ("uretprobe" if is_return else "uprobe")
    return KernelEvent(probe, event, kind, probename, fields, names, pid, sites=tuple(sites))
