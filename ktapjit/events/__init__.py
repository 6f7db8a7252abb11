"""Kernel events as perf's record stream: tracefs schemas, the record decoder,
perf.data files, live perf rings and synthetic streams.

May import: ktapjit.diag only. The language packages never reach in here except
through the engines.
"""
