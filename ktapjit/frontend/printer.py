"""The AST as text, one node a line, for `ktapjit ir --dump-after parse|resolve`.

A node prints as its class, its plain fields (`op='+'`), and its span
(`@LINE:COL`); child nodes follow, indented and labelled with their field.
After resolve, names show the variable they bind (`-> global n#0`, `-> local
i`, `captured` when it lives in a cell) and calls their builtin.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from ktapjit.diag import Span
from ktapjit.frontend import ast

# Program fields that repeat what main's statements hold, or are not the tree.
_PROGRAM_SKIP = {"main", "path", "source", "globals", "probes", "timers", "trace_end"}


def format_program(program: ast.Program) -> str:
    lines = []
    if program.globals:
        lines.append("globals " + ", ".join(_variable(v) for v in program.globals))
    _node(program.main, "", 0, lines)
    return "\n".join(lines) + "\n"


def _variable(var: ast.Variable) -> str:
    text = f"{var.kind} {var.name}"
    if var.kind == "global":
        text += f"#{var.slot}"
    return text + (" captured" if var.captured else "")


def _node(node, label: str, depth: int, lines: list[str]) -> None:
    plain, children, span = [], [], ""
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Span):
            if f.name == "span":
                span = f"  @{value.line}:{value.col}"
            continue
        if value is None or (isinstance(value, list) and not value):
            continue
        if isinstance(value, ast.Variable):
            plain.append(f"-> {_variable(value)}")
        elif isinstance(value, list) and isinstance(value[0], ast.Variable):
            plain.append(f"{f.name}=[{', '.join(v.name for v in value)}]")
        elif is_dataclass(value):
            children.append((f.name, value))
        elif isinstance(value, list):
            children += _items(f.name, value)
        else:
            plain.append(f"{f.name}={value!r}")
    head = f"{label}: " if label else ""
    lines.append("  " * depth + head + " ".join([type(node).__name__, *plain]) + span)
    for name, child in children:
        _node(child, name, depth + 1, lines)


def _items(name: str, items: list) -> list[tuple[str, object]]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, tuple):  # If's (condition, block) clauses
            out += [(f"{name}[{i}][{j}]", part) for j, part in enumerate(item)]
        else:
            out.append((f"{name}[{i}]", item))
    return out
