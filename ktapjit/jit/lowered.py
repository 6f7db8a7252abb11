"""What lowering yields besides the LLVM IR text, and what the engine reads
of it at run time: the entry roles, the tables it fills at load (sites,
strings, event slots) and the host slots' order.

Kept apart from lower.py so that a run whose native code is already made
(a cached script, a bundle) never imports lower.py and llvmlite.ir.

May import: ktapjit.ir, ktapjit.diag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ktapjit.diag import Span
from ktapjit.ir.func import Func, Module

# Host values follow the script globals in s->globals: run_api.Host's
# attributes, in this order (lower.py reads them by position); then the
# address of each name of Module.kernel_symbol_names(), filled when the run
# starts so that no address is in the code (KASLR; the cache keys the IR).
HOST_SLOTS = ("num_cpus", "arch", "kernel_release")


@dataclass
class Lowered:
    """The LLVM module text and the tables the engine needs to run it."""

    llvm_ir: str
    entries: dict[str, str]  # "main", "probe0", "timer1", "trace_end" -> symbol
    sites: list[Optional[Span]]  # site id -> where a runtime error is reported
    strings: list[bytes]  # ktap_strings[i] must hold the interned kstr of strings[i]
    event_slots: list[tuple[str, str]]  # slot -> ("value"|"field"|"stack"|"memory", name)
    entry_slots: dict[str, list[int]] = field(default_factory=dict)  # entry -> slots it reads
    nglobals: int = 0


def entry_functions(module: Module) -> dict[str, Func]:
    """The functions the engine enters, by role: main, probeN, timerN, trace_end."""
    entries = {"main": module.main}
    entries.update({f"probe{i}": p.func for i, p in enumerate(module.probes)})
    entries.update({f"timer{i}": t.func for i, t in enumerate(module.timers)})
    if module.trace_end is not None:
        entries["trace_end"] = module.trace_end
    return entries
