"""Syscall events as the kernel's own text trace prints them.

`syscalls:sys_enter_*` and `sys_exit_*` have a print fmt (`fd: 0x%08lx`,
`0x%lx`) that `perf script` follows, but the kernel's text trace (the
tracefs `trace` file, and ktap before ktapjit) does not use it: it prints
them with functions of its own (kernel/trace/trace_syscalls.c,
print_syscall_enter and print_syscall_exit):

    sys_openat(dfd: 0xffffff9c, filename: 0x7ffd1000, flags: 0x80000, mode: 0)
    sys_openat -> 0x3

that is, the syscall's name, then each argument as an unsigned long, in
decimal below 10 and as 0x-prefixed hex from 10 on; the return value as
0x-prefixed hex of its unsigned long. argstr follows the kernel
(docs/language-notes.md, "argstr").

The rule is written here as a print fmt, which parse.py reads in place of
the event's own: both back ends (closures.py and the JIT's bytecode.py)
then render it with their ordinary machinery, byte for byte alike. Below
10 decimal and hex digits are the same, so the rule is a prefix chosen by
a conditional: `%s%lx` of `REC->a < 10 ? "" : "0x"` and `REC->a`.

Kernels that copy a string argument into the event (a `__NAME_val`
`__data_loc char[]` field after the arguments) print it after the
argument's value, in quotes; an argument copied as a byte array needs the
size argument only the kernel's metadata names, so such an event keeps its
own print fmt (perf's rendering).
"""

from __future__ import annotations

from typing import Optional

from ktapjit.events.schema import EventFormat

SYSTEM = "syscalls"
ENTER, EXIT = "sys_enter_", "sys_exit_"
NR_FIELD = "__syscall_nr"


def kernel_text_print_fmt(ev: EventFormat) -> Optional[str]:
    """The print fmt that renders *ev* as the kernel's text trace does, or
    None when *ev* is not a syscall event this rule covers."""
    if ev.system != SYSTEM:
        return None
    if ev.name.startswith(ENTER):
        return _enter(ev, "sys_" + ev.name[len(ENTER):])
    if ev.name.startswith(EXIT) and ev.field("ret") is not None:
        return f'"sys_{ev.name[len(EXIT):]} -> 0x%lx", REC->ret'
    return None


def _enter(ev: EventFormat, name: str) -> Optional[str]:
    fields = [f for f in ev.fields if f.name != NR_FIELD]
    copied = {f.name for f in fields if f.name.startswith("__") and f.name.endswith("_val")}
    args = [f for f in fields if f.name not in copied]
    if any(f.dynamic or f.size != 8 for f in args):
        return None  # not the kernel's layout of syscall arguments (unsigned longs)
    texts, refs = [], []
    for f in args:
        value = f"((unsigned long)(REC->{f.name}))"
        texts.append(f"{f.name}: %s%lx")
        refs += [f'{value} < 10 ? "" : "0x"', value]
        val = f"__{f.name}_val"
        if val in copied:
            field = ev.field(val)
            if not (field.dynamic and field.is_string):
                return None  # a byte array: see the module's docstring
            texts[-1] += ' \\"%s\\"'
            refs.append(f"__get_str({val})")
            copied.discard(val)
    if copied:
        return None  # a copy of no argument we know
    return f'"{name}({", ".join(texts)})"' + "".join(f", {ref}" for ref in refs)
