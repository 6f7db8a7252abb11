"""Making a bundle (`ktapjit compile`): the script through the compile
pipeline to LLVM IR, code generated for the target's baseline CPU (a bundle
runs on other machines than the one that built it: never this CPU's own
features), then linked with the packaged runtime object for the target
(jit/rtlib.py runtime_object) by the JIT's own linker (jit/elflink.py) into
one image. No C toolchain, for any target.

May import: ktapjit.bundle.format, ktapjit.compiler, ktapjit.ir.printer,
ktapjit.jit (codegen, elflink, image, rtlib, runtime_abi), ktapjit.semantics, llvmlite.binding, stdlib.
"""

from __future__ import annotations

import hashlib
import platform
from typing import Sequence

import ktapjit
from ktapjit.bundle.format import FORMAT, FORMAT_VERSION, Bundle, BundleError, ir_fingerprint, tables_of
from ktapjit.semantics.limits import Limits

# The oldest CPU of each target a bundle must run on.
_BASELINE_CPU = {"x86_64": "x86-64", "aarch64": "generic"}


def compile_bundle(source: bytes, path: str, *, target: str, limits: Limits,
                   argv: Sequence[str]) -> Bundle:
    """The bundle of the script `source` (named `path`) for `target`.
    Raises CompileError for the script's errors, BundleError for the rest."""
    import llvmlite
    import llvmlite.binding as llvm

    from ktapjit.compiler import compile_script
    from ktapjit.jit import codegen, image, rtlib, runtime_abi

    unit = compile_script(source, path, limits=limits, target=target, until="lower")
    code = _link(_portable_object(unit.lowered.llvm_ir, target), target)

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ktapjit": ktapjit.__version__,
        "abi": runtime_abi.ABI_VERSION,
        "target": target,
        "triple": codegen.TARGETS[target],
        "cpu": _BASELINE_CPU[target],
        "code_kind": image.FORMAT,
        "code_sha256": hashlib.sha256(code).hexdigest(),
        "script": path,
        "source_sha256": hashlib.sha256(source).hexdigest(),
        "ir_sha256": ir_fingerprint(unit.module),
        "limits": {"max_loop": limits.max_loop, "max_depth": limits.max_depth,
                   "max_table": limits.max_table, "max_string": limits.max_string},
        "command_line": list(argv),
        "built_with": {
            "python": platform.python_version(),
            "llvmlite": llvmlite.__version__,
            "llvm": ".".join(map(str, llvm.llvm_version_info)),
            "runtime": rtlib.runtime_identity(target),
        },
    }
    return Bundle(manifest, source, tables_of(unit.lowered), code)


# -- code generation


def _portable_object(llvm_ir: str, target: str) -> bytes:
    """An ELF object for `target`'s baseline CPU, at O2 (as jit/codegen.py,
    whose target machine uses this CPU's features for the host target)."""
    import llvmlite.binding as llvm

    from ktapjit.jit import codegen

    llvm.initialize_all_targets()  # idempotent; jit/codegen.py does the same
    llvm.initialize_all_asmprinters()
    try:
        mod = llvm.parse_assembly(llvm_ir)
        mod.verify()
    except RuntimeError as exc:  # the LLVM verifier's text: a lowering bug
        first = (str(exc).strip().splitlines() or ["invalid module"])[0]
        raise BundleError(f"internal error: generated LLVM IR is invalid: {first}") from None
    tm = llvm.Target.from_triple(codegen.TARGETS[target]).create_target_machine(
        cpu=_BASELINE_CPU[target], features="", opt=2, reloc="pic", codemodel="small")
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=2))
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_object(mod)


# -- linking


def _link(obj: bytes, target: str) -> bytes:
    """Script and runtime as one image: the script's calls into the runtime
    bind inside it, so a run maps one block and imports only libc."""
    from ktapjit.jit import elflink, rtlib

    try:
        runtime = rtlib.runtime_object(target)
        return elflink.link([("script", obj), (f"ktrt-{target}.o", runtime)]).to_bytes()
    except rtlib.RuntimeBuildError as exc:
        raise BundleError(str(exc).removeprefix("ktapjit: ")) from None
    except elflink.LinkError as exc:
        raise BundleError(f"internal error: linking the {target} code failed: {exc}") from None
