"""Source text to a resolved AST: the lark grammar, AST nodes with spans, scopes.

May import: ktapjit.diag, ktapjit.cache_paths (lark's cache file) and
ktapjit.semantics (literal rules). Nothing from ir/, interp/, jit/ or events/.
"""
