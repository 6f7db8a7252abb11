"""The Prometheus endpoint of `ktapjit run --metrics` (docs/metrics.md).

exposition.py renders exported tables as Prometheus text; server.py serves
the latest rendering over HTTP from its own thread; exporter.py decides
what is exported and when the main thread publishes a new rendering.

May import: stdlib, ktapjit.semantics, ktapjit.diag.
"""
