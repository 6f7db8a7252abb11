"""Loading a script as native code: find its linked image in the on-disk
cache, or lower, optimise, generate and link one into it, and map it into
the process.

A module compile_script made for a run carries the key of its inputs
(jit/script_cache.py): on a hit its image and the lowering's tables come
from that entry, and nothing is lowered; on a miss they are made and stored
with the module. Any other module (built in-process by a test or a
benchmark) is lowered every time and its image cached by the LLVM IR text,
with the CPU, runtime, llvmlite and ktapjit version: the text carries
everything the module compiles to.

Cache directory: $KTAPJIT_CACHE_DIR/jit, else $XDG_CACHE_HOME/ktapjit/jit,
else ~/.cache/ktapjit/jit. An unwritable cache is simply not used.

May import: ktapjit.jit (lower, lowered, codegen, rtlib, image, script_cache), ktapjit.ir,
ktapjit.cache_paths.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import ktapjit
from ktapjit.cache_paths import cache_root
from ktapjit.jit import codegen, rtlib, script_cache
from ktapjit.jit.image import Image, ImageError, store_image
from ktapjit.jit.lowered import Lowered


@dataclass
class CompileStats:
    """Where a load's time went."""

    lower_s: float = 0.0
    llvm_s: float = 0.0  # optimisation and codegen; 0 on a cache hit
    load_s: float = 0.0
    cache_hit: bool = False


@dataclass
class NativeProgram:
    """A script's native code, mapped, with the tables to run it."""

    lowered: Lowered
    code: codegen.LoadedCode
    stats: CompileStats = field(default_factory=CompileStats)

    def entry_address(self, role: str) -> int:
        return self.code.address(self.lowered.entries[role])

    def entry_slots(self, role: str) -> list[int]:
        return self.lowered.entry_slots.get(self.lowered.entries[role], [])


def cache_dir() -> Path:
    return cache_root() / "jit"


def cache_key(llvm_ir: str, target: str) -> str:
    import llvmlite

    h = hashlib.sha256()
    for part in (f"ktapjit={ktapjit.__version__}", f"abi={rtlib.ABI_VERSION}",
                 f"runtime={rtlib.runtime_identity()}", f"llvmlite={llvmlite.__version__}",
                 f"target={target}", f"cpu={codegen.cpu_identity()}"):
        h.update(part.encode() + b"\0")
    h.update(llvm_ir.encode())
    return h.hexdigest()[:32]


def compile_native(module) -> NativeProgram:
    """Find or make `module`'s native code for this machine, and load it."""
    stats = CompileStats()
    rt = rtlib.load()  # before the script, so the script binds to this copy of it
    cached = script_cache.native(module)
    if cached is not None:
        lowered, image = cached.lowered, cached.image
        stats.cache_hit = True
    else:
        lowered, image = _lower_and_link(module, stats)
    t2 = time.perf_counter()
    code = codegen.LoadedCode(image)
    _fill_strings(code, lowered, rt)
    stats.load_s = time.perf_counter() - t2
    return NativeProgram(lowered, code, stats)


def _lower_and_link(module, stats: CompileStats) -> tuple[Lowered, Image]:
    """Lower `module`, and find its image by the LLVM IR text, or make one;
    a module with an inputs key is stored under it (script_cache.py)."""
    from ktapjit.jit.lower import lower_module  # imports llvmlite.ir: a cache hit never needs it

    t0 = time.perf_counter()
    lowered = lower_module(module)
    stats.lower_s = time.perf_counter() - t0
    target = codegen.host_target()
    path = cache_dir() / f"{cache_key(lowered.llvm_ir, target)}.kimg"
    image = _cached(path)
    stats.cache_hit = image is not None
    if image is None:
        t1 = time.perf_counter()
        obj = codegen.emit_object(codegen.optimize(lowered.llvm_ir, target))
        stats.llvm_s = time.perf_counter() - t1
        image = codegen.link_image(obj)
        store_image(path, image)
    script_cache.keep(module, lowered, image)
    return lowered, image


def _fill_strings(code: codegen.LoadedCode, lowered: Lowered, rt: rtlib.RuntimeLibrary) -> None:
    if not lowered.strings:
        return
    table = (ctypes.c_int64 * len(lowered.strings)).from_address(code.address("ktap_strings"))
    for i, data in enumerate(lowered.strings):
        table[i] = rt.string(data).payload


def _cached(path: Path) -> Image | None:
    try:
        return Image.from_bytes(path.read_bytes())
    except (OSError, ImageError):
        return None

