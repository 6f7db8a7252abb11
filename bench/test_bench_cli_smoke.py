"""Smoke test: `python -m bench --smoke` runs every section and renders.

Tiny sizes (bench/profiles.py "smoke"), results to a temp file so
bench/results/latest.json is untouched; then --render-only renders that
file again. Checks that the command works and reports honestly (no
section crashed, unavailable engines say so), not any number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_smoke_run_writes_json_and_tables(tmp_path):
    out = tmp_path / "smoke.json"
    proc = _bench("--smoke", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert not [name for name, sec in results["sections"].items() if sec.get("error")]
    for title in ("Per-event handler latency", "native baseline", "End-to-end replay", "Compile latency",
                  "Start-up", "Live overhead", "Targets"):
        assert title in proc.stdout
    if results["sections"]["live"].get("rows"):  # measured (root): the BPF path's sub-tables too
        for title in ("BPF path: compile and load", "Start-up of a live trace"):
            assert title in proc.stdout
    # An engine that does not run is reported as such, never with numbers.
    for engine in results["engines"]["in_process"]:
        if not engine["available"]:
            assert "n/a (engine not available)" in proc.stdout

    # The tables come from the JSON alone: rendering it again gives the same text.
    again = _bench("--render-only", "--json", str(out))
    assert again.returncode == 0
    assert again.stdout == proc.stdout


def test_unknown_section_is_a_usage_error():
    proc = _bench("--sections", "nope")
    assert proc.returncode == 2
    assert "unknown section" in proc.stderr
