"""ktapjit's benchmarks: `python -m bench` (see bench/__main__.py and docs/benchmarks.md).

One concept per module: workloads (scripts and their streams), streams
(cached synthetic recordings), engines (what runs here), handlers
(in-process per-event latency), columns and baseline_numba (the native
baseline), compile_latency, procs (timed subprocesses), startup,
perf_compare (end-to-end replay against perf script), live (syscall
overhead), report and plot (JSON, tables, docs, PNG), profiles (sizes).
"""
