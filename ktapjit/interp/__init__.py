"""The reference interpreter: executes the SSA IR directly. It is the oracle.

May import: ktapjit.diag, ktapjit.ir, ktapjit.semantics, ktapjit.events.
"""
