"""Where the JIT runtime's files are: its C sources, and the LLVM bitcode and
object generated from them for each target (``runtime/generated/``).

The C sources are the truth; ``runtime_build.py`` turns them into bitcode
with a pinned clang and the bitcode into an object with llvmlite, at
development or packaging time. At run time only the generated files are
read. ``SOURCES_DIGEST`` names the sources' content, so a test can tell a
stale generated file without a compiler.

May import: stdlib.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

RUNTIME_DIR = Path(__file__).with_name("runtime")
GENERATED_DIR = RUNTIME_DIR / "generated"

# Every target the engine emits code for: name -> LLVM triple.
TRIPLES = {
    "x86_64": "x86_64-unknown-linux-gnu",
    "aarch64": "aarch64-unknown-linux-gnu",
}


def target_name(target: str) -> str:
    """A target's name ("x86_64"), given it or its triple; ValueError if unknown."""
    if target in TRIPLES:
        return target
    for name, triple in TRIPLES.items():
        if target == triple or target.split("-")[0] == name:
            return name
    raise ValueError(f"no runtime for target {target!r} (known: {', '.join(sorted(TRIPLES))})")


def sources() -> list[Path]:
    """The runtime's C sources and headers, read from the directory: adding
    or splitting a file needs no list edited anywhere."""
    return sorted(p for p in RUNTIME_DIR.iterdir() if p.suffix in (".c", ".h") and p.is_file())


def c_files() -> list[Path]:
    return [p for p in sources() if p.suffix == ".c"]


def sources_digest() -> str:
    """A hash of every source's name and content."""
    h = hashlib.sha256()
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def bitcode_path(target: str) -> Path:
    return GENERATED_DIR / f"ktrt-{target}.bc"


def object_path(target: str) -> Path:
    return GENERATED_DIR / f"ktrt-{target}.o"


def stamp_path(target: str) -> Path:
    """What a target's files were made from (sources digest, tools, hashes)."""
    return GENERATED_DIR / f"ktrt-{target}.json"


def read_stamp(target: str) -> dict:
    import json  # not at run time: only the generator and its tests read stamps

    return json.loads(stamp_path(target).read_text())
