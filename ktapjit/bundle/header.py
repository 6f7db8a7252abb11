"""How a bundle file starts, and the test `ktapjit run FILE` makes on every
script it is given: apart from format.py so that the test costs no import of
the container's readers (zipfile, json).

May import: stdlib.
"""

from __future__ import annotations

HEADER = b"#!/usr/bin/env -S ktapjit run\n# ktapjit bundle: `ktapjit source FILE` prints the script\n"


def is_bundle(path: str) -> bool:
    """Whether the file at `path` starts like a bundle (a script never does)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HEADER)) == HEADER
    except OSError:
        return False
