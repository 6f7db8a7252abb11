"""Reading the kernel's own type information (/sys/kernel/btf/vmlinux):
where a struct member lives, so a program can read a field of a kernel
object without kprobes or headers (in_iowait(): task_struct.in_iowait).

Only what a member lookup needs is decoded: the type section's records are
walked for their sizes, and the one struct asked for is read."""

from __future__ import annotations

import struct
from functools import lru_cache

from ktapjit.bpf.errors import BpfError

VMLINUX = "/sys/kernel/btf/vmlinux"
_MAGIC = 0xEB9F
_STRUCT, _UNION = 4, 5
# Bytes that follow the 12-byte common record, by kind (vlen: per member).
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


@lru_cache(maxsize=None)
def member_bit_offset(struct_name: str, member: str, path: str = VMLINUX) -> tuple[int, int]:
    """(bit offset, bit size; 0 when not a bitfield) of `member` in `struct_name`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BpfError(f"cannot read the kernel's BTF ({path}): {exc.strerror or exc}") from None
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from("<HBBIIIII", data)
    if magic != _MAGIC:
        raise BpfError(f"{path} is not BTF (magic 0x{magic:04x})")
    types = hdr_len + type_off
    strings = hdr_len + str_off

    def name(off: int) -> str:
        end = data.index(b"\0", strings + off)
        return data[strings + off:end].decode("latin-1")

    pos, end = types, types + type_len
    while pos < end:
        name_off, info, _size = struct.unpack_from("<III", data, pos)
        kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        body = pos + 12
        pos = body + _FIXED.get(kind, 0) + _PER_MEMBER.get(kind, 0) * vlen
        if kind != _STRUCT or vlen == 0 or name(name_off) != struct_name:
            continue
        for i in range(vlen):
            m_name, _type, offset = struct.unpack_from("<III", data, body + 12 * i)
            if name(m_name) == member:
                return (offset & 0xFFFFFF, offset >> 24) if kind_flag else (offset, 0)
        break
    raise BpfError(f"the kernel's BTF has no {struct_name}.{member}")
