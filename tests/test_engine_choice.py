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
import subprocess
import sys
from pathlib import Path

import pytest

from ktapjit.jit import image
from tests.livecheck import live_skip_reason

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "data" / "demo.data"
SYSCOUNT = ROOT / "examples" / "syscount.kp"
HELLO = 'print("hi")\ntrace_end { print("end") }'
FALL_BACK = "; to run without the JIT: --engine interp\n"
# A broken installation: the runtime's packaged object is gone.
NO_RUNTIME = (f"ktapjit: the JIT runtime for {image.host_machine()} is not in this installation "
              "(No such file or directory)" + FALL_BACK)
BREAK_RUNTIME = ("from pathlib import Path\nfrom ktapjit.jit import runtime_files\n"
                 "runtime_files.object_path = lambda target: Path('/nonexistent/ktrt.o')")
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
    """A cache directory with no compiled scripts."""
    root = tmp_path / "cache"
    root.mkdir()
    return root


def compiled_scripts(cache: Path) -> list[Path]:
    return sorted((cache / "jit").glob("*.kimg"))


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
    """No cc, gcc, clang or ld on PATH, and an empty cache."""
    empty = tmp_path / "bin"
    empty.mkdir()
    return environment(tmp_path / "empty-cache", PATH=str(empty))


NO_COMPILER_CASES = {
    # the command after `ktapjit`
    "default": ["run", "-e", HELLO],
    "--jit": ["run", "--jit", "-e", HELLO],
    "compare": ["run", "--engine", "compare", "-e", HELLO],
    "replay": ["run", "--replay", str(DEMO), str(SYSCOUNT)],
}


@pytest.mark.parametrize("argv", NO_COMPILER_CASES.values(), ids=NO_COMPILER_CASES.keys())
def test_without_a_c_compiler_or_linker_the_jit_runs(no_compiler, tmp_path, argv):
    proc = ktapjit(*argv, env=no_compiler)
    reference = ktapjit(*argv, "--engine", "interp", env=no_compiler)
    assert (proc.returncode, proc.stdout) == (0, reference.stdout)
    assert compiled_scripts(tmp_path / "empty-cache")


BROKEN_CASES = {
    # the command after `ktapjit`: each would print something if any of the script ran
    "default": ["run", "-e", HELLO],
    "compare": ["run", "--engine", "compare", "-e", HELLO],
    "replay": ["run", "--replay", str(DEMO), str(SYSCOUNT)],
    "-o": ["run", "-o", "OUT", "-e", HELLO],
}


@pytest.mark.parametrize("argv", BROKEN_CASES.values(), ids=BROKEN_CASES.keys())
def test_without_its_runtime_the_jit_says_so_and_nothing_runs(cache, tmp_path, argv):
    argv = [str(tmp_path / "out.txt") if arg == "OUT" else arg for arg in argv]
    proc = ktapjit(*argv, env=environment(cache), prelude=BREAK_RUNTIME)
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (2, b"", NO_RUNTIME)
    assert not (tmp_path / "out.txt").exists() or (tmp_path / "out.txt").read_bytes() == b""


def test_the_fall_back_the_message_names_runs_there(cache):
    proc = ktapjit("run", "--engine", "interp", "-e", HELLO, env=environment(cache), prelude=BREAK_RUNTIME)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hi\nend\n", b"")


LIVE_SKIP = live_skip_reason("live tracing", "events/syscalls/sys_enter_getppid/id",
                             "this kernel has no syscalls:sys_enter_getppid tracepoint")


@pytest.mark.live
@pytest.mark.skipif(LIVE_SKIP is not None, reason=str(LIVE_SKIP))
def test_without_its_runtime_a_live_run_starts_no_command(cache):
    proc = ktapjit("run", "-e", "trace syscalls:sys_enter_getppid { print(pid) }", "--", "/bin/echo", "command ran",
                   env=environment(cache), prelude=BREAK_RUNTIME)
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (2, b"", NO_RUNTIME)


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


def test_a_cache_on_a_noexec_file_system_still_runs(noexec_cache):
    """Images are copied into anonymous memory, not mapped from their files."""
    proc = ktapjit("run", "-e", HELLO, env=environment(noexec_cache))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hi\nend\n", b"")
    assert compiled_scripts(noexec_cache)
