"""perf.data reading and writing, checked against Debian's perf itself.

The files in tests/data were recorded on the development VM with perf 6.1:

- getppid.data:   perf record -e syscalls:sys_enter_getppid -- python3 -c '500 x os.getppid()'
                  (one attr, no IDENTIFIER: the single-attr layout)
- sched.data:     perf record -e sched:sched_switch,sched:sched_wakeup,
                  sched:sched_process_exit -a -- sh -c '6 background subshells'
- callchain.data: perf record -g -e sched:sched_switch -a -- sleep 0.05
- cpuclock.data:  perf record -e cpu-clock -c 1000000 -a -g -- python3 -c 'sum(...)'
                  (PERF_SAMPLE_ID instead of IDENTIFIER)
- pipe.data:      perf record -o - -e sched:sched_switch,sched:sched_wakeup -a -- sleep 0.02
                  (pipe mode: attrs and tracing data as in-stream records)

Expectations come from `perf script` output of the same file, parsed here.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import Comm, FinishedRound, Sample
from ktapjit.events.records.merge import order_perf_rounds
from ktapjit.events.records.perfdata import (HEADER_OSRELEASE, PerfDataError, PerfDataWriter, TracingData,
                                     read_perf_data)

DATA = Path(__file__).resolve().parent.parent / "data"
FILES = ["getppid.data", "sched.data", "callchain.data", "cpuclock.data"]
ALL_FILES = FILES + ["pipe.data"]
PERF = shutil.which("perf") or ("/usr/bin/perf" if os.path.exists("/usr/bin/perf") else None)
needs_perf = pytest.mark.skipif(PERF is None, reason="perf (linux-perf) is not installed")


def perf_script(path, *args: str) -> str:
    done = subprocess.run([PERF, "script", "-i", str(path), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def perf_samples(path) -> list[tuple]:
    """(pid, tid, cpu, time_ns, event name) per sample, as perf prints them."""
    out = []
    for line in perf_script(path, "-F", "pid,tid,cpu,time,event", "--ns").splitlines():
        pidtid, cpu, t, ev = line.split()[:4]
        pid, tid = pidtid.split("/")
        sec, ns = t.rstrip(":").split(".")
        out.append((int(pid), int(tid), int(cpu.strip("[]")), int(sec) * 10**9 + int(ns),
                    ev.rstrip(":")))
    return out


def our_samples(pd) -> list[tuple]:
    names = {i: ev.name for ev in pd.attrs for i in ev.ids}
    only = pd.attrs[0].name if len(pd.attrs) == 1 else None
    return [(r.pid, r.tid, r.cpu, r.time, names.get(r.id, only))
            for r in order_perf_rounds(pd.records()) if isinstance(r, Sample)]


# --- reading ---------------------------------------------------------------------------

@needs_perf
@pytest.mark.parametrize("name", ALL_FILES)
def test_samples_match_perf_script(name):
    pd = read_perf_data(DATA / name)
    expected = perf_samples(DATA / name)
    assert expected, "perf printed no samples"
    assert our_samples(pd) == expected


@needs_perf
@pytest.mark.parametrize("name", FILES)
def test_header_matches_perf(name):
    header = perf_script(DATA / name, "--header-only")
    pd = read_perf_data(DATA / name)
    events = [line for line in header.splitlines() if line.startswith("# event : name = ")]
    assert [ev.name for ev in pd.attrs] == [e.split("name = ")[1].split(",")[0] for e in events]
    for ev, line in zip(pd.attrs, events):
        ids = line.split("id = { ")[1].split(" }")[0] if "id = {" in line else ""
        assert ev.ids == [int(x) for x in ids.split(", ") if x]
        assert f"type = {ev.attr.type}," in line
        assert f"size = {ev.attr.size}," in line
    assert f"# hostname : {pd.hostname}" in header
    assert f"# os release : {pd.osrelease}" in header
    assert f"# nrcpus online : {pd.nr_cpus_online}" in header
    assert f"# nrcpus avail : {pd.nr_cpus_avail}" in header
    assert f"# cmdline : {' '.join(pd.cmdline)}" in header


def test_tracing_data_formats_are_self_describing():
    pd = read_perf_data(DATA / "sched.data")
    assert {("sched", "sched_switch"), ("sched", "sched_wakeup"),
            ("sched", "sched_process_exit")} <= set(pd.formats)
    for ev in pd.attrs:
        if ev.attr.type == abi.PERF_TYPE_TRACEPOINT:
            system, event, text = pd.format_of(ev)
            assert ev.name == f"{system}:{event}"
            assert f"ID: {ev.attr.config}\n" in text
    # The blob re-serialises byte for byte.
    assert pd.tracing.to_bytes() == pd.features[1]


def test_formats_parse_with_schema():
    schema = pytest.importorskip("ktapjit.events.schema")
    pd = read_perf_data(DATA / "sched.data")
    fmt = schema.parse_format(pd.formats[("sched", "sched_switch")], system="sched")
    assert fmt.name == "sched_switch" and fmt.system == "sched"
    assert fmt.id == pd.attrs[0].attr.config
    # Decode a real sample's RAW with that format: the comm fields are text.
    switch_ids = set(pd.attrs[0].ids)
    sample = next(r for r in pd.records() if isinstance(r, Sample) and r.id in switch_ids)
    fields = fmt.decode(sample.raw)
    assert fields["prev_pid"] == sample.tid


def test_pipe_mode():
    pd = read_perf_data(DATA / "pipe.data")
    assert pd.pipe_mode
    assert [ev.name for ev in pd.attrs] == ["sched:sched_switch", "sched:sched_wakeup",
                                            "dummy:HG"]
    assert all(ev.ids for ev in pd.attrs)
    assert {("sched", "sched_switch"), ("sched", "sched_wakeup")} <= set(pd.formats)
    assert pd.hostname and pd.cmdline[1] == "record"


def test_getppid_file_is_single_attr_without_ids():
    """The workload made exactly 500 getppid calls after exec'ing python3 (the
    pyenv shim's bash made a few more before the exec)."""
    pd = read_perf_data(DATA / "getppid.data")
    assert len(pd.attrs) == 1
    assert not pd.attrs[0].attr.sample_type & abi.PERF_SAMPLE_IDENTIFIER
    records = list(pd.records())
    assert all(r.id is None for r in records if isinstance(r, Sample))
    # python3 is first the pyenv shim (a bash script), whose last exec is the
    # real interpreter.
    execs = [r for r in records if isinstance(r, Comm) and r.exec]
    exec_ = max(execs, key=lambda r: r.time)
    assert exec_.comm == b"python3"
    after = [r for r in records if isinstance(r, Sample)
             and r.pid == exec_.pid and r.time > exec_.time]
    assert len(after) == 500


@needs_perf
def test_callchains_match_perf_script():
    """perf prints kernel addresses as they are and user addresses relative to
    their DSO, so compare kernel frames exactly and user frames by count."""
    pd = read_perf_data(DATA / "callchain.data")
    ours = [[ip for ip in r.callchain if ip < abi.PERF_CONTEXT_MAX]
            for r in order_perf_rounds(pd.records()) if isinstance(r, Sample)]
    theirs, cur = [], None
    for line in perf_script(DATA / "callchain.data", "-F", "tid,time,ip").splitlines():
        if not line.strip():
            continue
        if line.startswith("\t"):
            cur.append(int(line.split()[0], 16))
        else:
            cur = []
            theirs.append(cur)
    assert len(ours) == len(theirs)
    kernel = 0xFFFF800000000000
    for a, b in zip(ours, theirs):
        assert len(a) == len(b)
        assert [x for x in a if x >= kernel] == [x for x in b if x >= kernel]
    assert any(x >= kernel for chain in ours for x in chain)


def test_chunks_cover_the_data_section():
    pd = read_perf_data(DATA / "cpuclock.data")
    chunks = list(pd.chunks(4096))
    assert len(chunks) > 1
    assert b"".join(bytes(c) for _, c in chunks) == bytes(pd.data_bytes)
    assert chunks[0][0] == pd.data_offset
    assert all(len(c) <= 4096 for _, c in chunks)


# --- writing ---------------------------------------------------------------------------

def _copy_file(src: Path, dst: Path, tracing=None, order=False) -> None:
    pd = read_perf_data(src)
    records = order_perf_rounds(pd.records()) if order else pd.records()
    with PerfDataWriter(dst, [(e.attr, e.ids, e.name) for e in pd.attrs],
                        tracing if tracing is not None else pd.tracing,
                        cmdline=pd.cmdline, features=pd.features) as w:
        for r in records:
            w.write_records(pd.view[r.offset:r.offset + r.size])


@needs_perf
@pytest.mark.parametrize("name", ALL_FILES)
def test_writer_round_trip_perf_script_identical(name, tmp_path):
    out = tmp_path / name
    _copy_file(DATA / name, out)
    assert perf_script(out) == perf_script(DATA / name)
    assert read_perf_data(out).cmdline == read_perf_data(DATA / name).cmdline


@pytest.mark.parametrize("name", ALL_FILES)
def test_writer_copy_keeps_every_feature_of_its_original(name, tmp_path):
    """Build-ids, OS release, CPU topology...: what decides how perf reads a
    file (which kernel its frames symbolize against) survives a copy, so the
    copy reads like its original on any machine, whatever kernel runs."""
    out = tmp_path / name
    _copy_file(DATA / name, out)
    original, copy = read_perf_data(DATA / name).features, read_perf_data(out).features
    assert HEADER_OSRELEASE in original and len(original) > 10
    assert {bit: copy.get(bit) for bit in original} == original


@needs_perf
def test_writer_with_rebuilt_tracing_data(tmp_path):
    """Tracing data built from {(system, event): text}, not copied: perf still
    renders every tracepoint field the same."""
    pd = read_perf_data(DATA / "sched.data")
    td = TracingData.from_formats(pd.formats, header_page=pd.tracing.header_page,
                                  header_event=pd.tracing.header_event)
    out = tmp_path / "rebuilt.data"
    _copy_file(DATA / "sched.data", out, tracing=td)
    text = perf_script(out)
    assert text == perf_script(DATA / "sched.data")
    assert "prev_comm=" in text and "next_pid=" in text


@needs_perf
def test_writer_merged_order_replays_identically(tmp_path):
    """A file written in merged order (no FINISHED_ROUND) prints the same."""
    out = tmp_path / "ordered.data"
    _copy_file(DATA / "sched.data", out, order=True)
    assert not any(isinstance(r, FinishedRound) for r in read_perf_data(out).records())
    assert perf_script(out) == perf_script(DATA / "sched.data")
    assert our_samples(read_perf_data(out)) == perf_samples(DATA / "sched.data")


@needs_perf
def test_perf_report_reads_our_file(tmp_path):
    out = tmp_path / "report.data"
    _copy_file(DATA / "callchain.data", out)
    done = subprocess.run([PERF, "report", "--stdio", "-i", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    n = sum(isinstance(r, Sample) for r in read_perf_data(out).records())
    assert f"# Samples: {n}  of event 'sched:sched_switch'" in done.stdout


# --- unfinished files: a writer killed, or out of space --------------------------------

# A writer in its own process: copies SRC's records to DST, then reports and
# waits to be killed. LIMIT, when given, is an RLIMIT_FSIZE for DST: a write
# past it fails (EFBIG), as one on a full disk does (ENOSPC).
_WRITER = r"""
import json, resource, signal, sys
from ktapjit.events.records.perfdata import PerfDataWriteError, PerfDataWriter, read_perf_data

src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
pd = read_perf_data(src)
w = PerfDataWriter(dst, [(e.attr, e.ids, e.name) for e in pd.attrs], pd.tracing,
                   cmdline=pd.cmdline, features=pd.features)
errors = []
try:
    for r in pd.records():
        w.write_records(pd.view[r.offset:r.offset + r.size])
except PerfDataWriteError as exc:
    errors.append([str(exc), exc.kept_to])
if limit:
    try:
        w.close()
    except PerfDataWriteError as exc:
        errors.append([str(exc), exc.kept_to])
print(json.dumps(errors), flush=True)
signal.pause()
"""


def _run_writer(src: Path, dst: Path, limit: int = 0) -> list:
    """Run _WRITER until it has written everything, then SIGKILL it; its errors."""
    import json
    import sys
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(src), str(dst), str(limit)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert line, "the writer died before writing"
    return json.loads(line)


@pytest.fixture(scope="module")
def killed_copy(tmp_path_factory) -> Path:
    """sched.data copied by a PerfDataWriter that was SIGKILLed before close()."""
    out = tmp_path_factory.mktemp("killed") / "sched.data"
    assert _run_writer(DATA / "sched.data", out) == []
    return out


def _boundaries(pd) -> list[int]:
    """Where each record of a (finished) file starts, and where the last ends."""
    records = list(pd.records())
    return [r.offset for r in records] + [records[-1].offset + records[-1].size]


def test_a_killed_writer_leaves_every_record_it_wrote_readable(killed_copy):
    """Formats, event names and every record: all there before close()."""
    original, copy = read_perf_data(DATA / "sched.data"), read_perf_data(killed_copy)
    size = killed_copy.stat().st_size
    assert struct.unpack_from("<Q", killed_copy.read_bytes(), 48) == (0,)  # data size: never set
    assert (copy.recovery.end, copy.recovery.torn_bytes) == (size, 0)
    assert bytes(copy.data_bytes) == bytes(original.data_bytes)
    assert copy.formats == original.formats
    assert [ev.name for ev in copy.attrs] == [ev.name for ev in original.attrs]
    assert our_samples(copy) == our_samples(original)


def test_a_finished_file_is_not_a_recovered_one(tmp_path):
    out = tmp_path / "sched.data"
    _copy_file(DATA / "sched.data", out)
    assert read_perf_data(out).recovery is None


# (what the cut leaves of the last record, bytes)
CUTS = [("nothing: the cut is at a record boundary", 0), ("3 bytes of its header", 3),
        ("its header, none of its body", 8), ("its header and part of its body", 13)]


@pytest.mark.parametrize("what, into", CUTS, ids=[c[0] for c in CUTS])
def test_recovery_stops_at_the_last_complete_record(killed_copy, tmp_path, what, into):
    """A file cut anywhere (a kill in the middle of a write) reads up to the
    last whole record; the torn one is left out and measured."""
    original = read_perf_data(DATA / "sched.data")
    shift = read_perf_data(killed_copy).data_offset - original.data_offset
    bounds = [b + shift for b in _boundaries(original)]
    whole = bounds[len(bounds) // 2]
    cut = tmp_path / "cut.data"
    cut.write_bytes(killed_copy.read_bytes()[:whole + into])
    pd = read_perf_data(cut)
    assert (pd.recovery.end, pd.recovery.torn_bytes) == (whole, into)
    expected = [r for r in original.records() if r.offset + shift < whole]
    assert [(type(r), r.offset + shift) for r in expected] == [(type(r), r.offset) for r in pd.records()]


def test_killed_before_any_record_reads_as_empty(tmp_path):
    pd = read_perf_data(DATA / "sched.data")
    out = tmp_path / "empty.data"
    w = PerfDataWriter(out, [(e.attr, e.ids, e.name) for e in pd.attrs], pd.tracing)
    try:
        copy = read_perf_data(out)  # as a reader sees it while the writer lives
    finally:
        w.close()
    assert (copy.recovery.end, copy.recovery.torn_bytes) == (copy.data_offset, 0)
    assert list(copy.records()) == []
    assert copy.formats == pd.formats


def test_a_failed_write_is_cut_off_and_named(tmp_path):
    """A write that fails (here past RLIMIT_FSIZE, as on a full disk) is
    undone: the file ends after the last call that succeeded, it says so,
    and what is there reads back."""
    original = read_perf_data(DATA / "sched.data")
    probe = tmp_path / "probe.data"
    _run_writer(DATA / "sched.data", probe)
    shift = read_perf_data(probe).data_offset - original.data_offset
    bounds = [b + shift for b in _boundaries(original)]
    limit = bounds[len(bounds) // 2] + 5  # five bytes into a record
    out = tmp_path / "limited.data"
    errors = _run_writer(DATA / "sched.data", out, limit)
    kept = bounds[len(bounds) // 2]
    assert errors == [[f"cannot write recording '{out}': File too large; "
                       f"it keeps the records before byte offset {kept}", kept]]
    pd = read_perf_data(out)
    assert (out.stat().st_size, pd.recovery.end) == (kept, kept)
    assert len(list(pd.records())) == len(bounds) // 2


def test_a_failed_finish_leaves_an_unfinished_file_that_reads(tmp_path):
    """Room for every record, not for the feature index close() appends."""
    probe = tmp_path / "probe.data"
    _run_writer(DATA / "sched.data", probe)
    end = probe.stat().st_size
    out = tmp_path / "limited.data"
    errors = _run_writer(DATA / "sched.data", out, end + 10)
    assert errors == [[f"cannot finish recording '{out}': File too large; it keeps the records "
                       f"before byte offset {end}, which --replay reads", end]]
    pd = read_perf_data(out)
    assert (out.stat().st_size, pd.recovery.end) == (end, end)
    assert bytes(pd.data_bytes) == bytes(read_perf_data(DATA / "sched.data").data_bytes)


# --- errors ----------------------------------------------------------------------------

def _write(tmp_path, data: bytes, name="bad.data") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_empty_and_not_perf(tmp_path):
    with pytest.raises(PerfDataError, match="too short"):
        read_perf_data(_write(tmp_path, b""))
    with pytest.raises(PerfDataError, match=r"not a perf.data file .* \(at byte offset 0\)"):
        read_perf_data(_write(tmp_path, b"hello world, not perf data at all"))
    with pytest.raises(PerfDataError, match="cannot open"):
        read_perf_data(tmp_path / "missing.data")


def test_truncated_header(tmp_path):
    orig = (DATA / "sched.data").read_bytes()
    with pytest.raises(PerfDataError, match="offset"):
        read_perf_data(_write(tmp_path, orig[:50]))


def test_truncated_in_data_section(tmp_path):
    orig = (DATA / "sched.data").read_bytes()
    pd = read_perf_data(DATA / "sched.data")
    cut = pd.data_offset + pd.data_size // 2
    with pytest.raises(PerfDataError, match=r"truncated.*\(at byte offset 40\)") as e:
        read_perf_data(_write(tmp_path, orig[:cut]))
    assert e.value.offset == 40  # the data section's size field
    assert "\n" not in str(e.value)


def test_corrupt_record_size_names_its_offset(tmp_path):
    orig = bytearray((DATA / "sched.data").read_bytes())
    pd = read_perf_data(DATA / "sched.data")
    victim = [r for r in pd.records() if isinstance(r, Sample)][5]
    struct.pack_into("<H", orig, victim.offset + 6, 0)  # header size 0
    bad = read_perf_data(_write(tmp_path, bytes(orig)))
    with pytest.raises(PerfDataError) as e:
        list(bad.records())
    assert e.value.offset == victim.offset
    assert f"at byte offset {victim.offset}" in str(e.value)


def test_corrupt_tracing_data(tmp_path):
    orig = bytearray((DATA / "sched.data").read_bytes())
    start = bytes(orig).index(b"\x17\x08Dtracing")
    orig[start + 3] = ord("X")
    with pytest.raises(PerfDataError, match=fr"tracing data: bad magic \(at byte offset {start}\)"):
        read_perf_data(_write(tmp_path, bytes(orig)))


_ORIG = {name: (DATA / name).read_bytes() for name in ("sched.data", "pipe.data")}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_ORIG)), seed=st.integers(0, 2**32 - 1),
       flips=st.integers(1, 16), cut=st.floats(0.0, 1.0))
def test_fuzz_only_perfdata_errors(name, seed, flips, cut):
    """Random byte changes and truncation: a PerfDataError or a clean read."""
    rng = random.Random(seed)
    data = bytearray(_ORIG[name])
    for _ in range(flips):
        data[rng.randrange(len(data))] = rng.randrange(256)
    data = bytes(data[:max(0, int(len(data) * cut))]) if cut < 0.98 else bytes(data)
    with tempfile.NamedTemporaryFile(suffix=".data") as fh:
        fh.write(data)
        fh.flush()
        try:
            pd = read_perf_data(fh.name)
            for _ in pd.records():
                pass
            _ = pd.formats
        except PerfDataError as exc:
            assert "\n" not in str(exc)
