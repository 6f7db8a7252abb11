"""The engine contract (run_api.py): an event chunk followed from the ring to
native code through declared types.

- Every run, and every native feed, offers the whole protocol it stands for
  (run_api.Run, run_api.NativeFeed), so a driver never has to ask.
- No module finds an engine's capability by name (getattr/hasattr with a
  member of the contract): the run says what it offers.
- The FeedPlan a session builds (tracing/feed_plan.py) is plain values:
  frozen dataclasses of ints, strings, bytes and tuples, the same for the
  same session; the JIT loads it and reads nothing else of tracing/.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from pathlib import Path

import pytest

from ktapjit import run_api
from ktapjit.compare import TimedRun
from ktapjit.compiler import compile_script
from ktapjit.events.schema import EventFormat
from ktapjit.interp.engine import InterpRun
from ktapjit.jit.engine import JitRun
from ktapjit.jit.feed import NativeFeed
from ktapjit.tracing.feed_plan import build_feed_plan
from ktapjit.tracing.session import replay_session

ROOT = Path(__file__).resolve().parent.parent / "ktapjit"
DATA = Path(__file__).resolve().parent / "data"


def members(protocol) -> set[str]:
    """The names a Protocol declares: its annotated attributes and its methods."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {name for name, _ in inspect.getmembers(protocol) if not name.startswith("_")}
    return names - set(dir(object)) - {"_is_protocol"}


def offered(cls) -> set[str]:
    """What instances of `cls` have: class members and attributes its
    __init__ (or a base's) sets on self."""
    names = {name for name in dir(cls) if not name.startswith("_")}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if not inspect.isfunction(init):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        names |= {node.attr for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "self" and isinstance(node.ctx, ast.Store)}
    return names


@pytest.mark.parametrize("cls", [InterpRun, JitRun, TimedRun], ids=lambda c: c.__name__)
def test_every_run_offers_the_whole_run_protocol(cls):
    missing = members(run_api.Run) - offered(cls) - ({"feed_chunk", "feed_release"} if cls is InterpRun else set())
    assert missing == set()


def test_only_a_run_that_feeds_natively_takes_chunks():
    assert (InterpRun.feeds_natively, JitRun.feeds_natively) == (False, True)
    assert InterpRun.native_feed(object.__new__(InterpRun), plan=None) is None  # whatever the plan


def test_the_jit_feed_offers_the_whole_native_feed_protocol():
    assert members(run_api.NativeFeed) - offered(NativeFeed) == set()


def test_the_jit_loads_the_plan_and_reads_nothing_else():
    """jit/feed.py takes the FeedPlan of run_api: nothing of tracing/, of the
    decoder's attr tables or of the filter language."""
    tree = ast.parse((ROOT / "jit" / "feed.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    ktapjit = {name for name in imported if name.startswith("ktapjit")}
    assert {name for name in ktapjit if not name.startswith("ktapjit.jit")} == {"ktapjit.run_api"}


CONTRACT = members(run_api.Run) | members(run_api.NativeFeed) | {"open_native", "feed_bytes"}


def test_nothing_finds_an_engine_capability_by_name():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant) and node.args[1].value in CONTRACT):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.func.id} {node.args[1].value}")
    assert found == []


SCRIPT = b"""trace sched:sched_switch /prev_pid != 0/ { print(argstr, arg0, args.prev_comm, args.nothing) }
trace sched:sched_switch, sched:sched_wakeup { print(probename, pid) }
tick-1s { }
"""
PLAIN = (int, str, bytes, bool, type(None))


def plain(value, where: str = "plan") -> list[str]:
    """Where `value` holds something that is not a plain value (an
    argstr's EventFormat is the one handle allowed)."""
    if isinstance(value, PLAIN):
        return []
    if isinstance(value, tuple):
        return [bad for i, item in enumerate(value) for bad in plain(item, f"{where}[{i}]")]
    if dataclasses.is_dataclass(value) and type(value).__module__ == "ktapjit.run_api":
        if not type(value).__dataclass_params__.frozen:
            return [f"{where}: {type(value).__name__} is not frozen"]
        return [bad for f in dataclasses.fields(value) for bad in plain(getattr(value, f.name), f"{where}.{f.name}")]
    if isinstance(value, EventFormat) and where.endswith(".format"):
        return []
    return [f"{where}: {type(value).__name__}"]


def session_plan(path: Path, source: bytes):
    module = compile_script(source, "-e").module
    session = replay_session(str(path), module)
    return build_feed_plan(session.plan, session.raw.attrs(), session.start_ns, module)


def test_a_feed_plan_is_plain_values():
    plan = session_plan(DATA / "sched.data", SCRIPT)
    assert isinstance(plan, run_api.FeedPlan)
    assert plain(plan) == []
    assert repr(plan) == repr(session_plan(DATA / "sched.data", SCRIPT))  # formats compare by identity


def test_a_feed_plan_says_what_each_sample_id_runs():
    plan = session_plan(DATA / "sched.data", SCRIPT)
    runs = {tuple((p.entry, p.index, p.name, p.filter is not None) for p in plan.groups[route.group])
            for route in plan.ids if route.group >= 0}
    assert runs == {
        (("probe", 0, "sched:sched_switch", True), ("probe", 1, "sched:sched_switch", False)),
        (("probe", 1, "sched:sched_wakeup", False),),
    }
    switch = plan.groups[0][0] if plan.groups[0][0].index == 0 else plan.groups[1][0]
    values, fields = dict(switch.values), dict(switch.fields)
    assert values["pid"] == run_api.TaskValue("pid")
    assert values["probename"] == run_api.ConstValue(b"sched_switch")
    assert values["arg0"] == fields["prev_comm"] == run_api.FieldValue("chars", fields["prev_comm"].offset, 16)
    assert values["arg9"] == run_api.NilValue()
    assert switch.unknown_field == run_api.FieldValue("missing")
