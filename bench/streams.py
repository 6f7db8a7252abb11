"""Synthetic perf.data files for the workloads, generated on demand and cached.

A workload's stream (bench/workloads.py) is written once per (workload,
size, seed) with ``ktapjit.testing.synth.write_perf_data`` into a cache
directory outside the repository, so large recordings are never checked in:

    $KTAPJIT_BENCH_CACHE, else $XDG_CACHE_HOME/ktapjit/bench, else ~/.cache/ktapjit/bench

The file name carries a fingerprint of the workload's stream definition and
of the generator's source, so editing either makes a new file instead of
silently reusing a stale one. Files are written under a temporary name and
renamed into place, so an interrupted run leaves no half-written recording.

Two layouts are used: "merged" (records in delivery order, no rounds) for
the in-process handler benchmarks, which feed the file's chunks in order,
and "rounds" (per-CPU rounds and FINISHED_ROUND, as `perf record` writes)
for the end-to-end replay, which must read a realistic recording.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from bench.workloads import EventDraw, Workload
from ktapjit.cache_paths import cache_root

CPUS = 2  # the development VM's; the stream's per-CPU ids and rounds follow it
CHUNK_BYTES = 256 << 10  # DESIGN.md: chunks of >= ~2,500 records amortise a native call

# Task names of the stream's pool: a realistic mix, and "systemd" is one
# that filter_heavy.kp's string comparison rejects.
COMMS = (b"bash", b"sshd", b"nginx", b"postgres", b"python3", b"node", b"java", b"systemd",
         b"kworker/0:1", b"cc1", b"make", b"redis-server", b"cron", b"rsyslogd", b"containerd",
         b"sleep", b"grep", b"git", b"vim", b"chrome")

_HDR = struct.Struct("<IHH")
_PERF_RECORD_SAMPLE = 9


def cache_dir() -> Path:
    """Where generated recordings live (created on demand)."""
    base = os.environ.get("KTAPJIT_BENCH_CACHE")
    path = Path(base) if base else cache_root() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _generator_fingerprint() -> str:
    """Hash of the synthetic generator's source: its output depends on it."""
    from ktapjit.testing import synth

    return hashlib.sha256(Path(synth.__file__).read_bytes()).hexdigest()[:10]


def stream_fingerprint(w: Workload) -> str:
    """What the bytes of a workload's stream depend on, besides size and seed."""
    text = repr((w.events, w.tasks, w.churn, CPUS, COMMS, _generator_fingerprint()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def task_pool(size: int):
    """`size` single-threaded tasks with realistic comms and pids from 1000."""
    from ktapjit.testing.synth import Task

    return [Task(1000 + 7 * i, 1000 + 7 * i, COMMS[i % len(COMMS)]) for i in range(size)]


def _field_gen(kind: str, values, weights, tasks):
    from ktapjit.testing.synth import choice

    if kind == "choice":
        return choice(list(values), list(weights) if weights else None)
    if kind == "task_tid":  # e.g. sched_wakeup's pid: another task of the pool
        return choice([t.tid for t in tasks])
    raise ValueError(f"unknown field draw '{kind}'")


def _spec(draw: EventDraw, tasks):
    from ktapjit.testing.synth import EventSpec

    fields = {name: _field_gen(kind, values, weights, tasks) for name, kind, values, weights in draw.fields}
    system, event = draw.event
    return EventSpec(system, event, None, fields or None, draw.weight)


def synthetic_stream(w: Workload, n_events: int, seed: int = 1):
    """The workload's SyntheticStream: same arguments, same bytes."""
    from ktapjit.testing.synth import SyntheticStream

    tasks = task_pool(w.tasks)
    return SyntheticStream([_spec(d, tasks) for d in w.events], n_events=n_events, cpus=CPUS,
                           tasks=tasks, seed=seed, churn=w.churn)


def recording(w: Workload, n_events: int, seed: int = 1, layout: str = "merged",
              directory: Path | None = None) -> Path:
    """The cached perf.data of the workload's stream, written if missing."""
    from ktapjit.testing.synth import write_perf_data

    folder = directory or cache_dir()
    path = folder / f"{w.name}-{n_events}-s{seed}-{layout}-{stream_fingerprint(w)}.data"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            write_perf_data(str(tmp), synthetic_stream(w, n_events, seed), layout=layout)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


@dataclass
class Chunk:
    """A run of whole records from a recording's data section."""

    offset: int  # file offset of its first byte (decode errors name file offsets)
    data: bytes
    samples: int  # PERF_RECORD_SAMPLEs in it: the events an engine handles


def count_samples(buf) -> int:
    """PERF_RECORD_SAMPLE records in a buffer of whole records (headers only)."""
    n, pos, end = 0, 0, len(buf)
    unpack = _HDR.unpack_from
    while pos < end:
        rtype, _misc, size = unpack(buf, pos)
        n += rtype == _PERF_RECORD_SAMPLE
        pos += size
    return n


def load_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """The recording's data section as in-memory chunks, copied out of the
    file mapping so timing never includes page faults on the file."""
    from ktapjit.events.records.perfdata import read_perf_data

    with read_perf_data(str(path)) as data:
        return [Chunk(off, bytes(view), count_samples(view)) for off, view in data.chunks(chunk_bytes)]
