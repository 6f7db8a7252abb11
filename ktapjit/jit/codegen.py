"""LLVM code generation: verify, optimise at O2, emit objects and assembly,
link objects into shared libraries bound to the native runtime, load them.

Generated code is LLVM's MC output (what MCJIT runs), linked by the system
linker and loaded with dlopen rather than kept in an MCJIT engine: one path
for fresh and cached code, and a cached script loads in under a millisecond
without importing llvmlite.binding at all (docs/jit.md).

Hazards measured in docs/jit.md shape this module: an LLVM fatal error kills
the process, so modules are verified before codegen and no inline asm is
ever emitted; a TargetMachine is made per use.

The link runs the system linker `ld` directly (~4 ms) rather than through
the C compiler driver (~17 ms: gcc, collect2, then ld, with crt files and
libgcc the generated code never uses); `-z defs` makes ld refuse an object
needing anything but the runtime, and then the driver links it as before
(docs/performance-notes.md).

May import: llvmlite.binding (lazily: not on a cache hit), ktapjit.jit.rtlib.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ktapjit.jit import rtlib

TARGETS = {
    "x86_64": "x86_64-unknown-linux-gnu",
    "aarch64": "aarch64-unknown-linux-gnu",
}
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

_initialized = False


class CodegenError(Exception):
    """LLVM rejected the generated module: a ktapjit bug, reported as one line."""


def host_target() -> str:
    machine = platform.machine().lower()
    return _HOST_ALIASES.get(machine, machine)


def _llvm():
    """llvmlite.binding, imported and initialised on first use (~50 ms)."""
    global _initialized
    import llvmlite.binding as llvm

    if not _initialized:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _initialized = True
    return llvm


def target_machine(target: str):
    """A fresh TargetMachine for `target` ("x86_64" or "aarch64"). Native
    code uses this CPU's name and features; a cross target the generic CPU."""
    llvm = _llvm()
    if target == host_target():
        tgt = llvm.Target.from_default_triple()
        cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    else:
        tgt = llvm.Target.from_triple(TARGETS[target])
        cpu, features = "generic", ""
    return tgt.create_target_machine(cpu=cpu, features=features, opt=2, reloc="pic", codemodel="small")


def cpu_identity() -> str:
    """This CPU, for cache keys, without loading LLVM: the model and flag
    lines of /proc/cpuinfo (code is generated for the host CPU's features)."""
    try:
        with open("/proc/cpuinfo", "rb") as handle:
            lines = [line for line in handle.read().split(b"\n")
                     if line.startswith((b"model name", b"flags", b"Features", b"CPU part"))]
        return repr(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


@dataclass
class Optimized:
    module: object  # llvmlite.binding.ModuleRef
    target: str


def optimize(llvm_ir: str, target: str) -> Optimized:
    """Parse, verify and optimise (O2) a module for `target`."""
    llvm = _llvm()
    try:
        mod = llvm.parse_assembly(llvm_ir)
        mod.verify()
    except RuntimeError as exc:  # the LLVM verifier's text: a lowering bug
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
        raise CodegenError(f"internal error: generated LLVM IR is invalid: {first}") from None
    tm = target_machine(target)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return Optimized(mod, target)


def emit_object(opt: Optimized) -> bytes:
    return target_machine(opt.target).emit_object(opt.module)


def emit_assembly(opt: Optimized) -> str:
    return target_machine(opt.target).emit_assembly(opt.module)


def link_shared(obj: bytes, target: Path) -> None:
    """Link a PIC object into a shared library against the runtime library,
    atomically at `target`. The runtime is named by its absolute path (it has
    no soname), so loading the result reuses the copy already in the process
    and its one intern table. -Bsymbolic binds the library's references to
    its own symbols: every script exports the same entry names."""
    runtime = rtlib.library_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, obj_path = tempfile.mkstemp(dir=target.parent, prefix=".obj-", suffix=".o")
    with os.fdopen(fd, "wb") as handle:
        handle.write(obj)
    tmp = obj_path[:-2] + ".so"
    try:
        if not _link_with_ld(obj_path, tmp, runtime):
            _link_with_driver(obj_path, tmp, runtime)
        os.replace(tmp, target)
    finally:
        for leftover in (obj_path, tmp):
            if os.path.exists(leftover):
                os.unlink(leftover)


@functools.lru_cache(maxsize=1)
def _ld() -> Optional[str]:
    return shutil.which("ld")


def _link_with_ld(obj_path: str, out: str, runtime: Path) -> bool:
    """The fast link; False when there is no ld or it refused (an object that
    needs libc or libgcc, an unusual ld): the driver then links it."""
    ld = _ld()
    if ld is None:
        return False
    # What the driver passes ld for a shared library, minus crt files and default
    # libraries: generated code calls nothing but the runtime (-z defs checks it).
    command = [ld, "-shared", "-Bsymbolic", "--eh-frame-hdr", "--hash-style=gnu", "-z", "defs",
               "-o", out, obj_path, str(runtime)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _link_with_driver(obj_path: str, out: str, runtime: Path) -> None:
    done = subprocess.run([*rtlib.find_compiler(), "-shared", "-Wl,-Bsymbolic", "-o", out, obj_path, str(runtime)],
                          capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[:3]
        raise CodegenError("ktapjit: linking the compiled script failed: " + " | ".join(detail))


class LoadedCode:
    """A compiled script's shared library, loaded: symbol addresses, valid
    while this object lives (the library is never unloaded)."""

    def __init__(self, library: Path):
        rtlib.load()  # the runtime first, so the script binds to this copy of it
        self.lib = ctypes.CDLL(str(library))

    def address(self, symbol: str) -> int:
        try:
            return ctypes.addressof(ctypes.c_char.in_dll(self.lib, symbol))
        except ValueError:
            raise CodegenError(f"internal error: symbol {symbol} missing from the native code") from None
