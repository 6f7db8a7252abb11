"""An AArch64 bundle over a recording on an x86-64 machine: the same
`ktapjit run` command, run again by an arm64 Python under qemu user-mode
emulation, where the bundle's code is this machine's code.

What runs emulated is the whole product: the CLI, the replay session, the
native event feed and the script's code, all AArch64 (only the kernel's
system calls are the host's). The arm64 Python is a Debian arm64 root with
the aarch64 wheels ktapjit needs (tests/aarch64/make_root.sh; `make
arm64-root`), found at $KTAPJIT_ARM64_ROOT, else <cache>/arm64-root; the
ktapjit that runs in it is this one (its Python sources are the same on
every machine). Live tracing needs the target's kernel and is refused.

May import: ktapjit, ktapjit.cache_paths, ktapjit.bundle.format, stdlib.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO, Optional, Sequence

import ktapjit
from ktapjit.bundle.format import BundleError
from ktapjit.cache_paths import cache_root

_QEMU = {"aarch64": ("qemu-aarch64-static", "qemu-aarch64")}
EMULATED = frozenset(_QEMU)  # the targets whose bundles replay under emulation elsewhere
SITE = "opt/ktapjit-site"  # in the root: the aarch64 wheels (llvmlite, lark, tqdm)
PYTHON = "usr/bin/python3"


def guest_root(target: str) -> Path:
    given = os.environ.get(f"KTAPJIT_{'ARM64' if target == 'aarch64' else target.upper()}_ROOT")
    return Path(given) if given else cache_root() / ("arm64-root" if target == "aarch64" else f"{target}-root")


def emulator(target: str, path: str) -> list[str]:
    """The command prefix that runs `target` Python here, or BundleError
    saying in one line what to install."""
    qemu = next((found for name in _QEMU.get(target, ()) if (found := shutil.which(name))), None)
    root = guest_root(target)
    need = []
    if qemu is None:
        need.append("qemu-user-static (apt-get install qemu-user-static)")
    if not (root / PYTHON).exists() or not (root / SITE).is_dir():
        need.append(f"an arm64 Python root at {root} (make arm64-root, or set KTAPJIT_ARM64_ROOT)")
    if need:
        raise BundleError(f"{path} holds {target} code: to replay it on this machine under emulation, "
                          f"install {' and '.join(need)}")
    return [qemu, "-L", str(root), str(root / PYTHON)]


def guest_python(target: str, path: str) -> tuple[list[str], dict]:
    """The command that runs the `target` Python here with this ktapjit
    importable, and its environment."""
    command = emulator(target, path)
    env = dict(os.environ)
    package_parent = str(Path(ktapjit.__file__).resolve().parent.parent)
    # The root's aarch64 wheels first: the host's llvmlite is x86-64 code.
    env["PYTHONPATH"] = os.pathsep.join([str(guest_root(target) / SITE), package_parent])
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return command, env


def run_emulated(target: str, path: str, argv: Sequence[str], out: BinaryIO, err: BinaryIO) -> int:
    """`ktapjit ARGV` under emulation; its output goes to `out` and `err`,
    its exit status is returned."""
    python, env = guest_python(target, path)
    command = [*python, "-m", "ktapjit", *argv]
    for stream in (out, err):
        stream.flush()
    stdout, stderr = _fd(out), _fd(err)
    try:
        child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                 stdout=stdout if stdout is not None else subprocess.PIPE,
                                 stderr=stderr if stderr is not None else subprocess.PIPE)
    except OSError as exc:
        raise BundleError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    with child:
        while True:
            try:
                data_out, data_err = child.communicate()
                break
            except KeyboardInterrupt:
                continue  # the child had the Ctrl-C too, and ends as ktapjit does: trace_end first
    if stdout is None:
        out.write(data_out)
    if stderr is None:
        err.write(data_err)
    return child.returncode


def _fd(stream) -> Optional[int]:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
