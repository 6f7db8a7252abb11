"""The ``ktapjit_src`` map: a script's source and command line, carried by
every program ktapjit loads, so that anyone can audit what runs in the
kernel (``ktapjit ps -v``), whichever process loaded it.

It is a one-entry BPF array map named ``ktapjit_src``, created read-only
for programs (BPF_F_RDONLY_PROG), written once and frozen (no process can
change it afterwards), and bound to every program (BPF_PROG_BIND_MAP) so
that the program's info lists its id. Its value, little-endian::

    magic "KTAPSRC\\0" (8) | version u32 | pid u32 | started u64 (ns since the epoch)
    | source length u32 | command length u32 | source | command (argv, NUL-separated)
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.errors import BpfError
from ktapjit.bpf.objects import BpfSession, Map

NAME = "ktapjit_src"
MAGIC = b"KTAPSRC\0"
VERSION = 1
HEADER = struct.Struct("<8sIIQII")
KEY = struct.pack("<I", 0)
LIMIT = 3 << 20  # the kernel refuses array values over KMALLOC_MAX_SIZE (4 MiB with 4 KiB pages)


@dataclass(frozen=True)
class Carried:
    """What a ``ktapjit_src`` map says about the session that loaded it."""

    pid: int
    started_ns: int
    source: bytes
    argv: tuple[str, ...]


def encode(carried: Carried) -> bytes:
    command = b"\0".join(arg.encode("utf-8", "surrogateescape") for arg in carried.argv)
    header = HEADER.pack(MAGIC, VERSION, carried.pid, carried.started_ns, len(carried.source), len(command))
    return header + carried.source + command


def decode(value: bytes) -> Carried | None:
    """The carried session, or None for a map of that name that is not ours."""
    if len(value) < HEADER.size:
        return None
    magic, version, pid, started, source_len, command_len = HEADER.unpack_from(value)
    if magic != MAGIC or version != VERSION or HEADER.size + source_len + command_len > len(value):
        return None
    source = value[HEADER.size:HEADER.size + source_len]
    command = value[HEADER.size + source_len:HEADER.size + source_len + command_len]
    argv = tuple(arg.decode("utf-8", "replace") for arg in command.split(b"\0")) if command else ()
    return Carried(pid, started, source, argv)


def create_source_map(session: BpfSession, source: bytes, argv: list[str],
                      pid: int | None = None, started_ns: int | None = None) -> Map:
    """The frozen ``ktapjit_src`` map for this process's script, owned by ``session``."""
    value = encode(Carried(os.getpid() if pid is None else pid,
                           time.time_ns() if started_ns is None else started_ns, source, tuple(argv)))
    if len(value) > LIMIT:
        raise BpfError(f"the script is too large to carry into the kernel for 'ktapjit ps' "
                       f"({len(value)} bytes with its command line; at most {LIMIT})")
    carrier = session.create_map(NAME, sc.BPF_MAP_TYPE_ARRAY, len(KEY), len(value), 1, sc.BPF_F_RDONLY_PROG)
    carrier.update(KEY, value)
    carrier.freeze()
    return carrier
