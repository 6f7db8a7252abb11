"""The print-fmt compiler: a tracepoint's ``print fmt`` (its TP_printk)
parsed once and compiled for one of two back ends, side by side.

- ``closures.py`` parses the print fmt and compiles it to Python closures
  that render ``argstr`` as ``perf script`` does. It is the reference.
- ``bytecode.py`` compiles the same parse to the flat program the JIT
  runtime's argstr.c interprets. The JIT loads what it produces; this
  package knows nothing of the JIT.

May import: ktapjit.events (the schema of an event), ktapjit.kernel_filter
(the kernel's cpulist text, written once there).
"""
