"""The tracepoint filter language: parsing, checking, evaluation.

Unit cases are table-driven. The live tests hold ktapjit to the kernel:
- the kernel accepts exactly the filters that parse_filter + check_filter
  accept (written to events/SYS/EVT/filter of a private tracefs instance);
- the kernel and eval_filter select the same events: one instance records
  the events unfiltered, one instance per filter records them filtered, all
  during the same workload; the raw records are read back from
  trace_pipe_raw and compared.
Every instance is removed in a finally, pass or fail.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ktapjit.events.schema import parse_format
from ktapjit.kernel_filter.language import (
    FilterAnd,
    FilterNot,
    FilterOr,
    FilterPredicate,
    FilterSyntaxError,
    check_filter,
    compile_filter,
    eval_filter,
    filter_to_kernel_text,
    glob_match,
    parse_filter,
    unreplayable,
)

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"


def load(system: str, event: str):
    return parse_format((FORMATS / system / event / "format").read_text(), system=system)


def P(field, op, value, kind="int", modifier=None):
    return FilterPredicate(field=field, op=op, value=value, kind=kind, modifier=modifier)


# ----------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("text, tree", [
    ("pid == 1", P("pid", "==", 1)),
    ("  pid==1  ", P("pid", "==", 1)),
    ("pid != -5", P("pid", "!=", -5)),
    ("pid < 0x10", P("pid", "<", 16)),
    ("pid <= 010", P("pid", "<=", 8)),
    ("pid > 0", P("pid", ">", 0)),
    ("pid >= 18446744073709551615", P("pid", ">=", 2**64 - 1)),
    ("flags & 4", P("flags", "&", 4)),
    ('comm == "bash"', P("comm", "==", "bash", "str")),
    ("comm ~ 'ba*'", P("comm", "~", "ba*", "str")),
    ('comm != "with space"', P("comm", "!=", "with space", "str")),
    ('name == "it\'s"', P("name", "==", "it's", "str")),
    ("a == 1 && b == 2", FilterAnd(P("a", "==", 1), P("b", "==", 2))),
    ("a == 1 || b == 2", FilterOr(P("a", "==", 1), P("b", "==", 2))),
    # && binds tighter than ||.
    ("a == 1 || b == 2 && c == 3",
     FilterOr(P("a", "==", 1), FilterAnd(P("b", "==", 2), P("c", "==", 3)))),
    ("(a == 1 || b == 2) && c == 3",
     FilterAnd(FilterOr(P("a", "==", 1), P("b", "==", 2)), P("c", "==", 3))),
    ("a == 1 && b == 2 && c == 3",
     FilterAnd(FilterAnd(P("a", "==", 1), P("b", "==", 2)), P("c", "==", 3))),
    ("!a == 1", FilterNot(P("a", "==", 1))),
    ("!(a == 1 || b == 2)", FilterNot(FilterOr(P("a", "==", 1), P("b", "==", 2)))),
    ("!!a == 1", FilterNot(FilterNot(P("a", "==", 1)))),
    ("((a == 1))", P("a", "==", 1)),
    ("cpu & CPUS{0-2,5}", P("cpu", "&", frozenset({0, 1, 2, 5}), "cpus")),
    ("filename.ustring ~ \"*.so\"", P("filename", "~", "*.so", "str", "ustring")),
    ("call_site.function == kfree", P("call_site", "==", "kfree", "func", "function")),
    ("call_site.function == 0xffff", P("call_site", "==", 0xFFFF, "int", "function")),
])
def test_parse(text, tree):
    assert parse_filter(text) == tree


@pytest.mark.parametrize("text, offset, words", [
    ("", 0, "empty"),
    ("   ", 3, "empty"),
    ("pid", 3, "invalid operator"),
    ("pid = 1", 4, "invalid operator"),
    ("pid =~ 1", 4, "invalid operator"),
    ("pid ==", 6, "missing value"),
    ("comm == bash", 8, "did you forget quotes"),
    ('comm == "bash', 8, "missing matching quote"),
    ("pid == 12abc", 7, "illegal integer"),
    ("pid == 0x", 7, "illegal integer"),
    ("pid == 09", 7, "illegal integer"),
    ("pid == 18446744073709551616", 7, "illegal integer"),
    ("pid == 1 pid == 2", 9, "expected '&&'"),
    ("pid == 1 & b == 2", 9, "expected '&&' or '||'"),
    ("pid == 1 | b == 2", 9, "expected '&&' or '||'"),
    ("(pid == 1", 0, "unbalanced '('"),
    ("pid == 1)", 8, "unbalanced ')'"),
    ("()", 1, "unbalanced ')'"),
    ("pid == 1 &&", 11, "expected a predicate"),
    ("&& pid == 1", 0, "expected a field name"),
    ("!", 1, "expected a predicate"),
    ("pid == 1.5", 8, "expected '&&'"),
    ("cpu & CPUS{", 6, "missing '}'"),
    ("cpu & CPUS{x}", 11, "invalid CPU list"),
    ("comm == '" + "x" * 256 + "'", 8, "too long"),
])
def test_parse_errors(text, offset, words):
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    assert info.value.offset == offset
    assert words in info.value.message
    assert "\n" not in info.value.message


def test_limits_are_errors_not_crashes():
    with pytest.raises(FilterSyntaxError, match="nests too deeply"):
        parse_filter("(" * 500 + "a == 1" + ")" * 500)
    with pytest.raises(FilterSyntaxError, match="nests too deeply"):
        parse_filter("!" * 500 + "a == 1")
    with pytest.raises(FilterSyntaxError, match="filter too long") as info:
        parse_filter("a == 1 && " * 500 + "a == 1")
    assert info.value.offset == 0
    # The longest chain the kernel takes evaluates without deep recursion.
    text = "&&".join(["pid==1"] * 511)
    tree = parse_filter(text)
    # (Compared as text: == on a 511-deep tree would itself recurse deeply.)
    assert filter_to_kernel_text(parse_filter(filter_to_kernel_text(tree))) == text
    ev = load("sched", "sched_switch")
    long_chain = parse_filter("||".join(["prev_pid==2"] * 300 + ["prev_pid==1"]))
    assert check_filter(long_chain, ev) == []
    assert eval_filter(long_chain, dict(prev_pid=1), ev)


@pytest.mark.parametrize("text", [
    "pid == 1",
    "a == 1 || b == 2 && c == 3",
    "(a == 1 || b == 2) && !(c == 3 || d ~ \"x*\")",
    "!a == 1 && !!b != -2",
    "comm == 'say \"hi\"'",
    "cpu & CPUS{0-3,7}",
    "x.ustring ~ \"/tmp/*\"",
])
def test_kernel_text_round_trips(text):
    tree = parse_filter(text)
    assert parse_filter(filter_to_kernel_text(tree)) == tree


# ----------------------------------------------------------------------------
# Checking against an event's fields


@pytest.mark.parametrize("system, event, text, words", [
    ("sched", "sched_switch", "prev_pid > 100 && next_comm ~ \"kworker*\"", None),
    ("sched", "sched_switch", "common_pid == 1 && common_flags & 1", None),
    ("sched", "sched_switch", "comm == \"bash\" && cpu == 1 && CPU != 0 && COMM ~ \"b*\"", None),
    ("sched", "sched_switch", "prev_pidd == 1", "has no field 'prev_pidd'; did you mean 'prev_pid'"),
    ("sched", "sched_switch", "prev_comm == 5", "is a string"),
    ("sched", "sched_switch", "prev_pid == \"5\"", "is numeric"),
    ("sched", "sched_switch", "prev_comm < \"a\"", "does not apply to strings"),
    ("sched", "sched_switch", "prev_comm & \"a\"", "does not apply to strings"),
    ("sched", "sched_switch", "prev_pid ~ 5", "applies only to string fields"),
    ("sched", "sched_switch", "common_type == -1", "negative value"),
    ("sched", "sched_switch", "prev_pid == 0xffffffffffffffff", "out of range"),
    ("sched", "sched_switch", "prev_comm == CPUS{1}", "does not apply to string"),
    ("sched", "sched_switch", "prev_pid < CPUS{1}", "does not apply to CPUS"),
    ("syscalls", "sys_enter_openat", "filename == \"/etc/passwd\"", None),
    ("syscalls", "sys_enter_openat", "filename == 0", "is a string"),
    ("syscalls", "sys_enter_openat", "dfd == -100", "negative value"),
    ("raw_syscalls", "sys_enter", "args == 1", None),  # accepted, never matches
    ("sched", "sched_process_exec", "filename ~ \"*/true\"", None),
    ("kmem", "kmalloc", "call_site.function == kfree", None),
    ("kmem", "kmalloc", "node.function == kfree", "needs an address field"),
])
def test_check_filter(system, event, text, words):
    errors = check_filter(parse_filter(text), load(system, event))
    if words is None:
        assert errors == []
    else:
        assert len(errors) == 1 and words in errors[0][0], errors


@pytest.mark.parametrize("system, event, text, culprit, words", [
    # A string test on a char * compares memory the kernel reads at event
    # time; some kernel builds can read a user pointer there, some cannot.
    ("syscalls", "sys_enter_openat", 'filename == "/etc/passwd"', "filename", "is a pointer (const char *)"),
    ("syscalls", "sys_enter_openat", 'flags == 0 || !(filename ~ "/etc/*")', "filename", "is a pointer"),
    ("syscalls", "sys_enter_openat", 'filename.ustring ~ "/etc/*"', ".ustring", "reads user memory"),
    ("kmem", "kmalloc", "call_site.function == kfree", ".function", "the kernel's symbol table"),
    # What the record holds decides these: accepted.
    ("syscalls", "sys_enter_openat", "dfd == 3 || flags & 1", None, None),
    ("sched", "sched_process_exec", 'filename ~ "*/true"', None, None),
    ("sched", "sched_switch", 'prev_comm == "sh" && comm ~ "b*"', None, None),
    ("sched", "sched_switch", "nope == 1", None, None),  # check_filter's to report
])
def test_filters_a_replay_cannot_reproduce_are_refused(system, event, text, culprit, words):
    errors = unreplayable(parse_filter(text), load(system, event))
    if culprit is None:
        assert errors == []
    else:
        assert [off for _, off in errors] == [text.index(culprit)]
        assert words in errors[0][0] and "recording does not hold" in errors[0][0]


def test_check_filter_offsets_point_at_the_culprit():
    text = "prev_pid == 1 && nope == 2 && prev_comm == 3"
    errors = check_filter(parse_filter(text), load("sched", "sched_switch"))
    assert [off for _, off in errors] == [text.index("nope"), text.index("3")]


# ----------------------------------------------------------------------------
# Evaluation


SWITCH = dict(prev_comm=b"python3", prev_pid=4321, prev_prio=120, prev_state=1,
              next_comm=b"swapper/1", next_pid=0, next_prio=120, common_pid=4321)


@pytest.mark.parametrize("text, expected", [
    ("prev_pid == 4321", True),
    ("prev_pid != 4321", False),
    ("prev_pid > 4000 && prev_pid < 5000", True),
    ("prev_state & 3", True),
    ("prev_state & 2", False),
    ("next_pid == 0 || prev_pid == 1", True),
    ("!(next_pid == 0)", False),
    ("prev_prio >= 121 || !next_prio == 1", True),
    ('prev_comm == "python3"', True),
    ('prev_comm == "python"', False),
    ('prev_comm != "python"', True),
    ('prev_comm ~ "py*"', True),          # prefix
    ('prev_comm ~ "*yth*"', True),        # substring
    ('prev_comm ~ "p?thon[0-9]"', True),  # full glob
    ('prev_comm ~ "p*3"', True),          # '*' inside: full glob
    ('prev_comm ~ "!py*"', False),        # leading '!' negates
    ('prev_comm ~ "python3"', True),
    ('prev_comm ~ "[!a-o]ython3"', True),
    ('prev_comm ~ "*"', True),
    # The kernel's suffix match on a fixed-size char array compares the end
    # of the 16-byte buffer, not of the string: it never matches a short comm.
    ('prev_comm ~ "*thon3"', False),
    ('next_comm ~ "*/1"', False),
    ("common_pid == 4321", True),
])
def test_eval(text, expected):
    ev = load("sched", "sched_switch")
    assert eval_filter(parse_filter(text), SWITCH, ev) is expected


def test_eval_sign_and_size():
    ev = load("raw_syscalls", "sys_exit")
    fields = dict(id=0, ret=-2)
    assert eval_filter(parse_filter("ret < 0"), fields, ev)  # long: signed
    assert eval_filter(parse_filter("ret == -2"), fields, ev)
    assert eval_filter(parse_filter("ret == 0xfffffffffffffffe"), fields, ev)
    ev = load("sched", "sched_switch")
    # common_type is an unsigned short: the value is cut to 16 bits.
    assert eval_filter(parse_filter("common_type == 0x10000"), dict(common_type=0), ev)
    assert eval_filter(parse_filter("common_type < 65536"), dict(common_type=5), ev) is False


def test_eval_array_and_pointer_quirks():
    ev = load("raw_syscalls", "sys_enter")
    # A 48-byte array is "other": the kernel accepts it and never matches.
    assert not eval_filter(parse_filter("args == 1"), dict(args=[1] * 6), ev)
    assert not eval_filter(parse_filter("args != 1"), dict(args=[1] * 6), ev)
    ev = load("syscalls", "sys_enter_openat")
    # char * arguments are user pointers the kernel cannot read: no match,
    # whatever the operator.
    assert not eval_filter(parse_filter('filename == "x"'), dict(filename=0x1000), ev)
    assert not eval_filter(parse_filter('filename != "x"'), dict(filename=0x1000), ev)
    assert eval_filter(parse_filter('!filename == "x"'), dict(filename=0x1000), ev)


def test_eval_dynamic_string():
    ev = load("sched", "sched_process_exec")
    fields = dict(filename=b"/usr/bin/true", pid=5, old_pid=5)
    for text, expected in [
        ('filename == "/usr/bin/true"', True),
        ('filename ~ "*/true"', True),       # dynamic strings end where they end
        ('filename ~ "/usr/*"', True),
        ('filename ~ "*bin*"', True),
        ('filename ~ "*/false"', False),
    ]:
        assert eval_filter(parse_filter(text), fields, ev) is expected, text


def test_eval_generic_cpu_and_comm():
    ev = load("sched", "sched_switch")
    raw = ev.encode(SWITCH)
    match = compile_filter(parse_filter('cpu == 1 && comm ~ "ba*"'), ev)
    assert match(raw, 1, b"bash")
    assert not match(raw, 0, b"bash")
    assert not match(raw, 1, b"zsh")
    assert not match(raw, None, None)  # unknown cpu: no match
    assert compile_filter(parse_filter("cpu & CPUS{0,2}"), ev)(raw, 2, None)
    assert not compile_filter(parse_filter("cpu & CPUS{0,2}"), ev)(raw, 1, None)
    # An event field named comm wins over the generic one.
    wake = load("sched", "sched_wakeup")
    raw = wake.encode(dict(comm=b"kworker/0:1", pid=1, prio=120, target_cpu=0))
    assert compile_filter(parse_filter('comm ~ "kworker*"'), wake)(raw, 0, b"bash")


@pytest.mark.parametrize("pat, s, expected", [
    (b"*", b"", True), (b"a*", b"abc", True), (b"*c", b"abc", True), (b"a?c", b"abc", True),
    (b"a?c", b"ac", False), (b"[ab]c", b"bc", True), (b"[!ab]c", b"bc", False),
    (b"[a-c]x", b"bx", True), (b"[]]", b"]", True), (b"a\\*", b"a*", True), (b"a\\*", b"ab", False),
    (b"*a*b*c", b"xaybzc", True), (b"*a*b*c", b"xaybz", False), (b"[", b"[", True),
    # a class needs a character, even an inverted one (lib/glob.c: no match at the end)
    (b"a[!b]", b"a", False), (b"*[!x]", b"", False), (b"[!a]*", b"", False),
])
def test_glob_match(pat, s, expected):
    assert glob_match(pat, s) is expected


# ----------------------------------------------------------------------------
# Live: the kernel agrees

TRACEFS = Path("/sys/kernel/tracing")


def _live_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (tracefs instances)"
    if not (TRACEFS / "instances").is_dir():
        return "tracefs is not mounted at /sys/kernel/tracing"
    return None


class Instance:
    """A private tracefs instance, removed (events off, filters cleared) on close."""

    def __init__(self, tag: str):
        self.path = TRACEFS / "instances" / f"ktapjit-test-{os.getpid()}-{tag}-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        self.enabled: list[str] = []

    def event_dir(self, event: str) -> Path:
        return self.path / "events" / event.replace(":", "/")

    def write(self, rel: str | Path, text: str) -> None:
        with open(self.path / rel, "w") as fh:
            fh.write(text)

    def set_filter(self, event: str, text: str) -> None:
        with open(self.event_dir(event) / "filter", "w") as fh:
            fh.write(text)

    def enable(self, event: str, on: bool = True) -> None:
        with open(self.event_dir(event) / "enable", "w") as fh:
            fh.write("1" if on else "0")
        if on:
            self.enabled.append(event)

    def close(self) -> None:
        for event in self.enabled:
            try:
                self.enable(event, False)
            except OSError:
                pass
        try:
            self.write("events/enable", "0")
        except OSError:
            pass
        try:
            self.path.rmdir()
        except OSError:
            pass

    def read_raw(self) -> list[tuple[int, bytes]]:
        """Every record as (cpu, raw data), consumed from trace_pipe_raw."""
        out = []
        for cpu_dir in sorted((self.path / "per_cpu").iterdir()):
            cpu = int(cpu_dir.name[3:])
            fd = os.open(cpu_dir / "trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)
            try:
                while True:
                    try:
                        page = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        break
                    if not page:
                        break
                    out.extend((cpu, rec) for rec in _page_records(page, self.subbuf_size()))
            finally:
                os.close(fd)
        return out

    def subbuf_size(self) -> int:
        """The bytes of one ring-buffer page: the page size, or the instance's
        buffer_subbuf_size_kb where the kernel has it (6.8 on)."""
        setting = self.path / "buffer_subbuf_size_kb"
        return int(setting.read_text()) * 1024 if setting.exists() else os.sysconf("SC_PAGE_SIZE")

    def lost(self) -> int:
        total = 0
        for stats in (self.path / "per_cpu").glob("cpu*/stats"):
            for line in stats.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("overrun", "commit overrun", "dropped events"):
                    total += int(value)
        return total


def _page_records(page: bytes, page_size: int):
    """Data records of ring-buffer pages (events/header_page and header_event)."""
    for base in range(0, len(page), page_size):
        commit = struct.unpack_from("<Q", page, base + 8)[0] & 0xFFFFF
        pos, end = base + 16, base + 16 + commit
        while pos + 4 <= end:
            word = struct.unpack_from("<I", page, pos)[0]
            type_len, delta = word & 31, word >> 5
            if type_len == 29:  # padding (or a discarded event)
                if delta == 0:
                    break
                pos += 4 + struct.unpack_from("<I", page, pos + 4)[0]
            elif type_len in (30, 31):  # time extend / absolute stamp
                pos += 8
            elif type_len == 0:
                length = struct.unpack_from("<I", page, pos + 4)[0]
                yield page[pos + 8:pos + 4 + length]
                pos += 4 + length
            else:
                yield page[pos + 4:pos + 4 + 4 * type_len]
                pos += 4 + 4 * type_len


@pytest.fixture
def instances():
    reason = _live_skip_reason()
    if reason:
        pytest.skip(reason)
    made: list[Instance] = []
    set_event_before = (TRACEFS / "set_event").read_text()

    def make(tag: str) -> Instance:
        inst = Instance(tag)
        made.append(inst)
        return inst

    try:
        yield make
    finally:
        for inst in reversed(made):
            inst.close()
        leftover = [p.name for p in (TRACEFS / "instances").iterdir() if p.name.startswith(f"ktapjit-test-{os.getpid()}-")]
        assert not leftover, f"instances left behind: {leftover}"
        assert (TRACEFS / "set_event").read_text() == set_event_before


def _format(event: str):
    system, name = event.split(":")
    return parse_format((TRACEFS / "events" / system / name / "format").read_text(), system=system)


def _last_possible_cpu() -> int:
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()  # "0-3", "0", "0-1,4"
    except OSError:
        return 0  # no sysfs: the live tests skip anyway
    return int(text.replace("-", ",").split(",")[-1])


ACCEPTANCE = [
    ("sched:sched_switch", "prev_pid > 100 && next_comm ~ \"kworker*\""),
    ("sched:sched_switch", "common_pid == 1 || (prev_state & 1 && !prev_prio == 120)"),
    ("sched:sched_switch", "comm == \"bash\" && cpu == 1 && CPU != 0"),
    ("sched:sched_switch", "prev_pidd == 1"),
    ("sched:sched_switch", "prev_comm == 5"),
    ("sched:sched_switch", "prev_pid == \"5\""),
    ("sched:sched_switch", "prev_comm < \"a\""),
    ("sched:sched_switch", "prev_pid ~ 5"),
    ("sched:sched_switch", "common_type == -1"),
    ("sched:sched_switch", "prev_comm == bash"),
    ("sched:sched_switch", "prev_pid = 1"),
    ("sched:sched_switch", "(prev_pid == 1"),
    ("sched:sched_switch", "prev_pid == 1 )"),
    ("sched:sched_switch", "prev_pid == 1 & next_pid == 2"),
    ("sched:sched_switch", "prev_pid == 12abc"),
    ("sched:sched_switch", "prev_pid == 0x7fffffff"),
    ("sched:sched_switch", "prev_pid == 1.5"),
    # The kernel takes CPU numbers below nr_cpu_ids only (the possible CPUs).
    ("sched:sched_switch", f"cpu & CPUS{{0-{_last_possible_cpu()}}}"),
    ("sched:sched_switch", "prev_comm == CPUS{1}"),
    ("syscalls:sys_enter_openat", "filename == \"/etc/passwd\""),
    ("syscalls:sys_enter_openat", "filename == 0"),
    ("syscalls:sys_enter_openat", "dfd == -100"),
    ("syscalls:sys_enter_openat", "dfd == 0xffffff9c"),
    ("raw_syscalls:sys_enter", "args == 1"),
    ("raw_syscalls:sys_exit", "ret < -1 && id != 0"),
]


@pytest.mark.live
def test_kernel_accepts_what_we_accept(instances):
    inst = instances("accept")
    disagreements = []
    for event, text in ACCEPTANCE:
        try:
            tree = parse_filter(text)
            ours = not check_filter(tree, _format(event))
        except FilterSyntaxError:
            ours = False
        try:
            inst.set_filter(event, text)
            kernel = True
        except OSError as exc:
            # Mostly EINVAL; unbalanced parentheses and quotes come back as
            # ENOENT, EPERM or ESRCH (the kernel returns its internal codes).
            assert exc.errno in (errno.EINVAL, errno.ENOENT, errno.EPERM, errno.ESRCH), exc
            kernel = False
        finally:
            try:
                inst.set_filter(event, "0")
            except OSError:
                pass
        if ours != kernel:
            disagreements.append((event, text, ours, kernel))
    assert not disagreements


def _wait_blocked_in_syscall(pid: int, timeout: float = 10.0) -> None:
    """Until the process sleeps inside a system call (/proc/PID/syscall names
    its number). Without this, the workload's read() could start after one
    instance is enabled and before another, and the two would disagree by
    that one sys_enter."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/syscall") as handle:
            first = handle.read().split(" ", 1)[0]
        if first.lstrip("-").isdigit():
            return
        time.sleep(0.001)
    raise AssertionError(f"pid {pid} did not block in a system call within {timeout}s")


WORKLOAD = r"""
import os, sys, time
os.write(1, b"r")   # started up
os.read(0, 1)       # wait until tracing is on
for _ in range(40):
    os.getppid()
for path in ("/etc/hostname", "/proc/self/stat", "/nonexistent/x", "/etc/passwd"):
    try:
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 64)
        os.close(fd)
    except OSError:
        pass
for _ in range(3):
    time.sleep(0.005)
os.execv("/bin/true", ["/bin/true"])
"""


def _selection_cases(comm: str) -> list[tuple[str, str, bool]]:
    """(event, filter, whether the workload must produce matches)."""
    c = comm
    return [
        ("raw_syscalls:sys_enter", "id == 110", True),
        ("raw_syscalls:sys_enter", "id >= 0 && id < 4 || id == 257", True),
        ("raw_syscalls:sys_enter", "id & 1 && !(id == 1)", True),
        ("raw_syscalls:sys_enter", "args == 1 || args != 1", False),
        ("raw_syscalls:sys_enter", "cpu == 0 || CPU == 1 && id == 110", False),
        ("raw_syscalls:sys_exit", "ret < 0", True),
        ("raw_syscalls:sys_exit", "ret == -2 || ret > 10", True),
        ("syscalls:sys_enter_openat", "flags & 0x80000 && dfd == 0xffffff9c", True),
        ("syscalls:sys_exit_read", "ret > 10", True),
        ("sched:sched_switch", f'prev_comm ~ "{c[:2]}*"', True),
        ("sched:sched_switch", f'prev_comm ~ "*{c[1:-1]}*"', True),
        ("sched:sched_switch", f'prev_comm ~ "{c[0]}?{c[2:]}"', True),
        ("sched:sched_switch", f'prev_comm ~ "*{c[2:]}"', False),
        ("sched:sched_switch", f'prev_comm ~ "!{c}" && prev_prio >= 100', True),
        ("sched:sched_switch", f'prev_comm == "{c}" && prev_state & 1', True),
        ("sched:sched_process_exec", 'filename ~ "*/true"', True),
        ("sched:sched_process_exec", 'filename == "/bin/true" && pid > 0', True),
    ]


@pytest.mark.live
def test_kernel_and_eval_filter_select_the_same_events(instances):
    if os.uname().machine != "x86_64":
        pytest.skip("the cases name x86-64 system call numbers (getppid 110, openat 257)")
    comm = os.path.basename(sys.executable)[:15]
    cases = [c for c in _selection_cases(comm) if (TRACEFS / "events" / c[0].replace(":", "/")).is_dir()]
    events = sorted({event for event, _, _ in cases})
    formats = {event: _format(event) for event in events}
    by_id = {formats[e].id: e for e in events}

    everything = instances("all")
    everything.write("buffer_size_kb", "4096")
    filtered = []
    for k, (event, text, _) in enumerate(cases):
        inst = instances(f"f{k}")
        inst.write("buffer_size_kb", "1024")
        inst.set_filter(event, text)
        filtered.append(inst)
    # The workload waits on stdin while tracing is set up, so it runs entirely
    # while every instance is on. set_event_pid keeps the rest of the system
    # out of the buffers (they cannot overflow), and only the workload's
    # records (common_pid) are compared, so the enabling order cannot matter.
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.read(1) == b"r"  # python's start-up is over
        _wait_blocked_in_syscall(proc.pid)  # in its read(0): the last syscall before tracing is on
        for inst in [everything] + filtered:
            inst.write("set_event_pid", str(proc.pid))
        for event in events:
            everything.enable(event)
        for inst, (event, _, _) in zip(filtered, cases):
            inst.enable(event)
        proc.stdin.write(b"go")
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for inst, (event, _, _) in zip(filtered, cases):
        inst.enable(event, False)
    for event in events:
        everything.enable(event, False)

    assert everything.lost() == 0
    def mine(records):
        for cpu, raw in records:
            etype, pid = struct.unpack_from("<H2xi", raw, 0)
            if pid == proc.pid and etype in by_id:
                # common_flags (need-resched and the like) is sampled per
                # instance and may differ between two copies of one event.
                yield cpu, by_id[etype], raw[:2] + b"\0" + raw[3:]

    recorded = list(mine(everything.read_raw()))
    problems = []
    for inst, (event, text, must_match) in zip(filtered, cases):
        assert inst.lost() == 0
        ev = formats[event]
        match = compile_filter(parse_filter(text), ev)
        kernel = Counter(raw for _, e, raw in mine(inst.read_raw()) if e == event)
        ours = Counter(raw for cpu, e, raw in recorded if e == event and match(raw, cpu, None))
        total = sum(1 for _, e, _ in recorded if e == event)
        if kernel != ours:
            problems.append(f"{event} /{text}/: kernel kept {sum(kernel.values())}, "
                            f"we keep {sum(ours.values())} of {total}")
        elif must_match and not (0 < sum(ours.values()) < total or sum(ours.values()) > 0):
            problems.append(f"{event} /{text}/: vacuous ({sum(ours.values())} of {total})")
    assert not problems, "\n".join(problems)
