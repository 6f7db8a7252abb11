"""Generate the JIT runtime's bitcode and objects from its C sources: a
development and packaging step, never run when a user runs a script.

    python -m ktapjit.jit.runtime_build            # every target
    python -m ktapjit.jit.runtime_build --target x86_64 --check

For each target in ``runtime_files.TRIPLES``:

1. each C source is compiled to LLVM bitcode by the pinned clang, the one in
   the ``ziglang`` wheel (``ZIGLANG`` below; ``pip install -e '.[runtime]'``).
   Its LLVM is the same major version as llvmlite's, and it ships the C
   library headers of every target, so one machine makes every target's
   bitcode with no cross toolchain installed (docs/jit.md says why it was
   chosen over Debian's clang);
2. the modules are linked into one with llvmlite and written as
   ``runtime/generated/ktrt-TARGET.bc``: the form LLVM can compile for any
   CPU of the target, or inline into generated code;
3. that bitcode is compiled by llvmlite for the target's generic CPU into
   ``ktrt-TARGET.o``, the relocatable object the engine links and loads
   (compiling it at run time would cost ~1 s of a cold start);
4. ``ktrt-TARGET.json`` records what they were made from: the sources'
   digest, the tools' versions and the files' hashes
   (tests/jit/test_runtime_generated.py checks them).

May import: stdlib, llvmlite.binding, ktapjit.jit.runtime_files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ktapjit.jit import runtime_files

ZIGLANG = "0.17.0"  # pinned: its clang is 22.1.x, llvmlite 0.50's LLVM major
CFLAGS = ("-O2", "-g0", "-std=gnu11", "-fPIC", "-fno-strict-aliasing", "-fno-semantic-interposition",
          "-fno-sanitize=all", "-fno-stack-protector", "-fno-common")
# Zig's names for the targets' C libraries (its headers of glibc 2.31).
_ZIG_TARGETS = {"x86_64": "x86_64-linux-gnu.2.31", "aarch64": "aarch64-linux-gnu.2.31"}
_GENERIC_CPU = {"x86_64": "x86-64", "aarch64": "generic"}


class BuildError(Exception):
    """The pinned clang is missing, or a source did not compile."""


def clang_command() -> list[str]:
    """The pinned clang (``python -m ziglang cc``), or BuildError saying how to get it."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        found = version("ziglang")
    except PackageNotFoundError:
        raise BuildError(f"the runtime generator needs ziglang=={ZIGLANG} "
                         f"(pip install -e '.[runtime]')") from None
    if found != ZIGLANG:
        raise BuildError(f"the runtime generator needs ziglang=={ZIGLANG}, not {found} "
                         f"(pip install -e '.[runtime]')")
    return [sys.executable, "-m", "ziglang", "cc"]


def clang_version() -> str:
    done = subprocess.run([*clang_command(), "--version"], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[0].strip()


def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


def build_bitcode(target: str) -> bytes:
    """The runtime for `target` as one LLVM bitcode module."""
    llvm = _llvm()
    clang = clang_command()
    # A context of its own: in a shared one, struct types already named by
    # another module get numbered suffixes, and the bitcode would differ.
    context = llvm.create_context()
    with tempfile.TemporaryDirectory(prefix="ktrt-bc-") as scratch:
        modules = []
        for source in runtime_files.c_files():
            out = Path(scratch) / (source.stem + ".bc")
            # Relative names, from the runtime directory: nothing of this
            # machine's paths ends up in the bitcode.
            done = subprocess.run([*clang, "-target", _ZIG_TARGETS[target], *CFLAGS, "-c", "-emit-llvm",
                                   "-o", str(out), source.name],
                                  cwd=runtime_files.RUNTIME_DIR, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BuildError(f"{source.name}: " + " | ".join(done.stderr.strip().splitlines()[:5]))
            modules.append(llvm.parse_bitcode(out.read_bytes(), context))
    linked = modules[0]
    for module in modules[1:]:
        linked.link_in(module)
    linked.triple = runtime_files.TRIPLES[target]
    linked.name = f"ktrt-{target}"
    linked.verify()
    return linked.as_bitcode()


def build_object(target: str, bitcode: bytes) -> bytes:
    """The bitcode compiled for the target's generic CPU: a relocatable ELF object."""
    llvm = _llvm()
    module = llvm.parse_bitcode(bitcode, llvm.create_context())
    tm = llvm.Target.from_triple(runtime_files.TRIPLES[target]).create_target_machine(
        cpu=_GENERIC_CPU[target], features="", opt=2, reloc="pic", codemodel="small")
    module.triple = tm.triple
    return tm.emit_object(module)


def stamp(target: str, bitcode: bytes, obj: bytes, clang: str) -> dict:
    import llvmlite

    return {
        "target": target,
        "triple": runtime_files.TRIPLES[target],
        "sources_sha256": runtime_files.sources_digest(),
        "clang": f"ziglang {ZIGLANG}: {clang}",
        "cflags": list(CFLAGS),
        "llvmlite": llvmlite.__version__,
        "bitcode_sha256": hashlib.sha256(bitcode).hexdigest(),
        "object_sha256": hashlib.sha256(obj).hexdigest(),
    }


def generate(target: str) -> tuple[bytes, bytes, dict]:
    bitcode = build_bitcode(target)
    obj = build_object(target, bitcode)
    return bitcode, obj, stamp(target, bitcode, obj, clang_version())


def write(target: str) -> None:
    bitcode, obj, record = generate(target)
    runtime_files.GENERATED_DIR.mkdir(exist_ok=True)
    runtime_files.bitcode_path(target).write_bytes(bitcode)
    runtime_files.object_path(target).write_bytes(obj)
    runtime_files.stamp_path(target).write_text(json.dumps(record, indent=2) + "\n")


def stale_files(target: str) -> list[str]:
    """The generated files of `target` that differ from a fresh generation."""
    bitcode, obj, record = generate(target)
    fresh = {runtime_files.bitcode_path(target): bitcode, runtime_files.object_path(target): obj,
             runtime_files.stamp_path(target): (json.dumps(record, indent=2) + "\n").encode()}
    return [path.name for path, data in fresh.items() if not path.exists() or path.read_bytes() != data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ktapjit.jit.runtime_build", description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", choices=sorted(runtime_files.TRIPLES),
                        help="a target to generate (default: every one)")
    parser.add_argument("--check", action="store_true", help="only say whether the committed files are fresh")
    args = parser.parse_args(argv)
    try:
        for target in args.target or sorted(runtime_files.TRIPLES):
            if args.check:
                stale = stale_files(target)
                if stale:
                    print(f"stale: {', '.join(stale)} (run: python -m ktapjit.jit.runtime_build)")
                    return 1
            else:
                write(target)
                print(f"wrote {runtime_files.bitcode_path(target).name}, {runtime_files.object_path(target).name}")
    except BuildError as exc:
        print(f"runtime_build: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
