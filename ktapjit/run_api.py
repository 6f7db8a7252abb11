"""The surface every engine offers, and the values that cross it.

An engine loads a compiled Module and returns a Run. The caller drives the
run: `start()` executes the top-level statements; the stream driver
(tracing/dispatch.py) then calls `run_probe` per matching sample,
`run_profile` per sample of a `profile-N` timer's cpu-clock event and
`run_timer` per due `tick-N` timer; `finish()` runs trace_end and returns the Result.
Output is bytes, handed to `out` as the engine produces it, so the
interpreter and the JIT can be compared byte for byte; with
`RunConfig.structured_output` (-f json) it is a list of semantics.output
Items instead, one per output builtin call.

A run whose engine executes records without Python per record says so
(`Run.feeds_natively`, the JIT): the session then describes the stream to
it as a FeedPlan (tracing/feed_plan.py builds it from the StreamPlan and
the stream's attrs) and `Run.native_feed(plan)` answers with a NativeFeed,
or None when the engine cannot run that session natively. The driver then
hands the run whole chunks (`feed_chunk`: a replay's offsets into its
buffer; `feed_release`: what the feed's own live merger releases after
`NativeFeed.push`) and reads the feed's state. The per-event surface stays
the reference the native path is tested against.

A run that puts probes in the kernel (the BPF engine) takes one more
step: a live session calls `Run.attach_kernel(LiveEvents)` once its perf
events are open and before it enables them, `Run.gate_kernel(True)` right
after enabling them and `gate_kernel(False)` right before disabling them,
`Run.poll_kernel()` between rounds, and `Run.detach_kernel()` once the
gate is off or else the events are closed, on every path (before
trace_end). Other engines do nothing
there (run_lifecycle.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Union

from ktapjit.diag import RuntimeFault
# A run's config carries the language's limits; they live with the language.
from ktapjit.semantics.limits import (  # noqa: F401 (names of the run surface)
    DEFAULT_MAX_DEPTH, DEFAULT_MAX_LOOP, DEFAULT_MAX_STRING, DEFAULT_MAX_TABLE, Limits,
)


def monotonic_ns() -> int:
    """Now, in the clock live events are stamped with (CLOCK_MONOTONIC)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class KernelAddresses:
    """Kernel symbol name -> address (an int64), what ipof("NAME") reports: read from a
    kallsyms text (the running kernel's /proc/kallsyms by default) when
    first asked, since KASLR moves every address at each boot.

    A name kallsyms lists several times (static functions of several files,
    a module's symbol named as one of the kernel's) gives its first line:
    the kernel's own symbols come before the modules'. When every address
    reads as 0 (kernel.kptr_restrict, or not root), no address is known.
    """

    def __init__(self, path: Optional[str] = "/proc/kallsyms", text: Optional[bytes] = None):
        self._path = path  # None with no text: a kernel whose addresses are not known
        self._text = text
        self._found: dict[bytes, Optional[int]] = {}

    @classmethod
    def unknown(cls) -> "KernelAddresses":
        return cls(path=None)

    def addresses(self, names) -> dict[bytes, Optional[int]]:
        """Each of `names` (bytes) -> its address, or None."""
        wanted = {n for n in names if n not in self._found}
        if wanted:
            self._found.update(self._scan(wanted))
        return {n: self._found[n] for n in names}

    def _scan(self, wanted: set) -> dict[bytes, Optional[int]]:
        found: dict[bytes, Optional[int]] = dict.fromkeys(wanted)
        text = self._text
        if text is None and self._path is not None:
            try:
                with open(self._path, "rb") as f:
                    text = f.read()
            except OSError:
                text = None
        seen, any_nonzero = set(), False
        for line in (text or b"").splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            try:
                address = int(parts[0], 16)
            except ValueError:
                continue
            any_nonzero = any_nonzero or address != 0
            name = parts[2]
            if name in wanted and name not in seen:
                seen.add(name)
                # An int64, as event values hold pointers: its two's complement.
                found[name] = address - (1 << 64) if address >= 1 << 63 else address
        return found if any_nonzero else dict.fromkeys(wanted)


@dataclass(frozen=True)
class Host:
    """What num_cpus(), arch(), kernel_v() and ipof() report: the traced
    machine, which on a replay is the one the recording was made on."""

    num_cpus: int
    arch: bytes
    kernel_release: bytes
    kernel_symbols: KernelAddresses = field(default_factory=KernelAddresses, compare=False)

    @classmethod
    def local(cls) -> "Host":
        # os.uname() is what platform.machine() and platform.release() read on
        # Linux; the platform module costs ~3 ms of start-up to import.
        uname = os.uname()
        return cls(os.cpu_count() or 1, uname.machine.encode(), uname.release.encode())


class Aborted(BaseException):
    """A second SIGINT/SIGTERM while tracing: ktapjit ends at once, without
    trace_end (its clean-up still runs). A BaseException, like
    KeyboardInterrupt, so that no handler of errors catches it on the way."""


@dataclass(frozen=True)
class RunConfig:
    """What an engine run is given besides its module."""

    limits: Limits
    script_args: tuple[str, ...]  # arg[0] is the script path as given
    start_time_ns: int  # stream time before the first event (LANGUAGE.md: event time)
    host: Host = field(default_factory=Host.local)
    # False: `out` takes bytes. True (-f json): `out` takes a list of
    # semantics.output Items, one per output builtin call, in order.
    structured_output: bool = False


@dataclass
class Result:
    """How a run ended. status: 0 normal or exit(), 1 runtime error.
    `errors` holds every runtime error in order; `error` is the first."""

    status: int
    error: Optional[RuntimeFault] = None
    exit_called: bool = False
    errors: list[RuntimeFault] = field(default_factory=list)


class EventContext(Protocol):
    """The current event as probe bodies see it (set by the engine per event).

    ``time_ns`` is the event's timestamp (what gettimeofday_* reads). The
    methods return script values (None, int, bytes, Table).
    """

    time_ns: int

    def value(self, name: str) -> object:
        """An event value: pid tid cpu uid execname probename argstr arg0..arg9."""

    def field(self, name: str) -> object:
        """``args.NAME``; None when the event has no such field."""

    def stack(self, request) -> object:
        """``stack()`` or ``ustack()``: a semantics.stack_request.StackRequest."""

    def memory(self, read: str) -> object:
        """What the kernel read for ``user_string``, ``kernel_string`` or
        ``in_iowait`` at event time (a semantics.memory_read.MemoryRead's
        aux); None when the stream did not carry it."""


# -- the feed plan: a session's records described to a native feed, as plain values


@dataclass(frozen=True)
class SampleLayout:
    """How the samples of one perf_event_attr are laid out."""

    sample_type: int  # PERF_SAMPLE_* bits
    sample_id_all: bool  # non-sample records carry a sample_id trailer


@dataclass(frozen=True)
class IdRoute:
    """One sample id: the layout its records are read with and the probe
    group its samples run (-1: none)."""

    sample_id: int
    layout: int  # index into FeedPlan.layouts
    group: int  # index into FeedPlan.groups, or -1


@dataclass(frozen=True)
class TaskValue:
    """A value every sample has: pid, tid, cpu, execname; uid reads nil."""

    name: str


@dataclass(frozen=True)
class ConstValue:
    """A value fixed for the probe (its probename)."""

    value: bytes


@dataclass(frozen=True)
class SiteName:
    """A site event's probename: the name its u32 site index at `offset`
    (in RAW) picks from `names`."""

    offset: int
    names: tuple[str, ...]


@dataclass(frozen=True)
class NilValue:
    """Nil: an argN past the event's fields, a profile sample's format values."""


@dataclass(frozen=True)
class FieldValue:
    """A format field read from RAW (events/schema.py's reading of it).

    shape: "int" (a scalar of size 1, 2, 4 or 8), "bytes" (another scalar),
    "chars" (a char array: a string), "array" (a fixed array: a table of
    `elem_size` integers, or with elem_size 0 of its bytes), "string" (a
    __data_loc/__rel_loc string), "dyn_array" (a __data_loc/__rel_loc array;
    elem_size 0: its bytes), "missing" (no such field: nil)."""

    shape: str
    offset: int = 0
    size: int = 0
    elem_size: int = 0
    signed: bool = False
    relative: bool = False  # __rel_loc: the offset counts from the end of the field


@dataclass(frozen=True)
class ArgstrValue:
    """argstr: the event's print fmt compiled to the runtime's argstr
    bytecode (events/printfmt/bytecode.py) when it renders plainly (no
    symbols, no printk strings, no [FAILED TO PARSE]); else no code, and
    `refusal` says why the native feed cannot render it."""

    code: Optional[tuple[int, ...]]  # WIDTH words an instruction
    blob: bytes = b""  # the text the program names
    label: str = ""  # the event, for messages
    refusal: str = ""


SlotSource = Union[TaskValue, ConstValue, SiteName, NilValue, FieldValue, ArgstrValue]


@dataclass(frozen=True)
class DynamicField:
    """A __data_loc/__rel_loc field, whose reference a record must keep
    within the record (the corrupt-record checks of events/schema.py)."""

    name: str
    offset: int
    size: int
    relative: bool


@dataclass(frozen=True)
class FilterProgram:
    """A probe filter compiled for its event (kernel_filter/native.py): six
    int64 words per operation, and the pattern bytes its globs read."""

    code: tuple[int, ...]
    patterns: bytes


@dataclass(frozen=True)
class FeedProbe:
    """What one bound event of a sample id runs: the entry (`probe` N of the
    Module, or `timer` N for a profile-N sample), and for each event value
    and field its body may read, where the value comes from."""

    entry: str  # "probe" or "timer"
    index: int
    name: str  # the event's qualified name ("ktapjit:profile-10ms" for a profile timer)
    fixed_size: int  # bytes of RAW every fixed field needs (0: no format)
    corrupt_prefix: bytes  # the start of a corrupt record's error message
    dynamic_fields: tuple[DynamicField, ...]
    filter: Optional[FilterProgram]  # None: unfiltered
    values: tuple[tuple[str, SlotSource], ...]  # every event value: pid ... argstr arg0..arg9
    fields: tuple[tuple[str, FieldValue], ...]  # args.NAME, for each field of the format
    unknown_field: SlotSource  # what args.NAME of a name not in `fields` reads


@dataclass(frozen=True)
class FeedPlan:
    """A session's stream, described to a native feed: how records find
    their layout (tracing/feed_plan.py, from decode.AttrTable.routing()),
    and which probes each sample id runs (from the StreamPlan), grouped so
    that ids with the same probes share one group."""

    start_ns: int
    layouts: tuple[SampleLayout, ...]
    single_layout: bool  # records are read without looking at their id
    id_pos: int  # u64 words after a sample's header to its id (when not single)
    is_pos: Optional[int]  # u64 words from the end of a sample_id trailer to its id
    ids: tuple[IdRoute, ...]
    groups: tuple[tuple[FeedProbe, ...], ...]
    idless_group: int  # the group of records without a sample id (-1: none)


class NativeFeed(Protocol):
    """The state of a run's native feed, which the stream driver reads
    between chunks (tracing/dispatch.py)."""

    more: bool  # the last feed_release used its budget: more of its round is due

    @property
    def last_time(self) -> int:
        """The stream time of the last record run."""

    @property
    def lost(self) -> int:
        """Events the stream said were lost (PERF_RECORD_LOST and LOST_SAMPLES)."""

    @property
    def stopped_at(self) -> int:
        """Where in its chunk the last run stopped (an index into its offsets)."""

    @property
    def samples(self) -> int:
        """The samples that ran probes."""

    def stream_error(self) -> Optional[tuple[str, int]]:
        """(message, byte offset) when the last chunk stopped on a broken stream."""

    def pin(self, buffer) -> Any:
        """`buffer` made passable to feed_chunk and order() without a copy;
        the caller calls .release() on it after."""

    def order(self, data) -> Optional[Any]:
        """The offsets (an array("Q")) of `data`'s records in the order perf
        delivers them, or None when the records must come from the Python decoder."""

    def push(self, cpu: int, data: bytes) -> bool:
        """Queue one CPU's drained bytes in the live merger; False when a
        record is one the Python decoder would reject (nothing queued)."""

    def discard(self) -> int:
        """Drop what the live merger holds; the number of samples dropped."""


@dataclass(frozen=True)
class OpenedEvent:
    """One perf event a live session opened, not yet enabled: what its
    samples run (tracing.plan BoundEvents, or one BoundProfile) and its fds
    (one per CPU, or one for a traced task)."""

    members: tuple
    fds: tuple[int, ...]
    tracepoint: bool  # a tracepoint of the kernel's (not a dynamic probe, not a cpu-clock)


@dataclass(frozen=True)
class LiveEvents:
    """A live session's perf events, for Run.attach_kernel."""

    opened: tuple[OpenedEvent, ...]
    pid: Optional[int]  # the traced process (-p, -- CMD); None: system-wide
    recording: bool  # the stream is also written to a perf.data file: every sample must reach the ring


class Run(Protocol):
    errors: list[RuntimeFault]  # the runtime errors so far, in order
    tracing: bool  # between a normal start() and exit() or an error
    feeds_natively: bool  # the engine may run records without Python per record

    def start(self) -> bool:
        """Run the top level. False when no events should follow (exit() or an error)."""

    def run_probe(self, index: int, event: EventContext) -> bool:
        """Run probe `index` of the Module for `event`; False once stopped."""

    def run_profile(self, index: int, event: EventContext) -> bool:
        """Run the body of timer `index` (a `profile-N`) for `event`, one of its
        cpu-clock samples (with stacks); False once stopped."""

    def run_timer(self, index: int, time_ns: int) -> bool:
        """Run timer `index` (a `tick-N`) at stream time `time_ns`; False once stopped."""

    def finish(self, time_ns: Optional[int] = None) -> Result:
        """Run trace_end at stream time `time_ns` (unless an error happened inside it) and report."""

    def native_feed(self, plan: FeedPlan) -> Optional[NativeFeed]:
        """A feed running the session `plan` describes natively, or None:
        the session takes the per-event path (always, unless feeds_natively)."""

    def attach_kernel(self, events: LiveEvents) -> None:
        """A live session's perf events are open, not yet enabled: put what
        runs in the kernel on them. Raises BpfError when the kernel refuses."""

    def poll_kernel(self) -> bool:
        """Between a live session's rounds: False once code in the kernel
        failed (the error is then in `errors` and tracing stops)."""

    def gate_kernel(self, on: bool) -> None:
        """The session enabled its perf events (on), or disabled them (off):
        what attach_kernel put in the kernel runs on events exactly while
        the gate is on, so that it sees the events perf samples. Safe from
        a signal handler; a no-op without kernel code."""

    def holds_kernel_code(self) -> bool:
        """Whether code attach_kernel put in the kernel may still run on
        events: it runs until its perf events are closed unless its gate is
        off, so the session then closes them before detach_kernel, and
        before trace_end."""

    def detach_kernel(self) -> None:
        """The session's perf events are closed (or disabled, and the gate
        off): take back what ran in the kernel (tables, errors) and close
        it. Idempotent."""

    # Only a run whose native_feed gave a feed is asked for these two.

    def feed_chunk(self, data, offsets=None, base: int = 0) -> bool:
        """Run the records of `data` (those at `offsets`, an array('Q') of
        offsets minus `base`, when given) through the native feed. False once
        tracing has stopped, or the stream broke (NativeFeed.stream_error)."""

    def feed_release(self, final: bool, budget: int = 0) -> bool:
        """Run what the native feed's live merger releases at the end of a
        round (final: everything queued), at most `budget` records (0: all;
        NativeFeed.more says whether some are left); as feed_chunk."""


class Engine(Protocol):
    name: str

    def load(self, module, config: RunConfig, out: Callable[[bytes], None]) -> Run: ...
