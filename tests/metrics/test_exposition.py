"""Exported globals as Prometheus text: each case is a value and the exact lines."""

import pytest

from ktapjit.metrics.exporter import ExportError, check_exports, parse_export
from ktapjit.metrics.exposition import Export, render
from ktapjit.metrics.server import AddressError, parse_address
from ktapjit.semantics import agg
from ktapjit.semantics.intmath import INT64_MIN
from ktapjit.semantics.values import Table


def table(*pairs) -> Table:
    t = Table(1000)
    for key, value in pairs:
        t.set(key, value)
    return t


def hist_of(*values, key=b"k") -> Table:
    t = Table(1000)
    for v in values:
        agg.hist(t, key, v, max_table=1000)
    return t


def lhist_of(*values, lo=0, hi=10, step=5, key=b"k") -> Table:
    t = Table(1000)
    for v in values:
        agg.lhist(t, key, v, lo, hi, step, max_table=1000)
    return t


def stats_of(*values, key=b"k") -> Table:
    t = Table(1000)
    for v in values:
        agg.stats(t, key, v, max_table=1000)
    return t


CASES = [
    ("nil before the top level ran", "calls", None, ["# TYPE ktapjit_calls counter"]),
    ("an integer global: one sample, no labels", "n:gauge", 42,
     ["# TYPE ktapjit_n gauge", "ktapjit_n 42"]),
    ("string, integer and boolean keys, in the table's order", "calls",
     table((b"sh", 3), (7, -2), (True, 1)),
     ["# TYPE ktapjit_calls counter", 'ktapjit_calls{key="sh"} 3', 'ktapjit_calls{key="7"} -2',
      'ktapjit_calls{key="true"} 1']),
    ("label values escaped: backslash, double quote, newline", "calls",
     table((b'a\\b"c\nd', 1)),
     ["# TYPE ktapjit_calls counter", 'ktapjit_calls{key="a\\\\b\\"c\\nd"} 1']),
    ("UTF-8 keys as they are, other bytes as \\xHH", "calls",
     table(("é".encode(), 1), (b"\xffa", 2)),
     ["# TYPE ktapjit_calls counter", 'ktapjit_calls{key="é"} 1', 'ktapjit_calls{key="\\\\xffa"} 2']),
    ("entries that are not integers, and table keys, are left out", "calls",
     table((b"s", b"str"), (b"t", table((1, 1))), (table(), 5), (b"ok", 1)),
     ["# TYPE ktapjit_calls counter", 'ktapjit_calls{key="ok"} 1']),
    ("a string global has no sample", "calls", b"text", ["# TYPE ktapjit_calls counter"]),
    ("hist: cumulative buckets to the highest non-empty one; le is the bucket's last integer",
     "lat:histogram", hist_of(0, 1, 2, 3, 5, -4),
     ["# TYPE ktapjit_lat histogram",
      'ktapjit_lat_bucket{key="k",le="-1"} 1', 'ktapjit_lat_bucket{key="k",le="0"} 2',
      'ktapjit_lat_bucket{key="k",le="1"} 3', 'ktapjit_lat_bucket{key="k",le="3"} 5',
      'ktapjit_lat_bucket{key="k",le="7"} 6', 'ktapjit_lat_bucket{key="k",le="+Inf"} 6',
      'ktapjit_lat_sum{key="k"} 7', 'ktapjit_lat_count{key="k"} 6']),
    ("hist: the top bucket [2^62, ...) is only in +Inf", "lat:histogram", hist_of(1 << 62),
     ["# TYPE ktapjit_lat histogram"]
     + [f'ktapjit_lat_bucket{{key="k",le="{le}"}} 0' for le in [-1, 0, 1] + [(2 << j) - 1 for j in range(1, 62)]]
     + ['ktapjit_lat_bucket{key="k",le="+Inf"} 1', f'ktapjit_lat_sum{{key="k"}} {1 << 62}',
        'ktapjit_lat_count{key="k"} 1']),
    ("lhist: below min, steps, and [max, ...) in +Inf only", "lat:histogram", lhist_of(-1, 0, 4, 5, 10, 99),
     ["# TYPE ktapjit_lat histogram",
      'ktapjit_lat_bucket{key="k",le="-1"} 1', 'ktapjit_lat_bucket{key="k",le="4"} 3',
      'ktapjit_lat_bucket{key="k",le="9"} 4', 'ktapjit_lat_bucket{key="k",le="+Inf"} 6',
      'ktapjit_lat_sum{key="k"} 117', 'ktapjit_lat_count{key="k"} 6']),
    ("lhist from INT64_MIN has no below-min bucket", "lat:histogram",
     lhist_of(INT64_MIN, lo=INT64_MIN, hi=INT64_MIN + 2, step=2),
     ["# TYPE ktapjit_lat histogram", f'ktapjit_lat_bucket{{key="k",le="{INT64_MIN + 1}"}} 1',
      'ktapjit_lat_bucket{key="k",le="+Inf"} 1', f'ktapjit_lat_sum{{key="k"}} {INT64_MIN}',
      'ktapjit_lat_count{key="k"} 1']),
    ("stats: a summary of sum and count", "st:summary", stats_of(3, 4, key=b"sh"),
     ["# TYPE ktapjit_st summary", 'ktapjit_st_sum{key="sh"} 7', 'ktapjit_st_count{key="sh"} 2']),
    ("an aggregation of another kind than the type is left out", "st:summary", hist_of(1),
     ["# TYPE ktapjit_st summary"]),
    ("a broken aggregation is left out", "lat:histogram", table((b"k", table((b"kind", b"hist")))),
     ["# TYPE ktapjit_lat histogram"]),
    ("integers in a histogram table are left out", "lat:histogram", table((b"k", 1)),
     ["# TYPE ktapjit_lat histogram"]),
]


@pytest.mark.parametrize("what, spec, value, lines", CASES, ids=[c[0] for c in CASES])
def test_render(what, spec, value, lines):
    assert render([parse_export(spec)], [value]).decode().splitlines() == lines


def test_render_several_exports_in_order():
    text = render([Export("a"), Export("b", "gauge")], [1, 2]).decode()
    assert text == "# TYPE ktapjit_a counter\nktapjit_a 1\n# TYPE ktapjit_b gauge\nktapjit_b 2\n"


ADDRESSES = [
    ("9100", ("127.0.0.1", 9100)),
    ("0", ("127.0.0.1", 0)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("localhost:65535", ("localhost", 65535)),
    ("[::1]:9100", ("::1", 9100)),
]


@pytest.mark.parametrize("text, address", ADDRESSES)
def test_parse_address(text, address):
    assert parse_address(text) == address


BAD_ADDRESSES = [
    ("65536", "--metrics 65536: the port must be a number from 0 to 65535"),
    ("x", "--metrics x: the port must be a number from 0 to 65535"),
    ("1.2.3.4:", "--metrics 1.2.3.4:: the port must be a number from 0 to 65535"),
    (":80", "--metrics :80: the address before ':' is empty"),
    ("::1:80", "--metrics ::1:80: write an IPv6 address in brackets, as [::1]:PORT"),
    ("-1", "--metrics -1: the port must be a number from 0 to 65535"),
]


@pytest.mark.parametrize("text, message", BAD_ADDRESSES)
def test_parse_address_refuses(text, message):
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert str(info.value) == message


BAD_EXPORTS = [
    ("1x", "--export 1x: '1x' is not a global's name"),
    ("a:", "--export a:: the type must be one of counter, gauge, histogram, summary"),
    ("a:hist", "--export a:hist: the type must be one of counter, gauge, histogram, summary"),
    ("zz", "--export zz: the script has no global 'zz'"),
]


@pytest.mark.parametrize("text, message", BAD_EXPORTS)
def test_bad_exports(text, message):
    with pytest.raises(ExportError) as info:
        check_exports([parse_export(text)], ["a", "b"])
    assert str(info.value) == message


def test_an_export_given_twice():
    with pytest.raises(ExportError, match="^--export a: given twice$"):
        check_exports([parse_export("a"), parse_export("a:gauge")], ["a"])
