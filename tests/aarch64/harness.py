"""The AArch64 path on this x86-64 machine: scripts compiled into aarch64
bundles here (`ktapjit compile --target aarch64`), run by the whole ktapjit
in an arm64 Python under qemu user-mode emulation, and compared byte for
byte with the interpreter run here on the same recordings.

Set-up (`make arm64-root`, run by `make test`): qemu-user-static from
Debian, and an arm64 Python root at
$KTAPJIT_ARM64_ROOT (tests/aarch64/make_root.sh). Without them the tests
skip, saying which is missing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ktapjit.cli import main

GUEST = Path(__file__).resolve().parent / "guest.py"
LIMIT_FLAGS = ("--max-loop", "--max-depth", "--max-table", "--max-string")


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: bytes
    stderr: bytes


@dataclass
class Job:
    """One `ktapjit run` of a bundle in the guest."""

    cwd: str
    argv: list[str]


def unavailable_reason() -> Optional[str]:
    """Why the AArch64 path cannot run here, or None."""
    from ktapjit.bundle.emulate import emulator
    from ktapjit.bundle.format import BundleError

    try:
        emulator("aarch64", "the bundle")
    except BundleError as exc:
        return str(exc)
    return None


def cli(argv: Sequence[str], cwd: Optional[Path] = None) -> Outcome:
    """`ktapjit ARGV` in this process (in `cwd`)."""
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        out, err = io.BytesIO(), io.BytesIO()
        status = main(list(argv), stdout=out, stderr=err)
        return Outcome(status, out.getvalue(), err.getvalue())
    finally:
        os.chdir(here)


def limit_options(options: Sequence[str]) -> list[str]:
    """The limit flags among run `options` (a compile needs them: --max-string folds)."""
    kept, it = [], iter(options)
    for flag in it:
        if flag in LIMIT_FLAGS:
            kept += [flag, next(it)]
    return kept


def compile_bundle(script: str, options: Sequence[str], output: Path, cwd: Optional[Path] = None) -> Outcome:
    return cli(["compile", "--target", "aarch64", *limit_options(options), "-o", str(output), script], cwd)


def run_in_guest(jobs: list[Job], timeout: float = 1800) -> list[Outcome]:
    """Every job in one emulated arm64 process; their outcomes, in order."""
    from ktapjit.bundle.emulate import guest_python

    python, env = guest_python("aarch64", "the bundles")
    with tempfile.TemporaryDirectory(prefix="ktapjit-arm64-") as scratch:
        jobs_path, results_path = Path(scratch) / "jobs.json", Path(scratch) / "results.json"
        jobs_path.write_text(json.dumps([{"cwd": j.cwd, "argv": j.argv} for j in jobs]))
        done = subprocess.run([*python, str(GUEST), str(jobs_path), str(results_path)], env=env,
                              capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise AssertionError("the arm64 guest failed:\n" + done.stderr.decode("utf-8", "replace")[-4000:])
        results = json.loads(results_path.read_text())
    assert results["machine"] == "aarch64", results["machine"]
    return [Outcome(r["status"], base64.b64decode(r["stdout"]), base64.b64decode(r["stderr"]))
            for r in results["runs"]]


def differences(reference: Outcome, aarch64: Outcome) -> list[str]:
    """What differs between the interpreter's run and the AArch64 bundle's."""
    problems = []
    if aarch64.status != reference.status:
        problems.append(f"exit status: interp {reference.status}, aarch64 {aarch64.status}")
    for name in ("stdout", "stderr"):
        a, b = getattr(reference, name), getattr(aarch64, name)
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(f"{name} differs at byte {at}: interp {a[max(0, at - 60):at + 60]!r} "
                            f"aarch64 {b[max(0, at - 60):at + 60]!r}")
    return problems
