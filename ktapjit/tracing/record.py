"""`ktapjit record -e EVENTDEF ... -o FILE [-- CMD]`: a live session that only
records. It is a script whose probes have empty bodies, run with --record, so
event resolution, filters and the perf.data it writes are exactly those of
`ktapjit run --record`."""

from __future__ import annotations

from ktapjit.events.decode import Sample


def recording_script(eventdefs: list[str]) -> bytes:
    """The script `ktapjit record` runs: one empty probe per -e."""
    return "".join(f"trace {e} {{ }}\n" for e in eventdefs).encode()


class RecordingDriver:
    """Stands in for the engine: counts what goes by; the session writes it."""

    def __init__(self, start_ns: int):
        self.last_time = start_ns
        self.lost = 0
        self.samples = 0

    def feed(self, records) -> bool:
        for record in records:
            if isinstance(record, Sample):
                self.samples += 1
            time = getattr(record, "time", None)
            if time and time > self.last_time:
                self.last_time = time
        return True
