"""Running a bundle's code: its image (script and runtime, jit/image.py)
mapped into this process and handed to the JIT's engine as a NativeProgram,
with the runtime inside it.

No LLVM, no toolchain and no dynamic loader: the image is mapped into
anonymous memory and its few imports bound to the process's libc. The
runtime bound to is the bundle's own copy (its ABI version was checked
against this ktapjit's table before anything was mapped), never the host
JIT's.

May import: ktapjit.bundle.format, ktapjit.jit (engine, image, loader, rtlib), stdlib.
"""

from __future__ import annotations

import ctypes

from ktapjit.bundle.format import Bundle, BundleError, lowered_of


class BundleCode:
    """The mapped image's symbols, as jit/codegen.py LoadedCode gives them."""

    def __init__(self, symbols: dict[str, int]):
        self.symbols = symbols

    def address(self, symbol: str) -> int:
        address = self.symbols.get(symbol)
        if address is None:
            raise BundleError(f"the bundle's code has no symbol {symbol}: it is damaged")
        return address


class BundleEngine:
    """An engine (run_api.py) whose JIT runs use a bundle's code."""

    name = "jit"

    def __init__(self, bundle: Bundle, path: str):
        from ktapjit.jit.image import Image, ImageError, map_image
        from ktapjit.jit.loader import NativeProgram
        from ktapjit.jit.rtlib import RuntimeLibrary

        try:
            mapped = map_image(Image.from_bytes(bundle.code), what=f"the code of {path}")
        except ImageError as exc:
            raise BundleError(str(exc).removeprefix("ktapjit: ")) from None
        self.runtime = RuntimeLibrary(mapped)
        self.program = NativeProgram(lowered_of(bundle.tables), BundleCode(mapped.symbols))
        _fill_strings(self.program, self.runtime)

    def load(self, module, config, out):
        from ktapjit.jit.engine import JitRun

        return JitRun(module, config, out, self.program, runtime=self.runtime)


def _fill_strings(program, runtime) -> None:
    """The script's string constants, interned by the runtime it runs on."""
    strings = program.lowered.strings
    if not strings:
        return
    table = (ctypes.c_int64 * len(strings)).from_address(program.code.address("ktap_strings"))
    for i, data in enumerate(strings):
        table[i] = runtime.string(data).payload
