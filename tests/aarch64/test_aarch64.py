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
