"""EVENTDEF text to event specifications."""

import pytest

from ktapjit.frontend.eventdef import (
    EventDefError, FtraceSpec, KprobeSpec, SdtSpec, TracepointSpec, UprobeSpec, parse_eventdef,
)

CASES = [
    ("sched:sched_switch", [TracepointSpec("sched", "sched_switch", "sched:sched_switch", 0)]),
    ("syscalls:sys_enter_*", [TracepointSpec("syscalls", "sys_enter_*", "syscalls:sys_enter_*", 0)]),
    ("*:*", [TracepointSpec("*", "*", "*:*", 0)]),
    ("sched:a, sched:b", [TracepointSpec("sched", "a", "sched:a", 0), TracepointSpec("sched", "b", "sched:b", 9)]),
    ("probe:/bin/bash:readline%return", [UprobeSpec("/bin/bash", "readline", True, (), "probe:/bin/bash:readline%return", 0)]),
    ("probe:/lib/libc.so.6:0x1234 size=%di", [UprobeSpec("/lib/libc.so.6", "0x1234", False, ("size=%di",),
                                                          "probe:/lib/libc.so.6:0x1234 size=%di", 0)]),
    ("probe:./prog:add", [UprobeSpec("./prog", "add", False, (), "probe:./prog:add", 0)]),
    # A library or program by name: a uprobe (binding finds the file), not a kprobe.
    ("probe:libc:malloc", [UprobeSpec("libc", "malloc", False, (), "probe:libc:malloc", 0)]),
    ("probe:libc.so.6:free%return $retval", [UprobeSpec("libc.so.6", "free", True, ("$retval",),
                                                        "probe:libc.so.6:free%return $retval", 0)]),
    ("probe:bash:readline", [UprobeSpec("bash", "readline", False, (), "probe:bash:readline", 0)]),
    ("sdt:libstdc++:libstdcxx:throw", [SdtSpec("libstdc++", "libstdcxx", "throw",
                                               "sdt:libstdc++:libstdcxx:throw", 0)]),
    ("probe:do_sys_open dfd=%ax", [KprobeSpec("do_sys_open", False, ("dfd=%ax",), "probe:do_sys_open dfd=%ax", 0)]),
    ("sdt:/usr/bin/py:python:function__entry", [SdtSpec("/usr/bin/py", "python", "function__entry",
                                                          "sdt:/usr/bin/py:python:function__entry", 0)]),
    # ktap's form without a provider: the marker in any provider.
    ("sdt:/usr/bin/py:function__entry", [SdtSpec("/usr/bin/py", "*", "function__entry",
                                                 "sdt:/usr/bin/py:function__entry", 0)]),
    ("ftrace:function", [FtraceSpec("ftrace:function", 0)]),
]

ERRORS = [
    ("sched", 0, "expected SYSTEM:EVENT"),
    ("sched:a,,sched:b", 8, "empty event definition"),
    ("sched:a b", 0, "not a tracepoint"),
    ("sched:a$b", 7, "unexpected character '$'"),
    ("probe:/bin/bash", 0, "needs /path/to/binary:SYMBOL or LIBRARY:SYMBOL"),
    ("probe:libc:", 0, "needs /path/to/binary:SYMBOL or LIBRARY:SYMBOL"),
    ("probe::malloc", 0, "needs /path/to/binary:SYMBOL or LIBRARY:SYMBOL"),
    ("sdt:/x", 0, "sdt:/path:[PROVIDER:]NAME"),
    ("sdt:/x:", 0, "sdt:/path:[PROVIDER:]NAME"),
    ("sdt:/x::y", 0, "sdt:/path:[PROVIDER:]NAME"),
    ("ftrace:other", 0, "only ftrace:function"),
]


@pytest.mark.parametrize("text,specs", CASES, ids=[c[0] for c in CASES])
def test_parse(text, specs):
    assert parse_eventdef(text) == specs


@pytest.mark.parametrize("text,offset,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_carry_offsets(text, offset, words):
    with pytest.raises(EventDefError) as info:
        parse_eventdef(text)
    assert info.value.offset == offset and words in info.value.message
