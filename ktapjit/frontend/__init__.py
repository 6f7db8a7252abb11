"""Source text to a resolved AST: the lark grammar, AST nodes with spans, scopes.

May import: ktapjit.diag, ktapjit.cache_paths (lark's cache file),
ktapjit.semantics (literal rules) and ktapjit.kernel_filter (a filter's syntax). Nothing from ir/, interp/, jit/ or events/.
"""

# The global the script's arguments are bound to (`arg`). Here rather than in
# resolve.py, so that an engine running a module from the JIT's cache reads
# it without importing the front end.
ARG_GLOBAL = "arg"
