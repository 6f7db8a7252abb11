"""Call stacks as scripts see them: `stack()` and `ustack()`.

A sample's callchain (PERF_SAMPLE_CALLCHAIN) is a list of addresses with
context markers: PERF_CONTEXT_KERNEL before the kernel frames,
PERF_CONTEXT_USER before the user frames, innermost first in each part.
`stack()` is the kernel part, `ustack()` the user part, each symbolized and
joined with "\\n", one frame per line, innermost first:

    do_syscall_64+0x5d
    entry_SYSCALL_64_after_hwframe+0x76

A frame is `symbol+0xoffset`, or `[unknown]` (perf's spelling) when no
symbol covers the address. A part the callchain lacks (a sample taken in
user mode has no kernel frames) is the empty string.

Kernel frames are symbolized with this machine's /proc/kallsyms (read once,
on the first stack()), on a replay only when the recording was made on this
kernel (`replay_kernel_symbols`); user frames with the mappings the stream reports:
MMAP/MMAP2 records (synthesized from /proc/PID/maps for processes that
existed at the start, then the kernel's own), FORK (a child inherits its
parent's mappings), COMM with the exec flag and EXIT (the mappings go).
Since those records are in a recording, a replay symbolizes user stacks the
same way; kernel stacks replay the same on the kernel (and boot) that
recorded them, and as `[unknown]` frames on any other, as perf prints them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from ktapjit.events.records import perf_abi as abi
from ktapjit.semantics.stack_request import StackRequest

if TYPE_CHECKING:
    from ktapjit.events.probes.symbolize import KernelSymbolizer

# events.probes.symbolize (ELF reading, kallsyms) is imported only by a
# stream whose script takes stacks (`needs_stacks`): others never pay for it.

_MAX = abi.PERF_CONTEXT_MAX
_KERNEL = abi.PERF_CONTEXT_KERNEL
_USER = abi.PERF_CONTEXT_USER


def split_callchain(callchain) -> tuple[list[int], list[int]]:
    """(kernel addresses, user addresses) of a callchain, innermost first.
    Guest and hypervisor frames are left out."""
    kernel: list[int] = []
    user: list[int] = []
    part = None
    for addr in callchain:
        if addr >= _MAX:
            part = kernel if addr == _KERNEL else user if addr == _USER else None
        elif part is not None:
            part.append(addr)
    return kernel, user


def replay_kernel_symbols(build_id: Optional[bytes], release: Optional[str]) -> Optional[KernelSymbolizer]:
    """What a replay names kernel frames with: None (this machine's kallsyms)
    when the recording was made on the running kernel, judged by its build-id
    (by its release where either build-id is unknown); else a symbolizer that
    knows no symbol, since another kernel's addresses would get wrong names."""
    from ktapjit.events.probes.symbolize import KernelSymbolizer

    return None if recorded_on_running_kernel(build_id, release) else KernelSymbolizer(text="")


def recorded_on_running_kernel(build_id: Optional[bytes], release: Optional[str]) -> bool:
    """Whether a recording's kernel is the running one: by build-id, or by
    release where either build-id is unknown (a reboot may still have moved
    its addresses: KASLR)."""
    from ktapjit.events.probes.symbolize import running_kernel_build_id

    running = running_kernel_build_id()
    if build_id is not None and running is not None:
        return build_id == running
    return release is None or release == os.uname().release


def needs_stacks(module, plan) -> bool:
    """Whether a stream's script takes stacks: it samples (profile-N), or a
    bound probe's body calls stack()/ustack()."""
    return any(t.kind == "profile" for t in module.timers) or any(b.callchain for b in plan.bound)


class Stacks:
    """The symbolizers of one stream, fed its side-band records by the driver."""

    def __init__(self, kernel: Optional[KernelSymbolizer] = None):
        from ktapjit.events.probes.symbolize import UserSymbolizer

        self._kernel = kernel
        self.user = UserSymbolizer()
        self._kcache: dict[int, str] = {}
        self._ucache: dict[int, dict[int, str]] = {}  # pid -> addr -> frame

    @property
    def kernel(self) -> KernelSymbolizer:
        if self._kernel is None:
            from ktapjit.events.probes.symbolize import KernelSymbolizer

            self._kernel = KernelSymbolizer()
        return self._kernel

    # -- side-band records

    def mmap(self, record) -> None:
        self.user.add_record(record)
        self._forget(record.pid)

    def fork(self, record) -> None:
        if record.pid != record.ppid:  # a new process, not a thread
            self.user.fork(record.ppid, record.pid)
            self._forget(record.pid)

    def exec(self, record) -> None:
        if record.exec and record.pid == record.tid:
            self.user.exit(record.pid)  # exec replaces the whole address space
            self._forget(record.pid)

    def exit(self, record) -> None:
        if record.pid == record.tid:
            self.user.exit(record.pid)
            self._forget(record.pid)

    def _forget(self, pid: int) -> None:
        self._ucache.pop(pid, None)

    # -- stack strings

    def render(self, sample, request: StackRequest) -> Optional[bytes]:
        """The stack() or ustack() text `request` asks for of `sample`;
        None when the sample has no callchain."""
        if sample.callchain is None:
            return None
        kernel, user = split_callchain(sample.callchain)
        if request.part == "kernel":
            cache, sym = self._kcache, self.kernel.symbolize
            frames = []
            for addr in request.frames(kernel):
                text = cache.get(addr)
                if text is None:
                    text = cache[addr] = sym(addr)
                frames.append(text)
        else:
            pid = sample.pid or 0
            cache, sym = self._ucache.setdefault(pid, {}), self.user.symbolize
            frames = []
            for addr in request.frames(user):
                text = cache.get(addr)
                if text is None:
                    text = cache[addr] = sym(pid, addr)
                frames.append(text)
        return "\n".join(frames).encode("utf-8", "surrogateescape")
