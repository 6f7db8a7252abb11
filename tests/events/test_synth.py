"""Synthetic streams (ktapjit/testing/synth.py), checked against the real decoder,
the replay engine and Debian's perf.

Nothing is mocked: streams are decoded with ``decode.iter_records``, written
with ``write_perf_data`` and read back by ``perf script`` and by
``ktapjit run --replay``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from io import BytesIO
from pathlib import Path

import pytest

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import (Comm, Exit, Fork, Lost, Sample, iter_headers,
                                   iter_records)
from ktapjit.events.records.merge import StreamMerger, merge_streams
from ktapjit.events.records.perfdata import read_perf_data
from ktapjit.events.schema import parse_format
from ktapjit.testing.synth import (ROUND, SYSCALL_NUMBERS, EventSpec, SyntheticStream, Task,
                                  choice, const, counter, format_text, ints, load_format,
                                  write_perf_data)

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"
ALL_FORMATS = sorted(p.parent.relative_to(FORMATS).as_posix()
                     for p in FORMATS.glob("*/*/format"))
PERF = shutil.which("perf") or ("/usr/bin/perf" if os.path.exists("/usr/bin/perf") else None)
needs_perf = pytest.mark.skipif(PERF is None,
                                reason="perf (Debian's linux-perf) is not installed: "
                                       "no `perf` on PATH and no /usr/bin/perf")

FILES = ["/etc/passwd", "/tmp/x", "/usr/lib/libc.so.6", "/dev/null"]


def mixed_stream(n=3000, seed=7, **kw) -> SyntheticStream:
    """Five events: a pointer field fed strings, a __data_loc string, a fixed
    int array, comm/pid pairs, a dynamic int array; with task churn and LOST."""
    opts = dict(cpus=3, tasks=10, seed=seed, churn=0.004, lost=0.002,
                record_values=True)
    opts.update(kw)
    return SyntheticStream(
        [("syscalls", "sys_enter_openat", None,
          {"filename": choice(FILES, weights=[4, 3, 2, 1])}, 3.0),
         ("sched", "sched_switch"),
         EventSpec("sched", "sched_process_exec", weight=0.5),
         ("raw_syscalls", "sys_enter", load_format("raw_syscalls", "sys_enter")),
         ("ipi", "ipi_send_cpumask", parse_format(load_format("ipi", "ipi_send_cpumask"),
                                                  system="ipi"), None, 0.25)],
        n_events=n, **opts)


def decode_all(stream: SyntheticStream, data: bytes | None = None):
    return list(iter_records(stream.merged() if data is None else data,
                             stream.attr_table()))


def padded(raw: bytes) -> bytes:
    return raw + bytes((-(len(raw) + 4)) % 8)


# --- the stream decodes back to what was generated -----------------------------------------

def test_samples_decode_to_generated_values():
    stream = mixed_stream()
    records = decode_all(stream)
    samples = [r for r in records if isinstance(r, Sample)]
    assert len(samples) == stream.n_events == stream.stats.samples
    assert len(stream.values) == len(samples)
    schemas = stream.schemas()
    last = 0
    for s, (spec_index, values) in zip(samples, stream.values):
        spec = stream.specs[spec_index]
        fmt = schemas[(spec.system, spec.event)]
        assert stream.event_of(s.id) == (spec.system, spec.event)
        assert s.id == stream.plans[spec_index].ids[s.cpu]
        assert s.time > last and s.period == 1 and 0 <= s.cpu < 3
        last = s.time
        decoded = fmt.decode(s.raw)
        assert decoded["common_type"] == fmt.id
        assert decoded["common_pid"] == s.tid
        assert len(s.raw) % 8 == 4  # the kernel pads RAW so the sample stays aligned
        for name, value in values.items():
            if spec.event == "sys_enter_openat" and name == "filename":
                assert stream.user_strings[decoded[name]] == value.encode()
            else:
                assert decoded[name] == value, (spec.event, name)
        if spec.event != "sys_enter_openat":
            # The struct fast path writes exactly what EventFormat.encode writes.
            assert s.raw == padded(fmt.encode(values))
        if spec.event == "sys_enter_openat":
            assert decoded["__syscall_nr"] == SYSCALL_NUMBERS["openat"]
        if spec.event == "sched_switch":
            assert decoded["prev_pid"] == s.tid  # prev_* is the current task


def test_side_band_records():
    stream = mixed_stream()
    records = decode_all(stream)
    st = stream.stats
    comms = [r for r in records if isinstance(r, Comm)]
    head = comms[:len(stream.tasks)]
    assert [(c.pid, c.tid, c.comm) for c in head] == \
        [(t.pid, t.tid, t.comm) for t in stream.tasks]
    assert all(c.time == stream.start_ns and not c.exec for c in head)
    assert sum(c.exec for c in comms) == st.comm_exec > 0
    assert sum(isinstance(r, Fork) for r in records) == st.fork == st.comm_exec
    assert sum(isinstance(r, Exit) for r in records) == st.exit == st.fork
    lost = [r for r in records if isinstance(r, Lost)]
    assert len(lost) == st.lost_records > 0 and sum(r.lost for r in lost) == st.lost
    # Every record carries time and cpu (sample_id_all); time never goes back.
    times = [r.time for r in records]
    assert all(t is not None for t in times) and times == sorted(times)
    assert st.bytes == len(stream.merged())
    # Samples only come from live tasks: a tid that exited never shows again.
    alive = {t.tid for t in stream.tasks}
    for r in records:
        if isinstance(r, Exit):
            alive.discard(r.tid)
        elif isinstance(r, Fork):
            alive.add(r.tid)
        elif isinstance(r, Sample):
            assert r.tid in alive


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_every_captured_format_round_trips(name):
    system, event = name.split("/")
    stream = SyntheticStream([(system, event)], n_events=300, cpus=2, tasks=4, seed=1,
                             record_values=True)
    fmt = stream.plans[0].fmt
    samples = [r for r in decode_all(stream) if isinstance(r, Sample)]
    assert len(samples) == 300
    for s, (_, values) in zip(samples, stream.values):
        assert fmt.decode(s.raw) == values
        assert s.raw == padded(fmt.encode(values))


def test_rel_loc_and_generic_path():
    """A __rel_loc field (the fast dynamic path) and overlapping fields (the
    EventFormat.encode fallback) both decode back."""
    rel = ("name: relev\nID: 4242\nformat:\n"
           "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
           "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
           "\tfield:__rel_loc char[] msg;\toffset:8;\tsize:4;\tsigned:0;\n"
           "\tfield:__data_loc char[] other;\toffset:12;\tsize:4;\tsigned:0;\n"
           "\tfield:long val;\toffset:16;\tsize:8;\tsigned:1;\n\n"
           "print fmt: \"%s\", __get_rel_str(msg)\n")
    overlap = ("name: ovl\nID: 4243\nformat:\n"
               "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
               "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
               "\tfield:u64 whole;\toffset:8;\tsize:8;\tsigned:0;\n"
               "\tfield:u32 low;\toffset:8;\tsize:4;\tsigned:0;\n\n"
               "print fmt: \"%llu\", REC->whole\n")
    stream = SyntheticStream(
        [("t", "relev", rel, {"msg": ["a", "hello world", ""], "val": ints(-5, 5)}),
         ("t", "ovl", overlap, {"whole": const(0x1122334455667788), "low": 0})],
        n_events=500, seed=3, record_values=True)
    assert stream.plans[1].struct is None  # overlapping fields: the generic path
    schemas = stream.schemas()
    for s, (i, values) in zip([r for r in decode_all(stream) if isinstance(r, Sample)],
                              stream.values):
        fmt = schemas[("t", stream.specs[i].event)]
        got = fmt.decode(s.raw)
        assert s.raw == padded(fmt.encode(values))
        if i == 0:
            assert got["msg"] == values["msg"].encode() and got["val"] == values["val"]


def test_field_generators():
    seen_tids = []

    def fd_of(draw):
        seen_tids.append(draw.tid)
        return draw.tid % 7

    stream = SyntheticStream(
        [("syscalls", "sys_enter_openat", None,
          {"dfd": fd_of, "flags": counter(10, 3), "mode": const(0o644),
           "filename": [0x1000, 0x2000]}),
         ("syscalls", "sys_enter_close", None, {"fd": ints(-3, 3)})],
        n_events=2000, cpus=2, tasks=[Task(100, 100, "one"), Task(100, 101, "one"),
                                      Task(200, 200, "two", ppid=100)], seed=5)
    samples = [r for r in decode_all(stream) if isinstance(r, Sample)]
    fmts = stream.schemas()
    opens = [fmts[("syscalls", "sys_enter_openat")].decode(s.raw) | {"tid": s.tid}
             for s in samples if stream.event_of(s.id)[1] == "sys_enter_openat"]
    closes = [fmts[("syscalls", "sys_enter_close")].decode(s.raw)
              for s in samples if stream.event_of(s.id)[1] == "sys_enter_close"]
    assert len(opens) + len(closes) == 2000 and opens and closes
    assert [o["dfd"] for o in opens] == [o["tid"] % 7 for o in opens]
    assert [o["tid"] for o in opens] == seen_tids[-len(opens):]
    assert [o["flags"] for o in opens] == list(range(10, 10 + 3 * len(opens), 3))
    assert {o["mode"] for o in opens} == {0o644}
    assert {o["filename"] for o in opens} == {0x1000, 0x2000}
    # "int fd" is 8 bytes unsigned in this format: -3 wraps as the kernel stores it.
    assert {c["fd"] for c in closes} == {v & (2**64 - 1) for v in range(-3, 4)}
    assert {(s.pid, s.tid) for s in samples} == {(100, 100), (100, 101), (200, 200)}
    with pytest.raises(ValueError, match="no field 'nope'"):
        SyntheticStream([("syscalls", "sys_enter_close", None, {"nope": 1})])


def test_event_format_input_and_format_text():
    text = load_format("sched", "sched_switch")
    fmt = parse_format(text, system="sched")
    again = parse_format(format_text(fmt), system="sched")
    assert again.all_fields == fmt.all_fields and again.print_fmt == fmt.print_fmt
    a = SyntheticStream([("sched", "sched_switch", fmt)], n_events=500, seed=2)
    b = SyntheticStream([("sched", "sched_switch", text)], n_events=500, seed=2)
    assert a.merged() == b.merged()


def test_attrs_are_the_live_session_layout():
    from ktapjit.events.records.perf_ring import PerfSession, TraceEvent

    stream = mixed_stream(n=10)
    attrs = stream.attrs()
    ev = TraceEvent("sched:sched_switch",
                    abi.perf_event_attr(type=abi.PERF_TYPE_TRACEPOINT, config=1,
                                        sample_period=1,
                                        sample_type=attrs[0][0].sample_type
                                        & ~abi.PERF_SAMPLE_IDENTIFIER))
    session = PerfSession([ev], cpus=[0])  # opens nothing until open()
    live = session._attr_for(ev)
    tracker = session._attr_for(session.events[-1])
    for attr, _ids, _name in attrs[:-1]:
        assert attr.sample_type == live.sample_type == (
            abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_TID | abi.PERF_SAMPLE_TIME
            | abi.PERF_SAMPLE_CPU | abi.PERF_SAMPLE_PERIOD | abi.PERF_SAMPLE_RAW)
        assert (attr.sample_id_all, attr.read_format) == (live.sample_id_all, live.read_format)
    dummy = attrs[-1][0]
    assert attrs[-1][2] == "dummy:tasks"
    assert (dummy.type, dummy.config, dummy.sample_type, dummy.comm, dummy.task) == \
        (tracker.type, tracker.config, tracker.sample_type, tracker.comm, tracker.task)
    ids = [i for _a, ids, _n in attrs for i in ids]
    assert len(ids) == len(set(ids)) == 3 * len(attrs)


# --- determinism, chunks and per-CPU streams --------------------------------------------------

def test_deterministic_by_seed():
    a = mixed_stream(n=2000, seed=11)
    b = mixed_stream(n=2000, seed=11)
    data = a.merged()
    assert data == b.merged() == a.merged()  # a second pass too
    assert a.user_strings == b.user_strings
    assert mixed_stream(n=2000, seed=12).merged() != data


@pytest.mark.parametrize("max_bytes", [1, 300, 4096, 1 << 20])
def test_chunks_are_whole_records(max_bytes):
    stream = mixed_stream(n=1500, record_values=False)
    data = stream.merged()
    chunks = list(stream.chunks(max_bytes))
    assert b"".join(chunks) == data
    for chunk in chunks:
        sizes = [size for _pos, _t, _m, size in iter_headers(chunk)]
        assert len(chunk) <= max_bytes or len(sizes) == 1
    if max_bytes >= 4096:
        # Chunks are filled up to the bound, not cut at internal rounds.
        assert all(len(c) > max_bytes - 200 for c in chunks[:-1])


def test_per_cpu_streams_are_ordered_and_merge_back():
    stream = mixed_stream(n=ROUND + 1500, record_values=False)
    attrs = stream.attr_table()
    merged = list(iter_records(stream.merged(), attrs))
    per_cpu = stream.per_cpu()
    assert sorted(per_cpu) == [0, 1, 2]
    for cpu, data in per_cpu.items():
        recs = list(iter_records(data, attrs))
        assert all(r.cpu == cpu for r in recs)
        assert [r.time for r in recs] == sorted(r.time for r in recs)
    key = [(r.time, r.cpu, type(r).__name__) for r in merged]
    again = merge_streams({c: iter_records(d, attrs) for c, d in per_cpu.items()})
    assert [(r.time, r.cpu, type(r).__name__) for r in again] == key
    # Drain rounds through the live merger, as the live loop does.
    merger, out, rounds = StreamMerger(), [], 0
    for rnd in stream.cpu_rounds(max_bytes=8192):
        rounds += 1
        for cpu, chunk in rnd:
            assert len(chunk) <= 8192
            merger.push(cpu, iter_records(chunk, attrs))
        out += merger.end_round()
    out += merger.finish()
    assert rounds > 1
    assert [(r.time, r.cpu, type(r).__name__) for r in out] == key
    assert b"".join(c for _cpu, c in stream.cpu_chunks()) != b""


def test_two_hundred_thousand_events():
    """Benchmark-sized generation (200k samples, three events, four CPUs)."""
    stream = SyntheticStream(["syscalls:sys_enter_openat", "syscalls:sys_enter_read",
                              "sched:sched_switch"], n_events=200_000, cpus=4, tasks=64,
                             seed=1)
    n = size = 0
    for chunk in stream.chunks(4 << 20):
        n += sum(1 for _ in iter_headers(chunk))
        size += len(chunk)
    assert n == 200_000 + 64 and size == stream.stats.bytes
    assert sum(stream.stats.per_event.values()) == 200_000
    assert all(v > 60_000 for v in stream.stats.per_event.values())


# --- perf.data: perf script and ktapjit run --replay ---------------------------------------------

def expected_lines(stream: SyntheticStream):
    """(comm, tid, event) per sample, following COMM/FORK as perf does."""
    comm_of: dict[int, bytes] = {}
    out = []
    for r in decode_all(stream):
        if isinstance(r, Comm):
            comm_of[r.tid] = r.comm
        elif isinstance(r, Fork):
            comm_of[r.tid] = comm_of.get(r.ptid, b":%d" % r.tid)
        elif isinstance(r, Sample):
            system, event = stream.event_of(r.id)
            out.append((comm_of[r.tid].decode(), r.tid, r.time, f"{system}:{event}"))
    return out


def perf_script(path, *args) -> str:
    done = subprocess.run([PERF, "script", "-i", str(path), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_perf
def test_perf_script_reads_written_file(tmp_path):
    stream = mixed_stream(n=2500, record_values=False)
    path = tmp_path / "synth.data"
    stats = write_perf_data(path, stream)
    text = perf_script(path, "-F", "comm,tid,time,event", "--ns")
    lines = text.splitlines()
    assert len(lines) == stats.samples == 2500
    got = []
    for line in lines:
        m = re.fullmatch(r"\s*(.+?)\s+(\d+)\s+(\d+)\.(\d{9}):\s+(\S+):\s*", line)
        assert m, line
        comm, tid, sec, ns, event = m.groups()
        got.append((comm, int(tid), int(sec) * 10**9 + int(ns), event))
    assert got == expected_lines(stream)
    # The default output renders every tracepoint's fields through its print fmt.
    full = perf_script(path)
    assert full.count("filename: 0x5555") == stats.per_event["syscalls:sys_enter_openat"]
    assert full.count("==> next_comm=") == stats.per_event["sched:sched_switch"]
    # Written as rounds or merged, perf prints the same.
    merged = tmp_path / "merged.data"
    write_perf_data(merged, stream, layout="merged")
    assert perf_script(merged) == full


def test_written_file_reads_back(tmp_path):
    stream = mixed_stream(n=1000, record_values=False)
    path = tmp_path / "synth.data"
    write_perf_data(path, stream, layout="merged")
    pd = read_perf_data(path)
    assert {k: parse_format(v).id for k, v in pd.formats.items()} == \
        {k: f.id for k, f in stream.schemas().items()}
    assert bytes(pd.data_bytes) == stream.merged()
    assert [e.name for e in pd.attrs] == [name for _a, _i, name in stream.attrs()]
    pd.close()


def test_replay_counts_match_the_generator(tmp_path):
    from ktapjit.cli import main

    stream = mixed_stream(n=4000)
    path = tmp_path / "synth.data"
    write_perf_data(path, stream)
    opens = Counter(v["filename"] for i, v in stream.values if i == 0)
    execs = Counter(v["filename"] for i, v in stream.values if i == 2)
    switch_comms = Counter(comm for comm, _tid, _t, ev in expected_lines(stream)
                           if ev == "sched:sched_switch")
    script = r"""
var n = {}
var m = {}
var c = {}
trace syscalls:sys_enter_openat { n[args.filename] += 1 }
trace sched:sched_process_exec { m[args.filename] += 1 }
trace sched:sched_switch { c[execname] += 1 }
trace_end {
  for (k, v in pairs(n)) { printf("open %d %d\n", k, v) }
  for (k, v in pairs(m)) { printf("exec %s %d\n", k, v) }
  for (k, v in pairs(c)) { printf("comm %s %d\n", k, v) }
}
"""
    out, err = BytesIO(), BytesIO()
    rc = main(["run", "--replay", str(path), "-e", script], stdout=out, stderr=err)
    assert rc == 0, err.getvalue()
    got_opens, got_execs, got_comms = Counter(), Counter(), Counter()
    for line in out.getvalue().decode().splitlines():
        kind, key, count = line.split()
        if kind == "open":
            got_opens[stream.user_strings[int(key)].decode()] = int(count)
        elif kind == "exec":
            got_execs[key.encode()] = int(count)
        else:
            got_comms[key] = int(count)
    assert got_opens == opens and sum(opens.values()) == stream.stats.per_event[
        "syscalls:sys_enter_openat"]
    assert got_execs == execs
    assert got_comms == switch_comms
    assert f"{stream.stats.lost} events lost" in err.getvalue().decode()
