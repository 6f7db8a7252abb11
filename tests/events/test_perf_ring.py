"""Live perf rings: exact counts, filters, loss, cleanup.

The workload is a tiny C program (compiled here with gcc) that waits for a byte
on stdin, so tracing is enabled before it starts, and then makes exactly N
getppid syscalls. Expectations are therefore known independently: N samples of
syscalls:sys_enter_getppid from that pid, and nothing lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import Exit, Lost, LostSamples, Sample, iter_headers, iter_records
from ktapjit.events.records.merge import merge_streams
from tests.cbuild import build_c
from tests.livecheck import live_skip_reason

pytestmark = pytest.mark.live

WORKLOAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--nr") == 0) {   /* this architecture's number */
        printf("%d\n", (int)SYS_getppid);
        return 0;
    }
    long n = argc > 1 ? atol(argv[1]) : 0;
    char c;
    if (read(0, &c, 1) != 1) return 2;   /* wait until the tracer is ready */
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    return 0;
}
"""


def _live_skip_reason() -> str | None:
    return live_skip_reason("live perf tracing (tracepoints need CAP_PERFMON and tracefs)",
                            "events/syscalls/sys_enter_getppid/id",
                            "this kernel has no syscalls:sys_enter_getppid tracepoint")


_REASON = _live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

from ktapjit.events.records.perf_ring import (DEFAULT_PAGES, PerfSession, software_event,  # noqa: E402
                                      synthesize_comms, tracepoint)


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "getppid", WORKLOAD_C, "-O2", purpose="the getppid workload")


def _start(workload: Path, n: int, cpu: int | None = None) -> subprocess.Popen:
    """The workload, waiting for its go; on `cpu` only, when given."""
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    return subprocess.Popen([str(workload), str(n)], stdin=subprocess.PIPE, preexec_fn=pin)


def _go(proc: subprocess.Popen) -> None:
    proc.stdin.write(b"x")
    proc.stdin.close()


def _run_traced(session: PerfSession, proc: subprocess.Popen,
                timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """Enable, release the workload, drain until it exits, drain once more."""
    chunks: list[tuple[int, bytes]] = []
    session.enable()
    _go(proc)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "workload did not finish"
        chunks += session.read_chunks(0.05)
    session.disable()
    chunks += session.drain()
    return chunks


def _decode(session: PerfSession, chunks) -> list:
    table = session.attr_table()
    per_cpu: dict[int, list] = {}
    for cpu, chunk in chunks:
        per_cpu.setdefault(cpu, []).extend(iter_records(chunk, table))
    return merge_streams(per_cpu)


def _perf_fds() -> int:
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds += "perf_event" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return fds


def _perf_maps() -> int:
    return Path("/proc/self/maps").read_text().count("perf_event")


# --- tests -------------------------------------------------------------------------------

def test_exact_count_for_a_traced_pid(workload):
    n = 1000
    proc = _start(workload, n)
    with PerfSession([tracepoint("syscalls", "sys_enter_getppid")], pid=proc.pid) as s:
        records = _decode(s, _run_traced(s, proc))
        lost = s.lost()
    samples = [r for r in records if isinstance(r, Sample)]
    assert len(samples) == n
    assert {(r.pid, r.tid) for r in samples} == {(proc.pid, proc.pid)}
    assert lost == 0
    assert not any(isinstance(r, (Lost, LostSamples)) for r in records)
    times = [r.time for r in samples]
    assert times == sorted(times)
    # The task tracker saw the workload exit.
    assert any(isinstance(r, Exit) and r.pid == proc.pid for r in records)


def test_raw_data_decodes_with_the_tracefs_format(workload):
    pytest.importorskip("ktapjit.events.schema")
    from ktapjit.events.tracefs import read_format
    fmt = read_format("syscalls", "sys_enter_getppid")
    nr = int(subprocess.run([str(workload), "--nr"], check=True, capture_output=True).stdout)
    proc = _start(workload, 3)
    with PerfSession([tracepoint("syscalls", "sys_enter_getppid")], pid=proc.pid) as s:
        records = _decode(s, _run_traced(s, proc))
    samples = [r for r in records if isinstance(r, Sample)]
    assert len(samples) == 3
    for r in samples:
        fields = fmt.decode(r.raw)
        assert fields["common_pid"] == proc.pid
        assert fields["common_type"] == fmt.id
        assert fields["__syscall_nr"] == nr


def test_kernel_filter_system_wide(workload):
    n = 700
    proc = _start(workload, n)
    tp = tracepoint("syscalls", "sys_enter_getppid", filter=f"common_pid == {proc.pid}")
    with PerfSession([tp], track_tasks=False) as s:
        records = _decode(s, _run_traced(s, proc))
        assert s.lost() == 0
    samples = [r for r in records if isinstance(r, Sample)]
    assert len(samples) == n and {r.pid for r in samples} == {proc.pid}


def test_two_events_share_each_ring(workload):
    n = 300
    proc = _start(workload, n)
    events = [tracepoint("syscalls", "sys_enter_getppid"),
              tracepoint("syscalls", "sys_exit_getppid")]
    with PerfSession(events, pid=proc.pid) as s:
        records = _decode(s, _run_traced(s, proc))
        names = {r.id: s.event_of(r.id).name for r in records if isinstance(r, Sample)}
    samples = [r for r in records if isinstance(r, Sample)]
    by_name: dict[str, int] = {}
    for r in samples:
        by_name[names[r.id]] = by_name.get(names[r.id], 0) + 1
    assert by_name == {"syscalls:sys_enter_getppid": n, "syscalls:sys_exit_getppid": n}
    # enter and exit alternate in time order.
    seq = [names[r.id] for r in samples]
    assert seq[:4] == ["syscalls:sys_enter_getppid", "syscalls:sys_exit_getppid"] * 2


def test_callchain(workload):
    """sys_enter fires on user registers: a user-only stack. sched_process_exit
    fires deep in the kernel: a kernel stack."""
    proc = _start(workload, 5)
    events = [tracepoint("syscalls", "sys_enter_getppid", callchain=True),
              tracepoint("sched", "sched_process_exit", callchain=True)]
    with PerfSession(events, pid=proc.pid) as s:
        records = _decode(s, _run_traced(s, proc))
        names = {r.id: s.event_of(r.id).event for r in records if isinstance(r, Sample)}
    samples = [r for r in records if isinstance(r, Sample)]
    enters = [r for r in samples if names[r.id] == "sys_enter_getppid"]
    exits = [r for r in samples if names[r.id] == "sched_process_exit"]
    assert len(enters) == 5 and len(exits) == 1
    for r in enters:
        assert r.callchain[0] == abi.PERF_CONTEXT_USER
        assert 0 < r.callchain[1] < 1 << 47
    assert exits[0].callchain[0] == abi.PERF_CONTEXT_KERNEL
    assert all(ip >= 0xFFFF800000000000 for ip in exits[0].callchain[1:4])


def test_cpu_clock_profile():
    """One cpu-clock sample per millisecond of the traced task's CPU time."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(1)\n"
                             "import time\nt=time.time()\nwhile time.time()-t<0.2: pass"],
                            stdin=subprocess.PIPE)
    ev = software_event(abi.PERF_COUNT_SW_CPU_CLOCK, 1_000_000, "cpu-clock")
    with PerfSession([ev], pid=proc.pid) as s:
        records = _decode(s, _run_traced(s, proc))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = 1000 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    samples = [r for r in records if isinstance(r, Sample)]
    # Only the traced part runs under the event; interpreter start-up comes before.
    assert 50 <= len(samples) <= cpu_ms * 1.2 + 20
    assert all(r.ip and r.period == 1_000_000 for r in samples)


def test_bad_filter_is_a_clear_error():
    with pytest.raises(abi.PerfError, match="invalid tracepoint filter"):
        with PerfSession([tracepoint("syscalls", "sys_enter_getppid",
                                     filter="no_such_field == 1")]):
            pass
    assert _perf_fds() == 0


def test_unknown_tracepoint():
    from ktapjit.events.errors import EventsError
    with pytest.raises(EventsError, match="unknown tracepoint"):
        tracepoint("syscalls", "sys_enter_no_such_call")


def test_everything_closed_on_exception():
    before_fds, before_maps = _perf_fds(), _perf_maps()
    with pytest.raises(RuntimeError):
        with PerfSession([tracepoint("sched", "sched_switch")]) as s:
            s.enable()
            assert _perf_fds() > before_fds and _perf_maps() > before_maps
            raise RuntimeError("boom")
    assert (_perf_fds(), _perf_maps()) == (before_fds, before_maps)
    s.close()  # closing twice is harmless


def test_perf_error_for_a_dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(abi.PerfError, match="no such process"):
        with PerfSession([tracepoint("syscalls", "sys_enter_getppid")], pid=proc.pid):
            pass
    assert _perf_fds() == 0


def test_live_recording_reads_back_in_perf(workload, tmp_path):
    """Write what the ring gave into perf.data; perf script renders it."""
    from ktapjit.events.records.perfdata import PerfDataWriter, TracingData, read_perf_data
    n = 50
    proc = _start(workload, n)
    with PerfSession([tracepoint("syscalls", "sys_enter_getppid")], pid=proc.pid) as s:
        # Names for tasks that exist before tracing starts, as perf does.
        comms = synthesize_comms(s.attrs()[0][0].sample_type, [proc.pid])
        chunks = _run_traced(s, proc)
    path = tmp_path / "live.data"
    tracing = TracingData.from_tracefs([("syscalls", "sys_enter_getppid")])
    attrs = s.attrs()
    with PerfDataWriter(path, attrs, tracing) as w:
        w.write_records(comms)
        for _cpu, chunk in chunks:
            w.write_records(chunk)
    perf = shutil.which("perf") or "/usr/bin/perf"
    if not os.path.exists(perf):
        pytest.skip("perf is not installed")
    out = subprocess.run([perf, "script", "-i", str(path), "-F", "comm,pid,event"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == n
    assert all(line.split() == [workload.name, str(proc.pid), "syscalls:sys_enter_getppid:"]
               for line in lines)
    pd = read_perf_data(path)
    assert sum(isinstance(r, Sample) for r in pd.records()) == n
    assert ("syscalls", "sys_enter_getppid") in pd.formats


def test_burst_no_loss(workload, capsys):
    """About 1M events as fast as one CPU can make them: nothing may be lost at
    the default ring size."""
    n = 1_000_000
    proc = _start(workload, n)
    with PerfSession([tracepoint("syscalls", "sys_enter_getppid")], pid=proc.pid,
                     track_tasks=False) as s:
        t0 = time.perf_counter()
        chunks = _run_traced(s, proc, timeout=60)
        elapsed = time.perf_counter() - t0
        lost = s.lost()
        nbytes = s.stats.bytes_read
    samples = lost_records = 0
    for _cpu, chunk in chunks:
        for _pos, rtype, _misc, _size in iter_headers(chunk):
            samples += rtype == abi.PERF_RECORD_SAMPLE
            lost_records += rtype == abi.PERF_RECORD_LOST
    with capsys.disabled():
        print(f"\n[burst] {samples} samples, {lost} lost, {nbytes / 1e6:.1f} MB in "
              f"{elapsed:.2f}s = {samples / elapsed:,.0f} events/s drained "
              f"({DEFAULT_PAGES} pages/CPU)")
    assert lost == 0 and lost_records == 0
    assert samples == n


def test_overflow_is_counted_never_hidden(workload):
    """A one-page ring that nobody drains while 20000 events arrive: every event
    is either a sample we read or counted as lost, and once there is room again
    the kernel puts a PERF_RECORD_LOST with the same count into the stream.
    That record goes into the ring that lost, with its next event: both
    workloads run on one CPU, so that the second one's events are that next."""
    n, m = 20_000, 10
    cpu = min(os.sched_getaffinity(0))
    first, second = _start(workload, n, cpu), _start(workload, m, cpu)
    tp = tracepoint("syscalls", "sys_enter_getppid",
                    filter=f"common_pid == {first.pid} || common_pid == {second.pid}")
    with PerfSession([tp], pages=1, track_tasks=False) as s:
        s.enable()
        _go(first)
        first.wait(timeout=30)       # no draining meanwhile: the ring overflows
        chunks = s.drain()           # room again ...
        _go(second)                  # ... so the next event brings the LOST record
        second.wait(timeout=30)
        s.disable()
        chunks += s.drain()
        records = _decode(s, chunks)
        lost = s.lost()
    samples = sum(isinstance(r, Sample) for r in records)
    lost_in_stream = sum(r.lost for r in records if isinstance(r, Lost))
    assert lost > 0
    assert samples + lost == n + m
    assert lost_in_stream == lost


def test_enable_on_exec(workload):
    """Armed events start exactly at the exec of the traced child: what the
    Python child does before exec is not seen."""
    n = 123
    go_r, go_w = os.pipe()
    data_r, data_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: wait for the tracer, then exec the workload
        try:
            os.close(go_w)
            os.close(data_w)
            os.read(go_r, 1)
            for _ in range(10):
                os.getppid()  # before exec: must not be counted
            os.dup2(data_r, 0)
            os.execv(str(workload), [str(workload), str(n)])
        finally:
            os._exit(127)
    os.close(go_r)
    os.close(data_r)
    try:
        with PerfSession([tracepoint("syscalls", "sys_enter_getppid")], pid=pid,
                         enable_on_exec=True) as s:
            os.write(go_w, b"x")
            os.write(data_w, b"x")
            chunks = []
            deadline = time.monotonic() + 30
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                assert time.monotonic() < deadline
                chunks += s.read_chunks(0.05)
            chunks += s.drain()
            records = _decode(s, chunks)
    finally:
        os.close(go_w)
        os.close(data_w)
    samples = [r for r in records if isinstance(r, Sample)]
    assert len(samples) == n and {r.pid for r in samples} == {pid}


@pytest.mark.slow
def test_burst_two_cpus_no_loss(workload, capsys):
    """Both CPUs flat out (2 x 1M events, system-wide): the default ring keeps up."""
    n = 1_000_000
    procs = [_start(workload, n) for _ in range(2)]
    tp = tracepoint("syscalls", "sys_enter_getppid",
                    filter=f"common_pid == {procs[0].pid} || common_pid == {procs[1].pid}")
    with PerfSession([tp], track_tasks=False) as s:
        s.enable()
        t0 = time.perf_counter()
        for p in procs:
            _go(p)
        chunks = []
        while any(p.poll() is None for p in procs):
            chunks += s.read_chunks(0.05)
        s.disable()
        chunks += s.drain()
        elapsed = time.perf_counter() - t0
        lost = s.lost()
    samples = sum(rtype == abi.PERF_RECORD_SAMPLE
                  for _c, chunk in chunks for _p, rtype, _m, _s in iter_headers(chunk))
    with capsys.disabled():
        print(f"\n[burst x2] {samples} samples, {lost} lost in {elapsed:.2f}s = "
              f"{samples / elapsed:,.0f} events/s")
    assert lost == 0 and samples == 2 * n


# --- optional events the kernel refuses -------------------------------------------------------

def _refusable(system: str, event: str):
    if not Path(f"/sys/kernel/tracing/events/{system}/{event}/id").exists():
        pytest.skip(f"this kernel has no {system}:{event}")
    ev = tracepoint(system, event)
    ev.optional = True
    return ev


@pytest.mark.parametrize("system, event, err", [
    # Sampling irq_work_exit would raise the irq_work it traces: EPERM, even for root.
    ("irq_vectors", "irq_work_exit", 1),
    # ftrace:function has an id, but this kernel has no function tracer for
    # perf: EINVAL, on the very first open, which must not be taken for a
    # kernel without PERF_FORMAT_LOST.
    ("ftrace", "function", 22),
])
def test_a_refused_optional_event_is_left_out_and_the_rest_traces(workload, system, event, err):
    refused = _refusable(system, event)
    proc = _start(workload, 50)
    counted = tracepoint("syscalls", "sys_enter_getppid", filter=f"common_pid == {proc.pid}")
    with PerfSession([refused, counted], pages=8) as s:
        if not s.refused:
            pytest.skip(f"this kernel lets perf open {system}:{event}")
        assert [(r.event, r.errno) for r in s.refused] == [(refused, err)]
        assert [ev.name for ev in s.events] == ["syscalls:sys_enter_getppid", "dummy:tasks"]
        records = _decode(s, _run_traced(s, proc))
        assert s.lost() == 0  # PERF_FORMAT_LOST still in use
    assert sum(isinstance(r, Sample) for r in records) == 50
    assert _perf_fds() == 0


def test_a_refused_event_named_explicitly_fails_the_session():
    refused = _refusable("irq_vectors", "irq_work_exit")
    refused.optional = False
    with pytest.raises(abi.PerfError) as info:
        with PerfSession([tracepoint("syscalls", "sys_enter_getppid"), refused], pages=1):
            pass
    assert info.value.errno == 1 and str(info.value).startswith("cannot open irq_vectors:irq_work_exit: ")
    assert _perf_fds() == 0


def test_each_cpus_tracepoints_are_one_group_its_first_one_leads(workload):
    """Enabling an event reschedules its whole CPU context, so a session's
    tracepoints form one group per CPU, brought in by enabling its leader
    (`*:*` enabled in seconds otherwise). Seen from outside: turning off the
    first tracepoint on every CPU turns off the others with it, and a second
    enable() brings them all back."""
    n = 200
    events = [tracepoint("syscalls", "sys_enter_getppid"), tracepoint("syscalls", "sys_exit_getppid")]
    for leaders_off, expected in ((True, {}), (False, {"syscalls:sys_enter_getppid": n,
                                                       "syscalls:sys_exit_getppid": n})):
        proc = _start(workload, n)
        with PerfSession(events, pid=proc.pid) as s:
            s.enable()
            s.disable()
            s.enable()  # again: members as well as leaders
            if leaders_off:
                for op in s.opened:
                    if op.event is events[0]:
                        abi.perf_ioctl(op.fd, abi.PERF_EVENT_IOC_DISABLE, 0)
            _go(proc)
            proc.wait(timeout=30)
            records = _decode(s, s.drain())
            counts: dict[str, int] = {}
            for r in records:
                if isinstance(r, Sample):
                    name = s.event_of(r.id).name
                    counts[name] = counts.get(name, 0) + 1
        assert counts == expected
