"""The main thread's wait for the ring reader's next drain pass (tracing/live.py
_Reader.next_pass) ends on time even when a signal handler runs during it.

Ctrl-C's handler disables every event (`halt`) before it returns; with many
events, or on a loaded machine, that outlasts the poll's 0.1 s. A wait that
then blocked until the next pass would never end: the events are disabled,
so no pass comes, and the run hung until a second Ctrl-C (seen as a 30 s
timeout of a live stop test while other suites loaded the machine)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from ktapjit.tracing.live import POLL_SECONDS, _Reader

HANDLER_SECONDS = 3 * POLL_SECONDS  # the handler returns after the wait's deadline
NO_PASS_FOR = 5.0  # a pass the test puts in itself, long after the wait should have ended


@pytest.fixture(autouse=True)
def engine():
    """No engine runs here (conftest's would run each case twice)."""


@pytest.fixture
def slow_alarm_handler():
    def handler(signum, frame):
        time.sleep(HANDLER_SECONDS)

    saved = signal.signal(signal.SIGALRM, handler)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, saved)


@pytest.mark.parametrize("signal_after", [0.01, POLL_SECONDS * 0.9], ids=["early", "near_deadline"])
def test_a_slow_signal_handler_does_not_stretch_the_wait(slow_alarm_handler, signal_after):
    reader = _Reader()  # not started: nothing is read, as after `halt` disabled the events
    late = threading.Timer(NO_PASS_FOR, lambda: reader.passes.put([(0, b"late")]))
    late.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, signal_after)
        t0 = time.monotonic()
        chunks = reader.next_pass(POLL_SECONDS)
        waited = time.monotonic() - t0
    finally:
        late.cancel()
    assert chunks == []
    assert waited < NO_PASS_FOR / 2
