"""`ktapjit run -f json`: the run's output as NDJSON, one object a line
(docs/output-json.md is the schema).

Every object has ``"v": 1`` (the schema version) and a ``"type"``. Script
output comes as semantics.output Items, the same from every engine, so
every engine writes the same bytes. A byte string that is valid UTF-8 is a
JSON string; any other is ``{"base64": "..."}`` (docs/language-notes.md,
"Strings in JSON output").

May import: stdlib, ktapjit.diag, ktapjit.semantics.
"""

from __future__ import annotations

import base64
import json
from json.encoder import encode_basestring
from typing import BinaryIO

from ktapjit.semantics.agg import stats_average
from ktapjit.semantics.output import AggEntry, Item

VERSION = 1


def json_bytes(data: bytes):
    """A byte string as JSON: a string when it is UTF-8, else {"base64": ...}."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def item_object(item: Item) -> dict:
    """The JSON object of one output item."""
    kind = item.kind
    if kind == "print":
        return _object(kind, text=json_bytes(item.text.removesuffix(b"\n")))
    if kind == "printf":
        return _object(kind, text=json_bytes(item.text))
    if kind == "print_hist":
        rows = [{"key": json_bytes(key), "count": count, "bar": bar} for key, count, bar in item.rows]
        return _object(kind, rows=rows, more=item.more)
    if kind == "print_folded":
        return _object(kind, rows=[{"stack": json_bytes(stack), "count": count} for stack, count in item.rows])
    if kind == "print_agg":
        return _object(kind, entries=[_agg_object(entry) for entry in item.entries])
    raise ValueError(f"unknown output item kind {kind!r}")


def _agg_object(entry: AggEntry) -> dict:
    head = {"key": json_bytes(entry.key), "kind": entry.kind}
    if entry.stats is not None:
        count, total, least, most = entry.stats
        return {**head, "count": count, "average": stats_average(count, total), "total": total,
                "min": least, "max": most}
    buckets = [{"range": label.decode("ascii"), "count": count, "bar": bar} for label, count, bar in entry.buckets]
    return {**head, "buckets": buckets}


def _object(kind: str, **fields) -> dict:
    return {"v": VERSION, "type": kind, **fields}


class JsonOutput:
    """Writes the objects of one run to a binary stream, a line each.
    with_losses=False: lost-event counts are not this output's (an
    --engine compare trial: they describe the stream, not the script)."""

    def __init__(self, stream: BinaryIO, with_losses: bool = True):
        self.stream = stream
        self.with_losses = with_losses

    def items(self, items: list[Item]) -> None:
        self.stream.write(b"".join([_item_line(item) for item in items]))

    def error(self, fault) -> None:
        """A runtime error (diag.RuntimeFault), with its location when it has one."""
        where = {}
        if fault.span is not None:
            # A script path is the bytes given (surrogate-escaped): a string only when UTF-8.
            file = json_bytes(fault.span.file.encode("utf-8", "surrogateescape"))
            where = {"file": file, "line": fault.span.line, "col": fault.span.col}
        self._write(_object("error", message=fault.message, **where))

    def stream_error(self, message: str) -> None:
        """The event stream failed (a corrupt recording...): tracing stopped."""
        self._write(_object("error", message=message, stream=True))

    def lost(self, lost: int, unprocessed: int) -> None:
        """Events that never ran: dropped by the kernel, or read and left at a stop."""
        if lost:
            self._write(_object("lost", events=lost))
        if unprocessed:
            self._write(_object("unprocessed", events=unprocessed))

    def end(self, status: int) -> None:
        self._write(_object("end", status=status))

    def flush(self) -> None:
        self.stream.flush()

    def _write(self, obj: dict) -> None:
        self.stream.write(_line(obj))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# The line of a print or printf of UTF-8 text, without building its object:
# _ENCODER writes a string with this same function.
_TEXT_HEADS = {kind: f'{{"v":{VERSION},"type":"{kind}","text":' for kind in ("print", "printf")}


def _item_line(item: Item) -> bytes:
    head = _TEXT_HEADS.get(item.kind)
    if head is not None:
        text = item.text.removesuffix(b"\n") if item.kind == "print" else item.text
        try:
            return (head + encode_basestring(text.decode("utf-8")) + "}\n").encode("utf-8")
        except UnicodeDecodeError:
            pass
    return _line(item_object(item))


def _line(obj: dict) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8") + b"\n"
