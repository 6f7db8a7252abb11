"""ktapjit: a JIT-compiling dynamic-tracing engine that runs ktap scripts.

Data flows one way: frontend (source -> AST) -> ir (AST -> SSA IR -> passes)
-> an engine (interp/ or jit/) fed by events/. Subpackages never import from
packages later in that chain; `cli` is the only module that ties them together.
"""

__version__ = "0.1.0"
