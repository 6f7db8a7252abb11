"""Tracing sessions: binding a compiled script's probes to event sources and
driving an engine with the ordered record stream (live, or from perf.data).

May import: ktapjit.diag, ktapjit.frontend (event definitions),
ktapjit.kernel_filter (probe filters), ktapjit.run_api,
ktapjit.ir (the Module's probe list), ktapjit.events, ktapjit.semantics;
tqdm (progress.py only, and only once a bar is drawn).
Engines are reached only through the run surface of ktapjit.run_api.
"""
