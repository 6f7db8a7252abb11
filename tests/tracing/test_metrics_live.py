"""`ktapjit run --metrics` on a live trace, as a user runs it (a subprocess,
real tracepoints, real HTTP), and scraped by a real Prometheus server.

The workload `burst N MS 0` (tests/tracing/conftest.py) makes exactly N
getppid syscalls and then sleeps MS ms, so the exported counts are exact
while the trace goes on.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from tests.tracing.conftest import live_skip_reason

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state"),
              pytest.mark.not_bpf("--metrics needs --engine interp or jit: one usage error under bpf "
                                  "(tests/test_cli.py)")]


SCRIPT = """var calls = {}
var lat = {}
trace syscalls:sys_enter_getppid {
    calls[execname] += 1
    hist(lat, execname, 5)
}
"""
EXPORTS = ["--export", "calls", "--export", "lat:histogram"]


def serving(live, timeout: float = 30.0) -> str:
    """The /metrics URL, once the status line says events are enabled."""
    deadline = time.monotonic() + timeout
    while "Hit Ctrl-C" not in live.stderr_head.decode():
        _read_more(live, deadline)
    lines = live.stderr_head.decode().splitlines()
    assert lines[0].startswith("Serving metrics at http://127.0.0.1:"), lines
    return lines[0].split()[-1]


def _read_more(live, deadline: float) -> None:
    fd = live.proc.stderr.fileno()
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([fd], [], [], left)[0]:
        raise AssertionError(f"not tracing in time: {live.stderr_head!r}")
    chunk = os.read(fd, 4096)
    if not chunk:
        raise AssertionError(f"ktapjit ended: {live.stderr_head!r}, status {live.proc.wait()}")
    live.stderr_head += chunk


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def wait_for_lines(url: str, lines: list[str], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(url)
        if all(line in text.splitlines() for line in lines):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"never served {lines}; last:\n{text}")
        time.sleep(0.1)


def test_exact_counts_are_served_while_tracing(procs, burst):
    live = procs.ktapjit("--metrics", "0", *EXPORTS, "-e", SCRIPT, "--", str(burst), "1000", "30000", "0")
    url = serving(live)
    text = wait_for_lines(url, ['ktapjit_calls{key="burst"} 1000',
                                'ktapjit_lat_bucket{key="burst",le="7"} 1000',
                                'ktapjit_lat_count{key="burst"} 1000',
                                'ktapjit_lat_sum{key="burst"} 5000'])
    assert text.startswith("# TYPE ktapjit_calls counter\n")
    status, out, err = live.stop()
    assert (status, out) == (0, "")
    assert "Traceback" not in err


def test_stop_with_a_scrape_in_flight_exits_cleanly(procs, burst):
    live = procs.ktapjit("--metrics", "0", *EXPORTS, "-e", SCRIPT, "--", str(burst), "10", "30000", "0")
    url = serving(live)
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    stalled = socket.create_connection((host, int(port)))
    try:
        stalled.sendall(b"GET /metrics HTTP/1.1\r\n")  # the rest never comes
        started = time.monotonic()
        status, _out, err = live.stop(timeout=20)
        assert status == 0, err
        assert time.monotonic() - started < 10
        assert "Traceback" not in err
    finally:
        stalled.close()


@pytest.mark.slow
def test_many_scrapes_during_heavy_tracing(procs, spin):
    """Four clients scrape 150 times each while a CPU makes getppid calls as
    fast as it can: every scrape is whole, and each client's counts never
    go down (a snapshot is never half-published)."""
    live = procs.ktapjit("--metrics", "0", *EXPORTS, "-e", SCRIPT, "--", str(spin))
    url = serving(live)
    problems: list[str] = []

    def client():
        last = 0
        for _ in range(150):
            try:
                text = scrape(url)
            except OSError as exc:
                problems.append(f"scrape failed: {exc}")
                return
            if not text.endswith("\n") or not text.startswith("# TYPE ktapjit_calls counter\n"):
                problems.append(f"not a whole rendering: {text[:80]!r}...{text[-80:]!r}")
            counts = [int(line.split()[-1]) for line in text.splitlines()
                      if line.startswith('ktapjit_calls{key="spin"}')]
            if counts and counts[0] < last:
                problems.append(f"count went down: {last} -> {counts[0]}")
            last = counts[0] if counts else last

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    status, _out, err = live.stop(timeout=60)
    assert problems == []
    assert status == 0, err
    assert "Traceback" not in err


# --- a real Prometheus server -------------------------------------------------------------

def prometheus_skip_reason() -> str | None:
    if shutil.which("prometheus") is None:
        return ("the prometheus server is not installed "
                "(apt-get install prometheus; `make setup` does it when run as root with apt)")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A prometheus on loopback scraping one target every second."""

    def __init__(self, tmp_path, target: str):
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          "scrape_configs:\n  - job_name: ktapjit\n    static_configs:\n"
                          f"      - targets: ['{target}']\n")
        self.log = open(tmp_path / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as resp:
            answer = json.load(resp)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait_value(self, expr: str, want: str, timeout: float = 40.0) -> dict:
        """The one series `expr` gives, once its value is `want`."""
        deadline = time.monotonic() + timeout
        result: list = []
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus ended: {self.log.name}")
            try:
                result = self.query(expr)
            except OSError:
                result = []  # not listening yet
            if len(result) == 1 and result[0]["value"][1] == want:
                return result[0]["metric"]
            time.sleep(0.5)
        raise AssertionError(f"{expr}: never {want}; last {result}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.mark.slow
def test_prometheus_scrapes_exact_counts(procs, burst, tmp_path):
    reason = prometheus_skip_reason()
    if reason:
        pytest.skip(reason)
    live = procs.ktapjit("--metrics", "0", *EXPORTS, "-e", SCRIPT, "--", str(burst), "1000", "60000", "0")
    url = serving(live)
    prometheus = Prometheus(tmp_path, urllib.parse.urlsplit(url).netloc)
    try:
        labels = prometheus.wait_value('ktapjit_calls{key="burst"}', "1000")
        assert labels == {"__name__": "ktapjit_calls", "instance": urllib.parse.urlsplit(url).netloc,
                          "job": "ktapjit", "key": "burst"}
        prometheus.wait_value('ktapjit_lat_bucket{key="burst",le="7"}', "1000")
        prometheus.wait_value('ktapjit_lat_bucket{key="burst",le="3"}', "0")
        prometheus.wait_value('ktapjit_lat_count{key="burst"}', "1000")
        prometheus.wait_value('ktapjit_lat_sum{key="burst"}', "5000")
        prometheus.wait_value('histogram_quantile(1, ktapjit_lat_bucket{key="burst"})', "7")
        prometheus.wait_value('up{job="ktapjit"}', "1")
    finally:
        prometheus.stop()
    status, out, err = live.stop()
    assert (status, out) == (0, "")
    assert "Traceback" not in err
