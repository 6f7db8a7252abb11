"""syscount.kp names system calls by the numbering of the machine the events
came from: arch() is the recording's, and AArch64 uses the asm-generic
numbers (read is 63 there, uname on x86-64). Runs in the default suite, on
both engines; the AArch64 code runs it in test_aarch64.py's replays."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.events.records.perfdata import HEADER_ARCH
from ktapjit.testing.synth import EventSpec, SyntheticStream, choice, write_perf_data

REPO = Path(__file__).resolve().parents[2]
SYSCOUNT = REPO / "examples" / "syscount.kp"
ARM64_UNISTD = Path("/usr/aarch64-linux-gnu/include/asm-generic/unistd.h")  # Debian's linux-libc-dev-arm64-cross

# asm-generic numbers: read, write, openat, close.
NUMBERS = [63, 64, 56, 57]


def recording(path: Path, arch: str) -> Path:
    stream = SyntheticStream([EventSpec("raw_syscalls", "sys_enter", fields={"id": choice(NUMBERS)})],
                             n_events=40, cpus=1, tasks=2, seed=3)
    name = arch.encode()
    # perf's string feature: its length (with the NUL, padded to 64) then the text.
    padded = len(name) + 1 + (-(len(name) + 1) % 64)
    write_perf_data(path, stream, features={HEADER_ARCH: padded.to_bytes(4, "little") + name.ljust(padded, b"\0")})
    return path


def syscount(data: Path, engine: str) -> bytes:
    out, err = io.BytesIO(), io.BytesIO()
    assert main(["run", "--engine", engine, "--replay", str(data), str(SYSCOUNT)], stdout=out, stderr=err) == 0, err
    return out.getvalue()


def names(output: bytes) -> set[str]:
    """The names in print_hist's rows."""
    return {m.decode() for m in re.findall(rb"^\s+(\w+) \|", output, re.M)}


@pytest.mark.parametrize("engine", ["interp", "jit"])
@pytest.mark.parametrize("arch,expected", [("aarch64", {"read", "write", "openat", "close"}),
                                           ("x86_64", {"uname", "semget", "clone", "fork"})])
def test_syscount_names_calls_by_the_recording_machines_numbers(tmp_path, engine, arch, expected):
    output = syscount(recording(tmp_path / f"{arch}.data", arch), engine)
    assert output.startswith(b"40 system calls, 4 different ones\n")
    assert names(output) == expected


def test_the_aarch64_table_is_the_asm_generic_one():
    """Checked against Debian's arm64 headers, independently of the script."""
    if not ARM64_UNISTD.exists():
        pytest.skip(f"{ARM64_UNISTD} is missing (apt-get install linux-libc-dev-arm64-cross)")
    text = ARM64_UNISTD.read_text()
    defined = dict(re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\n", text))
    # 64-bit names of the __NR3264_ calls (newfstatat is __NR3264_fstatat)
    for name, generic in re.findall(r"#define __NR_(\w+)\s+__NR3264_(\w+)\n", text):
        if generic in defined:
            defined.setdefault(name, defined[generic])
    table = SYSCOUNT.read_text().split("var SYSCALLS_AARCH64", 1)[1]
    for number, name in re.findall(r'\[(\d+)\] = "(\w+)"', table):
        assert defined.get(name) == number, (name, number)
    assert len(re.findall(r'\[(\d+)\] = "', table)) >= 290
