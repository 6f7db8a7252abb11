"""Building the small C programs tests trace, with the system compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def build_c(tmp_path_factory, name: str, source, *flags: str, purpose: str) -> Path:
    """Compile `source` (C text, or the Path of a .c file) into the
    executable `name` in a fresh temporary directory. Skips the test, saying
    `purpose`, where there is no C compiler."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip(f"no C compiler (gcc) to build {purpose}")
    d = tmp_path_factory.mktemp(name)
    if isinstance(source, Path):
        c_file = source
    else:
        c_file = d / f"{name}.c"
        c_file.write_text(source)
    subprocess.run([gcc, *flags, "-o", str(d / name), str(c_file)], check=True)
    return d / name
