"""The IR's text form, as `ktapjit ir SCRIPT` prints it.

    func main (main, 0 params)
    b0:
      v0 = Const 1
      Plain -> b1
    b1: <- b0 b2
      v3 = Phi v0 v7
      If v4 -> b2 b3
"""

from __future__ import annotations

from ktapjit.ir.func import Block, Func, Module, Value
from ktapjit.ir.ops import Op
from ktapjit.ir.types import type_name


def format_module(module: Module) -> str:
    parts = []
    for probe in module.probes:
        filt = f" /{probe.filter}/" if probe.filter is not None else ""
        parts.append(f"# trace {probe.eventdef}{filt} -> {probe.func.name}#{id_of(module, probe.func)}")
    for timer in module.timers:
        parts.append(f"# {timer.text} -> {timer.func.name}#{id_of(module, timer.func)}")
    if parts:
        parts.append("")
    for i, func in enumerate(module.funcs):
        parts.append(format_func(func, i, module))
    return "\n".join(parts)


def id_of(module: Module, func: Func) -> int:
    return next(i for i, f in enumerate(module.funcs) if f is func)


def format_func(func: Func, index: int | None = None, module: Module | None = None) -> str:
    label = f"{func.name}#{index}" if index is not None else func.name
    head = f"func {label} ({func.kind}, {func.nparams} params"
    if func.free_names:
        head += ", captures " + " ".join(func.free_names)
    lines = [head + ")"]
    for block in func.blocks:
        lines.extend(format_block(block, module))
    return "\n".join(lines) + "\n"


def format_block(block: Block, module: Module | None = None) -> list[str]:
    head = f"{block}:"
    if block.preds:
        head += " <- " + " ".join(map(str, block.preds))
    lines = [head]
    for value in block.instrs:
        lines.append("  " + format_value(value, module))
    lines.append("  " + format_terminator(block))
    return lines


def format_aux(value: Value, module: Module | None) -> str:
    aux = value.aux
    if value.op is Op.Const:
        if aux is None:
            return "nil"
        if isinstance(aux, bool):
            return "true" if aux else "false"
        if isinstance(aux, bytes):
            return '"' + aux.decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
        return str(aux)
    if value.op is Op.Closure:
        return f"{aux.name}#{id_of(module, aux)}" if module else aux.name
    if value.op in (Op.GlobalGet, Op.GlobalSet) and module is not None:
        return f"{module.global_names[aux]}@{aux}"
    return str(aux)


def format_value(value: Value, module: Module | None = None) -> str:
    text = f"v{value.id} = {value.op.name}"
    if value.aux is not None or value.op is Op.Const:
        text += f" [{format_aux(value, module)}]"
    if value.args:
        text += " " + " ".join(map(str, value.args))
    if value.type is not None:
        text += f" : {type_name(value.type)}"
    if value.span is not None:
        text += f"  @{value.span.line}:{value.span.col}"
    return text


def format_terminator(block: Block) -> str:
    text = block.kind
    if block.controls:
        text += " " + " ".join(map(str, block.controls))
    if block.succs:
        text += " -> " + " ".join(map(str, block.succs))
    if block.span is not None:
        text += f"  @{block.span.line}:{block.span.col}"
    return text
