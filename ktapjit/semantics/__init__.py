"""Language semantics shared by every engine: values, integer arithmetic,
printf and print_hist formatting, aggregations (hist, lhist, stats, print_agg),
and the structured output items (output.py) the engines hand -f json.

The reference interpreter calls these functions directly; the JIT's native
runtime is tested against them. Each function raises RuntimeFault with
``span=None`` and the engine fills in the location.

May import: stdlib, ktapjit.diag.
"""
