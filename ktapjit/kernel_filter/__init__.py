"""The kernel's tracepoint filter language, the ``/FILTER/`` of a probe:
``language.py`` parses, checks, matches and writes it back as kernel text;
``native.py`` compiles it for the JIT runtime's evaluator (runtime/filter.c),
with the same verdicts. One package, so the two back ends share one reading
of a field and of the kernel's quirks without reaching into each other.

May import: nothing of ktapjit (the event format is duck-typed, see
language.py), so the frontend, the tracing layer and the JIT may all use it.
"""
