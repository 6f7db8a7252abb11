"""Tables as Prometheus text (exposition format 0.0.4), rendered once per
publication so a scrape only copies bytes.

A metric is one exported global: an integer (one sample, no labels), or a
table whose values are integers (counter, gauge), hist/lhist aggregations
(histogram) or stats aggregations (summary). A table key becomes the label
`key`; entries that do not fit the declared type are left out
(docs/metrics.md says which).
"""

from __future__ import annotations

from dataclasses import dataclass

from ktapjit.semantics import agg
from ktapjit.semantics.values import Table

TYPES = ("counter", "gauge", "histogram", "summary")
PREFIX = "ktapjit_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Export:
    """One `--export NAME[:TYPE]`."""

    name: str
    type: str = "counter"

    @property
    def metric(self) -> str:
        return PREFIX + self.name


def render(exports: list[Export], values: list[object]) -> bytes:
    """The exposition text of each export with its global's current value."""
    lines: list[str] = []
    for export, value in zip(exports, values):
        lines.append(f"# TYPE {export.metric} {export.type}")
        lines.extend(_samples(export, value))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _samples(export: Export, value: object) -> list[str]:
    name = export.metric
    if export.type in ("counter", "gauge"):
        if type(value) is int:
            return [f"{name} {value}"]
        if type(value) is not Table:
            return []
        return [f"{name}{_labels(label)} {v}" for label, v in _entries(value) if type(v) is int]
    if type(value) is not Table:
        return []
    lines: list[str] = []
    for label, v in _entries(value):
        if not agg.is_well_formed(v):
            continue
        kind = v.get(b"kind")
        if export.type == "histogram" and kind in (b"hist", b"lhist"):
            lines.extend(_histogram(name, label, v))
        elif export.type == "summary" and kind == b"stats":
            lines.append(f"{name}_sum{_labels(label)} {v.get(b'sum')}")
            lines.append(f"{name}_count{_labels(label)} {v.get(b'count')}")
    return lines


def _entries(table: Table):
    """(label value, value) per entry whose key can be a label: a string,
    an integer or a boolean (a table or function key has no stable text)."""
    for key, value in table.items():
        label = key_text(key)
        if label is not None:
            yield label, value


def key_text(key: object) -> str | None:
    if key is True or key is False:
        return "true" if key else "false"
    if type(key) is int:
        return str(key)
    if type(key) is bytes:
        # Prometheus takes UTF-8 only: other bytes show as \xHH (documented).
        return key.decode("utf-8", "backslashreplace")
    return None


def _histogram(name: str, label: str, histogram: Table) -> list[str]:
    """Cumulative buckets up to the highest non-empty one, then +Inf. A
    bucket counts integers from its key to the next bucket's key - 1, so
    that is its exact `le`."""
    keys = agg.bucket_keys(histogram)
    counts = [histogram.get(k) or 0 for k in keys]
    last = max((i for i, c in enumerate(counts) if c), default=-1)
    lines, total = [], 0
    for i in range(last + 1):
        total += counts[i]
        if i + 1 < len(keys):
            lines.append(f"{name}_bucket{_labels(label, str(keys[i + 1] - 1))} {total}")
    total = sum(counts)
    lines.append(f"{name}_bucket{_labels(label, '+Inf')} {total}")
    lines.append(f"{name}_sum{_labels(label)} {histogram.get(b'sum')}")
    lines.append(f"{name}_count{_labels(label)} {total}")
    return lines


def _labels(key: str, le: str | None = None) -> str:
    text = f'key="{escape(key)}"'
    if le is not None:
        text += f',le="{le}"'
    return "{" + text + "}"


def escape(value: str) -> str:
    """A label value as the exposition format quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

