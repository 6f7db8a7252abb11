"""A probe's /FILTER/ compiled into its program: a BPF program on a
tracepoint runs before perf applies the event's filter (docs/bpf.md), so the
program tests it itself, with the kernel filter's semantics
(kernel_filter/language.py): an integer field compared as the field's
bytes, the value cut to the field's size; ordering signed or unsigned as
the field is; `&` a test of any common bit; the generic `cpu` field."""

from __future__ import annotations

from typing import Mapping, Optional

from ktapjit.bpf.kernel_plan import CtxField, NotLowered
from ktapjit.bpf.llvm_text import GET_CURRENT_PID_TGID, GET_SMP_PROCESSOR_ID, FunctionText
from ktapjit.diag import Span
from ktapjit.kernel_filter.language import FilterAnd, FilterNot, FilterOr, FilterPredicate, parse_filter

GENERIC_CPU = ("CPU", "cpu", "common_cpu")
_SIGNED = {"<": "slt", "<=": "sle", ">": "sgt", ">=": "sge"}
_UNSIGNED = {"<": "ult", "<=": "ule", ">": "ugt", ">=": "uge"}


def filter_test(fn: FunctionText, text: str, span: Optional[Span], fields: Mapping[str, CtxField]) -> str:
    """An i1 that holds when the event passes the filter `text`."""
    return _node(fn, parse_filter(text), span, fields)


def _node(fn: FunctionText, node, span, fields) -> str:
    if isinstance(node, FilterNot):
        return fn.op(f"xor i1 {_node(fn, node.inner, span, fields)}, true")
    if isinstance(node, (FilterAnd, FilterOr)):
        # both sides are loads and compares with no effect: no need to short-circuit
        left, right = _node(fn, node.left, span, fields), _node(fn, node.right, span, fields)
        return fn.op(f"{'and' if isinstance(node, FilterAnd) else 'or'} i1 {left}, {right}")
    return _predicate(fn, node, span, fields)


def _predicate(fn: FunctionText, pred: FilterPredicate, span, fields) -> str:
    if pred.kind != "int" or pred.modifier is not None:
        raise NotLowered(f"a /FILTER/ on a {pred.kind} value", span)
    where = fields.get(pred.field)
    if where is None and pred.field in GENERIC_CPU:
        cpu = fn.op(f"trunc i64 {fn.helper(GET_SMP_PROCESSOR_ID, 'i64', '')} to i32")
        return _compare(fn, pred.op, cpu, 32, True, pred.value)
    if pred.field == "common_pid" and where is not None and not where.readable:
        # Not in the program's context (kernel_plan.TRACEPOINT_CTX_START); the
        # record's common_pid is the current task's pid, the helper's low half.
        tid = fn.op(f"trunc i64 {fn.helper(GET_CURRENT_PID_TGID, 'i64', '')} to i32")
        return _compare(fn, pred.op, tid, 32, where.signed, pred.value)
    if where is None or where.string or not where.in_context or where.size not in (1, 2, 4, 8):
        raise NotLowered(f"a /FILTER/ on field {pred.field}", span)
    bits = where.size * 8
    raw = fn.load(f"i{bits}", fn.gep("%ctx", where.offset))
    return _compare(fn, pred.op, raw, bits, where.signed, pred.value)


def _compare(fn: FunctionText, op: str, raw: str, bits: int, signed: bool, value: int) -> str:
    mask = (1 << bits) - 1
    want = value & mask
    want = want - (1 << bits) if want >> (bits - 1) else want  # as LLVM spells an iN constant
    if op == "==":
        return fn.op(f"icmp eq i{bits} {raw}, {want}")
    if op == "!=":
        return fn.op(f"icmp ne i{bits} {raw}, {want}")
    if op == "&":
        return fn.op(f"icmp ne i{bits} {fn.op(f'and i{bits} {raw}, {want}')}, 0")
    return fn.op(f"icmp {(_SIGNED if signed else _UNSIGNED)[op]} i{bits} {raw}, {want}")
