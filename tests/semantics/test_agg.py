"""Aggregations (semantics/agg.py): bucket keys, the tables the updates
build, print_agg's exact text and its error texts.

Rows are built from bpftrace's layout (a 16-wide label, an 8-wide count,
a 52-wide bar), with bar lengths worked out by hand.
"""

import pytest

from ktapjit.diag import RuntimeFault
from ktapjit.semantics import agg
from ktapjit.semantics.intmath import INT64_MAX, INT64_MIN
from ktapjit.semantics.values import Identities, Table


T = 1000  # --max-table of the aggregation tables made


def row(label, count, ats):
    return label.encode().ljust(16) + b"%8d" % count + b" |" + (b"@" * ats).ljust(52) + b"|\n"


def printed(t):
    return agg.format_agg(t, Identities())


def entries(t):
    return list(t.items())


@pytest.mark.parametrize("value,bucket", [
    (-1, INT64_MIN), (INT64_MIN, INT64_MIN), (0, 0), (1, 1), (2, 2), (3, 2), (4, 4), (1023, 512),
    (1024, 1024), (INT64_MAX, 1 << 62),
])
def test_hist_bucket_is_the_least_value_it_counts(value, bucket):
    assert agg.hist_bucket(value) == bucket


@pytest.mark.parametrize("value,bucket", [
    (-1, INT64_MIN), (0, 0), (9, 0), (10, 10), (29, 20), (30, 30), (INT64_MAX, 30),
])
def test_lhist_bucket(value, bucket):
    assert agg.lhist_bucket(value, 0, 30, 10) == bucket


@pytest.mark.parametrize("bounds,error", [
    ((0, 30, 10), None),
    ((0, 1000, 1), None),
    ((0, 1001, 1), "too many buckets (more than 1000)"),
    ((0, 30, 0), "step must be positive"),
    ((0, 30, -10), "step must be positive"),
    ((30, 30, 10), "min must be less than max"),
    ((0, 30, 7), "max - min must be a multiple of step"),
])
def test_lhist_bounds(bounds, error):
    assert agg.lhist_bounds_error(*bounds) == error


def test_the_tables_updates_build():
    t = Table(100)
    agg.hist(t, b"h", 5, max_table=T)
    agg.hist(t, b"h", 1, max_table=T)
    agg.lhist(t, b"l", -3, 0, 10, 5, max_table=T)
    agg.stats(t, b"s", 4, max_table=T)
    agg.stats(t, b"s", -2, max_table=T)
    assert [k for k, _ in entries(t)] == [b"h", b"l", b"s"]
    assert entries(t.get(b"h")) == [(b"kind", b"hist"), (b"sum", 6), (4, 1), (1, 1)]
    assert entries(t.get(b"l")) == [(b"kind", b"lhist"), (b"min", 0), (b"max", 10), (b"step", 5),
                                    (b"sum", -3), (INT64_MIN, 1)]
    assert entries(t.get(b"s")) == [(b"kind", b"stats"), (b"count", 2), (b"sum", 2), (b"min", -2),
                                    (b"max", 4)]


def test_print_agg_spelled_out():
    t = Table(100)
    for v in (5, 5, 0):
        agg.hist(t, b"read", v, max_table=T)
    agg.stats(t, 3, -7, max_table=T)
    agg.stats(t, 3, 2, max_table=T)
    assert printed(t).decode().split("\n") == [
        "read:",
        "[0]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |",
        "[1]                    0 |                                                    |",
        "[2, 4)                 0 |                                                    |",
        "[4, 8)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
        "",
        "3: count 2, average -2, total -5, min -7, max 2",
        "",
    ]


@pytest.mark.parametrize("value,label", [
    (-5, "(..., 0)"), (0, "[0]"), (1, "[1]"), (2, "[2, 4)"), (700, "[512, 1K)"),
    (1 << 20, "[1M, 2M)"), (1 << 35, "[32G, 64G)"), (1 << 45, "[32T, 64T)"),
    (1 << 55, "[32P, 64P)"), (INT64_MAX, "[4E, 8E)"),
])
def test_hist_labels(value, label):
    t = Table(10)
    agg.hist(t, b"k", value, max_table=T)
    assert printed(t) == b"k:\n" + row(label, 1, 52) + b"\n"


@pytest.mark.parametrize("bounds,value,label", [
    ((0, 30, 10), -1, "(..., 0)"),
    ((0, 30, 10), 30, "[30, ...)"),
    ((0, 30, 10), 12, "[10, 20)"),
    ((-2048, 2048, 1024), -2048, "[-2K, -1K)"),
    ((-2048, 2048, 1024), -1, "[-1K, 0)"),
    ((-2048, 2048, 1024), -3000, "(..., -2K)"),
    ((0, 4 << 20, 1 << 20), 1 << 20, "[1M, 2M)"),
    ((0, 4 << 20, 1 << 19), 1 << 20, "[1024K, 1536K)"),
    ((0, 2000, 1000), 1000, "[1000, 2000)"),
])
def test_lhist_labels(bounds, value, label):
    t = Table(10)
    agg.lhist(t, b"k", value, *bounds, max_table=T)
    assert printed(t) == b"k:\n" + row(label, 1, 52) + b"\n"


def test_bars_truncate_against_the_largest_count():
    t = Table(100)
    for v in (1, 1, 1, 4, 4, 4, 4, 4, 4, 4):
        agg.hist(t, b"k", v, max_table=T)
    # 3 * 52 / 7 = 22.28...
    assert printed(t) == b"k:\n" + row("[1]", 3, 22) + row("[2, 4)", 0, 0) + row("[4, 8)", 7, 52) + b"\n"


def test_sums_and_counts_wrap():
    t = Table(10)
    agg.stats(t, b"s", INT64_MAX, max_table=T)
    agg.stats(t, b"s", INT64_MAX, max_table=T)
    assert t.get(b"s").get(b"sum") == -2
    assert printed(t).startswith(b"s: count 2, average -1, total -2,")


@pytest.mark.parametrize("call,message", [
    (lambda t: agg.hist(None, b"k", 1, max_table=T), "hist: expected a table, got nil"),
    (lambda t: agg.stats(t, b"k", b"1", max_table=T), "stats: value must be an integer, got string"),
    (lambda t: agg.lhist(t, b"k", 1, 0, None, 1, max_table=T), "lhist: max must be an integer, got nil"),
    (lambda t: agg.lhist(t, b"k", 1, 0, 10, 4, max_table=T), "lhist: max - min must be a multiple of step"),
    (lambda t: agg.hist(t, None, 1, max_table=T), "table index is nil"),
    (lambda t: agg.hist(t, b"s", 1, max_table=T), "hist: existing value is not a hist aggregation"),
    (lambda t: agg.lhist(t, b"n", 1, 0, 10, 1, max_table=T), "lhist: existing value is not a lhist aggregation"),
    (lambda t: agg.lhist(t, b"l", 1, 0, 10, 2, max_table=T), "lhist: existing aggregation has other bounds"),
    (lambda t: agg.format_agg(5, Identities()), "print_agg: expected a table, got integer"),
    (lambda t: agg.format_agg(t, Identities()),
     "print_agg: values must be aggregations (hist, lhist or stats)"),
])
def test_errors(call, message):
    t = Table(10)
    agg.stats(t, b"s", 1, max_table=T)
    agg.lhist(t, b"l", 1, 0, 10, 1, max_table=T)
    t.set(b"n", 1)
    with pytest.raises(RuntimeFault) as e:
        call(t)
    assert e.value.message == message


def test_new_aggregations_take_the_runs_table_limit():
    t = Table(100)  # an event's array field may allow more than --max-table
    with pytest.raises(RuntimeFault, match=r"table overflow \(4 entries\)"):
        agg.stats(t, b"k", 1, max_table=4)
    assert len(t) == 0


def test_a_failing_update_changes_nothing():
    t = Table(3)
    agg.hist(t, b"k", 1, max_table=3)  # kind, sum and one bucket: full
    with pytest.raises(RuntimeFault, match=r"table overflow \(3 entries\)"):
        agg.hist(t, b"k", 2, max_table=3)
    assert entries(t.get(b"k")) == [(b"kind", b"hist"), (b"sum", 1), (1, 1)]
