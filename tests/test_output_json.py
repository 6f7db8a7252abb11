"""`ktapjit run -f json`: each output event is one JSON object a line
(docs/output-json.md), the same bytes from every engine.

Each case is a script and the exact NDJSON it writes; every case runs on
the interpreter, the JIT and `--engine compare`.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.diag import RuntimeFault
from ktapjit.output_json import JsonOutput

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "data" / "demo.data"
SYSCOUNT = ROOT / "examples" / "syscount.kp"
ENGINES = ("interp", "jit", "compare")

END_OK = '{"v":1,"type":"end","status":0}'

CASES = [
    ("print and printf",
     'print("a", 1, nil)\nprintf("%d-%s", 7, "x")\nprintf("\\n")',
     ['{"v":1,"type":"print","text":"a\\t1\\tnil"}',
      '{"v":1,"type":"printf","text":"7-x"}',
      '{"v":1,"type":"printf","text":"\\n"}',
      END_OK]),
    ("non-UTF-8 bytes are base64; UTF-8 stays a string",
     'print("caf\\xc3\\xa9")\nprint("\\xff\\xfe")',
     ['{"v":1,"type":"print","text":"café"}',
      '{"v":1,"type":"print","text":{"base64":"//4="}}',
      END_OK]),
    ("print_hist rows, and rows left out",
     'var t = {}\nt["a"] = 3\nt["b\\xff"] = 1\nt[5] = 10\nprint_hist(t, 2)',
     ['{"v":1,"type":"print_hist","rows":[{"key":"5","count":10,"bar":27},'
      '{"key":"a","count":3,"bar":8}],"more":true}',
      END_OK]),
    ("print_agg: hist, lhist and stats",
     'var a = {}\nhist(a, "h", 5)\nhist(a, "h", 9)\nlhist(a, "l", 7, 0, 10, 2)\n'
     'stats(a, "s", 4)\nstats(a, "s", -9)\nprint_agg(a)',
     ['{"v":1,"type":"print_agg","entries":['
      '{"key":"h","kind":"hist","buckets":[{"range":"[4, 8)","count":1,"bar":52},'
      '{"range":"[8, 16)","count":1,"bar":52}]},'
      '{"key":"l","kind":"lhist","buckets":[{"range":"[6, 8)","count":1,"bar":52}]},'
      '{"key":"s","kind":"stats","count":2,"average":-2,"total":-5,"min":-9,"max":4}]}',
      END_OK]),
    ("print_folded rows",
     'var f = {}\nf["leaf+0x1\\nroot"] = 2\nf["leaf\\nroot"] = 3\nprint_folded(f)',
     ['{"v":1,"type":"print_folded","rows":[{"stack":"root;leaf","count":5}]}', END_OK]),
    ("print_folded counts beyond int64, merged",
     'var f = {}\nf["a\\nb"] = 9223372036854775807\nf["a+0x1\\nb"] = 9223372036854775807\nprint_folded(f)',
     ['{"v":1,"type":"print_folded","rows":[{"stack":"b;a","count":18446744073709551614}]}', END_OK]),
    ("a runtime error: its location, then trace_end, then status 1",
     'print("before")\nvar x = 1 + nil\ntrace_end { print("end") }',
     ['{"v":1,"type":"print","text":"before"}',
      '{"v":1,"type":"error","message":"attempt to perform arithmetic on a nil value","file":"-e","line":2,"col":11}',
      '{"v":1,"type":"print","text":"end"}',
      '{"v":1,"type":"end","status":1}']),
]


def run(*argv: str) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name,script,expected", CASES, ids=[c[0] for c in CASES])
def test_script_output_as_ndjson(name, script, expected, engine):
    status, out, err = run("run", "-f", "json", "--engine", engine, "-e", script)
    assert out.decode("utf-8").splitlines() == expected
    assert status == json.loads(expected[-1])["status"]
    if engine == "compare":
        assert err.startswith(b"compare: identical output")
    else:
        assert err == b""


@pytest.mark.parametrize("engine", ENGINES)
def test_replay_of_the_demo_recording(engine):
    status, out, err = run("run", "-f", "json", "--engine", engine, "--replay", str(DEMO), str(SYSCOUNT))
    lines = out.decode("utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    assert status == 0
    assert lines[0] == '{"v":1,"type":"printf","text":"1264 system calls, 40 different ones\\n"}'
    assert objects[1]["type"] == "print_hist" and objects[1]["more"] is True
    assert objects[1]["rows"][0] == {"key": "openat", "count": 269, "bar": 8}
    assert lines[-1] == END_OK
    assert all(o["v"] == 1 for o in objects)


def test_engines_write_the_same_bytes():
    outputs = {run("run", "-f", "json", "--engine", e, "--replay", str(DEMO), str(SYSCOUNT))[1]
               for e in ("interp", "jit")}
    assert len(outputs) == 1


def test_compare_checks_the_json():
    """A script whose JSON differs would be caught: here the two trials'
    JSON are compared and found identical, errors and status included."""
    status, out, err = run("run", "-f", "json", "--engine", "compare", "-e", 'print(1)\nvar x = nil + 1')
    assert status == 1
    assert out.decode().splitlines()[-1] == '{"v":1,"type":"end","status":1}'
    assert err.splitlines()[0] == b"compare: identical output (%d bytes, 0 stderr lines, status 1)" % len(out)


@pytest.mark.parametrize("engine", ("interp", "jit"))
def test_text_is_the_default_and_unchanged(engine):
    args = ("--engine", engine, "--replay", str(DEMO), str(SYSCOUNT))
    assert run("run", *args) == run("run", "-f", "text", *args)
    assert run("run", *args)[1].startswith(b"1264 system calls, 40 different ones\n")


@pytest.mark.parametrize("write,expected", [
    (lambda o: o.lost(3, 0), ['{"v":1,"type":"lost","events":3}']),
    (lambda o: o.lost(0, 2), ['{"v":1,"type":"unprocessed","events":2}']),
    (lambda o: o.lost(0, 0), []),
    (lambda o: o.stream_error("corrupt record at byte offset 8"),
     ['{"v":1,"type":"error","message":"corrupt record at byte offset 8","stream":true}']),
    (lambda o: o.error(RuntimeFault("boom")), ['{"v":1,"type":"error","message":"boom"}']),
    (lambda o: o.end(141), ['{"v":1,"type":"end","status":141}']),
])
def test_session_objects(write, expected):
    """The objects about the stream and the run, not the script's output:
    a live run's losses, a broken stream, an error without a place."""
    stream = io.BytesIO()
    write(JsonOutput(stream))
    assert stream.getvalue().decode().splitlines() == expected


@pytest.mark.parametrize("engine", ["interp", "jit", "compare"])
def test_a_script_path_that_is_not_utf8(tmp_path, monkeypatch, engine):
    monkeypatch.chdir(tmp_path)
    name = b"bad\xff.kp"
    (tmp_path / os.fsdecode(name)).write_bytes(b"var x = nil + 1")
    status, out, _ = run("run", "-f", "json", "--engine", engine, os.fsdecode(name))
    assert status == 1
    assert out.decode().splitlines()[0] == ('{"v":1,"type":"error","message":"attempt to perform arithmetic '
                                           'on a nil value","file":{"base64":"YmFk/y5rcA=="},"line":1,"col":13}')


def conformance_names() -> list[str]:
    from tests.test_conformance import case_names

    return case_names()


@pytest.mark.slow
@pytest.mark.parametrize("name", conformance_names())
def test_every_conformance_case_as_json(name, monkeypatch):
    """Every case of the language suite, as JSON on both engines: the same
    bytes (compare says so), one object a line, the end object last with
    the case's exit status; the printed texts are the text output's."""
    from tests.test_conformance import CASE_DIR, load_case

    case = load_case(name)
    monkeypatch.chdir(CASE_DIR)
    if case.status == 2:
        pytest.skip("a compile error: no run, no JSON")
    status, out, err = run("run", "-f", "json", "--engine", "compare", *case.opts, case.script, *case.args)
    assert b"compare: identical output" in err, err
    objects = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    assert objects[-1] == {"v": 1, "type": "end", "status": case.status} == {**objects[-1], "status": status}
    if all(o["type"] in ("print", "printf", "error", "end") for o in objects):
        printed = b"".join(text_bytes(o["text"]) + (b"\n" if o["type"] == "print" else b"")
                           for o in objects if "text" in o)
        assert printed == case.stdout


def text_bytes(text) -> bytes:
    """The bytes a JSON text stands for (docs/language-notes.md)."""
    return base64.b64decode(text["base64"]) if isinstance(text, dict) else text.encode("utf-8")
