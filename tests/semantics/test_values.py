"""The value model: types, truth, equality, tables, identities, printing,
ordering, concatenation and length."""

import pytest

from ktapjit.diag import RuntimeFault
from ktapjit.semantics.values import (
    Cell,
    Function,
    Identities,
    Table,
    compare,
    concat,
    is_true,
    length,
    print_line,
    stringof,
    type_name,
    value_text,
    values_equal,
)

T1, T2 = Table(10), Table(10)
F1, F2 = Function(None, ()), Function(None, ())

# -- types and truth -------------------------------------------------------

TYPE_NAMES = [
    (None, "nil"),
    (True, "boolean"),
    (False, "boolean"),
    (0, "integer"),
    (-1, "integer"),
    (b"", "string"),
    (b"a\0b", "string"),
    (T1, "table"),
    (F1, "function"),
]


@pytest.mark.parametrize("v, name", TYPE_NAMES)
def test_type_name(v, name):
    assert type_name(v) == name


@pytest.mark.parametrize(
    "v, truth",
    [(None, False), (False, False), (True, True), (0, True), (b"", True), (T1, True), (F1, True)],
)
def test_only_nil_and_false_are_false(v, truth):
    assert is_true(v) is truth


# -- equality --------------------------------------------------------------

EQUALITY = [
    (None, None, True),
    (True, True, True),
    (True, False, False),
    (1, 1, True),
    (1, 2, False),
    (b"ab", b"ab", True),
    (b"ab", b"ab\0", False),
    (T1, T1, True),
    (T1, T2, False),
    (F1, F1, True),
    (F1, F2, False),
    # different types are never equal, whatever Python thinks
    (True, 1, False),
    (False, 0, False),
    (1, b"1", False),
    (None, False, False),
    (0, None, False),
]


@pytest.mark.parametrize("a, b, equal", EQUALITY)
def test_values_equal(a, b, equal):
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal


# -- tables ----------------------------------------------------------------


def table_of(*pairs, max_entries=100):
    t = Table(max_entries)
    for k, v in pairs:
        t.set(k, v)
    return t


def test_table_keeps_insertion_order():
    t = table_of((b"b", 1), (3, 2), (b"a", 3))
    assert t.keys_snapshot() == [b"b", 3, b"a"]
    assert list(t.items()) == [(b"b", 1), (3, 2), (b"a", 3)]


def test_updating_a_key_keeps_its_place():
    t = table_of((1, 1), (2, 2))
    t.set(1, 10)
    assert list(t.items()) == [(1, 10), (2, 2)]


def test_deleted_key_stored_again_moves_to_the_end():
    t = table_of((1, 1), (2, 2), (3, 3))
    t.set(1, None)
    assert t.keys_snapshot() == [2, 3]
    t.set(1, 4)
    assert list(t.items()) == [(2, 2), (3, 3), (1, 4)]


def test_missing_and_nil_keys_read_as_nil():
    t = table_of((1, 1))
    assert t.get(2) is None
    assert t.get(None) is None


def test_storing_nil_deletes_and_deleting_missing_is_harmless():
    t = table_of((1, 1))
    t.set(1, None)
    t.set(99, None)
    assert len(t) == 0 and t.get(1) is None


def test_nil_key_is_an_error():
    with pytest.raises(RuntimeFault, match="^table index is nil$"):
        Table(10).set(None, 1)


def test_nil_key_is_an_error_even_when_storing_nil():
    with pytest.raises(RuntimeFault, match="^table index is nil$"):
        Table(10).set(None, None)


def test_keys_of_different_types_never_collide():
    t = table_of((1, b"int"), (b"1", b"str"), (True, b"true"), (0, b"zero"), (False, b"false"))
    assert len(t) == 5
    assert t.get(1) == b"int"
    assert t.get(b"1") == b"str"
    assert t.get(True) == b"true"
    assert t.get(0) == b"zero"
    assert t.get(False) == b"false"
    assert t.keys_snapshot() == [1, b"1", True, 0, False]
    assert [type(k) for k in t.keys_snapshot()] == [int, bytes, bool, int, bool]


def test_tables_and_functions_are_keys_by_identity():
    t = table_of((T1, 1), (T2, 2), (F1, 3), (F2, 4))
    assert [t.get(k) for k in (T1, T2, F1, F2)] == [1, 2, 3, 4]
    assert t.get(Table(10)) is None
    assert t.keys_snapshot()[0] is T1


def test_a_table_can_be_its_own_key():
    t = Table(10)
    t.set(t, t)
    assert t.get(t) is t


def test_overflow_when_adding_past_the_limit():
    t = table_of((1, 1), (2, 2), max_entries=2)
    with pytest.raises(RuntimeFault) as info:
        t.set(3, 3)
    assert info.value.message == "table overflow (2 entries)"
    assert t.keys_snapshot() == [1, 2]


def test_a_full_table_can_still_update_and_delete():
    t = table_of((1, 1), (2, 2), max_entries=2)
    t.set(1, 10)
    t.set(3, None)
    t.set(2, None)
    t.set(3, 3)
    assert list(t.items()) == [(1, 10), (3, 3)]


def test_clear_and_len():
    t = table_of((1, 1), (2, 2))
    assert len(t) == 2
    t.clear()
    assert len(t) == 0 and t.keys_snapshot() == []


def test_keys_snapshot_is_not_affected_by_later_changes():
    t = table_of((1, 1), (2, 2))
    keys = t.keys_snapshot()
    t.set(3, 3)
    t.set(1, None)
    assert keys == [1, 2]


def test_length():
    assert length(b"a\0b") == 3
    assert length(b"") == 0
    assert length(table_of((1, 1), (b"x", 2))) == 2


@pytest.mark.parametrize("v, name", [(None, "nil"), (True, "boolean"), (5, "integer"), (F1, "function")])
def test_length_of_other_types_is_an_error(v, name):
    with pytest.raises(RuntimeFault) as info:
        length(v)
    assert info.value.message == f"attempt to get length of a {name} value"


# -- cells and functions -----------------------------------------------------


def test_closures_share_a_cell():
    cell = Cell(1)
    f, g = Function("code", (cell,)), Function("code", (cell,))
    f.cells[0].value = 2
    assert g.cells[0].value == 2
    assert not values_equal(f, g)


# -- identities and printing -----------------------------------------------


def test_identities_number_each_kind_from_one_in_request_order():
    ids = Identities()
    a, b = Table(1), Table(1)
    f = Function(None, ())
    assert ids.number(b) == 1
    assert ids.number(f) == 1
    assert ids.number(a) == 2
    assert ids.number(b) == 1
    assert ids.number(f) == 1


VALUE_TEXTS = [
    (None, b"nil"),
    (True, b"true"),
    (False, b"false"),
    (0, b"0"),
    (-9223372036854775808, b"-9223372036854775808"),
    (b"raw\0\xff\n", b"raw\0\xff\n"),
]


@pytest.mark.parametrize("v, text", VALUE_TEXTS)
def test_value_text(v, text):
    assert value_text(v, Identities()) == text


def test_value_text_numbers_tables_and_functions():
    ids = Identities()
    t, f = Table(1), Function(None, ())
    assert value_text(f, ids) == b"function: 1"
    assert value_text(t, ids) == b"table: 1"
    assert value_text(Table(1), ids) == b"table: 2"
    assert value_text(t, ids) == b"table: 1"


def test_print_line():
    ids = Identities()
    assert print_line([1, b"a", None, True, Table(1)], ids) == b"1\ta\tnil\ttrue\ttable: 1\n"
    assert print_line([], ids) == b"\n"


def test_stringof_is_limited_like_concatenation():
    ids = Identities()
    assert stringof(12345, ids, 5) == b"12345"
    with pytest.raises(RuntimeFault, match="^string too long$"):
        stringof(123456, ids, 5)


# -- ordering --------------------------------------------------------------

COMPARISONS = [
    (1, 2, -1),
    (2, 2, 0),
    (3, 2, 1),
    (-9223372036854775808, 9223372036854775807, -1),
    (b"a", b"b", -1),
    (b"ab", b"ab", 0),
    (b"ab", b"a", 1),  # a proper prefix sorts first
    (b"", b"\0", -1),
    (b"\x7f", b"\x80", -1),  # unsigned bytes
    (b"\xff", b"a", 1),
]


@pytest.mark.parametrize("a, b, expected", COMPARISONS)
def test_compare(a, b, expected):
    assert compare(a, b) == expected
    assert compare(b, a) == -expected


BAD_COMPARISONS = [
    (1, b"1", "integer", "string"),
    (b"1", 1, "string", "integer"),
    (True, False, "boolean", "boolean"),
    (True, 1, "boolean", "integer"),
    (None, None, "nil", "nil"),
    (T1, T1, "table", "table"),
    (F1, 0, "function", "integer"),
]


@pytest.mark.parametrize("a, b, ta, tb", BAD_COMPARISONS)
def test_compare_other_pairs_is_an_error(a, b, ta, tb):
    with pytest.raises(RuntimeFault) as info:
        compare(a, b)
    assert info.value.message == f"attempt to compare {ta} with {tb}"


# -- concatenation ---------------------------------------------------------

CONCATS = [
    (b"a", b"b", b"ab"),
    (b"", b"", b""),
    (b"x", 12, b"x12"),
    (-3, b"y", b"-3y"),
    (1, 2, b"12"),
    (b"a\0", b"\0b", b"a\0\0b"),
]


@pytest.mark.parametrize("a, b, expected", CONCATS)
def test_concat(a, b, expected):
    assert concat(a, b, 4096) == expected


BAD_CONCATS = [
    (None, b"x", "nil"),
    (b"x", None, "nil"),
    (True, b"x", "boolean"),
    (b"x", T1, "table"),
    (F1, None, "function"),  # the left operand is named first
    (None, T1, "nil"),
]


@pytest.mark.parametrize("a, b, named", BAD_CONCATS)
def test_concat_other_types_is_an_error(a, b, named):
    with pytest.raises(RuntimeFault) as info:
        concat(a, b, 4096)
    assert info.value.message == f"attempt to concatenate a {named} value"


def test_concat_up_to_the_limit():
    assert concat(b"ab", b"cd", 4) == b"abcd"
    with pytest.raises(RuntimeFault, match="^string too long$"):
        concat(b"ab", b"cde", 4)
    with pytest.raises(RuntimeFault, match="^string too long$"):
        concat(b"ab", 123, 4)


def test_concat_type_error_comes_before_length_error():
    with pytest.raises(RuntimeFault, match="concatenate a nil value"):
        concat(b"x" * 10, None, 4)
