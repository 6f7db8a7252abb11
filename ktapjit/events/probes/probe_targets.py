"""Where a probe target named without a path lives: `libc` in
`probe:libc:malloc`, `bash` in `probe:bash:readline`.

A name holding a '/' is a path and is taken as written. A bare NAME is looked
up, in this order:

1. the dynamic linker's cache, /etc/ld.so.cache: an entry whose soname is
   NAME, or starts with ``NAME.so`` (`libc` finds `libc.so.6`; `c` finds
   nothing). Entries built for this machine's ABI come first (the cache
   also lists, say, i386 libraries on an x86-64 host), then the cache's own
   order, which puts the newest version of a soname first;
2. the linker's default directories (/lib/<multiarch>, /usr/lib/<multiarch>,
   /lib64, /usr/lib64, /lib, /usr/lib: those that exist), for a library the
   cache does not list: ``NAME`` itself if it has ``.so`` in it, else
   ``NAME.so*``;
3. $PATH, for a program: the first executable ELF file NAME, as a shell
   finds it (`bash` -> /usr/bin/bash), scripts passed over.

A file in the current directory needs its path (`./prog`), as in a shell.

The cache is read by this module's own parser of glibc's format (the
``glibc-ld.so.cache1.1`` table, alone or after the old ``ld.so-1.7.0`` one);
a cache it cannot parse is read through ``ldconfig -p`` instead.

May import: ktapjit.events.errors and the standard library.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ktapjit.events.errors import EventsError

__all__ = ["CacheEntry", "TargetNotFound", "CacheFormatError", "LD_SO_CACHE", "parse_ld_so_cache",
           "parse_ldconfig_output", "read_ld_so_cache", "default_directories", "find_target", "is_bare_name"]

LD_SO_CACHE = "/etc/ld.so.cache"

_OLD_MAGIC = b"ld.so-1.7.0"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_HEADER = struct.Struct("<11sxI")  # magic, padding to 4, nlibs
_OLD_ENTRY_SIZE = 12  # int flags; unsigned key, value
_NEW_HEADER = struct.Struct("<20sII20x")  # magic+version, nlibs, len_strings, unused
_NEW_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap

# The entry flags: the low byte is the library kind, the next the ABI it
# needs; ldconfig -p prints both as words, e.g. "(libc6,x86-64)".
_TYPE_MASK = 0x00FF
_REQUIRED_MASK = 0xFF00
_TYPE_WORDS = {0x00: "libc4", 0x01: "ELF", 0x02: "libc5", 0x03: "libc6"}
_ABI_WORDS = {
    0x0000: "", 0x0100: "64bit", 0x0200: "IA-64", 0x0300: "x86-64", 0x0400: "64bit", 0x0500: "64bit",
    0x0600: "N32", 0x0700: "64bit", 0x0800: "x32", 0x0900: "hard-float", 0x0A00: "AArch64",
    0x0B00: "soft-float", 0x0C00: "nan2008", 0x0D00: "N32,nan2008", 0x0E00: "64bit,nan2008",
    0x0F00: "soft-float", 0x1000: "double-float",
}
# The ABI flag of this machine's own libraries, where it is not ambiguous.
_HOST_ABI = {"x86_64": 0x0300, "aarch64": 0x0A00, "i386": 0x0000, "i686": 0x0000}
_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "i686": "i386-linux-gnu",
              "i386": "i386-linux-gnu"}


class TargetNotFound(EventsError):
    """A bare name matched no library and no program; ``str()`` says where
    it was looked for."""


class CacheFormatError(ValueError):
    """The bytes are not an ld.so.cache this parser knows."""


@dataclass(frozen=True)
class CacheEntry:
    name: str  # the soname, e.g. libc.so.6
    flags: int
    path: str  # e.g. /lib/x86_64-linux-gnu/libc.so.6

    @property
    def kind(self) -> str:
        """ldconfig -p's words for the flags: `libc6,x86-64`."""
        kind = _TYPE_WORDS.get(self.flags & _TYPE_MASK, "unknown")
        required = self.flags & _REQUIRED_MASK
        abi = _ABI_WORDS.get(required, str(required))
        return f"{kind},{abi}" if abi else kind


# --- the cache ---------------------------------------------------------------------------------

def _c_string(data: bytes, start: int) -> str:
    if not 0 <= start < len(data):
        raise CacheFormatError(f"string offset {start} is outside the file")
    end = data.find(b"\0", start)
    if end < 0:
        raise CacheFormatError(f"string at {start} is not terminated")
    return os.fsdecode(data[start:end])


def _new_table_start(data: bytes) -> int:
    """Where the new-format table begins: at 0, or after the old table
    (aligned to 8), where a cache written for old linkers too puts it."""
    if data.startswith(_NEW_MAGIC):
        return 0
    if not data.startswith(_OLD_MAGIC) or len(data) < _OLD_HEADER.size:
        raise CacheFormatError("no ld.so.cache magic at its start")
    _magic, nlibs = _OLD_HEADER.unpack_from(data)
    end = _OLD_HEADER.size + nlibs * _OLD_ENTRY_SIZE
    for align in (8, 4):  # ALIGN_CACHE is 8 on most ABIs, 4 on some 32-bit ones
        start = (end + align - 1) & ~(align - 1)
        if data[start:start + len(_NEW_MAGIC)] == _NEW_MAGIC:
            return start
    raise CacheFormatError("an old-format-only cache (ld.so-1.7.0 without glibc-ld.so.cache1.1)")


def parse_ld_so_cache(data: bytes) -> list[CacheEntry]:
    """The entries of an ld.so.cache, in the file's order. Strings are
    offsets from the start of the new table (glibc's dl-cache.h)."""
    start = _new_table_start(data)
    if len(data) < start + _NEW_HEADER.size:
        raise CacheFormatError("the cache header is cut short")
    _magic, nlibs, _len_strings = _NEW_HEADER.unpack_from(data, start)
    first = start + _NEW_HEADER.size
    if first + nlibs * _NEW_ENTRY.size > len(data):
        raise CacheFormatError(f"{nlibs} entries do not fit in {len(data)} bytes")
    entries = []
    for i in range(nlibs):
        flags, key, value, _osversion, _hwcap = _NEW_ENTRY.unpack_from(data, first + i * _NEW_ENTRY.size)
        entries.append(CacheEntry(_c_string(data, start + key), flags, _c_string(data, start + value)))
    return entries


_LDCONFIG_LINE = re.compile(r"^\t(\S+) \(([^)]*)\) => (.+)$")
_KIND_FLAGS = {v: k for k, v in _TYPE_WORDS.items()}
_ABI_FLAGS = {v: k for k, v in reversed(list(_ABI_WORDS.items()))}  # "64bit": its first flag


def parse_ldconfig_output(text: str) -> list[CacheEntry]:
    """`ldconfig -p`'s lines as entries (the fallback reader): `\\tNAME
    (KIND[,ABI][, hwcap: ...]) => PATH`."""
    entries = []
    for line in text.splitlines():
        m = _LDCONFIG_LINE.match(line)
        if not m:
            continue
        words = m.group(2).split(", ")[0].split(",", 1)
        flags = _KIND_FLAGS.get(words[0], 0x03) | _ABI_FLAGS.get(words[1] if len(words) > 1 else "", 0)
        entries.append(CacheEntry(m.group(1), flags, m.group(3)))
    return entries


def read_ld_so_cache(path: str = LD_SO_CACHE) -> list[CacheEntry]:
    """This machine's cache entries; [] when there is no cache at all."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        data = None
    if data is not None:
        try:
            return parse_ld_so_cache(data)
        except CacheFormatError:
            pass
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None)
    if ldconfig is None:
        return []
    try:
        out = subprocess.run([ldconfig, "-p", "-C", path], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_ldconfig_output(out.stdout) if out.returncode == 0 else []


# --- the search --------------------------------------------------------------------------------

def _machine() -> str:
    return os.uname().machine


def default_directories(machine: Optional[str] = None) -> list[str]:
    """The dynamic linker's own library directories here, in its order, as
    far as they exist."""
    machine = machine or _machine()
    multiarch = _MULTIARCH.get(machine)
    candidates = ([f"/lib/{multiarch}", f"/usr/lib/{multiarch}"] if multiarch else []) + \
        ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    return [d for d in candidates if os.path.isdir(d)]


def is_bare_name(target: str) -> bool:
    return "/" not in target


def names_library(soname: str, name: str) -> bool:
    """Whether a library name (`libc`, `libc.so.6`) names the file `soname`."""
    return soname == name or soname.startswith(name + ".so")


def _from_cache(name: str, entries: Sequence[CacheEntry], machine: str) -> Optional[str]:
    found = [e for e in entries if names_library(e.name, name) and os.path.isfile(e.path)]
    host = _HOST_ABI.get(machine)
    if host is not None:
        found.sort(key=lambda e: (e.flags & _REQUIRED_MASK) != host)  # stable: cache order within
    return found[0].path if found else None


def _from_directories(name: str, directories: Sequence[str]) -> Optional[str]:
    for d in directories:
        if ".so" in name and os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
        try:
            hits = sorted(f for f in os.listdir(d) if f.startswith(name + ".so"))
        except OSError:
            continue
        hits = [os.path.join(d, f) for f in hits if os.path.isfile(os.path.join(d, f))]
        if hits:
            return hits[0]
    return None


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _from_path(name: str, search_path: str) -> Optional[str]:
    """The first ELF executable NAME in $PATH: a script there (a pyenv shim,
    say) has no functions to probe, and is passed over."""
    for d in search_path.split(os.pathsep):
        candidate = os.path.join(d, name)
        if d and os.path.isfile(candidate) and os.access(candidate, os.X_OK) and _is_elf(candidate):
            return candidate
    return None


def find_target(name: str, *, cache: Optional[Sequence[CacheEntry]] = None, cache_file: str = LD_SO_CACHE,
                directories: Optional[Sequence[str]] = None, search_path: Optional[str] = None,
                machine: Optional[str] = None) -> str:
    """The file a probe target NAME stands for: NAME itself when it holds a
    '/', else a library or program found as the module docstring says.
    Raises TargetNotFound naming every place it looked."""
    if not is_bare_name(name):
        return name
    machine = machine or _machine()
    entries = read_ld_so_cache(cache_file) if cache is None else cache
    dirs = default_directories(machine) if directories is None else list(directories)
    search_path = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    found = (_from_cache(name, entries, machine) or _from_directories(name, dirs)
             or _from_path(name, search_path))
    if found is None:
        places = ", ".join([cache_file, *dirs])
        raise TargetNotFound(f"no library or program '{name}' in {places} or $PATH ({search_path})")
    return found
