"""A static linker for the JIT's own objects: ELF64 relocatable objects
(x86-64 and AArch64, as LLVM emits them with ``reloc=pic``) into one
position-independent ``image.Image``, with no ``ld`` on the machine.

It knows what LLVM's PIC code for the small code model needs, no more:
sections laid out by permission (code, constants, data, each starting a
page), symbols resolved across the objects linked, a GOT slot per symbol
reached through the GOT, a PLT stub per imported function called, and the
relocations those objects use. What depends on the load address is left to
``image.map_image``: 64-bit absolute words (base added) and imports (the
symbol's address). Anything else, thread-local data, constructors, a
relocation kind not listed, is refused with the object's name, never
linked wrongly. ``.eh_frame`` is not loaded (profilers walk the frame
pointers the runtime keeps; docs/jit.md).

May import: stdlib, ktapjit.jit.image.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

from ktapjit.jit.image import PROT_EXEC, PROT_READ, PROT_WRITE, Image, Segment

EM_X86_64, EM_AARCH64 = 62, 183
MACHINES = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}
# Segments start on this boundary: AArch64 kernels may use 64 KiB pages.
PAGE = {"x86_64": 4096, "aarch64": 65536}

SHT_PROGBITS, SHT_SYMTAB, SHT_RELA, SHT_NOBITS = 1, 2, 4, 8
SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY = 14, 15, 16
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_TLS = 0x1, 0x2, 0x4, 0x400
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_FUNC = 2
_CONSTRUCTOR_SECTIONS = (".init_array", ".fini_array", ".preinit_array", ".ctors", ".dtors")

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")


class LinkError(Exception):
    """Objects this linker cannot link; ``str()`` is one line."""


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    data: bytes
    size: int
    align: int
    relocations: list[tuple[int, int, int, int]] = field(default_factory=list)  # (offset, type, symbol, addend)
    address: int = -1  # offset in the image, once laid out


@dataclass
class _Symbol:
    name: str
    bind: int
    shndx: int
    value: int
    size: int = 0
    is_function: bool = False


@dataclass
class _Object:
    name: str
    machine: str
    sections: dict[int, _Section]  # the loaded ones, by index
    symbols: list[_Symbol]


def _cstr(table: bytes, offset: int) -> str:
    return table[offset:table.index(b"\0", offset)].decode()


def _parse(data: bytes, name: str) -> _Object:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LinkError(f"{name}: not a little-endian ELF64 object")
    (_, e_type, e_machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = _EHDR.unpack_from(data)
    if e_type != 1:
        raise LinkError(f"{name}: not a relocatable object")
    if e_machine not in MACHINES:
        raise LinkError(f"{name}: machine {e_machine} is not x86-64 or AArch64")
    headers = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    shstr = data[headers[shstrndx][4]:headers[shstrndx][4] + headers[shstrndx][5]]
    sections: dict[int, _Section] = {}
    symbols: list[_Symbol] = []
    relas = []
    for index, (sh_name, sh_type, flags, _, offset, size, link, info, align, _) in enumerate(headers):
        section_name = _cstr(shstr, sh_name)
        if size and (sh_type in (SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY)
                     or section_name.startswith(_CONSTRUCTOR_SECTIONS)):
            raise LinkError(f"{name}: constructors or destructors ({section_name}) are not supported")
        if flags & SHF_TLS and size:
            raise LinkError(f"{name}: thread-local data ({section_name}) is not supported")
        if sh_type == SHT_SYMTAB:
            strtab = headers[link]
            strings = data[strtab[4]:strtab[4] + strtab[5]]
            for i in range(size // _SYM.size):
                st_name, st_info, _, shndx, value, st_size = _SYM.unpack_from(data, offset + i * _SYM.size)
                symbols.append(_Symbol(_cstr(strings, st_name), st_info >> 4, shndx, value, st_size,
                                       st_info & 0xF == STT_FUNC))
        elif sh_type == SHT_RELA:
            relas.append((info, offset, size))
        elif flags & SHF_ALLOC and section_name != ".eh_frame" and (size or sh_type == SHT_NOBITS):
            content = b"" if sh_type == SHT_NOBITS else data[offset:offset + size]
            sections[index] = _Section(index, section_name, sh_type, flags, content, size, max(align, 1))
    for target, offset, size in relas:
        if target in sections:
            for i in range(size // _RELA.size):
                r_offset, r_info, addend = _RELA.unpack_from(data, offset + i * _RELA.size)
                sections[target].relocations.append((r_offset, r_info & 0xFFFFFFFF, r_info >> 32, addend))
    return _Object(name, MACHINES[e_machine], sections, symbols)


# What each machine's relocations need: "got" a GOT slot for the symbol,
# "plt" a stub when the symbol is imported (a call), "abs" a 64-bit word.
_X86 = {1: "abs", 2: "pc", 4: "plt", 9: "got", 24: "pc64", 41: "got", 42: "got"}
_A64 = {257: "abs", 260: "pc64", 261: "pc", 275: "page", 277: "lo12", 278: "lo12", 284: "lo12",
        285: "lo12", 286: "lo12", 299: "lo12", 282: "plt", 283: "plt", 280: "pc", 279: "pc",
        274: "pc", 311: "got", 312: "got"}
_KINDS = {"x86_64": _X86, "aarch64": _A64}
_STUB_SIZE = {"x86_64": 8, "aarch64": 16}


@dataclass(frozen=True)
class _Target:
    """Where a symbol reference lands: an image offset, or an import."""

    offset: Optional[int] = None
    imported: Optional[str] = None


class _Linker:
    def __init__(self, objects: list[_Object]):
        self.objects = objects
        self.machine = objects[0].machine
        for obj in objects:
            if obj.machine != self.machine:
                raise LinkError(f"{obj.name}: {obj.machine} object linked with {self.machine} ones")
        self.kinds = _KINDS[self.machine]
        self.globals: dict[str, tuple[_Object, _Symbol]] = {}
        self.got: dict[tuple, int] = {}  # target key -> slot offset from the GOT's start
        self.plt: dict[str, int] = {}  # imported function -> stub offset from the PLT's start
        self.relative: list[int] = []
        self.imports: list[tuple[int, str, int]] = []

    def link(self) -> Image:
        self._collect_globals()
        self._scan()
        content, size, segments, got_at, plt_at = self._layout()
        self.got_at, self.plt_at = got_at, plt_at
        for obj in self.objects:
            for section in obj.sections.values():
                for reloc in section.relocations:
                    self._apply(content, obj, section, *reloc)
        self._fill_got(content)
        self._fill_plt(content)
        exports = {name: self._resolve(obj, sym).offset for name, (obj, sym) in self.globals.items()}
        functions = tuple((obj.sections[sym.shndx].address + sym.value, sym.size, sym.name)
                          for obj in self.objects for sym in obj.symbols
                          if sym.is_function and sym.shndx in obj.sections and sym.size)
        return Image(self.machine, bytes(content), size, segments, tuple(self.relative),
                     tuple(self.imports), exports, functions)

    def _collect_globals(self) -> None:
        for obj in self.objects:
            for sym in obj.symbols:
                if sym.bind == STB_LOCAL or sym.shndx == SHN_UNDEF or not sym.name:
                    continue
                if sym.shndx == SHN_COMMON:
                    raise LinkError(f"{obj.name}: common symbol {sym.name} (compile with -fno-common)")
                known = self.globals.get(sym.name)
                if known is None or (known[1].bind == STB_WEAK and sym.bind == STB_GLOBAL):
                    self.globals[sym.name] = (obj, sym)
                elif sym.bind == STB_GLOBAL and known[1].bind == STB_GLOBAL:
                    raise LinkError(f"{obj.name}: {sym.name} is defined twice (also in {known[0].name})")

    def _resolve(self, obj: _Object, sym: _Symbol) -> _Target:
        if sym.shndx == SHN_UNDEF:
            known = self.globals.get(sym.name)
            if known is None:
                return _Target(imported=sym.name)
            obj, sym = known
        if sym.shndx == SHN_ABS:
            raise LinkError(f"{obj.name}: absolute symbol {sym.name} is not supported")
        section = obj.sections.get(sym.shndx)
        if section is None:
            raise LinkError(f"{obj.name}: symbol {sym.name or '(section)'} is in a section not loaded")
        return _Target(offset=section.address + sym.value if section.address >= 0 else None)

    def _key(self, obj: _Object, symbol: int) -> tuple:
        sym = obj.symbols[symbol]
        if sym.shndx == SHN_UNDEF:
            known = self.globals.get(sym.name)
            return ("import", sym.name) if known is None else ("global", sym.name)
        return ("local", obj.name, sym.shndx, sym.value)

    def _scan(self) -> None:
        """Count GOT slots and PLT stubs before the layout fixes addresses."""
        for obj in self.objects:
            for section in obj.sections.values():
                for _, rtype, symbol, _ in section.relocations:
                    kind = self.kinds.get(rtype)
                    if kind is None:
                        raise LinkError(f"{obj.name}: relocation type {rtype} in {section.name} is not supported")
                    key = self._key(obj, symbol)
                    if kind == "got":
                        self.got.setdefault(key, 8 * len(self.got))
                    elif kind == "plt" and key[0] == "import":
                        self.got.setdefault(key, 8 * len(self.got))
                        self.plt.setdefault(key[1], _STUB_SIZE[self.machine] * len(self.plt))

    def _layout(self):
        page = PAGE[self.machine]
        groups = {PROT_READ | PROT_EXEC: [], PROT_READ: [], PROT_READ | PROT_WRITE: []}
        for obj in self.objects:
            for section in obj.sections.values():
                prot = PROT_READ | (PROT_EXEC if section.flags & SHF_EXECINSTR else 0) | (
                    PROT_WRITE if section.flags & SHF_WRITE else 0)
                if prot == PROT_READ | PROT_WRITE | PROT_EXEC:
                    raise LinkError(f"{obj.name}: section {section.name} is both writable and executable")
                groups[prot].append(section)
        content = bytearray()
        segments = []
        got_at = plt_at = 0

        def place(section: _Section) -> None:
            content.extend(b"\0" * (-len(content) % section.align))
            section.address = len(content)
            content.extend(section.data if section.type != SHT_NOBITS else b"\0" * section.size)

        for prot, sections in groups.items():
            content.extend(b"\0" * (-len(content) % page))
            start = len(content)
            # Initialised data before zeroed data.
            for section in sorted(sections, key=lambda s: s.type == SHT_NOBITS):
                place(section)
            if prot == PROT_READ | PROT_EXEC:
                content.extend(b"\0" * (-len(content) % 16))
                plt_at = len(content)
                content.extend(b"\0" * (_STUB_SIZE[self.machine] * len(self.plt)))
            if prot == PROT_READ | PROT_WRITE:
                content.extend(b"\0" * (-len(content) % 8))
                got_at = len(content)
                content.extend(b"\0" * (8 * len(self.got)))
            segments.append(Segment(start, len(content) - start, prot))
        return content, len(content), tuple(segments), got_at, plt_at

    def _fill_got(self, content: bytearray) -> None:
        for key, slot in self.got.items():
            at = self.got_at + slot
            if key[0] == "import":
                self.imports.append((at, key[1], 0))
            else:
                struct.pack_into("<Q", content, at, self._key_offset(key))
                self.relative.append(at)

    def _key_offset(self, key: tuple) -> int:
        if key[0] == "global":
            obj, sym = self.globals[key[1]]
            return self._resolve(obj, sym).offset
        _, obj_name, shndx, value = key
        obj = next(o for o in self.objects if o.name == obj_name)
        return obj.sections[shndx].address + value

    def _fill_plt(self, content: bytearray) -> None:
        for name, stub in self.plt.items():
            at, slot = self.plt_at + stub, self.got_at + self.got[("import", name)]
            if self.machine == "x86_64":  # jmp *slot(%rip); int3; int3
                content[at:at + 8] = b"\xff\x25" + struct.pack("<i", slot - (at + 6)) + b"\xcc\xcc"
            else:  # adrp x16, slot; ldr x17, [x16, :lo12:slot]; br x17; nop
                words = [_adrp(0x90000010, (slot >> 12) - (at >> 12)), 0xF9400211 | ((slot & 0xFFF) >> 3) << 10,
                         0xD61F0220, 0xD503201F]
                content[at:at + 16] = struct.pack("<4I", *words)

    def _apply(self, content: bytearray, obj: _Object, section: _Section, offset: int, rtype: int,
               symbol: int, addend: int) -> None:
        kind = self.kinds[rtype]
        place = section.address + offset
        sym = obj.symbols[symbol]
        target = self._resolve(obj, sym) if sym.shndx != SHN_UNDEF or sym.name in self.globals \
            else _Target(imported=sym.name)
        if kind == "got":
            s = self.got_at + self.got[self._key(obj, symbol)]
        elif kind == "abs":
            if target.imported is not None:
                self.imports.append((place, target.imported, addend))
            else:
                struct.pack_into("<Q", content, place, target.offset + addend)
                self.relative.append(place)
            return
        elif target.imported is not None:
            if kind != "plt":
                raise LinkError(f"{obj.name}: {target.imported} is imported but reached PC-relatively "
                                f"(relocation {rtype} in {section.name}): compile with -fPIC")
            s = self.plt_at + self.plt[target.imported]
        else:
            s = target.offset
        if self.machine == "x86_64":
            _apply_x86(content, obj.name, rtype, place, s, addend)
        else:
            _apply_a64(content, obj.name, rtype, place, s, addend)


def _fits(value: int, bits: int) -> bool:
    return -(1 << (bits - 1)) <= value < (1 << (bits - 1))


def _apply_x86(content: bytearray, obj: str, rtype: int, place: int, s: int, addend: int) -> None:
    value = s + addend - place
    if rtype == 24:  # R_X86_64_PC64
        struct.pack_into("<q", content, place, value)
        return
    if not _fits(value, 32):
        raise LinkError(f"{obj}: a relocation at {place:#x} is out of range")
    struct.pack_into("<i", content, place, value)


def _adrp(word: int, pages: int) -> int:
    if not _fits(pages, 21):
        raise LinkError("an ADRP relocation is out of range")
    pages &= 0x1FFFFF
    return word & ~((3 << 29) | (0x7FFFF << 5)) | (pages & 3) << 29 | (pages >> 2) << 5


def _apply_a64(content: bytearray, obj: str, rtype: int, place: int, s: int, addend: int) -> None:
    """AArch64's relocations (ELF for the Arm 64-bit Architecture, 5.7)."""
    word = struct.unpack_from("<I", content, place)[0] if rtype not in (260,) else 0
    x = s + addend
    if rtype == 260:  # PREL64
        struct.pack_into("<q", content, place, x - place)
        return
    if rtype == 261:  # PREL32
        if not _fits(x - place, 32):
            raise LinkError(f"{obj}: a relocation at {place:#x} is out of range")
        struct.pack_into("<i", content, place, x - place)
        return
    if rtype in (275, 311):  # ADR_PREL_PG_HI21, ADR_GOT_PAGE
        word = _adrp(word, (x >> 12) - (place >> 12))
    elif rtype in (277, 278, 284, 285, 286, 299, 312):  # ADD/LDST*_ABS_LO12_NC, LD64_GOT_LO12_NC
        shift = {277: 0, 278: 0, 284: 1, 285: 2, 286: 3, 299: 4, 312: 3}[rtype]
        word = word & ~(0xFFF << 10) | ((x & 0xFFF) >> shift) << 10
    elif rtype in (282, 283):  # JUMP26, CALL26
        delta = x - place
        if not _fits(delta, 28):
            raise LinkError(f"{obj}: a branch at {place:#x} is out of range")
        word = word & ~0x3FFFFFF | (delta >> 2) & 0x3FFFFFF
    elif rtype == 280:  # CONDBR19
        delta = x - place
        if not _fits(delta, 21):
            raise LinkError(f"{obj}: a branch at {place:#x} is out of range")
        word = word & ~(0x7FFFF << 5) | ((delta >> 2) & 0x7FFFF) << 5
    elif rtype == 279:  # TSTBR14
        delta = x - place
        if not _fits(delta, 16):
            raise LinkError(f"{obj}: a branch at {place:#x} is out of range")
        word = word & ~(0x3FFF << 5) | ((delta >> 2) & 0x3FFF) << 5
    elif rtype == 274:  # ADR_PREL_LO21
        word = _adrp(word, x - place)
    struct.pack_into("<I", content, place, word)


def link(objects: list[tuple[str, bytes]]) -> Image:
    """Link (name, ELF object bytes) pairs into one image; names are for errors."""
    if not objects:
        raise LinkError("nothing to link")
    return _Linker([_parse(data, name) for name, data in objects]).link()
