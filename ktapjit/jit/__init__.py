"""The native engine: lowers the SSA IR to machine code through llvmlite.

May import: ktapjit.diag, ktapjit.ir, ktapjit.semantics, ktapjit.events,
ktapjit.run_api and ktapjit.run_lifecycle (the run surface and the lifecycle
every engine shares), ktapjit.cache_paths (where native code is cached),
ktapjit.kernel_filter (probe filters, run natively).
"""
