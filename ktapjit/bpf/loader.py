"""Loading a BPF object: each global function becomes one program, its
map references patched to the fds of the maps it names.

A map reference is what the BPF backend emits for the address of an
external global: an ``ld_imm64`` (two instruction slots) with an
R_BPF_64_64 relocation against the undefined symbol named after the map.
Loading sets the instruction's src_reg to BPF_PSEUDO_MAP_FD and its imm to
the map's fd; the verifier turns that into the map's address.

The license is "GPL": the tracing helpers ktapjit's programs call
(bpf_probe_read_user_str, bpf_get_stack, bpf_perf_event_output,
bpf_ringbuf_output, ...) are GPL-only, and the verifier refuses a program
whose license is not GPL-compatible when it calls one (docs/bpf-kernel.md).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.errors import BpfError
from ktapjit.bpf.object_file import (R_BPF_64_32, R_BPF_64_64, SHN_UNDEF, STT_FUNC, STT_SECTION, BpfObject,
                                     Relocation, Symbol)
from ktapjit.bpf.objects import BpfSession, Map, Program

LICENSE = "GPL"
LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
INSN = sc.INSN_SIZE


def program_code(obj: BpfObject, function: Symbol, maps: Mapping[str, Map]) -> bytes:
    """The instructions of ``function`` with every map reference resolved."""
    section = obj.sections[function.section]
    body = obj.section_bytes(section)
    size = function.size or len(body) - function.value
    code = bytearray(body[function.value:function.value + size])
    for rel in obj.relocations(section):
        at = rel.offset - function.value
        if not 0 <= at < len(code):
            continue
        if rel.type == R_BPF_64_32:
            callee = _callee(obj, rel, struct.unpack_from("<i", code, at + 4)[0])
            raise BpfError(f"BPF program '{function.name}' calls function '{callee}': calls between BPF "
                           "functions are not supported (inline them)")
        patch_reference(code, at, rel, function.name, maps)
    return bytes(code)


def _callee(obj: BpfObject, rel: Relocation, imm: int) -> str:
    """The name of a call's target: a local function is reached through its
    section's symbol plus the call's displacement, (imm + 1) instructions."""
    if rel.symbol.name and rel.symbol.type != STT_SECTION:
        return rel.symbol.name
    target = rel.symbol.value + (imm + 1) * INSN
    named = [s.name for s in obj.symbols
             if s.section == rel.symbol.section and s.type == STT_FUNC and s.value == target]
    return named[0] if named else obj.sections[rel.symbol.section].name


def patch_reference(code: bytearray, at: int, rel: Relocation, program: str, maps: Mapping[str, Map]) -> None:
    name = rel.symbol.name
    if rel.type != R_BPF_64_64 or code[at] != LD_IMM64:
        raise BpfError(f"BPF program '{program}': unsupported relocation type {rel.type} against '{name}'")
    if rel.symbol.section != SHN_UNDEF:
        raise BpfError(f"BPF program '{program}' uses global data '{name}': only maps may be "
                       "referenced (declare them as external globals)")
    target = maps.get(name)
    if target is None:
        known = ", ".join(sorted(maps)) or "none"
        raise BpfError(f"BPF program '{program}' references map '{name}', which was not given "
                       f"(maps given: {known})")
    regs = code[at + 1]
    code[at + 1] = (regs & 0x0F) | (sc.BPF_PSEUDO_MAP_FD << 4)  # dst_reg kept, src_reg = PSEUDO_MAP_FD
    struct.pack_into("<i", code, at + 4, target.live_fd())
    struct.pack_into("<i", code, at + INSN + 4, 0)  # the second slot's imm: the upper half, 0


def load_object(session: BpfSession, object_bytes: bytes, maps: Mapping[str, Map],
                prog_types: int | Mapping[str, int], bind: tuple[Map, ...] = ()) -> dict[str, Program]:
    """Load every program of the object into ``session``; ``prog_types`` is
    one type for all or one per function name. Each program is also bound
    to the maps in ``bind`` (the ``ktapjit_src`` map), so its info lists
    them though its code never touches them."""
    obj = BpfObject(object_bytes)
    functions = obj.functions()
    if not functions:
        raise BpfError("the BPF object defines no program (no global function)")
    loaded = {}
    for function in functions:
        prog_type = prog_types if isinstance(prog_types, int) else prog_types.get(function.name)
        if prog_type is None:
            raise BpfError(f"no program type given for BPF program '{function.name}'")
        program = session.load_program(function.name, prog_type, program_code(obj, function, maps), LICENSE)
        for held in bind:
            sc.prog_bind_map(program.fd, held.live_fd())
        loaded[function.name] = program
    return loaded
