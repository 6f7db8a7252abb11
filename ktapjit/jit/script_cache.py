"""Compiled scripts found by their inputs, before anything is compiled.

A warm `ktapjit run` needs three things that compiling makes: the IR module
(the engine, the session and trace_end read it), the lowering's tables
(jit/lowered.py: entries, sites, strings, event slots) and the linked image.
One cache entry holds all three, so a hit skips the front end, the IR
pipeline, lowering (and the llvmlite.ir import), LLVM and the link.

The key is a hash of every input that can change any of the three; a stale
hit would run other code than the script says, silently, so an input is in
the key unless it provably cannot matter:

- the script: its bytes and its path (the module's name, every span);
- the options compile_script takes: every limit (fold reads max_string)
  and whether the IR passes run;
- the compiler: ktapjit's version and the text of every module the path
  from source to linked image runs (COMPILER_CODE; a development tree
  changes without a version bump), and the Python that runs it;
- the machine code's inputs: the runtime's ABI version and identity, the
  llvmlite version and its typed-pointer switch, the target and the CPU.

tests/jit/test_script_cache.py changes each one and sees a miss.

An entry is a pickle of our own making in our own cache directory, as
trusted as the native code beside it, which runs in this process anyway. An
unreadable, corrupt or unwritable entry only costs a compile.

The store itself (``load_entry``/``store_entry``) is a key -> bytes map in
the JIT's cache directory, for any other compiled artefact.

May import: ktapjit (its version), ktapjit.jit, ktapjit.ir, ktapjit.semantics,
ktapjit.cache_paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import ktapjit
from ktapjit.cache_paths import cache_root
from ktapjit.ir.func import Module
from ktapjit.jit.image import Image
from ktapjit.jit.lowered import Lowered
from ktapjit.semantics.limits import Limits

FORMAT = "ktapjit-script-1"
SUFFIX = ".kscript"

_PACKAGE = Path(ktapjit.__file__).resolve().parent
# What turns a script into its module, tables and image: every package
# compile_script and the JIT's loader import on that path, by the layer rules
# (tests/test_layers.py), and the top-level modules they use.
# tests/jit/test_script_cache.py checks that a compile loads nothing outside.
COMPILER_CODE = ("frontend", "ir", "semantics", "jit", "kernel_filter", "__init__.py", "diag.py",
                 "compiler.py", "cache_paths.py")
_CODE_SUFFIXES = (".py", ".lark")


@dataclass
class CachedScript:
    """What a run takes from compiling, as a cache entry holds it."""

    module: Module
    lowered: Lowered  # without its LLVM IR text
    image: Image


def cache_dir() -> Path:
    return cache_root() / "jit"


# -- the key


def script_key(source: bytes, path: str, limits: Limits, optimize: bool) -> Optional[str]:
    """The cache key of compiling `source` (from `path`) with these options
    for this machine, or None when an input cannot be read (then nothing is
    cached)."""
    code = compiler_identity()
    if code is None:
        return None
    try:
        machine = machine_identity()
    except Exception:  # noqa: BLE001 - no runtime, no llvmlite: the compile will say why
        return None
    h = hashlib.sha256()
    for part in (FORMAT, sys.version, ktapjit.__version__, code, *machine,
                 repr(dataclasses.astuple(limits)), repr([f.name for f in dataclasses.fields(limits)]),
                 f"optimize={bool(optimize)}", os.fsencode(path), source):
        data = part if isinstance(part, bytes) else part.encode("utf-8", "surrogateescape")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:40]


def machine_identity() -> tuple[str, ...]:
    """The inputs of the native code besides the module: runtime, LLVM, target, CPU."""
    import llvmlite

    from ktapjit.jit import codegen, rtlib

    return (f"abi={rtlib.ABI_VERSION}", f"runtime={rtlib.runtime_identity()}",
            f"llvmlite={llvmlite.__version__}",
            f"typed-pointers={os.environ.get('LLVMLITE_ENABLE_IR_LAYER_TYPED_POINTERS', '1')}",
            f"target={codegen.host_target()}", f"cpu={codegen.cpu_identity()}")


_compiler_identity: Optional[str] = None


def compiler_identity() -> Optional[str]:
    """A hash of the text of COMPILER_CODE's files (~1 ms, once per
    process), or None when one cannot be read."""
    global _compiler_identity
    if _compiler_identity is None:
        h = hashlib.sha256()
        try:
            for file in _code_files():
                data = file.read_bytes()
                name = str(file.relative_to(_PACKAGE)).encode()
                h.update(len(name).to_bytes(8, "little") + name + len(data).to_bytes(8, "little") + data)
        except OSError:
            return None
        _compiler_identity = h.hexdigest()
    return _compiler_identity


def _code_files() -> list[Path]:
    files = []
    for name in COMPILER_CODE:
        top = _PACKAGE / name
        if top.suffix:
            files.append(top)
            continue
        for root, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files.extend(Path(root, n) for n in sorted(names) if n.endswith(_CODE_SUFFIXES))
    return files


# -- entries

# The module compile_script last made under a key in this process, pickled
# as it left it, until the JIT stores it with its native code; and the entry
# last read, for the JIT's load of its module. One of each: a run compiles
# one script, and a long-lived process (the tests) keeps no more.
_made: dict[str, bytes] = {}
_found: dict[str, CachedScript] = {}


def find(key: str) -> Optional[Module]:
    """The module the entry `key` holds (its native code kept for
    ``native``), or None on a miss."""
    data = load_entry(key)
    if data is None:
        return None
    try:
        fmt, module_bytes, lowered, image_bytes = pickle.loads(data)
        if fmt != FORMAT:
            return None
        module = pickle.loads(module_bytes)
        image = Image.from_bytes(image_bytes)
    except Exception:  # noqa: BLE001 - any unreadable entry (corrupt, too deep, stale classes) is a miss
        return None
    if not isinstance(module, Module) or not isinstance(lowered, Lowered):
        return None
    module.inputs_key = key
    _found.clear()
    _found[key] = CachedScript(module, lowered, image)
    return module


def made(key: str, module: Module) -> None:
    """`module` was just compiled from the inputs `key` stands for."""
    _made.clear()
    try:
        _made[key] = pickle.dumps(module, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - too deep to pickle, say: not cached, and the module still runs
        return
    module.inputs_key = key


def native(module: Module) -> Optional[CachedScript]:
    """The cached native code of `module`, when it came from the cache."""
    key = module.inputs_key
    found = _found.get(key) if key is not None else None
    return found if found is not None and found.module is module else None


def keep(module: Module, lowered: Lowered, image: Image) -> None:
    """Store `module`'s native code with it, when compile_script made it
    under a key in this process."""
    key = module.inputs_key
    module_bytes = _made.pop(key, None) if key is not None else None
    if module_bytes is None:
        return
    tables = dataclasses.replace(lowered, llvm_ir="")
    store_entry(key, pickle.dumps((FORMAT, module_bytes, tables, image.to_bytes()),
                                  protocol=pickle.HIGHEST_PROTOCOL))


def load_entry(key: str, directory: Callable[[], Path] = cache_dir) -> Optional[bytes]:
    """The bytes stored under `key`, or None."""
    try:
        return (directory() / f"{key}{SUFFIX}").read_bytes()
    except OSError:
        return None


def store_entry(key: str, data: bytes, directory: Callable[[], Path] = cache_dir) -> None:
    """Store `data` under `key`, atomically (readers see all of it or
    nothing). An unwritable cache only costs a later run a compile."""
    import tempfile  # only a miss writes

    where = directory()
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=where, prefix=".kscript-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, where / f"{key}{SUFFIX}")
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
