"""The print-fmt compiler: a tracepoint's ``print fmt`` (its TP_printk)
parsed once and compiled for one of two back ends, side by side.

- ``parse.py``, the front end: the format string's pieces and the
  arguments' expression trees, as libtraceevent reads them.
- ``syscalls.py``: the print fmt that renders syscall events as the
  kernel's text trace does (not as their own print fmt says), which the
  front end reads in their place.
- ``values.py``: C's unsigned 64-bit arithmetic over a record, which both
  back ends fold constants with.
- ``closures.py`` compiles the parse to Python closures that render
  ``argstr`` as ``perf script`` does. It is the reference.
- ``bytecode.py`` compiles the same parse to the flat program the JIT
  runtime's argstr.c interprets. The JIT loads what it produces; this
  package knows nothing of the JIT.

May import: ktapjit.events (the schema of an event), ktapjit.kernel_filter
(the kernel's cpulist text, written once there).
"""
