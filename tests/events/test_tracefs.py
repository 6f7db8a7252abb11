"""Locating tracefs, listing events, resolving tracepoint globs.

Most cases run against a fake tracefs built from the captured format files,
so they need no root; a few live cases check the real /sys/kernel/tracing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from ktapjit.events import tracefs
from ktapjit.events.errors import EventsError, TracefsError, TracefsPermissionError, UnknownEventError
from ktapjit.events.tracefs import list_events, read_format, resolve_tracepoints, tracefs_root

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"
TRACEFS = Path("/sys/kernel/tracing")


@pytest.fixture
def fake_root(tmp_path) -> Path:
    """A tracefs look-alike: events/SYS/EVT/{format,id} plus the non-event
    files, and ftrace's own entries (a format and no id, as the kernel has)."""
    events = tmp_path / "events"
    for fmt in FORMATS.glob("*/*/format"):
        dest = events / fmt.parent.parent.name / fmt.parent.name
        dest.mkdir(parents=True)
        shutil.copy(fmt, dest / "format")
        ident = re.search(r"^ID: (\d+)", fmt.read_text(), re.M).group(1)
        (dest / "id").write_text(ident + "\n")
        (dest / "enable").write_text("0\n")
    for name in ("bprint", "kernel_stack"):
        (events / "ftrace" / name).mkdir(parents=True)
        (events / "ftrace" / name / "format").write_text(f"name: {name}\nID: 6\nformat:\n")
    for system in events.iterdir():
        (system / "enable").write_text("0\n")
        (system / "filter").write_text("none\n")
    (events / "header_page").mkdir()  # a directory that is not a system
    (events / "enable").write_text("0\n")
    (events / "header_event").write_text("")
    return tmp_path


def test_list_events(fake_root):
    events = list_events(fake_root)
    assert not [e for e in events if e[0] == "ftrace"]  # no id: perf cannot open them
    assert events == sorted(events)
    assert ("sched", "sched_switch") in events
    assert all(system not in ("header_page", "header_event", "enable") for system, _ in events)
    assert len(events) == len(list(FORMATS.glob("*/*/format")))


@pytest.mark.parametrize("pattern, expected", [
    ("sched:sched_switch", [("sched", "sched_switch")]),
    (" sched:sched_switch ", [("sched", "sched_switch")]),
    ("syscalls:sys_enter_open*", [("syscalls", "sys_enter_openat")]),
    ("syscalls:sys_e?it_read", [("syscalls", "sys_exit_read")]),
    ("syscalls:sys_[e]xit_[rw]*", [("syscalls", "sys_exit_read"), ("syscalls", "sys_exit_write")]),
    ("raw_*:*", [("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")]),
    ("*:sched_wak*", [("sched", "sched_wakeup"), ("sched", "sched_wakeup_new"), ("sched", "sched_waking")]),
    ("irq:softirq_[!r]*", [("irq", "softirq_entry"), ("irq", "softirq_exit")]),
])
def test_resolve_globs(fake_root, pattern, expected):
    assert resolve_tracepoints(pattern, fake_root) == expected


def test_resolve_whole_system_and_everything(fake_root):
    sched = resolve_tracepoints("sched:*", fake_root)
    assert sched and all(s == "sched" for s, _ in sched)
    assert resolve_tracepoints("*:*", fake_root) == list_events(fake_root)


def test_names_are_case_sensitive(fake_root):
    with pytest.raises(UnknownEventError):
        resolve_tracepoints("SCHED:sched_switch", fake_root)


@pytest.mark.parametrize("pattern, suggestion", [
    ("sched:sched_swich", "sched:sched_switch"),
    ("schd:sched_switch", "sched:sched_switch"),
    ("foo:sched_switch", "sched:sched_switch"),
    ("syscalls:sys_enter_opnat", "syscalls:sys_enter_openat"),
    ("sched:sched_swich*", "sched:sched_switch"),
])
def test_unknown_event_suggests_close_matches(fake_root, pattern, suggestion):
    with pytest.raises(UnknownEventError) as info:
        resolve_tracepoints(pattern, fake_root)
    message = str(info.value)
    assert message.startswith(f"unknown tracepoint '{pattern.strip()}'; did you mean ")
    assert suggestion in message and "\n" not in message


def test_unknown_event_without_close_matches(fake_root):
    with pytest.raises(UnknownEventError) as info:
        resolve_tracepoints("zzz:qqqqqq", fake_root)
    assert str(info.value) == "unknown tracepoint 'zzz:qqqqqq'"


@pytest.mark.parametrize("pattern", ["sched_switch", "sched:", ":x", "a:b:c", ""])
def test_malformed_pattern(fake_root, pattern):
    with pytest.raises(UnknownEventError, match="expected SYSTEM:EVENT"):
        resolve_tracepoints(pattern, fake_root)


def test_read_format(fake_root):
    ev = read_format("sched", "sched_wakeup", fake_root)
    assert (ev.system, ev.name) == ("sched", "sched_wakeup")
    with pytest.raises(UnknownEventError, match="unknown tracepoint 'sched:sched_wakeupp'; did you mean sched:sched_wakeup"):
        read_format("sched", "sched_wakeupp", fake_root)


def test_read_format_reports_a_broken_file_in_one_line(fake_root):
    (fake_root / "events" / "sched" / "sched_switch" / "format").write_text("garbage\n")
    with pytest.raises(EventsError) as info:
        read_format("sched", "sched_switch", fake_root)
    assert str(info.value) == "sched:sched_switch: not a tracefs format file: no 'name:' line"


def test_permission_denied_is_a_clear_error(fake_root, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tracefs.os, "listdir", denied)
    with pytest.raises(TracefsPermissionError) as info:
        list_events(fake_root)
    assert str(info.value) == f"permission denied reading {fake_root / 'events'} (run as root)"


def test_missing_tracefs_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tracefs, "_CANDIDATES", (tmp_path / "tracing", tmp_path / "debug" / "tracing"))
    monkeypatch.setattr(tracefs, "_root_cache", None)
    for euid in (1000, 0):  # as a user; as root, the mount point is missing
        monkeypatch.setattr(tracefs.os, "geteuid", lambda: euid)
        with pytest.raises(TracefsError) as info:
            tracefs_root()
        assert "tracefs is not mounted" in str(info.value) and "\n" not in str(info.value)


def test_unreadable_tracefs_is_a_permission_error(tmp_path, monkeypatch):
    mount = tmp_path / "tracing"
    mount.mkdir()
    monkeypatch.setattr(tracefs, "_CANDIDATES", (mount,))
    monkeypatch.setattr(tracefs, "_root_cache", None)
    real_is_dir = Path.is_dir

    def is_dir(self):
        if str(self).startswith(str(mount)):
            raise PermissionError(13, "Permission denied")
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    with pytest.raises(TracefsPermissionError, match="run as root"):
        tracefs_root()


# ----------------------------------------------------------------------------
# Live


def _live():
    try:
        mounted = (TRACEFS / "events").is_dir()
    except PermissionError:
        pytest.skip("tracefs at /sys/kernel/tracing is not readable (needs root)")
    if not mounted:
        pytest.skip("tracefs is not mounted at /sys/kernel/tracing")


@pytest.mark.live
def test_live_root_and_events():
    _live()
    assert tracefs_root() == TRACEFS
    events = list_events()
    assert ("sched", "sched_switch") in events
    ev = read_format("sched", "sched_switch")
    assert ev.id == int((TRACEFS / "events/sched/sched_switch/id").read_text())
    if not (TRACEFS / "events/syscalls").is_dir():
        pytest.skip("this kernel has no syscalls:* tracepoints (CONFIG_FTRACE_SYSCALLS)")
    assert ("raw_syscalls", "sys_enter") in events
    enter = resolve_tracepoints("syscalls:sys_enter_*")
    assert ("syscalls", "sys_enter_getppid") in enter
    assert all(e.startswith("sys_enter_") for _, e in enter)


# tests/data/formats/README.md: captured on Linux 6.18. Another build of it
# may differ in print fmts (enum tables, __UNIQUE_ID counters), in event IDs
# and in which events it has (modules, config), never in field layouts.
CAPTURED_FROM = (6, 18)


def field_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("field:")]


@pytest.mark.live
def test_live_formats_match_the_captured_ones():
    """The captured files have this kernel's layouts: the synthetic streams
    built from them lay out fields as live tracing does."""
    _live()
    release = os.uname().release
    if tuple(map(int, re.match(r"(\d+)\.(\d+)", release).groups())) != CAPTURED_FROM:
        pytest.skip(f"captured formats come from Linux {'.'.join(map(str, CAPTURED_FROM))}; "
                    f"this kernel is {release}")
    compared = 0
    for fmt in FORMATS.glob("*/*/format"):
        live = TRACEFS / "events" / fmt.parent.parent.name / fmt.parent.name / "format"
        if live.exists():  # an event of a module or option this build lacks is not compared
            assert field_lines(live.read_text()) == field_lines(fmt.read_text()), fmt
            compared += 1
    assert compared, "none of the captured events exists on this kernel"
