"""Addresses to names, for ``stack()`` and ``ustack()``.

- Kernel addresses: ``/proc/kallsyms`` (or a copy of it), sorted once and
  searched with bisect; a hit prints as ``sym+0xoff``. kallsyms has no sizes,
  so a symbol extends to the next one. With ``kptr_restrict`` every address
  reads as 0: the table is then empty and ``reason`` says why.
- User addresses: the mappings of each process (from PERF_RECORD_MMAP/MMAP2:
  start, length, page offset, file name, or from /proc/PID/maps for processes
  that existed before tracing), then the ELF symbols of the mapped file::

      file offset = addr - start + pgoff
      vaddr       = the ELF vaddr of that file offset (through PT_LOAD)
      name        = the function symbol covering vaddr

  which works for PIE executables and shared libraries alike, whatever their
  load address.

Unknown addresses print as ``[unknown]``, as perf prints them.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ktapjit.events.probes.elf import ElfError, ElfFile, open_elf

__all__ = [
    "UNKNOWN",
    "KernelSymbolizer",
    "UserSymbolizer",
    "Mapping",
    "format_symbol",
    "running_kernel_build_id",
]

UNKNOWN = "[unknown]"

# kallsyms types that name code. 'a'/'A' are absolute values, the rest data.
_TEXT_TYPES = frozenset("tTwW")
# kallsyms has no sizes: an address further than this past the symbol below it
# is in a gap (between the kernel and the modules, past the last module).
_MAX_KERNEL_OFFSET = 1 << 20


def format_symbol(name: str, offset: int) -> str:
    return f"{name}+{offset:#x}"


class KernelSymbolizer:
    """Kernel address -> ``sym+0xoff`` from a kallsyms text."""

    def __init__(self, text: Optional[str] = None, path: str = "/proc/kallsyms",
                 text_only: bool = True):
        self.reason = ""
        if text is None:
            try:
                text = Path(path).read_text(errors="replace")
            except OSError as exc:
                text = ""
                self.reason = f"cannot read {path}: {exc.strerror}"
        entries: list[tuple[int, str, Optional[str]]] = []
        zero = 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            if text_only and parts[1] not in _TEXT_TYPES:
                continue
            if addr == 0:
                zero += 1
                continue
            module = parts[3].strip("[]") if len(parts) > 3 else None
            entries.append((addr, parts[2], module))
        if not entries and zero and not self.reason:
            self.reason = (f"{path} shows every address as 0 (kernel.kptr_restrict, or not "
                           "root): kernel stacks cannot be symbolized")
        entries.sort(key=lambda e: e[0])
        self._addrs = [e[0] for e in entries]
        self._names = [e[1] for e in entries]
        self._modules = [e[2] for e in entries]

    @property
    def available(self) -> bool:
        return bool(self._addrs)

    def __len__(self) -> int:
        return len(self._addrs)

    def lookup(self, addr: int) -> Optional[tuple[str, int, Optional[str]]]:
        """(symbol, offset, module or None), or None below the first symbol."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        if addr - self._addrs[i] > _MAX_KERNEL_OFFSET:
            return None  # far past the nearest symbol: a gap, not a function
        return self._names[i], addr - self._addrs[i], self._modules[i]

    def symbolize(self, addr: int) -> str:
        hit = self.lookup(addr)
        return UNKNOWN if hit is None else format_symbol(hit[0], hit[1])


_NT_GNU_BUILD_ID = 3


def running_kernel_build_id(notes: str = "/sys/kernel/notes") -> Optional[bytes]:
    """The running kernel's build-id (its NT_GNU_BUILD_ID ELF note), the
    identity /proc/kallsyms belongs to; None where the notes are unreadable."""
    try:
        data = Path(notes).read_bytes()
    except OSError:
        return None
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from("=III", data, pos)
        desc = pos + 12 + (namesz + 3) // 4 * 4
        if kind == _NT_GNU_BUILD_ID and data[pos + 12:pos + 12 + namesz] == b"GNU\0":
            return data[desc:desc + descsz]
        pos = desc + (descsz + 3) // 4 * 4
    return None


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    pgoff: int
    path: str

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end


class UserSymbolizer:
    """Per-process mappings, and ELF symbols of the mapped files."""

    def __init__(self):
        self._maps: dict[int, list[Mapping]] = {}
        self._starts: dict[int, list[int]] = {}
        self._bad_files: set[str] = set()

    # -- mappings ----------------------------------------------------------------------

    def add_mapping(self, pid: int, start: int, length: int, pgoff: int, path) -> None:
        """One mapping of ``path`` (bytes or str) at [start, start+length) of
        ``pid``, file offset ``pgoff`` at ``start``. Older mappings it overlaps
        are dropped (a new mmap replaces them, as in the kernel)."""
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        new = Mapping(start, start + length, pgoff, path)
        maps = [m for m in self._maps.get(pid, []) if m.end <= new.start or m.start >= new.end]
        maps.append(new)
        maps.sort(key=lambda m: m.start)
        self._maps[pid] = maps
        self._starts[pid] = [m.start for m in maps]

    def add_record(self, record) -> None:
        """A decoded PERF_RECORD_MMAP or MMAP2 (``ktapjit.events.records.decode``)."""
        self.add_mapping(record.pid, record.addr, record.len, record.pgoff, record.filename)

    def fork(self, parent: int, child: int) -> None:
        """A new process starts with a copy of its parent's mappings."""
        if parent != child and parent in self._maps:
            self._maps[child] = list(self._maps[parent])
            self._starts[child] = list(self._starts[parent])

    def exit(self, pid: int) -> None:
        self._maps.pop(pid, None)
        self._starts.pop(pid, None)

    def add_proc_maps(self, pid: int, proc: Path = Path("/proc")) -> int:
        """Mappings of a running process from /proc/PID/maps (file-backed ones);
        returns how many were added (0 when the process is gone)."""
        try:
            text = (proc / str(pid) / "maps").read_text(errors="surrogateescape")
        except OSError:
            return 0
        n = 0
        for line in text.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 6 or not parts[5].startswith("/"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5]
            if path.endswith(" (deleted)"):
                path = path[: -len(" (deleted)")]
            self.add_mapping(pid, lo, hi - lo, int(parts[2], 16), path)
            n += 1
        return n

    def mappings(self, pid: int) -> list[Mapping]:
        return list(self._maps.get(pid, []))

    def mapping_at(self, pid: int, addr: int) -> Optional[Mapping]:
        starts = self._starts.get(pid)
        if not starts:
            return None
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0:
            m = self._maps[pid][i]
            if m.contains(addr):
                return m
        return None

    # -- lookups -----------------------------------------------------------------------------

    def _elf(self, path: str) -> Optional[ElfFile]:
        if path in self._bad_files or not path.startswith("/"):
            return None  # [vdso], [heap], anon: no file to read
        try:
            return open_elf(path)
        except ElfError:
            self._bad_files.add(path)
            return None

    def lookup(self, pid: int, addr: int) -> Optional[tuple[str, int, str]]:
        """(function, offset into it, file path), or None."""
        m = self.mapping_at(pid, addr)
        if m is None:
            return None
        elf = self._elf(m.path)
        if elf is None:
            return None
        vaddr = elf.offset_to_vaddr(addr - m.start + m.pgoff)
        if vaddr is None:
            return None
        hit = elf.symbol_at(vaddr)
        if hit is None:
            return None
        return hit[0].name, hit[1], m.path

    def symbolize(self, pid: int, addr: int) -> str:
        """``func+0x1a``, or ``[unknown]``."""
        hit = self.lookup(pid, addr)
        return UNKNOWN if hit is None else format_symbol(hit[0], hit[1])

    def symbolize_many(self, pid: int, addrs: Iterable[int]) -> list[str]:
        return [self.symbolize(pid, a) for a in addrs]
