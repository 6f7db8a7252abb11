"""A recording decoded once into numpy columns, for the native baseline.

The numba baseline times only the script's logic over fields already in
memory, as a hand-written native tool would after its decoder. This module
is that decoder's output: one row per PERF_RECORD_SAMPLE of the events a
workload reads, in stream order, with

- ``event``: the index of the sample's tracepoint in ``Columns.events``;
- ``time``, ``cpu``, ``tid``, ``pid``: from the sample;
- ``comm``: the id of the sample's `execname`, tracked from COMM and FORK
  records exactly as ``tracing.dispatch.StreamDriver`` does (pid 0 is
  "swapper", an unknown tid ":TID");
- ``f_NAME``: each tracepoint field the workload asks for (0 for samples
  of events without it); char arrays become ids in ``Columns.strings``.

Strings (comms and char-array fields) share one id space, so a field like
``prev_comm`` and ``comm`` compare by id. Decoding is Python and slow
(microseconds per record), so the result is cached as ``.npz`` beside the
recording.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Columns:
    events: list[str]  # "system:event", indexed by the `event` column
    strings: list[bytes]  # indexed by comm and char-array field ids
    arrays: dict[str, np.ndarray]
    end_ns: int  # the stream's last time: what trace_end's gettimeofday_ns() reads

    @property
    def n(self) -> int:
        return len(self.arrays["event"])

    def string_id(self, text: bytes) -> int:
        """The id of `text`, or -1 when the stream never has it."""
        try:
            return self.strings.index(text)
        except ValueError:
            return -1


def _field_reader(fmt, name: str, intern):
    """A function raw -> int for one field: integers as the format says,
    char arrays (comms) as interned string ids."""
    f = fmt.field(name)
    if f is None:
        raise KeyError(f"{fmt.system}:{fmt.name} has no field '{name}'")
    lo, hi = f.offset, f.offset + f.size
    if f.is_string and not f.dynamic:
        return lambda raw: intern(raw[lo:hi].split(b"\0", 1)[0])
    if f.is_array or f.dynamic:
        raise ValueError(f"field '{name}' is an array: the baseline reads scalars and char arrays only")
    signed = f.signed
    return lambda raw: int.from_bytes(raw[lo:hi], "little", signed=signed)


class _Decoder:
    """The walk over the records: comm tracking, field reading, row building."""

    def __init__(self, data, wanted: dict):
        self.strings: list[bytes] = []
        self._ids: dict[bytes, int] = {}
        self.comms: dict[int, bytes] = {0: b"swapper"}
        self.events = sorted(wanted)
        index = {name: i for i, name in enumerate(self.events)}
        self.fields = sorted({f for names in wanted.values() for f in names})
        # sample id -> (event index, [(column, reader)])
        self.by_id: dict[int, tuple[int, list]] = {}
        schemas = data.schemas()
        for ev in data.attrs:
            fmt_info = data.format_of(ev)
            if fmt_info is None:
                continue
            name = f"{fmt_info[0]}:{fmt_info[1]}"
            if name not in index:
                continue
            fmt = schemas[(fmt_info[0], fmt_info[1])]
            readers = [(f"f_{f}", _field_reader(fmt, f, self.intern)) for f in wanted[name]]
            for sid in ev.ids:
                self.by_id[sid] = (index[name], readers)
        self.rows = {k: [] for k in ("event", "time", "cpu", "tid", "pid", "comm", *(f"f_{f}" for f in self.fields))}
        self.end_ns = 0

    def intern(self, text: bytes) -> int:
        sid = self._ids.get(text)
        if sid is None:
            sid = self._ids[text] = len(self.strings)
            self.strings.append(text)
        return sid

    def record(self, rec) -> None:
        from ktapjit.events.records.decode import Comm, Fork, Sample, has_time

        time = getattr(rec, "time", None)
        if has_time(time) and time > self.end_ns:
            self.end_ns = time
        if isinstance(rec, Comm):
            self.comms[rec.tid] = rec.comm
        elif isinstance(rec, Fork):
            if rec.ptid in self.comms:
                self.comms[rec.tid] = self.comms[rec.ptid]
        elif isinstance(rec, Sample):
            self.sample(rec)

    def sample(self, s) -> None:
        hit = self.by_id.get(s.id)
        if hit is None:
            return
        event, readers = hit
        rows = self.rows
        comm = self.comms.get(s.tid)
        if comm is None:
            comm = b":%d" % (s.tid or 0)
        for key, value in (("event", event), ("time", s.time), ("cpu", s.cpu), ("tid", s.tid),
                           ("pid", s.pid), ("comm", self.intern(comm))):
            rows[key].append(value)
        got = {col: read(s.raw) for col, read in readers}
        for f in self.fields:
            rows[f"f_{f}"].append(got.get(f"f_{f}", 0))


def decode_columns(path: Path, wanted: dict) -> Columns:
    """Decode the recording's samples of the `wanted` events ({"system:event":
    (field, ...)}) into columns; cached beside the recording."""
    key = "-".join(f"{e}={'+'.join(f)}" for e, f in sorted(wanted.items())).replace(":", "_")
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]  # stable across processes, unlike hash()
    cache = path.with_name(f"{path.stem}.cols-{digest}.npz")
    meta = {"key": key}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            info = json.loads(bytes(z["__meta__"]).decode())
            if info.get("key") == key:
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
                return Columns(info["events"], [s.encode("latin-1") for s in info["strings"]], arrays,
                               info["end_ns"])
    columns = _decode(path, wanted)
    meta.update(events=columns.events, strings=[s.decode("latin-1") for s in columns.strings],
                end_ns=columns.end_ns)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **columns.arrays)
    tmp.replace(cache)
    return columns


def _decode(path: Path, wanted: dict) -> Columns:
    from ktapjit.events.records.merge import order_perf_rounds
    from ktapjit.events.records.perfdata import read_perf_data

    with read_perf_data(str(path)) as data:
        decoder = _Decoder(data, wanted)
        for rec in order_perf_rounds(data.records()):  # the order --replay delivers
            decoder.record(rec)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in decoder.rows.items()}
    return Columns(decoder.events, decoder.strings, arrays, decoder.end_ns)
