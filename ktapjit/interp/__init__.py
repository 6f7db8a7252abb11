"""The reference interpreter: executes the SSA IR directly. It is the oracle.

May import: ktapjit.diag, ktapjit.ir (and the frontend names it is built from),
ktapjit.semantics, ktapjit.run_api.
"""
