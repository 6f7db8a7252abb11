"""The compiled-script cache: a second compile of the same script skips LLVM,
a different script does not share an entry, and an unusable cache directory
costs only time."""

from __future__ import annotations

import io

import pytest

from ktapjit.cli import main
from ktapjit.compiler import compile_script
from ktapjit.jit.loader import compile_native


def module_of(source: bytes):
    return compile_script(source, "-e").module


def test_second_compile_is_a_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    first = compile_native(module_of(b'print("cached")'))
    second = compile_native(module_of(b'print("cached")'))
    # String constants are filled in at load time, so they are not part of the code.
    same_code = compile_native(module_of(b'print("other text")'))
    other = compile_native(module_of(b'print(1, "cached")'))
    hits = [p.stats.cache_hit for p in (first, second, same_code, other)]
    assert hits == [False, True, True, False]
    assert second.stats.llvm_s == 0.0 < first.stats.llvm_s
    assert len(list((tmp_path / "jit").glob("*.kimg"))) == 2


@pytest.mark.parametrize("cache", ["/dev/null/not-a-directory", None])
def test_runs_without_a_usable_cache(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", cache or str(tmp_path))
    out, err = io.BytesIO(), io.BytesIO()
    # Neither the runtime nor the script needs the cache: without one both are linked each run.
    status = main(["run", "--jit", "-e", 'print("ran")'], stdout=out, stderr=err)
    assert (status, out.getvalue(), err.getvalue()) == (0, b"ran\n", b"")
