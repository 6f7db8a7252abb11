"""Source text to a resolved AST: the lark grammar, AST nodes with spans, scopes.

May import: ktapjit.diag. Nothing from ir/, interp/, jit/ or events/.
"""
