"""The JIT's native runtime (ktapjit/jit/runtime, through ctypes) against
ktapjit.semantics: tables, interning, concat/stringof, print and identity
numbering, compare/len/div/mod, printf (exact corpora and a hypothesis
property) and print_hist. Every comparison runs the same calls on both sides
and compares the bytes, or the error text.
"""

import ctypes
import functools
import itertools
import random
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktapjit.diag import RuntimeFault
from ktapjit.jit import image, rtlib, runtime_files
from ktapjit.jit.rtlib import KVal
from ktapjit.semantics import agg, intmath, values
from ktapjit.semantics.folded import format_folded
from ktapjit.semantics.hist import format_hist
from ktapjit.semantics.printf import format_printf
from ktapjit.semantics.values import Function, Identities, Table
from tests.semantics.test_printf import ERRORS as PRINTF_ERRORS
from tests.semantics.test_printf import EXACT as PRINTF_EXACT

MIN, MAX = -(1 << 63), (1 << 63) - 1
REPO_ROOT = Path(rtlib.__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rt():
    return rtlib.load()


class Bridge:
    """A kstate mirrored by Identities, and a map between semantic values and
    kvals: a Python Table becomes a C table with the same contents (made on
    first use, so identity is kept), a Function a fake pointer."""

    def __init__(self, rt, max_table=1_000_000, max_string=4096):
        self.rt = rt
        self.state = rt.state(max_table=max_table, max_string=max_string)
        self.s = self.state.ptr
        self.ids = Identities()
        self.max_string = max_string
        self.max_table = max_table
        self._c = {}  # id(py object) -> KVal
        self._py = {}  # (tag, payload) -> py object
        self._keep = []

    def to_c(self, v) -> KVal:
        if v is None:
            return self.rt.nil()
        if v is True or v is False:
            return self.rt.boolean(v)
        if type(v) is int:
            return self.rt.integer(v)
        if type(v) is bytes:
            return self.rt.string(v)
        kv = self._c.get(id(v))
        if kv is not None:
            return kv
        self._keep.append(v)
        if type(v) is Table:
            kv = KVal(rtlib.TABLE, self.state.table_new())
            self._c[id(v)] = kv
            for key, val in v.items():
                assert self.rt.k_table_set(kv.payload, self.to_c(key), self.to_c(val)) == 0
        else:
            kv = KVal(rtlib.FUNCTION, 0x10000 + 16 * len(self._c))
            self._c[id(v)] = kv
        self._py[(kv.tag, kv.payload)] = v
        return kv

    def to_py(self, kv: KVal):
        if kv.tag == rtlib.NIL:
            return None
        if kv.tag == rtlib.BOOLEAN:
            return bool(kv.payload)
        if kv.tag == rtlib.INTEGER:
            return kv.payload
        if kv.tag == rtlib.STRING:
            return self.rt.string_bytes(kv)
        return self._py[(kv.tag, kv.payload)]

    def args(self, seq):
        return (KVal * max(len(seq), 1))(*[self.to_c(a) for a in seq]), len(seq)

    def outcome(self, rc, value=None):
        """('error', text) or ('ok', value, output bytes) for a C call."""
        if rc:
            assert self.state.take_output() == b"", "a failing call wrote output"
            return ("error", self.state.error_message())
        return ("ok", value, self.state.take_output())


def py_outcome(fn, *args, produces_output=False):
    try:
        result = fn(*args)
    except RuntimeFault as e:
        return ("error", e.message)
    return ("ok", None, result) if produces_output else ("ok", result, b"")


# -- ABI ------------------------------------------------------------------------


def test_error_codes_and_tags_match_the_header():
    header = (rtlib.RUNTIME_DIR / "ktrt_abi.h").read_text()
    codes = dict(re.findall(r"\bK_(OK|E_[A-Z_]+) = (\d+)", header))
    assert codes, "no codes found in ktrt_abi.h"
    for name, value in codes.items():
        assert getattr(rtlib, name) == int(value), name
    tags = dict(re.findall(r"\bKT_([A-Z]+) = (\d+)", header))
    assert {k: int(v) for k, v in tags.items()} == {
        "NIL": rtlib.NIL, "BOOL": rtlib.BOOLEAN, "INT": rtlib.INTEGER,
        "STR": rtlib.STRING, "TABLE": rtlib.TABLE, "FUNC": rtlib.FUNCTION,
    }
    assert f"#define KRT_ABI_VERSION {rtlib.ABI_VERSION}\n" in header


def test_state_layout(rt):
    with rt.state(max_table=11, max_string=22, max_loop=33, max_depth=44) as st_:
        f = st_.fields
        assert (f.max_table, f.max_string, f.max_loop, f.max_depth) == (11, 22, 33, 44)
        assert f.err.code == 0
        assert rt.k_fail(st_.ptr, rtlib.E_TOO_MANY_ARGS, 2, 5) == rtlib.E_TOO_MANY_ARGS
        assert (f.err.code, f.err.a, f.err.b) == (rtlib.E_TOO_MANY_ARGS, 2, 5)
        assert rtlib.KStateFields.err.offset == 72  # documented in ktrt_abi.h
        assert st_.error_message() == "too many arguments (function takes 2, got 5)"


MESSAGES = [
    (rtlib.E_COMPARE, rtlib.TABLE, rtlib.NIL, "attempt to compare table with nil"),
    (rtlib.E_ARITH, rtlib.BOOLEAN, 0, "attempt to perform arithmetic on a boolean value"),
    (rtlib.E_CONCAT, rtlib.FUNCTION, 0, "attempt to concatenate a function value"),
    (rtlib.E_INDEX, rtlib.INTEGER, 0, "attempt to index a integer value"),
    (rtlib.E_CALL, rtlib.NIL, 0, "attempt to call a nil value"),
    (rtlib.E_LEN, rtlib.BOOLEAN, 0, "attempt to get length of a boolean value"),
    (rtlib.E_DIV_ZERO, 0, 0, "divide by zero"),
    (rtlib.E_NIL_INDEX, 0, 0, "table index is nil"),
    (rtlib.E_TABLE_OVERFLOW, 1000000, 0, "table overflow (1000000 entries)"),
    (rtlib.E_STRING_TOO_LONG, 0, 0, "string too long"),
    (rtlib.E_LOOP_LIMIT, 1000000, 0, "loop limit exceeded (1000000 iterations)"),
    (rtlib.E_STACK_OVERFLOW, 200, 0, "stack overflow (depth 200)"),
    (rtlib.E_FOR_INITIAL, 0, 0, "'for' initial value must be an integer"),
    (rtlib.E_FOR_LIMIT, 0, 0, "'for' limit must be an integer"),
    (rtlib.E_FOR_STEP, 0, 0, "'for' step must be an integer"),
    (rtlib.E_FOR_STEP_ZERO, 0, 0, "'for' step is zero"),
]


@pytest.mark.parametrize("code, a, b, text", MESSAGES)
def test_error_messages(rt, code, a, b, text):
    # The texts the interpreter raises outside ktapjit.semantics (interp/).
    with rt.state() as s:
        rt.k_fail(s.ptr, code, a, b)
        assert s.error_message() == text
        small = ctypes.create_string_buffer(5)
        assert rt.k_err_message(s.ptr, small, 5) == len(text)  # snprintf-like
        assert small.value == text[:4].encode()


# -- interning ------------------------------------------------------------------


def test_interning_gives_one_pointer_per_content(rt):
    samples = [b"", b"a", b"a\0", b"\0a", b"\0", b"ab", b"\xff" * 3, b"x" * 5000]
    first = [rt.k_intern(s, len(s)) for s in samples]
    assert len(set(first)) == len(samples)
    count = rt.k_intern_count()
    again = [rt.k_intern(bytes(s), len(s)) for s in samples]  # fresh buffers
    assert again == first
    assert rt.k_intern_count() == count
    for s, p in zip(samples, first):
        kv = KVal(rtlib.STRING, p)
        assert rt.string_bytes(kv) == s
        assert ctypes.c_char.from_address(p + 12 + len(s)).value == b"\0"


def test_interning_many_strings(rt):
    # Forces several rebuilds of the intern table.
    words = [b"w%d" % i for i in range(20000)]
    ptrs = [rt.k_intern(w, len(w)) for w in words]
    assert len(set(ptrs)) == len(words)
    assert [rt.k_intern(w, len(w)) for w in words[::97]] == ptrs[::97]


# -- tables ---------------------------------------------------------------------

T1, T2, F1 = Table(5), Table(5), Function(None, ())
KEYS = [0, 1, -1, 2, MIN, MAX, b"", b"1", b"0", b"a\0", b"a", True, False, T1, T2, F1]
VALS = [0, 1, -7, b"", b"v", True, False, T1, F1]


class TablePair:
    """A C table and a semantics Table driven by the same operations."""

    def __init__(self, rt, max_entries):
        self.rt = rt
        self.b = Bridge(rt, max_table=max_entries)
        self.py = Table(max_entries)
        self.c = self.b.state.table_new()

    def set(self, k, v):
        rc = self.rt.k_table_set(self.c, self.b.to_c(k), self.b.to_c(v))
        if rc:
            self.rt.k_fail_table(self.b.s, self.c, rc)
        ours = self.b.outcome(rc)
        assert ours == py_outcome(self.py.set, k, v), (k, v)

    def get(self, k):
        out = KVal()
        found = self.rt.k_table_get(self.c, self.b.to_c(k), ctypes.byref(out))
        expected = self.py.get(k)
        got = self.b.to_py(out)
        assert type(got) is type(expected) and got == expected, k
        assert found == (expected is not None)

    def clear(self):
        self.rt.k_table_clear(self.c)
        self.py.clear()

    def keys(self):
        snap = self.rt.k_table_keys(self.c)
        try:
            n = self.rt.k_snapshot_len(snap)
            keys = [self.b.to_py(self.rt.k_snapshot_get(snap, i)) for i in range(n)]
            assert self.rt.k_snapshot_get(snap, n).tag == rtlib.NIL
        finally:
            self.rt.k_snapshot_free(snap)
        return keys

    def check(self):
        expected = self.py.keys_snapshot()
        got = self.keys()
        assert [(type(k), k) for k in got] == [(type(k), k) for k in expected]
        assert self.rt.k_table_len(self.c) == len(self.py)
        length = ctypes.c_int64()
        assert self.rt.k_len(self.b.s, KVal(rtlib.TABLE, self.c), ctypes.byref(length)) == 0
        assert length.value == len(self.py)
        for k in expected:
            self.get(k)


def test_table_basics(rt):
    p = TablePair(rt, 100)
    for k in KEYS:
        p.set(k, b"value")
    p.check()
    # bool, int and string keys never collide
    p.set(1, 10)
    p.set(b"1", 20)
    p.set(True, 30)
    p.get(1), p.get(b"1"), p.get(True), p.get(False), p.get(2)
    p.get(None)  # t[nil] reads nil
    p.check()


def test_table_delete_and_reinsert_moves_to_end(rt):
    p = TablePair(rt, 100)
    for k in (b"a", b"b", b"c", 1, 2):
        p.set(k, 1)
    p.set(b"b", None)
    p.set(b"zz", None)  # deleting a missing key is a no-op
    p.check()
    p.set(b"a", 5)  # overwrite keeps the place
    p.set(b"b", 2)  # reinsert goes to the end
    p.check()
    assert p.keys() == [b"a", b"c", 1, 2, b"b"]


def test_table_nil_key_and_overflow(rt):
    p = TablePair(rt, 3)
    p.set(None, 1)  # table index is nil
    p.set(None, None)  # the nil key is checked before the value
    for k in (1, 2, 3):
        p.set(k, k)
    p.set(4, 4)  # table overflow (3 entries)
    p.set(4, None)  # deleting a missing key at the limit is fine
    p.set(2, 22)  # overwriting at the limit is fine
    p.check()
    p.set(1, None)
    p.set(4, 4)  # room again after a delete
    p.check()
    assert p.keys() == [2, 3, 4]


def test_table_overflow_message(rt):
    with rt.state(max_table=2) as s:
        t = s.table_new()
        for k in (1, 2, 3):
            rc = rt.k_table_set(t, rt.integer(k), rt.integer(k))
        assert rc == rtlib.E_TABLE_OVERFLOW
        rt.k_fail_table(s.ptr, t, rc)
        assert s.error_message() == "table overflow (2 entries)"


def test_snapshot_is_a_copy(rt):
    p = TablePair(rt, 100)
    for k in range(10):
        p.set(k, k)
    snap = rt.k_table_keys(p.c)
    p.set(3, None)
    p.set(3, 1)
    p.set(100, 1)
    p.clear()
    assert [rt.k_snapshot_get(snap, i).payload for i in range(rt.k_snapshot_len(snap))] == list(
        range(10)
    )
    rt.k_snapshot_free(snap)
    p.check()
    p.set(b"x", 1)  # usable after clear
    p.check()


def test_table_many_ops_against_semantics(rt):
    # Growth, compaction, tombstones, overflow and clear over many operations.
    rnd = random.Random(7)
    p = TablePair(rt, 1500)
    keys = list(range(-1000, 1000)) + [b"k%d" % i for i in range(1000)] + [True, False]
    for step in range(30000):
        k = rnd.choice(keys)
        r = rnd.random()
        if r < 0.6:
            p.set(k, step)
        elif r < 0.95:
            p.set(k, None)
        elif r < 0.9995:
            p.get(k)
        else:
            p.clear()
        if step % 5000 == 0:
            p.check()
    p.check()


table_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(KEYS + [None]), st.sampled_from(VALS + [None])),
        st.tuples(st.just("set"), st.integers(-20, 20), st.integers(0, 3)),
        st.tuples(st.just("del"), st.sampled_from(KEYS)),
        st.tuples(st.just("del"), st.integers(-20, 20)),
        st.tuples(st.just("get"), st.sampled_from(KEYS + [None, 7])),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=table_ops, limit=st.sampled_from([1, 4, 12, 1000]))
def test_table_property(rt, ops, limit):
    p = TablePair(rt, limit)
    for op in ops:
        if op[0] == "set":
            p.set(op[1], op[2])
        elif op[0] == "del":
            p.set(op[1], None)
        elif op[0] == "get":
            p.get(op[1])
        else:
            p.clear()
    p.check()


# -- value text, print, stringof, concat -----------------------------------------

SCALARS = [None, True, False, 0, -5, MIN, MAX, b"", b"ab", b"\0\xff", b"x" * 10]


def test_print_and_identity_numbering(rt):
    b = Bridge(rt)
    ta, tb, tc = Table(9), Table(9), Table(9)
    fa, fb = Function(None, ()), Function(None, ())
    calls = [
        (),
        (1,),
        (None, True, False, -1, b"a\0b", b""),
        (tb, fa, ta, tb),
        (fb, fa, tc),
        (b"\t", ta),
    ]
    for args in calls:
        arr, n = b.args(args)
        assert b.outcome(rt.k_print(b.s, arr, n)) == py_outcome(
            values.print_line, args, b.ids, produces_output=True
        )
    assert b.state.fields.n_tables == 3 and b.state.fields.n_funcs == 2


def test_many_identities_and_a_large_output(rt):
    # Grows the identity map and the output buffer; output is taken once.
    b = Bridge(rt)
    objs = [Table(1) if i % 3 else Function(None, ()) for i in range(600)]
    rnd = random.Random(3)
    expected = []
    for _ in range(400):
        args = tuple(rnd.choice(objs) for _ in range(rnd.randint(1, 6))) + (b"x" * 100,)
        arr, n = b.args(args)
        assert rt.k_print(b.s, arr, n) == 0
        expected.append(values.print_line(args, b.ids))
    assert b.state.take_output() == b"".join(expected)
    assert b.state.take_output() == b""


def test_value_text_and_stringof_number_in_the_same_order(rt):
    b = Bridge(rt, max_string=9)  # "table: 1" fits, "function: 1" does not
    ta, tb, fa = Table(9), Table(9), Function(None, ())
    for v in [tb, fa, ta, tb, fa, *SCALARS]:
        out = KVal()
        ours = b.outcome(rt.k_stringof(b.s, b.to_c(v), ctypes.byref(out)))
        if ours[0] == "ok":
            ours = ("ok", b.to_py(out), ours[2])
        assert ours == py_outcome(values.stringof, v, b.ids, b.max_string), v
        assert rt.k_value_text(b.s, b.to_c(v), ctypes.byref(out)) == 0
        assert b.to_py(out) == values.value_text(v, b.ids)


CONCAT_VALUES = SCALARS + [Table(1), Function(None, ())]


@pytest.mark.parametrize("max_string", [4096, 4, 0])
def test_concat(rt, max_string):
    b = Bridge(rt, max_string=max_string)
    for x, y in itertools.product(CONCAT_VALUES, repeat=2):
        out = KVal()
        ours = b.outcome(rt.k_concat(b.s, b.to_c(x), b.to_c(y), ctypes.byref(out)))
        if ours[0] == "ok":
            ours = ("ok", b.to_py(out), b"")
        assert ours == py_outcome(values.concat, x, y, max_string), (x, y)


def test_concat_long_strings(rt):
    b = Bridge(rt, max_string=6001)  # malloc path above 1 KiB
    x = b"a\0" * 1500
    out = KVal()
    assert rt.k_concat(b.s, b.to_c(x), b.to_c(x), ctypes.byref(out)) == 0
    assert b.to_py(out) == x + x
    assert rt.k_concat(b.s, b.to_c(x + x), b.to_c(b"bc"), ctypes.byref(out)) != 0
    assert b.state.error_message() == "string too long"


# -- compare, len, div, mod -------------------------------------------------------

COMPARE_VALUES = [None, True, 0, 1, -1, MIN, MAX, b"", b"a", b"ab", b"b", b"\x00", b"\xff",
                  b"a\xff", b"a\x00", Table(1), Function(None, ())]


def test_compare(rt):
    b = Bridge(rt)
    for x, y in itertools.product(COMPARE_VALUES, repeat=2):
        out = ctypes.c_int64()
        ours = b.outcome(rt.k_compare(b.s, b.to_c(x), b.to_c(y), ctypes.byref(out)))
        if ours[0] == "ok":
            ours = ("ok", out.value, b"")
        assert ours == py_outcome(values.compare, x, y), (x, y)


def test_len(rt):
    b = Bridge(rt)
    t = Table(10)
    t.set(1, 1)
    t.set(b"x", 2)
    for v in COMPARE_VALUES + [t, b"a\0b"]:
        out = ctypes.c_int64()
        ours = b.outcome(rt.k_len(b.s, b.to_c(v), ctypes.byref(out)))
        if ours[0] == "ok":
            ours = ("ok", out.value, b"")
        assert ours == py_outcome(values.length, v), v


DIV_VALUES = [0, 1, -1, 2, -2, 3, -7, 7, 100, MIN, MIN + 1, MAX]


@pytest.mark.parametrize("op", ["/", "%"])
def test_div_mod(rt, op):
    b = Bridge(rt)
    fn = rt.k_div if op == "/" else rt.k_mod
    for x, y in itertools.product(DIV_VALUES, repeat=2):
        out = ctypes.c_int64()
        ours = b.outcome(fn(b.s, x, y, ctypes.byref(out)))
        if ours[0] == "ok":
            ours = ("ok", out.value, b"")
        assert ours == py_outcome(intmath.arith, op, x, y), (x, op, y)


# -- printf -------------------------------------------------------------------------


def run_printf(b, fmt, args):
    """Both sides of one printf call on a Bridge; returns (ours, expected)."""
    arr, n = b.args(args)
    ours = b.outcome(b.rt.k_printf(b.s, b.to_c(fmt), arr, n))
    expected = py_outcome(format_printf, fmt, list(args), b.ids, produces_output=True)
    return ours, expected


@pytest.mark.parametrize("fmt, args", [(f, a) for f, a, _ in PRINTF_EXACT + PRINTF_ERRORS])
def test_printf_corpus(rt, fmt, args):
    b = Bridge(rt)
    ours, expected = run_printf(b, fmt, args)
    assert ours == expected


def test_printf_numbers_tables_only_when_it_succeeds(rt):
    b = Bridge(rt)
    t1, t2, f = Table(1), Table(1), Function(None, ())
    for fmt, args in [
        (b"%s %d", (t1, None)),  # fails: numbers nothing
        (b"%s %s %s", (t2, f, t1)),
        (b"%5s|%-12s|%.3s", (t1, f, t2)),
    ]:
        ours, expected = run_printf(b, fmt, args)
        assert ours == expected


_INT_ARGS = st.one_of(st.integers(MIN, MAX), st.sampled_from([MIN, -1, 0, 1, 255, 256, MAX]))
_ANY_ARGS = st.one_of(
    _INT_ARGS, st.binary(max_size=8), st.sampled_from([None, True, False, "T0", "T1", "F0"])
)
# Mostly valid pieces, so that most calls render; every error still comes up.
_NUMBERS = st.integers(0, 40).map(
    lambda i: "" if i < 15 else str(i - 15) if i < 38 else ["4096", "0004096", "4097"][i - 38]
)
_CONVS = st.sampled_from(list("diuxXocs%") * 16 + ["f", "q", "*", "\n", "\xff", "\0", "."])
_LENGTHS = st.sampled_from([""] * 24 + ["l", "ll", "h", "l", "ll", "h", "hh", "lh", "lll"])


@st.composite
def printf_calls(draw):
    """A format and arguments that mostly, but not always, suit it."""
    pieces, args = [], []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 2)) == 0:
            pieces.append(draw(st.binary(max_size=6)).replace(b"%", b""))
            continue
        flags = "".join(draw(st.lists(st.sampled_from("-+ 0#"), max_size=4)))
        width = draw(_NUMBERS)
        precision = draw(st.one_of(st.just(None), _NUMBERS))
        conv = draw(_CONVS)
        text = "%" + flags + width + ("" if precision is None else "." + precision)
        pieces.append((text + draw(_LENGTHS) + conv).encode("latin-1"))
        if conv in "diuxXoc" and draw(st.integers(0, 19)) > 0:
            args.append(draw(_INT_ARGS))
        elif conv != "%":
            args.append(draw(_ANY_ARGS))
    fmt = b"".join(pieces)
    cut = draw(st.integers(0, 19))
    if cut < 2 and fmt:  # end inside a conversion now and then
        fmt = fmt[: len(fmt) - cut - 1]
    change = draw(st.integers(0, 19))
    if change == 0:
        args = args[:-1]
    elif change == 1:
        args += draw(st.lists(_ANY_ARGS, max_size=2))
    return fmt, args


@settings(max_examples=400, deadline=None)
@given(calls=st.lists(printf_calls(), min_size=1, max_size=3))
def test_printf_property(rt, calls):
    b = Bridge(rt)
    pool = {"T0": Table(1), "T1": Table(1), "F0": Function(None, ())}
    for fmt, args in calls:
        args = tuple(pool.get(a, a) if type(a) is str else a for a in args)
        ours, expected = run_printf(b, fmt, args)
        assert ours == expected, (fmt, args)


# -- print_hist ----------------------------------------------------------------------


def table_of(*pairs, limit=1000):
    t = Table(limit)
    for k, v in pairs:
        t.set(k, v)
    return t


def _reinserted():
    t = table_of((b"x", 1), (b"y", 1), (b"z", 2))
    t.set(b"x", None)
    t.set(b"x", 1)
    return t


HT1, HF1 = Table(1), Function(None, ())
HIST_CASES = [
    (Table(1), None),
    (Table(1), 0),
    (table_of((b"read", 3), (b"write", 1)), None),
    (table_of((1, 10), (2, 30), (3, 20)), None),
    (table_of((b"c", 5), (b"a", 7), (b"b", 5), (b"d", 5)), None),
    (_reinserted(), None),
    (table_of((1, 1), (2, 2), (3, 3), (4, 4)), 2),
    (table_of((1, 1), (2, 2), (3, 3), (4, 4)), 4),
    (table_of((1, 1), (2, 2), (3, 3), (4, 4)), 5),
    (table_of((1, 1)), 0),
    (table_of((1, 1)), -1),
    (table_of((1, 1)), MIN),
    (table_of((1, 1)), MAX),
    (table_of(*[(k, 1) for k in range(25)]), None),
    (table_of(*[(k, k % 4) for k in range(25)]), 25),
    (table_of((b"a", 0), (b"b", 0)), None),
    (table_of((b"z", 0), (b"a", 3)), None),
    (table_of((1, MAX), (2, MAX), (3, MAX)), None),  # total does not wrap
    (table_of((b"k", 123456789)), None),
    (table_of((b"k" * 40, 2), (b"a\0b", 1), (b"", 1), (MIN, 3)), None),
    (table_of((True, 1), (False, 2), (HT1, 3), (HF1, 4), (b"x" * 31, 5), (b"y" * 30, 6)), None),
    # errors
    (None, None),
    (1, None),
    (b"t", 3),
    (table_of((1, 1)), b"3"),
    (table_of((1, 1)), True),
    (table_of((1, 1), (2, -1)), None),
    (table_of((1, 1), (2, True)), None),
    (table_of((1, b"1")), 5),
    (table_of((1, HT1)), b"bad rows first"),
]


@pytest.mark.parametrize("table, n", HIST_CASES)
def test_print_hist(rt, table, n):
    b = Bridge(rt)
    ours = b.outcome(rt.k_print_hist(b.s, b.to_c(table), b.to_c(n)))
    assert ours == py_outcome(format_hist, table, n, b.ids, produces_output=True)


def test_print_hist_numbers_printed_keys_only(rt):
    b = Bridge(rt)
    ta, tb, tc = Table(1), Table(1), Table(1)
    hist = table_of((ta, 1), (tb, 5), (tc, 3))
    for call in [(hist, 2), (table_of((ta, -1)), None), (hist, None)]:
        ours = b.outcome(rt.k_print_hist(b.s, b.to_c(call[0]), b.to_c(call[1])))
        assert ours == py_outcome(format_hist, *call, b.ids, produces_output=True)
    arr, n = b.args((ta, tb, tc))
    assert b.outcome(rt.k_print(b.s, arr, n)) == py_outcome(
        values.print_line, (ta, tb, tc), b.ids, produces_output=True
    )


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.one_of(st.integers(-5, 30), st.binary(max_size=35)),
            st.one_of(st.integers(0, 50), st.sampled_from([0, MAX, 2**40])),
        ),
        max_size=30,
    ),
    n=st.one_of(st.none(), st.integers(-2, 32)),
)
def test_print_hist_property(rt, pairs, n):
    b = Bridge(rt)
    t = table_of(*pairs)
    ours = b.outcome(rt.k_print_hist(b.s, b.to_c(t), b.to_c(n)))
    assert ours == py_outcome(format_hist, t, n, b.ids, produces_output=True)


# -- print_folded ------------------------------------------------------------------------

frame = st.sampled_from([b"", b"main", b"main+0x1f", b"spin+0xzz", b"+0x10", b"a;b", b"[unknown]", b"x+0x"])


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.one_of(st.integers(-5, 30), st.lists(frame, max_size=5).map(b"\n".join)),
            st.one_of(st.integers(-1, 50), st.sampled_from([0, MAX, 2**40]), st.none().map(lambda _: b"s")),
        ),
        max_size=30,
    ),
)
def test_print_folded_property(rt, pairs):
    b = Bridge(rt)
    t = table_of(*pairs)
    ours = b.outcome(rt.k_print_folded(b.s, b.to_c(t)))
    assert ours == py_outcome(format_folded, t, b.ids, produces_output=True)


def test_print_folded_rejects_a_non_table(rt):
    b = Bridge(rt)
    for value in (None, 3, b"x"):
        ours = b.outcome(rt.k_print_folded(b.s, b.to_c(value)))
        assert ours[0] == "error"
        assert ours == py_outcome(format_folded, value, b.ids, produces_output=True)


# -- aggregations ----------------------------------------------------------------------

_AGG_VALUES = st.one_of(st.integers(-5, 300), st.sampled_from([0, -1, MIN, MAX, 2**40, 2**62]),
                        st.sampled_from([None, b"x", True]))
_AGG_KEYS = st.sampled_from([b"a", b"a", 7, None])
_LHIST_BOUNDS = st.sampled_from([
    (0, 100, 10), (-2048, 2048, 1024), (0, 4 << 20, 1 << 20), (MIN, MIN + 10, 5), (1000, 3000, 1000),
    (0, 10, 3), (10, 0, 1), (0, 1001, 1), (0, 10, 0), (MIN, MAX, 1), (0, b"10", 1), (None, 10, 1),
])
_AGG_OPS = st.one_of(
    st.tuples(st.sampled_from(["hist", "stats"]), _AGG_KEYS, _AGG_VALUES),
    st.tuples(st.just("lhist"), _AGG_KEYS, _AGG_VALUES, _LHIST_BOUNDS),
    # break an aggregation the way a script could: t[k][field] = value
    st.tuples(st.just("store"), _AGG_KEYS,
              st.sampled_from([b"kind", b"sum", b"count", b"min", b"step", b"note", 1, 3, 8, 20, MIN]),
              st.sampled_from([None, 0, -1, 5, b"hist", b"stats", b"s"])),
    st.tuples(st.just("print")),
)


def _agg_step(b, t, tc, op):
    """Run one operation on the Python table t and its C twin tc; both outcomes."""
    kind = op[0]
    if kind == "print":
        return (b.outcome(b.rt.k_print_agg(b.s, tc)),
                py_outcome(agg.format_agg, t, b.ids, produces_output=True))
    if kind == "store":
        _, key, field, value = op
        inner = t.get(key)
        if type(inner) is not Table:
            return None, None
        held = KVal()
        b.rt.k_table_get(tc.payload, b.to_c(key), ctypes.byref(held))
        rc = b.rt.k_table_set(held.payload, b.to_c(field), b.to_c(value))
        return rc == 0, py_outcome(inner.set, field, value)[0] == "ok"
    args = [t, op[1], op[2], *(op[3] if kind == "lhist" else ())]
    argv = (KVal * len(args))(tc, *[b.to_c(a) for a in args[1:]])
    update = functools.partial(getattr(agg, kind), max_table=b.max_table)
    return b.outcome(getattr(b.rt, f"k_{kind}")(b.s, argv)), py_outcome(update, *args)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(_AGG_OPS, max_size=25), limit=st.sampled_from([3, 5, 1000]))
def test_aggregations_property(rt, ops, limit):
    b = Bridge(rt, max_table=limit)
    t = Table(limit)
    tc = b.to_c(t)
    for op in [*ops, ("print",)]:
        ours, theirs = _agg_step(b, t, tc, op)
        assert ours == theirs, op


# Aggregations as scripts can leave them: each is made, changed by stores, then printed.
_LH = ("lhist", b"a", 15, (0, 100, 10))
AGG_CORPUS = {
    "lhist on grid": [_LH, ("store", b"a", 20, 4)],
    "lhist off grid": [_LH, ("store", b"a", 3, 1)],
    "lhist below, min INT64_MIN": [("lhist", b"a", MIN, (MIN, MIN + 10, 5)), ("store", b"a", MIN, 2)],
    "lhist bad bounds": [_LH, ("store", b"a", b"step", 3)],
    "lhist every bucket": [("lhist", b"a", v, (-2048, 2048, 1024)) for v in range(-3000, 3000, 500)],
    "hist non-power": [("hist", b"a", 4), ("store", b"a", 6, 1)],
    "hist INT64_MIN bucket": [("hist", b"a", 4), ("store", b"a", MIN, 3)],
    "hist zero counts": [("hist", b"a", 4), ("store", b"a", 4, 0)],
    "hist no buckets": [("hist", b"a", 4), ("store", b"a", 4, None)],
    "hist string count": [("hist", b"a", 4), ("store", b"a", 4, b"s")],
    "hist kind removed": [("hist", b"a", 4), ("store", b"a", b"kind", None)],
    "hist sum removed": [("hist", b"a", 4), ("store", b"a", b"sum", None)],
    "hist extra field": [("hist", b"a", 4), ("store", b"a", b"note", 1)],
    "hist min field": [("hist", b"a", 4), ("store", b"a", b"min", 1)],
    "stats count 0": [("stats", b"a", 4), ("store", b"a", b"count", 0)],
    "stats bucket": [("stats", b"a", 4), ("store", b"a", 1, 1)],
    "stats negative average": [("stats", b"a", -7), ("stats", b"a", 2), ("stats", 7, MIN)],
    "kind changed": [("hist", b"a", 4), ("store", b"a", b"kind", b"stats"), ("stats", b"a", 1)],
    "bounds changed": [_LH, ("store", b"a", b"max", 200), ("lhist", b"a", 1, (0, 100, 10))],
}


@pytest.mark.parametrize("ops", AGG_CORPUS.values(), ids=AGG_CORPUS.keys())
def test_aggregation_corpus(rt, ops):
    b = Bridge(rt)
    t = Table(1000)
    tc = b.to_c(t)
    for op in [*ops, ("print",)]:
        ours, theirs = _agg_step(b, t, tc, op)
        assert ours == theirs, op


def test_print_agg_rejects_a_non_table(rt):
    b = Bridge(rt)
    for value in (None, 3, b"x"):
        ours = b.outcome(rt.k_print_agg(b.s, b.to_c(value)))
        assert ours[0] == "error"
        assert ours == py_outcome(agg.format_agg, value, b.ids, produces_output=True)


# -- linking and caching ---------------------------------------------------------------


def test_the_linked_runtime_is_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    first = rtlib._cached_image()
    [cached] = (tmp_path / "rt").iterdir()
    assert cached.name == f"ktrt-{image.host_machine()}-{rtlib.runtime_identity()}.kimg"
    mtime = cached.stat().st_mtime_ns
    assert rtlib._cached_image() == first == rtlib.runtime_image()  # read back, not relinked
    assert cached.stat().st_mtime_ns == mtime


def test_a_damaged_cached_runtime_is_relinked(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    rtlib._cached_image()
    [cached] = (tmp_path / "rt").iterdir()
    cached.write_bytes(b"\x00garbage")
    assert rtlib._cached_image() == rtlib.runtime_image()
    assert image.Image.from_bytes(cached.read_bytes()) == rtlib.runtime_image()


@pytest.mark.parametrize("cache", ["/dev/null/not-a-directory", "/proc/version/x"])
def test_an_unusable_cache_only_costs_the_link(cache):
    code = ("from ktapjit.jit import rtlib; rt = rtlib.load(); "
            "print(rt.string_bytes(rt.string(b'mapped')).decode())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KTAPJIT_CACHE_DIR": cache}, cwd=REPO_ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "mapped\n", "")


@pytest.mark.parametrize("target", ["aarch64", "aarch64-unknown-linux-gnu", "aarch64-linux-gnu"])
def test_a_target_is_named_or_given_by_triple(target):
    assert rtlib.runtime_object(target) == runtime_files.object_path("aarch64").read_bytes()


def test_an_unknown_target_is_one_clear_line():
    with pytest.raises(rtlib.RuntimeBuildError) as info:
        rtlib.runtime_bitcode("riscv64-unknown-linux-gnu")
    assert str(info.value) == "ktapjit: no runtime for target 'riscv64-unknown-linux-gnu' (known: aarch64, x86_64)"


def test_a_missing_runtime_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(runtime_files, "object_path", lambda target: Path("/nonexistent/ktrt.o"))
    with pytest.raises(rtlib.RuntimeBuildError) as info:
        rtlib.runtime_object("x86_64")
    assert str(info.value) == ("ktapjit: the JIT runtime for x86_64 is not in this installation "
                               "(No such file or directory)")
