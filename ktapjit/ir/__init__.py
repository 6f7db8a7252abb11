"""The SSA IR: op table, functions and blocks, construction from the AST,
the verifier, the printer and the optimisation passes.

May import: ktapjit.diag, ktapjit.frontend, ktapjit.semantics.
"""
