"""The executor: runs prepared IR with an explicit frame stack.

A script call never becomes a Python call, so recursion as deep as
``--max-depth`` allows (100000 and more) cannot overflow the Python stack.
The running frame lives in local variables (its registers, block and segment
index); a Call suspends it as a Frame on ``stack`` and a Return resumes it.
The stack is exactly the chain of callers, so the depth of the running frame
is ``len(stack)``: the entry function (top level, probe, timer, trace_end)
runs at depth 0.

exit() ends ``execute`` at once whatever the depth: the frames are simply
dropped. A runtime error propagates as RuntimeFault after the failing op's
span is filled in. An OSError can only come from the output sink and
propagates unchanged; any other exception is a ktapjit bug and propagates
as InternalError (a RuntimeFault) chained to it.
"""

from __future__ import annotations

from ktapjit.diag import RuntimeFault
from ktapjit.interp.program import (
    BROKEN,
    EXIT,
    IF,
    PLAIN,
    RETURN,
    TAILCALL,
    Code,
    prepare,
)
from ktapjit.interp.runtime import InternalError, Runtime
from ktapjit.ir.func import Func
from ktapjit.semantics.values import Function, type_name


class _Exited:
    """The result of ``execute`` when exit() ran."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EXITED"


EXITED = _Exited()


class Frame:
    """A suspended caller: where to resume, and which register gets the result."""

    __slots__ = ("regs", "block", "seg", "dest")

    def __init__(self, regs: list, block, seg: int, dest: int):
        self.regs = regs
        self.block = block
        self.seg = seg
        self.dest = dest


class Machine:
    """Executes Funcs for one run, preparing each the first time it runs."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.max_depth = rt.limits.max_depth
        self._codes: dict[Func, Code] = {}

    def code(self, func: Func) -> Code:
        code = self._codes.get(func)
        if code is None:
            code = self._codes[func] = prepare(func, self.rt)
        return code

    def _callee_code(self, callee: object, nargs: int, span) -> Code:
        """The checks every call makes before entering the callee."""
        if type(callee) is not Function:
            raise RuntimeFault(f"attempt to call a {type_name(callee)} value", span)
        code = self._codes.get(callee.code)
        if code is None:
            code = self.code(callee.code)
        if nargs > code.nparams:
            raise RuntimeFault(f"too many arguments (function takes {code.nparams}, got {nargs})", span)
        return code

    def execute(self, func: Func) -> object:
        """Run func (no arguments, no cells) at depth 0 until it returns.

        Returns its return value, or EXITED when exit() ran. Raises
        RuntimeFault (with a span where the op has one).
        """
        max_depth = self.max_depth
        callee_code = self._callee_code
        stack: list[Frame] = []
        value = None  # the op being run: its span locates a fault
        try:
            code = self.code(func)
            regs = code.new_regs((), ())
            block = code.entry
            seg = 0
            while True:
                steps, call = block.segments[seg]
                for step, dest, value in steps:
                    regs[dest] = step(regs)
                if call is not None:
                    value = call.value
                    callee = regs[call.callee]
                    args = [regs[a] for a in call.args]
                    code = callee_code(callee, len(args), call.span)
                    if len(stack) >= max_depth:  # the callee would be at len(stack) + 1
                        raise RuntimeFault(f"stack overflow (depth {max_depth})", call.span)
                    stack.append(Frame(regs, block, seg + 1, call.dest))
                    regs = code.new_regs(args, callee.cells)
                    block = code.entry
                    seg = 0
                    continue

                kind = block.kind
                if kind is PLAIN:
                    target, dests, srcs = block.edges[0]
                elif kind is IF:
                    cond = regs[block.controls[0]]
                    target, dests, srcs = block.edges[0 if cond is not None and cond is not False else 1]
                elif kind is RETURN:
                    result = regs[block.controls[0]] if block.controls else None
                    if not stack:
                        return result
                    frame = stack.pop()
                    regs, block, seg = frame.regs, frame.block, frame.seg
                    regs[frame.dest] = result
                    continue
                elif kind is TAILCALL:
                    controls = block.controls
                    callee = regs[controls[0]]
                    args = [regs[a] for a in controls[1:]]
                    code = callee_code(callee, len(args), block.span)
                    # The callee replaces this frame: same depth, new back-edge count.
                    regs = code.new_regs(args, callee.cells)
                    block = code.entry
                    seg = 0
                    continue
                elif kind is EXIT:
                    return EXITED
                else:
                    assert kind is BROKEN
                    value = None
                    raise InternalError(block.problem, block.span) from block.cause

                if dests:  # the phis of target, assigned in parallel
                    if len(dests) == 1:
                        regs[dests[0]] = regs[srcs[0]]
                    else:
                        moved = [regs[s] for s in srcs]
                        for d, x in zip(dests, moved):
                            regs[d] = x
                block = target
                seg = 0
        except RuntimeFault as fault:
            if fault.span is None and value is not None:
                fault.span = value.span
            raise
        except OSError:  # from the output sink (e.g. a closed pipe): the caller's business
            raise
        except Exception as exc:  # a bug in ktapjit, not in the script
            where = f" (running {value.op.name} v{value.id})" if value is not None else ""
            raise InternalError(f"{type(exc).__name__}: {exc}{where}",
                                value.span if value is not None else None) from exc
