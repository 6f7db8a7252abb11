"""`python -m bench`: run the benchmarks, print the tables, save the results.

    python -m bench [--quick | --smoke] [--sections LIST] [--json PATH]
                    [--write-docs] [--render-only]

Results go to bench/results/latest.json (or --json); --write-docs also
rewrites docs/benchmarks.md and the latency plot from them; --render-only
skips measuring and renders an existing JSON. Progress goes to stderr, the
tables to stdout. Exit status 1 when a section crashed (its error is in the
tables), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from bench import report
from bench.procs import rss_floor_kib
from bench.profiles import PROFILES
from bench.suite import SECTIONS, Context, run_sections

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_JSON = HERE / "results" / "latest.json"
DOCS = REPO / "docs" / "benchmarks.md"
PLOT = HERE / "results" / "latency.png"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Benchmark ktapjit's engines.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small streams: about two minutes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every section runs")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON.relative_to(REPO)})")
    p.add_argument("--write-docs", action="store_true", help="rewrite docs/benchmarks.md and the latency plot")
    p.add_argument("--render-only", action="store_true", help="do not measure: render the --json results")
    return p


def _versions() -> dict:
    out = {}
    for package in ("llvmlite", "lark", "numba", "numpy", "ktapjit"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    perf = shutil.which("perf")
    if perf:
        proc = subprocess.run([perf, "version"], capture_output=True, text=True)
        out["perf"] = proc.stdout.strip() or None
    return out


def _meta(profile: str, sections: list[str], started: datetime.datetime, duration: float) -> dict:
    return {"profile": profile, "sections": sections, "started": started.isoformat(timespec="seconds"),
            "duration_s": round(duration, 1), "python": platform.python_version(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "kernel": platform.release(), "versions": _versions(),
            "rss_floor_kib": rss_floor_kib()}


def measure(profile_name: str, sections: list[str]) -> dict:
    from bench.engines import cli_engines, in_process_engines, ktapjit_command

    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    ctx = Context(PROFILES[profile_name], in_process_engines(), cli_engines(), ktapjit_command())
    results = {"engines": {"in_process": [e.as_json() for e in ctx.in_process],
                           "cli": [e.as_json() for e in ctx.cli]}}
    results["sections"] = run_sections(ctx, sections)
    results["skipped"] = ctx.skipped
    results["meta"] = _meta(profile_name, sections, started, time.perf_counter() - t0)
    return results


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def write_docs(results: dict) -> None:
    from bench.plot import write_plot

    why_not = write_plot(results, PLOT)
    relative = os.path.relpath(PLOT, DOCS.parent) if why_not is None else None
    DOCS.write_text(report.markdown(results, relative, why_not or ""))
    print(f"wrote {DOCS.relative_to(REPO)}" + (f" and {PLOT.relative_to(REPO)}" if why_not is None
                                               else f" (no plot: {why_not})"), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"python -m bench: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    if args.render_only:
        try:
            results = json.loads(args.json.read_text())
        except (OSError, ValueError) as exc:
            print(f"python -m bench: cannot read results '{args.json}': {exc}", file=sys.stderr)
            return 2
    else:
        profile = "smoke" if args.smoke else "quick" if args.quick else "full"
        results = measure(profile, sections)
        write_json(results, args.json)
    sys.stdout.write(report.text(results))
    if args.write_docs:
        write_docs(results)
    crashed = [name for name, sec in results.get("sections", {}).items() if sec.get("error")]
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
