"""Kernel events as perf's record stream: tracefs schemas, the record decoder,
perf.data files, live perf rings and synthetic streams.

May import: ktapjit.diag, and of its own subpackages ktapjit.events.printfmt
(tracefs parses printk formats). The language packages never reach in here
except through the engines.
"""
