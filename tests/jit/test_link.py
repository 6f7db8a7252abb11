"""Linking compiled scripts: `ld` directly when it can, else the C compiler
driver, with the same result either way."""

from __future__ import annotations

import io

import pytest

from ktapjit.cli import main
from ktapjit.jit import codegen


def _run(tmp_path, monkeypatch) -> tuple[int, bytes, bytes]:
    monkeypatch.setenv("KTAPJIT_CACHE_DIR", str(tmp_path))
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", "--jit", "-e", 'var t = {}\nt["a"] += 2\nprintf("%s=%d\\n", "a", t["a"])'],
                  stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_links_with_ld(tmp_path, monkeypatch):
    if codegen._ld() is None:
        pytest.skip("no ld on the PATH")
    used = []
    real = codegen._link_with_ld
    monkeypatch.setattr(codegen, "_link_with_ld", lambda *a: used.append(real(*a)) or used[-1])
    assert _run(tmp_path, monkeypatch) == (0, b"a=2\n", b"")
    assert used == [True]


@pytest.mark.parametrize("ld", [None, "/bin/false"])
def test_falls_back_to_the_driver(tmp_path, monkeypatch, ld):
    monkeypatch.setattr(codegen, "_ld", lambda: ld)  # no ld, or one that refuses everything
    driver = []
    real = codegen._link_with_driver
    monkeypatch.setattr(codegen, "_link_with_driver", lambda *a: driver.append(a) or real(*a))
    assert _run(tmp_path, monkeypatch) == (0, b"a=2\n", b"")
    assert len(driver) == 1
