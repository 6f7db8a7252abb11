"""The JIT as an engine (run_api.py): JitEngine and JitRun.

A run owns one native ``kstate`` (limits, output buffer, identities, errors),
the globals array (script globals, then num_cpus/arch/kernel_v and the
addresses ipof() names) and the event slot array. Each step calls one
generated entry function through ``k_enter``; its output is handed to
``out`` before the step returns, and a K_RUN_ERROR becomes a RuntimeFault
at its site's span. The lifecycle (exit(), errors, trace_end) is
run_lifecycle.py's, shared with the interpreter, so both engines end runs
identically.

May import: ktapjit.jit, ktapjit.run_api, ktapjit.run_lifecycle,
ktapjit.semantics, ktapjit.diag.

The native event path (jit/feed.py, runtime/feed.c): a JitRun feeds
natively, so a session driver asks ``native_feed(plan)`` (a run_api.FeedPlan)
for a feed that runs whole chunks of records natively, then calls
``feed_chunk`` per chunk (``feed_release`` per live round); the lifecycle
bookkeeping (exit(), errors) is the same as for one entry.
"""

from __future__ import annotations

import ctypes
import resource
import threading
from typing import Callable

from ktapjit.diag import RuntimeFault
from ktapjit.jit import rtlib
from ktapjit.jit.loader import NativeProgram, compile_native
from ktapjit.jit.lowered import HOST_SLOTS, entry_functions
from ktapjit.jit.marks import output_items
from ktapjit.jit.rtlib import KVal
from ktapjit.run_api import FeedPlan, RunConfig
from ktapjit.run_lifecycle import EXITED, FAILED, RETURNED, RunLifecycle
from ktapjit.semantics.values import Table

# Native stack one level of script recursion may take (measured ~200 bytes on
# x86-64 at O2; generous so that --max-depth fails before the stack does).
_STACK_PER_DEPTH = 1024
_STACK_RESERVE = 2 << 20  # for Python and the runtime below the entry
_THREAD_STACK = 8 << 20  # what a non-main thread gets (glibc's default)


class JitEngine:
    """Compiles the module to native code once per load."""

    name = "jit"

    def load(self, module, config: RunConfig, out: Callable[[bytes], None]) -> "JitRun":
        return JitRun(module, config, out, compile_native(module))


class JitRun(RunLifecycle):
    feeds_natively = True

    def __init__(self, module, config: RunConfig, out: Callable[[bytes], None], program: NativeProgram,
                 runtime: rtlib.RuntimeLibrary | None = None):
        super().__init__(module, config)
        self.out = out
        self.program = program
        # A bundle's program carries its own runtime (bundle/load.py); a
        # fresh compile binds to the JIT's.
        self.rt = runtime if runtime is not None else rtlib.load()
        limits = config.limits
        self.state = self.rt.state(max_table=limits.max_table, max_string=limits.max_string,
                                   max_loop=limits.max_loop, max_depth=limits.max_depth)
        # One view of the state's public fields: set_time runs per event.
        self.fields = fields = self.state.fields
        self.structured = config.structured_output
        if self.structured:
            self.rt.k_out_marks_on(self.state.ptr)
        fields.now_ns = config.start_time_ns
        fields.stack_budget = _stack_budget(limits.max_depth)
        lowered = program.lowered
        self.kernel_symbols = module.kernel_symbol_names()
        self.globals = (KVal * (lowered.nglobals + len(HOST_SLOTS) + len(self.kernel_symbols)))()
        fields.globals = ctypes.addressof(self.globals)
        self.slots = (KVal * max(1, len(lowered.event_slots)))()
        fields.event = ctypes.addressof(self.slots)
        self.slot_faults: dict[int, RuntimeFault] = {}
        self.feed = None  # the native event path (jit/feed.py NativeFeed), when the session takes it
        self._set_host(config.host)
        entries = entry_functions(module).items()
        self.entry_of = {func: program.entry_address(name) for name, func in entries}
        self.slots_of = {func: [(i, *lowered.event_slots[i]) for i in program.entry_slots(name)]
                         for name, func in entries}

    # -- RunLifecycle hooks

    def _set_time(self, time_ns: int) -> None:
        self.fields.now_ns = time_ns

    def _execute(self, func, event) -> str:
        if event is not None:
            self._fill_slots(func, event)
        status = self._native(lambda: self.rt.k_enter(self.state.ptr, self.entry_of[func]))
        if status == rtlib.RUN_OK:
            return RETURNED
        if status == rtlib.RUN_EXIT:
            return EXITED
        self.errors.append(self._fault())
        return FAILED

    def _set_global(self, index: int, value) -> None:
        self.globals[index] = self._kval(value)  # a Table: the interpreter's checks made it, then this copy

    def global_value(self, index: int):
        """Global slot `index` as a script value (a table: a Python copy), for
        an exporter reading between steps."""
        return self._python(self.globals[index], depth=2)

    # -- the native event path

    def native_feed(self, plan: FeedPlan):
        """A feed (jit/feed.py NativeFeed) running the session `plan`
        describes natively, or None when the session must take the
        per-event path (jit/feed.py says when)."""
        from ktapjit.jit.feed import build_feed  # 30-45 ms of imports a script without probes never needs

        self.feed = build_feed(self.module, self.program, plan, self.rt)
        if self.feed is not None:
            from ktapjit.jit.walker import attach_walker

            attach_walker(self.feed, plan, self.program, self.rt)
        return self.feed

    def feed_chunk(self, data: bytes, offsets=None, base: int = 0) -> bool:
        """Run the records of `data` (those at `offsets`, an array('Q'),
        when given) through the native feed. False once tracing has stopped
        (exit() or an error); the feed says where (NativeFeed.stopped_at).
        A stream error (FEED_STREAM, FEED_BAD) stops too: the caller reads
        it from the feed and raises it."""
        if not self.tracing:
            return False
        count = len(offsets) if offsets is not None else 0
        return self._fed(lambda: self.feed.run(self.state.ptr, data, offsets, count, base))

    def feed_release(self, final: bool, budget: int = 0) -> bool:
        """Run what the live merger releases at the end of a round (final:
        everything queued), at most `budget` records (0: all; the feed's
        `more` says whether some are left); as feed_chunk."""
        if not self.tracing:
            return False
        return self._fed(lambda: self.feed.release(self.state.ptr, final, budget))

    def _native(self, step) -> int:
        """Run a native step; its output goes to `out` before anything else
        happens, so output and error messages interleave as they were made."""
        try:
            return step()
        finally:
            data = self.state.take_output()
            if self.structured:
                items = output_items(data, self.state.take_marks())
                if items:
                    self.out(items)
            elif data:
                self.out(data)

    def _fed(self, step) -> bool:
        status = self._native(step)
        if status == rtlib.RUN_OK:
            return True
        if status == rtlib.RUN_EXIT:
            self.exit_called = True
        elif status == rtlib.RUN_ERROR:
            self.errors.append(self._fault())
        elif status in (rtlib.FEED_STREAM, rtlib.FEED_BAD):
            return False  # tracing goes on as far as the run is concerned: the stream broke
        self.tracing = False
        return False

    # -- values crossing into native code

    def _set_host(self, host) -> None:
        base = self.program.lowered.nglobals
        for i, name in enumerate(HOST_SLOTS):
            self.globals[base + i] = self._kval(getattr(host, name))
        base += len(HOST_SLOTS)
        addresses = host.kernel_symbols.addresses(self.kernel_symbols)
        for i, name in enumerate(self.kernel_symbols):
            self.globals[base + i] = self._kval(addresses[name])

    def _kval(self, value) -> KVal:
        rt = self.rt
        if value is None:
            return rt.nil()
        if value is True or value is False:
            return rt.boolean(value)
        if type(value) is int:
            return rt.integer(value)
        if isinstance(value, (bytes, bytearray)):
            return rt.string(bytes(value))
        if isinstance(value, Table):
            native = self.state.table_new()
            for key in value.keys_snapshot():
                code = rt.k_table_set(native, self._kval(key), self._kval(value.get(key)))
                if code:
                    rt.k_fail_table(self.state.ptr, native, code)
                    raise RuntimeFault(self.state.error_message())
            return KVal(rtlib.TABLE, native)
        raise TypeError(f"no native value for {type(value).__name__}")

    def _python(self, v: KVal, depth: int):
        """A native value as the interpreter's; tables `depth` levels deep
        (deeper ones, and functions, are None)."""
        rt, tag = self.rt, v.tag
        if tag == rtlib.INTEGER:
            return v.payload
        if tag == rtlib.STRING:
            return rt.string_bytes(v)
        if tag == rtlib.BOOLEAN:
            return bool(v.payload)
        if tag != rtlib.TABLE or depth == 0:
            return None
        table = Table(self.config.limits.max_table)
        snap = rt.k_table_keys(v.payload)
        if not snap:
            raise MemoryError("k_table_keys")
        try:
            value = KVal()
            for i in range(rt.k_snapshot_len(snap)):
                key = rt.k_snapshot_get(snap, i)
                rt.k_table_get(v.payload, key, ctypes.byref(value))
                py_key = self._python(key, 0)
                if py_key is not None:
                    table.set(py_key, self._python(value, depth - 1))
        finally:
            rt.k_snapshot_free(snap)
        return table

    def _fill_slots(self, func, event) -> None:
        slots, faults = self.slots, self.slot_faults
        faults.clear()
        tables: dict[int, KVal] = {}  # an array field read as argN and args.NAME is one table
        for index, kind, name in self.slots_of[func]:
            try:
                if kind == "value":
                    value = event.value(name)
                elif kind == "field":
                    value = event.field(name)
                elif kind == "memory":
                    value = event.memory(name)
                else:
                    value = event.stack(name)
                if isinstance(value, Table):
                    if id(value) not in tables:
                        tables[id(value)] = self._kval(value)
                    slots[index] = tables[id(value)]
                    continue
                slots[index] = self._kval(value)
            except RuntimeFault as fault:  # reported where the body reads it
                faults[index] = fault
                slots[index] = KVal(-1, 0)

    def _fault(self) -> RuntimeFault:
        fields = self.fields
        site = fields.site
        span = self.program.lowered.sites[site] if 0 <= site < len(self.program.lowered.sites) else None
        if fields.err.code == rtlib.E_EVENT:
            original = self.slot_faults.get(fields.err.a)
            if original is not None:
                return RuntimeFault(original.message, span)
            if self.feed is not None:  # a corrupt record the native feed filled
                return RuntimeFault(self.feed.fault(fields.err.a), span)
        return RuntimeFault(self.state.error_message(), span)


def _stack_budget(max_depth: int) -> int:
    """Native stack the run may use: recursion past it fails cleanly (never a
    crash). The main thread's stack grows up to RLIMIT_STACK, which is raised
    (within the hard limit) when --max-depth asks for more."""
    if threading.current_thread() is not threading.main_thread():
        return _THREAD_STACK - _STACK_RESERVE
    want = max_depth * _STACK_PER_DEPTH + 2 * _STACK_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_STACK, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    limit = (1 << 30) if soft == resource.RLIM_INFINITY else soft
    return max(limit - _STACK_RESERVE, 256 << 10)
