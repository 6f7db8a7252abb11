"""The JIT needs no C toolchain at run time: with no cc, gcc, clang or ld on
PATH (only the venv's bin and a python3) and an empty cache, the whole JIT
test set, the conformance cases under the JIT and a live --jit run pass.

Slow (the JIT test set runs again in a subprocess, ~2 min): `make test` runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.livecheck import live_skip_reason

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("cc", "gcc", "clang", "ld", "ld.bfd", "ld.gold", "ld.lld", "as")
COUNT = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }"


@pytest.fixture
def bare_env(tmp_path) -> dict[str, str]:
    """PATH: the venv's bin, and a directory holding only python3; a fresh cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    path = os.pathsep.join([str(Path(sys.prefix) / "bin"), str(bin_dir)])
    found = {tool: shutil.which(tool, path=path) for tool in TOOLS}
    assert not any(found.values()), f"a toolchain is on the bare PATH: {found}"
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "LD", "PYTHONPATH")}
    return {**env, "PATH": path, "KTAPJIT_CACHE_DIR": str(tmp_path / "cache")}


@pytest.mark.slow
def test_the_jit_test_set_passes_with_no_toolchain(bare_env):
    done = subprocess.run(
        ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "tests/jit",
         "tests/test_conformance.py", "-k", "not conformance or jit or compare"],
        cwd=ROOT, env=bare_env, capture_output=True, text=True, timeout=1500)
    tail = "\n".join(done.stdout.splitlines()[-15:])
    assert done.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail


LIVE_SKIP = live_skip_reason("live tracing", "events/syscalls/sys_enter_getppid/id",
                             "this kernel has no syscalls:sys_enter_getppid tracepoint")


@pytest.mark.live
@pytest.mark.skipif(LIVE_SKIP is not None, reason=str(LIVE_SKIP))
def test_a_live_jit_run_with_no_toolchain(bare_env):
    """A first run, so the runtime is linked and the script compiled with no ld."""
    child = "import os\nfor _ in range(200): os.getppid()"
    done = subprocess.run(["ktapjit", "run", "--jit", "-e", COUNT, "--", "python3", "-c", child],
                          cwd=ROOT, env=bare_env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "Tracing 1 event... Hit Ctrl-C to end.\n")
    assert int(done.stdout) >= 200
    assert list((Path(bare_env["KTAPJIT_CACHE_DIR"]) / "jit").glob("*.kimg"))
