"""Kernel events as perf's record stream, organised by what each part knows:

- ``errors.py``, ``tracefs.py``, ``schema.py``: finding tracepoints and
  reading their formats;
- ``printfmt/``: an event's print fmt compiled to render ``argstr``;
- ``records/``: perf's record stream, live rings and perf.data files;
- ``probes/``: uprobes and USDT sites, ELF files and symbols.

May import: ktapjit.diag, and of its own subpackages ktapjit.events.printfmt
(tracefs parses printk formats). The language packages never reach in here
except through the engines.
"""
