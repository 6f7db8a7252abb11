"""Which engine `ktapjit run` takes: the JIT unless told otherwise
(`--engine interp` is the reference interpreter; `--jit` is still accepted),
and a JIT that cannot run here is one line saying why and how to do without
it, status 2, with nothing of the script run: never a silent switch to the
interpreter.

Each case runs the command a user types, in a subprocess, with its own cache
directory: which engine ran shows in that directory, since only the JIT
writes compiled scripts to its `jit/` folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ktapjit.jit import rtlib
from tests.livecheck import live_skip_reason

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "data" / "demo.data"
SYSCOUNT = ROOT / "examples" / "syscount.kp"
HELLO = 'print("hi")\ntrace_end { print("end") }'
FALL_BACK = "; to run without the JIT: --engine interp\n"
NO_COMPILER = ("ktapjit: the JIT needs a C compiler to build its runtime, and none was found "
               "(set CC or install gcc)" + FALL_BACK)
NO_LLVMLITE = "ktapjit: the JIT needs llvmlite, which is not installed (pip install llvmlite)" + FALL_BACK


def ktapjit(*argv: str, env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess:
    """`ktapjit ARGV` as a user runs it; `prelude` is Python run first (to take llvmlite away)."""
    code = f"{prelude}\nfrom ktapjit.cli import entry\nentry()"
    return subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, timeout=120, cwd=ROOT)


def environment(cache: Path, **changes: str) -> dict[str, str]:
    env = {**os.environ, "KTAPJIT_CACHE_DIR": str(cache), **changes}
    env.pop("CC", None)
    return env


@pytest.fixture
def cache(tmp_path) -> Path:
    """A cache directory that shares the built runtime (no C build per test) but has no compiled scripts."""
    root = tmp_path / "cache"
    root.mkdir()
    (root / "rt").symlink_to(rtlib.library_path().parent, target_is_directory=True)
    return root


def compiled_scripts(cache: Path) -> list[Path]:
    return sorted((cache / "jit").glob("*.so"))


ENGINE_FLAGS = [
    # flags, whether the JIT compiles the script
    ([], True),
    (["--jit"], True),
    (["--engine", "jit"], True),
    (["--engine", "compare"], True),
    (["--engine", "interp"], False),
]


@pytest.mark.parametrize("flags,jit", ENGINE_FLAGS, ids=[" ".join(f) or "(no flag)" for f, _ in ENGINE_FLAGS])
def test_run_takes_the_jit_unless_told_otherwise(cache, flags, jit):
    proc = ktapjit("run", *flags, "-e", HELLO, env=environment(cache))
    assert (proc.returncode, proc.stdout) == (0, b"hi\nend\n"), proc.stderr
    assert len(compiled_scripts(cache)) == (1 if jit else 0)


def test_the_help_names_the_default():
    proc = ktapjit("run", "--help", env=os.environ.copy())
    assert proc.returncode == 0
    assert "jit (the default)" in " ".join(proc.stdout.decode().split())


# ------------------------------------------------------- a JIT that cannot run here


@pytest.fixture
def no_compiler(tmp_path) -> dict[str, str]:
    """No cc, gcc, clang or ld on PATH and an empty cache: the runtime must be built, and cannot be."""
    empty = tmp_path / "bin"
    empty.mkdir()
    return environment(tmp_path / "empty-cache", PATH=str(empty))


NO_COMPILER_CASES = {
    # the command after `ktapjit`: each would print something if any of the script ran
    "default": ["run", "-e", HELLO],
    "--jit": ["run", "--jit", "-e", HELLO],
    "compare": ["run", "--engine", "compare", "-e", HELLO],
    "replay": ["run", "--replay", str(DEMO), str(SYSCOUNT)],
    "-o": ["run", "-o", "OUT", "-e", HELLO],
}


@pytest.mark.parametrize("argv", NO_COMPILER_CASES.values(), ids=NO_COMPILER_CASES.keys())
def test_without_a_c_compiler_the_jit_says_so_and_nothing_runs(no_compiler, tmp_path, argv):
    argv = [str(tmp_path / "out.txt") if arg == "OUT" else arg for arg in argv]
    proc = ktapjit(*argv, env=no_compiler)
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (2, b"", NO_COMPILER)
    assert not (tmp_path / "out.txt").exists() or (tmp_path / "out.txt").read_bytes() == b""


def test_the_fall_back_the_message_names_runs_there(no_compiler):
    proc = ktapjit("run", "--engine", "interp", "-e", HELLO, env=no_compiler)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hi\nend\n", b"")


COMPILER_FAILURES = [
    # $CC, how the message goes on after "building the JIT runtime failed: "
    ("false", "false exited with status 1"),  # fails and says nothing
    ("gcc -fno-such-flag", "gcc: error: unrecognized command-line option"),
]


@pytest.mark.parametrize("cc,reason", COMPILER_FAILURES, ids=[cc for cc, _ in COMPILER_FAILURES])
def test_a_runtime_build_that_fails_is_one_line(tmp_path, cc, reason):
    if shutil.which(cc.split()[0]) is None:
        pytest.skip(f"no {cc.split()[0]} here")
    proc = ktapjit("run", "-e", HELLO, env={**environment(tmp_path / "cache"), "CC": cc})
    message = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (2, b"")
    assert message.startswith(f"ktapjit: building the JIT runtime failed: {reason}"), message
    assert message.endswith(FALL_BACK) and message.count("\n") == 1, message


LIVE_SKIP = live_skip_reason("live tracing", "events/syscalls/sys_enter_getppid/id",
                             "this kernel has no syscalls:sys_enter_getppid tracepoint")


@pytest.mark.live
@pytest.mark.skipif(LIVE_SKIP is not None, reason=str(LIVE_SKIP))
def test_without_a_c_compiler_a_live_run_starts_no_command(no_compiler):
    proc = ktapjit("run", "-e", "trace syscalls:sys_enter_getppid { print(pid) }", "--", "/bin/echo", "command ran",
                   env=no_compiler)
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (2, b"", NO_COMPILER)


def test_without_llvmlite_the_jit_says_so(cache):
    # None in sys.modules makes `import llvmlite` fail as it does where it is not installed.
    proc = ktapjit("run", "-e", HELLO, env=environment(cache), prelude="import sys\nsys.modules['llvmlite'] = None")
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (2, b"", NO_LLVMLITE)


@pytest.fixture
def noexec_cache(tmp_path):
    """A cache directory on a file system mounted noexec (as some /home and /tmp are)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a noexec file system needs root")
    mountpoint = tmp_path / "noexec"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=16m", "tmpfs", str(mountpoint)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_cache_on_a_noexec_file_system_is_one_line(noexec_cache):
    proc = ktapjit("run", "-e", HELLO, env=environment(noexec_cache))
    message = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (2, b"")
    assert message.startswith(f"ktapjit: the JIT cannot run here: {noexec_cache}/rt/libktrt-"), message
    assert message.endswith(": failed to map segment from shared object" + FALL_BACK), message
