"""LLVM IR text to a BPF ELF object, with llvmlite (triple bpfel, cpu v3)."""

from __future__ import annotations

from ktapjit.bpf.errors import BpfError

TRIPLE = "bpfel"
CPU = "v3"  # 32-bit subregisters, jmp32 and atomics: Linux 5.1+
DATALAYOUT = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"


def compile_ir(llvm_ir: str, opt: int = 2) -> bytes:
    """The object file for ``llvm_ir``, optimised at ``opt`` first (the
    optimiser also moves stray allocas into the entry block, which the BPF
    backend needs: it cannot allocate stack dynamically). An IR that does
    not parse or verify is a BpfError."""
    import llvmlite.binding as llvm  # ~60 ms: only when a BPF program is built

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.triple = TRIPLE
        module.data_layout = DATALAYOUT
        module.verify()
        machine = llvm.Target.from_triple(TRIPLE).create_target_machine(cpu=CPU, opt=opt, reloc="static")
        if opt:
            tuning = llvm.create_pipeline_tuning_options(speed_level=opt)
            passes = llvm.create_pass_builder(machine, tuning)
            passes.getModulePassManager().run(module, passes)
        return machine.emit_object(module)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise BpfError(f"the BPF backend cannot compile the program: {first}") from None
