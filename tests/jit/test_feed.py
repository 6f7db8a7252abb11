"""The JIT's native event path (jit/feed.py, runtime/feed.c) against the
interpreter: replays of synthetic streams and of the recordings under
tests/data, through the in-process CLI, must give byte-identical stdout,
stderr and status under `--engine jit` (native feed) and `--engine interp`
(the reference). Every JIT run asserts which path it took, so a test cannot
pass because the session quietly fell back to the per-event path.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.events.records.decode import Sample
from ktapjit.events.records.perfdata import read_perf_data
from ktapjit.testing.synth import SyntheticStream, choice, write_perf_data
from tests.jit.feedspy import spied_feeds
from tests.livecheck import live_skip_reason

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def feeds():
    """Every native feed the JIT runs of the test build (None: Python path)."""
    with spied_feeds() as made:
        yield made


def run(engine_name: str, replay: Path, script: str, *opts: str) -> tuple[bytes, bytes, int]:
    out, err = io.BytesIO(), io.BytesIO()
    argv = ["run", "--engine", engine_name, "--replay", str(replay), *opts]
    argv += [script] if script.endswith(".kp") else ["-e", script]
    status = main(argv, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), status


def agree(feeds, replay: Path, script: str, *opts: str, native: bool = True) -> tuple[bytes, bytes, int]:
    """Run both engines; assert they agree and that the JIT took the path
    expected (native: a feed ran samples; else no feed was made)."""
    feeds.clear()
    jit = run("jit", replay, script, *opts)
    interp = run("interp", replay, script, *opts)
    assert jit == interp
    if native:
        assert feeds and feeds[0] is not None and feeds[0].runs > 0, "the native path was not taken"
    else:
        assert not feeds or all(f is None for f in feeds), "the native path was taken"
    return jit


# -- streams ---------------------------------------------------------------------------------


def _synth(tmp: Path, name: str, n: int = 3000, **options) -> Path:
    stream = SyntheticStream(
        [("sched", "sched_switch"),
         ("sched", "sched_process_exec", None, {"filename": choice(["/bin/sh", "/usr/bin/ls", ""])}, 0.3),
         ("raw_syscalls", "sys_enter", None, None, 2.0)],
        n_events=n, cpus=2, tasks=6, seed=7, **options)
    path = tmp / name
    write_perf_data(path, stream)
    return path


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("feed")
    return {
        "plain": _synth(tmp, "plain.data"),
        "churn": _synth(tmp, "churn.data", churn=0.02, lost=0.01),
        "sparse": _synth(tmp, "sparse.data", n=400, gap_ns=5_000_000.0),
    }


def _patched(src: Path, dst: Path, patch) -> Path:
    """A copy of `src` where patch(buf, samples) edited the bytes in place."""
    data = read_perf_data(src)
    samples = [r for r in data.records() if isinstance(r, Sample)]
    buf = bytearray(src.read_bytes())
    patch(buf, samples, data)
    dst.write_bytes(bytes(buf))
    return dst


def _raw_start(sample: Sample) -> int:
    """File offset of a synthetic sample's RAW bytes (they end the record)."""
    return sample.offset + sample.size - len(sample.raw)


def _event_of(data, sample: Sample) -> str:
    return data.event_name(sample.id) or ""


# -- the cases ------------------------------------------------------------------------------

SCRIPTS = {
    "task values": "trace sched:sched_switch { print(execname, pid, tid, cpu, uid, probename) }",
    "int and string fields": "trace sched:sched_switch { print(args.prev_comm, args.prev_pid, args.prev_state,"
                             " args.next_comm, args.common_type, args.common_pid, args.nosuch) }",
    "data_loc strings": "trace sched:sched_process_exec { print(args.filename, arg0, arg1, arg2, arg3, arg9) }",
    "several probes in order": "trace sched:* { printf(\"a %s %d\\n\", probename, tid) }\n"
                               "trace sched:sched_switch { printf(\"b %s\\n\", execname) }\n"
                               "trace raw_syscalls:sys_enter { printf(\"c %d\\n\", args.id) }",
    "counting": "var n = {}\ntrace raw_syscalls:sys_enter { n[execname .. \" \" .. pid] += 1 }\n"
                "trace_end { print_hist(n) }",
    "tick timers": "var n = 0\ntick-1ms { printf(\"t1 %d %d\\n\", gettimeofday_ns(), n) }\n"
                   "tick-1ms { print(\"t1b\") }\ntick-3ms { print(\"t3\") }\n"
                   "trace raw_syscalls:sys_enter { n += 1 }\ntrace_end { print(n, gettimeofday_ns()) }",
    "time of samples": "trace sched:sched_switch { print(gettimeofday_ns()) }",
    "exit mid-stream": "var n = 0\ntrace raw_syscalls:sys_enter { n += 1; if (n == 500) { exit() } }\n"
                       "trace sched:sched_switch { print(n) }\ntrace_end { print(\"end\", n) }",
    "exit from a timer": "var n = 0\ntick-2ms { exit() }\ntrace raw_syscalls:sys_enter { n += 1 }\n"
                         "trace_end { print(n) }",
    "error mid-stream": "var n = 0\ntrace raw_syscalls:sys_enter { n += 1; if (n == 700) { print(1 + \"x\") } }\n"
                        "trace_end { print(\"end\", n) }",
    "error in a timer": "var n = 0\ntick-2ms { n = n + nil }\ntrace raw_syscalls:sys_enter { n += 1 }\n"
                        "trace_end { print(n) }",
    "array fields": "trace raw_syscalls:sys_enter { var a = args.args; var b = arg1; a[9] = args.id\n"
                    "  print(len(b), b == a, b[9], a[0], a[5], a[6]) }",
    "array field limit": "trace raw_syscalls:sys_enter { var a = args.args; a[\"x\"] = 1 }",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("stream", ["plain", "churn", "sparse"])
def test_synthetic_streams(feeds, streams, name, stream):
    agree(feeds, streams[stream], SCRIPTS[name])


FILTERS = [
    "prev_pid > 1100",
    "prev_pid > 1050 && next_prio < 120",
    "!(prev_state & 1) || cpu == 1",
    "cpu != 0",
    "CPU >= 1 && common_pid != 1143",
    "prev_state < 1 || prev_prio <= -1",
    "prev_pid == 4294967295 || next_pid == -1",
    "prev_state & 0 || next_pid >= 1100",
    "!(common_type == 372)",
    "next_prio > 4294967295",
    "prev_comm == \"bash\" || next_comm != \"node\"",
    "comm == \"sshd\" && prev_comm ~ \"sshd\"",
    "prev_comm ~ \"!postgres\" && comm != \"bash\"",
    "next_comm == \"postgres_with_a_long_name\" || comm == \"\"",
]

STRING_FILTERS = [
    ("sched:sched_process_exec", "filename == \"/bin/sh\""),
    ("sched:sched_process_exec", "filename != \"\" && comm ~ \"!node\""),
    ("sched:sched_switch", "comm == \"swapper/0\" || comm == \"swapper/1\""),
]


@pytest.mark.parametrize("event, text", STRING_FILTERS)
def test_string_filters_run_natively(feeds, streams, event, text):
    script = f"trace {event} /{text}/ {{ print(tid, execname, probename) }}"
    agree(feeds, streams["churn"], script)
    agree(feeds, DATA / "sched.data", "trace sched:* /comm == \"swapper/0\" || comm ~ \"perf\"/ { print(tid) }")


@pytest.mark.parametrize("text", FILTERS)
def test_numeric_filters_run_natively(feeds, streams, text):
    script = f"trace sched:sched_switch /{text}/ {{ print(tid, cpu, args.prev_pid, args.next_prio) }}"
    agree(feeds, streams["churn"], script)


def test_filters_on_the_recordings(feeds):
    agree(feeds, DATA / "sched.data", "trace sched:* /common_pid > 100 && cpu < 1/ { print(probename, tid) }")
    agree(feeds, EXAMPLES / "data" / "demo.data", "trace raw_syscalls:sys_exit /ret < 0/ { print(execname, args.ret) }")


def test_lost_records_are_counted(feeds, streams):
    out, err, status = agree(feeds, streams["churn"], "trace sched:sched_switch { }")
    assert b"events lost" in err and status == 0


def test_examples_on_the_demo_recording(feeds):
    for script in ("syscount_by_process.kp", "syscount.kp", "hello.kp"):
        agree(feeds, EXAMPLES / "data" / "demo.data", str(EXAMPLES / script))


@pytest.mark.parametrize("recording", ["sched.data", "getppid.data", "pipe.data"])
def test_recordings(feeds, recording):
    script = ("trace *:* { printf(\"%s %d %d %s %s\\n\", execname, pid, cpu, probename, stringof(arg0)) }\n"
              "tick-1ms { print(\"tick\") }")
    agree(feeds, DATA / recording, script)


def test_glob_and_cpus_filters_run_natively(feeds, streams):
    """(tests/jit/test_feed_filter.py has the property tests.)"""
    path = streams["plain"]
    agree(feeds, path, "trace sched:sched_switch /prev_comm ~ \"*sh\"/ { print(tid) }")
    agree(feeds, path, "trace sched:sched_switch /comm ~ \"b*\" || cpu == 1/ { print(tid) }")
    agree(feeds, path, "trace sched:sched_switch /cpu & CPUS{1}/ { print(tid) }")
    agree(feeds, path, "trace sched:sched_switch /prev_comm ~ \"a[!b]\"/ { print(tid) }")


def test_dynamic_arrays_run_natively(feeds, tmp_path):
    """__data_loc arrays of u64 and unsigned int (dma:dma_map_sg) are tables
    of their whole elements, from 0; a damaged location fails the read."""
    stream = SyntheticStream([("dma", "dma_map_sg"), ("raw_syscalls", "sys_enter", None, None, 0.2)],
                             n_events=600, cpus=2, tasks=4, seed=3)
    path = tmp_path / "dma.data"
    write_perf_data(path, stream)
    script = ("trace dma:dma_map_sg { var p = args.phys_addrs; var l = args.lengths\n"
              "  print(len(p), p[0], p[len(p) - 1], len(l), l[0], args.dma_addrs == args.dma_addrs) }")
    out, _, status = agree(feeds, path, script)
    assert status == 0 and out.count(b"\n") > 100

    def patch(buf, samples, data):  # a phys_addrs location past the record's end
        sample = next(s for s in samples if _event_of(data, s) == "dma:dma_map_sg")
        at = _raw_start(sample) + data.schemas()[("dma", "dma_map_sg")].field("phys_addrs").offset
        buf[at:at + 4] = struct.pack("<I", 0xFFF0 << 16 | 8)

    damaged = _patched(path, tmp_path / "dma-damaged.data", patch)
    out, err, status = agree(feeds, damaged, script)
    assert status == 1 and b"phys_addrs" in err


def test_truncated_raw_data_fails_where_the_body_reads(feeds, streams, tmp_path):
    def patch(buf, samples, data):
        victim = [s for s in samples if _event_of(data, s).endswith("sched_switch")][40]
        at = _raw_start(victim) - 4  # RAW's u32 size: claim fewer bytes than the format needs
        struct.pack_into("<I", buf, at, 20)

    path = _patched(streams["plain"], tmp_path / "short.data", patch)
    out, err, status = agree(feeds, path, "var n = 0\ntrace sched:sched_switch {\n n += 1\n"
                             " print(n, args.prev_pid) }\ntrace_end { print(\"end\", n) }")
    assert status == 1 and b"corrupt sched:sched_switch record" in err
    # A body that reads no field does not notice; a filter reads the bytes there are.
    agree(feeds, path, "trace sched:sched_switch { print(pid) }")
    agree(feeds, path, "trace sched:sched_switch /prev_pid != 7 && next_pid > 3/ { print(pid) }")


def test_data_loc_outside_the_record(feeds, streams, tmp_path):
    def patch(buf, samples, data):
        victim = [s for s in samples if _event_of(data, s).endswith("sched_process_exec")][5]
        struct.pack_into("<I", buf, _raw_start(victim) + 8, (50 << 16) | 200)

    path = _patched(streams["plain"], tmp_path / "loc.data", patch)
    out, err, status = agree(feeds, path, "trace sched:sched_process_exec {\n print(pid)\n"
                             " print(args.old_pid) }")
    assert status == 1 and b"points to bytes 200..250" in err


def test_corrupt_timestamp_stops_the_stream(feeds, streams, tmp_path):
    def patch(buf, samples, data):
        victim = samples[len(samples) // 2]
        struct.pack_into("<Q", buf, victim.offset + 8 + 8 + 8, 1 << 62)  # IDENTIFIER, TID, then TIME

    path = _patched(streams["plain"], tmp_path / "time.data", patch)
    out, err, status = agree(feeds, path, "var n = 0\ntick-1ms { n += 1 }\n"
                             "trace raw_syscalls:sys_enter { }\ntrace_end { print(n) }")
    assert b"jumps" in err


def test_native_feed_counts_every_sample(feeds, streams):
    agree(feeds, streams["plain"], "trace sched:sched_switch { }\ntrace raw_syscalls:sys_enter { }")
    stream = read_perf_data(streams["plain"])
    bound = {i for ev in stream.attrs for i in ev.ids
             if (stream.format_of(ev) or ("", ""))[1] in ("sched_switch", "sys_enter")}
    expected = sum(1 for r in stream.records() if isinstance(r, Sample) and r.id in bound)
    assert feeds[0].samples == expected > 0


def _native_order(path: Path) -> list[int] | None:
    """k_feed_order over a recording, with a feed built for its attrs."""
    from ktapjit.jit import rtlib
    from ktapjit.jit.feed import NativeFeed, load_plan
    from ktapjit.tracing.feed_plan import build_feed_plan
    from ktapjit.tracing.plan import StreamPlan

    data = read_perf_data(path)
    rt = rtlib.load()
    feed = NativeFeed(rt, rt.k_feed_new(0))
    load_plan(rt, feed.ptr, build_feed_plan(StreamPlan(), data.attr_table(), 0), program=None)
    order = feed.order(bytes(data.data_bytes))
    return None if order is None else [data.data_offset + o for o in order]


@pytest.mark.parametrize("name", ["plain", "churn", "sparse"])
def test_native_order_is_perfs_order_synthetic(streams, name):
    from ktapjit.events.records.merge import order_perf_rounds

    expected = [r.offset for r in order_perf_rounds(read_perf_data(streams[name]).records())]
    assert _native_order(streams[name]) == expected


@pytest.mark.parametrize("path", [DATA / "sched.data", DATA / "getppid.data", DATA / "pipe.data",
                                  DATA / "callchain.data", DATA / "cpuclock.data",
                                  EXAMPLES / "data" / "demo.data"], ids=lambda p: p.name)
def test_native_order_is_perfs_order_recordings(path):
    from ktapjit.events.records.merge import order_perf_rounds

    expected = [r.offset for r in order_perf_rounds(read_perf_data(path).records())]
    assert _native_order(path) == expected


def test_synthetic_replays_are_ordered_natively(feeds, streams):
    agree(feeds, streams["churn"], SCRIPTS["task values"])
    assert feeds[0].ordered


def test_a_broken_stream_is_reported_as_the_python_path_does(feeds, streams, tmp_path):
    """A record the decoder rejects: the native order refuses the buffer and
    the records come from the Python decoder, error included."""
    def patch(buf, samples, data):
        victim = samples[-10]  # past the head a replay reads before the run starts
        struct.pack_into("<I", buf, _raw_start(victim) - 4, 10_000)  # RAW runs past the record

    # Big enough for several rounds: a replay decodes its first round before the run starts.
    big = _synth(tmp_path, "big.data", n=80_000)
    path = _patched(big, tmp_path / "broken.data", patch)
    script = "var n = 0\ntrace raw_syscalls:sys_enter { n += 1 }\ntrace_end { print(n) }"
    out, err, status = agree(feeds, path, script)
    assert not feeds[0].ordered and b"RAW" in err
    # Stopping before the broken record: the error is never reached.
    out, err, status = agree(feeds, path, "var n = 0\ntrace raw_syscalls:sys_enter { n += 1; if (n == 10) { exit() } }\n"
                                          "trace_end { print(n) }")
    assert out == b"10\n" and b"RAW" not in err


@pytest.mark.parametrize("seed", range(12))
def test_damaged_recordings_agree(feeds, streams, tmp_path, seed):
    """Random bytes flipped in the data section: whatever the damage (broken
    headers, ids, times, raw sizes, fields), both paths say the same."""
    import random

    rng = random.Random(seed)
    src = streams["sparse"]
    data = read_perf_data(src)
    buf = bytearray(src.read_bytes())
    for _ in range(rng.choice([1, 3, 10])):
        at = data.data_offset + rng.randrange(data.data_size)
        buf[at] = rng.randrange(256)
    path = tmp_path / "damaged.data"
    path.write_bytes(bytes(buf))
    script = ("var n = 0\ntick-1ms { n += 1 }\n"
              "trace sched:sched_switch /prev_pid > 1050/ { print(execname, tid, cpu, args.prev_comm, args.prev_pid) }\n"
              "trace sched:sched_process_exec /filename != \"/bin/sh\"/ { print(args.filename, arg1) }\n"
              "trace_end { print(n) }")
    feeds.clear()
    assert run("jit", path, script) == run("interp", path, script)


def test_garbage_never_crashes_the_feed(streams):
    """k_feed and k_feed_order on random bytes: a status, never a crash."""
    import random

    from ktapjit.jit import rtlib
    from ktapjit.jit.feed import NativeFeed, load_plan
    from ktapjit.tracing.feed_plan import build_feed_plan
    from ktapjit.tracing.plan import StreamPlan

    rt = rtlib.load()
    data = read_perf_data(streams["plain"])
    feed = NativeFeed(rt, rt.k_feed_new(0))
    load_plan(rt, feed.ptr, build_feed_plan(StreamPlan(), data.attr_table(), 0), program=None)
    state = rt.state()
    rng = random.Random(5)
    for size in (0, 7, 8, 64, 4096):
        for _ in range(50):
            junk = rng.randbytes(size)
            feed.run(state.ptr, junk, None, 0, 0)
            feed.order(junk)
    state.close()
    feed.close()


def test_live_sessions_run_natively(feeds, tmp_path):
    """A live trace of a command (the rings are merged in native code): exact
    counts under both engines, and its recording replays to the same output."""
    import sys

    reason = live_skip_reason("live tracing (perf_event_open on tracepoints and tracefs)",
                              "events/syscalls/sys_enter_getppid/id",
                              "this kernel has no syscalls:sys_enter_getppid tracepoint")
    if reason:
        pytest.skip(reason)

    script = ("var n = 0\nvar by = {}\ntrace syscalls:sys_enter_getppid /common_pid > 0/ { n += 1; by[execname] += 1 }\n"
              "tick-1ms { }\ntrace_end { print(n) print_hist(by) }")
    command = ["--", sys.executable, "-c", "import os\nfor _ in range(3000): os.getppid()"]
    results = {}
    for name in ("interp", "jit"):
        out, err = io.BytesIO(), io.BytesIO()
        opts = ["--record", str(tmp_path / "live.data")] if name == "jit" else []
        status = main(["run", "--engine", name, "-q", *opts, "-e", script, *command], stdout=out, stderr=err)
        results[name] = (out.getvalue(), err.getvalue(), status)
    assert results["jit"] == results["interp"]
    assert results["jit"][0].startswith(b"3000\n")
    assert feeds and feeds[0] is not None and feeds[0].runs > 0 and feeds[0].samples >= 3000
    replayed = agree(feeds, tmp_path / "live.data", script)
    assert replayed[0] == results["jit"][0]


def test_profile_samples_run_natively(feeds, tmp_path):
    """`profile-N` bodies without stacks take the native path, live and
    replayed: task values and probename as the interpreter gives them, and
    nil for everything of a trace format."""
    import sys

    script = ('var n = {}\nvar odd = 0\n'
              'profile-1ms { n[execname .. " " .. probename] += 1\n'
              '  if (argstr != nil || arg0 != nil || args.x != nil || uid != nil || cpu < 0) { odd += 1 } }\n'
              'trace_end { print(odd) for (k, v in pairs(n)) { if (v > 0) { print(k) } } }')
    command = ["--", sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 0.3: pass"]
    data = tmp_path / "profile.data"
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", "jit", "-q", "--record", str(data), "-e", script, *command],
                  stdout=out, stderr=err)
    if status != 0 and b"permission" in err.getvalue().lower():
        pytest.skip(f"live tracing is not available here: {err.getvalue().decode()[:200]}")
    assert (status, err.getvalue()) == (0, b"")
    assert out.getvalue().startswith(b"0\n") and b" profile-1ms\n" in out.getvalue()
    assert feeds and feeds[0] is not None and feeds[0].samples > 0
    replayed = agree(feeds, data, script)
    assert replayed[0] == out.getvalue()


def test_live_rounds_in_bounded_steps_keep_what_ran_and_discard_the_rest(streams):
    """The live merger (k_feed_push/k_feed_release) run a few records per
    call, as a stop needs: the records run, kept in the order they ran, are
    exactly StreamMerger's order; a round cut short leaves the rest queued,
    and k_feed_discard drops it and counts its samples."""
    from ktapjit.events.records.decode import FinishedRound, iter_records
    from ktapjit.events.records.merge import StreamMerger
    from ktapjit.jit import rtlib
    from ktapjit.jit.feed import NativeFeed, load_plan
    from ktapjit.tracing.feed_plan import build_feed_plan
    from ktapjit.tracing.plan import StreamPlan

    rt = rtlib.load()
    data = read_perf_data(streams["plain"])
    attrs = data.attr_table()
    buf = bytes(data.data_bytes)
    records = [r for r in iter_records(buf, attrs) if not isinstance(r, FinishedRound)]
    raw = {id(r): buf[r.offset:r.offset + r.size] for r in records}
    # Two drain passes of two CPUs each (records dealt out in file order).
    half = len(records) // 2
    passes = [[(cpu, part[cpu::2]) for cpu in (0, 1)] for part in (records[:half], records[half:])]

    reference = StreamMerger()
    expected = []
    for chunks in passes:
        for cpu, recs in chunks:
            reference.push(cpu, recs)
        expected += reference.end_round()
    expected += reference.finish()

    state = rt.state()
    feed = NativeFeed(rt, rt.k_feed_new(0))
    load_plan(rt, feed.ptr, build_feed_plan(StreamPlan(), attrs, 0), program=None)
    feed.keep()
    steps = 0
    for final, chunks in ((False, passes[0]), (False, passes[1]), (True, [])):
        for cpu, recs in chunks:
            assert feed.push(cpu, b"".join(raw[id(r)] for r in recs))
        while True:
            assert feed.release(state.ptr, final, 7) == rtlib.RUN_OK
            steps += 1
            if not feed.more:
                break
    assert feed.take_kept() == b"".join(raw[id(r)] for r in expected)
    assert steps > len(records) // 7

    # A round cut after one step: the rest stays queued until discarded.
    for cpu, recs in passes[0]:
        feed.push(cpu, b"".join(raw[id(r)] for r in recs))
    assert feed.release(state.ptr, True, 7) == rtlib.RUN_OK and feed.more
    ran = feed.take_kept()
    samples = sum(isinstance(r, Sample) for r in records[:half])
    ran_samples = sum(isinstance(r, Sample) for r in iter_records(ran, attrs))
    assert feed.discard() == samples - ran_samples
    assert feed.release(state.ptr, True, 0) == rtlib.RUN_OK and not feed.more and feed.take_kept() == b""
    state.close()
    feed.close()
