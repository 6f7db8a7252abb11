"""What a run imports: start-up stays short only while the modules a
command never uses stay unimported (docs/performance-notes.md, Start-up).

Each case runs the command a user types, in a subprocess, and lists the
modules it imported by the time it exits: a module named here that shows up
means an import crept back onto that path (at the top of a module the path
reaches). This is the deterministic stand-in for a timed start-up test:
the times themselves are measured by `python -m bench --sections startup`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "examples" / "data" / "demo.data")
SYSCOUNT = str(ROOT / "examples" / "syscount.kp")

# Runs `ktapjit ARGV` through the console entry point, then writes the
# imported module names, one a line, to the file named by the first argument.
_LIST_IMPORTS = """\
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from ktapjit.cli import entry
entry()
"""

# A JIT run whose script is in the JIT's cache (jit/script_cache.py) compiles
# nothing: no front end, no lowering, no LLVM.
_COMPILER = (
    "llvmlite.ir",
    "llvmlite.binding",
    "ktapjit.jit.lower",
    "ktapjit.frontend.ast",
    "ktapjit.frontend.parse",
    "ktapjit.frontend.lalr",
    "ktapjit.frontend.resolve",
    "ktapjit.ir.ssa_build",
)

# Only a live trace, a dynamic probe, a filter or a stack needs these.
_PROBES_AND_FILTERS = (
    "ktapjit.events.probes.dynamic_probes",
    "ktapjit.events.probes.elf",
    "ktapjit.events.probes.probe_targets",
    "ktapjit.events.probes.symbolize",
    "ktapjit.events.records.perf_ring",
    "ktapjit.kernel_filter.language",
    "ktapjit.kernel_filter.native",
    "ktapjit.tracing.live",
    "ktapjit.tracing.replay_dynamic",
    "ktapjit.bpf.loader",
    "ktapjit.metrics.server",
    "ktapjit.output_json",
)

CASES = [
    pytest.param(["run", "--replay", DEMO, SYSCOUNT], "1264 system calls, 40 different ones\n",
                 _PROBES_AND_FILTERS + _COMPILER, id="replay-jit"),
    pytest.param(["run", "--engine", "interp", "--replay", DEMO, SYSCOUNT], "1264 system calls, 40 different ones\n",
                 _PROBES_AND_FILTERS + ("llvmlite", "ktapjit.jit.engine"), id="replay-interp"),
    pytest.param(["run", "--engine", "interp", "-e", 'print("hi")'], "hi\n",
                 _PROBES_AND_FILTERS + ("llvmlite", "ktapjit.jit.engine", "ktapjit.tracing.session",
                                        "ktapjit.events.records.decode", "ktapjit.events.schema"),
                 id="hi-interp"),
    pytest.param(["run", "-e", 'print("hi")'], "hi\n",
                 _PROBES_AND_FILTERS + _COMPILER + ("ktapjit.tracing.session", "ktapjit.jit.feed",
                                                    "ktapjit.events.records.decode", "ktapjit.events.schema"),
                 id="hi-jit"),
]


@pytest.mark.parametrize("argv, first_line, never", CASES)
def test_a_run_imports_nothing_it_does_not_use(tmp_path, argv, first_line, never):
    listing = tmp_path / "modules"
    env = {**os.environ, "KTAPJIT_CACHE_DIR": str(tmp_path / "cache")}
    # The second run is the warm one a user's every run after the first is.
    first = subprocess.run([sys.executable, "-m", "ktapjit", *argv], env=env, cwd=ROOT, capture_output=True,
                           timeout=300)
    assert (first.returncode, first.stderr) == (0, b"")
    done = subprocess.run([sys.executable, "-c", _LIST_IMPORTS, str(listing), *argv], env=env, cwd=ROOT,
                          capture_output=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode().splitlines(keepends=True)[0] == first_line
    imported = set(listing.read_text().split())
    assert sorted(set(never) & imported) == []
