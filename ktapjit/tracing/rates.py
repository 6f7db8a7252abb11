"""`ktapjit run -v`: what a live trace takes from the kernel, as it goes.

Every RATES_SECONDS one stderr line gives the samples read from the rings
per second over the last interval and the samples the kernel dropped in
it, then the totals; when the trace ends, one line sums it up. The counts
are the session's own (the ring reader's sample count, the kernel's lost
counters), written by the thread that runs the script, between rounds and
between the records (or native steps) of one, so a line never lands
inside another stderr line and none comes after the trace ended. Time is
CLOCK_MONOTONIC, the session's clock.
"""

from __future__ import annotations

import time
from typing import Callable

from ktapjit.diag import counted

RATES_SECONDS = 2.0


class RateReport:
    """`read()` and `lost()` give the running totals; `say` writes a line."""

    def __init__(self, say: Callable[[str], None], read: Callable[[], int], lost: Callable[[], int],
                 interval: float = RATES_SECONDS):
        self.say = say
        self.read = read
        self.lost = lost
        self.interval = interval
        self.start = self.last = time.monotonic()  # the events were enabled just now
        self.last_read = self.last_lost = 0
        self.due = self.start + interval

    def tick(self) -> None:
        """A line if the interval has passed since the last one. Called as
        often as once per record: returns at once until then."""
        now = time.monotonic()
        if now < self.due:
            return
        span = now - self.last
        read, lost = self.read(), self.lost()
        rate = (read - self.last_read) / span
        self.say(f"{rate:,.0f} events/s, {_lost(lost - self.last_lost)} (last {span:.1f} s); "
                 f"total {counted(read, 'event', grouped=True)}, {_lost(lost)}")
        self.last, self.last_read, self.last_lost = now, read, lost
        self.due = now + self.interval

    def summary(self, read: int, lost: int, unprocessed: int) -> None:
        """The whole trace: what was read, in how long, what never ran."""
        span = time.monotonic() - self.start
        rate = read / span if span > 0 else 0.0
        line = (f"{counted(read, 'event', grouped=True)} in {span:.1f} s ({rate:,.0f} events/s), "
                f"{_lost(lost)}")
        if unprocessed:
            line += f", {unprocessed:,} read but not processed"
        self.say(line)


def _lost(n: int) -> str:
    return f"{n:,} lost"
