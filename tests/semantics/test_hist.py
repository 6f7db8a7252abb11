"""print_hist: exact outputs for typical tables, and its error texts.

Most expectations are built from the printf calls that LANGUAGE.md gives
for the header and rows, so they read like the specification; the first
test spells one output out byte for byte.
"""

import pytest

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.hist import format_hist
from ktapjit.semantics.printf import format_printf
from ktapjit.semantics.values import Function, Identities, Table


def table_of(*pairs):
    t = Table(1000)
    for k, v in pairs:
        t.set(k, v)
    return t


def hist(t, n=None, ids=None):
    return format_hist(t, n, ids or Identities())


def printf(f, *args):
    return format_printf(f, list(args), Identities())


HEADER = printf(b"%31s%s%s\n", b"value ", b"------------- Distribution -------------", b" count")
CUT = printf(b"%31s |\n", b"...")


def row(key, ats, count):
    bar = (b"@" * ats).ljust(38)
    key_conv = b"%31d" if type(key) is int else b"%31s"
    return printf(key_conv + b" |%s%-7d\n", key, bar, count)


def test_spelled_out():
    t = table_of((b"read", 3), (b"write", 1))
    # 31-wide key, " |", a 38-wide bar (3*38/4 = 28 and 1*38/4 = 9), "%-7d"
    assert hist(t).decode().split("\n") == [
        "                         value ------------- Distribution ------------- count",
        "                           read |@@@@@@@@@@@@@@@@@@@@@@@@@@@@          3      ",
        "                          write |@@@@@@@@@                             1      ",
        "",
    ]


def test_empty_table_prints_only_the_header():
    assert hist(Table(10)) == HEADER
    assert hist(Table(10), 0) == HEADER


def test_rows_sort_by_value_descending():
    t = table_of((1, 10), (2, 30), (3, 20))
    # bars are count*38/total, total = 60
    assert hist(t) == HEADER + row(2, 19, 30) + row(3, 12, 20) + row(1, 6, 10)


def test_ties_keep_insertion_order():
    t = table_of((b"c", 5), (b"a", 7), (b"b", 5), (b"d", 5))
    # total 22: 7*38/22 = 12, 5*38/22 = 8
    assert hist(t) == (
        HEADER + row(b"a", 12, 7) + row(b"c", 8, 5) + row(b"b", 8, 5) + row(b"d", 8, 5)
    )


def test_reinserted_key_ties_after_the_others():
    t = table_of((b"x", 1), (b"y", 1))
    t.set(b"x", None)
    t.set(b"x", 1)
    assert hist(t) == HEADER + row(b"y", 19, 1) + row(b"x", 19, 1)


def test_rows_beyond_n_are_cut_with_an_ellipsis():
    t = table_of((1, 1), (2, 2), (3, 3), (4, 4))
    assert hist(t, 2) == HEADER + row(4, 15, 4) + row(3, 11, 3) + CUT
    assert hist(t, 4) == HEADER + row(4, 15, 4) + row(3, 11, 3) + row(2, 7, 2) + row(1, 3, 1)


@pytest.mark.parametrize("n", [0, -1, -9223372036854775808])
def test_n_below_one_shows_no_rows(n):
    assert hist(table_of((1, 1)), n) == HEADER + CUT


def test_default_is_twenty_rows():
    t = table_of(*[(k, 1) for k in range(25)])
    out = hist(t)
    assert out == HEADER + b"".join(row(k, 1, 1) for k in range(20)) + CUT
    assert hist(t, None) == out
    assert hist(t, 25).count(b"\n") == 26


def test_zero_total_gives_empty_bars():
    t = table_of((b"a", 0), (b"b", 0))
    assert hist(t) == HEADER + row(b"a", 0, 0) + row(b"b", 0, 0)


def test_zero_counts_among_others():
    t = table_of((b"z", 0), (b"a", 3))
    assert hist(t) == HEADER + row(b"a", 38, 3) + row(b"z", 0, 0)


def test_total_does_not_wrap():
    big = 9223372036854775807
    t = table_of((1, big), (2, big))
    assert hist(t) == HEADER + row(1, 19, big) + row(2, 19, big)


def test_count_wider_than_its_column():
    t = table_of((b"k", 123456789))
    assert hist(t) == HEADER + row(b"k", 38, 123456789)


def test_keys_of_every_kind_print_as_print_does():
    ids = Identities()
    inner, f = Table(1), Function(None, ())
    t = table_of((b"s", 1), (-5, 6), (True, 3), (inner, 4), (f, 2), (b"\xff\0", 5))
    assert hist(t, None, ids) == (
        HEADER
        + row(-5, 10, 6)
        + row(b"\xff\0", 9, 5)
        + row(b"table: 1", 7, 4)
        + row(b"true", 5, 3)
        + row(b"function: 1", 3, 2)
        + row(b"s", 1, 1)
    )


def test_long_keys_are_not_cut():
    key = b"k" * 40
    assert hist(table_of((key, 1))) == HEADER + key + b" |" + b"@" * 38 + b"1      \n"


def test_only_printed_keys_are_numbered_in_printed_order():
    ids = Identities()
    a, b, c = Table(1), Table(1), Table(1)
    t = table_of((a, 1), (b, 3), (c, 2))
    assert hist(t, 2, ids) == HEADER + row(b"table: 1", 19, 3) + row(b"table: 2", 12, 2) + CUT
    assert ids.number(a) == 3


ERRORS = [
    (None, None, "print_hist: expected a table, got nil"),
    (b"t", None, "print_hist: expected a table, got string"),
    (5, 2, "print_hist: expected a table, got integer"),
    (table_of((1, 1)), b"2", "print_hist: row count must be an integer, got string"),
    (table_of((1, 1)), True, "print_hist: row count must be an integer, got boolean"),
    (table_of((1, -1)), None, "print_hist: values must be non-negative integers"),
    (table_of((1, b"1")), None, "print_hist: values must be non-negative integers"),
    (table_of((1, True)), None, "print_hist: values must be non-negative integers"),
    (table_of((1, Table(1))), None, "print_hist: values must be non-negative integers"),
    # values are checked even in rows that would not be shown
    (table_of((1, 5), (2, -1)), 1, "print_hist: values must be non-negative integers"),
    # the row count is checked before the values
    (table_of((1, -1)), b"x", "print_hist: row count must be an integer, got string"),
]


@pytest.mark.parametrize("t, n, message", ERRORS)
def test_errors(t, n, message):
    with pytest.raises(RuntimeFault) as info:
        hist(t, n)
    assert info.value.message == message


def test_a_failing_print_hist_numbers_nothing():
    ids = Identities()
    key = Table(1)
    with pytest.raises(RuntimeFault):
        hist(table_of((key, 1), (2, b"bad")), None, ids)
    other = Table(1)
    assert ids.number(other) == 1
