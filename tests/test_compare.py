"""`--engine compare`'s verdict: identical trials pass; any difference in
stdout, stderr or status is reported with its first differing line."""

from __future__ import annotations

import io

import pytest

from ktapjit.cli import main
from ktapjit.compare import Trial, first_difference, verdict


@pytest.mark.parametrize("a,b,expected", [
    (b"x\ny\n", b"x\ny\n", (0, b"", b"")),
    (b"x\ny\n", b"x\nz\n", (2, b"y", b"z")),
    (b"x\n", b"x\ny\n", (2, b"", b"y")),
    (b"x", b"x\n", (2, b"<end of output>", b"")),
])
def test_first_difference(a, b, expected):
    assert first_difference(a, b) == expected


def trial(engine, stdout=b"1\n", stderr=b"", status=0):
    return Trial(engine, stdout, stderr, status)


def test_identical_trials():
    same, lines = verdict(trial("interp"), trial("jit"))
    assert same
    assert lines == ["compare: identical output (2 bytes, 0 stderr lines, status 0)",
                     "compare: no events; nothing to time per event"]


@pytest.mark.parametrize("jit,report", [
    (trial("jit", stdout=b"2\n"), ["compare: stdout differs at line 1:", "compare:   interp: 1",
                                   "compare:   jit: 2"]),
    (trial("jit", stderr=b"error: x\n"), ["compare: stderr differs at line 1:", "compare:   interp: ",
                                          "compare:   jit: error: x"]),
    (trial("jit", status=1), ["compare: exit status differs: interp 0, jit 1"]),
])
def test_differences_are_reported(jit, report):
    same, lines = verdict(trial("interp"), jit)
    assert not same
    assert lines[:-1] == report


def test_compare_over_a_recording_reports_timing(tmp_path):
    from tests.test_examples import DEMO, EXAMPLES_DIR

    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", "compare", "--replay", str(DEMO), str(EXAMPLES_DIR / "syscount.kp")],
                  stdout=out, stderr=err)
    lines = err.getvalue().decode().splitlines()
    assert status == 0
    assert lines[0].startswith("compare: identical output (")
    assert lines[1].startswith("compare: 1264 events; interp ") and "ns/event" in lines[1]
    assert out.getvalue().startswith(b"1264 system calls")
