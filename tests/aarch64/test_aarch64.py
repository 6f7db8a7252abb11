"""AArch64 code, run and compared with the interpreter (issue 14, item 3).

Every conformance case, the replay scripts and a slice of the differential
fuzzer are compiled here into aarch64 bundles, run by ktapjit in an arm64
Python under qemu (harness.py), and must print byte for byte what the
interpreter prints here: same stdout, same stderr, same exit status. A
script that does not compile must fail `ktapjit compile --target aarch64`
exactly as it fails `ktapjit run`.

Marked `aarch64`: not in the default suite; `make test` runs them after the
slow tests, within a time budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from tests.aarch64.harness import Job, Outcome, cli, compile_bundle, differences, run_in_guest, unavailable_reason
from tests.test_conformance import CASE_DIR, case_names, check, load_case

pytestmark = pytest.mark.aarch64

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "data" / "demo.data"
DATA = REPO / "tests" / "data"
FUZZ_EXAMPLES = 60


@pytest.fixture(scope="module")
def arm64() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def _run_all(items: list[tuple[str, str, list[str], list[str], Path]], bundles: Path) -> dict[str, tuple[str, Outcome]]:
    """items: (key, script, options, args, cwd). Each is compiled for aarch64
    (a compile error is its outcome), then all bundles run in one guest."""
    done: dict[str, tuple[str, Outcome]] = {}
    jobs, keys = [], []
    for key, script, options, args, cwd in items:
        bundle = bundles / f"{key}.kjx"
        compiled = compile_bundle(script, options, bundle, cwd)
        if compiled.status != 0:
            done[key] = ("compile", compiled)
            continue
        jobs.append(Job(str(cwd), ["run", str(bundle), *options, *args]))
        keys.append(key)
    for key, outcome in zip(keys, run_in_guest(jobs)):
        done[key] = ("run", outcome)
    return done


# --- every conformance case ---------------------------------------------------------------


@pytest.fixture(scope="module")
def conformance_runs(arm64, tmp_path_factory):
    items = []
    for name in case_names():
        case = load_case(name)
        items.append((name, case.script, case.opts, case.args, CASE_DIR))
    return _run_all(items, tmp_path_factory.mktemp("conformance-aarch64"))


@pytest.mark.parametrize("name", case_names())
def test_conformance_case_on_aarch64(name, conformance_runs):
    case = load_case(name)
    _, aarch64 = conformance_runs[name]
    check(case, "aarch64", aarch64.stdout, aarch64.stderr, aarch64.status)
    interp = cli(case.argv("interp"), CASE_DIR)
    assert not differences(interp, aarch64)


# --- replays of recordings ---------------------------------------------------------------

# (name, script, recording): the examples over the bundled recording, and the
# event paths of tests/tracing/test_replay.py: argstr, fields by name and
# position, filters, tick timers, exit() and errors in probes, stacks.
REPLAYS = [
    *[(f"example_{name}", (REPO / "examples" / f"{name}.kp").read_text(), DEMO)
      for name in ("hello", "syscount", "syscount_by_process", "schedtime", "syslat", "filtered", "sysdist")],
    *[(f"argstr_{rec}", "trace *:* { print(argstr) }", DATA / f"{rec}.data")
      for rec in ("sched", "pipe", "getppid")],
    ("values_sched", 'trace sched:sched_switch { printf("%d %d %s %s %d %d\\n", cpu, pid, execname, '
                     'args.prev_comm, arg2, args.next_pid) }', DATA / "sched.data"),
    ("filter_sched", 'trace sched:sched_switch /prev_pid == 0 || next_comm == "bash"/ { print(args.next_comm) }',
     DATA / "sched.data"),
    ("tick_sched", "var n = 0\ntrace sched:* { n += 1 }\ntick-1ms { print(n) }\ntrace_end { print(\"end\", n) }",
     DATA / "sched.data"),
    ("exit_sched", "var n = 0\ntrace sched:* { n += 1; if (n == 5) { exit() } }\ntrace_end { print(n) }",
     DATA / "sched.data"),
    ("error_sched", "trace sched:sched_switch { var t = nil; t[1] = 2 }\ntrace_end { print(\"done\") }",
     DATA / "sched.data"),
    ("stacks_callchain", "var s = {}\ntrace *:* { s[stack()] += 1 }\ntrace_end { print_hist(s, 5) }",
     DATA / "callchain.data"),
    ("per_event_pipe", "var c = {}\ntrace sched:* { c[probename] += 1 }\ntrace_end { print_hist(c) }",
     DATA / "pipe.data"),
    ("getppid_many", "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }",
     DATA / "getppid.data"),
]


@pytest.fixture(scope="module")
def replay_runs(arm64, tmp_path_factory):
    work = tmp_path_factory.mktemp("replay-aarch64")
    items = []
    for name, source, recording in REPLAYS:
        (work / f"{name}.kp").write_text(source)
        items.append((name, f"{name}.kp", ["--replay", str(recording)], [], work))
    return work, _run_all(items, work)


@pytest.mark.parametrize("name,source,recording", REPLAYS, ids=[r[0] for r in REPLAYS])
def test_replay_on_aarch64(name, source, recording, replay_runs):
    work, runs = replay_runs
    kind, aarch64 = runs[name]
    interp = cli(["run", "--engine", "interp", "--replay", str(recording), f"{name}.kp"], work)
    assert kind == "run" and interp.status in (0, 1), (kind, interp)  # a replay test, not a compile error
    assert not differences(interp, aarch64)
    assert interp.stdout, "a replay that prints nothing compares nothing"


# --- a slice of the differential fuzzer ----------------------------------------------------


def _fuzz_cases():
    from tests.differential.test_differential import _SUPPRESS, cases

    drawn = []

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=_SUPPRESS)
    @given(case=cases())
    def collect(case):
        drawn.append(case)

    collect()
    return drawn


@pytest.fixture(scope="module")
def fuzz_runs(arm64, tmp_path_factory):
    from tests.differential.harness import Workspace

    work = tmp_path_factory.mktemp("fuzz-aarch64")
    workspace = Workspace(work)
    cases, items = _fuzz_cases(), []
    for i, case in enumerate(cases):
        script = workspace.script(case, f"fuzz{i}.kp")
        options = list(case.options)
        if case.stream is not None:
            options += ["--replay", str(workspace.recording(case.stream))]
        items.append((f"fuzz{i}", script.name, options, list(case.args), work))
    runs = _run_all(items, work)
    return work, [(case, item, runs[item[0]]) for case, item in zip(cases, items)]


def test_fuzzer_slice_agrees_on_aarch64(fuzz_runs):
    from tests.differential.harness import report

    work, runs = fuzz_runs
    assert len(runs) >= FUZZ_EXAMPLES // 2
    for case, (_, script, options, args, _), (kind, aarch64) in runs:
        interp = cli(["run", "--engine", "interp", *options, script, *args], work)
        assert kind == "run", aarch64.stderr
        if differences(interp, aarch64):
            raise AssertionError(report(case, ("interp", "aarch64"), interp, aarch64))


# --- bundle round trips through the real entry point ----------------------------------------

SYSCOUNT = REPO / "examples" / "syscount.kp"


def ktapjit(*argv: str, cwd: Path = REPO) -> Outcome:
    """`ktapjit ARGV` as a user runs it: the venv's entry point, a new process."""
    import subprocess
    import sys

    done = subprocess.run([str(Path(sys.executable).parent / "ktapjit"), *argv], cwd=cwd, capture_output=True,
                          timeout=600, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def syscount_aarch64(arm64, tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("roundtrip") / "s.kjx"
    assert ktapjit("compile", "--target", "aarch64", str(SYSCOUNT), "-o", str(bundle)) == Outcome(0, b"", b"")
    return bundle


def test_an_aarch64_bundle_replays_here_as_the_interpreter_runs_it(syscount_aarch64):
    """The issue's `Done when`, command for command."""
    interp = ktapjit("run", "--engine", "interp", "--replay", str(DEMO), str(SYSCOUNT))
    assert interp.status == 0 and interp.stdout
    assert ktapjit("run", str(syscount_aarch64), "--replay", str(DEMO)) == interp
    assert ktapjit("source", str(syscount_aarch64)) == Outcome(0, SYSCOUNT.read_bytes(), b"")


def test_run_options_reach_the_emulated_run(syscount_aarch64, tmp_path):
    interp = ktapjit("run", "--engine", "interp", "-f", "json", "--replay", str(DEMO), str(SYSCOUNT))
    out = tmp_path / "out.json"
    assert ktapjit("run", "-f", "json", "-o", str(out), str(syscount_aarch64), "--replay", str(DEMO)) == \
        Outcome(0, b"", b"")
    assert out.read_bytes() == interp.stdout
    compared = ktapjit("run", "--engine", "compare", str(syscount_aarch64), "--replay", str(DEMO))
    assert compared.status == 0 and b"compare: identical output" in compared.stderr, compared.stderr


def test_an_aarch64_bundle_is_refused_live_here(syscount_aarch64):
    refused = ktapjit("run", str(syscount_aarch64))
    assert (refused.status, refused.stdout) == (2, b"")
    assert refused.stderr == (f"ktapjit: {syscount_aarch64} holds aarch64 code and this machine is x86_64: "
                              f"compile it with --target x86_64 (ktapjit source {syscount_aarch64} prints the "
                              f"script); here it can only replay a recording (--replay), under emulation\n").encode()


def test_an_x86_64_bundle_is_refused_on_aarch64(arm64, tmp_path):
    import subprocess

    from ktapjit.bundle.emulate import guest_python

    bundle = tmp_path / "x.kjx"
    assert ktapjit("compile", "--target", "x86_64", str(SYSCOUNT), "-o", str(bundle)).status == 0
    python, env = guest_python("aarch64", str(bundle))
    done = subprocess.run([*python, "-m", "ktapjit", "run", str(bundle), "--replay", str(DEMO)], env=env,
                          capture_output=True, timeout=300, check=False)
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr == (f"ktapjit: {bundle} holds x86_64 code and this machine is aarch64: compile it with "
                           f"--target aarch64 (ktapjit source {bundle} prints the script)\n").encode()
