"""``bpf(2)`` through ctypes: one function per command ktapjit uses.

The attribute layouts mirror ``union bpf_attr`` and the info structs of
``include/uapi/linux/bpf.h`` (Linux 6.18), each cut after the last field
ktapjit sets or reads: the kernel accepts a shorter attr (it zero-fills the
rest) and writes no more info than the length it is given. Functions here
return raw fds, ids and bytes and raise ``BpfError``; owning the fds is
``objects``' job.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from typing import Iterator

from ktapjit.bpf.errors import PERMISSION, BpfError, UnsupportedError, VerifierError, failure

# --- enum bpf_cmd ---------------------------------------------------------------------------
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_FREEZE = 22
BPF_MAP_LOOKUP_BATCH = 24
BPF_PROG_BIND_MAP = 35

# --- enum bpf_map_type ----------------------------------------------------------------------
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_RINGBUF = 27

MAP_TYPE_NAMES = {
    BPF_MAP_TYPE_HASH: "hash", BPF_MAP_TYPE_ARRAY: "array",
    BPF_MAP_TYPE_PERF_EVENT_ARRAY: "perf event array", BPF_MAP_TYPE_PERCPU_HASH: "per-CPU hash",
    BPF_MAP_TYPE_PERCPU_ARRAY: "per-CPU array", BPF_MAP_TYPE_RINGBUF: "ring buffer",
}

# --- enum bpf_prog_type ---------------------------------------------------------------------
BPF_PROG_TYPE_KPROBE = 2  # also uprobes and uretprobes
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_PERF_EVENT = 7

PROG_TYPE_NAMES = {BPF_PROG_TYPE_KPROBE: "kprobe/uprobe", BPF_PROG_TYPE_TRACEPOINT: "tracepoint",
                   BPF_PROG_TYPE_PERF_EVENT: "perf event"}

# --- flags ----------------------------------------------------------------------------------
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY = 1 << 3
BPF_F_RDONLY_PROG = 1 << 7
BPF_PSEUDO_MAP_FD = 1

OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN, with the NUL
ENOTSUPP = 524  # the kernel's own 'not supported', absent from user space's errno.h
INSN_SIZE = 8


class MapCreateAttr(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * OBJ_NAME_LEN)]


class MapElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]  # value doubles as next_key


class MapBatchAttr(ctypes.Structure):
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64),
                ("keys", ctypes.c_uint64), ("values", ctypes.c_uint64),
                ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * OBJ_NAME_LEN),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32)]


class GetIdAttr(ctypes.Structure):
    """GET_NEXT_ID (start_id -> next_id) and GET_FD_BY_ID (id)."""
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class FdAttr(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_uint32)]


class BindMapAttr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("map_fd", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class ProgInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
                ("name", ctypes.c_char * OBJ_NAME_LEN)]


class MapInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("name", ctypes.c_char * OBJ_NAME_LEN)]


_SYSCALL_NR = {"x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280}
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _bpf_nr() -> int:
    machine = platform.machine().lower()
    try:
        return _SYSCALL_NR[machine]
    except KeyError:
        raise UnsupportedError(f"bpf(2) on {machine!r}: ktapjit knows its number only on x86_64 and aarch64") from None


def bpf(cmd: int, attr: ctypes.Structure) -> tuple[int, int]:
    """One bpf(2) call: (result, errno); errno is 0 on success."""
    rc = _syscall(ctypes.c_long(_bpf_nr()), ctypes.c_int(cmd), ctypes.byref(attr),
                  ctypes.c_uint(ctypes.sizeof(attr)))
    return (rc, 0) if rc >= 0 else (rc, ctypes.get_errno())


def _checked(cmd: int, attr: ctypes.Structure, what: str) -> int:
    rc, err = bpf(cmd, attr)
    if err:
        raise failure(what, err)
    return rc


def object_name(name: str) -> bytes:
    """A map or program name as the kernel accepts it: at most 15 characters
    of [A-Za-z0-9_.]; anything else becomes '_'."""
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_.") else "_" for ch in name)
    return safe[:OBJ_NAME_LEN - 1].encode()


def _address(buf) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


# --- maps -----------------------------------------------------------------------------------

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               name: str, flags: int = 0) -> int:
    """BPF_MAP_CREATE: the new map's fd."""
    attr = MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                         max_entries=max_entries, map_flags=flags, map_name=object_name(name))
    rc, err = bpf(BPF_MAP_CREATE, attr)
    if not err:
        return rc
    kind = MAP_TYPE_NAMES.get(map_type, f"type {map_type}")
    if err == errno.EINVAL and map_type not in (BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY) and not _map_type_works(map_type):
        raise UnsupportedError(f"this kernel does not support BPF {kind} maps (BPF_MAP_TYPE {map_type})", err)
    if err == errno.E2BIG or err == errno.EINVAL:
        raise BpfError(f"cannot create BPF {kind} map '{name}' with key size {key_size}, value size "
                       f"{value_size}, {max_entries} entries: the kernel refuses these sizes", err)
    raise failure(f"cannot create BPF {kind} map '{name}'", err)


def _map_type_works(map_type: int) -> bool:
    """Whether the kernel creates a small map of ``map_type`` at all: tells
    an unsupported type from sizes it refuses."""
    probe = {BPF_MAP_TYPE_RINGBUF: (0, 0, 4096), BPF_MAP_TYPE_PERF_EVENT_ARRAY: (4, 4, 1)}
    key, value, entries = probe.get(map_type, (4, 8, 1))
    rc, err = bpf(BPF_MAP_CREATE, MapCreateAttr(map_type=map_type, key_size=key, value_size=value,
                                                max_entries=entries))
    if err:
        return False
    os.close(rc)
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """BPF_MAP_LOOKUP_ELEM: the value bytes, or None when the key is absent."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value_size)
    rc, err = bpf(BPF_MAP_LOOKUP_ELEM, MapElemAttr(map_fd=fd, key=_address(kbuf), value=_address(vbuf)))
    if err == errno.ENOENT:
        return None
    if err:
        raise failure("BPF map lookup", err)
    return vbuf.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value, len(value))
    rc, err = bpf(BPF_MAP_UPDATE_ELEM, MapElemAttr(map_fd=fd, key=_address(kbuf), value=_address(vbuf),
                                                   flags=flags))
    if err == errno.EPERM:  # whoever holds the fd may write it, unless it is frozen
        raise BpfError("BPF map update: the map is frozen (read-only to user space)", err)
    if err:
        raise failure("BPF map update", err)


def map_delete(fd: int, key: bytes) -> bool:
    """BPF_MAP_DELETE_ELEM: False when the key was absent."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    rc, err = bpf(BPF_MAP_DELETE_ELEM, MapElemAttr(map_fd=fd, key=_address(kbuf)))
    if err == errno.ENOENT:
        return False
    if err:
        raise failure("BPF map delete", err)
    return True


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """BPF_MAP_GET_NEXT_KEY: the key after ``key`` (the first for None), or None at the end."""
    kbuf = ctypes.create_string_buffer(key, key_size) if key is not None else None
    nbuf = ctypes.create_string_buffer(key_size)
    rc, err = bpf(BPF_MAP_GET_NEXT_KEY, MapElemAttr(map_fd=fd, key=_address(kbuf), value=_address(nbuf)))
    if err == errno.ENOENT:
        return None
    if err:
        raise failure("BPF map iteration", err)
    return nbuf.raw


def map_lookup_batch(fd: int, key_size: int, value_size: int, count: int) -> list[tuple[bytes, bytes]] | None:
    """BPF_MAP_LOOKUP_BATCH over the whole map, ``count`` entries a call;
    None when this kernel or map type has no batch lookup (the caller walks
    the keys instead)."""
    out: list[tuple[bytes, bytes]] = []
    keys = ctypes.create_string_buffer(key_size * count)
    values = ctypes.create_string_buffer(value_size * count)
    in_batch, out_batch = ctypes.c_uint64(), ctypes.c_uint64()  # opaque tokens: 4 bytes (hash) or 8
    first = True
    while True:
        attr = MapBatchAttr(in_batch=0 if first else ctypes.addressof(in_batch),
                            out_batch=ctypes.addressof(out_batch), keys=_address(keys),
                            values=_address(values), count=count, map_fd=fd)
        rc, err = bpf(BPF_MAP_LOOKUP_BATCH, attr)
        if err and err != errno.ENOENT:
            if first and err in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP):
                return None
            raise failure("BPF map batch lookup", err)
        raw_k, raw_v = keys.raw, values.raw
        out += [(raw_k[i * key_size:(i + 1) * key_size], raw_v[i * value_size:(i + 1) * value_size])
                for i in range(attr.count)]
        if err == errno.ENOENT:  # the last batch
            return out
        in_batch.value, first = out_batch.value, False


def map_freeze(fd: int) -> None:
    """BPF_MAP_FREEZE: user space may no longer write the map."""
    _checked(BPF_MAP_FREEZE, FdAttr(fd=fd), "BPF map freeze")


# --- programs -------------------------------------------------------------------------------

LOG_START = 64 * 1024
LOG_MAX = 256 * 1024 * 1024  # kernels before 5.2 cap log_size lower; we stop growing at ENOSPC past this


def prog_load(prog_type: int, insns: bytes, name: str, license: str = "GPL") -> int:
    """BPF_PROG_LOAD: the new program's fd. Loaded first without a log (a
    verbose log of a long accepted program can overflow and fail the load);
    a refusal is loaded again with log level 1, the buffer grown on ENOSPC,
    and raised as VerifierError naming ``name`` with the log."""
    rc, err = _load(prog_type, insns, name, license, None)
    if not err:
        return rc
    if err == errno.EPERM:
        raise BpfError(f"cannot load BPF program '{name}': {PERMISSION}", err)
    log = _refusal_log(prog_type, insns, name, license)
    if err == errno.EINVAL and not log.strip():
        kind = PROG_TYPE_NAMES.get(prog_type, f"type {prog_type}")
        raise UnsupportedError(f"cannot load BPF program '{name}': this kernel does not support "
                               f"{kind} programs (EINVAL without a verifier log)", err)
    if err not in (errno.EACCES, errno.EINVAL, errno.E2BIG) and not log.strip():
        raise failure(f"cannot load BPF program '{name}'", err)
    reason = last_log_line(log)
    raise VerifierError(f"the BPF verifier rejected program '{name}': {reason} (-v shows its log)",
                        name, log, err)


def _load(prog_type: int, insns: bytes, name: str, license: str, log) -> tuple[int, int]:
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // INSN_SIZE, insns=_address(code),
                        license=_address(lic), prog_name=object_name(name))
    if log is not None:
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), _address(log)
    return bpf(BPF_PROG_LOAD, attr)


def _refusal_log(prog_type: int, insns: bytes, name: str, license: str) -> str:
    size = LOG_START
    while True:
        log = ctypes.create_string_buffer(size)
        rc, err = _load(prog_type, insns, name, license, log)
        if not err:  # accepted this time (should not happen): keep the fd tidy
            os.close(rc)
            return ""
        if err != errno.ENOSPC or size >= LOG_MAX:
            return log.value.decode("utf-8", "replace")
        size *= 4


def last_log_line(log: str) -> str:
    """The verifier's reason: the last line of its log that is not its summary."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    skip = ("processed ", "verification time", "stack depth", "mark_precise")
    reasons = [line for line in lines if not line.startswith(skip)]
    return reasons[-1] if reasons else "no reason given"


def prog_bind_map(prog_fd: int, map_fd: int) -> None:
    """BPF_PROG_BIND_MAP: the program holds the map (and lists its id) without using it."""
    rc, err = bpf(BPF_PROG_BIND_MAP, BindMapAttr(prog_fd=prog_fd, map_fd=map_fd))
    if err == errno.EINVAL:
        raise UnsupportedError("this kernel cannot bind a map to a BPF program (BPF_PROG_BIND_MAP, Linux 5.10)",
                               err)
    if err:
        raise failure("BPF program bind map", err)


# --- ids and info ---------------------------------------------------------------------------

def next_id(cmd: int, start: int) -> int | None:
    """PROG/MAP_GET_NEXT_ID: the next id after ``start``, or None at the end."""
    attr = GetIdAttr(id=start)
    rc, err = bpf(cmd, attr)
    if err == errno.ENOENT:
        return None
    if err:
        raise _listing_failure(err)
    return attr.next_id


def _listing_failure(err: int) -> BpfError:
    # The kernel lets only CAP_SYS_ADMIN walk or open other processes' objects.
    if err in (errno.EPERM, errno.EACCES):
        return BpfError("listing BPF objects: permission denied: needs root (CAP_SYS_ADMIN)", err)
    return failure("listing BPF objects", err)


def prog_ids() -> list[int]:
    return _ids(BPF_PROG_GET_NEXT_ID)


def map_ids() -> list[int]:
    return _ids(BPF_MAP_GET_NEXT_ID)


def _ids(cmd: int) -> list[int]:
    ids, current = [], 0
    while (current := next_id(cmd, current)) is not None:
        ids.append(current)
    return ids


def loaded_programs() -> Iterator[tuple[int, ProgInfo, list[int]]]:
    """(id, info, ids of its maps) of every BPF program loaded now, by any
    process, in id order; a program unloaded while we walk is skipped."""
    for prog_id in prog_ids():
        fd = fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)
        if fd is None:
            continue
        try:
            info, maps = prog_info(fd)
        finally:
            os.close(fd)
        yield prog_id, info, maps


def fd_by_id(cmd: int, id_: int) -> int | None:
    """PROG/MAP_GET_FD_BY_ID: an fd on the object, or None when it is gone."""
    rc, err = bpf(cmd, GetIdAttr(id=id_))
    if err == errno.ENOENT:
        return None
    if err:
        raise _listing_failure(err)
    return rc


def obj_info(fd: int, info: ctypes.Structure) -> ctypes.Structure:
    """BPF_OBJ_GET_INFO_BY_FD into ``info`` (a ProgInfo or MapInfo, with any
    out-pointers already set)."""
    _checked(BPF_OBJ_GET_INFO_BY_FD, InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info),
                                              info=ctypes.addressof(info)), "BPF object info")
    return info


def prog_info(fd: int) -> tuple[ProgInfo, list[int]]:
    """The program's info and the ids of the maps it uses or is bound to."""
    info = obj_info(fd, ProgInfo())
    count = info.nr_map_ids
    if not count:
        return info, []
    ids = (ctypes.c_uint32 * count)()
    again = ProgInfo(nr_map_ids=count, map_ids=ctypes.addressof(ids))
    obj_info(fd, again)
    return again, list(ids[:min(count, again.nr_map_ids)])


def map_info(fd: int) -> MapInfo:
    return obj_info(fd, MapInfo())
