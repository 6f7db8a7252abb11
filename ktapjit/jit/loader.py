"""Loading a script as native code: lower it, then find its shared library
in the on-disk cache, or optimise, generate and link one into it, and load
it into the process.

Lowering (pure Python, milliseconds) always runs: it yields the LLVM IR text
and the tables the engine needs (sites, strings, event slots). LLVM's
optimisation and code generation, and the link, are skipped when the cache
holds a library for the same IR text, CPU, runtime library build, llvmlite
and ktapjit version. The IR text carries everything the script and its
event schemas compile to, so it is the honest key; the runtime library's
build is in it because a script library binds to that exact file.

Cache directory: $KTAPJIT_CACHE_DIR/jit, else $XDG_CACHE_HOME/ktapjit/jit,
else ~/.cache/ktapjit/jit. An unwritable cache is simply not used.

May import: ktapjit.jit (lower, codegen, rtlib), ktapjit.ir, ktapjit.cache_paths.
"""

from __future__ import annotations

import ctypes
import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ktapjit
from ktapjit.cache_paths import cache_root
from ktapjit.jit import codegen, rtlib
from ktapjit.jit.lower import Lowered, lower_module


@dataclass
class CompileStats:
    lower_s: float = 0.0
    llvm_s: float = 0.0  # optimisation and codegen; 0 on a cache hit
    load_s: float = 0.0
    cache_hit: bool = False


@dataclass
class NativeProgram:
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
                 f"runtime={rtlib.library_path().name}", f"llvmlite={llvmlite.__version__}",
                 f"target={target}", f"cpu={codegen.cpu_identity()}"):
        h.update(part.encode() + b"\0")
    h.update(llvm_ir.encode())
    return h.hexdigest()[:32]


def compile_native(module) -> NativeProgram:
    """Lower, optimise, generate, link and load `module` for this machine."""
    stats = CompileStats()
    t0 = time.perf_counter()
    lowered = lower_module(module)
    stats.lower_s = time.perf_counter() - t0
    rt = rtlib.load()  # before the script, so the script binds to this copy of it
    target = codegen.host_target()
    library = cache_dir() / f"{cache_key(lowered.llvm_ir, target)}.so"
    stats.cache_hit = library.exists()
    if stats.cache_hit:
        t2 = time.perf_counter()
        code = codegen.LoadedCode(library)
    else:
        t1 = time.perf_counter()
        obj = codegen.emit_object(codegen.optimize(lowered.llvm_ir, target))
        stats.llvm_s = time.perf_counter() - t1
        with tempfile.TemporaryDirectory(prefix="ktapjit-") as scratch:  # only a miss needs one
            library = _link(obj, library, fallback=Path(scratch) / "script.so")
            t2 = time.perf_counter()
            code = codegen.LoadedCode(library)  # mapped: the file may go with the scratch dir
    _fill_strings(code, lowered, rt)
    stats.load_s = time.perf_counter() - t2
    return NativeProgram(lowered, code, stats)


def _fill_strings(code: codegen.LoadedCode, lowered: Lowered, rt: rtlib.RuntimeLibrary) -> None:
    if not lowered.strings:
        return
    table = (ctypes.c_int64 * len(lowered.strings)).from_address(code.address("ktap_strings"))
    for i, data in enumerate(lowered.strings):
        table[i] = rt.string(data).payload


def _link(obj: bytes, library: Path, fallback: Path) -> Path:
    """Link into the cache; where the cache cannot be written, into scratch
    (costing only the next run its compile time). Returns where it went."""
    try:
        codegen.link_shared(obj, library)
        return library
    except OSError:
        codegen.link_shared(obj, fallback)
        return fallback
