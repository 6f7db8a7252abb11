"""What `--export` exports, and when the main thread publishes it.

The event loop calls `tick()` between rounds (tracing/live.py) and at most
every INTERVAL_S it reads the exported globals from the run, renders them
and hands the bytes to the server. Reading happens only on the main thread,
between engine steps, so the tables are consistent and no lock is held
against the event path. A scrape's data is at most INTERVAL_S plus one
round (live.POLL_SECONDS when idle) old.

May import: stdlib, ktapjit.diag, ktapjit.metrics.
"""

from __future__ import annotations

import re
import time
from ktapjit.metrics.exposition import CONTENT_TYPE, TYPES, Export, render
from ktapjit.metrics.server import MetricsServer

INTERVAL_S = 0.5
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ExportError(ValueError):
    """An --export that cannot be exported."""


def parse_export(text: str) -> Export:
    """`NAME` or `NAME:TYPE`."""
    name, sep, kind = text.partition(":")
    if not _NAME.fullmatch(name):
        raise ExportError(f"--export {text}: '{name}' is not a global's name")
    if sep and kind not in TYPES:
        raise ExportError(f"--export {text}: the type must be one of {', '.join(TYPES)}")
    return Export(name, kind or "counter")


def check_exports(exports: list[Export], global_names) -> None:
    names = list(global_names)
    seen = set()
    for export in exports:
        if export.name not in names:
            raise ExportError(f"--export {export.name}: the script has no global '{export.name}'")
        if export.name in seen:
            raise ExportError(f"--export {export.name}: given twice")
        seen.add(export.name)


class Exporter:
    """Publishes the exported globals of one run to a MetricsServer."""

    def __init__(self, server: MetricsServer, exports: list[Export], interval_s: float = INTERVAL_S):
        self.server = server
        self.exports = exports
        self.interval_s = interval_s
        self.run = None
        self.slots: list[int] = []
        self.last = float("-inf")
        server.publish(render(exports, [None] * len(exports)))  # until a run is attached

    def attach(self, run, global_names):
        """Read from `run` (an engine run offering global_value) from now on;
        returns it. Publishes at once: before the top level, every export is nil."""
        names = list(global_names)
        self.run = run
        self.slots = [names.index(e.name) for e in self.exports]
        self.publish()
        return run

    def tick(self) -> None:
        """Publish when the last publication is INTERVAL_S old."""
        if self.run is not None and time.monotonic() - self.last >= self.interval_s:
            self.publish()

    def publish(self) -> None:
        values = [self.run.global_value(slot) for slot in self.slots]
        self.server.publish(render(self.exports, values))
        self.last = time.monotonic()


def open_exporter(address: tuple[str, int], exports: list[Export]) -> Exporter:
    """Bind the server now, so a bad address fails before tracing starts."""
    return Exporter(MetricsServer(*address, CONTENT_TYPE), exports)
