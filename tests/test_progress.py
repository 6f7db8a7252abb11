"""The replay progress bar (README, "The command line"; docs/events.md,
"Progress of a replay").

`ktapjit run --replay FILE SCRIPT` on a terminal shows, once the replay has
run ~2 s, one line on stderr: the share of the recording done (bytes), the
events run, their rate and the time left. Not with -q, not when stderr is no
terminal, not for a short replay; it is erased before trace_end's output or
an error line, and the script's output is the same, byte for byte, with it.

The tests give ktapjit a real pseudo-terminal and read what the terminal
received. The fast ones run the CLI in this process with the 2 s delay taken
out; the slow ones run the command a user types over a recording that takes
several seconds under the interpreter.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.tracing import progress

REPO = Path(__file__).resolve().parents[1]
KTAPJIT = [sys.executable, "-c", "from ktapjit.cli import entry; entry()"]
DEMO = REPO / "examples" / "data" / "demo.data"
SYSCOUNT = REPO / "examples" / "syscount.kp"
COUNT = "var n = 0\ntrace raw_syscalls:sys_enter { n += 1 }\ntrace_end { print(n) }"

# One drawing of the bar: percentage, bar, bytes done/total, events, events/s, bytes/s, time left.
FRAME = re.compile(r"replay +(\d+)%\|[# 0-9]*\| [\d.]+[kMG]?B/[\d.]+[kMG]?B, ([\d.]+[kM]?) events, "
                   r"[\d.]+[kM]? events/s, [\d.]+[kMG]?B/s, ETA (\d\d:\d\d|\?)")


class Terminal:
    """A pseudo-terminal; everything written to it is collected."""

    def __init__(self, cols: int = 150):
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
        self.received = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every slave descriptor is closed
                return
            if not data:
                return
            self.received += data

    def file(self):
        """The terminal as a binary stream for this process (stdout or stderr)."""
        return open(self.slave, "wb", buffering=0, closefd=False)

    def finish(self) -> bytes:
        os.close(self.slave)
        self._reader.join(timeout=30)
        os.close(self.master)
        return bytes(self.received)


def frames(received: bytes) -> list[re.Match]:
    return [m for m in map(FRAME.search, received.decode().split("\r")) if m]


def screen(received: bytes) -> list[str]:
    """The lines a terminal shows after `received`: a carriage return goes back
    to the line's start and what follows overwrites it; blank lines at the end
    are dropped."""
    text = received.decode()
    assert "\x1b" not in text, "the bar draws with \\r only"
    lines: list[str] = []
    line: list[str] = []
    col = 0
    for ch in text:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        else:
            line[col:col + 1] = [ch]
            col += 1
    lines.append("".join(line).rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return lines


def run_in_process(args: list[str], stdout=None, stderr=None) -> tuple[int, bytes, bytes]:
    """`ktapjit ARGS` in this process; stdout/stderr default to in-memory streams."""
    out = stdout if stdout is not None else io.BytesIO()
    err = stderr if stderr is not None else io.BytesIO()
    status = main(args, stdout=out, stderr=err)
    return status, getattr(out, "getvalue", bytes)(), getattr(err, "getvalue", bytes)()


@pytest.fixture
def no_delay(monkeypatch):
    """The bar from the first chunk on, redrawn at every chunk."""
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    monkeypatch.setattr(progress, "REDRAW_S", 0.0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A recording of 40,000 syscalls: several chunks on either engine's path."""
    from ktapjit.testing.synth import SyntheticStream, ints, write_perf_data

    path = tmp_path_factory.mktemp("progress") / "synth.data"
    write_perf_data(str(path), SyntheticStream([("raw_syscalls", "sys_enter", None, {"id": ints(0, 3)})],
                                               n_events=40_000, cpus=2, tasks=4, seed=3))
    return path


ENGINES = pytest.mark.parametrize("engine", ["interp", "jit"])


@ENGINES
def test_bar_shows_bytes_events_rate_and_time_left_then_is_erased(no_delay, synthetic, engine):
    args = ["run", "--engine", engine, "--replay", str(synthetic), "-e", COUNT]
    terminal = Terminal()
    status, out, _ = run_in_process(args, stderr=terminal.file())
    received = terminal.finish()
    assert (status, out) == (0, b"40000\n")
    shown = frames(received)
    assert shown, received
    events = [m.group(2) for m in shown]
    assert events[-1] in ("40.0k", "40.2k"), events  # 40,000 samples and a few COMM/MMAP records
    assert screen(received) == []  # erased before trace_end printed
    assert run_in_process(args) == (0, out, b"")  # without a terminal: the same output, no bar


@ENGINES
@pytest.mark.parametrize("flags, stderr_is_terminal", [(["-q"], True), ([], False)])
def test_no_bar_with_quiet_or_without_a_terminal(no_delay, synthetic, engine, flags, stderr_is_terminal):
    args = ["run", "--engine", engine, *flags, "--replay", str(synthetic), "-e", COUNT]
    terminal = Terminal()
    err = terminal.file() if stderr_is_terminal else io.BytesIO()  # a stream that is no terminal
    status, out, _ = run_in_process(args, stderr=err)
    assert (status, out, terminal.finish()) == (0, b"40000\n", b"")
    if not stderr_is_terminal:
        assert err.getvalue() == b""


@ENGINES
def test_no_bar_with_json_output(no_delay, synthetic, engine):
    """-f json is for programs: no bar, even on a terminal."""
    args = ["run", "--engine", engine, "-f", "json", "--replay", str(synthetic), "-e", COUNT]
    terminal = Terminal()
    status, out, _ = run_in_process(args, stderr=terminal.file())
    assert terminal.finish() == b""
    assert (status, out) == (0, b'{"v":1,"type":"print","text":"40000"}\n{"v":1,"type":"end","status":0}\n')


@ENGINES
def test_a_short_replay_prints_nothing_at_all(engine):
    """The command a user types, on a terminal, with the real delay."""
    terminal = Terminal()
    proc = subprocess.run([*KTAPJIT, "run", "--engine", engine, "--replay", str(DEMO), str(SYSCOUNT)],
                          stdout=subprocess.PIPE, stderr=terminal.slave, timeout=120)
    received = terminal.finish()
    assert proc.returncode == 0 and proc.stdout.startswith(b"1264 system calls")
    assert received == b""


@ENGINES
def test_output_on_the_same_terminal_reads_as_without_the_bar(no_delay, synthetic, engine):
    """The bar makes way for each output line and is drawn again below it,
    but never after a line the script has not finished yet (here, the
    interpreter's first chunk ends within the line of 'part 4000')."""
    script = ("var n = 0\ntrace raw_syscalls:sys_enter { n += 1\n"
              " if (n % 1000 == 0) { printf(\"part %d \", n) }\n"
              " if (n % 2000 == 0 && n != 4000) { printf(\"done\\n\") } }\n"
              "trace_end { print(n) }")
    args = ["run", "--engine", engine, "--replay", str(synthetic), "-e", script]
    _, expected, _ = run_in_process(args)
    terminal = Terminal()
    status, _, _ = run_in_process(args, stdout=terminal.file(), stderr=terminal.file())
    received = terminal.finish()
    assert status == 0
    assert frames(received)
    assert screen(received) == expected.decode().splitlines()


@ENGINES
def test_an_error_line_starts_on_a_clean_line(no_delay, synthetic, engine, tmp_path):
    broken = tmp_path / "broken.data"
    broken.write_bytes(with_bad_record(synthetic, at=0.75))
    args = ["run", "--engine", engine, "--replay", str(broken), "-e", COUNT]
    status, out, err = run_in_process(args)
    terminal = Terminal()
    assert run_in_process(args, stderr=terminal.file())[:2] == (status, out)
    received = terminal.finish()
    assert frames(received)
    assert screen(received) == err.decode().splitlines()


def with_bad_record(path: Path, at: float) -> bytes:
    """The recording's bytes, the record `at` (a share) of the way into its
    data section claiming a size smaller than its header."""
    from ktapjit.events.records.decode import iter_headers
    from ktapjit.events.records.perfdata import read_perf_data

    data = read_perf_data(str(path))
    start, size = data.data_offset, data.data_size
    offset = next(off for off, _, _, _ in iter_headers(data.data_bytes, base=start) if off >= start + at * size)
    data.close()
    raw = bytearray(path.read_bytes())
    raw[offset + 6:offset + 8] = (4).to_bytes(2, "little")
    return bytes(raw)


def test_progress_costs_one_clock_read_per_chunk():
    """Until the bar is due, a chunk reads the clock and nothing else; tqdm
    is not imported."""
    reads = []
    bar = progress.ReplayProgress(io.BytesIO(), delay_s=2.0, clock=lambda: reads.append(1) or 1.0)
    bar.begin(1000)
    records = [type("R", (), {"offset": i})() for i in range(3 * progress.CHUNK + 1)]
    assert list(bar.chunks(records, 0)) == records
    bar.close()
    assert len(reads) == 1 + 4  # begin, then one per chunk
    assert bar.bar is None


# ------------------------------------------------------------ the command a user types


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A recording the interpreter takes several seconds over (~100 MB)."""
    from ktapjit.testing.synth import SyntheticStream, write_perf_data

    path = tmp_path_factory.mktemp("progress-big") / "big.data"
    write_perf_data(str(path), SyntheticStream([("raw_syscalls", "sys_enter", None, {})],
                                               n_events=800_000, cpus=2, tasks=8, seed=1))
    return path


# The bar needs seconds of replay: the interpreter's; the JIT runs `big` in well under one.
SLOW = ["run", "--engine", "interp"]


def run_on_terminal(args: list[str], interrupt_when_shown: bool = False) -> tuple[int, bytes, bytes]:
    """`ktapjit ARGS` with stderr on a terminal and stdout a pipe: (status, stdout, what the terminal got)."""
    terminal = Terminal()
    proc = subprocess.Popen([*KTAPJIT, *args], stdout=subprocess.PIPE, stderr=terminal.slave)
    try:
        if interrupt_when_shown:
            deadline = time.monotonic() + 60
            while b"events/s" not in terminal.received and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, terminal.finish()


@pytest.mark.slow
def test_a_long_replay_shows_the_bar_and_the_same_output(big):
    args = [*SLOW, "--replay", str(big), "-e", COUNT]
    status, out, received = run_on_terminal(args)
    assert (status, out) == (0, b"800000\n")
    shown = frames(received)
    assert len(shown) >= 2, received  # redrawn as it goes
    percents = [int(m.group(1)) for m in shown]
    assert percents == sorted(percents) and percents[0] < 100
    assert screen(received) == []
    piped = subprocess.run([*KTAPJIT, *args], capture_output=True, timeout=300)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, out, b"")


@pytest.mark.slow
def test_a_long_replay_with_quiet_shows_nothing(big):
    assert run_on_terminal([*SLOW, "-q", "--replay", str(big), "-e", COUNT]) == (0, b"800000\n", b"")


@pytest.mark.slow
def test_ctrl_c_erases_the_bar_and_trace_end_runs(big):
    status, out, received = run_on_terminal([*SLOW, "--replay", str(big), "-e", COUNT], interrupt_when_shown=True)
    assert frames(received)
    assert screen(received) == []
    assert status == 0 and 0 < int(out) < 800_000
