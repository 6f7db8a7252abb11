"""Random synthetic event streams for the differential fuzzer.

A ``StreamPlan`` is everything needed to rebuild one recording: the
``SyntheticStream`` options and seed (ktapjit/testing/synth.py). Plans are
small and printable, so a failing case names its stream in one header line
(``# stream: seed=7 events=40 ...``) instead of carrying a binary file; the
same line is the stream header of a regression file (see harness.py).

Every recording carries *all* of ``TRACEPOINTS``, even with zero events: a
probe on a tracepoint that a recording lacks is a compile (binding) error,
and generated scripts must always compile. The weights only change how often
each one fires.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from ktapjit.testing.synth import EventSpec, SyntheticStream, write_perf_data


@dataclass(frozen=True)
class Tracepoint:
    """A tracepoint the recordings carry, with the fields a script may read.

    Field lists come from the captured formats in tests/data/formats and leave
    out the ``common_*`` fields every tracepoint has (``COMMON_FIELDS``).
    """

    system: str
    event: str
    int_fields: tuple[str, ...]
    str_fields: tuple[str, ...] = ()
    table_fields: tuple[str, ...] = ()  # array fields: tables keyed from 0
    # `const char *` fields: in a script the integer address; a filter can
    # test them neither as numbers (the kernel calls them strings) nor as
    # strings (ktapjit refuses: the kernel would read memory a recording
    # lacks), so generated filters leave them out.
    pointers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.system}:{self.event}"

    def fields(self) -> tuple[str, ...]:
        return COMMON_FIELDS + self.int_fields + self.str_fields + self.table_fields

    def filter_int_fields(self) -> set[str]:
        return set(self.int_fields) - set(self.pointers)

    def filter_str_fields(self) -> set[str]:
        return set(self.str_fields)


COMMON_FIELDS = ("common_type", "common_flags", "common_preempt_count", "common_pid")
# Unsigned integer fields (signed:0 in their formats): a filter comparing one
# with a negative number is a compile error.
UNSIGNED_FIELDS = frozenset({"common_type", "common_flags", "common_preempt_count",
                             "dfd", "flags", "mode"})

OPENAT = Tracepoint("syscalls", "sys_enter_openat", ("__syscall_nr", "dfd", "filename", "flags", "mode"),
                    pointers=("filename",))
EXIT_READ = Tracepoint("syscalls", "sys_exit_read", ("__syscall_nr", "ret"))
SWITCH = Tracepoint("sched", "sched_switch",
                    ("prev_pid", "prev_prio", "prev_state", "next_pid", "next_prio"),
                    ("prev_comm", "next_comm"))
# A __data_loc string (filename), unlike openat's filename, which is a pointer.
EXEC = Tracepoint("sched", "sched_process_exec", ("pid", "old_pid"), ("filename",))
# `args` is an unsigned long[6]: a table keyed 0..5 in a script.
RAW_ENTER = Tracepoint("raw_syscalls", "sys_enter", ("id",), (), ("args",))

TRACEPOINTS = (OPENAT, EXIT_READ, SWITCH, EXEC, RAW_ENTER)


@dataclass(frozen=True)
class StreamPlan:
    """The options of one synthetic recording; equal plans give equal bytes."""

    seed: int = 0
    events: int = 50
    cpus: int = 2
    tasks: int = 4
    gap_us: int = 100      # mean gap between samples: ~ms spans, so tick-1ms fires
    churn: int = 0         # per mille of samples after which a task exits and one forks
    weights: tuple[int, ...] = (1,) * len(TRACEPOINTS)

    def header(self) -> str:
        """The ``# stream: ...`` line that names this plan in a .kp file."""
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            fields.append(f"{f.name}={text}")
        return "# stream: " + " ".join(fields)

    @classmethod
    def parse(cls, text: str) -> "StreamPlan":
        """The inverse of ``header`` (without the ``# stream:`` prefix); fields
        left out keep their defaults, so hand-written headers can be short."""
        values: dict[str, object] = {}
        for item in text.split():
            key, _, raw = item.partition("=")
            if key == "weights":
                values[key] = tuple(int(w) for w in raw.split(","))
            else:
                values[key] = int(raw)
        return cls(**values)

    def synthetic(self) -> SyntheticStream:
        specs = [EventSpec(tp.system, tp.event, weight=w) for tp, w in zip(TRACEPOINTS, self.weights)]
        return SyntheticStream(specs, n_events=self.events, cpus=self.cpus, tasks=self.tasks,
                               seed=self.seed, gap_ns=self.gap_us * 1000.0, churn=self.churn / 1000)

    def write(self, path: Path) -> Path:
        write_perf_data(path, self.synthetic())
        return path


# A fixed, varied set of plans for the default suite's small budgets: each
# recording is written once per test module and then reused (building a
# SyntheticStream costs ~0.13 s, mostly its 64K-entry event-weight table,
# more than running a typical script). The soak draws from stream_plans().
STOCK_PLANS = (
    StreamPlan(seed=1, events=0),                                   # top level and trace_end only
    StreamPlan(seed=2, events=1, cpus=1, tasks=1),
    StreamPlan(seed=3, events=12, cpus=1, tasks=2, gap_us=400),      # a few ticks between events
    StreamPlan(seed=4, events=40, cpus=2, tasks=3, churn=100),       # tasks exit, fork, exec
    StreamPlan(seed=5, events=60, cpus=4, tasks=8, gap_us=1),        # ties with timer instants
    StreamPlan(seed=6, events=120, cpus=2, tasks=5, weights=(5, 1, 3, 1, 2)),
    StreamPlan(seed=7, events=200, cpus=3, tasks=6, gap_us=50, churn=20, weights=(1, 4, 2, 5, 1)),
)


def stock_plans() -> st.SearchStrategy[StreamPlan]:
    return st.sampled_from(STOCK_PLANS)


def stream_plans(max_events: int = 200) -> st.SearchStrategy[StreamPlan]:
    """Small recordings: 0..max_events samples over all ``TRACEPOINTS``.

    Zero events is a case of its own (only top level, timers never fire,
    trace_end at the stream start), so it is drawn often.
    """
    return st.builds(
        StreamPlan,
        seed=st.integers(0, 2**32 - 1),
        events=st.one_of(st.just(0), st.integers(1, max_events)),
        cpus=st.integers(1, 4),
        tasks=st.integers(1, 8),
        gap_us=st.sampled_from([1, 50, 100, 400]),
        churn=st.sampled_from([0, 0, 20, 100]),
        weights=st.tuples(*[st.integers(1, 5) for _ in TRACEPOINTS]),
    )
