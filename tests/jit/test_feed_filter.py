"""Kernel filters on the JIT's native event path (kernel_filter/native.py,
runtime/filter.c) against filter.py's compiled matcher.

- End to end: replays of synthetic streams under `--engine jit` (the native
  feed, asserted to have run) and `--engine interp` (filter.py's matcher)
  must print the same lines, so every filter selects the same events.
- The evaluator alone: runtime/filter.c's krt_filter_set/krt_filter_matches
  (exported by the runtime library), called through ctypes on many random
  raw records, against filter.compile_filter's verdicts.

Filters come from a small grammar over the fields of a few formats (char[N],
__data_loc and __rel_loc strings, a cpumask, ints of every size and sign, an
int array, pointers, the generic comm and cpu, the .ustring and .function
suffixes); string patterns are cut from the records' own strings, so that
prefix, suffix, substring and glob patterns match now and then. Records are
damaged: RAW data cut short, __data_loc words pointing anywhere, unknown
threads, the idle task. The generators are plain functions of a seeded
random.Random that hypothesis drives: the grammar is wide and flat, and a
failure reproduces from its seed.
"""

from __future__ import annotations

import ctypes
import functools
import io
import random
import struct
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ktapjit.cli import main
from ktapjit.events.decode import Sample
from ktapjit.events.perfdata import read_perf_data
from ktapjit.events.schema import parse_format
from ktapjit.events.synth import SyntheticStream, Task, choice, load_format, per_record, write_perf_data
from ktapjit.kernel_filter import language as kfilter
from ktapjit.jit import rtlib
from ktapjit.kernel_filter.native import M_END, M_FRONT, M_FULL, M_GLOB, M_MIDDLE, _match_kind, compile_program
from tests.jit.feedspy import spied_feeds

# An event of our own: the field kinds no captured format has together.
MIXED_FORMAT = """name: mixed
ID: 9001
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__rel_loc char[] rname;\toffset:8;\tsize:4;\tsigned:0;
\tfield:char tag[6];\toffset:12;\tsize:6;\tsigned:0;
\tfield:s8 small;\toffset:18;\tsize:1;\tsigned:1;
\tfield:u16 half;\toffset:20;\tsize:2;\tsigned:0;
\tfield:u64 big;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long args[2];\toffset:32;\tsize:16;\tsigned:0;
\tfield:char * ptr;\toffset:48;\tsize:8;\tsigned:0;

print fmt: "rname=%s", __get_rel_str(rname)
"""

EVENTS = ["sched:sched_switch", "sched:sched_process_exec", "ipi:ipi_send_cpumask",
          "syscalls:sys_enter_openat", "ktest:mixed"]


def _formats() -> dict[str, object]:
    out = {}
    for name in EVENTS:
        system, event = name.split(":")
        text = MIXED_FORMAT if event == "mixed" else load_format(system, event)
        out[name] = parse_format(text, system=system)
    return out


FORMATS = _formats()
# Each event's (one) __data_loc/__rel_loc field: its offset in the RAW data.
DYNAMIC = {name: f.offset for name, fmt in FORMATS.items() for f in fmt.fields if f.dynamic}

# Strings: mostly plain bytes (a pattern cut from one is a prefix, suffix or
# substring pattern, not a glob), now and then a metacharacter.
PLAIN, META = b"aabb.-/0\xff\x00", b"*?[]!\\"
SMALL = [0, 1, 2, 3, -1, 127, 128, 255, 256, 65535]
INTS_SIGNED = ["0", "1", "2", "3", "-1", "127", "-128", "128", "255", "-129", "65535", "0x10", "010",
               "2147483647", "-2147483648", "4294967295", "9223372036854775807", "-9223372036854775808"]
INTS_UNSIGNED = ["0", "1", "2", "3", "127", "128", "255", "256", "65535", "0x8000", "0xffffffff",
                 "4294967296", "18446744073709551615", "9223372036854775808", "07"]
GENERIC = ("comm", "COMM", "cpu", "CPU", "common_cpu")
IDLE_AND_UNKNOWN = [b"swapper/0", b"swapper/1", b":4321"]  # the comm a filter sees for tid 0, 4321


# -- the grammar ---------------------------------------------------------------------------------


def random_string(rng: random.Random, longest: int, nul: bool = True) -> bytes:
    plain = PLAIN if nul else PLAIN.replace(b"\0", b"")
    return bytes(rng.choice(META) if rng.random() < 0.08 else rng.choice(plain)
                 for _ in range(rng.randint(0, longest)))


def lexable(body: str) -> str:
    """A pattern the script's lexer takes: inside a filter's ".." it reads
    \\x as a pair, so an odd backslash at the end would swallow the closing
    quote; a quote or a newline cannot be in one."""
    body = body.replace('"', "").replace("\n", "")
    trailing = len(body) - len(body.rstrip("\\"))
    return body + "a" if trailing % 2 else body


def random_pattern(rng: random.Random, pieces: list[bytes], op: str) -> str:
    """A string of the records made a prefix, suffix, substring or glob
    pattern (a class, ?, * or an escape put in), sometimes random text; for
    == and != mostly the whole string."""
    piece = rng.choice(pieces).decode("latin-1")
    cut = rng.randint(0, len(piece))
    forms = ["glob", "prefix", "suffix", "middle", "whole", "random"]
    form = rng.choice(forms) if op == "~" or rng.random() < 0.3 else "whole"
    if form == "prefix":
        text = piece[:cut] + "*"
    elif form == "suffix":
        text = "*" + piece[cut:]
    elif form == "middle":
        text = "*" + piece[cut:rng.randint(cut, len(piece))] + "*"
    elif form == "glob":
        text = piece
        for _ in range(rng.randint(1, 2)):
            text = _glob_edit(rng, text)
    elif form == "random":
        text = random_string(rng, 6).decode("latin-1")
    else:
        text = piece
    if op == "~" and rng.random() < 0.2:
        text = "!" + text
    return lexable(text)


def _glob_edit(rng: random.Random, text: str) -> str:
    """`text` with one character (or none, at its end) replaced by a
    wildcard, an escape or a class that does or does not take it."""
    at = rng.randint(0, len(text))
    c = text[at:at + 1] or rng.choice("ab")
    lo, hi = chr(max(ord(c) - 1, 1)), chr(min(ord(c) + 1, 255))
    meta = rng.choice(["?", "*", "*" + c, f"[{c}]", f"[!{c}]", f"[!{hi}]", f"[{lo}-{c}]", f"[{c}-{hi}]",
                       f"[!{lo}-{hi}]", f"[{c}-]", "[]a-c]", "[a", "\\" + c, "[!b]", "-"])
    return text[:at] + meta + text[at + 1:]


def _fields(fmt, bindable: bool):
    """(string fields, integer fields, cpumask fields) of a format, by name;
    `bindable` leaves out the char * strings a probe may not filter on."""
    strings, ints, masks = ["comm", "COMM"], ["cpu", "CPU", "common_cpu"], []
    for f in list(fmt.fields) + list(fmt.common_fields):
        kind = kfilter._filter_type(f)
        if kind == "cpumask":
            masks.append(f.name)
        elif kind == "pointer" and bindable:
            continue
        elif kind in ("static", "dynamic", "reldynamic", "pointer"):
            strings.append(f.name)
        else:
            ints.append(f.name)
    return strings, ints, masks


def _pick_field(rng: random.Random, names: list[str]) -> str:
    """The event's own fields (the interesting types) more often than the
    generic and common ones."""
    own = [n for n in names if n not in GENERIC and not n.startswith("common_")]
    return rng.choice(own) if own and rng.random() < 0.7 else rng.choice(names)


def random_cpus(rng: random.Random) -> str:
    if rng.random() < 0.5:
        lo = rng.randint(0, 3)
        return f"CPUS{{{lo}-{lo + rng.randint(0, 12)}}}"
    return "CPUS{" + ",".join(str(c) for c in sorted(rng.sample(range(10), rng.randint(1, 4)))) + "}"


def random_predicate(rng: random.Random, event: str, words: list[bytes], comms: list[bytes],
                     bindable: bool) -> str:
    fmt = FORMATS[event]
    strings, ints, masks = _fields(fmt, bindable)
    kinds = ["str"] * 4 + ["int", "int", "cpus"] + ["mask"] * bool(masks) * 2
    kinds += ["modifier"] * (event == "syscalls:sys_enter_openat" and not bindable)
    kind = rng.choice(kinds)
    if kind == "str":
        name = _pick_field(rng, strings)
        op = rng.choice(["==", "!=", "~", "~", "~"])
        pieces = comms + IDLE_AND_UNKNOWN if name in ("comm", "COMM") else words
        return f'{name} {op} "{random_pattern(rng, pieces, op)}"'
    if kind == "modifier":
        if rng.random() < 0.5:
            op = rng.choice(["==", "~"])
            return f'filename.ustring {op} "{random_pattern(rng, words, op)}"'
        return f"dfd.function {rng.choice(['==', '!='])} {rng.choice(['do_sys_open', '0x10'])}"
    if kind == "mask":
        return f"{rng.choice(masks)} {rng.choice(['==', '!=', '&'])} {random_cpus(rng)}"
    name = _pick_field(rng, ints)
    if kind == "cpus":
        return f"{name} {rng.choice(['==', '!=', '&'])} {random_cpus(rng)}"
    target = kfilter._find_field(fmt, name)
    signed = target == "cpu" or bool(target.signed)
    value = rng.choice(INTS_SIGNED if signed else INTS_UNSIGNED)
    return f"{name} {rng.choice(['==', '!=', '<', '<=', '>', '>=', '&'])} {value}"


def random_filter(rng: random.Random, event: str, words: list[bytes], comms: list[bytes],
                  bindable: bool, depth: int = 0) -> str:
    """A predicate, half the time alone (a verdict that varies by record is
    worth more than a long tree's constant one), else && || ! of filters."""
    roll = rng.random()
    if depth >= 2 or roll < 0.5:
        return random_predicate(rng, event, words, comms, bindable)
    if roll < 0.6:
        return f"!({random_filter(rng, event, words, comms, bindable, depth + 1)})"
    left, right = (random_filter(rng, event, words, comms, bindable, depth + 1) for _ in range(2))
    return f"{left} && {right}" if roll < 0.8 else f"({left} || {right})"


def checked_filter(rng: random.Random, event: str, words: list[bytes], comms: list[bytes],
                   bindable: bool = False) -> str:
    """A filter the kernel accepts; `bindable`, also one a probe may carry
    (no test of memory outside the record, which kfilter.unreplayable
    refuses). The evaluator must still give every accepted filter
    filter.py's verdict."""
    text = random_filter(rng, event, words, comms, bindable)
    node = kfilter.parse_filter(text)
    assert not kfilter.check_filter(node, FORMATS[event]), text
    assert not (bindable and kfilter.unreplayable(node, FORMATS[event])), text
    return text


def random_record(rng: random.Random, fmt, words: list[bytes]) -> bytes:
    """A record of `fmt`: strings from `words` (a char[N] maybe spilling
    over the next field), __data_loc words pointing at them (or near),
    small ints, then maybe cut short or with a byte changed."""
    raw = bytearray(fmt.fixed_size)
    tail = bytearray()
    for f in fmt.fields:
        kind = kfilter._filter_type(f)
        if kind == "static":
            word = rng.choice(words)[:f.size + rng.choice([0, 0, 0, 1, 4])]
            raw[f.offset:f.offset + len(word)] = word
        elif f.dynamic:
            word = rng.choice(words) + rng.choice([b"\0", b"\0", b"", b"\0\0"])
            start = len(raw) + len(tail) - (f.offset + 4 if f.relative else 0)
            tail += word
            length = rng.choice([len(word)] * 6 + [0, 1, 3, 300])
            start += rng.choice([0] * 6 + [-1, 1, 40])
            struct.pack_into("<I", raw, f.offset, (length & 0xFFFF) << 16 | (start & 0xFFFF))
        elif f.size in (1, 2, 4, 8):
            value = rng.choice(SMALL + [-2**63, 2**63 - 1, 2**64 - 1])
            raw[f.offset:f.offset + f.size] = (value % (1 << 8 * f.size)).to_bytes(f.size, "little")
        else:
            raw[f.offset] = rng.randrange(4)
    raw += tail
    if rng.random() < 0.2:
        raw = raw[:rng.randrange(len(raw) + 1)]
    for _ in range(rng.choice([0, 0, 1, 2])):
        if raw:
            raw[rng.randrange(len(raw))] = rng.choice(PLAIN + META)
    return bytes(raw)


# -- filter.py's side ----------------------------------------------------------------------------

_GLOB = kfilter.glob_match


# -- the evaluator alone -------------------------------------------------------------------------


class KrtFilter(ctypes.Structure):
    _fields_ = [("program", ctypes.c_void_p), ("n", ctypes.c_int64), ("stack", ctypes.c_void_p),
                ("patterns", ctypes.c_void_p)]  # krt_filter in runtime/ktrt_private.h


@functools.cache
def _runtime():
    rt = rtlib.load()
    return types.SimpleNamespace(
        krt_filter_set=rt.function("krt_filter_set", ctypes.c_int, [
            ctypes.POINTER(KrtFilter), ctypes.c_void_p, ctypes.c_int64, ctypes.c_char_p, ctypes.c_int64]),
        krt_filter_matches=rt.function("krt_filter_matches", ctypes.c_int, [
            ctypes.POINTER(KrtFilter), ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_uint32,
            ctypes.c_char_p]),
        krt_filter_free=rt.function("krt_filter_free", None, [ctypes.POINTER(KrtFilter)]))


def native_verdicts(node, fmt, records) -> list[bool]:
    """krt_filter_matches on each (raw, cpu or None, comm)."""
    lib = _runtime()
    program, patterns = compile_program(node, fmt)
    f = KrtFilter()
    assert lib.krt_filter_set(ctypes.byref(f), program.buffer_info()[0], len(program) // 6, patterns,
                              len(patterns)) == 0
    try:
        out = []
        for raw, cpu, comm in records:
            kstr = struct.pack("<QI", 0, len(comm)) + comm  # a kstr: hash, len, bytes
            out.append(bool(lib.krt_filter_matches(ctypes.byref(f), raw, len(raw), cpu is not None, cpu or 0, kstr)))
        return out
    finally:
        lib.krt_filter_free(ctypes.byref(f))


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**64 - 1))
def test_evaluator_agrees_with_filter_py(seed):
    rng = random.Random(seed)
    event = rng.choice(EVENTS)
    fmt = FORMATS[event]
    words = [random_string(rng, 18) for _ in range(rng.randint(1, 4))]
    comms = [random_string(rng, 18) for _ in range(rng.randint(1, 3))] + IDLE_AND_UNKNOWN
    text = checked_filter(rng, event, words, comms)
    records = [(random_record(rng, fmt, words), rng.choice([None, 0, 1, 2, 7]), rng.choice(comms))
               for _ in range(30)]
    node = kfilter.parse_filter(text)
    match = kfilter.compile_filter(node, fmt)
    expected = [match(raw, cpu, comm) for raw, cpu, comm in records]
    assert native_verdicts(node, fmt, records) == expected, text


def test_malformed_programs_are_refused():
    lib = _runtime()
    for program, patterns in [([99, 0, 0, 0, 0, 0], b""),            # no such instruction
                              ([6, 0, 0, 0, 3, 4 << 32 | 1], b"abc"),  # bytes past the patterns
                              ([3, 0, 0, 0, 0, 0], b""),               # NOT of nothing
                              ([0] * 12, b"")]:                        # two verdicts
        words = (ctypes.c_int64 * len(program))(*program)
        assert lib.krt_filter_set(ctypes.byref(KrtFilter()), words, len(program) // 6, patterns, len(patterns)) == -1


# -- end to end ----------------------------------------------------------------------------------


def run(engine_name: str, replay: Path, script: Path) -> tuple[bytes, bytes, int]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", engine_name, "--replay", str(replay), str(script)], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), status


def agree(replay: Path, script: bytes) -> bytes:
    """Both engines print the same; the JIT filtered natively. The script is
    a file: filters may hold any byte but a quote, a newline and '/'."""
    path = replay.with_suffix(".kp")
    path.write_bytes(script)
    with spied_feeds() as feeds:
        jit = run("jit", replay, path)
    interp = run("interp", replay, path)
    assert jit == interp
    assert jit[2] == 0, jit[1]
    assert feeds and feeds[0] is not None and feeds[0].runs > 0, "the native path was not taken"
    return jit[0]


def probe_script(filters: list[tuple[str, str]]) -> bytes:
    return "\n".join(f"trace {event} /{text}/ {{ print({i}, tid, cpu) }}"
                     for i, (event, text) in enumerate(filters)).encode("latin-1")


def _pick(values):
    return per_record(lambda draw: draw.rng.choice(values))


def write_stream(path: Path, words: list[bytes], comms: list[bytes], seed: int, n: int = 600) -> Path:
    """A stream of EVENTS whose strings are `words` and whose tasks are
    named `comms`, plus the idle task."""
    small = choice(SMALL)
    fields = {
        "sched_switch": {"prev_comm": _pick(words), "next_comm": _pick(words), "prev_state": small,
                         "next_prio": small},
        "sched_process_exec": {"filename": _pick(words), "pid": small},
        "ipi_send_cpumask": {"cpumask": _pick([[0], [1], [0, 1], [], [1, 0, 0, 0, 0, 0, 0, 0, 1]])},
        "sys_enter_openat": {"dfd": small, "flags": small},
        "mixed": {"rname": _pick(words), "tag": _pick(words), "small": choice([0, 1, 2, -1, -128, 127]),
                  "half": small, "big": choice([0, 1, 2, 3, 2**63, 2**64 - 1]),
                  "args": _pick([[0, 0], [1, 0], [3, 0], [0, 1]])},
    }
    specs = []
    for name in EVENTS:
        system, event = name.split(":")
        specs.append((system, event, MIXED_FORMAT if event == "mixed" else None, fields[event]))
    tasks = [Task(0, 0, b"swapper")] + [Task(100 + i, 100 + i, c) for i, c in enumerate(comms)]
    write_perf_data(path, SyntheticStream(specs, n_events=n, cpus=2, tasks=tasks, seed=seed))
    return path


def damage(path: Path, seed: int, rate: float = 0.2) -> None:
    """Damage some samples in place: RAW data cut short, __data_loc words
    (half of one) or any other byte overwritten, unknown or idle threads."""
    rng = random.Random(seed)
    buf = bytearray(path.read_bytes())
    data = read_perf_data(path)
    for sample in (r for r in data.records() if isinstance(r, Sample)):
        if not sample.raw or rng.random() >= rate:
            continue
        raw_at = sample.offset + sample.size - len(sample.raw)
        loc = DYNAMIC.get(data.event_name(sample.id) or "")
        what = rng.randrange(5)
        if what == 0:  # RAW claims fewer bytes than the format needs
            struct.pack_into("<I", buf, raw_at - 4, rng.randrange(len(sample.raw)))
        elif what == 1 and loc is not None:  # a dynamic string's length, anywhere
            struct.pack_into("<H", buf, raw_at + loc + 2, rng.choice([0, 1, 2, 3, 5, 16, 300]))
        elif what == 2 and loc is not None:  # its start, anywhere
            struct.pack_into("<H", buf, raw_at + loc, rng.choice([0, 4, 8, 13, 40, 56, 60, 0xFFFF]))
        elif what == 3:  # any byte
            buf[raw_at + rng.randrange(len(sample.raw))] = rng.choice(PLAIN + META)
        else:  # a thread without a COMM record (":tid"), or the idle task ("swapper/N")
            tid = rng.choice([0, 4321])
            struct.pack_into("<II", buf, sample.offset + 16, tid, tid)
    path.write_bytes(bytes(buf))


PROBES_PER_EVENT = 4  # a fixed shape: every example's script compiles to one cached object


# No shrinking: it replays whole sessions; a failure names its seed.
@settings(max_examples=25, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**64 - 1))
def test_random_filters_agree_end_to_end(tmp_path, seed):
    rng = random.Random(seed)
    words = [random_string(rng, 18) for _ in range(rng.randint(1, 4))]
    comms = [random_string(rng, 15, nul=False) or b"x" for _ in range(rng.randint(1, 3))]
    filters = [(event, checked_filter(rng, event, words, comms, bindable=True))
               for event in EVENTS for _ in range(PROBES_PER_EVENT)]
    path = write_stream(tmp_path / "random.data", words, comms, seed % 2**32)
    damage(path, seed)
    agree(path, probe_script(filters))


# -- cases ---------------------------------------------------------------------------------------

WORDS = [b"/lib/libc.so.6", b"libc.so", b"a*b", b"x?y", b"[ab]", b"", b"abcdefghijklmnopq", b"so", b"0*",
         b"0*x"]


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    """A stream for the cases below. Of its exec records for "libc.so", the
    first has RAW data ending right after the name, before its NUL; the
    second says the name is 3 bytes long."""
    path = tmp_path_factory.mktemp("feed_filter") / "cases.data"
    write_stream(path, WORDS, [b"bash", b"sshd", b"a[b]c*", b"fifteen_chars_x"], seed=11, n=1500)
    damage(path, 12, rate=0.05)
    buf = bytearray(path.read_bytes())
    data = read_perf_data(path)
    libc = [r for r in data.records() if isinstance(r, Sample) and r.raw
            and data.event_name(r.id) == "sched:sched_process_exec" and r.raw[20:28] == b"libc.so\0"]
    raw_at = [r.offset + r.size - len(r.raw) for r in libc[:2]]
    struct.pack_into("<I", buf, raw_at[0] - 4, 20 + 7)  # RAW's size
    struct.pack_into("<H", buf, raw_at[1] + 8 + 2, 3)  # the __data_loc word's length
    path.write_bytes(bytes(buf))
    return path


CASES = [
    # The filters the native path used to leave to Python.
    ("sched:sched_switch", 'prev_comm ~ "*sh"'),
    ("sched:sched_switch", 'comm ~ "b*" || cpu == 1'),
    ("sched:sched_switch", "cpu & CPUS{1}"),
    ("sched:sched_process_exec", 'filename ~ "*.so*"'),
    ("sched:sched_process_exec", 'filename ~ "*.so" || filename ~ "lib*" || filename ~ "!*so*"'),
    ("sched:sched_process_exec", 'filename ~ "/lib/*.so.[0-9]" || filename ~ "?*[!a-c]"'),
    ("sched:sched_process_exec", 'filename ~ "/lib/*" || filename ~ "libc*"'),  # lengths cut by damage
    ("sched:sched_switch", 'comm ~ "swapper/*" && !(comm ~ "swapper/[!1]")'),
    ("sched:sched_switch", 'comm ~ "a\\[b]c\\*" || comm ~ "*_x" || comm ~ "fifteen_chars_x*"'),
    ("sched:sched_switch", 'prev_comm ~ "*" || next_comm ~ "**" || prev_comm ~ "abcdefghijklmnop*"'),
    ("sched:sched_switch", "cpu == CPUS{0,1} || cpu != CPUS{0-3} && cpu & CPUS{1,3}"),
    ("sched:sched_switch", "prev_state & CPUS{0,1} || next_prio == CPUS{2}"),
    ("ipi:ipi_send_cpumask", "cpumask == CPUS{0-1} || cpumask & CPUS{1}"),
    ("ipi:ipi_send_cpumask", "cpumask != CPUS{0}"),
    ("ktest:mixed", 'rname ~ "*b" || tag ~ "a*"'),
    ("ktest:mixed", "args & CPUS{0,1} || big & CPUS{0,3} || small < 0"),
    ("syscalls:sys_enter_openat", 'dfd < 2 || !(flags & 1)'),  # filename: a pointer, refused in filters
]


@pytest.mark.parametrize("event, text", CASES)
def test_filters_run_natively(stream, event, text):
    out = agree(stream, probe_script([(event, text), (event, f"!({text})")]))
    assert out  # one of the two matched something


# The kernel's quirks, each a filter that matches some records (True) or
# none (False) of the stream above.
QUIRKS = [
    # A suffix of a char[16] is the bytes before the array's last one.
    ('prev_comm ~ "*no"', True),
    ('prev_comm ~ "*op"', False),
    # A substring may end at the kernel's length, not past it.
    ('prev_comm ~ "*nop*"', True),
    ('prev_comm ~ "*nopq*"', False),
    # A whole char[16] string is its 16 bytes.
    ('prev_comm == "abcdefghijklmnop"', True),
    ('prev_comm == "abcdefghijklmnopq"', True),
    # A prefix longer than the field never matches.
    ('prev_comm ~ "abcdefghijklmnopq*"', False),
    # A pattern that starts with a digit is a whole string, * included.
    ('next_comm ~ "0*"', True),
    ('next_comm ~ "0*" && next_comm == "0*x"', False),
    # Class ranges include both ends; the idle task is swapper/N.
    ('comm ~ "swapper/[0-1]" && comm != "swapper/0"', True),
    # comm is 16 NUL-padded bytes: a suffix is bytes 14 and before.
    ('comm ~ "*1" || comm ~ "*h"', False),
]


@pytest.mark.parametrize("text, matches", QUIRKS)
def test_kernel_quirks(stream, text, matches):
    out = agree(stream, probe_script([("sched:sched_switch", text)]))
    assert bool(out) == matches


def test_strings_cut_short(stream):
    """A string reads on to the end of RAW and one NUL past it; a prefix
    longer than the kernel's length does not match."""
    out = agree(stream, probe_script([("sched:sched_process_exec", 'filename ~ "*so\0*"'),
                                      ("sched:sched_process_exec", 'filename ~ "*so\0\0*"'),
                                      ("sched:sched_process_exec", 'filename ~ "libc*"')]))
    assert out.startswith(b"0\t") and b"\n1\t" not in out and b"\n2\t" in out


def test_inverted_class_at_the_end_of_the_string_does_not_match(stream):
    """A class needs a character, inverted or not (lib/glob.c)."""
    assert _GLOB(b"a[!b]", b"a") is False
    script = probe_script([("sched:sched_switch", 'prev_comm ~ "a[!b]" || comm ~ "bash[!x]"')])
    assert agree(stream, script) == b""


@pytest.mark.parametrize("pattern, op, kind, search, negate", [
    (b"abc", "==", M_FULL, b"abc", False),
    (b"a*c", "!=", M_FULL, b"a*c", True),
    (b"abc", "~", M_FULL, b"abc", False),
    (b"!abc", "~", M_FULL, b"abc", True),
    (b"abc*", "~", M_FRONT, b"abc", False),
    (b"*abc", "~", M_END, b"abc", False),
    (b"*abc*", "~", M_MIDDLE, b"abc", False),
    (b"*", "~", M_END, b"", False),
    (b"**", "~", M_MIDDLE, b"", False),
    (b"!*a*", "~", M_MIDDLE, b"a", True),
    (b"a*b", "~", M_GLOB, b"a*b", False),
    (b"*a*b*", "~", M_GLOB, b"*a*b*", False),
    (b"ab?", "~", M_GLOB, b"ab?", False),
    (b"*[ab]", "~", M_GLOB, b"*[ab]", False),
    (b"a\\*", "~", M_GLOB, b"a\\*", False),
    (b"1*", "~", M_FULL, b"1*", False),  # a leading digit: always the whole string
    (b"", "~", M_FULL, b"", False),
])
def test_match_kinds_are_the_kernels(pattern, op, kind, search, negate):
    assert _match_kind(pattern, op) == (kind, search, negate)


def test_every_filter_compiles():
    """No predicate kind is left to the Python path any more."""
    fmt = FORMATS["sched:sched_switch"]
    for text in ('comm ~ "[!a]*"', "cpu & CPUS{0-3,7}", "prev_pid.function == foo",
                 'next_comm.ustring == "x"', 'prev_comm ~ "\\\\"'):
        program, patterns = compile_program(kfilter.parse_filter(text), fmt)
        assert len(program) == 6
