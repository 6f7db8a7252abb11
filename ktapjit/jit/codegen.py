"""LLVM code generation: verify, optimise at O2, emit objects and assembly;
load a linked script image bound to the native runtime.

Generated code is LLVM's MC output, linked by the JIT's own linker
(``elflink``: no ``ld`` on the machine) into a position-independent image
and mapped into the process (``image.map_image``), its calls into the
runtime bound to the runtime's copy in this process. Fresh and cached code
take one load path, and a cached script loads in about a millisecond
without importing llvmlite.binding at all (docs/jit.md).

Hazards measured in docs/jit.md shape this module: an LLVM fatal error kills
the process, so modules are verified before codegen and no inline asm is
ever emitted; a TargetMachine is made per use.

May import: llvmlite.binding (lazily: not on a cache hit), ktapjit.jit (rtlib,
runtime_files, image, elflink).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ktapjit.jit import rtlib, runtime_files
from ktapjit.jit.image import Image, ImageError, map_image

TARGETS = runtime_files.TRIPLES
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

_initialized = False


class CodegenError(Exception):
    """LLVM rejected the generated module: a ktapjit bug, reported as one line."""


def host_target() -> str:
    machine = os.uname().machine.lower()  # what platform.machine() reads, without its import
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
        return os.uname().machine


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


def link_image(obj: bytes, name: str = "script") -> Image:
    """A script's object linked into an image; its calls into the runtime
    stay imports, bound when it is loaded."""
    from ktapjit.jit import elflink  # not needed on a cache hit

    try:
        return elflink.link([(name, obj)])
    except elflink.LinkError as exc:
        raise CodegenError(f"ktapjit: linking the compiled script failed: {exc}") from None


class LoadedCode:
    """A compiled script's image, mapped: symbol addresses, valid while the
    process lives (generated code is never unmapped)."""

    def __init__(self, image: Image):
        rt = rtlib.load()  # the runtime first: the script binds to this copy of it
        try:
            self.mapped = map_image(image, rt.symbols.get, what="the compiled script")
        except ImageError as exc:
            raise CodegenError(str(exc)) from None

    def address(self, symbol: str) -> int:
        address = self.mapped.address(symbol)
        if address is None:
            raise CodegenError(f"internal error: symbol {symbol} missing from the native code")
        return address
