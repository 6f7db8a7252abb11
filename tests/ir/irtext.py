"""Helpers for IR tests: compile source and print functions without spans."""

import re

from ktapjit.compiler import Compilation, compile_script
from ktapjit.ir.printer import format_func
from ktapjit.ir.verify import verify_module
from ktapjit.run_api import Limits


def build(source: str):
    """The verified IR straight from SSA construction, before any pass."""
    return compile_script(source.encode(), "t.kp", until="build ssa", verify=True).module


def ctx(**limits):
    return Compilation("t.kp", b"", limits=Limits(**limits), verify=True)


def text(func) -> str:
    """The printed function without source positions, which tests don't pin."""
    return re.sub(r"  @\d+:\d+", "", format_func(func)).strip()


def run_passes(module, *passes, **limits):
    context = ctx(**limits)
    for func in module.funcs:
        for fn in passes:
            fn(func, context)
    verify_module(module, after="+".join(p.__name__ for p in passes))
    return module
