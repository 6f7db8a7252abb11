"""The JIT's cache of compiled scripts keyed by their inputs
(jit/script_cache.py): a warm `ktapjit run` takes its module, tables and
image from one entry and compiles nothing. A stale hit would silently run
other code than the script says, so: every input of the compile changes the
key; the key's code fingerprint covers every module a compile runs; a hit
runs exactly what a fresh compile runs; an unusable entry is a miss."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ktapjit.cli import main
from ktapjit.compiler import compile_script
from ktapjit.ir.printer import format_module
from ktapjit.jit import codegen, rtlib, script_cache
from ktapjit.jit.loader import compile_native
from ktapjit.semantics.limits import Limits

ROOT = Path(__file__).resolve().parents[2]
SOURCE = b'print("ab" .. "cd")\n'
BASE = dict(source=SOURCE, path="s.kp", limits=Limits(), optimize=True)


def key(**change) -> str:
    inputs = {**BASE, **change}
    return script_cache.script_key(inputs["source"], inputs["path"], inputs["limits"], inputs["optimize"])


def _set(target, name, value):
    return lambda monkeypatch: monkeypatch.setattr(target, name, value)


# Each input of the compile, changed alone: (what, a change of the arguments,
# or a change of the environment made with monkeypatch).
INPUTS = [
    ("source", dict(source=SOURCE.replace(b"cd", b"ce")), None),
    ("whitespace in the source (spans move)", dict(source=b" " + SOURCE), None),
    ("path", dict(path="t.kp"), None),
    ("max_loop", dict(limits=replace(Limits(), max_loop=7)), None),
    ("max_depth", dict(limits=replace(Limits(), max_depth=7)), None),
    ("max_table", dict(limits=replace(Limits(), max_table=7)), None),
    ("max_string", dict(limits=replace(Limits(), max_string=3)), None),
    ("optimize", dict(optimize=False), None),
    ("ktapjit version", {}, lambda mp: mp.setattr("ktapjit.__version__", "0.0.0-other")),
    ("python", {}, _set(sys, "version", "3.99.0 (other)")),
    ("compiler code", {}, lambda mp: mp.setattr(script_cache, "_compiler_identity", "other code")),
    ("runtime abi", {}, _set(rtlib, "ABI_VERSION", rtlib.ABI_VERSION + 1)),
    ("runtime code", {}, _set(rtlib, "runtime_identity", lambda target=None: "other runtime")),
    ("llvmlite version", {}, lambda mp: mp.setattr("llvmlite.__version__", "0.0.0")),
    ("llvmlite typed pointers", {}, lambda mp: mp.setenv("LLVMLITE_ENABLE_IR_LAYER_TYPED_POINTERS", "0")),
    ("target", {}, _set(codegen, "host_target", lambda: "aarch64")),
    ("cpu", {}, _set(codegen, "cpu_identity", lambda: "another cpu")),
]


@pytest.mark.parametrize("change, environment", [pytest.param(c, e, id=what) for what, c, e in INPUTS])
def test_every_input_of_the_compile_changes_the_key(monkeypatch, change, environment):
    monkeypatch.delenv("LLVMLITE_ENABLE_IR_LAYER_TYPED_POINTERS", raising=False)
    before = key()
    assert key() == before  # the key is a function of the inputs
    if environment is not None:
        environment(monkeypatch)
    assert key(**change) != before


def test_the_code_fingerprint_follows_the_compilers_text(tmp_path, monkeypatch):
    copy = tmp_path / "ktapjit"
    shutil.copytree(ROOT / "ktapjit", copy, ignore=shutil.ignore_patterns("__pycache__", "runtime"))
    monkeypatch.setattr(script_cache, "_PACKAGE", copy)
    monkeypatch.setattr(script_cache, "_compiler_identity", None)
    before = script_cache.compiler_identity()
    lower = copy / "jit" / "lower.py"
    lower.write_text(lower.read_text() + "\n# an edit\n")
    monkeypatch.setattr(script_cache, "_compiler_identity", None)
    assert script_cache.compiler_identity() != before
    edited = script_cache.compiler_identity()
    (copy / "ir" / "passes" / "new_pass.py").write_text("")
    monkeypatch.setattr(script_cache, "_compiler_identity", None)
    assert script_cache.compiler_identity() not in (before, edited)


def test_unreadable_compiler_code_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(script_cache, "_code_files", lambda: [tmp_path / "gone.py"])
    monkeypatch.setattr(script_cache, "_compiler_identity", None)
    assert script_cache.compiler_identity() is None
    assert key() is None


_LOADED_BY_A_COMPILE = """\
import sys
from pathlib import Path
from ktapjit.compiler import compile_script
from ktapjit.jit.loader import compile_native
for path in sorted(Path("examples").glob("*.kp")):
    compile_native(compile_script(path.read_bytes(), str(path), cached=True).module)
print("\\n".join(m.__file__ for name, m in sorted(sys.modules.items()) if name.startswith("ktapjit")))
"""


def test_the_code_fingerprint_covers_every_module_a_compile_runs(tmp_path):
    env = {**os.environ, "KTAPJIT_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _LOADED_BY_A_COMPILE], cwd=ROOT, env=env, capture_output=True,
                          timeout=600, check=True, text=True)
    covered = {str(f) for f in script_cache._code_files()}
    loaded = {str(Path(f).resolve()) for f in done.stdout.split()}
    assert len(loaded) > 20
    assert sorted(loaded - covered) == []


def run(*argv: str) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", *argv], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_an_edited_script_runs_as_edited(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path / "cache"))
    script = tmp_path / "s.kp"
    script.write_text('print("one")\n')
    assert run(str(script)) == run(str(script)) == (0, b"one\n", b"")
    script.write_text('print("two")\n')
    assert run(str(script)) == (0, b"two\n", b"")
    assert len(list((tmp_path / "cache" / "jit").glob("*.kscript"))) == 2


def test_a_limit_that_changes_the_code_is_honoured_on_a_warm_cache(tmp_path, monkeypatch):
    # fold joins "ab" .. "cd" at compile time only within --max-string.
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    program = ["-e", SOURCE.decode()]
    assert run(*program) == run(*program) == (0, b"abcd\n", b"")
    assert run("--max-string", "3", *program) == (1, b"", b"error: string too long at -e:1:12\n")


def test_a_hit_is_the_module_and_tables_a_compile_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    path = ROOT / "examples" / "syscount.kp"
    source = path.read_bytes()
    fresh = compile_script(source, str(path), cached=True)
    assert [name for name, _ in fresh.timings][0] == "parse"
    made = compile_native(fresh.module)
    warm = compile_script(source, str(path), cached=True)
    assert [name for name, _ in warm.timings] == ["cache"]
    loaded = compile_native(warm.module)
    assert (made.stats.cache_hit, loaded.stats.cache_hit) == (False, True)
    assert format_module(warm.module) == format_module(fresh.module)
    assert replace(loaded.lowered, llvm_ir="") == replace(made.lowered, llvm_ir="")
    assert warm.module.probes[0].eventdef == fresh.module.probes[0].eventdef


@pytest.mark.parametrize("damage", [b"", b"not a pickle", None])
def test_a_damaged_entry_is_a_miss(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    assert run("-e", 'print("kept")') == (0, b"kept\n", b"")
    [entry] = (tmp_path / "jit").glob("*.kscript")
    data = entry.read_bytes()
    entry.write_bytes(data[:len(data) // 2] if damage is None else damage)
    assert run("-e", 'print("kept")') == (0, b"kept\n", b"")
    assert entry.read_bytes() == data  # made again


def test_only_a_plain_jit_run_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    for argv in (["--engine", "interp"], ["--time-steps"], ["--debug", "verify"]):
        status, out, _ = run(*argv, "-e", 'print("x")')
        assert (status, out) == (0, b"x\n")
    assert list((tmp_path / "jit").glob("*.kscript")) == []
