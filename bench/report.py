"""Results as tables: the terminal, docs/benchmarks.md, and the target ratios.

Everything here reads the results dict (what bench/results/latest.json
holds) and nothing else, so ``python -m bench --render-only`` can rebuild
the docs from a saved run. A value that was not measured prints as
"n/a (...)" with the reason; no number is ever filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bench.engines import NOT_AVAILABLE
from bench.stats import ratio


# -- formatting -----------------------------------------------------------------------------


def rss_note(results: dict) -> str:
    floor = results.get("meta", {}).get("rss_floor_kib")
    return f" Peak RSS is the command's own (the launcher that measures it sets a floor of {mib(floor)} MiB)." \
        if floor else ""


def num(x: Optional[float]) -> str:
    """Three significant figures, thousands separated."""
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def rate(x: Optional[float]) -> str:
    """Events per second with an SI suffix."""
    if x is None or x == 0:
        return "n/a"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def times(x: Optional[float]) -> str:
    return "n/a" if x is None else (f"{x:.3g}x" if x < 100 else f"{x:,.0f}x")


def mib(kib: Optional[int]) -> str:
    return "n/a" if not kib else f"{kib / 1024:.0f}"


def yes_no(flag: Optional[bool]) -> str:
    return "not checked" if flag is None else ("yes" if flag else "NO")


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.headers)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        out = [self.title, line(self.headers), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows]
        if self.note:
            out.append(self.note)
        return "\n".join(out)

    def markdown(self) -> str:
        esc = lambda c: c.replace("|", "\\|")
        out = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |",
               "|" + "|".join("---" for _ in self.headers) + "|"]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows]
        if self.note:
            out += ["", self.note]
        return "\n".join(out)


# -- lookups ------------------------------------------------------------------------------


def _section(results: dict, name: str) -> dict:
    return results.get("sections", {}).get(name) or {}


def _handler(results: dict, workload: str, engine: str) -> Optional[dict]:
    for row in _section(results, "handlers").get("rows", []):
        if row["workload"] == workload and row["engine"] == engine:
            return row
    return None


def _baseline(results: dict, workload: str) -> Optional[dict]:
    for row in _section(results, "baseline").get("rows", []):
        if row["workload"] == workload and row.get("available"):
            return row
    return None


def _raw_baseline(results: dict, workload: str) -> Optional[float]:
    raw = (_baseline(results, workload) or {}).get("raw") or {}
    return raw.get("ns_per_event") if raw.get("available") else None


def _available(results: dict, engine: str, where: str = "in_process") -> bool:
    return any(e["name"] == engine and e["available"] for e in results.get("engines", {}).get(where, []))


def _replay_wall(results: dict, name: str) -> Optional[float]:
    for row in _section(results, "replay").get("rows", []):
        if row["name"] == name and not row.get("error"):
            return row.get("wall_median_s")
    return None


def _live_overhead(results: dict, name: str) -> Optional[float]:
    for row in _section(results, "live").get("rows", []):
        if row["name"] == name and not row.get("error"):
            return row.get("overhead_ns_per_call")
    return None


def _live_lost(results: dict, name: str) -> Optional[int]:
    for row in _section(results, "live").get("rows", []):
        if row["name"] == name and not row.get("error") and row.get("lost") is not None:
            return sum(row["lost"])
    return None


def _startup_warm(results: dict, engine: str, command: str = "print") -> Optional[float]:
    for row in _section(results, "startup").get("rows", []):
        if row["engine"] == engine and row.get("command", "print") == command and row.get("available") \
                and not row.get("error"):
            return row.get("warm_median_s")
    return None


# -- the section tables ---------------------------------------------------------------------


def engines_table(results: dict) -> Table:
    t = Table("Engines", ["engine", "in-process", "ktapjit run --engine"])
    eng = results.get("engines", {})
    names = [e["name"] for e in eng.get("in_process", [])]
    for name in names:
        cells = [name]
        for where in ("in_process", "cli"):
            info = next((e for e in eng.get(where, []) if e["name"] == name), None)
            cells.append("n/a (not checked)" if info is None else
                         "available" if info["available"] else f"not available: {info['reason']}")
        t.rows.append(cells)
    return t


def handlers_table(results: dict) -> Table:
    sec = _section(results, "handlers")
    t = Table(f"Per-event handler latency and throughput ({sec.get('events', 0):,} events per stream, "
              f"in-process)", ["workload", "script", "engine", "fed as", "p50 ns/event", "p99 ns/event",
                               "events/s", "same output as interp"],
              note="p50/p99: ns per event within each chunk of "
                   f"{sec.get('chunk_bytes', 0) // 1024} KiB of records, over all chunks; events/s: all "
                   "events over all timed feeding. `records`: decoded in Python and driven through the "
                   "reference stream driver; `chunk`: raw bytes into the engine's native batch entry.")
    workloads = sec.get("workloads", {})
    for row in sec.get("rows", []):
        script = workloads.get(row["workload"], {}).get("script", "")
        if not row.get("available"):
            t.rows.append([row["workload"], script, row["engine"], "", NOT_AVAILABLE, "", "", ""])
            continue
        same = "(reference)" if row["engine"] == "interp" else yes_no(row.get("agrees_with_interp"))
        t.rows.append([row["workload"], script, row["engine"], row["path"], num(row["ns_per_event_p50"]),
                       num(row["ns_per_event_p99"]), rate(row["events_per_s"]), same])
    return t


def baseline_table(results: dict) -> Table:
    sec = _section(results, "baseline")
    t = Table(f"Against the native baselines (numba, {sec.get('events', 0):,} events)",
              ["workload", "numba over columns ns/event", "numba over raw records ns/event",
               "kernels agree with interp", "interp / columns time", "jit / columns time",
               "jit / raw records time", "Python decode alone ns/event"],
              note="Two baselines answer each script's question natively. *Columns* times only the "
                   "script's logic over fields already decoded into numpy arrays (tables presized, never "
                   "grown). *Raw records* walks the same bytes the JIT's native feed reads (record "
                   "headers, the sample layout, fields at offsets, COMM records for execname): the fair "
                   "yardstick for the JIT (bench/baseline_raw.py). The last column is what decoding "
                   "records in Python costs per event: part of the interpreter's `records` path.")
    decode = _section(results, "handlers").get("decode_ns_per_event", {})
    for row in sec.get("rows", []):
        w = row["workload"]
        if not row.get("available"):
            t.rows.append([w, f"n/a ({row.get('reason', '')})", "", "", "", "", "", num(decode.get(w))])
            continue
        raw = row.get("raw") or {}
        raw_ns = raw.get("ns_per_event") if raw.get("available") else None
        interp, jit = _handler(results, w, "interp"), _handler(results, w, "jit")
        jit_ns = jit["ns_per_event_mean"] if jit and jit.get("available") else None
        agrees = [row.get("agrees_with_interp")] + ([raw.get("agrees_with_interp")] if raw_ns else [])
        t.rows.append([
            w, num(row["ns_per_event"]),
            num(raw_ns) if raw_ns is not None else f"n/a ({raw.get('reason', '')})",
            yes_no(None if None in agrees else all(agrees)),
            times(ratio(interp["ns_per_event_mean"], row["ns_per_event"])) if interp else "n/a",
            times(ratio(jit_ns, row["ns_per_event"])) if jit_ns is not None else NOT_AVAILABLE,
            times(ratio(jit_ns, raw_ns)) if jit_ns is not None and raw_ns is not None else "n/a",
            num(decode.get(w)),
        ])
    return t


def replay_table(results: dict) -> Table:
    sec = _section(results, "replay")
    events = sec.get("events", 0)
    t = Table(f"End-to-end replay of a {events:,}-event recording "
              f"({sec.get('recording_bytes', 0) / 2**20:.0f} MiB, {sec.get('script', '')})",
              ["command", "wall s (median)", "events/s", "peak RSS MiB", "summary line"],
              note=f"Summary lines agree: {yes_no(sec.get('outputs_agree'))}. `perf script` prints every "
                   "event (to /dev/null); `perf script -s` runs bench/scripts/perf_syscount.py per event."
                   + rss_note(results))
    for row in sec.get("rows", []):
        if row.get("error"):
            t.rows.append([row["name"], f"failed: {row['error']}", "", "", ""])
            continue
        wall = row.get("wall_median_s")
        t.rows.append([row["name"], num(wall), rate(events / wall if wall else None), mib(row["max_rss_kib"]),
                       row.get("first_line", "") or "(prints every event)"])
    return t


def compile_table(results: dict) -> Table:
    sec = _section(results, "compile")
    native = sec.get("native_available")
    t = Table("Compile latency per example", ["script", "probes+timers", "script -> IR ms",
                                              "IR -> native ms", "cached load ms", "total per probe ms"],
              note="script -> IR: parse, resolve, SSA and passes, median after a warm-up. IR -> native: the "
                   "JIT engine's load() with an empty object cache; cached load: load() again, the object "
                   "cached (what a second run of the same script pays).")
    for row in sec.get("rows", []):
        cached = ""
        if not native:
            to_native = NOT_AVAILABLE
        elif row.get("to_native_ms") is None:
            to_native = f"failed: {row.get('native_error', '')}"
        else:
            to_native, cached = num(row["to_native_ms"]), num(row.get("cached_load_ms"))
        t.rows.append([row["script"], str(row["probes"]), num(row["to_ir_ms"]), to_native, cached,
                       num(row["per_probe_ms"])])
    return t


def startup_table(results: dict) -> Table:
    sec = _section(results, "startup")
    commands = sec.get("commands") or {"print": f"-e '{sec.get('program', '')}'"}
    t = Table("Start-up: ktapjit run --engine E ARGS",
              ["ARGS", "engine", "cold ms (median)", "warm ms (median)", "warm goal (jit)", "runs cold/warm",
               "peak RSS MiB"],
              note="cold: empty ktapjit caches (JIT runtime and objects); warm: "
                   "the same caches filled. Python bytecode and the page cache are warm in both." + rss_note(results))
    for row in sec.get("rows", []):
        args = commands.get(row.get("command", "print"), "")
        goal = f"<= {row['goal_s'] * 1e3:.0f} ms" if row.get("goal_s") and row["engine"] == "jit" else ""
        if not row.get("available"):
            t.rows.append([args, row["engine"], NOT_AVAILABLE, "", "", "", ""])
        elif row.get("error"):
            t.rows.append([args, row["engine"], f"failed: {row['error']}", "", "", "", ""])
        else:
            ms = lambda s: num(s * 1e3) if s is not None else "n/a"
            t.rows.append([args, row["engine"], ms(row["cold_median_s"]), ms(row["warm_median_s"]), goal,
                           f"{len(row['cold_s'])}/{len(row['warm_s'])}", mib(row["max_rss_kib"])])
    return t


def live_table(results: dict) -> Table:
    sec = _section(results, "live")
    calls = sec.get("calls", 0)
    t = Table(f"Live overhead per getppid() call ({calls:,} calls, {sec.get('rounds', 0)} round(s))",
              ["mode", "ns/call (median)", "overhead ns/call", "events/s", "events counted", "lost",
               "peak RSS MiB"],
              note="ns/call is timed inside the loop; overhead is the traced median minus the untraced one; "
                   "events/s is the traced loop's rate (the rate the lost events were lost at); lost is what "
                   "the tracer reported lost, per round." + rss_note(results))
    if sec.get("skipped"):
        t.rows.append(["(all)", f"n/a (skipped: {sec['skipped']})", "", "", "", "", ""])
    for row in sec.get("rows", []):
        if row.get("error"):
            t.rows.append([row["name"], f"failed: {row['error']}", "", "", "", "", ""])
            continue
        counted = ", ".join(f"{c}/{calls}" for c in row["counted"])
        lost = ", ".join(str(n) for n in row.get("lost") or ()) if row["name"] != "untraced" else ""
        events_per_s = row.get("events_per_s") if row["name"] != "untraced" else None
        t.rows.append([row["name"], num(row["ns_per_call_median"]), num(row["overhead_ns_per_call"]),
                       rate(events_per_s) if events_per_s else "", counted, lost, mib(row["max_rss_kib"])])
    return t


def bpf_compile_table(results: dict) -> Table:
    sec = _section(results, "live").get("bpf_compile") or {}
    t = Table("BPF path: compile and load of the live program (ms, median)",
              [*sec.get("steps", []), "total", "programs"],
              note="In-process, after a warm-up, as `ktapjit run --bpf` does it before attaching; "
                   "each repetition loads into fresh maps and closes them.")
    if sec.get("error"):
        t.rows.append([f"failed: {sec['error']}", *[""] * len(sec.get("steps", [])), ""][:len(t.headers)])
    elif sec:
        t.rows.append([num(sec["median_ms"][step]) for step in sec["steps"]]
                      + [num(sec["total_median_ms"]), str(sec["programs"])])
    return t


def live_startup_table(results: dict) -> Table:
    sec = _section(results, "live")
    t = Table("Start-up of a live trace: ktapjit run --engine E -e PROGRAM -- true",
              ["engine", "wall ms (median)", "runs"],
              note="The live section's program over a workload that makes no events: compiling, opening "
                   "the perf events (bpf: lowering, loading and attaching too) and tearing down.")
    for row in sec.get("startup", []):
        if row.get("error"):
            t.rows.append([row["engine"], f"failed: {row['error']}", ""])
        else:
            t.rows.append([row["engine"], num(row["wall_median_s"] * 1e3), str(len(row["wall_s"]))])
    return t


# -- targets ----------------------------------------------------------------------------------


def _met(value: Optional[float], ok) -> str:
    return "n/a" if value is None else ("yes" if ok(value) else "no")


def _extreme(pairs: list[tuple[str, Optional[float]]], pick) -> tuple[Optional[float], str]:
    """(the min or max ratio, 'workload') over the measured pairs."""
    measured = [(v, w) for w, v in pairs if v is not None]
    if not measured:
        return None, ""
    v, w = pick(measured)
    return v, w


def targets_table(results: dict) -> Table:
    """The issue's targets as ratios measured in this run (reported, never asserted)."""
    t = Table("Targets (ratios from this run; reported, not asserted)",
              ["target", "measured (jit)", "met", "interpreter, same run"])
    jit_here, jit_cli = _available(results, "jit"), _available(results, "jit", "cli")
    na = lambda where: f"{NOT_AVAILABLE}" if not where else "n/a (not measured)"
    workloads = list(_section(results, "handlers").get("workloads", {}))

    def eps(w, e):
        row = _handler(results, w, e)
        return row["events_per_s"] if row and row.get("available") else None

    # 1. JIT >= 100x interpreter events/s (the worst workload counts).
    v, w = _extreme([(w, ratio(eps(w, "jit"), eps(w, "interp"))) for w in workloads], min)
    interp_best = _extreme([(w, eps(w, "interp")) for w in workloads], max)
    t.rows.append(["jit events/s >= 100x interpreter (worst workload)",
                   f"{times(v)} ({w})" if v is not None else na(jit_here), _met(v, lambda x: x >= 100),
                   f"interp up to {rate(interp_best[0])} events/s ({interp_best[1]})" if interp_best[0] else "n/a"])

    # 2. JIT time <= 1.5x the numba baseline (the worst workload counts).
    def per_ev(w, e):
        row = _handler(results, w, e)
        return row["ns_per_event_mean"] if row and row.get("available") else None

    # Like with like: the numba loop over the same raw records, where one exists.
    raw = {w: _raw_baseline(results, w) for w in workloads}
    v, w = _extreme([(w, ratio(per_ev(w, "jit"), raw[w])) for w in workloads if raw[w]], max)
    base = {w: (_baseline(results, w) or {}).get("ns_per_event") for w in workloads}
    cv, cw = _extreme([(w, ratio(per_ev(w, "jit"), base[w])) for w in workloads], max)
    t.rows.append(["jit time <= 1.5x numba over the same raw records (worst workload)",
                   f"{times(v)} ({w})" if v is not None else na(jit_here), _met(v, lambda x: x <= 1.5),
                   f"against numba over decoded columns: {times(cv)} ({cw})" if cv is not None else "n/a"])

    # 3. JIT >= 1e8 events/s on count-by-key.
    keyed = [w for w in ("count_int_key", "count_str_key") if w in workloads]
    v, w = _extreme([(w, eps(w, "jit")) for w in keyed], min)
    iv, iw = _extreme([(w, eps(w, "interp")) for w in keyed], min)
    t.rows.append(["jit >= 1e8 events/s on count-by-key",
                   f"{rate(v)} events/s ({w})" if v is not None else na(jit_here), _met(v, lambda x: x >= 1e8),
                   f"{rate(iv)} events/s ({iw})" if iv is not None else "n/a"])

    # 4-5. End-to-end replay against perf script -s (python) and perf script.
    for label, other, need in (("perf script -s (python)", "perf script -s (python)", 20),
                               ("perf script", "perf script", 5)):
        theirs = _replay_wall(results, other)
        v = ratio(theirs, _replay_wall(results, "ktapjit jit"))
        iv = ratio(theirs, _replay_wall(results, "ktapjit interp"))
        missing = na(jit_cli) if theirs is not None else f"n/a ({other} not measured)"
        t.rows.append([f"replay >= {need}x faster than {label}", times(v) if v is not None else missing,
                       _met(v, lambda x, n=need: x >= n), f"interp {times(iv)}" if iv is not None else "n/a"])

    # 6. Compile <= 30 ms per probe (script to native code).
    rows = _section(results, "compile").get("rows", [])
    native = [(r["script"], r["per_probe_ms"]) for r in rows if r.get("to_native_ms") is not None]
    v, w = _extreme(native, max)
    ir_only = _extreme([(r["script"], r["to_ir_ms"] / max(r["probes"], 1)) for r in rows], max)
    t.rows.append(["compile <= 30 ms per probe (worst example)",
                   f"{num(v)} ms ({w})" if v is not None else na(jit_here), _met(v, lambda x: x <= 30),
                   f"script -> IR alone up to {num(ir_only[0])} ms/probe ({ir_only[1]})" if ir_only[0] else "n/a"])

    # 7. Start-up (warm), issue 17: `ktapjit run --jit -e 'print("hi")'` <= 100 ms, and the
    # replay `make run` shows <= 150 ms.
    for command, label, goal in (("print", "ktapjit run --jit -e 'print(\"hi\")'", 0.100),
                                 ("replay", "ktapjit run --replay examples/data/demo.data examples/syscount.kp", 0.150)):
        v, iv = _startup_warm(results, "jit", command), _startup_warm(results, "interp", command)
        t.rows.append([f"{label} <= {goal * 1e3:.0f} ms (warm)",
                       f"{num(v * 1e3)} ms" if v is not None else na(jit_cli), _met(v, lambda x, g=goal: x <= g),
                       f"interp {num(iv * 1e3)} ms" if iv is not None else "n/a"])

    # 8. Live overhead no worse than perf record.
    perf = _live_overhead(results, "perf record")
    v = ratio(_live_overhead(results, "ktapjit jit"), perf)
    iv = ratio(_live_overhead(results, "ktapjit interp"), perf)
    missing = na(jit_cli) if perf is not None else "n/a (perf record not measured)"
    t.rows.append(["live overhead <= perf record's", f"{times(v)} perf's" if v is not None else missing,
                   _met(v, lambda x: x <= 1.0), f"interp {times(iv)} perf's" if iv is not None else "n/a"])

    # 9. Issue 13: --engine bpf's live overhead no worse than bpftrace's, none lost.
    theirs, ours = _live_overhead(results, "bpftrace"), _live_overhead(results, "ktapjit bpf")
    v = ratio(ours, theirs)
    lost = _live_lost(results, "ktapjit bpf")
    if v is not None:
        measured = f"bpf {times(v)} bpftrace's ({num(ours)} vs {num(theirs)} ns)"
    else:
        measured = "n/a (bpftrace not measured)" if theirs is None else "n/a (bpf not measured)"
    t.rows.append(["bpf live overhead <= bpftrace's, 0 lost", measured,
                   _met(v, lambda x: x <= 1.0 and lost == 0),
                   f"bpf lost {lost}" if lost is not None else "n/a"])
    return t


def skipped_table(results: dict) -> Table:
    t = Table("Skipped", ["section", "what", "reason"])
    for s in results.get("skipped", []):
        t.rows.append([s["section"], s["what"], s["reason"]])
    for name, sec in results.get("sections", {}).items():
        if sec.get("error"):
            t.rows.append([name, "(the whole section)", f"crashed: {sec['error']}"])
    return t


_SECTION_TABLES = (("handlers", handlers_table), ("baseline", baseline_table), ("replay", replay_table),
                   ("compile", compile_table), ("startup", startup_table), ("live", live_table),
                   ("live", bpf_compile_table), ("live", live_startup_table))


_LIVE_SUB_TABLES = ("BPF path:", "Start-up of a live trace:")


def tables(results: dict) -> list[Table]:
    out = [engines_table(results)]
    made = [make(results) for name, make in _SECTION_TABLES
            if name in results.get("sections", {}) and not results["sections"][name].get("error")]
    # The live section's sub-tables exist only in results that measured them.
    out += [t for t in made if t.rows or not t.title.startswith(_LIVE_SUB_TABLES)]
    out.append(targets_table(results))
    skipped = skipped_table(results)
    if skipped.rows:
        out.append(skipped)
    return out


def header(results: dict) -> str:
    m = results.get("meta", {})
    return (f"ktapjit benchmarks, profile '{m.get('profile')}', {m.get('started', '')}, "
            f"{m.get('duration_s', 0):.0f} s; {m.get('cpus')} CPUs, {m.get('machine')}, "
            f"Linux {m.get('kernel')}, Python {m.get('python')}")


def text(results: dict) -> str:
    return "\n\n".join([header(results), *(t.text() for t in tables(results))]) + "\n"


DOC_INTRO = """\
# Benchmarks

<!-- Generated by `python -m bench --write-docs` from bench/results/latest.json.
     Do not edit by hand: rerun the command. -->

How ktapjit's engines compare with each other, with hand-written native
code, and with the tools users would otherwise reach for. Run:

```sh
python -m bench                # everything, full size (several minutes)
python -m bench --quick        # small streams, about two minutes
python -m bench --sections handlers,baseline --quick
python -m bench --write-docs   # full run, then rewrite this page and its plot
python -m bench --render-only --write-docs   # rewrite this page from latest.json
pytest bench/ --benchmark-enable             # the pytest-benchmark suites
```

Streams are synthetic perf recordings (`ktapjit.testing.synth`, from real
tracefs formats), generated on demand into `~/.cache/ktapjit/bench` (or
`$KTAPJIT_BENCH_CACHE`) and never checked in. Every engine, the numba
baseline and `perf script` read the same bytes. The machine is a noisy
2-core VM: compare numbers within one run (the ratios below are), not
across runs. An engine that does not run here is reported as "n/a (engine
not available)", never estimated.
"""


def markdown(results: dict, plot_path: Optional[str], plot_note: str) -> str:
    parts = [DOC_INTRO.rstrip(), f"## This run\n\n{header(results)}."]
    targets = targets_table(results)
    parts.append(targets.markdown())
    parts.append("Where a target is missed or close, docs/performance-notes.md has the profile, what was "
                 "changed for it and the bottleneck that remains.")
    if plot_path:
        parts.append(f"![per-event latency by engine and script]({plot_path})")
    elif plot_note:
        parts.append(f"(No plot: {plot_note}.)")
    parts += [t.markdown() for t in tables(results) if t.title != targets.title]
    parts += measured_by_hand()
    return "\n\n".join(parts) + "\n"


MEASURED = Path(__file__).resolve().parent / "measured"


def measured_by_hand() -> list[str]:
    """The hand-measured sections (bench/measured/*.md but its README), in name order."""
    return [p.read_text().strip() for p in sorted(MEASURED.glob("*.md")) if p.name != "README.md"]
