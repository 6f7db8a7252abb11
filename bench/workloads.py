"""The benchmark workloads: a realistic script and the event stream it runs over.

Each workload pairs a script (from examples/, or bench/scripts/ where the
examples lack one) with the synthetic tracepoints it consumes and how their
fields are drawn. The same stream feeds every engine, the numba baseline and
`perf script`, so the numbers compare like with like.

``columns`` names the tracepoint fields the numba baseline needs, decoded
once into numpy arrays (bench/columns.py); ``baseline`` names its kernel in
bench/baseline_numba.py, or is None where no native equivalent is written
(scripts whose work is printf formatting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCRIPTS = Path(__file__).resolve().parent / "scripts"

SYS_ENTER = ("raw_syscalls", "sys_enter")
SYS_EXIT = ("raw_syscalls", "sys_exit")
SCHED_SWITCH = ("sched", "sched_switch")
SCHED_WAKEUP = ("sched", "sched_wakeup")
SCHED_EXEC = ("sched", "sched_process_exec")

# Return values of raw_syscalls:sys_exit: mostly successes, ENOENT (-2) and
# EAGAIN (-11) as the common failures, and a thin tail of other errors, so a
# filter on `ret < 0 && ret != -2 ...` passes about 2% of the events.
RETS = (0, 1, 8, 64, 512, 4096, -2, -11, -13, -4, -22)
RET_WEIGHTS = (20, 10, 10, 10, 10, 10, 8, 4, 0.6, 0.6, 0.6)

# sched_switch's prev_state: preempted (0, "R"), sleeping (S=1, D=2), and
# rarely exited (0x10 "X"): schedtime.kp takes a different branch for each.
PREV_STATES = (0, 1, 2, 0x10)
PREV_STATE_WEIGHTS = (40, 45, 10, 1)

EXEC_FILES = ("/usr/bin/ls", "/usr/bin/cat", "/usr/bin/git", "/bin/sh", "/usr/local/bin/tool")


@dataclass(frozen=True)
class EventDraw:
    """One tracepoint of a workload's stream: its relative weight and the
    fields drawn explicitly, as (name, kind, values, weights) where kind is
    "choice" (values/weights) or "task_tid" (a tid of the task pool)."""

    event: tuple[str, str]
    weight: float = 1.0
    fields: tuple = ()


@dataclass(frozen=True)
class Workload:
    name: str
    script: Path
    what: str  # one line for the tables
    events: tuple[EventDraw, ...]
    columns: dict = field(default_factory=dict)  # "system:event" -> fields the baseline reads
    baseline: Optional[str] = None  # kernel name in baseline_numba.KERNELS
    tasks: int = 48  # size of the stream's task pool
    churn: float = 0.0  # per-sample probability of a fork+exec (new comms)

    @property
    def script_label(self) -> str:
        """The script's path relative to the repository, as the tables show it."""
        return str(self.script.relative_to(REPO))


def _ret_draw() -> tuple:
    return (("ret", "choice", RETS, RET_WEIGHTS),)


WORKLOADS: tuple[Workload, ...] = (
    Workload("syscount", EXAMPLES / "syscount.kp", "syscall counts by name (string-keyed via a number->name table)",
             (EventDraw(SYS_ENTER),), {"raw_syscalls:sys_enter": ("id",)}, baseline="syscount"),
    Workload("syscount_by_process", EXAMPLES / "syscount_by_process.kp",
             "syscall counts by execname and by 'comm pid' (string keys, concatenation)",
             (EventDraw(SYS_ENTER),), {"raw_syscalls:sys_enter": ()}, baseline="syscount_by_process",
             tasks=96, churn=0.0005),
    Workload("schedtime", EXAMPLES / "schedtime.kp", "sched_switch run-time and sleep accounting (int keys)",
             (EventDraw(SCHED_SWITCH, 4.0, (("prev_state", "choice", PREV_STATES, PREV_STATE_WEIGHTS),)),
              EventDraw(SCHED_WAKEUP, 1.0, (("pid", "task_tid", (), ()),))),
             {"sched:sched_switch": ("prev_pid", "next_pid", "prev_state", "prev_comm", "next_comm"),
              "sched:sched_wakeup": ("pid",)}, baseline="schedtime"),
    Workload("syslat", EXAMPLES / "syslat.kp", "syscall latency log2 histogram (enter/exit paired by tid)",
             (EventDraw(SYS_ENTER), EventDraw(SYS_EXIT, 1.0, _ret_draw())),
             {"raw_syscalls:sys_enter": (), "raw_syscalls:sys_exit": ("id",)}, baseline="syslat"),
    Workload("filtered", EXAMPLES / "filtered.kp", "filters (glob, int &&) and a printf per match",
             (EventDraw(SYS_EXIT, 1.0, _ret_draw()),
              EventDraw(SCHED_EXEC, 0.01, (("filename", "choice", EXEC_FILES, (1, 1, 1, 1, 1)),))), {}),
    Workload("filter_heavy", SCRIPTS / "filter_heavy.kp", "a filter rejecting ~98% of events, int-keyed count",
             (EventDraw(SYS_EXIT, 1.0, _ret_draw()),), {"raw_syscalls:sys_exit": ("id", "ret")},
             baseline="filter_heavy"),
    Workload("count_int_key", SCRIPTS / "count_int_key.kp", "count-by-key, integer key (args.id)",
             (EventDraw(SYS_ENTER),), {"raw_syscalls:sys_enter": ("id",)}, baseline="count_int_key"),
    Workload("count_str_key", SCRIPTS / "count_str_key.kp", "count-by-key, string key (execname)",
             (EventDraw(SYS_ENTER),), {"raw_syscalls:sys_enter": ()}, baseline="count_str_key"),
    Workload("printf_heavy", SCRIPTS / "printf_heavy.kp", "a formatted output line per event",
             (EventDraw(SYS_ENTER),), {}),
)

BY_NAME = {w.name: w for w in WORKLOADS}


def workload(name: str) -> Workload:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown workload '{name}'; known: {', '.join(BY_NAME)}") from None
