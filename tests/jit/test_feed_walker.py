"""The record walker compiled per session (jit/walker.py) against the
interpreter: every replay gives byte-identical output under both engines,
and each case says how much of the stream the compiled walker ran itself
(all of it, part of it, or none: then the generic walker in feed.c ran
every record), so a case cannot pass because the walker quietly declined.
"""

from __future__ import annotations

import struct

import pytest

from ktapjit.jit.walker import sample_layout
from tests.jit.test_feed import _event_of, _patched, _raw_start, agree, feeds, streams  # noqa: F401 (fixtures)

ALL, SOME, NONE = "all", "some", "none"

# script, the samples the compiled walker runs on the "plain" stream
CASES = {
    "count by an integer field": ("var n = {}\ntrace raw_syscalls:sys_enter { n[args.id] += 1 }\n"
                                  "trace_end { print_hist(n) }", ALL),
    "task values, probename, fields": ("trace sched:sched_switch { print(pid, tid, cpu, uid, probename,"
                                       " args.prev_pid, args.prev_state, args.common_type, arg1, args.nosuch) }",
                                       ALL),
    "several probes, one id": ("trace sched:* { printf(\"a %s %d\\n\", probename, tid) }\n"
                               "trace sched:sched_switch { printf(\"b %d\\n\", args.next_pid) }\n"
                               "trace raw_syscalls:sys_enter { printf(\"c %d\\n\", args.id) }", ALL),
    "signed fields": ("trace sched:sched_switch { print(args.prev_prio - 200, args.next_prio) }", ALL),
    "a data_loc field's span is checked": ("trace sched:sched_process_exec { print(args.pid, arg9) }", ALL),
    "tick timers fall between samples": ("var n = 0\ntick-1ms { printf(\"t %d %d\\n\", gettimeofday_ns(), n) }\n"
                                         "trace raw_syscalls:sys_enter, sched:* { n += 1 }\n"
                                         "trace_end { print(n) }", SOME),
    "exit mid-stream": ("var n = 0\ntrace raw_syscalls:sys_enter { n += 1; if (n == 500) { exit() } }\n"
                        "trace sched:sched_switch { print(n) }\ntrace_end { print(\"end\", n) }", ALL),
    "error mid-stream": ("var n = 0\ntrace raw_syscalls:sys_enter { n += 1; if (n == 700) { print(1 + \"x\") } }\n"
                         "trace_end { print(\"end\", n) }", ALL),
    "count by execname": ("var n = {}\ntrace raw_syscalls:sys_enter { n[execname] += 1 }\n"
                          "trace_end { print_hist(n) }", ALL),
    "execname, pid and a field": ("trace sched:sched_switch { print(execname, pid, args.next_pid, execname) }",
                                  ALL),
    "filters stay generic": ("trace sched:sched_switch /prev_pid > 1100/ { print(args.prev_pid) }", NONE),
    "string fields stay generic": ("trace sched:sched_switch { print(args.prev_comm) }", NONE),
    "one probe of two is compiled": ("trace sched:sched_switch { print(args.prev_comm) }\n"
                                     "trace raw_syscalls:sys_enter { print(args.id) }", SOME),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("stream", ["plain", "churn", "sparse"])
def test_the_compiled_walker_agrees_with_the_interpreter(feeds, streams, name, stream):  # noqa: F811
    script, expected = CASES[name]
    agree(feeds, streams[stream], script)
    feed = feeds[0]
    walked = feed.walker.samples if feed.walker is not None else 0
    if stream == "plain":
        assert {ALL: walked == feed.samples > 0, SOME: 0 < walked < feed.samples,
                NONE: walked == 0}[expected], (walked, feed.samples)


def test_a_damaged_record_is_left_to_the_generic_walker(feeds, streams, tmp_path):  # noqa: F811
    """RAW data shorter than the format: the compiled walker declines it and
    the generic one reports it where the body reads it."""
    def patch(buf, samples, data):
        victim = [s for s in samples if _event_of(data, s).endswith("sched_switch")][40]
        struct.pack_into("<I", buf, _raw_start(victim) - 4, 20)  # RAW's u32 size

    path = _patched(streams["plain"], tmp_path / "short.data", patch)
    out, err, status = agree(feeds, path, "var n = 0\ntrace sched:sched_switch {\n n += 1\n"
                             " print(n, args.prev_pid) }\ntrace_end { print(\"end\", n) }")
    assert status == 1 and b"corrupt sched:sched_switch record" in err
    assert feeds[0].walker.samples == feeds[0].samples - 1 > 0  # all but the damaged one


@pytest.mark.parametrize("sample_type, expected", [
    # IDENTIFIER|TID|TIME|CPU|PERIOD|RAW: what ktapjit records
    (1 << 16 | 1 << 1 | 1 << 2 | 1 << 7 | 1 << 8 | 1 << 10, (8, 20, 24, 32, 48, False, True)),
    # perf record's default for tracepoints: IP|TID|TIME|ID|CPU|PERIOD|RAW
    (1 << 0 | 1 << 1 | 1 << 2 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 10, (32, 20, 24, 40, 56, False, True)),
    # CALLCHAIN, no id, no time
    (1 << 1 | 1 << 5, (-1, 12, -1, -1, 16, True, False)),
])
def test_sample_layouts_are_read_as_the_runtime_reads_them(sample_type, expected):
    layout = sample_layout(sample_type)
    assert (layout.id, layout.tid, layout.time, layout.cpu, layout.head_end, layout.callchain,
            layout.raw) == expected


def test_the_same_script_and_layout_load_the_walker_from_the_cache(feeds, streams, tmp_path,  # noqa: F811
                                                                    monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path / "cache"))
    script = "var n = {}\ntrace raw_syscalls:sys_enter { n[args.id] += 1 }\ntrace_end { print(len(n)) }"
    first = agree(feeds, streams["plain"], script)
    assert feeds[0].walker is not None and not feeds[0].walker.cache_hit
    assert agree(feeds, streams["plain"], script) == first
    assert feeds[0].walker.cache_hit and feeds[0].walker.samples == feeds[0].samples
    assert list((tmp_path / "cache" / "jit").glob("walk-*.kimg"))


@pytest.mark.parametrize("tid, name", [(0, b"swapper"), (42, b":42"), (4294967295, b":4294967295")])
def test_k_feed_comm_names_a_task_as_the_generic_walker_does(tid, name):
    """Before any COMM record: perf's name of the idle task, else ":tid"."""
    import ctypes

    from ktapjit.jit import rtlib

    rt = rtlib.load()
    feed = rt.k_feed_new(0)
    try:
        out = rtlib.KVal()
        assert rt.k_feed_comm(feed, tid, ctypes.byref(out)) == 0
        assert out.tag == rtlib.STRING and rt.string_bytes(out) == name
    finally:
        rt.k_feed_free(feed)
