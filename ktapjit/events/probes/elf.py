"""A small ELF64 reader: what uprobes, USDT and user stack symbolization need.

Only little-endian ELF64 is read (x86-64 and AArch64, the machines ktapjit
runs on); anything else is a clear :class:`ElfError`. The reader maps the file
and parses lazily:

- the section headers (names from ``.shstrtab``) and program headers;
- function symbols from ``.symtab`` and ``.dynsym`` (``STT_FUNC`` and
  ``STT_GNU_IFUNC``, defined, non-zero), with name, value, size, type, bind;
- ``.note.stapsdt`` USDT notes, with the standard ``.stapsdt.base``
  adjustment (prelink may move the image after the notes were written).

uprobes are placed by **file offset** (``uprobe_events`` takes
``PATH:OFFSET``), so :func:`symbol_file_offset` maps a symbol's virtual address
to a file offset through the PT_LOAD segment that holds it::

    offset = vaddr - p_vaddr + p_offset

The same formula serves a non-PIE executable (vaddrs near 0x400000), a PIE and
a shared library (vaddrs near 0): the load bias never matters for a file
offset. A hex offset (``0x1149``) is passed through unchanged: ktap wrote file
offsets there, as uprobe_events does.

Every failure is an :class:`ElfError` whose ``str()`` is one line for the
user: not an ELF file, unsupported class or byte order, no such symbol (with
close matches), a stripped binary.
"""

from __future__ import annotations

import bisect
import ctypes
import difflib
import fnmatch
import mmap
import os
import re
import stat
import struct
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, NamedTuple, Optional

from ktapjit.events.errors import EventsError

__all__ = [
    "ElfError",
    "NoSuchSymbolError",
    "Section",
    "Segment",
    "Symbol",
    "SdtArg",
    "SdtNote",
    "ElfFile",
    "ResolvedSymbol",
    "open_elf",
    "symbol_file_offset",
    "is_hex_offset",
    "parse_sdt_args",
    "EM_X86_64",
    "EM_AARCH64",
]

EM_X86_64 = 62
EM_AARCH64 = 183
_MACHINES = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}

ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
_ET_NAMES = {ET_REL: "relocatable", ET_EXEC: "executable", ET_DYN: "shared object", ET_CORE: "core"}

SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOBITS = 8
SHT_NOTE = 7
SHT_DYNSYM = 11
SHN_UNDEF = 0
SHN_ABS = 0xFFF1

PT_LOAD = 1
PF_X = 1

STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STT_GNU_IFUNC = 10
_STT_NAMES = {0: "NOTYPE", 1: "OBJECT", 2: "FUNC", 3: "SECTION", 4: "FILE", 5: "COMMON",
              6: "TLS", 10: "IFUNC"}
_STB_NAMES = {0: "LOCAL", 1: "GLOBAL", 2: "WEAK", 10: "UNIQUE"}

NT_STAPSDT = 3

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_NHDR = struct.Struct("<III")


class ElfError(EventsError):
    """A file we cannot use as an ELF object; ``str()`` is one line."""


class NoSuchSymbolError(ElfError):
    """The symbol (or glob) matched no function symbol."""


@dataclass(frozen=True, slots=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True, slots=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


@dataclass(frozen=True, slots=True)
class Symbol:
    """One symbol: ``value`` is its virtual address in the file's own layout."""

    name: str
    value: int
    size: int
    type: str  # FUNC, IFUNC, OBJECT, NOTYPE, ...
    bind: str  # LOCAL, GLOBAL, WEAK, UNIQUE
    shndx: int
    table: str  # ".symtab" or ".dynsym"


class ResolvedSymbol(NamedTuple):
    """A uprobe target: the symbol (None for a hex offset) and its file offset."""

    symbol: Optional[Symbol]
    offset: int

    @property
    def name(self) -> str:
        return self.symbol.name if self.symbol is not None else f"{self.offset:#x}"


@dataclass(frozen=True, slots=True)
class SdtArg:
    """One USDT argument, as ``SIZE@OPERAND`` in the note: ``-4@%eax`` is a
    signed 4-byte value in eax; ``8@-8(%rbp)`` an unsigned 8-byte one in memory."""

    size: int  # bytes: 1, 2, 4, 8
    signed: bool
    operand: str  # the assembler operand, e.g. %eax, -8(%rbp), $5, [sp, 16], x0
    text: str  # as written in the note


@dataclass(frozen=True, slots=True)
class SdtNote:
    """One USDT site from ``.note.stapsdt``.

    ``pc`` and ``semaphore`` are virtual addresses already adjusted by
    ``.stapsdt.base``; ``pc_offset`` and ``semaphore_offset`` are the file
    offsets uprobe_events wants (``PATH:pc_offset(semaphore_offset)``).
    ``semaphore`` is 0 when the probe has none.
    """

    provider: str
    name: str
    pc: int
    base: int  # as written in the note
    semaphore: int
    args_text: str
    args: tuple[SdtArg, ...]
    pc_offset: int
    semaphore_offset: Optional[int]


def is_hex_offset(text: str) -> bool:
    """``0x1149``: a file offset, passed through as ktap did."""
    return re.fullmatch(r"0[xX][0-9a-fA-F]+", text) is not None


def is_glob(text: str) -> bool:
    """Whether a symbol name is a glob (``* ? [..]``), for find_functions."""
    return any(ch in text for ch in "*?[")


class ElfFile:
    """A mapped ELF64 little-endian file. Use as a context manager, or call
    :meth:`close`; :func:`open_elf` caches instances by (path, inode, mtime)."""

    def __init__(self, path: str):
        self.path = str(path)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ElfError(f"cannot open '{self.path}': no such file") from None
        except IsADirectoryError:
            raise ElfError(f"'{self.path}' is a directory, not an ELF file") from None
        except PermissionError:
            raise ElfError(f"cannot open '{self.path}': permission denied") from None
        except OSError as exc:
            raise ElfError(f"cannot open '{self.path}': {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ElfError(f"'{self.path}' is a directory, not an ELF file")
            if not stat.S_ISREG(st.st_mode):
                raise ElfError(f"'{self.path}' is not a regular file, not an ELF file")
            self.size = st.st_size
            self.identity = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            if st.st_size < 64:
                raise ElfError(f"'{self.path}' is not an ELF file (too short)")
            try:
                self._map, unmap = _map_read_only(fd, st.st_size)
                self._unmap = weakref.finalize(self, unmap)  # runs once: on close() or when collected
            except OSError as exc:
                raise ElfError(f"cannot map '{self.path}': {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        try:
            self._parse_header()
        except BaseException:
            self.close()
            raise
        self._sections: Optional[list[Section]] = None
        self._segments: Optional[list[Segment]] = None
        self._symbols: dict[str, list[Symbol]] = {}
        self._notes: Optional[list[SdtNote]] = None

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        unmap = getattr(self, "_unmap", None)
        if unmap is not None:
            self._map = None
            unmap()

    def __enter__(self) -> "ElfFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- raw access -----------------------------------------------------------------------

    def _read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ElfError(f"'{self.path}' is truncated or corrupt "
                           f"(read of {size} bytes at {offset:#x} past the end)")
        return bytes(self._map[offset:offset + size])

    def _parse_header(self) -> None:
        ident = bytes(self._map[:16])
        if ident[:4] != b"\x7fELF":
            raise ElfError(f"'{self.path}' is not an ELF file")
        if ident[4] != 2:
            raise ElfError(f"'{self.path}' is a 32-bit ELF file; only 64-bit ELF is supported")
        if ident[5] != 1:
            raise ElfError(f"'{self.path}' is a big-endian ELF file; only little-endian is supported")
        (_, self.type, self.machine, _version, self.entry, self.phoff, self.shoff, _flags,
         _ehsize, self.phentsize, self.phnum, self.shentsize, self.shnum,
         self.shstrndx) = _EHDR.unpack_from(self._map, 0)
        if self.shoff and self.shnum == 0:
            # More than 0xff00 sections: the count is in section 0's sh_size.
            self.shnum = _SHDR.unpack_from(self._read(self.shoff, _SHDR.size))[4]
        if self.shstrndx == 0xFFFF and self.shoff:
            self.shstrndx = _SHDR.unpack_from(self._read(self.shoff, _SHDR.size))[6]

    @property
    def machine_name(self) -> str:
        return _MACHINES.get(self.machine, f"machine {self.machine}")

    @property
    def type_name(self) -> str:
        return _ET_NAMES.get(self.type, f"type {self.type}")

    @property
    def is_pie_or_shared(self) -> bool:
        return self.type == ET_DYN

    # -- headers ---------------------------------------------------------------------------

    @property
    def sections(self) -> list[Section]:
        if self._sections is None:
            self._sections = self._read_sections()
        return self._sections

    def _read_sections(self) -> list[Section]:
        if not self.shoff or not self.shnum:
            return []
        if self.shentsize != _SHDR.size:
            raise ElfError(f"'{self.path}': unexpected section header size {self.shentsize}")
        raw = self._read(self.shoff, self.shnum * _SHDR.size)
        rows = [_SHDR.unpack_from(raw, i * _SHDR.size) for i in range(self.shnum)]
        names = b""
        if 0 < self.shstrndx < len(rows):
            s = rows[self.shstrndx]
            if s[1] != SHT_NOBITS:
                names = self._read(s[4], s[5])
        out = []
        for i, (name, stype, flags, addr, off, size, link, info, _align, entsize) in enumerate(rows):
            out.append(Section(i, _cstr(names, name), stype, flags, addr, off, size, link, info, entsize))
        return out

    def section(self, name: str) -> Optional[Section]:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def section_data(self, sec: Section) -> bytes:
        if sec.type == SHT_NOBITS:
            return b""
        return self._read(sec.offset, sec.size)

    @property
    def segments(self) -> list[Segment]:
        if self._segments is None:
            self._segments = self._read_segments()
        return self._segments

    def _read_segments(self) -> list[Segment]:
        if not self.phoff or not self.phnum:
            return []
        if self.phentsize != _PHDR.size:
            raise ElfError(f"'{self.path}': unexpected program header size {self.phentsize}")
        raw = self._read(self.phoff, self.phnum * _PHDR.size)
        return [Segment(*_PHDR.unpack_from(raw, i * _PHDR.size)) for i in range(self.phnum)]

    @property
    def load_segments(self) -> list[Segment]:
        return [s for s in self.segments if s.type == PT_LOAD]

    # -- address translation ------------------------------------------------------------

    def vaddr_to_offset(self, vaddr: int) -> Optional[int]:
        """The file offset holding the byte at ``vaddr``; None when no PT_LOAD
        segment has it in the file (e.g. .bss)."""
        for seg in self.load_segments:
            if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                return vaddr - seg.vaddr + seg.offset
        return None

    def offset_to_vaddr(self, offset: int) -> Optional[int]:
        """The inverse: the vaddr of file offset ``offset`` (None outside PT_LOADs)."""
        for seg in self.load_segments:
            if seg.offset <= offset < seg.offset + seg.filesz:
                return offset - seg.offset + seg.vaddr
        return None

    def vaddr_to_offset_anywhere(self, vaddr: int) -> Optional[int]:
        """Like vaddr_to_offset but accepts addresses past p_filesz (inside
        p_memsz): what a uprobe ``ref_ctr_offset`` needs for a .bss semaphore."""
        for seg in self.load_segments:
            if seg.vaddr <= vaddr < seg.vaddr + max(seg.memsz, seg.filesz):
                return vaddr - seg.vaddr + seg.offset
        return None

    # -- symbols -----------------------------------------------------------------------------

    def has_table(self, name: str) -> bool:
        sec = self.section(name)
        return sec is not None and sec.size > 0

    def symbols(self, table: str = ".symtab") -> list[Symbol]:
        """Every symbol of ``.symtab`` or ``.dynsym`` (the null symbol excluded)."""
        if table not in self._symbols:
            self._symbols[table] = self._read_symbols(table)
        return self._symbols[table]

    def _read_symbols(self, table: str) -> list[Symbol]:
        sec = self.section(table)
        if sec is None or sec.type not in (SHT_SYMTAB, SHT_DYNSYM) or sec.size == 0:
            return []
        if not 0 <= sec.link < len(self.sections):
            raise ElfError(f"'{self.path}': {table} has a bad string table link")
        strtab = self.section_data(self.sections[sec.link])
        data = self.section_data(sec)
        entsize = sec.entsize or _SYM.size
        out = []
        for pos in range(entsize, len(data) - _SYM.size + 1, entsize):
            name, info, _other, shndx, value, size = _SYM.unpack_from(data, pos)
            out.append(Symbol(_cstr(strtab, name), value, size,
                              _STT_NAMES.get(info & 0xF, str(info & 0xF)),
                              _STB_NAMES.get(info >> 4, str(info >> 4)), shndx, table))
        return out

    def function_symbols(self) -> list[Symbol]:
        """Defined function symbols of .symtab and .dynsym, deduplicated by
        (name, value), .symtab first."""
        seen: set[tuple[str, int]] = set()
        out = []
        for table in (".symtab", ".dynsym"):
            for sym in self.symbols(table):
                if sym.type not in ("FUNC", "IFUNC") or sym.shndx == SHN_UNDEF or not sym.value:
                    continue
                if not sym.name:
                    continue
                key = (sym.name, sym.value)
                if key not in seen:
                    seen.add(key)
                    out.append(sym)
        return out

    def find_functions(self, name_or_glob: str) -> list[Symbol]:
        """Function symbols named ``name_or_glob`` (globs ``* ? [..]``).

        An exact name gives every distinct address with that name (static
        functions of different files may share one). A glob gives one symbol
        per address, preferring a global name, so aliases (``malloc`` and
        ``__libc_malloc``) are probed once. Sorted by address."""
        funcs = self.function_symbols()
        if not is_glob(name_or_glob):
            found = [s for s in funcs if s.name == name_or_glob]
            if not found and "@" in name_or_glob:
                # malloc@GLIBC_2.2.5 / malloc@@GLIBC_2.2.5: the version is not in the name.
                base = name_or_glob.split("@", 1)[0]
                found = [s for s in funcs if s.name == base]
            by_addr: dict[int, Symbol] = {}
            for s in found:
                by_addr.setdefault(s.value, s)
            return sorted(by_addr.values(), key=lambda s: s.value)
        best: dict[int, Symbol] = {}
        for s in funcs:
            if not fnmatch.fnmatchcase(s.name, name_or_glob):
                continue
            cur = best.get(s.value)
            if cur is None or _preference(s) < _preference(cur):
                best[s.value] = s
        return sorted(best.values(), key=lambda s: s.value)

    def resolve(self, name_or_glob: str) -> list[ResolvedSymbol]:
        """uprobe targets for a symbol, a glob or a hex file offset; raises
        NoSuchSymbolError (with close matches, or why: stripped) when none."""
        if is_hex_offset(name_or_glob):
            return [ResolvedSymbol(None, int(name_or_glob, 16))]
        found = self.find_functions(name_or_glob)
        if not found:
            raise NoSuchSymbolError(self._no_symbol_message(name_or_glob))
        out = []
        for sym in found:
            off = self.vaddr_to_offset(sym.value)
            if off is None:
                if self.type == ET_REL:
                    raise ElfError(f"'{self.path}' is a relocatable object (.o): "
                                   "uprobes need a linked executable or shared library")
                raise ElfError(f"symbol '{sym.name}' of '{self.path}' at {sym.value:#x} "
                               "is in no loadable segment")
            out.append(ResolvedSymbol(sym, off))
        return out

    def _no_symbol_message(self, name: str) -> str:
        has_symtab = self.has_table(".symtab")
        has_dynsym = self.has_table(".dynsym")
        what = "functions matching" if is_glob(name) else "function symbol"
        if not has_symtab and not has_dynsym:
            return (f"no {what} '{name}' in '{self.path}': it is stripped (no .symtab and no "
                    f".dynsym); probe a hex file offset instead")
        names = sorted({s.name for s in self.function_symbols()})
        probe = re.sub(r"[*?\[\]]", "", name)
        close = difflib.get_close_matches(probe, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if not has_symtab:
            return (f"no {what} '{name}' in '{self.path}' (it is stripped: no .symtab, only "
                    f"the {len(names)} functions of .dynsym){hint}")
        return f"no {what} '{name}' in '{self.path}'{hint}"

    def symbol_at(self, vaddr: int) -> Optional[tuple[Symbol, int]]:
        """The function symbol containing ``vaddr`` and the offset into it."""
        return _SymbolIndex.of(self).lookup(vaddr)

    # -- USDT -------------------------------------------------------------------------------

    def sdt_notes(self) -> list[SdtNote]:
        """Every ``.note.stapsdt`` entry, in file order."""
        if self._notes is None:
            self._notes = self._read_sdt_notes()
        return self._notes

    def _read_sdt_notes(self) -> list[SdtNote]:
        sec = self.section(".note.stapsdt")
        if sec is None:
            return []
        data = self.section_data(sec)
        base_sec = self.section(".stapsdt.base")
        actual_base = base_sec.addr if base_sec is not None else None
        out = []
        pos = 0
        while pos + _NHDR.size <= len(data):
            namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
            pos += _NHDR.size
            name = data[pos:pos + namesz]
            pos += _align4(namesz)
            desc = data[pos:pos + descsz]
            pos += _align4(descsz)
            if ntype != NT_STAPSDT or name.rstrip(b"\0") != b"stapsdt" or len(desc) < 24:
                continue
            pc, base, sema = struct.unpack_from("<QQQ", desc, 0)
            strings = desc[24:].split(b"\0")
            if len(strings) < 3:
                raise ElfError(f"'{self.path}': malformed .note.stapsdt entry")
            provider, pname, args_text = (s.decode("utf-8", "replace") for s in strings[:3])
            # The standard adjustment: the note recorded where .stapsdt.base was
            # at link time; if the image moved since (prelink), move with it.
            if actual_base is not None and base:
                delta = actual_base - base
                pc += delta
                if sema:
                    sema += delta
            pc_off = self.vaddr_to_offset(pc)
            if pc_off is None:
                raise ElfError(f"'{self.path}': USDT {provider}:{pname} at {pc:#x} "
                               "is in no loadable segment")
            sema_off = self.vaddr_to_offset_anywhere(sema) if sema else None
            out.append(SdtNote(provider, pname, pc, base, sema, args_text,
                               parse_sdt_args(args_text), pc_off, sema_off))
        return out

    def find_sdt(self, provider: str, name: str) -> list[SdtNote]:
        """USDT sites matching ``provider`` and ``name`` (globs allowed);
        raises NoSuchSymbolError with the known markers when none match."""
        notes = self.sdt_notes()
        found = [n for n in notes if _match(provider, n.provider) and _match(name, n.name)]
        if found:
            return found
        if not notes:
            raise NoSuchSymbolError(f"no USDT probe '{provider}:{name}' in '{self.path}': "
                                    "it has no .note.stapsdt section")
        known = sorted({f"{n.provider}:{n.name}" for n in notes})
        same_provider = sorted({n.name for n in notes if _match(provider, n.provider)})
        if same_provider:
            close = [f"{provider}:{c}" for c in difflib.get_close_matches(name, same_provider, n=3, cutoff=0.6)]
        else:
            close = difflib.get_close_matches(f"{provider}:{name}", known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; it has {', '.join(known[:5])}"
        if not close and len(known) > 5:
            hint += ", ..."
        raise NoSuchSymbolError(f"no USDT probe '{provider}:{name}' in '{self.path}'{hint}")


def _match(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) if is_glob(pattern) else pattern == name


def _preference(sym: Symbol) -> tuple:
    # Global before weak before local; then names without leading underscores;
    # then shorter; then alphabetical, so the choice is deterministic.
    rank = {"GLOBAL": 0, "WEAK": 1}.get(sym.bind, 2)
    return (rank, len(sym.name) - len(sym.name.lstrip("_")), len(sym.name), sym.name)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _cstr(table: bytes, offset: int) -> str:
    if offset >= len(table):
        return ""
    end = table.find(b"\0", offset)
    if end < 0:
        end = len(table)
    return table[offset:end].decode("utf-8", "surrogateescape")


_SDT_ARG = re.compile(r"^(-?)(\d+)@(.+)$")


def parse_sdt_args(text: str) -> tuple[SdtArg, ...]:
    """Split a stapsdt argument string: ``-4@%eax 8@-8(%rbp) -4@$5`` (x86) or
    ``-4@x0 8@[sp, 16]`` (AArch64, whose memory operands hold a space)."""
    out = []
    for token in _split_args(text):
        m = _SDT_ARG.match(token)
        if m is None:
            # Very old notes have no size: the operand alone, 8 bytes.
            out.append(SdtArg(8, False, token, token))
            continue
        out.append(SdtArg(int(m.group(2)), m.group(1) == "-", m.group(3), token))
    return tuple(out)


def _split_args(text: str) -> list[str]:
    tokens, cur, depth = [], "", 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        if ch.isspace() and depth == 0:
            if cur:
                tokens.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        tokens.append(cur)
    return tokens


class _SymbolIndex:
    """Sorted function symbols of one file, for address -> symbol lookups.

    A symbol covers [value, value + size); a symbol of size 0 covers up to the
    next symbol, within its executable segment."""

    _cache: dict[tuple, "_SymbolIndex"] = {}

    def __init__(self, elf: ElfFile):
        funcs = sorted(elf.function_symbols(), key=lambda s: (s.value, _preference(s)))
        # One symbol per address (the preferred alias).
        self.syms: list[Symbol] = []
        for s in funcs:
            if self.syms and self.syms[-1].value == s.value:
                continue
            self.syms.append(s)
        self.starts = [s.value for s in self.syms]
        self.segments = [(seg.vaddr, seg.vaddr + seg.memsz) for seg in elf.load_segments]

    @classmethod
    def of(cls, elf: ElfFile) -> "_SymbolIndex":
        key = (elf.path, elf.identity)
        idx = cls._cache.get(key)
        if idx is None:
            idx = cls._cache[key] = cls(elf)
        return idx

    def lookup(self, vaddr: int) -> Optional[tuple[Symbol, int]]:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        # A sized symbol that covers vaddr may start before a nearer size-0 one.
        for j in range(i, max(-1, i - 4), -1):
            sym = self.syms[j]
            if sym.size and sym.value <= vaddr < sym.value + sym.size:
                return sym, vaddr - sym.value
        if i < 0:
            return None
        sym = self.syms[i]
        if sym.size == 0:
            end = self.starts[i + 1] if i + 1 < len(self.starts) else None
            seg_end = next((hi for lo, hi in self.segments if lo <= sym.value < hi), None)
            if seg_end is not None and (end is None or seg_end < end):
                end = seg_end
            if end is not None and vaddr < end:
                return sym, vaddr - sym.value
        return None


def _map_read_only(fd: int, size: int) -> tuple[memoryview, Callable[[], None]]:
    """The file behind ``fd`` mapped read-only, and the function that unmaps
    it (to run once). Not mmap.mmap: that
    keeps a duplicate of the fd open while mapped, and open_elf's cache
    kept every probed binary open for the life of the process."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:  # MAP_FAILED
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")

    def unmap(view=view) -> None:
        view.release()  # no access through it can reach the unmapped pages
        libc.munmap(addr, size)

    return view, unmap


@lru_cache(maxsize=64)
def _open_cached(path: str, identity: tuple) -> ElfFile:
    return ElfFile(path)


def open_elf(path: str) -> ElfFile:
    """An ElfFile for ``path``, cached while the file is unchanged (same
    device, inode, mtime and size). Do not close the returned object."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ElfError(f"cannot open '{path}': no such file") from None
    except OSError as exc:
        raise ElfError(f"cannot open '{path}': {exc.strerror}") from None
    return _open_cached(str(path), (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))


def symbol_file_offset(path: str, name_or_glob: str) -> list[ResolvedSymbol]:
    """``[(symbol, file offset), ...]`` for a function name, a glob, or a hex
    file offset (passed through with symbol None), in ``path`` (an executable,
    PIE or not, or a shared library). Raises ElfError / NoSuchSymbolError."""
    return open_elf(path).resolve(name_or_glob)
