"""How big each section runs: full (the default), --quick, and --smoke.

Sizes are chosen for the 2-core development VM: --quick finishes in about
two minutes with small streams; --smoke checks that every section works in
seconds (bench/test_bench_cli_smoke.py) and its numbers mean little; the
full run takes longer and gives the numbers docs/benchmarks.md shows.
Ratios are only compared within one run, never across runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Profile:
    name: str
    handler_events: int  # samples per workload stream, in-process
    handler_min_s: float  # repeat fresh runs until this much feeding was timed
    handler_max_reps: int
    baseline_min_s: float
    replay_events: int  # the end-to-end recording (>= 1M in full)
    replay_rounds: int
    compile_reps: int
    startup_cold: int
    startup_warm: int
    live_calls: int  # getppid() calls per loop run
    live_rounds: int
    workloads: Optional[tuple[str, ...]] = None  # None: all of bench/workloads.py
    examples: Optional[tuple[str, ...]] = None  # compile section; None: every examples/*.kp


PROFILES = {
    "full": Profile("full", handler_events=1_000_000, handler_min_s=2.0, handler_max_reps=50,
                    baseline_min_s=1.0, replay_events=1_000_000, replay_rounds=3, compile_reps=10,
                    startup_cold=3, startup_warm=10, live_calls=1_000_000, live_rounds=3),
    "quick": Profile("quick", handler_events=50_000, handler_min_s=0.3, handler_max_reps=20,
                     baseline_min_s=0.2, replay_events=200_000, replay_rounds=1, compile_reps=3,
                     startup_cold=2, startup_warm=3, live_calls=200_000, live_rounds=1),
    "smoke": Profile("smoke", handler_events=3_000, handler_min_s=0.0, handler_max_reps=1,
                     baseline_min_s=0.0, replay_events=3_000, replay_rounds=1, compile_reps=1,
                     startup_cold=1, startup_warm=1, live_calls=10_000, live_rounds=1,
                     workloads=("count_int_key", "schedtime"), examples=("hello.kp", "syslat.kp")),
}
