"""Helpers for IR tests: compile source and print functions without spans."""

import re

from ktapjit.frontend.parse import parse_program
from ktapjit.frontend.resolve import resolve_program
from ktapjit.ir.pipeline import PassContext
from ktapjit.ir.printer import format_func
from ktapjit.ir.ssa_build import build_module
from ktapjit.ir.verify import verify_module
from ktapjit.run_api import Limits


def build(source: str):
    module = build_module(resolve_program(parse_program(source.encode(), "t.kp")))
    verify_module(module, after="build ssa")
    return module


def ctx(**limits):
    return PassContext(limits=Limits(**limits), verify=True)


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
