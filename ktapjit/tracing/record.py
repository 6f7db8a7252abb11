"""`ktapjit record -e EVENTDEF ... -o FILE [-- CMD]`: a live session that only
records. It is a script whose probes have empty bodies, run with --record, so
event resolution, filters and the perf.data it writes are exactly those of
`ktapjit run --record`."""

from __future__ import annotations

from ktapjit.events.records.decode import Sample, has_time


def recording_script(eventdefs: list[str]) -> bytes:
    """The script `ktapjit record` runs: one empty probe per -e. Braces and
    newlines would let an -e argument write script code: refused."""
    for text in eventdefs:
        bad = next((ch for ch in "{}\n" if ch in text), None)
        if bad is not None:
            raise ValueError(f"-e {text!r}: an event definition cannot contain {bad!r}")
    return "".join(f"trace {e} {{ }}\n" for e in eventdefs).encode()


class RecordingDriver:
    """Stands in for the engine: counts what goes by; the session writes it."""

    def __init__(self, start_ns: int):
        self.last_time = start_ns
        self.lost = 0
        self.unprocessed = 0
        self.samples = 0

    def feed(self, records) -> bool:
        for record in records:
            if isinstance(record, Sample):
                self.samples += 1
            time = getattr(record, "time", None)
            if has_time(time) and time > self.last_time:
                self.last_time = time
        return True
