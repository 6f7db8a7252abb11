"""Differential fuzzing: the engines agree, byte for byte, on every well-formed script.

LANGUAGE.md says the JIT must match the interpreter byte for byte. These
tests check it on random scripts (scripts.py) over random synthetic
recordings (streams.py): same stdout, same stderr, same exit status.

* The generator is checked on its own, with the reference alone, so it
  stays trustworthy before the second engine exists: every generated script
  compiles and runs cleanly, and deterministically.
* The differential property runs a small budget in the default suite and
  a large one under ``-m slow``.
* Disagreements found are minimised by hand into ``regressions/*.kp``
  (format: harness.py); each is replayed under both engines.

Both engines must run: an engine that cannot is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differential.harness import (
    RUN_OPTIONS, Case, Outcome, Workspace, differences, engine_available, first_difference, report, run_case,
    unavailable_reason,
)
from tests.differential.scripts import scripts
from tests.differential.streams import StreamPlan, stock_plans, stream_plans

# The engines compared: the reference first.
DIFF_ENGINES = ("interp", "jit")
REFERENCE, CANDIDATE = DIFF_ENGINES

REGRESSION_DIR = Path(__file__).resolve().parent / "regressions"

# Generated scripts can be large (hypothesis's data and speed checks fire
# on them), and a recording per example is slow to build; neither is a problem.
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
BUDGET = settings(max_examples=60, deadline=None, suppress_health_check=_SUPPRESS)
# The soak's size: CI runs it within its slow-test budget (~2 min); set
# KTAPJIT_SOAK_EXAMPLES=1500 (about 9 minutes here) for a long soak.
SOAK = settings(BUDGET, max_examples=int(os.environ.get("KTAPJIT_SOAK_EXAMPLES", "250")))


def limit_options() -> st.SearchStrategy[tuple[str, ...]]:
    """Mostly the harness's low defaults; sometimes limits small enough that the
    generated scripts hit them: table overflow, string too long, stack overflow."""
    small = st.tuples(
        st.sampled_from([("--max-loop", "200"), ("--max-loop", "7")]),
        st.sampled_from([("--max-depth", "40"), ("--max-depth", "3")]),
        st.sampled_from([(), ("--max-table", "6")]),
        st.sampled_from([(), ("--max-string", "24")]),
    ).map(lambda parts: tuple(arg for part in parts for arg in part))
    return st.one_of(st.just(RUN_OPTIONS), small)


@st.composite
def cases(draw, streams: st.SearchStrategy[StreamPlan] = stock_plans()) -> Case:
    """A generated script, with a recording when it needs one (probes, timers,
    the clock) and sometimes when it does not, and the run's limits.

    The default suite draws recordings from a stock set (fast: each is built
    once); the soak draws random ones."""
    script = draw(scripts())
    wants_stream = script.needs_stream or draw(st.booleans())
    stream = draw(streams) if wants_stream else None
    return Case(source=script.source, args=script.args, stream=stream, options=draw(limit_options()))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    # Module scope: hypothesis reruns the test body many times per test call.
    return Workspace(tmp_path_factory.mktemp("differential"))


@pytest.fixture(scope="module")
def candidate() -> str:
    """The engine checked against the reference; it must run."""
    assert unavailable_reason(CANDIDATE) is None, unavailable_reason(CANDIDATE)
    return CANDIDATE


def assert_clean(case: Case, outcome: Outcome) -> None:
    """Success or a runtime error; never a compile error, a crash or a traceback."""
    problems = []
    if outcome.status not in (0, 1):
        problems.append(f"exit status {outcome.status} (2 is a compile error: a generator bug)")
    for bad in (b"internal error", b"Traceback"):
        if bad in outcome.stderr:
            problems.append(f"stderr contains {bad.decode()!r}: an engine bug")
    if outcome.status == 1 and not outcome.stderr.startswith(b"error: ") and b"\nerror: " not in outcome.stderr:
        problems.append("status 1 without an `error: ` line")
    if problems:   # raised directly: the message is the whole story, no introspection
        raise AssertionError("\n".join([
            *problems, "stderr: " + outcome.stderr.decode("utf-8", "replace")[-2000:],
            "--- case ---", case.file_text(), "--- end of case ---",
        ]))


def assert_same(case: Case, names: tuple[str, str], a: Outcome, b: Outcome) -> None:
    """Byte-identical outcomes, or a report that is ready to save as a regression case."""
    if differences(names, a, b):
        raise AssertionError(report(case, names, a, b))


def assert_engines_agree(case: Case, workspace: Workspace, engines: tuple[str, str],
                         script: Path | None = None) -> None:
    outcomes = [run_case(engine, case, workspace, script) for engine in engines]
    assert_same(case, engines, *outcomes)
    # Agreeing on a crash is no success: the soak checks the generator this way too.
    assert_clean(case, outcomes[0])


# --- the generator, checked with the reference alone ------------------------------------------

@BUDGET
@given(case=cases())
def test_generated_scripts_compile_and_run_cleanly_on_the_reference(case, workspace):
    first = run_case(REFERENCE, case, workspace)
    assert_clean(case, first)
    # Deterministic, so any later disagreement is the engines', not the script's.
    again = run_case(REFERENCE, case, workspace)
    assert_same(case, ("run 1", "run 2"), first, again)


# --- the differential property ----------------------------------------------------------------

@BUDGET
@given(case=cases())
def test_engines_agree_on_generated_scripts(case, workspace, candidate):
    assert_engines_agree(case, workspace, (REFERENCE, candidate))


@pytest.mark.slow
@SOAK
@given(case=cases(streams=stream_plans()))
def test_engines_agree_on_generated_scripts_soak(case, workspace, candidate):
    assert_engines_agree(case, workspace, (REFERENCE, candidate))


# --- regression cases -------------------------------------------------------------------------

def regression_files() -> list[Path]:
    return sorted(REGRESSION_DIR.glob("*.kp"))


@pytest.mark.parametrize("path", regression_files(), ids=lambda p: p.stem)
def test_regression_case_runs_cleanly_on_the_reference(path, workspace):
    case = Case.from_file(path)
    assert_clean(case, run_case(REFERENCE, case, workspace, path))


@pytest.mark.parametrize("path", regression_files(), ids=lambda p: p.stem)
def test_engines_agree_on_regression_case(path, workspace, candidate, request):
    case = Case.from_file(path)
    if case.xfail:   # strict: once the engines agree, the header must go
        request.applymarker(pytest.mark.xfail(reason=case.xfail, strict=True))
    assert_engines_agree(case, workspace, (REFERENCE, candidate), script=path)


# --- the harness itself -----------------------------------------------------------------------

def test_both_engines_are_available():
    assert engine_available(REFERENCE) and engine_available(CANDIDATE)


def test_regression_directory_holds_at_least_the_sample():
    assert any(p.stem.startswith("sample") for p in regression_files())


@settings(max_examples=30)
@given(plan=stream_plans())
def test_stream_header_names_the_plan(plan):
    assert StreamPlan.parse(plan.header().removeprefix("# stream:")) == plan


def test_saved_case_reads_back(tmp_path):
    case = Case(source="print(arg[1])\n", args=("two words", "x"),
                stream=StreamPlan(seed=9, events=3), options=("--max-loop", "10"))
    path = tmp_path / "c.kp"
    path.write_text(case.file_text())
    back = Case.from_file(path)
    assert (back.args, back.stream, back.options) == (case.args, case.stream, case.options)
    assert back.file_text() == case.file_text()


def test_first_difference_names_the_first_differing_line():
    assert first_difference(b"a\nb\n", b"a\nb\n") is None
    assert first_difference(b"a\nb\nc\n", b"a\nx\nc\n") == (2, b"b\n", b"x\n")
    assert first_difference(b"a\n", b"a\nmore\n") == (2, b"", b"more\n")
    assert first_difference(b"a\n", b"a") == (1, b"a\n", b"a")   # a lost newline shows


def test_report_shows_the_script_the_seed_and_the_first_difference():
    case = Case(source="print(1)\n", stream=StreamPlan(seed=1234))
    text = report(case, DIFF_ENGINES, Outcome(0, b"1\n", b""), Outcome(1, b"2\n", b"error: x\n"))
    assert "seed: 1234" in text and "# stream: seed=1234" in text
    assert "print(1)" in text
    assert "exit status: interp 0, jit 1" in text
    assert "stdout first differs at line 1" in text and "b'2\\n'" in text
    assert "stderr first differs at line 1" in text
