"""``print_folded``: a table of stack counts as folded lines for flame graphs.

Each key's print text is split into lines; the lines are the frames,
innermost first, as ``stack()``/``ustack()`` write them (a key made as
``stack() .. "\\n" .. ustack() .. "\\n" .. execname`` reads, reversed, as
comm, user frames, kernel frames: root first). A line is written as
``root;...;leaf COUNT``: empty frames are dropped and each frame's
``+0xOFFSET`` is cut, so the samples of one function fold together. Keys
that fold to the same text are merged (their counts added, exactly), in the
order of their first key. This is the format flamegraph.pl and speedscope read.
"""

from __future__ import annotations

import re

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.output import Item
from ktapjit.semantics.values import Identities, Table, type_name, value_text

_OFFSET = re.compile(rb"\+0x[0-9a-fA-F]+$")


def format_folded(table: object, identities: Identities) -> bytes:
    """The bytes ``print_folded(table)`` writes."""
    return folded_item(table, identities).text


def folded_item(table: object, identities: Identities) -> Item:
    """What ``print_folded(table)`` writes, with its rows (stack, count)."""
    if type(table) is not Table:
        raise RuntimeFault(f"print_folded: expected a table, got {type_name(table)}")
    entries = list(table.items())
    # Validate every value before printing anything or numbering any key.
    for _, count in entries:
        if type(count) is not int or count < 0:
            raise RuntimeFault("print_folded: values must be non-negative integers")
    merged: dict[bytes, int] = {}
    for key, count in entries:
        stack = fold(value_text(key, identities))
        merged[stack] = merged.get(stack, 0) + count
    rows = tuple(merged.items())
    return Item("print_folded", b"".join(b"%s %d\n" % row for row in rows), rows)


def fold(text: bytes) -> bytes:
    frames = [_OFFSET.sub(b"", line) for line in reversed(text.split(b"\n"))]
    return b";".join(frame for frame in frames if frame)
