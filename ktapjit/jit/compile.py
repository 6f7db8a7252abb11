"""From an IR Module to loaded native code, through an on-disk cache of
compiled scripts (shared libraries).

Lowering (pure Python, milliseconds) always runs: it yields the LLVM IR text
and the tables the engine needs (sites, strings, event slots). LLVM's
optimisation and code generation, and the link, are skipped when the cache
holds a library for the same IR text, CPU, runtime library build, llvmlite
and ktapjit version. The IR text carries everything the script and its
event schemas compile to, so it is the honest key; the runtime library's
build is in it because a script library binds to that exact file.

Cache directory: $KTAPJIT_CACHE_DIR/jit, else $XDG_CACHE_HOME/ktapjit/jit,
else ~/.cache/ktapjit/jit. An unwritable cache is simply not used.

May import: ktapjit.jit (lower, codegen, rtlib), ktapjit.ir.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ktapjit
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
    base = os.environ.get("KTAPJIT_CACHE_DIR")
    if base:
        return Path(base) / "jit"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ktapjit" / "jit"


def cache_key(llvm_ir: str, target: str, runtime: Path | None = None) -> str:
    import llvmlite

    runtime = runtime if runtime is not None else rtlib.library_path()
    h = hashlib.sha256()
    for part in (f"ktapjit={ktapjit.__version__}", f"abi={rtlib.ABI_VERSION}",
                 f"runtime={runtime.name}", f"llvmlite={llvmlite.__version__}",
                 f"target={target}", f"cpu={codegen.cpu_identity()}"):
        h.update(part.encode() + b"\0")
    h.update(llvm_ir.encode())
    return h.hexdigest()[:32]


def compile_native(module, use_cache: bool = True) -> NativeProgram:
    """Lower, optimise, generate, link and load `module` for this machine."""
    stats = CompileStats()
    t0 = time.perf_counter()
    lowered = lower_module(module)
    stats.lower_s = time.perf_counter() - t0
    # Found (and loaded) once: each lookup re-checks the runtime's sources (~2 ms).
    rt = rtlib.load()
    target = codegen.host_target()
    with tempfile.TemporaryDirectory(prefix="ktapjit-") as scratch:
        library = _library_path(lowered.llvm_ir, target, rt.path) if use_cache else Path(scratch) / "script.so"
        stats.cache_hit = library.exists()
        if not stats.cache_hit:
            t1 = time.perf_counter()
            obj = codegen.emit_object(codegen.optimize(lowered.llvm_ir, target))
            stats.llvm_s = time.perf_counter() - t1
            library = _link(obj, library, fallback=Path(scratch) / "script.so", runtime=rt.path)
        t2 = time.perf_counter()
        # mapped: the file may go with the scratch dir; the runtime is loaded first (above),
        # so the script binds to this copy of it
        code = codegen.LoadedCode(library, runtime_loaded=True)
    _fill_strings(code, lowered, rt)
    stats.load_s = time.perf_counter() - t2
    return NativeProgram(lowered, code, stats)


def _fill_strings(code: codegen.LoadedCode, lowered: Lowered, rt: rtlib.Runtime) -> None:
    if not lowered.strings:
        return
    table = (ctypes.c_int64 * len(lowered.strings)).from_address(code.address("ktap_strings"))
    for i, data in enumerate(lowered.strings):
        table[i] = rt.string(data).payload


def _library_path(llvm_ir: str, target: str, runtime: Path) -> Path:
    return cache_dir() / f"{cache_key(llvm_ir, target, runtime)}.so"


def _link(obj: bytes, library: Path, fallback: Path, runtime: Path) -> Path:
    """Link into the cache; where the cache cannot be written, into scratch
    (costing only the next run its compile time). Returns where it went."""
    try:
        codegen.link_shared(obj, library, runtime)
        return library
    except OSError:
        codegen.link_shared(obj, fallback, runtime)
        return fallback
