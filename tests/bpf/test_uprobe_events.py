"""Reading a ktapjit uprobe event back from tracefs uprobe_events: its kind,
its fetch args without the site index, and its sites' file offsets."""

from __future__ import annotations

import pytest

from ktapjit.bpf.uprobe_events import UprobeDefinition, parse_definition

UPROBE_EVENTS = r"""p:ktapjit_7/work__sites /tmp/w/work:0x0000000000001139 x=%di:s64 ktapjit_site=\0:u32
p:ktapjit_7/work__sites /tmp/w/work:0x000000000000113e x=%di:s64 ktapjit_site=\1:u32
r:ktapjit_7/tick__return /tmp/w/work:0x0000000000001139 arg1=$retval
p:ktapjit_7/tick /tmp/w/work:0x0000000000001139
p:ktapjit_7/step /tmp/w/work:0x0000000000001160(0x0000000000004010) arg1=-24(%bp):s64 arg2=\42:s32
p:ktapjit_8/tick /tmp/other:0x0000000000000040
p:ktapjit_7/odd /tmp/w/work:0x0000000000001139 ktapjit_site=\x:u32
"""


@pytest.mark.parametrize("event, expected", [
    ("work__sites", UprobeDefinition("uprobe", ("x=%di:s64",), (0x1139, 0x113e))),
    ("tick__return", UprobeDefinition("uretprobe", ("arg1=$retval",), (0x1139,))),
    ("tick", UprobeDefinition("uprobe", (), (0x1139,))),
    ("step", UprobeDefinition("usdt", ("arg1=-24(%bp):s64", "arg2=\\42:s32"), (0x1160,))),
    ("odd", None),  # a site index not understood: the probe stays in user space
    ("missing", None),
])
def test_a_definition_read_back(event, expected):
    assert parse_definition(UPROBE_EVENTS, "ktapjit_7", event) == expected


def test_a_tracefs_without_uprobe_events_gives_no_definition(tmp_path):
    from ktapjit.bpf.uprobe_events import read_definition

    assert read_definition("ktapjit_7", "tick", root=tmp_path) is None
    (tmp_path / "uprobe_events").write_text(UPROBE_EVENTS)
    assert read_definition("ktapjit_7", "tick", root=tmp_path) == UprobeDefinition("uprobe", (), (0x1139,))
