"""A reader of the relocatable ELF objects the BPF backend emits: sections,
symbols and REL relocations, from bytes in memory.

ktapjit.events.probes.elf reads linked executables from files (segments, function
symbols, USDT notes) and has no relocations; an object from llvmlite is
bytes and needs little else, so this reader is its own (and small).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ktapjit.bpf.errors import BpfError

EM_BPF = 247
ET_REL = 1
SHT_SYMTAB = 2
SHT_REL = 9
SHF_EXECINSTR = 0x4
SHN_UNDEF = 0
STT_FUNC = 2
STT_SECTION = 3
STB_GLOBAL = 1

R_BPF_64_64 = 1  # an ld_imm64 of a symbol's address: where maps are referenced
R_BPF_64_32 = 10  # a call to another BPF function


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    type: int
    bind: int
    section: int  # st_shndx; SHN_UNDEF for a symbol the object only references


@dataclass(frozen=True)
class Relocation:
    offset: int  # into the section it applies to
    type: int
    symbol: Symbol


class BpfObject:
    """One ELF64 little-endian BPF relocatable object."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        if len(self.data) < 64 or self.data[:4] != b"\x7fELF":
            raise BpfError("not an ELF object (the BPF backend's output was expected)")
        if self.data[4] != 2 or self.data[5] != 1:
            raise BpfError("not a 64-bit little-endian ELF object (expected the bpfel target)")
        e_type, e_machine = struct.unpack_from("<HH", self.data, 16)
        if e_machine != EM_BPF or e_type != ET_REL:
            raise BpfError(f"not a BPF relocatable object (ELF machine {e_machine}, type {e_type})")
        self.sections = self._read_sections()
        self.symbols = self._read_symbols()

    def _read_sections(self) -> list[Section]:
        shoff, = struct.unpack_from("<Q", self.data, 40)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", self.data, 58)
        raw = [struct.unpack_from("<IIQQQQIIQQ", self.data, shoff + i * shentsize) for i in range(shnum)]
        names = raw[shstrndx][4] if shnum else 0
        return [Section(i, self._cstr(names + r[0]), r[1], r[2], r[4], r[5], r[6], r[7])
                for i, r in enumerate(raw)]

    def _read_symbols(self) -> list[Symbol]:
        tables = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not tables:
            return []
        table = tables[0]
        strings = self.sections[table.link].offset
        out = []
        for off in range(table.offset, table.offset + table.size, 24):
            name, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", self.data, off)
            out.append(Symbol(self._cstr(strings + name), value, size, info & 0xF, info >> 4, shndx))
        return out

    def _cstr(self, offset: int) -> str:
        end = self.data.index(b"\0", offset)
        return self.data[offset:end].decode("utf-8", "replace")

    def section_bytes(self, section: Section) -> bytes:
        return self.data[section.offset:section.offset + section.size]

    def relocations(self, section: Section) -> list[Relocation]:
        """The REL entries that apply to ``section``."""
        out = []
        for rel in self.sections:
            if rel.type != SHT_REL or rel.info != section.index:
                continue
            for off in range(rel.offset, rel.offset + rel.size, 16):
                r_offset, r_info = struct.unpack_from("<QQ", self.data, off)
                out.append(Relocation(r_offset, r_info & 0xFFFFFFFF, self.symbols[r_info >> 32]))
        return out

    def functions(self) -> list[Symbol]:
        """The global function definitions: one program each."""
        return [s for s in self.symbols
                if s.type == STT_FUNC and s.bind == STB_GLOBAL and s.section != SHN_UNDEF]
