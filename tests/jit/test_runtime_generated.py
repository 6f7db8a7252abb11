"""The runtime's generated bitcode and objects (runtime/generated/) are those
of the C sources beside them: the recorded digest of the sources always,
the object recompiled from the bitcode with llvmlite always, the bitcode
regenerated where the pinned clang (the ziglang wheel) is installed."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from ktapjit.jit import runtime_build, runtime_files

TARGETS = sorted(runtime_files.TRIPLES)
REGENERATE = "regenerate them: python -m ktapjit.jit.runtime_build (make runtime)"


@pytest.mark.parametrize("target", TARGETS)
def test_the_generated_files_are_of_these_sources(target):
    stamp = runtime_files.read_stamp(target)
    assert stamp["sources_sha256"] == runtime_files.sources_digest(), f"the C sources changed: {REGENERATE}"
    assert stamp["bitcode_sha256"] == hashlib.sha256(runtime_files.bitcode_path(target).read_bytes()).hexdigest()
    assert stamp["object_sha256"] == hashlib.sha256(runtime_files.object_path(target).read_bytes()).hexdigest()
    assert (stamp["triple"], stamp["cflags"]) == (runtime_files.TRIPLES[target], list(runtime_build.CFLAGS))


@pytest.mark.parametrize("target", TARGETS)
def test_the_object_is_the_bitcode_compiled(target):
    # In a fresh process: LLVM keeps state across targets (after a BPF
    # build, x86-64 code gets fewer jump tables), so this test's process,
    # which may have built anything before, could make another object.
    code = ("import sys; from ktapjit.jit import runtime_build as b, runtime_files as f; "
            f"t = {target!r}; "
            "sys.exit(b.build_object(t, f.bitcode_path(t).read_bytes()) != f.object_path(t).read_bytes())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, ""), (
        f"ktrt-{target}.o is not what this llvmlite makes of the bitcode: {REGENERATE}")


@pytest.mark.parametrize("target", TARGETS)
def test_the_bitcode_is_what_the_pinned_clang_makes(target):
    try:
        runtime_build.clang_command()
    except runtime_build.BuildError as exc:
        pytest.skip(f"cannot regenerate the bitcode: {exc}")
    assert runtime_build.build_bitcode(target) == runtime_files.bitcode_path(target).read_bytes(), (
        f"ktrt-{target}.bc is stale: {REGENERATE}")


def test_a_source_edit_is_seen_without_a_compiler(tmp_path, monkeypatch):
    for source in runtime_files.sources():
        (tmp_path / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(runtime_files, "RUNTIME_DIR", tmp_path)
    assert runtime_files.sources_digest() == runtime_files.read_stamp("x86_64")["sources_sha256"]
    (tmp_path / "table.c").write_bytes((tmp_path / "table.c").read_bytes() + b"\n/* edited */\n")
    assert runtime_files.sources_digest() != runtime_files.read_stamp("x86_64")["sources_sha256"]
