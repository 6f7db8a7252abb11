"""Where ktapjit keeps what it can rebuild: the JIT runtime (rt/), compiled
scripts (jit/), lark's parser tables, benchmark recordings (bench/).

The root is $KTAPJIT_CACHE_DIR, else $XDG_CACHE_HOME/ktapjit, else
~/.cache/ktapjit. May import: stdlib.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("KTAPJIT_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ktapjit"
