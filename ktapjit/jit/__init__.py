"""The native engine: lowers the SSA IR to machine code through llvmlite.

May import: ktapjit.diag, ktapjit.ir, ktapjit.semantics, ktapjit.events.
"""
