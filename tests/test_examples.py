"""The scripts in examples/, replayed over the bundled recording.

Every example must compile, and replaying it over examples/data/demo.data
must exit 0 and print exactly tests/examples_expected/NAME.out.

Those expected files are not trusted on their own: for the event examples,
each is derived again here, independently of ktapjit, from `perf script`'s
reading of the same recording (Debian's perf, libtraceevent) and plain Python
arithmetic, with print_hist re-implemented from LANGUAGE.md. The test then
checks that the derivation equals both the expected file and ktapjit's output,
so a decoder, filter, comm-tracking or ordering bug cannot hide behind an
expected file that was produced by ktapjit itself. hello.kp has no events;
its expected output was checked by hand against LANGUAGE.md.

A live smoke test runs one example over `-- /bin/true` (root only).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from ktapjit.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
DEMO = EXAMPLES_DIR / "data" / "demo.data"
EXPECTED_DIR = Path(__file__).resolve().parent / "examples_expected"
EXAMPLES = ["hello", "syscount", "syscount_by_process", "schedtime", "syslat", "filtered", "sysdist"]
UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")

needs_perf = pytest.mark.skipif(shutil.which("perf") is None, reason="perf (Debian linux-perf) is not installed")


def cli(*argv: str) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@lru_cache(maxsize=None)
def replay(name: str, engine: str = "interp") -> tuple[int, bytes, bytes]:
    return cli("run", "--engine", engine, "--replay", str(DEMO), str(EXAMPLES_DIR / f"{name}.kp"))


def expected(name: str) -> bytes:
    return (EXPECTED_DIR / f"{name}.out").read_bytes()


# --------------------------------------------------------------- every example


def test_the_recording_is_small():
    assert DEMO.stat().st_size < 400 * 1024


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_compiles(name):
    status, out, err = cli("ir", str(EXAMPLES_DIR / f"{name}.kp"))
    assert status == 0, err.decode("latin-1")
    assert out and not err


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_header_says_what_and_how(name):
    lines = (EXAMPLES_DIR / f"{name}.kp").read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env ktapjit"
    header = "\n".join(line for line in lines[1:] if line.startswith("#"))
    assert "Run it" in header
    command = f"ktapjit run examples/{name}.kp" if name == "hello" else \
        f"ktapjit run --replay examples/data/demo.data examples/{name}.kp"
    assert command in header


@pytest.mark.parametrize("engine", ["interp", "jit"])
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_replays_to_its_expected_output(name, engine):
    status, out, err = replay(name, engine)
    assert status == 0, err.decode("latin-1")
    assert err == b""
    assert out == expected(name)


def test_hello_without_replay():
    status, out, err = cli("run", str(EXAMPLES_DIR / "hello.kp"))
    assert (status, out, err) == (0, expected("hello"), b"")


# ---------------------------------------------- independent derivations, via perf


def print_hist(table: dict, rows: int = 20) -> str:
    """LANGUAGE.md's print_hist, from its text."""
    total = sum(table.values())
    text = "%31s%s%s\n" % ("value ", "------------- Distribution -------------", " count")
    ordered = sorted(table.items(), key=lambda kv: -kv[1])  # stable: ties keep insertion order
    for key, count in ordered[:max(rows, 0)]:
        bar = "@" * (count * 38 // total if total else 0)
        text += "%31s |%-38s%-7d\n" % (key, bar, count)
    if len(ordered) > max(rows, 0):
        text += "%31s |\n" % "..."
    return text


_LINE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<sec>\d+)\.(?P<frac>\d+):"
                   r"\s+(?P<event>[\w-]+:[\w-]+):\s?(?P<trace>.*)$")


@lru_cache(maxsize=None)
def perf_events(ns: bool) -> tuple[dict, ...]:
    """Every sample of the recording, as perf script prints it, in its order."""
    argv = ["perf", "script", "-i", str(DEMO), "-F", "comm,tid,pid,cpu,time,event,trace"]
    text = subprocess.run(argv + (["--ns"] if ns else []), check=True, capture_output=True,
                          text=True, errors="surrogateescape").stdout
    events = []
    for line in text.splitlines():
        # With pid and tid both asked for, perf prints "PID/TID".
        line = re.sub(r"\s(\d+)/(\d+)\s", lambda m: f" {m.group(2)} pid={m.group(1)} ", line, count=1)
        pid = re.search(r" pid=(\d+) ", line)
        line = line.replace(pid.group(0), " ", 1)
        m = _LINE.match(line)
        assert m, f"cannot parse perf script line {line!r}"
        ev = m.groupdict()
        ev["tid"], ev["pid"], ev["cpu"] = int(ev["tid"]), int(pid.group(1)), int(ev["cpu"])
        ev["time"] = int(ev["sec"]) * (10**9 if ns else 10**6) + int(ev["frac"])
        events.append(ev)
    return tuple(events)


def syscall_id(ev: dict) -> int:
    return int(re.match(r"NR (-?\d+)", ev["trace"]).group(1))


def syscall_names() -> dict[int, str]:
    if not UNISTD_64.exists():
        pytest.skip(f"{UNISTD_64} (linux-libc-dev) is missing: no independent x86-64 syscall names")
    names = {}
    for line in UNISTD_64.read_text().splitlines():
        m = re.match(r"#define __NR_(\w+) (\d+)$", line)
        if m:
            names[int(m.group(2))] = m.group(1)
    return names


@needs_perf
def test_the_recording_has_what_the_examples_need():
    kinds = Counter(ev["event"] for ev in perf_events(False))
    for event in ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_switch",
                  "sched:sched_wakeup", "sched:sched_process_exec"):
        assert kinds[event] > 0, event


@needs_perf
def test_the_recordings_readme_counts_its_events():
    table = dict(re.findall(r"^\| (\w+:\w+) \| (\d+) \|", (DEMO.parent / "README.md").read_text(), re.M))
    kinds = Counter(ev["event"] for ev in perf_events(False))
    assert {event: int(count) for event, count in table.items()} == dict(kinds)


@needs_perf
def test_syscount_from_perf_script():
    names = syscall_names()
    counts: dict[str, int] = {}
    for ev in perf_events(False):
        if ev["event"] == "raw_syscalls:sys_enter":
            nr = syscall_id(ev)
            key = names.get(nr, f"NR {nr}")
            counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    derived = f"{total} system calls, {len(counts)} different ones\n" + print_hist(counts, 15)
    assert derived.encode() == expected("syscount") == replay("syscount")[1]


@needs_perf
def test_syscount_by_process_from_perf_script():
    by_name: dict[str, int] = {}
    by_pid: dict[str, int] = {}
    enters = [ev for ev in perf_events(False) if ev["event"] == "raw_syscalls:sys_enter"]
    for ev in enters:
        by_name[ev["comm"]] = by_name.get(ev["comm"], 0) + 1
        key = f"{ev['comm']} {ev['pid']}"
        by_pid[key] = by_pid.get(key, 0) + 1
    # The invariants: every sys_enter sample is counted once, under one name and one pid.
    assert sum(by_name.values()) == sum(by_pid.values()) == len(enters)
    derived = (f"{len(enters)} system calls by {len(by_name)} process names\n\n" + print_hist(by_name)
               + "\nby process (comm pid), the 10 busiest:\n" + print_hist(by_pid, 10))
    assert derived.encode() == expected("syscount_by_process") == replay("syscount_by_process")[1]


@needs_perf
def test_filtered_from_perf_script():
    lines = []
    for ev in perf_events(False):
        system, event = ev["event"].split(":")
        if event == "sched_process_exec":
            keep = re.match(r"filename=(\S*) ", ev["trace"]).group(1).startswith("/usr/bin/")
        elif event == "sys_exit":
            ret = int(re.match(r"NR -?\d+ = (-?\d+)$", ev["trace"]).group(1))
            keep = ret < 0 and ret != -2
        else:
            keep = False
        if keep:
            lines.append("%16s %6d [%03d] %d.%06d: %s: %s\n" % (
                ev["comm"], ev["tid"], ev["cpu"], ev["time"] // 10**6, ev["time"] % 10**6, event, ev["trace"]))
    assert len(lines) > 10
    assert "".join(lines).encode() == expected("filtered") == replay("filtered")[1]


def _bucket(ns: int) -> str:
    lo = 1 << max(ns.bit_length() - 1, 0)
    return f"{lo} - {lo * 2} ns"


@needs_perf
def test_syslat_from_perf_script():
    entered: dict[int, int] = {}
    hist: dict[str, int] = {}
    calls = unmatched = 0
    slowest = (-1, None, None)
    for ev in perf_events(True):
        if ev["event"] == "raw_syscalls:sys_enter":
            entered[ev["tid"]] = ev["time"]
        elif ev["event"] == "raw_syscalls:sys_exit":
            start = entered.pop(ev["tid"], None)
            if start is None:
                unmatched += 1
                continue
            ns = ev["time"] - start
            hist[_bucket(ns)] = hist.get(_bucket(ns), 0) + 1
            calls += 1
            if ns > slowest[0]:
                slowest = (ns, syscall_id(ev), ev["comm"])
    derived = f"{calls} system calls timed, {unmatched} exits without an entry\n" + print_hist(hist)
    derived += f"slowest: NR {slowest[1]} in {slowest[2]}, {slowest[0] // 1000} us\n"
    assert derived.encode() == expected("syslat") == replay("syslat")[1]


def bpftrace_rows(counts: dict[str, int]) -> str:
    """Histogram rows as docs/language-notes.md describes bpftrace's layout:
    counts holds every bucket from the first hit to the last, in order."""
    most = max(counts.values())
    return "".join("%-16s%8d |%-52s|\n" % (label, n, "@" * (n * 52 // most)) for label, n in counts.items())


def _size(n: int) -> str:
    """2^p as 2^(p mod 10) followed by K, M, G... for p // 10."""
    p = n.bit_length() - 1
    return f"{1 << p % 10}{['', 'K', 'M', 'G', 'T', 'P', 'E'][p // 10]}"


@needs_perf
def test_sysdist_from_perf_script():
    entered: dict[int, int] = {}
    latencies: list[int] = []
    by_comm: dict[str, list[int]] = {}
    for ev in perf_events(True):
        if ev["event"] == "raw_syscalls:sys_enter":
            entered[ev["tid"]] = ev["time"]
        elif ev["event"] == "raw_syscalls:sys_exit" and ev["tid"] in entered:
            ns = ev["time"] - entered.pop(ev["tid"])
            latencies.append(ns)
            by_comm.setdefault(ev["comm"], []).append(ns)
    assert min(latencies) >= 2
    powers = [ns.bit_length() - 1 for ns in latencies]   # 2^p <= ns < 2^(p+1)
    log2 = {f"[{_size(1 << p)}, {_size(2 << p)})": powers.count(p) for p in range(min(powers), max(powers) + 1)}
    us = [min(ns // 1000 // 10, 10) for ns in latencies]  # ten 10-us buckets, then >= 100
    linear = {(f"[{10 * i}, {10 * i + 10})" if i < 10 else "[100, ...)"): us.count(i)
              for i in range(min(us), max(us) + 1)}
    derived = "ns:\n" + bpftrace_rows(log2) + "\nus:\n" + bpftrace_rows(linear) + "\n"
    for comm, values in by_comm.items():
        derived += (f"{comm}: count {len(values)}, average {sum(values) // len(values)}, "
                    f"total {sum(values)}, min {min(values)}, max {max(values)}\n")
    assert derived.encode() == expected("sysdist") == replay("sysdist")[1]


_STATE_BITS = {"S": 0x01, "D": 0x02, "T": 0x04, "t": 0x08, "X": 0x10, "Z": 0x20, "P": 0x40, "I": 0x80}


def _state(text: str) -> int:
    """sched_switch's prev_state back from its printed form ("R", "R+", "S", "S|D"...)."""
    value = 0x100 if text.endswith("+") else 0  # perf prints "+" for TASK_REPORT_MAX (preempted)
    text = text.rstrip("+")
    if text != "R":
        for letter in text.split("|"):
            value |= _STATE_BITS[letter]
    return value


@needs_perf
def test_schedtime_from_perf_script():
    events = perf_events(True)
    names: dict[int, str] = {}
    on_cpu: dict[int, int] = {}
    asleep: dict[int, int] = {}
    ran: Counter = Counter()
    slept: Counter = Counter()
    switches: Counter = Counter()
    for ev in events:
        now = ev["time"]
        if ev["event"] == "sched:sched_switch":
            m = re.match(r"prev_comm=(.*) prev_pid=(\d+) prev_prio=-?\d+ prev_state=(\S+) ==> "
                         r"next_comm=(.*) next_pid=(\d+) next_prio=-?\d+$", ev["trace"])
            prev_comm, prev, state, next_comm, nxt = m.group(1), int(m.group(2)), _state(m.group(3)), \
                m.group(4), int(m.group(5))
            if prev != 0:
                names[prev] = prev_comm
                switches[prev] += 1
                if prev in on_cpu:
                    ran[prev] += now - on_cpu.pop(prev)
                if state & 0x30:
                    asleep.pop(prev, None)
                elif state & 0xFF:
                    asleep[prev] = now
            if nxt != 0:
                names[nxt] = next_comm
                on_cpu[nxt] = now
        elif ev["event"] == "sched:sched_wakeup":
            woken = int(re.search(r" pid=(\d+) ", ev["trace"]).group(1))
            if woken in asleep:
                slept[woken] += now - asleep.pop(woken)
    end = max(ev["time"] for ev in events)  # trace_end runs at the stream's last timestamp
    for task, since in on_cpu.items():
        ran[task] += end - since
    for task, since in asleep.items():
        slept[task] += end - since

    def ms(ns: int) -> str:
        return "%8d.%03d" % (ns // 10**6, ns // 1000 % 1000)

    derived = "%-16s %7s %12s %12s %9s\n" % ("COMM", "PID", "RUN ms", "SLEEP ms", "SWITCHES")
    for task, comm in names.items():
        derived += "%-16s %7d %s %s %9d\n" % (comm, task, ms(ran[task]), ms(slept[task]), switches[task])
    derived += "%-16s %7d %s %s\n" % ("(all)", len(names), ms(sum(ran.values())), ms(sum(slept.values())))
    assert derived.encode() == expected("schedtime") == replay("schedtime")[1]


# ------------------------------------------------------------------ live smoke


def _live_skip_reason():
    if os.geteuid() != 0:
        return "live tracing needs root (perf_event_open on tracepoints and tracefs)"
    if not Path("/sys/kernel/tracing/events/raw_syscalls/sys_enter/id").exists():
        return "no tracefs with raw_syscalls:sys_enter at /sys/kernel/tracing"
    return None


@pytest.mark.live
@pytest.mark.skipif(_live_skip_reason() is not None, reason=str(_live_skip_reason()))
@pytest.mark.parametrize("engine", [[], ["--bpf"]], ids=["jit", "bpf"])
def test_syscount_by_process_live_over_bin_true(engine):
    """The other engines' live runs of every example: tests/bpf/test_compare_live.py."""
    proc = subprocess.run(
        [sys.executable, "-m", "ktapjit", "run", "-q", *engine, str(EXAMPLES_DIR / "syscount_by_process.kp"),
         "--", "/bin/true"],
        capture_output=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode("latin-1")
    assert proc.stderr == b""
    text = proc.stdout.decode("latin-1")
    m = re.match(r"(\d+) system calls by (\d+) process names\n\n", text)
    assert m, text
    total, names = int(m.group(1)), int(m.group(2))
    section = text[m.end():].split("\nby process")[0]
    rows = re.findall(r"^\s*(\S+) \|[@ ]{38}(\d+)\s*$", section, re.M)
    assert len(rows) == names
    assert sum(int(count) for _, count in rows) == total
    # /bin/true's own calls, after its exec, are counted under its name.
    assert dict(rows).get("true", "0") != "0", text
