"""Conformance suite: the language contract (docs LANGUAGE.md) as data.

Each case is ``tests/conformance/NAME.kp`` plus optional expectation files:

* ``NAME.out``    exact expected stdout bytes (absent: stdout must be empty);
* ``NAME.err``    one Python regex per line; stderr must have exactly that many
                  lines and each must ``re.fullmatch`` its regex (absent: empty);
* ``NAME.status`` expected exit status (absent: 0).

Leading ``#`` comment lines of the script may carry ``# opts: ...`` (extra
``ktapjit run`` options) and ``# args: ...`` (script arguments, split with
shlex).  Cases run with the working directory set to ``tests/conformance`` and
the script given as ``NAME.kp``, so locations read ``NAME.kp:LINE:COL``.

The expected outputs were derived by hand from the contract, independently of
the engine.  To add an engine, append it to ENGINES.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CASE_DIR = Path(__file__).resolve().parent / "conformance"
REPO_ROOT = CASE_DIR.parent.parent

ENGINES = ["interp", "jit"]

# A few cases for the real entry point (``python -m ktapjit``): normal output,
# compile error, runtime error, limit errors, printf/print_hist errors, args.
SUBPROCESS_CASES = [
    "print_table_function_numbering",
    "arg_basic",
    "cerr_source_line_keeps_tab",
    "lex_str_bad_escape_q",
    "rterr_trace_end_runs",
    "limit_depth_default_exceeded",
    "limit_loop_for_exceeded",
    "limit_string_configured",
    "printf_err_conversion_f",
    "hist_err_string_value",
    "nest_huge_parens_no_crash",
    "func_call_before_assignment",
]


@dataclass
class Case:
    name: str
    script: str
    source: bytes
    opts: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    stdout: bytes = b""
    stderr_res: list[str] = field(default_factory=list)
    status: int = 0

    def argv(self, engine: str) -> list[str]:
        return ["run", "--engine", engine, *self.opts, self.script, *self.args]


def _header(source: bytes) -> tuple[list[str], list[str]]:
    opts: list[str] = []
    args: list[str] = []
    for raw in source.split(b"\n"):
        if not raw.startswith(b"#"):
            break
        line = raw.decode("utf-8", "replace").rstrip("\r")
        m = re.match(r"#\s*(opts|args):(.*)$", line)
        if m:
            (opts if m.group(1) == "opts" else args).extend(shlex.split(m.group(2)))
    return opts, args


def load_case(name: str) -> Case:
    kp = CASE_DIR / f"{name}.kp"
    source = kp.read_bytes()
    opts, args = _header(source)
    case = Case(name=name, script=kp.name, source=source, opts=opts, args=args)
    out = CASE_DIR / f"{name}.out"
    if out.exists():
        case.stdout = out.read_bytes()
    err = CASE_DIR / f"{name}.err"
    if err.exists():
        case.stderr_res = err.read_text(encoding="utf-8").splitlines()
    status = CASE_DIR / f"{name}.status"
    if status.exists():
        case.status = int(status.read_text().strip())
    return case


def case_names() -> list[str]:
    return sorted(p.stem for p in CASE_DIR.glob("*.kp"))


def _show(data: bytes) -> list[str]:
    """Lines for a diff: repr keeps NULs, tabs, CRs and a missing newline visible."""
    return [repr(line)[1:] + "\n" for line in data.splitlines(keepends=True)]


def _stderr_lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", "replace")
    if text == "":
        return []
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n")


def check(case: Case, engine: str, stdout: bytes, stderr: bytes, status: int) -> None:
    problems: list[str] = []

    if stdout != case.stdout:
        diff = "".join(
            difflib.unified_diff(
                _show(case.stdout), _show(stdout), "expected stdout", "actual stdout", n=2
            )
        )
        if len(diff) > 6000:
            diff = diff[:6000] + "\n... (diff truncated)\n"
        problems.append("stdout differs:\n" + diff)

    got = _stderr_lines(stderr)
    bad = len(got) != len(case.stderr_res)
    if not bad:
        bad = any(re.fullmatch(rx, line) is None for rx, line in zip(case.stderr_res, got))
    if bad:
        rows = []
        for i in range(max(len(got), len(case.stderr_res))):
            rx = case.stderr_res[i] if i < len(case.stderr_res) else "<no line expected>"
            line = got[i] if i < len(got) else "<missing>"
            ok = i < len(got) and i < len(case.stderr_res) and re.fullmatch(rx, line)
            rows.append(f"  {'ok ' if ok else 'BAD'} regex: {rx}\n      got: {line!r}")
        problems.append("stderr does not match:\n" + "\n".join(rows))

    if status != case.status:
        problems.append(f"exit status: expected {case.status}, got {status}")

    if problems:
        head = f"conformance case {case.name!r} [engine={engine}] argv={case.argv(engine)}"
        pytest.fail(head + "\n" + "\n".join(problems), pytrace=False)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", case_names())
def test_conformance(name: str, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ktapjit.cli import main

    case = load_case(name)
    monkeypatch.chdir(CASE_DIR)
    out, err = io.BytesIO(), io.BytesIO()
    status = main(case.argv(engine), stdout=out, stderr=err)
    check(case, engine, out.getvalue(), err.getvalue(), status)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_conformance_subprocess(name: str, engine: str) -> None:
    """The real entry point: same expectations, and never a Python traceback."""
    case = load_case(name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "ktapjit", *case.argv(engine)],
        cwd=CASE_DIR,
        capture_output=True,
        timeout=300,
        env=env,
    )
    assert b"Traceback" not in proc.stderr, (
        f"{name}: traceback on the real entry point:\n"
        + proc.stderr.decode("utf-8", "replace")[-4000:]
    )
    check(case, engine, proc.stdout, proc.stderr, proc.returncode)


def test_case_files_well_formed() -> None:
    """Every expectation file belongs to a script, and every regex compiles."""
    names = set(case_names())
    assert len(names) >= 200
    for p in CASE_DIR.iterdir():
        stem, ext = os.path.splitext(p.name)
        assert ext in {".kp", ".out", ".err", ".status"}, f"stray file {p.name}"
        assert stem in names, f"{p.name} has no {stem}.kp"
    for name in names:
        case = load_case(name)
        for rx in case.stderr_res:
            re.compile(rx)
        assert case.status in (0, 1, 2), name
        if case.status == 2:
            assert case.stdout == b"", f"{name}: a compile error produces no output"
            assert len(case.stderr_res) == 3, f"{name}: compile errors take 3 lines"
        if case.status == 1:
            assert case.stderr_res and case.stderr_res[-1].startswith("error: "), name
    for name in SUBPROCESS_CASES:
        assert name in names, name


def _compare_verdict(stderr: bytes) -> bytes:
    return b"\n".join(line for line in stderr.splitlines() if line.startswith(b"compare: identical output"))


@pytest.mark.slow
@pytest.mark.parametrize("name", case_names())
def test_conformance_engine_compare(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--engine compare` finds the engines identical on every case, and the
    output it prints is the case's expected output."""
    from ktapjit.cli import main

    case = load_case(name)
    monkeypatch.chdir(CASE_DIR)
    out, err = io.BytesIO(), io.BytesIO()
    status = main(case.argv("compare"), stdout=out, stderr=err)
    if case.status == 2:  # a compile error: nothing runs, so nothing is compared
        assert (status, out.getvalue()) == (2, b"")
        return
    assert _compare_verdict(err.getvalue()), err.getvalue().decode("utf-8", "replace")[-3000:]
    assert (status, out.getvalue()) == (case.status, case.stdout)
