"""Compiled bundles (issue 14, item 2) on this machine's target.

`ktapjit compile SCRIPT -o FILE` writes one file; `ktapjit run FILE` runs it
with every option of `run` and without LLVM's binding or a toolchain;
`ktapjit source FILE` prints the script; a bundle for another target, ABI,
ktapjit version or bundle format is refused in one line. The AArch64 round
trips, under qemu, are in tests/aarch64/.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ktapjit
from ktapjit.bundle import format as bundle_format
from ktapjit.cli import main
from ktapjit.jit.codegen import host_target
from ktapjit.jit.runtime_abi import ABI_VERSION
from tests.livecheck import live_skip_reason

REPO = Path(__file__).resolve().parents[2]
SYSCOUNT = REPO / "examples" / "syscount.kp"
DEMO = REPO / "examples" / "data" / "demo.data"
HOST = host_target()


def cli(*argv: str) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def compiled(tmp_path: Path, source: str, *options: str, name: str = "script.kp") -> Path:
    script = tmp_path / name
    script.write_text(source)
    bundle = tmp_path / f"{script.stem}.kjx"
    status, out, err = cli("compile", *options, "-o", str(bundle), str(script))
    assert (status, out, err) == (0, b"", b"")
    return bundle


@pytest.fixture(scope="module")
def syscount(tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("bundle") / "s.kjx"
    assert cli("compile", str(SYSCOUNT), "-o", str(bundle))[0] == 0
    return bundle


def tampered(bundle: Path, tmp_path: Path, **changes) -> Path:
    """A copy of `bundle` whose manifest says otherwise."""
    original = bundle_format.read(str(bundle))
    original.manifest.update(changes)
    copy = tmp_path / "tampered.kjx"
    bundle_format.write(str(copy), original)
    return copy


# --- what run FILE prints ---------------------------------------------------------------


def test_a_bundle_replays_exactly_as_the_interpreter_runs_its_script(syscount):
    assert cli("run", str(syscount), "--replay", str(DEMO)) == \
        cli("run", "--engine", "interp", "--replay", str(DEMO), str(SYSCOUNT))


def test_options_go_before_or_after_the_bundle_and_args_after_them(tmp_path):
    bundle = compiled(tmp_path, 'print(arg[0], arg[1], arg[2])\ntrace_end { print("end") }\n')
    out = tmp_path / "out.txt"
    assert cli("run", "-o", str(out), str(bundle), "a", "--max-loop") == (0, b"", b"")
    assert out.read_bytes() == f"{tmp_path / 'script.kp'}\ta\t--max-loop\nend\n".encode()
    assert cli("run", str(bundle), "-f", "json", "x") == (
        0, f'{{"v":1,"type":"print","text":"{tmp_path / "script.kp"}\\tx\\tnil"}}\n'
           '{"v":1,"type":"print","text":"end"}\n{"v":1,"type":"end","status":0}\n'.encode(), b"")


def test_runtime_errors_point_into_the_embedded_script(tmp_path):
    bundle = compiled(tmp_path, "var t = nil\nprint(1)\nt[1] = 2\n")
    status, out, err = cli("run", str(bundle))
    assert (status, out) == (1, b"1\n")
    assert err == f"error: attempt to index a nil value at {tmp_path / 'script.kp'}:3:2\n".encode()


def test_the_engines_of_run_take_a_bundle_too(syscount):
    status, out, err = cli("run", "--engine", "compare", str(syscount), "--replay", str(DEMO))
    assert status == 0 and b"identical" in err, err
    assert out == cli("run", "--engine", "interp", "--replay", str(DEMO), str(SYSCOUNT))[1]


def test_run_needs_neither_llvm_nor_a_toolchain(syscount, tmp_path):
    """The PATH holds only the venv's Python: no cc, gcc or ld."""
    probe = ("import sys\nfrom ktapjit.cli import main\n"
             f"status = main(['run', {str(syscount)!r}, '--replay', {str(DEMO)!r}, '-o', {str(tmp_path / 'o')!r}])\n"
             "print(status, 'llvmlite.binding' in sys.modules)\n")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "KTAPJIT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120, cwd=REPO)
    assert (done.stdout, done.stderr) == (b"0 False\n", b"")
    assert (tmp_path / "o").read_bytes() == cli("run", "--engine", "interp", "--replay", str(DEMO), str(SYSCOUNT))[1]


def test_live_run_and_record_of_a_bundle(tmp_path):
    reason = live_skip_reason("live tracing", "events/syscalls/sys_enter_getppid",
                              "the syscalls tracepoints are not available")
    if reason:
        pytest.skip(reason)
    bundle = compiled(tmp_path, "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\n"
                                "trace_end { print(n) }\n")
    recording = tmp_path / "live.data"
    status, out, err = cli("run", "-q", "--record", str(recording), str(bundle), "--",
                           sys.executable, "-c", "import os\nfor _ in range(7): os.getppid()")
    assert status == 0, err
    assert int(out) >= 7
    assert cli("run", "--engine", "interp", "--replay", str(recording), str(tmp_path / "script.kp"))[1] == out


# --- source and manifest --------------------------------------------------------------------


def test_source_prints_the_script_byte_for_byte(syscount):
    assert cli("source", str(syscount)) == (0, SYSCOUNT.read_bytes(), b"")


def test_manifest_names_target_versions_and_command_line(syscount):
    status, out, _ = cli("source", "--manifest", str(syscount))
    manifest = json.loads(out)
    assert status == 0
    assert (manifest["target"], manifest["abi"], manifest["ktapjit"]) == (HOST, ABI_VERSION, ktapjit.__version__)
    assert manifest["command_line"] == ["ktapjit", "compile", str(SYSCOUNT), "-o", str(syscount)]
    assert set(manifest["built_with"]) == {"python", "llvmlite", "llvm", "runtime"}


def test_the_file_is_a_zip_behind_a_header(syscount):
    data = syscount.read_bytes()
    assert data.startswith(b"#!/usr/bin/env -S ktapjit run\n")
    assert sorted(zipfile.ZipFile(syscount).namelist()) == ["code.image", "manifest.json", "source", "tables.json"]


def test_compile_reports_script_errors_as_run_does(tmp_path):
    script = tmp_path / "bad.kp"
    script.write_text("print(1 +)\n")
    status, out, err = cli("compile", str(script), "-o", str(tmp_path / "bad.kjx"))
    assert (status, out, err) == cli("run", str(script))
    assert status == 2 and not (tmp_path / "bad.kjx").exists()


@pytest.mark.parametrize("target", ["x86_64", "aarch64"])
def test_compiling_needs_no_toolchain_for_either_target(tmp_path, target):
    """The PATH holds only the venv's Python: no cc, gcc, ld or cross compiler."""
    bundle = tmp_path / "s.kjx"
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "KTAPJIT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "ktapjit", "compile", "--target", target, str(SYSCOUNT),
                           "-o", str(bundle)], env=env, capture_output=True, timeout=120, cwd=REPO)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert bundle_format.read(str(bundle)).target == target


# --- refusals, each one line ------------------------------------------------------------------

AGAIN = "compile it again with this ktapjit (ktapjit source {0} prints the script)"


@pytest.mark.parametrize("changes,message", [
    ({"ktapjit": "0.0.1"}, "ktapjit: {0} was built by ktapjit 0.0.1, this is ktapjit " + ktapjit.__version__
                           + ": " + AGAIN),
    ({"abi": 12345}, "ktapjit: {0} was built for runtime ABI 12345, this ktapjit's is " + str(ABI_VERSION)
                     + ": " + AGAIN),
    ({"format_version": 99}, "ktapjit: {0}: bundle format 99 is not this ktapjit's (1): " + AGAIN),
    ({"target": "riscv64"}, "ktapjit: {0} holds riscv64 code and this machine is " + HOST + ": compile it with "
                            "--target " + HOST + " (ktapjit source {0} prints the script)"),
])
def test_a_bundle_for_another_ktapjit_abi_or_target_is_refused(syscount, tmp_path, changes, message):
    bundle = tampered(syscount, tmp_path, **changes)
    status, out, err = cli("run", str(bundle))
    assert (status, out, err.decode()) == (2, b"", message.format(bundle) + "\n")


def test_an_aarch64_bundle_without_the_emulator_says_what_to_install(syscount, tmp_path, monkeypatch):
    if HOST == "aarch64":
        pytest.skip("this machine runs aarch64 bundles natively")
    monkeypatch.setenv("KTAPJIT_ARM64_ROOT", str(tmp_path / "no-root"))
    bundle = tampered(syscount, tmp_path, target="aarch64")
    status, out, err = cli("run", str(bundle), "--replay", str(DEMO))
    assert (status, out) == (2, b"")
    assert err.decode().startswith(f"ktapjit: {bundle} holds aarch64 code: to replay it on this machine under "
                                   f"emulation, install ")
    assert f"an arm64 Python root at {tmp_path / 'no-root'} (make arm64-root".encode() in err
    assert err.count(b"\n") == 1


def test_other_limits_than_the_code_was_compiled_with_are_refused(tmp_path):
    bundle = compiled(tmp_path, 'print("ab" .. "cd")\n', "--max-string", "3")
    assert cli("run", str(bundle), "--max-string", "3")[0] == 1  # string too long: the limit it was made for
    status, out, err = cli("run", str(bundle))
    assert (status, out, err.decode()) == (2, b"", f"ktapjit: {bundle} was compiled with --max-string 3, which "
                                                   f"its code depends on: run it with that, or compile it again\n")


def _other_code(path: Path, tmp_path: Path) -> bytes:
    """The bundle with one byte of its code changed, the manifest as it was."""
    original = bundle_format.read(str(path))
    original.code = original.code[:-1] + bytes([original.code[-1] ^ 1])
    bundle_format.write(str(tmp_path / "other.kjx"), original)
    return (tmp_path / "other.kjx").read_bytes()


def _truncated(path: Path, tmp_path: Path) -> bytes:
    data = path.read_bytes()
    return data[:len(data) // 2]


@pytest.mark.parametrize("damage", [_truncated, _other_code], ids=["truncated", "code"])
def test_a_damaged_bundle_is_one_line(syscount, tmp_path, damage):
    bundle = tmp_path / "damaged.kjx"
    bundle.write_bytes(damage(syscount, tmp_path))
    status, out, err = cli("run", str(bundle), "--replay", str(DEMO))
    assert (status, out) == (2, b"")
    assert err.startswith(f"ktapjit: {bundle} is a damaged ktapjit bundle (".encode()) and err.count(b"\n") == 1
    assert cli("source", str(bundle))[0] == 2
