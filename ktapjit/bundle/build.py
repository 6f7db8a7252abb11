"""Making a bundle (`ktapjit compile`): the script through the compile
pipeline to LLVM IR, code generated for the target's baseline CPU (a bundle
runs on other machines than the one that built it: never this CPU's own
features), linked with the runtime into one shared library.

The link is the one place a C toolchain is still needed, and only here, on
the machine that builds: the target's C compiler builds the runtime once
(cached as one relocatable object per target and source version) and links
it with the script. For the host that is the JIT's own compiler ($CC, cc,
gcc, clang); for another target its cross compiler, by Debian's name
(`aarch64-linux-gnu-gcc`, from gcc-aarch64-linux-gnu), or
$KTAPJIT_CC_<TARGET> (e.g. KTAPJIT_CC_AARCH64). A run of the bundle needs
neither LLVM nor a toolchain.

May import: ktapjit.bundle.format, ktapjit.compiler, ktapjit.ir.printer,
ktapjit.jit (codegen, rtlib, runtime_abi), ktapjit.cache_paths, llvmlite.binding, stdlib.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import ktapjit
from ktapjit.bundle.format import (
    CODE_KIND, FORMAT, FORMAT_VERSION, Bundle, BundleError, ir_fingerprint, tables_of,
)
from ktapjit.cache_paths import cache_root
from ktapjit.semantics.limits import Limits

# The oldest CPU of each target a bundle must run on.
_BASELINE_CPU = {"x86_64": "x86-64", "aarch64": "generic"}
# Debian's cross compiler packages, for the one-line hint.
_CROSS_PACKAGE = {"aarch64": "gcc-aarch64-linux-gnu", "x86_64": "gcc-x86-64-linux-gnu"}


def compile_bundle(source: bytes, path: str, *, target: str, limits: Limits,
                   argv: Sequence[str]) -> Bundle:
    """The bundle of the script `source` (named `path`) for `target`.
    Raises CompileError for the script's errors, BundleError for the rest."""
    from ktapjit.compiler import compile_script
    from ktapjit.jit import codegen, runtime_abi

    unit = compile_script(source, path, limits=limits, target=target, until="lower")
    compiler = _compiler(target)
    obj = _portable_object(unit.lowered.llvm_ir, target)
    code = _link(obj, target, compiler)
    import llvmlite
    import llvmlite.binding as llvm

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ktapjit": ktapjit.__version__,
        "abi": runtime_abi.ABI_VERSION,
        "target": target,
        "triple": codegen.TARGETS[target],
        "cpu": _BASELINE_CPU[target],
        "code_kind": CODE_KIND,
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
            "cc": _compiler_identity(compiler),
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


# -- the toolchain (only here: see the module docstring)


def _compiler(target: str) -> list[str]:
    from ktapjit.jit import codegen, rtlib

    given = os.environ.get(f"KTAPJIT_CC_{target.upper()}", "").strip()
    if given:
        return shlex.split(given)
    if target == codegen.host_target():
        try:
            return rtlib.find_compiler()
        except rtlib.RuntimeBuildError:
            raise BundleError(f"compiling a bundle links its runtime with a C compiler, and none was found "
                              f"(set CC or install gcc)") from None
    name = f"{target}-linux-gnu-gcc"
    if shutil.which(name):
        return [name]
    raise BundleError(f"compiling for {target} on this {codegen.host_target()} machine links the runtime with "
                      f"{name}: install it (apt-get install {_CROSS_PACKAGE.get(target, name)}) "
                      f"or set KTAPJIT_CC_{target.upper()}")


@functools.lru_cache(maxsize=None)
def _identity(compiler: tuple[str, ...]) -> str:
    try:
        done = subprocess.run([*compiler, "--version"], capture_output=True, timeout=30, check=False)
    except OSError as exc:
        raise BundleError(f"cannot run the C compiler {compiler[0]}: {exc.strerror or exc}") from None
    first = done.stdout.decode("utf-8", "replace").splitlines()
    return first[0] if first else compiler[0]


def _compiler_identity(compiler: list[str]) -> str:
    """The compiler's --version line (asked once per process)."""
    return _identity(tuple(compiler))


def _runtime_flags() -> list[str]:
    from ktapjit.jit import rtlib

    return [flag for flag in rtlib.CFLAGS if flag != "-shared"]


def _runtime_object(target: str, compiler: list[str]) -> Path:
    """The runtime for `target` as one relocatable object, built once per
    source version, flags and compiler (cached beside the JIT's runtime)."""
    from ktapjit.jit import rtlib, runtime_abi

    sources = sorted(rtlib.RUNTIME_DIR.glob("*.[ch]"))
    h = hashlib.sha256()
    h.update(f"{target}\0{runtime_abi.ABI_VERSION}\0{' '.join(_runtime_flags())}\0{' '.join(compiler)}\0".encode())
    h.update(_compiler_identity(compiler).encode() + b"\0")
    for src in sources:
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    directory = cache_root() / "bundle"
    built = directory / f"ktrt-{target}-{h.hexdigest()[:24]}.o"
    if built.exists():
        return built
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create the cache directory {directory}: {exc.strerror or exc} "
                          f"(set KTAPJIT_CACHE_DIR)") from None
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".o", dir=directory)
    os.close(fd)
    try:
        _run([*compiler, *_runtime_flags(), "-r", "-nostdlib", "-o", tmp,
              *(str(s) for s in sources if s.suffix == ".c")], f"building the {target} runtime")
        os.replace(tmp, built)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return built


def _link(obj: bytes, target: str, compiler: list[str]) -> bytes:
    """Script and runtime as one shared library: -Bsymbolic binds the
    script's calls to this runtime, and -z defs refuses anything unresolved
    but libc."""
    runtime = _runtime_object(target, compiler)
    with tempfile.TemporaryDirectory(prefix="ktapjit-bundle-") as scratch:
        script, library = Path(scratch) / "script.o", Path(scratch) / "code.so"
        script.write_bytes(obj)
        _run([*compiler, "-shared", "-Wl,-Bsymbolic", "-Wl,-z,defs", "-o", str(library), str(script),
              str(runtime)], f"linking the {target} code")
        return library.read_bytes()


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[:3]
        raise BundleError(f"{what} failed: " + (" | ".join(detail) or f"status {done.returncode}"))

