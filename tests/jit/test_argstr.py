"""argstr on the native event path (events/printfmt/bytecode.py, runtime/argstr.c)
against events/printfmt/closures.py, the reference.

- every format file of this machine (and the captured ones in
  tests/data/formats) that compiles natively renders byte-identically in C
  and in Python over random records, truncated ones included (seeded, then
  hypothesis over the formats and over a print fmt made of the tricky
  conversions);
- table-driven cases with exact expected text for sched and syscalls;
- end to end: a script printing argstr gives the same output under
  `--engine jit` (which must take the native path) and `--engine interp`;
- argstr.c refuses malformed programs.
"""

from __future__ import annotations

import ctypes
import random
import re
import struct
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktapjit.events import tracefs
from ktapjit.events.records.decode import Sample
from ktapjit.events.records.perfdata import read_perf_data
from ktapjit.events.printfmt.closures import compile_print_fmt
from ktapjit.events.schema import parse_format
from ktapjit.testing.synth import SyntheticStream, choice, write_perf_data
from ktapjit.jit import rtlib, runtime_abi
from ktapjit.events.printfmt.bytecode import MAX_STACK, OPS, WIDTH, UnsupportedArgstr, compile_argstr
from tests.jit.test_feed import agree, feeds  # noqa: F401  (feeds is a fixture)

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ROOT / "tests" / "data" / "formats"
DATA = ROOT / "tests" / "data"


# -- rendering both ways --------------------------------------------------------------------


@lru_cache(maxsize=1)
def runtime() -> rtlib.RuntimeLibrary:
    return rtlib.load()  # once: load() checks the build on every call


def native(prog, raw: bytes) -> bytes:
    """argstr.c's rendering of `raw` (k_argstr_eval)."""
    rt = runtime()
    out = rtlib.KVal()
    status = rt.k_argstr_eval(prog.code.buffer_info()[0], prog.count, prog.blob, len(prog.blob),
                              raw, len(raw), ctypes.byref(out))
    assert status == 0, f"k_argstr_eval: {status}"
    return rt.string_bytes(out)


class Case:
    """One format, compiled both ways (prog None: not native)."""

    def __init__(self, name: str, ev):
        self.name = name
        self.ev = ev
        self.render = compile_print_fmt(ev)
        try:
            self.prog = compile_argstr(ev)
            self.why = None
        except UnsupportedArgstr as exc:
            self.prog, self.why = None, str(exc)

    def check(self, raw: bytes) -> None:
        assert native(self.prog, raw) == self.render(raw), f"{self.name}: {raw.hex()}"


def _captured() -> list[Case]:
    return [Case(f"{p.parent.parent.name}:{p.parent.name}", parse_format(p.read_text(), p.parent.parent.name))
            for p in sorted(FORMATS.glob("*/*/format"))]


@lru_cache(maxsize=1)
def machine_cases() -> tuple[Case, ...]:
    """Every tracepoint format of this machine (empty without tracefs)."""
    try:
        events = tracefs.list_events()
    except Exception:  # no tracefs, or not readable: the captured formats still run
        return ()
    cases = []
    for system, event in events:
        try:
            ev = tracefs.read_format(system, event)
        except Exception:  # a format the schema reader refuses is not argstr's to test
            continue
        cases.append(Case(f"{system}:{event}", ev))  # a compiler crash fails the test
    return tuple(cases)


@lru_cache(maxsize=1)
def all_native() -> tuple[Case, ...]:
    return tuple(c for c in (*machine_cases(), *_captured()) if c.prog is not None)


def random_record(rng: random.Random, ev) -> bytes:
    """Random bytes shaped like the format: fields often small or zero (so
    flag and symbol tables match), data locs often in range, the record
    often cut short."""
    size = ev.fixed_size + rng.randrange(0, 64)
    raw = bytearray(rng.randbytes(size))
    for f in ev.all_fields:
        if rng.random() < 0.4:
            continue
        if f.dynamic and f.size == 4:
            start, length = rng.randrange(0, size + 8), rng.randrange(0, 40)
            raw[f.offset:f.offset + 4] = (start | length << 16).to_bytes(4, "little")
        elif f.size <= 8:
            value = rng.choice([0, 1, 2, 3, 0x80, 0xFF, rng.randrange(0, 1 << 12), (1 << 8 * f.size) - 1])
            raw[f.offset:f.offset + f.size] = (value % (1 << 8 * f.size)).to_bytes(f.size, "little")
    if rng.random() < 0.3:
        raw = raw[:rng.randrange(0, size + 1)]
    return bytes(raw)


# -- coverage -------------------------------------------------------------------------------


def test_syscalls_and_sched_compile_natively():
    cases = machine_cases() or tuple(_captured())
    wanted = [c for c in cases if c.name.split(":")[0] in ("syscalls", "raw_syscalls", "sched")]
    assert wanted
    assert [(c.name, c.why) for c in wanted if c.prog is None] == []


def test_native_subset_excludes_only_what_it_must():
    """What stays on the Python path: byte dumps and printfmt's own fallbacks."""
    allowed = re.compile(r"%p[MmIiUh]|(hex|intarr|bitmask) dump|falls back|both width and precision|2-byte")
    for case in (*machine_cases(), *_captured()):
        if case.prog is None:
            assert allowed.search(case.why), (case.name, case.why)
        if case.render.fallback:
            assert case.prog is None, case.name


# -- C against Python -----------------------------------------------------------------------


def test_every_native_format_renders_identically():
    rng = random.Random(20261122)
    for case in all_native():
        for _ in range(10):
            case.check(random_record(rng, case.ev))
        case.check(b"")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_records_render_identically(data):
    cases = all_native()
    case = cases[data.draw(st.integers(0, len(cases) - 1), label="format")]
    seed = data.draw(st.integers(0, 1 << 32), label="seed")
    raw = random_record(random.Random(seed), case.ev)
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))), label="cut")
    case.check(raw if cut is None else raw[:cut])


# A print fmt of the corners printfmt handles: flags, '*', length modifiers,
# %c of a NUL, pointers, division by zero, shifts, indexes, tables.
TRICKY = """name: tricky
ID: 999
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned long b;\toffset:16;\tsize:8;\tsigned:0;
\tfield:char name[8];\toffset:24;\tsize:8;\tsigned:0;
\tfield:u16 arr[4];\toffset:32;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] s;\toffset:40;\tsize:4;\tsigned:0;
\tfield:__data_loc u32[] d;\toffset:44;\tsize:4;\tsigned:0;
\tfield:__rel_loc char[] r;\toffset:48;\tsize:4;\tsigned:0;
\tfield:unsigned char c;\toffset:52;\tsize:1;\tsigned:0;

print fmt: "%d|%+d|%-6d|%06d|%.3d|%.0d|%hhd|%hd|%ld|%u|%lu|%#x|%#X|%#o|%o|%08lx|%-#10x|%c|%5c|\
%*d|%-*d|%.*d|%*s|%.*s|%-8s|%.2s|%p|%pS|%s|%s|%s|%s|%s|%s|%s|%d|%d|%d|%d|%d|%d|%lld|%d|%y", \
REC->a, REC->a, REC->a, REC->a, REC->a, REC->c, REC->a, REC->a, REC->a, REC->a, REC->b, REC->b, REC->a, \
REC->c, REC->c, REC->b, REC->c, REC->c, REC->c, \
REC->c - 8, REC->a, REC->c - 8, REC->a, REC->c, REC->a, REC->c - 8, REC->name, REC->c - 3, REC->name, \
REC->name, __get_str(s), REC->b, REC->b, \
REC->name, REC->b, __get_str(r), REC->a > 3 ? "big" : REC->c ? __get_str(s) : "none", \
__print_flags(REC->c, "|", { 1, "A" }, { 2, "B" }, { 6, "CD" }), \
__print_flags(REC->a, "", { 0, "ZERO" }, { 8, "E" }, { SOME_ENUM, "ENUM" }), \
__print_symbolic(REC->c, { 0, "zero" }, { 1, "one" }, { 1, "uno" }, { 255, "max" }), \
REC->b / REC->c + REC->b % REC->c, (REC->b << REC->c) ^ (REC->b >> (REC->c + 60)), \
REC->arr[REC->c & 7], REC->arr[2], ((u8 *)REC->arr)[1], \
((int)REC->b) < 0 && !(REC->c != 3) || ~REC->a == -REC->a - 1, __get_dynamic_array_len(d), \
((u32 *)__get_dynamic_array(d))[REC->c & 3]
"""


@lru_cache(maxsize=1)
def _tricky() -> Case:
    return Case("tricky", parse_format(TRICKY, "test"))


def test_tricky_format_is_native():
    case = _tricky()
    assert case.prog is not None and not case.render.fallback, case.why or case.render.reason


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=0, max_size=80), pokes=st.lists(
    st.tuples(st.sampled_from([8, 16, 24, 40, 44, 48, 52]), st.integers(0, 300)), max_size=6))
def test_tricky_format_renders_identically(raw, pokes):
    case = _tricky()
    buf = bytearray(raw)
    for at, value in pokes:
        if at + 4 <= len(buf):
            struct.pack_into("<I", buf, at, value if at not in (40, 44, 48) else (value % 90) | (value % 13) << 16)
    case.check(bytes(buf))


# -- exact texts ----------------------------------------------------------------------------


def _load(system: str, event: str):
    return parse_format((FORMATS / system / event / "format").read_text(), system)


SWITCH = dict(prev_comm=b"bash", prev_pid=42, prev_prio=120, next_comm=b"swapper/1", next_pid=0, next_prio=120)
TABLE = [
    ("sched", "sched_switch", dict(SWITCH, prev_state=0),
     b"prev_comm=bash prev_pid=42 prev_prio=120 prev_state=R ==> next_comm=swapper/1 next_pid=0 next_prio=120"),
    ("sched", "sched_switch", dict(SWITCH, prev_state=0x81),
     b"prev_comm=bash prev_pid=42 prev_prio=120 prev_state=S|I ==> next_comm=swapper/1 next_pid=0 next_prio=120"),
    ("sched", "sched_switch", dict(SWITCH, prev_state=0x101),
     b"prev_comm=bash prev_pid=42 prev_prio=120 prev_state=S+ ==> next_comm=swapper/1 next_pid=0 next_prio=120"),
    ("sched", "sched_wakeup", dict(comm=b"kworker/0:1", pid=7, prio=120, target_cpu=1),
     b"comm=kworker/0:1 pid=7 prio=120 target_cpu=001"),
    ("sched", "sched_wakeup", dict(comm=b"abcdefghijklmnop", pid=1, prio=0, target_cpu=0),
     b"comm=abcdefghijklmnop pid=1 prio=0 target_cpu=000"),
    ("sched", "sched_process_exec", dict(filename=b"/bin/sh", pid=5, old_pid=5),
     b"filename=/bin/sh pid=5 old_pid=5"),
    ("raw_syscalls", "sys_enter", dict(id=0, args=[3, 0x7FFD1234, 10, 0, 0, 0xFFFFFFFFFFFFFFFF]),
     b"NR 0 (3, 7ffd1234, a, 0, 0, ffffffffffffffff)"),
    ("raw_syscalls", "sys_exit", dict(id=1, ret=-14), b"NR 1 = -14"),
    ("syscalls", "sys_enter_openat", dict(dfd=0xFFFFFF9C, filename=0x7FFC00001000, flags=0x80000, mode=0),
     b"sys_openat(dfd: 0xffffff9c, filename: 0x7ffc00001000, flags: 0x80000, mode: 0)"),
    ("syscalls", "sys_enter_close", dict(fd=9), b"sys_close(fd: 9)"),
    ("syscalls", "sys_enter_close", dict(fd=10), b"sys_close(fd: 0xa)"),
    ("syscalls", "sys_exit_read", dict(ret=5), b"sys_read -> 0x5"),
    ("syscalls", "sys_exit_read", dict(ret=-1), b"sys_read -> 0xffffffffffffffff"),
    ("syscalls", "sys_enter_getppid", dict(), b"sys_getppid()"),
    ("irq", "softirq_entry", dict(vec=7), b"vec=7 [action=SCHED]"),
    ("irq", "softirq_entry", dict(vec=12), b"vec=12 [action=0xc]"),
    ("timer", "hrtimer_start", dict(hrtimer=1, function=0, expires=5, softexpires=4, mode=0),
     b"hrtimer=0x1 function=0x0 expires=5 softexpires=4 mode=0x0 was_armed=0"),  # %ps without symbols
    ("timer", "timer_start", dict(timer=0xFFFFC9000007FDF8, function=0xFFFFFFFF81000010, expires=100, now=105,
                                  bucket_expiry=101, flags=(3 << 22) | 0x00080000 | 0x00100000 | 1),
     b"timer=0xffffc9000007fdf8 function=0xffffffff81000010 expires=100 [timeout=-5] bucket_expiry=101"
     b" cpu=1 idx=3 flags=D|P"),
    ("rcu", "rcu_utilization", dict(s=0xFFFFFFFF8281A5A4), b"ffffffff8281a5a4"),
]


@pytest.mark.parametrize("system, event, values, text", TABLE)
def test_exact_texts(system, event, values, text):
    ev = _load(system, event)
    raw = ev.encode(values)
    got = native(compile_argstr(ev), raw)
    assert got == compile_print_fmt(ev)(raw) == text


def test_truncated_sched_switch():
    ev = _load("sched", "sched_switch")
    raw = ev.encode(dict(SWITCH, prev_state=1))
    prog, render = compile_argstr(ev), compile_print_fmt(ev)
    for n in range(len(raw) + 1):
        assert native(prog, raw[:n]) == render(raw[:n])
    assert native(prog, raw[:20]) == b"prev_comm=bash prev_pid=0 prev_prio=0 prev_state=R ==> next_comm= next_pid=0 next_prio=0"


# -- the program is checked -----------------------------------------------------------------


def _eval_status(code: list[int], blob: bytes = b"") -> int:
    from array import array

    words = array("q", code)
    out = rtlib.KVal()
    return runtime().k_argstr_eval(words.buffer_info()[0], len(words) // WIDTH, blob, len(blob),
                                      b"", 0, ctypes.byref(out))


def test_malformed_programs_are_refused():
    op = {info.name: i for i, info in enumerate(OPS)}
    end = [op["End"], 0, 0, 0]
    assert _eval_status(end) == 0
    assert _eval_status([op["Lit"], 0, 3, 0] + end, b"abc") == 0
    assert _eval_status([]) == -1  # no End
    assert _eval_status([op["Lit"], 0, 3, 0]) == -1  # no End
    assert _eval_status([op["Lit"], 1, 3, 0] + end, b"abc") == -1  # past the blob
    assert _eval_status([op["Jmp"], 0, 0, 0] + end) == -1  # a backward jump: a loop
    assert _eval_status([op["Jmp"], 5, 0, 0] + end) == -1  # past the end
    assert _eval_status([op["Const"], 1, 0, 0, op["Sym"], 0, 0, 2, op["Entry"], 1, 0, 0] + end) == -1
    assert _eval_status([op["Read"], 0, 3, 0] + end) == -1  # a 3-byte read
    assert _eval_status([len(OPS), 0, 0, 0] + end) == -1
    assert _eval_status([op["Add"], 0, 0, 0] + end) == -1  # the stack underflows at run time


def test_opcodes_match_the_abi_table():
    """argstr.c takes KA_* from the ABI table (ktrt_abi.h): OPS must be its order."""
    names = [m.name for m in runtime_abi.ARGSTR_OPS.members]
    expected = ["KA_" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", info.name).upper() for info in OPS]
    assert names == expected
    assert dict((name, value) for name, value, _ in runtime_abi.CONSTANTS if name.startswith("KA_")) == {
        "KA_WIDTH": WIDTH, "KA_STACK": MAX_STACK}


# -- end to end -----------------------------------------------------------------------------

# Captured formats outside the subset, to prove the session falls back.
NOT_NATIVE = [("ipi", "ipi_send_cpumask"), ("sock", "inet_sock_set_state")]


def _native_captured() -> list[tuple[str, str]]:
    out = []
    for case in _captured():
        system, event = case.name.split(":")
        if case.prog is not None and (system, event) != ("sched", "sched_process_exec"):
            out.append((system, event))
    return out


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("argstr")
    made = {}
    specs = [(s, e, None, None, 1.0) for s, e in _native_captured()]
    specs.append(("sched", "sched_process_exec", None,
                  {"filename": choice(["/bin/sh", "/usr/bin/ls", ""])}, 1.0))
    for name, extra, options in [("mixed", [], {}), ("churn", [], {"churn": 0.02, "lost": 0.01}),
                                 ("fallback", [(s, e, None, None, 1.0) for s, e in NOT_NATIVE], {})]:
        stream = SyntheticStream(specs + extra, n_events=1500, cpus=2, tasks=6, seed=11, **options)
        made[name] = tmp / f"{name}.data"
        write_perf_data(made[name], stream)
    return made


SCRIPT = "trace *:* { printf(\"%s %s|%s\\n\", probename, execname, argstr) }"


@pytest.mark.parametrize("stream", ["mixed", "churn"])
def test_argstr_scripts_run_natively(feeds, streams, stream):  # noqa: F811
    out, err, status = agree(feeds, streams[stream], SCRIPT)
    assert status == 0 and out.count(b"\n") > 1000


def test_outside_the_subset_stays_on_the_python_path(feeds, streams):  # noqa: F811
    agree(feeds, streams["fallback"], SCRIPT, native=False)
    # ...and a session reading argstr of native events only is native.
    agree(feeds, streams["fallback"], "trace sched:* { print(argstr) }")


@pytest.mark.parametrize("recording", ["sched.data", "getppid.data", "pipe.data"])
def test_recordings(feeds, recording):  # noqa: F811
    agree(feeds, DATA / recording, "trace *:* { print(argstr, len(argstr)) }")


def test_demo_recording(feeds):  # noqa: F811
    agree(feeds, ROOT / "examples" / "data" / "demo.data",
          "var n = {}\ntrace *:* { n[argstr] += 1 }\ntrace_end { print_hist(n) }")


def _patch(src: Path, dst: Path, event: str, patch) -> Path:
    """A copy of src with patch(buf, raw_start) applied to one sample of event."""
    data = read_perf_data(src)
    victim = [r for r in data.records() if isinstance(r, Sample)
              and (data.event_name(r.id) or "").endswith(event)][7]
    buf = bytearray(src.read_bytes())
    patch(buf, victim.offset + victim.size - len(victim.raw))
    dst.write_bytes(bytes(buf))
    return dst


def test_truncated_and_corrupt_records(feeds, streams, tmp_path):  # noqa: F811
    """argstr renders the bytes there are, as the Python path does; a field
    read of the same corrupt record still fails where the body reads it."""
    short = _patch(streams["mixed"], tmp_path / "short.data", "sched_switch",
                   lambda buf, raw: struct.pack_into("<I", buf, raw - 4, 20))
    out, err, status = agree(feeds, short, "trace sched:sched_switch { print(argstr) }")
    assert status == 0 and b"prev_state=" in out
    out, err, status = agree(feeds, short, "trace sched:sched_switch { print(argstr); print(args.next_pid) }")
    assert status == 1 and b"corrupt sched:sched_switch record" in err
    loc = _patch(streams["mixed"], tmp_path / "loc.data", "sched_process_exec",
                 lambda buf, raw: struct.pack_into("<I", buf, raw + 8, (50 << 16) | 200))
    out, err, status = agree(feeds, loc, "trace sched:sched_process_exec { print(argstr) }")
    assert status == 0


# -- syscall events on kernels that copy a user string into the event -----------------------

# The layout and print fmt newer kernels give sys_enter_openat (trace_syscalls.c copies the
# string `filename` points to into __filename_val); the text trace prints it after the pointer.
_OPENAT_WITH_STRING = """name: sys_enter_openat
ID: 700
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] __filename_val;\toffset:48;\tsize:4;\tsigned:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx \\"%s\\", flags: 0x%08lx, mode: 0x%08lx", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename)), __get_str(__filename_val), ((unsigned long)(REC->flags)), ((unsigned long)(REC->mode))
"""


def test_syscall_with_a_copied_string_both_ways():
    ev = parse_format(_OPENAT_WITH_STRING, "syscalls")
    raw = ev.encode(dict(dfd=0xFFFFFF9C, filename=0x7FFC00001000, flags=0x80000, mode=0,
                         __filename_val=b"/etc/hostname"))
    text = b'sys_openat(dfd: 0xffffff9c, filename: 0x7ffc00001000 "/etc/hostname", flags: 0x80000, mode: 0)'
    assert native(compile_argstr(ev), raw) == compile_print_fmt(ev)(raw) == text


def test_syscall_with_a_copied_byte_array_keeps_its_print_fmt():
    """The kernel prints such an array up to a size argument only its metadata names: perf's rendering stays."""
    head = _OPENAT_WITH_STRING.split("print fmt:")[0].replace("char[] __filename_val", "u8[] __filename_val")
    text = head + 'print fmt: "dfd: 0x%08lx, filename: 0x%08lx", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename))\n'
    ev = parse_format(text, "syscalls")
    raw = ev.encode(dict(dfd=3, filename=16, flags=0, mode=0))
    assert compile_print_fmt(ev)(raw) == b"dfd: 0x00000003, filename: 0x00000010"
