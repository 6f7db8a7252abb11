"""Running one case under one engine, in this process, and explaining disagreements.

A ``Case`` is a script, its arguments, the ``ktapjit run`` options and the
stream it runs on (a ``StreamPlan``, or None to run without a recording).
A case is saved as a single .kp file whose leading comments say the rest;
that is the format of ``tests/differential/regressions/*.kp``::

    # stream: seed=7 events=40 cpus=2     <- StreamPlan fields; absent: no recording
    # opts: --max-loop 200 --max-depth 40 <- ktapjit run options (shlex-split)
    # args: 5 "two words"                 <- script arguments (shlex-split)
    # xfail: WHY                          <- optional: a known disagreement, not yet decided
    ...the script...

The header lines are ordinary ktap comments, so the file is the script that
runs. Engines see the script by the same path, so paths in error messages
agree.
"""

from __future__ import annotations

import functools
import io
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ktapjit.cli import main
from tests.differential.streams import StreamPlan

# Low limits: a runaway loop or recursion is a quick, clean runtime error
# (`loop limit exceeded`, `stack overflow`) instead of a slow test.
RUN_OPTIONS = ("--max-loop", "200", "--max-depth", "40")

@dataclass(frozen=True)
class Outcome:
    """What one run produced: exactly what a user would see."""

    status: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Case:
    """Everything needed to run one script the same way under any engine."""

    source: str
    args: tuple[str, ...] = ()
    stream: Optional[StreamPlan] = None
    options: tuple[str, ...] = RUN_OPTIONS
    saved: bool = False   # source is a whole saved file, header included
    xfail: Optional[str] = None   # why the engines are known to disagree, for now

    def header(self) -> str:
        lines = [self.stream.header()] if self.stream is not None else []
        lines.append("# opts: " + shlex.join(self.options))
        if self.args:
            lines.append("# args: " + shlex.join(self.args))
        return "\n".join(lines) + "\n"

    def file_text(self) -> str:
        """The case as a self-contained .kp file (header comments + script)."""
        return self.source if self.saved else self.header() + self.source

    @classmethod
    def from_file(cls, path: Path) -> "Case":
        """Read a case saved by ``file_text`` (or written by hand in that format)."""
        source = path.read_text(encoding="utf-8", errors="surrogateescape")
        stream, options, args, xfail = None, (), (), None
        for line in source.splitlines():
            if not line.startswith("#"):
                break   # the header is the leading comment block
            key, _, rest = line[1:].strip().partition(":")
            if key == "stream":
                stream = StreamPlan.parse(rest)
            elif key == "opts":
                options = tuple(shlex.split(rest))
            elif key == "args":
                args = tuple(shlex.split(rest))
            elif key == "xfail":
                xfail = rest.strip()
        return cls(source=source, args=args, stream=stream, options=options, saved=True, xfail=xfail)


class Workspace:
    """A directory for scripts and recordings; each plan's recording is written once.

    Writing a recording costs far more than running most scripts (the
    synthetic stream builds a 64K-entry weight table per stream), and
    hypothesis reruns a failing case many times while shrinking it.
    """

    def __init__(self, root: Path):
        self.root = root
        self._recordings: dict[StreamPlan, Path] = {}

    def recording(self, plan: StreamPlan) -> Path:
        path = self._recordings.get(plan)
        if path is None:
            path = plan.write(self.root / f"stream-{len(self._recordings)}.data")
            self._recordings[plan] = path
        return path

    def script(self, case: Case, name: str = "case.kp") -> Path:
        path = self.root / name
        path.write_text(case.source, encoding="utf-8", errors="surrogateescape")
        return path


def run_engine(engine: str, script: Path, case: Case, recording: Optional[Path]) -> Outcome:
    """``ktapjit run --engine ENGINE [OPTIONS] [--replay REC] SCRIPT ARGS`` in this process."""
    argv = ["run", "--engine", engine, *case.options]
    if recording is not None:
        argv += ["--replay", str(recording)]
    argv += [str(script), *case.args]
    out, err = io.BytesIO(), io.BytesIO()
    status = main(argv, stdout=out, stderr=err)
    return Outcome(status, out.getvalue(), err.getvalue())


def run_case(engine: str, case: Case, workspace: Workspace, script: Optional[Path] = None) -> Outcome:
    """Run ``case`` (from ``script`` if it is already a file) under ``engine``."""
    recording = workspace.recording(case.stream) if case.stream is not None else None
    return run_engine(engine, script or workspace.script(case), case, recording)


@functools.cache
def unavailable_reason(engine: str) -> Optional[str]:
    """Why ``engine`` cannot run scripts (its own message), or None if it can.

    Asked once per engine, by running ``print(1)``.
    """
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--engine", engine, "-e", "print(1)"], stdout=out, stderr=err)
    if (status, out.getvalue()) == (0, b"1\n"):
        return None
    return err.getvalue().decode("utf-8", "replace").strip() or f"exit status {status}"


def engine_available(engine: str) -> bool:
    return unavailable_reason(engine) is None


# --- describing a disagreement -----------------------------------------------------------------

def first_difference(a: bytes, b: bytes) -> Optional[tuple[int, bytes, bytes]]:
    """(1-based line number, line of a, line of b) where a and b first differ,
    or None if they are equal. A missing line reads as b"" (and a missing final
    newline is part of the line, so it shows)."""
    if a == b:
        return None
    la, lb = a.splitlines(keepends=True), b.splitlines(keepends=True)
    for n in range(max(len(la), len(lb))):
        x = la[n] if n < len(la) else b""
        y = lb[n] if n < len(lb) else b""
        if x != y:
            return n + 1, x, y
    raise AssertionError("unequal bytes with equal lines")


def differences(names: tuple[str, str], a: Outcome, b: Outcome) -> list[str]:
    """One line per way the two outcomes differ (empty when they agree)."""
    found = []
    if a.status != b.status:
        found.append(f"exit status: {names[0]} {a.status}, {names[1]} {b.status}")
    for stream in ("stdout", "stderr"):
        diff = first_difference(getattr(a, stream), getattr(b, stream))
        if diff is not None:
            line, x, y = diff
            found.append(f"{stream} first differs at line {line}:\n"
                         f"    {names[0]:>8}: {x!r}\n    {names[1]:>8}: {y!r}")
    return found


def report(case: Case, names: tuple[str, str], a: Outcome, b: Outcome) -> str:
    """The assertion message for a disagreement: what differs, then the case as a
    ready-to-save regression file (its stream header carries the seed)."""
    seed = case.stream.seed if case.stream is not None else "none (no recording)"
    return "\n".join([
        f"engines disagree: {names[0]} vs {names[1]} (event-stream seed: {seed})",
        *differences(names, a, b),
        "--- regression case: save as tests/differential/regressions/NAME.kp, then minimise ---",
        case.file_text().rstrip("\n"),
        "--- end of case ---",
    ])
