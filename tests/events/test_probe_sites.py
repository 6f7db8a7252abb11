"""Probe sites (events/probes/probe_sites.py): the format a site event's probes see,
the site index each record carries, and the table a recording keeps.

The formats are this kernel's own (Linux 6.18), for a uprobe and a uretprobe
with fetch args and the site argument."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ktapjit.events.printfmt.closures import compile_print_fmt
from ktapjit.events.probes.probe_sites import (
    SiteTable, SitesFormatError, decode_sites, encode_sites, site_fetcharg, site_name, site_offset, without_site,
)
from ktapjit.events.schema import parse_format

COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""

ENTRY = f"""name: libc_so_6__sites
ID: 2326
format:
{COMMON}
\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] s;\toffset:16;\tsize:4;\tsigned:1;
\tfield:s32 n;\toffset:20;\tsize:4;\tsigned:1;
\tfield:u32 ktapjit_site;\toffset:24;\tsize:4;\tsigned:0;

print fmt: "(%lx) s=\\"%s\\" n=%d ktapjit_site=%u", REC->__probe_ip, __get_str(s), REC->n, REC->ktapjit_site
"""

RETURN = f"""name: libc_so_6__sites__return
ID: 2327
format:
{COMMON}
\tfield:unsigned long __probe_func;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long __probe_ret_ip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:s64 r;\toffset:24;\tsize:8;\tsigned:1;
\tfield:u32 ktapjit_site;\toffset:32;\tsize:4;\tsigned:0;

print fmt: "(%lx <- %lx) r=%Ld ktapjit_site=%u", REC->__probe_func, REC->__probe_ret_ip, REC->r, REC->ktapjit_site
"""


@pytest.mark.parametrize("text, offset, fields, print_fmt", [
    (ENTRY, 24, ["__probe_ip", "s", "n"],
     '"(%lx) s=\\"%s\\" n=%d", REC->__probe_ip, __get_str(s), REC->n'),
    (RETURN, 32, ["__probe_func", "__probe_ret_ip", "r"],
     '"(%lx <- %lx) r=%Ld", REC->__probe_func, REC->__probe_ret_ip, REC->r'),
])
def test_the_probes_see_the_format_without_the_site_field(text, offset, fields, print_fmt):
    fmt = parse_format(text, "ktapjit_1")
    assert site_offset(fmt) == offset
    seen = without_site(fmt)
    assert [f.name for f in seen.fields] == fields
    assert seen.print_fmt == print_fmt
    assert site_offset(seen) is None
    # The other fields keep their offsets: records decode as before.
    assert [f.offset for f in seen.fields] == [f.offset for f in fmt.fields][:-1]


def test_argstr_of_a_site_event_reads_as_the_functions_own_event():
    fmt = parse_format(ENTRY, "ktapjit_1")
    raw = fmt.encode({"common_type": 2326, "__probe_ip": 0x7f00, "s": b"hi", "n": -3, "ktapjit_site": 5})
    assert compile_print_fmt(without_site(fmt))(fmt.decode(raw)) == b'(7f00) s="hi" n=-3'


def test_a_record_names_its_site_by_index():
    fmt = parse_format(ENTRY, "ktapjit_1")
    sites = ("malloc", "free", "free_1")
    for index, name in enumerate(sites):
        raw = fmt.encode({"common_type": 2326, "s": b"", "ktapjit_site": index})
        assert site_name(sites, raw, 24) == name
    beyond = fmt.encode({"common_type": 2326, "s": b"", "ktapjit_site": 3})
    assert site_name(sites, beyond, 24) is None  # a corrupt record: the probe reading it faults
    assert site_name(sites, beyond[:26], 24) is None


def test_the_site_argument_is_an_immediate_the_kernel_stores_in_each_record():
    assert site_fetcharg(17) == "ktapjit_site=\\17:u32"


text = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)
tables = st.builds(SiteTable, text, text, st.booleans(), st.lists(text, min_size=1, max_size=6).map(tuple))


@given(st.dictionaries(st.tuples(st.sampled_from(["ktapjit_1", "ktapjit_22"]),
                                 st.sampled_from(["a__sites", "b__sites__return"])), tables, max_size=4))
def test_the_site_tables_of_a_recording_read_back(tables):
    blob = encode_sites(tables)
    assert len(blob) % 8 == 0
    assert decode_sites(blob) == tables


@pytest.mark.parametrize("blob, message", [
    (b"{", "probe site table is not readable: "),
    (b'{"version": 2, "events": {}}', "probe site table version 2, not 1"),
    (b'{"version": 1}', "probe site table is not readable: 'events'"),
    (b'{"version": 1, "events": []}', "probe site table is not readable: its events are not an object"),
    (b'{"version": 1, "events": {"ktapjit_1:a": [1]}}', "probe site table of ktapjit_1:a lacks its path, glob or kind"),
    (b'{"version": 1, "events": {"ktapjit_1:a": {"path": "/l", "glob": "*", "return": false, "names": [1]}}}',
     "probe site table of ktapjit_1:a holds a name that is not a string"),
    (b"\xff\xfe", "probe site table is not readable: "),
])
def test_a_corrupt_site_table_is_one_line(blob, message):
    with pytest.raises(SitesFormatError) as info:
        decode_sites(blob)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
