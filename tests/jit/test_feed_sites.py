"""probename of a uprobe glob's site event (events/probes/probe_sites.py) on the
JIT's native event path (KF_SITE_NAME in runtime/feed.c) against the
interpreter: replays of a synthetic recording whose events carry the
`ktapjit_site` index and whose feature section holds the site tables, as a
live `--record` of `probe:FILE:*` writes them. Every JIT run asserts that the
native feed ran the samples: a session that fell back to the per-event path
fails the test.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ktapjit.events.probes.probe_sites import SITES_FEATURE, SiteTable, encode_sites
from ktapjit.testing.synth import SyntheticStream, choice, write_perf_data
from tests.events.test_probe_sites import ENTRY, RETURN
from tests.jit.feedspy import spied_feeds
from tests.jit.test_feed import _patched, _raw_start, agree

GROUP = "ktapjit_4242"
# The kernel's own formats of a site event and its return twin, as a glob
# over /nonexistent/probed names them (dynamic_probes.sites_event_name).
ENTRY_FMT = ENTRY.replace("name: libc_so_6__sites\n", "name: probed__sites\n")
RETURN_FMT = RETURN.replace("name: libc_so_6__sites__return\n", "name: probed__sites__return\n")
SITES = {(GROUP, "probed__sites"): SiteTable("/nonexistent/probed", "*", False, ("add", "scale", "greet")),
         (GROUP, "probed__sites__return"): SiteTable("/nonexistent/probed", "*", True,
                                                      ("add__return", "scale__return"))}
GLOB = "probe:/nonexistent/probed:*"


@pytest.fixture
def feeds():
    """Every native feed the JIT runs of the test build (None: Python path)."""
    with spied_feeds() as made:
        yield made


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    stream = SyntheticStream(
        [(GROUP, "probed__sites", ENTRY_FMT, {"ktapjit_site": choice([0, 1, 2], [5, 3, 1])}),
         (GROUP, "probed__sites__return", RETURN_FMT, {"ktapjit_site": choice([0, 1])}, 0.5),
         ("sched", "sched_switch", None, None, 0.3)],
        n_events=2000, cpus=2, tasks=5, seed=11)
    path = tmp_path_factory.mktemp("sites") / "sites.data"
    write_perf_data(path, stream, features={SITES_FEATURE: encode_sites(SITES)})
    return path


SCRIPTS = {
    "probename and args": f"trace {GLOB} {{ print(probename, arg1, args.n, args.s) }}",
    "argstr hides the site": f"trace {GLOB} {{ print(probename, argstr) }}",
    "return sites": f"trace {GLOB}%return {{ print(probename, arg2) }}",
    "counted by function": f"var t = {{}}\ntrace {GLOB} {{ t[probename] += 1 }}\n"
                           f"trace {GLOB}%return {{ t[probename] += 1 }}\ntrace_end {{ print_hist(t) }}",
    "filtered": f"trace {GLOB} /n > 0/ {{ printf(\"%s %d\\n\", probename, arg2) }}",
    "beside a tracepoint": f"trace {GLOB} {{ print(probename, tid) }}\n"
                           "trace sched:sched_switch { print(probename, tid) }",
    "read twice": f"trace {GLOB} {{ var a = probename; print(a == probename, a .. \"!\") }}",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_site_names_run_natively(feeds, recording, name):
    out, err, status = agree(feeds, recording, SCRIPTS[name])
    assert status == 0 and err == b"" and out


def test_every_site_is_named_from_the_recordings_table(feeds, recording):
    out, _, _ = agree(feeds, recording, f"var t = {{}}\ntrace {GLOB} {{ t[probename] += 1 }}\n"
                                        f"trace {GLOB}%return {{ t[probename] += 1 }}\n"
                                        "trace_end { for (k, v in pairs(t)) { print(k) } }")
    assert sorted(out.split()) == sorted(n.encode() for table in SITES.values() for n in table.names)


def _damaged(recording: Path, tmp_path: Path, nth: int, edit) -> tuple[Path, int]:
    """A copy where edit(buf, raw_start) damaged the nth probed__sites sample;
    that sample's byte offset."""
    where = []

    def patch(buf, samples, data):
        victim = [s for s in samples if data.event_name(s.id) == f"{GROUP}:probed__sites"][nth]
        edit(buf, _raw_start(victim))
        where.append(victim.offset)

    path = _patched(recording, tmp_path / f"damaged-{nth}.data", patch)
    return path, where[0]


def _site_index(index: int):
    return lambda buf, raw: struct.pack_into("<I", buf, raw + 24, index)  # ENTRY's ktapjit_site


def _raw_size(size: int):
    return lambda buf, raw: struct.pack_into("<I", buf, raw - 4, size)  # RAW's u32 size


SITE_FAULT = "its probe site is not in the event's site table"
FIELD_FAULT = f"{GROUP}:probed__sites: raw data is 20 bytes, the format needs 24"

# (damage, body, the fault after "corrupt EVENT record at byte offset N: ", the read that fails)
CORRUPT = {
    "index past the table": (_site_index(3), "print(probename)", SITE_FAULT, "probename"),
    "index 2^32-1": (_site_index(0xFFFFFFFF), "print(probename)", SITE_FAULT, "probename"),
    "index as a key": (_site_index(1 << 31), "n += 1; t[probename] = n", SITE_FAULT, "probename"),
    "no room for the index": (_raw_size(26), "print(probename)", SITE_FAULT, "probename"),
    "ends before the index": (_raw_size(24), "print(probename)", SITE_FAULT, "probename"),
    # Too short for the fields too: the first read says which fault it is.
    "probename read first": (_raw_size(20), "print(probename, arg1)", SITE_FAULT, "probename"),
    "a field read first": (_raw_size(20), "print(arg1, probename)", FIELD_FAULT, "arg1"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_site_fails_where_the_body_reads_it(feeds, recording, tmp_path, case):
    damage, body, fault, read = CORRUPT[case]
    path, offset = _damaged(recording, tmp_path, 30, damage)
    line = f"trace {GLOB} {{ {body} }}"
    script = f"var n = 0\nvar t = {{}}\n{line}\ntrace_end {{ print(\"end\", n) }}"
    out, err, status = agree(feeds, path, script)
    assert (status, err.decode()) == (1, f"error: corrupt {GROUP}:probed__sites record at byte offset {offset}: "
                                         f"{fault} at -e:3:{line.index(read) + 1}\n")
    assert out.splitlines()[-1].startswith(b"end\t")  # the fault stopped the probes; trace_end ran


@pytest.mark.parametrize("damage", [_site_index(7), _raw_size(22)])
def test_a_body_that_does_not_read_probename_does_not_notice(feeds, recording, tmp_path, damage):
    path, _ = _damaged(recording, tmp_path, 30, damage)
    out, err, status = agree(feeds, path, f"var n = 0\ntrace {GLOB} {{ n += 1; print(pid) }}\n"
                                          "trace_end { print(\"end\", n) }")
    assert status == 0 and err == b""
