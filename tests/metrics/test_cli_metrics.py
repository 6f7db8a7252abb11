"""`ktapjit run --metrics`: every bad option is one line and status 2,
before anything is traced; a good one says where it serves unless -q."""

import io
import re
import socket

import pytest

from ktapjit.cli import main

SCRIPT = "var calls = {}\nvar n = 1\n"


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", "interp", *args], stdout=out, stderr=err)
    return status, out.getvalue().decode(), err.getvalue().decode()


BAD = [
    (["--metrics", "70000", "--export", "calls"], "ktapjit: --metrics 70000: the port must be a number from 0 to 65535"),
    (["--metrics", "::1:9100", "--export", "calls"],
     "ktapjit: --metrics ::1:9100: write an IPv6 address in brackets, as [::1]:PORT"),
    (["--metrics", "0"], "ktapjit: --metrics needs at least one --export NAME[:TYPE]"),
    (["--export", "calls"], "ktapjit: --export needs --metrics [ADDR:]PORT"),
    (["--metrics", "0", "--export", "nope"], "ktapjit: --export nope: the script has no global 'nope'"),
    (["--metrics", "0", "--export", "calls:histo"],
     "ktapjit: --export calls:histo: the type must be one of counter, gauge, histogram, summary"),
    (["--metrics", "0", "--export", "calls", "--replay", "examples/data/demo.data"],
     "ktapjit: --metrics serves a live trace and cannot be combined with --replay"),
    (["--metrics", "192.0.2.1:0", "--export", "calls"],
     "ktapjit: --metrics 192.0.2.1:0: cannot serve there: Cannot assign requested address"),
    (["--metrics", "no.such.host.invalid:0", "--export", "calls"],
     re.compile(r"ktapjit: --metrics no\.such\.host\.invalid:0: cannot serve there: unknown address "
                r"'no\.such\.host\.invalid' \(.*\)")),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_metrics_options(args, message):
    status, out, err = run(*args, "-e", SCRIPT)
    assert (status, out) == (2, "")
    line = err.rstrip("\n")
    assert "\n" not in line
    if isinstance(message, str):
        assert line == message
    else:
        assert message.fullmatch(line), line


@pytest.mark.parametrize("args", [["--metrics", "0", "--export", "calls"], ["--export", "calls"]])
def test_compare_refuses_metrics(args):
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", "compare", *args, "-e", SCRIPT], stdout=out, stderr=err)
    assert (status, err.getvalue()) == (2, b"ktapjit: --metrics needs one engine: --engine interp or jit, not compare\n")


def test_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _out, err = run("--metrics", str(port), "--export", "calls", "-e", SCRIPT)
    assert (status, err) == (2, f"ktapjit: --metrics {port}: cannot serve there: Address already in use\n")


def test_the_bound_address_is_said_unless_quiet():
    status, _out, err = run("--metrics", "0", "--export", "n:gauge", "-e", SCRIPT)
    assert status == 0
    assert re.fullmatch(r"Serving metrics at http://127\.0\.0\.1:[0-9]+/metrics\n", err), err
    assert run("-q", "--metrics", "0", "--export", "n:gauge", "-e", SCRIPT) == (0, "", "")
