"""The reference interpreter: executes the SSA IR directly. It is the oracle.

May import: ktapjit.diag, ktapjit.ir and ktapjit.frontend (the names the IR is
built from), ktapjit.semantics, ktapjit.run_api and ktapjit.run_lifecycle (the
run surface and the lifecycle every engine shares).
"""
