"""argstr: print fmt rendering.

Two kinds of checks:
- unit cases on captured format files (tests/data/formats), with expected
  text worked out from the kernel's TP_printk, and C printf conversions
  checked against the C library's own snprintf;
- a live check that, for events recorded on this machine by `perf record`,
  our rendering equals `perf script -F trace` byte for byte. The raw samples
  come from a small perf.data reader private to this file, so the check does
  not depend on ktapjit's own decoder.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from ktapjit.events.printfmt import closures as printfmt
from ktapjit.events.printfmt.closures import (
    UNSUPPORTED_HELPERS,
    _format_int,
    compile_print_fmt,
    kallsyms_symbolizer,
    symbols_from_pairs,
)
from ktapjit.events.printfmt.parse import _parse_conversion
from ktapjit.events.schema import parse_format
from ktapjit.events.tracefs import read_printk_formats

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"


def load(system: str, event: str):
    text = (FORMATS / system / event / "format").read_text()
    return parse_format(text, system=system)


def render(system: str, event: str, values: dict, **kw) -> bytes:
    ev = load(system, event)
    return compile_print_fmt(ev, **kw)(ev.encode(values))


# ----------------------------------------------------------------------------
# Unit cases on real formats


SWITCH = dict(prev_comm=b"bash", prev_pid=42, prev_prio=120, next_comm=b"swapper/1",
              next_pid=0, next_prio=120)


@pytest.mark.parametrize(
    "state, text",
    [
        (0, b"R"),
        (1, b"S"),
        (2, b"D"),
        (0x81, b"S|I"),
        (0x100, b"R+"),
        (0x101, b"S+"),
        (0x80, b"I"),
    ],
)
def test_sched_switch_prev_state(state, text):
    out = render("sched", "sched_switch", dict(SWITCH, prev_state=state))
    assert out == (
        b"prev_comm=bash prev_pid=42 prev_prio=120 prev_state=" + text
        + b" ==> next_comm=swapper/1 next_pid=0 next_prio=120"
    )


def test_sched_wakeup_zero_padded_cpu():
    out = render("sched", "sched_wakeup", dict(comm=b"kworker/0:1", pid=7, prio=120, target_cpu=1))
    assert out == b"comm=kworker/0:1 pid=7 prio=120 target_cpu=001"


def test_full_length_comm_is_not_overrun():
    # 16 bytes and no NUL: C's %s would run on; the field ends the string.
    out = render("sched", "sched_wakeup", dict(comm=b"abcdefghijklmnop", pid=1, prio=0, target_cpu=0))
    assert out.startswith(b"comm=abcdefghijklmnop pid=1 ")


def test_raw_syscalls_sys_enter_array_index():
    args = [3, 0x7FFD1234, 10, 0, 0, 0xFFFFFFFFFFFFFFFF]
    out = render("raw_syscalls", "sys_enter", dict(id=0, args=args))
    assert out == b"NR 0 (3, 7ffd1234, a, 0, 0, ffffffffffffffff)"


def test_raw_syscalls_sys_exit_negative():
    out = render("raw_syscalls", "sys_exit", dict(id=1, ret=-14))
    assert out == b"NR 1 = -14"


def test_sys_enter_openat_as_the_kernel_prints_it():
    """Not the print fmt's `dfd: 0x%08lx`: the kernel's text trace (printfmt/syscalls.py)."""
    out = render("syscalls", "sys_enter_openat",
                 dict(dfd=0xFFFFFF9C, filename=0x7FFC00001000, flags=0x80000, mode=0))
    assert out == b"sys_openat(dfd: 0xffffff9c, filename: 0x7ffc00001000, flags: 0x80000, mode: 0)"


@pytest.mark.parametrize("value, text", [(0, b"0"), (9, b"9"), (10, b"0xa"), (15, b"0xf"), (16, b"0x10"),
                                         (2**64 - 1, b"0xffffffffffffffff")])
def test_syscall_arguments_below_ten_are_decimal(value, text):
    assert render("syscalls", "sys_enter_close", dict(fd=value)) == b"sys_close(fd: " + text + b")"


def test_sys_exit_read_hex():
    assert render("syscalls", "sys_exit_read", dict(ret=5)) == b"sys_read -> 0x5"
    assert render("syscalls", "sys_exit_read", dict(ret=-1)) == b"sys_read -> 0xffffffffffffffff"


def test_getppid_has_no_arguments():
    ev = load("syscalls", "sys_enter_getppid")
    assert compile_print_fmt(ev)(ev.encode({})) == b"sys_getppid()"


@pytest.mark.parametrize("vec, action", [(7, b"SCHED"), (0, b"HI"), (12, b"0xc")])
def test_softirq_symbolic(vec, action):
    assert render("irq", "softirq_entry", dict(vec=vec)) == b"vec=%d [action=%s]" % (vec, action)


def test_timer_start_flags_and_signed_difference():
    out = render("timer", "timer_start", dict(
        timer=0xFFFFC9000007FDF8, function=0xFFFFFFFF81000010, expires=100, now=105,
        bucket_expiry=101, flags=(3 << 22) | 0x00080000 | 0x00100000 | 1,
    ))
    assert out == (
        b"timer=0xffffc9000007fdf8 function=0xffffffff81000010 expires=100 "
        b"[timeout=-5] bucket_expiry=101 cpu=1 idx=3 flags=D|P"
    )


def test_timer_start_parenthesised_mask_binds_like_c():
    # flags & (M|D|P|I): only the bits that are set print. The kernel's text
    # trace prints "flags=" here; perf's libtraceevent rotates the operators
    # and ORs the constants in ("flags=D|P|I"), which we do not copy.
    out = render("timer", "timer_start", dict(flags=62 << 22, expires=1, now=0))
    assert out.endswith(b"cpu=0 idx=62 flags=")


def test_ps_uses_symbolizer():
    sym = symbols_from_pairs([(0xFFFFFFFF81000000, "process_timeout")])
    out = render("timer", "timer_start", dict(function=0xFFFFFFFF81000010, timer=0), symbolizer=sym)
    assert b"timer=(nil) function=process_timeout expires=" in out


def test_const_char_pointer_prints_the_kernel_string():
    ev = load("rcu", "rcu_utilization")
    raw = ev.encode(dict(s=0xFFFFFFFF8281A5A4))
    assert compile_print_fmt(ev)(raw) == b"ffffffff8281a5a4"
    strings = printfmt.parse_printk_formats('0xffffffff8281a5a4 : "Start context switch"\n')
    assert compile_print_fmt(ev, strings=strings)(raw) == b"Start context switch"


def test_hrtimer_unconverted_enum_prints_hex_like_perf():
    out = render("timer", "hrtimer_start", dict(hrtimer=1, function=0, expires=5, softexpires=4, mode=0))
    assert out.endswith(b"mode=0x0 was_armed=0")


def test_kmalloc_gfp_flags_and_ps_offset():
    sym = symbols_from_pairs([(0xFFFFFFFF81000000, "sched_setaffinity")])
    out = render("kmem", "kmalloc", dict(
        call_site=0xFFFFFFFF8100010C, ptr=0xFFFF888102CEFB60, bytes_req=32, bytes_alloc=32,
        gfp_flags=0xCC0, node=-1, accounted=0,
    ), symbolizer=sym)
    assert out == (
        b"call_site=sched_setaffinity+0x10c ptr=0xffff888102cefb60 bytes_req=32 "
        b"bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false"
    )


def test_get_str_dynamic_string():
    out = render("block", "block_rq_issue", dict(
        dev=(8 << 20) | 16, sector=2048, nr_sector=8, bytes=4096, ioprio=0,
        rwbs=b"WS", comm=b"kworker/u4:1", cmd=b"",
    ))
    assert out.startswith(b"8,16 WS 4096 () 2048 + 8 ")
    assert out.endswith(b"[kworker/u4:1]")


def test_cpumask():
    ev = load("ipi", "ipi_send_cpumask")
    out = compile_print_fmt(ev)(ev.encode(dict(cpumask=bytes([0b1011, 0, 0, 0, 0, 0, 0, 0]),
                                               callsite=0, callback=0)))
    assert out.startswith(b"cpumask=0-1,3 ")


def test_unsupported_helper_falls_back_to_fields():
    ev = load("jbd2", "jbd2_run_stats")
    r = compile_print_fmt(ev)
    assert r.fallback and "jiffies_to_msecs" in r.reason
    assert "jiffies_to_msecs" in UNSUPPORTED_HELPERS
    out = r(ev.encode(dict(dev=5, tid=3, wait=1)))
    # unsigned long fields print in hex, as libtraceevent prints them
    assert out.startswith(b"[FAILED TO PARSE] dev=5 tid=3 wait=0x1 ")


@pytest.mark.parametrize("path", sorted(p.parent for p in FORMATS.glob("*/*/format")))
def test_every_captured_format_renders_without_error(path):
    ev = load(path.parent.name, path.name)
    r = compile_print_fmt(ev)
    for raw in (bytes(ev.fixed_size), bytes(range(256)) * 2, b"", b"\xff" * 7):
        assert isinstance(r(raw), bytes)  # never raises, even on junk


COMMON = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""


def synthetic(fields: str, print_fmt: str):
    return parse_format(f"name: t\nID: 5\nformat:\n{COMMON}\n{fields}\nprint fmt: {print_fmt}\n")


def test_star_width_precision_and_hex_dump():
    ev = synthetic(
        "\tfield:__data_loc u8[] buf;\toffset:8;\tsize:4;\tsigned:0;\n"
        "\tfield:int len;\toffset:12;\tsize:4;\tsigned:1;\n"
        "\tfield:char name[8];\toffset:16;\tsize:8;\tsigned:0;\n",
        '"buf=%*ph name=%.*s| %-6s| %5s|%c%c %*d| %s", REC->len, __get_dynamic_array(buf), '
        "REC->len, REC->name, REC->name, REC->name, 'x', 65, -4, 7, __print_hex(__get_dynamic_array(buf), 2)",
    )
    out = compile_print_fmt(ev)(ev.encode(dict(buf=[1, 2, 3, 255], len=3, name=b"abcdef")))
    assert out == b"buf=01 02 03 name=abc| abcdef| abcdef|xA 7   | 01 02"


def test_pointer_extensions():
    ev = synthetic(
        "\tfield:u8 mac[6];\toffset:8;\tsize:6;\tsigned:0;\n"
        "\tfield:u8 ip4[4];\toffset:14;\tsize:4;\tsigned:0;\n"
        "\tfield:u8 ip6[16];\toffset:18;\tsize:16;\tsigned:0;\n"
        "\tfield:u8 uuid[16];\toffset:34;\tsize:16;\tsigned:0;\n"
        "\tfield:void * p;\toffset:56;\tsize:8;\tsigned:0;\n",
        '"%pM %pI4 %pI6c %pU %p %p|", REC->mac, REC->ip4, REC->ip6, REC->uuid, REC->p, 0',
    )
    ip6 = bytes.fromhex("20010db8000000000000000000000001")
    out = compile_print_fmt(ev)(ev.encode(dict(
        mac=list(bytes.fromhex("0011223344ff")), ip4=[10, 0, 0, 1], ip6=list(ip6),
        uuid=list(range(16)), p=0xFFFF8881,
    )))
    assert out == (b"00:11:22:33:44:ff 10.0.0.1 2001:db8::1 00010203-0405-0607-0809-0a0b0c0d0e0f "
                   b"0xffff8881 (nil)|")


def test_too_few_arguments_falls_back():
    ev = synthetic("\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n", '"a=%d b=%d", REC->a')
    r = compile_print_fmt(ev)
    assert r.fallback and r(ev.encode(dict(a=-3))) == b"[FAILED TO PARSE] a=-3"


def test_dict_and_raw_give_the_same_text():
    ev = load("sched", "sched_switch")
    r = compile_print_fmt(ev)
    raw = ev.encode(dict(SWITCH, prev_state=1))
    assert r(ev.decode(raw)) == r(raw)


# ----------------------------------------------------------------------------
# C printf integer conversions against the C library

_libc = ctypes.CDLL(None)
_libc.snprintf.restype = ctypes.c_int

_C_TYPES = {-2: ctypes.c_int, -1: ctypes.c_int, 0: ctypes.c_int, 1: ctypes.c_long, 2: ctypes.c_longlong}


def _c_printf(fmt: str, ls: int, value: int) -> bytes:
    buf = ctypes.create_string_buffer(256)
    bits = {-2: 8, -1: 16, 0: 32, 1: 64, 2: 64}[ls]
    v = value & ((1 << bits) - 1)
    # Pass it as the C caller would after the cast: sign-extend to int.
    if ls <= 0 and v >> (bits - 1) and fmt[-1] in "di":
        v -= 1 << bits
    ctype = _C_TYPES[ls]
    v &= (1 << (8 * ctypes.sizeof(ctype))) - 1
    if v >> (8 * ctypes.sizeof(ctype) - 1):
        v -= 1 << (8 * ctypes.sizeof(ctype))
    _libc.snprintf(buf, 256, fmt.encode(), ctype(v))
    return buf.value


_INT_FORMATS = [
    "%d", "%5d", "%-5d|", "%05d", "%+d", "%.3d", "%8.3d", "%03d", "%u", "%x", "%X", "%#x",
    "%#o", "%o", "%08x", "%lx", "%llx", "%016llx", "%#lx", "%ld", "%lu", "%lld", "%llu",
    "%hu", "%hd", "%hhu", "%hhd", "%zu", "%-8lu|", "%.0d", "%#.0x", "%c",
]
_INT_VALUES = [0, 1, 7, 42, 255, 65535, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1, 2**64 - 100]


# %c of 0 or of a wide value is left out: snprintf's NUL would hide the byte.
@pytest.mark.parametrize("fmt, value", [
    (f, v) for f in _INT_FORMATS for v in _INT_VALUES if f != "%c" or 0 < v < 256
])
def test_integer_conversions_match_libc(fmt, value):
    piece, _ = _parse_conversion(fmt, 0)
    assert piece[0] == "conv"
    spec = piece[1]
    tail = fmt[len(spec.text):].encode()
    ours = _format_int(spec, value, spec.width, spec.prec) + tail
    assert ours == _c_printf(fmt, spec.ls, value)


# ----------------------------------------------------------------------------
# Live: our rendering equals `perf script` for recorded events

PERF = shutil.which("perf") or "/usr/bin/perf"
TRACEFS = Path("/sys/kernel/tracing")

# The events the brief names, then more that exercise other helpers.
REQUIRED = [
    "sched:sched_switch", "sched:sched_wakeup", "syscalls:sys_enter_openat",
    "syscalls:sys_exit_read", "raw_syscalls:sys_enter",
]
# perf's libtraceevent mis-parses "x & (a | b)" (it rotates the operators by
# precedence across the parentheses and ORs the constants in); we print what
# the kernel's own text trace prints for these, so perf differs.
PERF_DIFFERS = {"timer:timer_start"}
EXTRA = [
    "sched:sched_waking", "sched:sched_process_exec", "sched:sched_process_fork",
    "sched:sched_process_exit", "syscalls:sys_exit_openat", "syscalls:sys_enter_read",
    "syscalls:sys_enter_close", "raw_syscalls:sys_exit", "irq:softirq_entry",
    "irq:softirq_raise", "timer:timer_start", "timer:hrtimer_start", "timer:hrtimer_cancel",
    "kmem:kmalloc", "kmem:kfree", "workqueue:workqueue_queue_work", "signal:signal_generate",
    "task:task_newtask", "rcu:rcu_utilization", "block:block_rq_issue",
    "block:block_rq_complete", "writeback:writeback_dirty_inode",
]


def _live_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (perf record of tracepoints)"
    if not (TRACEFS / "events").is_dir():
        return "tracefs is not mounted at /sys/kernel/tracing"
    if not os.access(PERF, os.X_OK):
        return "perf is not installed"
    return None


# Sample fields in the order the kernel writes them (PERF_SAMPLE_* bits).
_SAMPLE_ORDER = [
    (1 << 16, "identifier", 8), (1 << 0, "ip", 8), (1 << 1, "tid", 8), (1 << 2, "time", 8),
    (1 << 3, "addr", 8), (1 << 6, "id", 8), (1 << 9, "stream_id", 8), (1 << 7, "cpu", 8),
    (1 << 8, "period", 8),
]
_SAMPLE_READ, _SAMPLE_CALLCHAIN, _SAMPLE_RAW = 1 << 4, 1 << 5, 1 << 10


def read_perf_samples(path: Path) -> list[dict]:
    """The tracepoint samples of a perf.data file: config (event id), cpu,
    time, raw. Only what this test needs; not a general reader."""
    data = path.read_bytes()
    magic, _hsize, attr_size = struct.unpack_from("<8sQQ", data, 0)
    assert magic == b"PERFILE2", "not a perf.data file"
    attrs_off, attrs_size, data_off, data_size = struct.unpack_from("<QQQQ", data, 24)
    attrs = []
    by_id = {}
    for k in range(attrs_size // attr_size):
        base = attrs_off + k * attr_size
        ptype, _size, config, _period, sample_type = struct.unpack_from("<IIQQQ", data, base)
        ids_off, ids_size = struct.unpack_from("<QQ", data, base + attr_size - 16)
        attr = dict(type=ptype, config=config, sample_type=sample_type)
        attrs.append(attr)
        for j in range(ids_size // 8):
            by_id[struct.unpack_from("<Q", data, ids_off + 8 * j)[0]] = attr
    samples = []
    pos, end = data_off, data_off + data_size
    while pos < end:
        rtype, _misc, size = struct.unpack_from("<IHH", data, pos)
        if size == 0:
            break
        if rtype == 9:  # PERF_RECORD_SAMPLE
            samples.append(_parse_sample(data, pos + 8, attrs, by_id))
        pos += size
    return samples


def _parse_sample(data: bytes, pos: int, attrs: list[dict], by_id: dict) -> dict:
    sample_type = attrs[0]["sample_type"]
    out: dict = {}
    for bit, name, size in _SAMPLE_ORDER:
        if sample_type & bit:
            out[name] = struct.unpack_from("<Q", data, pos)[0]
            pos += size
        if name == "identifier" and "identifier" in out:
            attr = by_id[out["identifier"]]
            sample_type = attr["sample_type"]
    assert not sample_type & _SAMPLE_READ, "READ samples are not handled here"
    if sample_type & _SAMPLE_CALLCHAIN:
        nr = struct.unpack_from("<Q", data, pos)[0]
        pos += 8 + 8 * nr
    attr = by_id[out["identifier"]] if "identifier" in out else attrs[0]
    raw = b""
    if sample_type & _SAMPLE_RAW:
        raw_size = struct.unpack_from("<I", data, pos)[0]
        raw = data[pos + 4:pos + 4 + raw_size]
    return dict(config=attr["config"], cpu=out.get("cpu", 0) & 0xFFFFFFFF,
                time=out.get("time", 0), raw=raw)


_SCRIPT_LINE = re.compile(rb"^\s*\[(\d+)\]\s+(\d+)\.(\d{9}):\s+(\S+): (.*)$")


def _perf_script_lines(path: Path) -> dict[tuple, list[bytes]]:
    done = subprocess.run(
        [PERF, "script", "-i", str(path), "-F", "cpu,time,event,trace", "--ns"],
        capture_output=True, timeout=60, check=True,
    )
    lines = defaultdict(list)
    for line in done.stdout.split(b"\n"):
        m = _SCRIPT_LINE.match(line)
        if m:
            key = (int(m.group(1)), int(m.group(2)) * 10**9 + int(m.group(3)), m.group(4).decode())
            lines[key].append(m.group(5))
    return lines


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    reason = _live_skip_reason()
    if reason:
        pytest.skip(reason)
    events = [e for e in REQUIRED + EXTRA if (TRACEFS / "events" / e.replace(":", "/")).is_dir()]
    missing = [e for e in REQUIRED if e not in events]
    if missing:
        pytest.skip(f"this kernel lacks the required tracepoints {', '.join(missing)}")
    out = tmp_path_factory.mktemp("perf") / "perf.data"
    # The workload makes sure every required event happens at least once.
    workload = (
        "for i in 1 2 3; do cat /etc/hostname /proc/self/stat; done >/dev/null; "
        "dd if=/dev/zero of=dd.tmp bs=64k count=16 conv=fsync 2>/dev/null; rm -f dd.tmp; sleep 0.2"
    )
    cmd = [PERF, "record", "-q", "-o", str(out), "-a"]
    for e in events:
        # --exclude-perf (a common_pid filter, per event): perf's own writes
        # would otherwise feed back into raw_syscalls tens of thousands of times.
        cmd += ["-e", e, "--exclude-perf"]
    subprocess.run(cmd + ["--", "sh", "-c", workload], check=True, timeout=60, cwd=out.parent,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out, events


@pytest.mark.live
def test_argstr_equals_perf_script(recording):
    path, events = recording
    formats = {}
    symbolizer = kallsyms_symbolizer()
    strings = read_printk_formats(TRACEFS)
    for e in events:
        system, name = e.split(":")
        ev = parse_format((TRACEFS / "events" / system / name / "format").read_text(), system=system)
        formats[ev.id] = (e, compile_print_fmt(ev, symbolizer=symbolizer, strings=strings))
    expected = _perf_script_lines(path)
    seen = defaultdict(int)
    mismatches = []
    for s in read_perf_samples(path):
        name, render_fn = formats[s["config"]]
        key = (s["cpu"], s["time"], name)
        ours = render_fn(s["raw"])
        # Syscall events follow the kernel's text trace, not perf (test_argstr_kernel_text.py).
        if name not in PERF_DIFFERS and not name.startswith("syscalls:") and ours not in expected.get(key, []):
            mismatches.append((name, ours, expected.get(key)))
        seen[name] += 1
    assert not mismatches, "\n".join(f"{n}:\n ours: {o!r}\n perf: {p!r}" for n, o, p in mismatches[:5])
    for e in REQUIRED:
        assert seen[e] > 0, f"no {e} samples were recorded"
    assert sum(seen.values()) == sum(len(v) for v in expected.values())


def test_a_format_is_parsed_once_for_both_back_ends():
    """`trace *:*` binds thousands of formats, and both the per-event
    renderer (closures.py) and the native one (bytecode.py) read each print
    fmt: the parse is made once per format and shared, unchangeable."""
    from ktapjit.events.printfmt.bytecode import compile_argstr
    from ktapjit.events.printfmt.parse import parse_print_fmt

    ev = load("sched", "sched_switch")
    first = parse_print_fmt(ev)
    compile_print_fmt(ev)
    compile_argstr(ev)
    assert parse_print_fmt(ev) is first
    assert all(isinstance(part, tuple) for part in first)
    assert parse_print_fmt(load("sched", "sched_switch")) == first  # another format object: parsed again, alike
