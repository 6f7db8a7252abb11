"""The probe examples: malloc_sizes.kp, funclat.kp, flamegraph.kp, usdt.kp.

They need live uprobes, USDT markers or profile-N, so each runs live (root
only) over examples/demo.c, built here with gcc (-O0 -fno-omit-frame-pointer),
with exact or well-bounded checks:

- malloc_sizes: demo N calls malloc(40000) N times and nothing else of that
  size, so the 32768 - 65536 bucket counts exactly N;
- funclat: work() runs exactly N times, each entry paired with its return;
- usdt: the ktapjit_demo:tick marker fires exactly N times, a quarter of
  them in each i % 4 phase, and its second argument is N;
- flamegraph: demo 0 MS spins in spin() (called from main) for MS ms; its
  print_folded lines put most of demo's samples under demo;...;main;spin.

funclat.kp and usdt.kp name the binary /tmp/demo in their EVENTDEFs, as
their headers say to build it; the tests run a copy of each script with that
path replaced by the binary built here (uprobe paths are absolute), and
otherwise unchanged. funclat and usdt are also recorded and replayed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cbuild import build_c

from tests.livecheck import live_skip_reason

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
PROBE_EXAMPLES = ["malloc_sizes", "funclat", "flamegraph", "usdt"]
DEMO_PATH = "/tmp/demo"  # where the examples' headers build it
N = 100


def _skip_reason():
    return live_skip_reason("live probe examples (uprobes, USDT and perf_event_open)",
                            "uprobe_events", "this kernel has no uprobe_events")


_REASON = _skip_reason()
live = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _libc_path() -> str:
    text = (EXAMPLES_DIR / "malloc_sizes.kp").read_text()
    return re.search(r"^trace probe:(\S+):malloc ", text, re.M).group(1)


# --------------------------------------------------------------- without tracing


@pytest.mark.parametrize("name", PROBE_EXAMPLES)
def test_example_compiles(name):
    proc = subprocess.run([sys.executable, "-m", "ktapjit", "ir", str(EXAMPLES_DIR / f"{name}.kp")],
                          capture_output=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode("latin-1")
    assert proc.stdout and not proc.stderr


@pytest.mark.parametrize("name", PROBE_EXAMPLES)
def test_example_header_says_what_and_how(name):
    lines = (EXAMPLES_DIR / f"{name}.kp").read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env ktapjit"
    assert lines[1].startswith(f"# {name}.kp: ")
    header = "\n".join(line for line in lines[1:] if line.startswith("#"))
    assert "Shows:" in header and "Run it:" in header
    assert f"gcc -O0 -fno-omit-frame-pointer -o {DEMO_PATH} examples/demo.c" in header
    assert "ktapjit run" in header and f"examples/{name}.kp -- {DEMO_PATH} " in header


def loaded_libc(program: str = "/bin/true") -> str:
    """The libc.so.6 `program` loads here, as ldd names it."""
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd to find this machine's libc")
    out = subprocess.run([ldd, program], capture_output=True, text=True, check=True).stdout
    loaded = re.search(r"libc\.so\.6 => (\S+)", out)
    assert loaded, out
    return loaded.group(1)


def test_malloc_sizes_names_this_machines_libc():
    """Where the example's libc (Debian x86-64's) exists, it is the one
    programs here load (ldd), and it exports malloc."""
    path = _libc_path()
    if not os.path.exists(path):
        pytest.skip(f"no {path} here (not Debian x86-64): malloc_sizes.kp's header says to edit it")
    assert os.path.realpath(loaded_libc()) == os.path.realpath(path)
    from ktapjit.events.probes.elf import open_elf
    assert open_elf(path)  # readable ELF; the live test proves malloc binds


# ------------------------------------------------------------------------- live


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "demo", EXAMPLES_DIR / "demo.c", "-O0", "-fno-omit-frame-pointer",
                   purpose="examples/demo.c")


def script_for(name: str, demo: Path, tmp_path: Path) -> Path:
    """The example, with /tmp/demo replaced by the binary built here."""
    text = (EXAMPLES_DIR / f"{name}.kp").read_text()
    copy = tmp_path / f"{name}.kp"
    copy.write_text(text.replace(DEMO_PATH, str(demo)))
    return copy


ENGINE = {"name": "interp"}


@pytest.fixture(autouse=True, params=["interp", "jit", "bpf"])
def engine(request):
    """Every probe example, under each engine (bpf: where BPF runs here)."""
    if request.param == "bpf":
        from tests.tracing.conftest import bpf_skip_reason

        reason = bpf_skip_reason()
        if reason is not None:
            pytest.skip(reason)
    ENGINE["name"] = request.param
    yield request.param
    ENGINE["name"] = "interp"


def run(*args: str) -> str:
    """The BPF engine traces live only: a --replay of what it recorded runs on the interpreter."""
    engine = "interp" if ENGINE["name"] == "bpf" and "--replay" in args else ENGINE["name"]
    proc = subprocess.run([sys.executable, "-m", "ktapjit", "run", "-q", "--engine", engine, *args],
                          capture_output=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode("latin-1")
    assert proc.stderr == b""
    return proc.stdout.decode("latin-1")


def hist_rows(text: str) -> dict[str, int]:
    return {key.strip(): int(count) for key, count in re.findall(r"^(.{31}) \|[@ ]{38}(\d+)\s*$", text, re.M)}


@pytest.mark.live
@live
def test_malloc_sizes_live(demo, tmp_path):
    # As its header says to do, on a machine whose libc is elsewhere.
    script = tmp_path / "malloc_sizes.kp"
    script.write_text((EXAMPLES_DIR / "malloc_sizes.kp").read_text().replace(_libc_path(), loaded_libc(str(demo))))
    out = run(str(script), "--", str(demo), str(N))
    m = re.match(r"(\d+) malloc calls, (\d+) bytes asked for\n", out)
    assert m, out
    rows = hist_rows(out)
    assert rows.get("32768 - 65536 bytes") == N, out
    calls, size = int(m.group(1)), int(m.group(2))
    assert sum(rows.values()) == calls >= N, out
    assert size >= N * 40000, out


@pytest.mark.live
@live
def test_funclat_live_and_replayed(demo, tmp_path):
    script = script_for("funclat", demo, tmp_path)
    data = tmp_path / "funclat.data"
    out = run("--record", str(data), str(script), "--", str(demo), str(N))
    assert out.startswith(f"{N} calls timed, 0 returns without an entry\n"), out
    rows = hist_rows(out)
    assert sum(rows.values()) == N, out
    for key in rows:
        lo, hi = map(int, re.fullmatch(r"(\d+) - (\d+) ns", key).groups())
        assert hi == 2 * lo and lo & (lo - 1) == 0, key
    # work(i) with i % 4 == 3 spins 60000 times: some calls take over 16 us,
    # and none takes a second.
    assert any(int(k.split()[0]) >= 16384 for k in rows), out
    assert all(int(k.split()[0]) < 10**9 for k in rows), out
    average = int(re.search(r"^average: (\d+) ns$", out, re.M).group(1))
    assert 0 < average < 10**9
    assert run("--replay", str(data), str(script)) == out


@pytest.mark.live
@live
def test_usdt_live_and_replayed(demo, tmp_path):
    script = script_for("usdt", demo, tmp_path)
    data = tmp_path / "usdt.data"
    out = run("--record", str(data), str(script), "--", str(demo), str(N))
    assert out.startswith(f"{N} ticks of ktapjit_demo:tick (the program's N: {N})\n"), out
    assert hist_rows(out) == {f"i % 4 == {k}": N // 4 for k in range(4)}, out
    assert run("--replay", str(data), str(script)) == out


@pytest.mark.live
@live
def test_flamegraph_live_folds(demo):
    out = run(str(EXAMPLES_DIR / "flamegraph.kp"), "--", str(demo), "0", "300")
    lines = out.splitlines()
    assert lines, out
    counts = {}
    for line in lines:
        m = re.fullmatch(r"(\S(?:.*\S)?) (\d+)", line)
        assert m, line
        assert "+0x" not in m.group(1), line
        assert m.group(1) not in counts, f"{line}: print_folded merges equal stacks"
        counts[m.group(1)] = int(m.group(2))
    demo_total = sum(n for k, n in counts.items() if k.startswith("demo;"))
    in_spin = sum(n for k, n in counts.items() if k.startswith("demo;") and ";main;spin" in k)
    # 300 ms at one sample per 2 ms on one CPU: about 150, fewer when the spin
    # shares its CPU (cpu-clock counts only the time it runs).
    assert 20 <= demo_total <= 200, out
    assert in_spin >= demo_total * 3 // 4, out
