"""Running a bundle's code: its shared library mapped into this process and
handed to the JIT's engine as a NativeProgram, with the runtime inside it.

No LLVM and no toolchain: the library is loaded by the system's dynamic
loader from an anonymous file (memfd), so nothing is written to disk and a
noexec cache or /tmp does not matter. The runtime bound to is the bundle's
own copy (its ABI version was checked against this ktapjit's table before
anything was loaded), never the host's JIT runtime.

May import: ktapjit.bundle.format, ktapjit.jit (engine, loader, rtlib), stdlib.
"""

from __future__ import annotations

import ctypes
import os

from ktapjit.bundle.format import Bundle, BundleError, lowered_of


class BundleCode:
    """The loaded library's symbols, as jit/codegen.py LoadedCode gives them."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def address(self, symbol: str) -> int:
        try:
            return ctypes.addressof(ctypes.c_char.in_dll(self.lib, symbol))
        except ValueError:
            raise BundleError(f"the bundle's code has no symbol {symbol}: it is damaged") from None


class BundleEngine:
    """An engine (run_api.py) whose JIT runs use a bundle's code."""

    name = "jit"

    def __init__(self, bundle: Bundle):
        from ktapjit.jit.loader import NativeProgram
        from ktapjit.jit.rtlib import RuntimeLibrary

        self.runtime = RuntimeLibrary(_map_library(bundle.code))
        self.program = NativeProgram(lowered_of(bundle.tables), BundleCode(self.runtime.lib))
        _fill_strings(self.program, self.runtime)

    def load(self, module, config, out):
        from ktapjit.jit.engine import JitRun

        return JitRun(module, config, out, self.program, runtime=self.runtime)


def _map_library(code: bytes) -> str:
    """A path the dynamic loader can open holding `code`: an anonymous
    memory file, alive as long as this process (the library stays mapped)."""
    try:
        fd = os.memfd_create("ktapjit-bundle", 0)
    except (AttributeError, OSError) as exc:
        raise BundleError(f"cannot load the bundle's code here: memfd_create: {exc}") from None
    _write_all(fd, code)
    return f"/proc/self/fd/{fd}"


def _write_all(fd: int, code: bytes) -> None:
    view, done = memoryview(code), 0
    while done < len(code):
        done += os.write(fd, view[done:])


def _fill_strings(program, runtime) -> None:
    """The script's string constants, interned by the runtime it runs on."""
    strings = program.lowered.strings
    if not strings:
        return
    table = (ctypes.c_int64 * len(strings)).from_address(program.code.address("ktap_strings"))
    for i, data in enumerate(strings):
        table[i] = runtime.string(data).payload
