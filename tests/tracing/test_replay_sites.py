"""Which recorded site event a uprobe glob binds to on replay
(tracing/replay.py, RecordedDynamicEvents): by the name a live run gives
it, else by its site table's file, kind and glob. A table is of a glob when
it was made for that glob or a narrower one; a narrower glob on replay would
need only some of its sites, and is an error that says so."""

from __future__ import annotations

import pytest

from ktapjit.events.probes.probe_sites import SiteTable
from ktapjit.events.errors import EventsError
from ktapjit.frontend.eventdef import parse_eventdef
from ktapjit.tracing.replay_dynamic import RecordedDynamicEvents

pytestmark = pytest.mark.not_bpf("replays a recording: the BPF engine traces live only")

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBM = "/usr/lib/x86_64-linux-gnu/libm.so.6"
TABLES = {
    ("ktapjit_1", "libc_so_6__sites"): SiteTable(LIBC, "*", False, ("malloc", "free", "strlen")),
    ("ktapjit_1", "libm_so_6__sites"): SiteTable(LIBM, "*", False, ("sin", "cos")),
    ("ktapjit_1", "libc_so_6__sites__return"): SiteTable(LIBC, "str*", True, ("strlen__return",)),
    ("ktapjit_1", "add"): None,  # a function by name: an event of its own
}


def bind(*eventdefs: str) -> list:
    recorded = RecordedDynamicEvents(sorted(TABLES), "x.data",
                                     {pair: table for pair, table in TABLES.items() if table})
    return [recorded.find(parse_eventdef(text)[0]) for text in eventdefs]


@pytest.mark.parametrize("eventdefs, events", [
    (["probe:libc:*"], ["libc_so_6__sites"]),  # `libc` not found here: the table says whose it is
    (["probe:libm:*", "probe:libc:*"], ["libm_so_6__sites", "libc_so_6__sites"]),
    ([f"probe:{LIBC}:*"], ["libc_so_6__sites"]),  # by the name the live run gave it
    (["probe:/elsewhere/libc.so.6:*"], ["libc_so_6__sites"]),  # the file moved
    (["probe:libc:str*%return"], ["libc_so_6__sites__return"]),
    (["probe:libc:*%return"], ["libc_so_6__sites__return"]),  # a broader glob: every site is asked for
    (["probe:libc:*", "probe:libc:*%return"], ["libc_so_6__sites", "libc_so_6__sites__return"]),
])
def test_a_glob_binds_to_the_site_event_of_its_file_and_kind(eventdefs, events):
    assert bind(*eventdefs) == [[("ktapjit_1", event)] for event in events]


@pytest.mark.parametrize("eventdef", ["probe:libc:mal*", "probe:libm:s*"])
def test_a_narrower_glob_is_an_error_that_names_the_glob_events(eventdef):
    with pytest.raises(EventsError) as info:
        bind(eventdef)
    assert "replay with that glob or a broader one" in str(info.value)
    assert f"'{LIBC}:*'" in str(info.value)
