"""The PNG plot: per-event latency by workload and engine (and the numba baseline).

matplotlib is optional: without it ``write_plot`` returns the reason and no
file is written (the project declares it in its bench extra when it wants
plots; nothing here draws PNGs by hand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def _series(results: dict) -> tuple[list[str], dict[str, list[Optional[float]]], dict[str, list[Optional[float]]]]:
    """Workloads, and per series (engine or "numba") the p50 and p99 ns/event."""
    sections = results.get("sections", {})
    handlers = sections.get("handlers", {})
    workloads = list(handlers.get("workloads", {}))
    p50: dict[str, list] = {}
    p99: dict[str, list] = {}
    for row in handlers.get("rows", []):
        if not row.get("available"):
            continue
        i = workloads.index(row["workload"])
        p50.setdefault(row["engine"], [None] * len(workloads))[i] = row["ns_per_event_p50"]
        p99.setdefault(row["engine"], [None] * len(workloads))[i] = row["ns_per_event_p99"]
    for row in sections.get("baseline", {}).get("rows", []):
        if row.get("available") and row["workload"] in workloads:
            i = workloads.index(row["workload"])
            p50.setdefault("numba baseline", [None] * len(workloads))[i] = row["ns_per_event"]
    return workloads, p50, p99


def write_plot(results: dict, path: Path) -> Optional[str]:
    """Write the plot; returns None, or why no plot was written."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on CI or over ssh
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (add it to the bench extra)"
    workloads, p50, p99 = _series(results)
    if not workloads or not p50:
        return "no handler latencies were measured"
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(workloads) * len(p50) + 1.5))
    height = 0.8 / len(p50)
    for k, (name, values) in enumerate(p50.items()):
        shown = [i for i, v in enumerate(values) if v]  # a workload without this series has no bar
        xs = [values[i] for i in shown]
        errs = None
        if name in p99:  # p99 as the bar's whisker
            errs = [[0] * len(xs), [max((p99[name][i] or 0) - values[i], 0) for i in shown]]
        ax.barh([i + k * height for i in shown], xs, height=height, xerr=errs, capsize=2, label=name)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(workloads))], workloads)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ns per event (p50; whisker to p99), log scale")
    meta = results.get("meta", {})
    ax.set_title(f"ktapjit per-event handler latency ({meta.get('profile')} run, {meta.get('started', '')[:10]})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
