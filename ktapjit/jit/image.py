"""A linked native image and its loading into this process: code and data
laid out as one block, position-independent, with the few words that depend
on where it lands listed beside it.

An ``Image`` is what ``elflink.link`` makes of relocatable objects (the
runtime's, a script's); it holds no address of this process, so it can be
cached on disk, shipped in a bundle, or made on another machine for this
one's target. With KTAPJIT_PERF_MAP=1 set, each mapped function is named
in /tmp/perf-PID.map, where `perf report` looks up JIT code. ``map_image`` maps it: one anonymous mapping, the base added
to each relative word, each import's address written where it is used (its
GOT slot), then each segment protected (code read+execute, constants
read-only, data read+write). Nothing is ever unmapped: generated code is
kept for the life of the process, as the shared libraries were.

Imports resolve through the ``resolve`` function given (the runtime's
exports for a script), then against the process: its libc and, for the
compiler's helpers (``__udivti3``), libgcc_s, which every glibc system has.

May import: stdlib.
"""

from __future__ import annotations

import ctypes
import marshal
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Callable, Optional

FORMAT = "ktapjit-image-2"

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


class ImageError(Exception):
    """An image that cannot be loaded here; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class Segment:
    offset: int
    size: int
    prot: int  # PROT_* bits


@dataclass(frozen=True)
class Image:
    machine: str  # "x86_64" or "aarch64"
    content: bytes  # the initialised bytes; the rest up to `size` is zero
    size: int
    segments: tuple[Segment, ...]
    relative: tuple[int, ...]  # offsets of 64-bit words that get the base added
    imports: tuple[tuple[int, str, int], ...]  # (offset, symbol, addend): a 64-bit word
    exports: dict[str, int]  # global symbol -> offset
    functions: tuple[tuple[int, int, str], ...] = ()  # (offset, size, name) of every function, for profilers

    def to_bytes(self) -> bytes:
        return marshal.dumps((FORMAT, self.machine, self.content, self.size,
                              tuple((s.offset, s.size, s.prot) for s in self.segments),
                              self.relative, self.imports, self.exports, self.functions))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Image":
        try:
            fmt, machine, content, size, segments, relative, imports, exports, functions = marshal.loads(data)
        except (EOFError, ValueError, TypeError) as exc:
            raise ImageError(f"not a ktapjit image ({exc})") from None
        if fmt != FORMAT:
            raise ImageError(f"not a {FORMAT} image")
        return cls(machine, content, size, tuple(Segment(*s) for s in segments), relative, imports, exports,
                   functions)


def store_image(path, image: Image) -> None:
    """Write `image` to `path` (a cache entry) atomically. An unwritable
    cache only costs a later run the work of making the image again."""
    import tempfile  # only a cache miss writes

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".kimg-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(image.to_bytes())
        os.replace(tmp, path)
    except OSError:
        pass


def host_machine() -> str:
    machine = os.uname().machine.lower()  # what platform.machine() reads, without its import
    return _HOST_ALIASES.get(machine, machine)


@dataclass
class MappedImage:
    """An image in memory: its base and its exports' addresses."""

    base: int
    size: int
    symbols: dict[str, int]

    def address(self, name: str) -> Optional[int]:
        return self.symbols.get(name)


_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_libgcc: Optional[ctypes.CDLL] = None


def process_symbol(name: str) -> Optional[int]:
    """`name`'s address in this process (libc and what is loaded), else in
    libgcc_s (the compiler's integer helpers), else None."""
    global _libgcc
    try:  # item access: a symbol named like a CDLL attribute (_handle) is still looked up
        return ctypes.cast(_libc[name], ctypes.c_void_p).value
    except AttributeError:
        pass
    if _libgcc is None:
        try:
            _libgcc = ctypes.CDLL("libgcc_s.so.1")
        except OSError:
            return None
    try:
        return ctypes.cast(_libgcc[name], ctypes.c_void_p).value
    except AttributeError:
        return None


def map_image(image: Image, resolve: Callable[[str], Optional[int]] = lambda name: None,
              what: str = "native code") -> MappedImage:
    """Map `image` into this process, its imports bound by `resolve` first,
    then by the process's own libraries."""
    if image.machine != host_machine():
        raise ImageError(f"ktapjit: {what} is for {image.machine}, and this machine is {host_machine()}")
    page = mmap.PAGESIZE
    if any(s.offset % page for s in image.segments):
        raise ImageError(f"ktapjit: {what} is laid out for pages smaller than this machine's {page} bytes")
    length = -(-image.size // page) * page
    base = _mmap(None, length, PROT_READ | PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base in (None, _MAP_FAILED):
        raise ImageError(f"ktapjit: cannot map {what}: {_errno_text()}")
    content = bytearray(image.content)
    word = struct.Struct("<Q")
    for offset in image.relative:
        word.pack_into(content, offset, (word.unpack_from(content, offset)[0] + base) & 0xFFFFFFFFFFFFFFFF)
    for offset, name, addend in image.imports:
        address = resolve(name)
        if address is None:
            address = process_symbol(name)
        if address is None:
            _munmap(base, length)
            raise ImageError(f"ktapjit: {what} needs the symbol {name}, which nothing in this process defines")
        word.pack_into(content, offset, (address + addend) & 0xFFFFFFFFFFFFFFFF)
    ctypes.memmove(base, bytes(content), len(content))
    for segment in image.segments:
        if segment.size and _mprotect(base + segment.offset, -(-segment.size // page) * page, segment.prot):
            error = _errno_text()
            _munmap(base, length)
            raise ImageError(f"ktapjit: cannot make {what} executable: {error}")
    if image.machine == "aarch64":
        _flush_instruction_cache(base, len(content))
    if os.environ.get("KTAPJIT_PERF_MAP"):
        _write_perf_map(base, image.functions)
    return MappedImage(base, length, {name: base + offset for name, offset in image.exports.items()})


def _write_perf_map(base: int, functions: tuple[tuple[int, int, str], ...]) -> None:
    """Name the functions for perf (its JIT map: /tmp/perf-PID.map, one
    "START SIZE NAME" line each, hex), as perf cannot read anonymous memory's
    symbols. Opt-in (KTAPJIT_PERF_MAP=1): the file outlives the process."""
    try:
        with open(f"/tmp/perf-{os.getpid()}.map", "a") as handle:
            handle.writelines(f"{base + offset:x} {size:x} {name}\n" for offset, size, name in functions)
    except OSError:
        pass  # profiling aid only


def _flush_instruction_cache(start: int, length: int) -> None:
    """AArch64 fetches instructions through its own cache: written code must
    be flushed to it (libgcc's __clear_cache does the cache maintenance)."""
    address = process_symbol("__clear_cache")
    if address is None:
        raise ImageError("ktapjit: cannot flush the instruction cache: no __clear_cache in libgcc_s")
    ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(address)(start, start + length)


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())
