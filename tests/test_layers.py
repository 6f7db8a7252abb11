"""The layer rules: which package of ktapjit may import which, as data,
checked over the AST of every module (as Go's deps_test.go does).

The table is what the package docstrings state ("May import: ..."); a test
keeps the two in step. The imports that break a rule today are listed with
the issue that removes them, and a break that is gone must leave the list,
so it only shrinks. No module may read another package's private names
(``_name``), by import or by attribute.

A subpackage with a rule of its own (``events.printfmt``) is a layer of its
own: inside its parent it may import only what its rule names, while a layer
allowed the parent (``events``) may import all of it.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ktapjit"

# Package (or top-level module) -> the ktapjit packages and modules it may import.
RULES: dict[str, frozenset[str]] = {
    "diag": frozenset(),
    "cache_paths": frozenset(),
    "semantics": frozenset({"diag"}),
    "kernel_filter": frozenset(),
    "frontend": frozenset({"diag", "cache_paths", "semantics", "kernel_filter"}),
    "ir": frozenset({"diag", "frontend", "semantics"}),
    "run_api": frozenset({"diag", "semantics"}),
    "run_lifecycle": frozenset({"diag", "frontend", "run_api", "semantics"}),
    "interp": frozenset({"diag", "ir", "frontend", "semantics", "run_api", "run_lifecycle"}),
    "events": frozenset({"diag", "events.printfmt"}),
    "events.printfmt": frozenset({"events", "kernel_filter"}),
    "events.records": frozenset({"events"}),
    "events.probes": frozenset({"events", "events.records"}),
    "testing": frozenset({"events"}),  # for tests and bench only: no rule may name it
    "jit": frozenset({"diag", "cache_paths", "ir", "semantics", "events", "run_api", "run_lifecycle",
                      "kernel_filter"}),
    "tracing": frozenset({"diag", "frontend", "ir", "events", "semantics", "run_api", "kernel_filter"}),
    "compare": frozenset({"diag"}),
    "bpf": frozenset({"diag", "ir", "semantics", "events", "kernel_filter", "run_api", "interp"}),
    "output_json": frozenset({"diag", "semantics"}),
    "metrics": frozenset({"diag", "semantics"}),
    "compiler": frozenset({"diag", "frontend", "ir", "semantics", "jit"}),
    "bundle": frozenset({"diag", "cache_paths", "ir", "semantics", "jit", "compiler"}),
    "cli": frozenset({"diag", "cache_paths", "frontend", "ir", "interp", "jit", "events", "tracing",
                      "run_api", "run_lifecycle", "semantics", "compare", "kernel_filter",
                      "output_json", "metrics", "compiler", "bpf", "bundle"}),
    "__main__": frozenset({"cli"}),
}

# Imports that break a rule today, and what removes them (issue 12, the house).
KNOWN_BREAKS: dict[tuple[str, str], str] = {
}

# Private names read across packages today, and what removes them.
KNOWN_PRIVATE: dict[tuple[str, str], str] = {
}


def _modules() -> list[tuple[str, Path]]:
    """(dotted name, path) of every module of ktapjit."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _layer(dotted: str) -> str:
    """ktapjit.x.y -> x, or x.y when x.y has a rule; ktapjit.mod -> mod."""
    parts = dotted.split(".")
    if len(parts) > 2 and f"{parts[1]}.{parts[2]}" in RULES:
        return f"{parts[1]}.{parts[2]}"
    return parts[1] if len(parts) > 1 else parts[0]


def _allowed(me: str, target: str) -> bool:
    """Whether layer *me* may import layer *target*: its rule names it, or
    names the package *target* is part of and *me* is outside that package."""
    parent = target.split(".")[0]
    return target in RULES[me] or (parent in RULES[me] and parent != me.split(".")[0])


def _imports(tree: ast.AST) -> list[tuple[str, list[tuple[str, str]], int]]:
    """(module imported, (name, bound as) pairs taken from it, line) of every
    absolute ktapjit import, function-local ones included."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("ktapjit.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ktapjit"):
            out.append((node.module, [(a.name, a.asname or a.name) for a in node.names], node.lineno))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


_TREES = {dotted: ast.parse(path.read_text(), str(path)) for dotted, path in _modules()}


def _edges() -> dict[tuple[str, str], list[str]]:
    """(layer, imported layer) -> where, for every import across layers."""
    edges: dict[tuple[str, str], list[str]] = {}
    for dotted, tree in _TREES.items():
        me = _layer(dotted)
        for module, names, line in _imports(tree):
            targets = {_layer(module)}
            if module == "ktapjit":  # from ktapjit import cli (or __version__: the package itself)
                targets = {name for name, _bound in names if name in RULES}
            for target in targets - {me, "ktapjit"}:
                edges.setdefault((me, target), []).append(f"{dotted}:{line}")
    return edges


def test_every_layer_has_a_rule():
    assert {_layer(d) for d in _TREES} - {"ktapjit"} == set(RULES)


def test_imports_follow_the_rules():
    broken = {edge: where for edge, where in _edges().items()
              if not _allowed(*edge) and edge not in KNOWN_BREAKS}
    assert broken == {}, "imports across layers the rules do not allow (fix, or change RULES and the docstring)"


def test_nothing_in_ktapjit_imports_testing():
    """ktapjit.testing is for tests and benchmarks: what ships never runs it."""
    assert [layer for layer, allowed in RULES.items() if "testing" in allowed] == []
    assert [edge for edge in _edges() if edge[1] == "testing"] == []


def test_known_breaks_still_exist():
    edges = _edges()
    gone = [edge for edge in KNOWN_BREAKS if edge not in edges]
    assert gone == [], "these breaks are fixed: remove them from KNOWN_BREAKS"


def _private_reads() -> dict[tuple[str, str], list[str]]:
    """(layer, private name) -> where, for private names a module reads from
    another layer: imported (`from x import _y`), read off an imported module
    (`mod._y`), or read off any object when only other layers' classes
    define that attribute (`attrs._by_id`, duck-typed)."""
    defined: dict[str, set[str]] = {}  # private attribute -> layers whose classes set it
    for dotted, tree in _TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
                defined.setdefault(node.attr, set()).add(_layer(dotted))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _private(node.target.id):
                defined.setdefault(node.target.id, set()).add(_layer(dotted))  # dataclass fields
    reads: dict[tuple[str, str], list[str]] = {}
    for dotted, tree in _TREES.items():
        me = _layer(dotted)
        modules = {}
        for module, names, line in _imports(tree):
            if _layer(module) == me:
                continue
            for name, bound in names:
                if _private(name):
                    reads.setdefault((me, name), []).append(f"{dotted}:{line}")
                modules[bound] = module
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _private(node.attr)):
                continue
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in ("self", "cls"):
                continue
            off_module = owner in modules
            duck_typed = node.attr in defined and me not in defined[node.attr]
            if off_module or duck_typed:
                reads.setdefault((me, node.attr), []).append(f"{dotted}:{node.lineno}")
    return reads


def test_no_module_reads_another_layers_private_names():
    reads = {key: where for key, where in _private_reads().items() if key not in KNOWN_PRIVATE}
    assert reads == {}, "private names read across layers (give them public names)"


def test_known_private_reads_still_exist():
    reads = _private_reads()
    gone = [key for key in KNOWN_PRIVATE if key not in reads]
    assert gone == [], "these reads are gone: remove them from KNOWN_PRIVATE"


PACKAGES = sorted(layer for layer in RULES if (ROOT / layer.replace(".", "/") / "__init__.py").exists())


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_docstring_states_its_rule(package):
    """Each package says what it holds and what it may import, and says it
    as RULES does: every ktapjit layer named after "May import:" is allowed,
    and every allowed one is named."""
    doc = importlib.import_module(f"ktapjit.{package}").__doc__ or ""
    found = re.search(r"May import:(.*?)(?:\n\n|$)", doc, re.S)
    assert found, f"ktapjit/{package}/__init__.py has no 'May import:' paragraph"
    named = {_layer(f"ktapjit.{name}") for name in re.findall(r"ktapjit\.([\w.]*\w)", found.group(1))}
    assert named == RULES[package]
