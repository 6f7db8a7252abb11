"""What tests and benchmarks build their inputs with; ktapjit itself never
runs it. ``synth.py`` writes synthetic perf record streams and perf.data
files from real tracepoint formats.

Only tests/ and bench/ import this package: no module of ktapjit may
(test_layers checks it).

May import: ktapjit.events (formats, the record stream's layout, perf.data).
"""
