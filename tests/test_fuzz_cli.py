"""Fuzzing the whole command: whatever the input, `ktapjit run` ends with a
clean compile error (2), a runtime error (1) or success (0), and never with
a traceback or an internal error."""

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktapjit.cli import main

TOKENS = [
    "var", "function", "return", "if", "elseif", "else", "while", "for", "in", "break",
    "repeat", "until", "trace", "trace_end", "nil", "true", "false", "pairs", "print",
    "printf", "print_hist", "len", "delete", "stringof", "exit", "table.new", "arg",
    "x", "y", "t", "f", "k", "v", "0", "1", "-1", "7", "0xff", "9223372036854775807",
    '"s"', "'%d'", '"%s|%5d"', "(", ")", "{", "}", "[", "]", ",", ";", ".", "=", "+=", "-=",
    "*=", "/=", "%=", "||", "&&", "==", "!=", "<", "<=", ">", ">=", "|", "^", "&", "<<",
    ">>", "..", "+", "-", "*", "/", "%", "!", "~", "#c\n", "\n",
]
# Probe syntax is only compiled (`ktapjit ir`), never run: running it would trace live.
PROBE_TOKENS = TOKENS + ["trace", "pid", "args", "tick-1s", "profile-1ms", "sched:sched_switch", "/prev_pid == 1/"]

# A prefix that declares the names the token soup uses, so more of it gets past resolve.
PRELUDE = "var x, y, t, k, v = 1, 2, {}, 3, 4\nfunction f(a, b) { return a }\n"

FUZZ_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_source(source: bytes, command: str = "run") -> tuple[int, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    args = [command, "--max-loop", "200", "--max-depth", "20", "-e", source.decode("latin-1")]
    status = main(args, stdout=out, stderr=err)
    return status, err.getvalue()


def assert_clean(status: int, err: bytes) -> None:
    assert status in (0, 1, 2), err
    assert b"Traceback" not in err and b"internal error" not in err, err
    if status:
        assert err.strip(), "a failure must say why"


@FUZZ_SETTINGS
@given(st.binary(max_size=200).filter(lambda b: b"trace" not in b and b"tick-" not in b and b"profile-" not in b))
def test_random_bytes(data):
    assert_clean(*run_source(data))


@FUZZ_SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_sequences(tokens):
    assert_clean(*run_source((PRELUDE + " ".join(tokens)).encode()))


@FUZZ_SETTINGS
@given(st.lists(st.sampled_from(PROBE_TOKENS), max_size=40))
def test_random_token_sequences_with_probes_compile_cleanly(tokens):
    assert_clean(*run_source((PRELUDE + " ".join(tokens)).encode(), command="ir"))


SOAK_SETTINGS = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@SOAK_SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_soak_random_token_sequences(tokens):
    assert_clean(*run_source((PRELUDE + " ".join(tokens)).encode()))
