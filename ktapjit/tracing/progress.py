"""A replay's progress bar, for a person watching a terminal.

A replay still running after DELAY_S seconds shows one line on stderr: the
share of the recording's data section done (bytes done / total), the events
(records) handed to the engine, their rate, and the time left. The drivers
report once per chunk of records (`update`), never per event, and the line is
redrawn at most every REDRAW_S; tqdm is imported only when the line is first
drawn, so a short replay pays nothing but a clock read per chunk. `close()`
erases the line, so the trace_end output, an error line or a Ctrl-C's
aftermath start on a clean line.

Whether a bar is wanted at all (stderr a terminal, no -q) is the caller's
decision (cli._replay_progress). When the script's output goes to a terminal
too, it is written through `TerminalOutput`: the bar is erased before output
is written, and drawn again below it at the next update, but never after an
unfinished output line (it would then erase that line's text).

May import: tqdm (lazily, once the bar is drawn), stdlib.
"""

from __future__ import annotations

import itertools
import time
from typing import BinaryIO, Iterable, Iterator, Optional

DELAY_S = 2.0  # a replay shorter than this shows nothing
REDRAW_S = 0.2
CHUNK = 4096  # records per progress report on the Python (record by record) path


class ReplayProgress:
    """One replay's bar on `stream` (a binary stderr that is a terminal)."""

    def __init__(self, stream: BinaryIO, delay_s: Optional[float] = None, clock=time.monotonic):
        self.stream = stream
        self.delay_s = DELAY_S if delay_s is None else delay_s
        self.clock = clock
        self.total = 0
        self.started = 0.0
        self.next_draw = 0.0
        self.bar = None  # the tqdm bar, once drawn
        self.output: Optional[TerminalOutput] = None  # the script's output, when it shares a terminal
        self.shown = False  # the line is on the screen now
        self.closed = False

    def begin(self, total_bytes: int) -> None:
        """The replay starts: `total_bytes` is the size of its data section."""
        self.total = total_bytes
        self.started = self.clock()
        self.next_draw = self.started + self.delay_s

    def update(self, bytes_done: int, events_done: int) -> None:
        """Called once per chunk handed to the engine."""
        now = self.clock()
        if now < self.next_draw or self.closed:
            return
        self.next_draw = now + REDRAW_S
        if self.output is not None and not self.output.at_line_start:
            return  # drawing would put the bar after (and erasing it would wipe) an unfinished line
        if self.output is not None:
            self.output.flush()  # what the script printed goes above the bar
        elapsed = max(now - self.started, 1e-9)
        done = min(bytes_done, self.total)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate else None
        status = (f"{_si(events_done)} events, {_si(events_done / elapsed)} events/s, {_si(rate)}B/s, "
                  f"ETA {_interval(eta)}")
        if self.bar is None:
            self.bar = self._open_bar(done, status)  # draws it
        else:
            self.bar.n = done
            self.bar.postfix = status
            self.bar.refresh()
        self.shown = True

    def hide(self) -> None:
        """Erase the line (the script is about to print); the next update draws it again."""
        if self.shown:
            self.shown = False
            self.bar.clear()

    def close(self) -> None:
        """Erase the line for good; idempotent, and safe on any exit path."""
        self.closed = True
        bar, self.bar = self.bar, None
        if bar is not None:
            # A hidden bar writes nothing more: the line may hold unflushed output's start.
            bar.disable = not self.shown
            self.shown = False
            bar.close()

    def _open_bar(self, bytes_done: int, status: str):
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: the bar is drawn only from update()
        bar = tqdm(total=self.total, initial=bytes_done, unit="B", unit_scale=True, unit_divisor=1000,
                   file=_TextStream(self.stream), dynamic_ncols=True, leave=False, ascii=True, desc="replay",
                   bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B{postfix}", postfix=status,
                   delay=0)
        return bar

    def chunks(self, records: Iterable, base: int) -> Iterator:
        """`records` as they are (the same records, the same errors at the
        same record), reporting after each chunk of CHUNK records: a record's
        `offset` minus `base` is where it lies in the data section."""
        return itertools.chain.from_iterable(self._reporting_chunks(iter(records), base))

    def _reporting_chunks(self, it: Iterator, base: int) -> Iterator[list]:
        done = events = 0
        while True:
            chunk: list = []
            try:
                chunk.extend(itertools.islice(it, CHUNK))  # keeps the records before a decode error
            except Exception:
                yield chunk  # they run first; the error surfaces where the driver fetches the next
                raise
            if not chunk:
                return
            yield chunk
            events += len(chunk)
            done = max(done, getattr(chunk[-1], "offset", base) - base)
            self.update(done, events)


class TerminalOutput:
    """The script's output stream, when stdout is a terminal while the bar
    may show: each write first erases the bar, which the next update draws
    below the output. What it does not know it passes to the stream."""

    def __init__(self, stream: BinaryIO, progress: ReplayProgress):
        self.stream = stream
        self.progress = progress
        self.at_line_start = True
        progress.output = self

    def write(self, data: bytes) -> int:
        if self.progress.shown:
            self.progress.hide()
        if data:
            self.at_line_start = data.endswith(b"\n")
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class _TextStream:
    """What tqdm writes to (text), over a binary stream."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(text.encode("utf-8", "replace"))

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:  # for the terminal's width
        return self.stream.fileno()


def _si(value: float) -> str:
    """1234567 -> '1.23M', as tqdm scales counts."""
    from tqdm import tqdm

    return tqdm.format_sizeof(value)


def _interval(seconds: Optional[float]) -> str:
    from tqdm import tqdm

    return "?" if seconds is None else tqdm.format_interval(seconds)
