"""Recordings survive a crash: `ktapjit record` and `ktapjit run --record`
killed with SIGKILL, `perf record` killed likewise, and a disk that fills up
mid-recording all leave a file that `--replay` reads up to its last complete
record, saying where it stopped (docs/events.md, "Recordings cut short").
Real processes are killed; the full disk is a small tmpfs mounted for the
test.

The workload (conftest: `work N wait`, N getppid calls) is traced with -p,
so the tracer outlives it and can be killed once everything is written.
"""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.events.records.decode import Sample
from ktapjit.events.records.perfdata import PerfDataError, read_perf_data
from tests.tracing.conftest import REPO, LiveKtapjit, live_skip_reason, release, status_line
from tests.tracing.runcli import ktapjit

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state")]
PERF = shutil.which("perf")
needs_perf = pytest.mark.skipif(PERF is None, reason="perf (Debian linux-perf) is not installed")

COUNT = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }\n"
_UNFINISHED = (r"ktapjit: warning: '{path}' was never finished \(its recorder was killed\?\): replaying its "
               r"records up to byte offset (\d+)(?:, where (\d+) bytes of an incomplete record are left out)?{tail}\n")


def unfinished_warning(path: Path, tail: str = "") -> re.Pattern:
    """The one line --replay prints for an unfinished file: (end, torn bytes)."""
    return re.compile(_UNFINISHED.format(path=re.escape(str(path)), tail=re.escape(tail)))


def data_size_field(path: Path) -> int:
    """The header's data size, which a writer sets when it finishes."""
    return struct.unpack_from("<Q", path.read_bytes(), 48)[0]


def record(procs, *args: str) -> LiveKtapjit:
    """`ktapjit record ARGS` as a user runs it."""
    return LiveKtapjit(procs.popen([sys.executable, "-m", "ktapjit", "record", *args], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE))


RECORDERS = {
    "record": lambda procs, data, pid: record(procs, "-e", "syscalls:sys_enter_getppid", "-o", str(data),
                                              "-p", str(pid)),
    "run --record": lambda procs, data, pid: procs.ktapjit("--record", str(data), "-p", str(pid), "-e", COUNT),
}


def samples_in(path: Path) -> int:
    """The samples a file holds now (0 while it cannot be read)."""
    try:
        with read_perf_data(path) as pd:
            return sum(isinstance(r, Sample) for r in pd.records())
    except PerfDataError:
        return 0


def wait_for_samples(path: Path, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while samples_in(path) < n:
        assert time.monotonic() < deadline, f"{path} holds {samples_in(path)} of {n} samples after {timeout}s"
        time.sleep(0.1)


def sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# --- ktapjit killed ------------------------------------------------------------------------------

@pytest.mark.parametrize("recorder", sorted(RECORDERS))
def test_sigkill_keeps_every_event_written_before_it(workload, procs, tmp_path, recorder):
    """Killed once the events are in the file: the replay has every one."""
    n = 2000
    data = tmp_path / "killed.data"
    work = procs.workload(workload, n)
    tracer = RECORDERS[recorder](procs, data, work.pid)
    tracer.wait_tracing()
    release(work)
    work.wait(timeout=30)
    wait_for_samples(data, n)
    sigkill(tracer.proc)
    assert data_size_field(data) == 0
    status, out, err = ktapjit("--replay", str(data), script=COUNT)
    assert (status, out) == (0, f"{n}\n")
    assert err == f"ktapjit: warning: '{data}' was never finished (its recorder was killed?): " \
                  f"replaying its records up to byte offset {data.stat().st_size}\n"


@pytest.mark.parametrize("recorder", sorted(RECORDERS))
def test_sigkill_in_a_burst_leaves_a_file_that_replays(workload, procs, tmp_path, recorder):
    """Killed while rounds are being written: whatever the last write left,
    the replay runs over the complete records and names where they end."""
    n = 300_000
    data = tmp_path / "burst.data"
    work = procs.workload(workload, n)
    tracer = RECORDERS[recorder](procs, data, work.pid)
    tracer.wait_tracing()
    release(work)
    wait_for_samples(data, 1)
    sigkill(tracer.proc)
    work.wait(timeout=30)
    status, out, err = ktapjit("--replay", str(data), script=COUNT)
    assert status == 0 and 0 < int(out) <= n
    end, torn = unfinished_warning(data).fullmatch(err).groups()
    assert int(end) + int(torn or 0) == data.stat().st_size
    assert int(out) == samples_in(data)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_still_finish_the_recording(workload, procs, tmp_path, sig):
    n = 1000
    data = tmp_path / "stopped.data"
    work = procs.workload(workload, n)
    tracer = RECORDERS["record"](procs, data, work.pid)
    tracer.wait_tracing()
    release(work)
    work.wait(timeout=30)
    status, out, err = tracer.stop(sig)
    assert (status, out, err) == (0, "", f"{status_line(1)}\nRecorded {n} samples to {data}\n")
    assert data_size_field(data) > 0
    assert ktapjit("--replay", str(data), script=COUNT) == (0, f"{n}\n", "")
    if PERF is not None:
        done = subprocess.run([PERF, "script", "-i", str(data)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert sum("sys_enter_getppid:" in line for line in done.stdout.splitlines()) == n


# --- perf record killed ----------------------------------------------------------------------------

class PerfControl:
    """`perf record --control fifo:CTL,ACK -D -1`: starts disabled, and
    acknowledges `enable` once its events are on."""

    def __init__(self, folder: Path):
        self.ctl, self.ack = folder / "ctl", folder / "ack"
        os.mkfifo(self.ctl)
        os.mkfifo(self.ack)
        # Read-write ends never block on open and never read EOF early.
        self._ctl = os.open(self.ctl, os.O_RDWR)
        self._ack = os.open(self.ack, os.O_RDWR)

    def args(self) -> list[str]:
        return ["-D", "-1", "--control", f"fifo:{self.ctl},{self.ack}"]

    def enable(self, timeout: float = 20.0) -> None:
        os.write(self._ctl, b"enable\n")
        assert select.select([self._ack], [], [], timeout)[0], "perf did not acknowledge 'enable'"
        assert os.read(self._ack, 64).startswith(b"ack")

    def close(self) -> None:
        os.close(self._ctl)
        os.close(self._ack)


@needs_perf
@pytest.mark.not_bpf("replays a recording: the BPF engine traces live only")
def test_a_killed_perf_record_replays_with_one_warning(workload, procs, tmp_path):
    """perf writes its tracing data at the end, so the formats come from this
    machine's tracefs (the recording was made here); every sample written
    before the kill replays, and one line says where the records end."""
    n = 3000
    data = tmp_path / "perf.data"
    work = procs.workload(workload, n)
    control = PerfControl(tmp_path)
    try:
        perf = procs.popen([PERF, "record", "-q", "--no-buffering", *control.args(), "-a",
                            "-e", "syscalls:sys_enter_getppid", "--filter", f"common_pid == {work.pid}",
                            "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        control.enable()
        release(work)
        work.wait(timeout=30)
        wait_for_samples(data, n)
        sigkill(perf)
    finally:
        control.close()
    assert data_size_field(data) == 0
    done = subprocess.run([PERF, "script", "-i", str(data)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0  # what this is about: perf cannot read it
    status, out, err = ktapjit("--replay", str(data), script=COUNT)
    assert (status, out) == (0, f"{n}\n")
    end, torn = unfinished_warning(data, "; event formats from this machine's tracefs").fullmatch(err).groups()
    assert int(end) + int(torn or 0) == data.stat().st_size


# --- a full disk -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, mounted for the test: writing more gives ENOSPC."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


_FULL = re.compile(r"ktapjit: cannot write recording '(.*)': No space left on device; "
                   r"it keeps the records before byte offset (\d+)")


def cli(*args: str) -> tuple[int, str, list[str]]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(list(args), stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode().splitlines()


def check_kept(data: Path, kept_to: int, replay_err: str) -> None:
    """The file holds its records up to `kept_to`: finished (close() found
    room for its index) or, if not, unfinished and saying so."""
    with read_perf_data(data) as pd:
        assert pd.data_offset + pd.data_size == kept_to
        if pd.recovery is None:
            assert replay_err == ""
        else:
            assert unfinished_warning(data).fullmatch(replay_err).groups() == (str(kept_to), None)


@pytest.mark.not_bpf("replays a recording: the BPF engine traces live only")
def test_a_full_disk_ends_ktapjit_record_with_a_replayable_file(workload, small_disk):
    n = 200_000  # about 14 MB of samples
    data = small_disk / "full.data"
    status, out, err = cli("record", "-e", "syscalls:sys_enter_getppid", "-o", str(data), "--", str(workload), str(n))
    assert (status, out) == (1, "")
    assert err[0] == status_line(1)
    path, kept_to = _FULL.fullmatch(err[1]).groups()
    assert path == str(data)
    recorded = re.fullmatch(rf"Recorded (\d+) samples to {re.escape(str(data))}", err[2]).group(1)
    assert len(err) == 3 and 0 < int(recorded) < n
    status, replayed, replay_err = ktapjit("--replay", str(data), script=COUNT)
    assert (status, replayed) == (0, f"{recorded}\n")
    check_kept(data, int(kept_to), replay_err)


@pytest.mark.not_bpf("the kernel counts each event before user space reads its sample: its count "
                     "cannot stop at the last round the file keeps")
def test_a_full_disk_ends_run_record_as_its_replay_ends(workload, small_disk):
    """The engine ran exactly the rounds the file keeps: trace_end prints the
    same count live and replayed, and the run says why it stopped."""
    n = 200_000
    data = small_disk / "full.data"
    status, live, err = ktapjit("--record", str(data), "--", str(workload), str(n), script=COUNT)
    assert status == 1 and 0 < int(live) < n
    lines = err.splitlines()
    assert lines[0] == status_line(1) and len(lines) == 2
    path, kept_to = _FULL.fullmatch(lines[1]).groups()
    assert path == str(data)
    status, replayed, replay_err = ktapjit("--replay", str(data), script=COUNT)
    assert (status, replayed) == (0, live)
    check_kept(data, int(kept_to), replay_err)
