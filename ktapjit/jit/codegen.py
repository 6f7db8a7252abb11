"""LLVM code generation: verify, optimise at O2, emit objects and assembly,
and load objects into an MCJIT engine bound to the native runtime.

Hazards measured in docs/jit-plan.md shape this module: an MCJIT engine owns
its TargetMachine, so every engine gets a fresh one; an LLVM fatal error
kills the process, so modules are verified before codegen and no inline asm
is ever emitted.

May import: llvmlite.binding, ktapjit.jit.rtlib.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import llvmlite.binding as llvm

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


def _init() -> None:
    global _initialized
    if not _initialized:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _initialized = True


def target_machine(target: str, jit: bool = False) -> llvm.TargetMachine:
    """A fresh TargetMachine for `target` ("x86_64" or "aarch64"). Native
    code uses this CPU's name and features; a cross target the generic CPU."""
    _init()
    if target == host_target():
        tgt = llvm.Target.from_default_triple()
        cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    else:
        tgt = llvm.Target.from_triple(TARGETS[target])
        cpu, features = "generic", ""
    return tgt.create_target_machine(cpu=cpu, features=features, opt=2, reloc="pic",
                                     codemodel="jitdefault" if jit else "small", jit=jit)


def cpu_identity() -> str:
    _init()
    return f"{llvm.get_host_cpu_name()}:{llvm.get_host_cpu_features().flatten()}"


@dataclass
class Optimized:
    module: llvm.ModuleRef
    target: str


def optimize(llvm_ir: str, target: str) -> Optimized:
    """Parse, verify and optimise (O2) a module for `target`."""
    _init()
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


class LoadedCode:
    """Native code in memory: symbol addresses, valid while this object lives."""

    def __init__(self, obj: bytes):
        _init()
        llvm.load_library_permanently(str(rtlib.library_path()))
        tm = target_machine(host_target(), jit=True)
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def address(self, symbol: str) -> int:
        addr = self.engine.get_function_address(symbol)
        if not addr:
            addr = self.engine.get_global_value_address(symbol)
        if not addr:
            raise CodegenError(f"internal error: symbol {symbol} missing from the native code")
        return addr
