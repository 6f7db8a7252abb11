"""How far ktap's own sample scripts get, for issue #15's figures.

    python -m bench.ktap_samples [KTAP_REPO] [--ktapjit PATH]

KTAP_REPO is a git checkout (or bare mirror) of ktap; its ``samples/`` at
HEAD are extracted to a temporary directory. Each sample is classified by
what ktapjit does with it, without attaching anything:

- ``compile error``: ``ktapjit ir`` rejects it (parse, names, builtins);
- ``resolve error``: it compiles, but ``ktapjit run -d`` cannot resolve its
  events (no kprobes, no ftrace:function, a missing file);
- ``runs``: the dry run resolves every event and probe (exit 0).

The first line of the error is kept. Prints a Markdown table, then the
counts. Not a test: it depends on the machine's kernel and takes a minute.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

DEFAULT_REPO = "/work/.mirror/ktap+ktap/repo"
TIMEOUT_S = 300


@dataclass(frozen=True)
class Verdict:
    sample: str
    outcome: str  # runs, compile error, resolve error, timeout
    message: str = ""


def extract_samples(repo: str, into: Path) -> list[Path]:
    """The ``*.kp`` files of ``samples/`` at the repository's HEAD, sorted."""
    archive = subprocess.run(["git", "-C", repo, "archive", "HEAD", "samples"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return sorted(into.rglob("*.kp"))


def _first_error_line(stderr: bytes) -> str:
    for line in stderr.decode("utf-8", "replace").splitlines():
        if line.strip():
            # Drop the path prefix: the temporary directory means nothing.
            _, sep, rest = line.partition(".kp:")
            message = rest.split(": ", 1)[-1] if sep else line
            return message.removeprefix("error: ")
    return "(no message)"


def classify(ktapjit: str, script: Path, root: Path) -> Verdict:
    name = str(script.relative_to(root))
    env = dict(os.environ)
    try:
        compiled = subprocess.run([ktapjit, "ir", str(script)], capture_output=True,
                                  timeout=TIMEOUT_S, env=env)
        if compiled.returncode != 0:
            return Verdict(name, "compile error", _first_error_line(compiled.stderr))
        dry = subprocess.run([ktapjit, "run", "-d", str(script)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return Verdict(name, "timeout", f"more than {TIMEOUT_S} s")
    if dry.returncode == 0:
        return Verdict(name, "runs")
    return Verdict(name, "resolve error", _first_error_line(dry.stderr))


def survey(repo: str, ktapjit: str) -> list[Verdict]:
    with tempfile.TemporaryDirectory(prefix="ktap-samples-") as tmp:
        root = Path(tmp)
        return [classify(ktapjit, script, root / "samples") for script in extract_samples(repo, root)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(verdicts: list[Verdict]) -> str:
    rows = ["| sample | outcome | first error line |", "|---|---|---|"]
    rows += [f"| {v.sample} | {v.outcome} | {_cell(v.message)} |" for v in verdicts]
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.outcome] = counts.get(v.outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    return "\n".join(rows) + f"\n\n{len(verdicts)} samples: {summary}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ktap_samples", description=__doc__.split("\n")[0])
    p.add_argument("repo", nargs="?", default=DEFAULT_REPO, help="a git repository of ktap")
    p.add_argument("--ktapjit", default=str(Path(sys.executable).with_name("ktapjit")),
                   help="the ktapjit command (default: the one next to this Python)")
    ns = p.parse_args(argv)
    sys.stdout.write(table(survey(ns.repo, ns.ktapjit)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
