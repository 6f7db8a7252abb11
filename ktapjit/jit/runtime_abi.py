"""The runtime ABI, written once: every call of the C runtime (its C
signature and its effects), the public fields of the run state, and the
enums both sides share (value tags, error codes with their messages, run
and feed statuses, event slot kinds, output marks, argstr opcodes).

Everything else is derived from this table: the LLVM declarations generated
code calls (jit/abi.py, with function attributes from the effects), the
ctypes prototypes and Python constants (jit/rtlib.py), and the C header
runtime/ktrt_abi.h, which ktrt.h includes. Regenerate that header after
editing the table:

    python -m ktapjit.jit.runtime_abi --write

(tests/jit/test_runtime_abi.py fails while it is stale). ``ABI_VERSION`` is
a hash of what the ABI is made of, so any change to it is a new version.

Plain data, target-neutral (C types, not one machine's): the table imports
nothing, so a tool that needs no LLVM can read it.

May import: stdlib.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

HEADER = Path(__file__).with_name("runtime") / "ktrt_abi.h"

# -- effects ----------------------------------------------------------------------
#
# What a call may do besides computing its result from its arguments. A call
# with none is pure. They become LLVM function attributes (abi.py), so a
# missing effect is a miscompile: when in doubt, say `writes`.
EFFECTS = {
    "argmem": "reads or writes memory through its pointer arguments (fields of s, *out)",
    "reads": "reads other memory: tables, strings, the run's buffers",
    "writes": "writes or allocates other memory",
    "fails": "may record an error in s->err and return its nonzero code",
    "reenters": "runs generated code: may do anything, and need not return",
    "cold": "called on error paths only",
}


@dataclass(frozen=True)
class Param:
    """One parameter of a runtime call."""

    ctype: str  # "int64_t", "const kval *", or an array parameter "int64_t[7]"
    name: str


@dataclass(frozen=True)
class Call:
    """A runtime function the generated code calls."""

    ret: str
    name: str
    params: tuple[Param, ...]
    effects: frozenset[str]
    code: bool  # generated code calls it (declared in every lowered module)
    doc: str
    section: str


_PROTO = re.compile(r"^(?P<ret>.+?[\s*])(?P<name>k_\w+)\((?P<params>.*)\)$")
_PARAM = re.compile(r"^(?P<type>.+?[\s*])(?P<name>\w+)(?P<array>\[\d*\])?$")


def _parse(proto: str) -> tuple[str, str, tuple[Param, ...]]:
    """'int k_fail(kstate *s, int code)' -> ('int', 'k_fail', params)."""
    m = _PROTO.match(" ".join(proto.split()))
    assert m, proto
    params = []
    for text in filter(None, (p.strip() for p in m["params"].split(","))):
        if text == "void":
            continue
        p = _PARAM.match(text)
        assert p, text
        ctype = " ".join(p["type"].replace("*", " *").split()).replace("* *", "**")
        params.append(Param(ctype + (p["array"] or ""), p["name"]))
    ret = " ".join(m["ret"].replace("*", " *").split()).replace("* *", "**")
    return ret, m["name"], tuple(params)


def _call(proto: str, effects: str, doc: str = "", code: bool = False) -> Call:
    ret, name, params = _parse(proto)
    unknown = set(effects.split()) - set(EFFECTS)
    assert not unknown, (name, unknown)
    return Call(ret, name, params, frozenset(effects.split()), code, " ".join(doc.split()), "")


# -- calls ------------------------------------------------------------------------

_CALLS = (
    "values",
    _call("kstr *k_intern(const char *p, uint32_t len)", "reads writes",
          "The interned string for p[0..len). NULL only when out of memory."),
    _call("uint64_t k_intern_count(void)", "reads",
          "Number of distinct strings interned so far (for tests and stats)."),

    "state",
    _call("kstate *k_state_new(int64_t max_table, int64_t max_string, int64_t max_loop, int64_t max_depth)",
          "writes"),
    _call("void k_state_free(kstate *s)", "writes"),
    _call("int k_fail(kstate *s, int code, int64_t a, int64_t b)", "argmem fails cold",
          "Record a failure: sets s->err = {code, a, b} and returns code.", code=True),
    _call("int k_fail_table(kstate *s, ktable *t, int code)", "argmem fails cold",
          "Like k_fail for codes from k_table_set (fills N for table overflow).", code=True),
    _call("int k_err_message(kstate *s, char *buf, size_t cap)", "argmem reads",
          "The message of s->err, without location, NUL-terminated like snprintf: returns the "
          "full length (which may be >= cap)."),
    _call("const char *k_type_name(int64_t tag)", "",
          'The language\'s name of a tag: "nil", "boolean", ...'),

    "output",
    _call("void k_out_take(kstate *s, const char **ptr, uint64_t *len)", "argmem",
          "Output: hand the pending bytes to the caller and empty the buffer. The pointer stays "
          "valid until the next write to the state."),
    _call("int k_out_write(kstate *s, const char *p, uint64_t len)", "reads writes fails",
          "Append raw bytes to the output (0 or K_E_NOMEM)."),
    _call("void k_out_marks_on(kstate *s)", "argmem",
          "Record output marks from now on (KM_* above)."),
    _call("void k_out_marks_take(kstate *s, const kmark **ptr, uint64_t *n)", "argmem",
          "Hand the pending marks to the caller (taken with the output they describe)."),

    "tables",
    _call("int64_t k_tables_live(kstate *s)", "argmem reads",
          "How many tables of the run are allocated now (tests: memory is reclaimed)."),
    _call("int64_t k_arena_bytes(kstate *s)", "argmem reads",
          "Bytes of cells and closures the run holds (tests: memory is reclaimed)."),
    _call("uint64_t k_key_hash(kval key)", "reads",
          "The hash of a non-nil key; the probe starts at k_key_hash(k) & mask."),
    _call("ktable *k_table_new(kstate *s)", "writes",
          "A new empty table owned by s (limit s->max_table). NULL when out of memory.", code=True),
    # Writes only the table's memo (through t) and *out: a lookup leaves the
    # run state, globals and event slots as they were.
    _call("int k_table_get(ktable *t, kval key, kval *out)", "argmem reads",
          "1 and *out = value when key is present, else 0 and *out = nil (also for a nil key).",
          code=True),
    _call("int k_table_set(ktable *t, kval key, kval value)", "writes",
          "Store; a nil value deletes. Returns K_OK, K_E_NIL_INDEX (nil key, checked first), "
          "K_E_TABLE_OVERFLOW (a new key when count >= max_entries) or K_E_NOMEM. The table is "
          "unchanged on failure.", code=True),
    _call("int64_t k_table_len(ktable *t)", "argmem"),
    _call("void k_table_clear(ktable *t)", "writes", code=True),
    _call("ksnapshot *k_table_keys(ktable *t)", "writes",
          "The keys present now, in insertion order, for `pairs`. Caller frees. NULL when out "
          "of memory."),
    _call("int64_t k_snapshot_len(ksnapshot *snap)", "argmem"),
    _call("kval k_snapshot_get(ksnapshot *snap, int64_t i)", "argmem",
          "nil when out of range."),
    _call("void k_snapshot_free(ksnapshot *snap)", "writes"),

    "builtins and operators",
    _call("int k_value_text(kstate *s, kval v, kval *out)", "writes fails",
          "The text print writes for v as an interned string (numbers a table or function on "
          "first use; no length limit)."),
    _call("int k_stringof(kstate *s, kval v, kval *out)", "writes fails",
          "stringof(v): k_value_text, then K_E_STRING_TOO_LONG above max_string.", code=True),
    _call("int k_concat(kstate *s, kval a, kval b, kval *out)", "writes fails",
          "a .. b: strings and integers (decimal); K_E_CONCAT for the first bad operand; "
          "K_E_STRING_TOO_LONG when the result would exceed max_string.", code=True),
    _call("int k_compare(kstate *s, kval a, kval b, int64_t *out)", "argmem reads fails",
          "-1, 0, 1 for two integers or two strings (unsigned bytes, prefix first); otherwise "
          "K_E_COMPARE.", code=True),
    _call("int k_len(kstate *s, kval v, int64_t *out)", "argmem reads fails",
          "len(v) of a string or a table; otherwise K_E_LEN.", code=True),
    _call("int k_div(kstate *s, int64_t a, int64_t b, int64_t *out)", "argmem fails",
          "Integer / and % with the language's rules (zero divisor: K_E_DIV_ZERO)."),
    _call("int k_mod(kstate *s, int64_t a, int64_t b, int64_t *out)", "argmem fails"),
    _call("int k_print(kstate *s, const kval *args, int64_t n)", "reads writes fails",
          "print(args[0..n)): tab separated, then a newline.", code=True),
    _call("int k_printf(kstate *s, kval fmt, const kval *args, int64_t n)", "reads writes fails",
          "printf(fmt, args[0..n)); extra arguments are ignored.", code=True),
    _call("int k_print_hist(kstate *s, kval table, kval n)", "reads writes fails",
          "print_hist(t [, n]); pass nil for n when omitted.", code=True),
    _call("int k_print_folded(kstate *s, kval table)", "reads writes fails",
          "print_folded(t): ktapjit/semantics/folded.py.", code=True),
    _call("int k_hist(kstate *s, const kval *args)", "reads writes fails",
          "Aggregations (agg.c: ktapjit/semantics/agg.py). args[0..3) = t, k, v; lhist's "
          "args[3..6) = min, max, step.", code=True),
    _call("int k_lhist(kstate *s, const kval *args)", "reads writes fails", code=True),
    _call("int k_stats(kstate *s, const kval *args)", "reads writes fails", code=True),
    _call("int k_print_agg(kstate *s, kval table)", "reads writes fails", "print_agg(t).",
          code=True),

    "functions, cells and calls (generated code)",
    _call("kcell *k_cell_new(kstate *s, kval v)", "writes fails",
          "New cells and closures live until the state is freed. NULL: out of memory "
          "(recorded). A closure's cells are filled in by the caller.", code=True),
    _call("void k_escape(kval v)", "writes",
          "v is being stored in a global, a cell or a table: when a table, it outlives the "
          "entry (k_enter frees the tables an entry made that did not); when a function, the "
          "entry's cells and closures do (k_enter reclaims them only when no function "
          "escaped).", code=True),
    _call("kfunc *k_closure_new(kstate *s, kcode code, int64_t nparams, int64_t ncells)",
          "writes fails", code=True),
    _call("int64_t k_call(kstate *s, kval callee, kval *args, int64_t n, int64_t depth, kval *ret, "
          "int64_t site)", "reenters fails",
          "Call callee(args[0..n)) at depth+1 with the interpreter's checks in its order "
          "(callable, argument count, --max-depth), following tail calls. A failed check "
          "records its error at `site`. Returns a K_RUN_* status other than K_RUN_TAIL.",
          code=True),
    _call("kval *k_tail_args(kstate *s, kval callee, int64_t n, int64_t site)", "writes fails",
          "A tail call's checks (callable, argument count) and its argument buffer: store n "
          "arguments there and return K_RUN_TAIL. NULL: the check failed, recorded at `site`.",
          code=True),
    _call("int64_t k_enter(kstate *s, kcode code)", "reenters fails",
          "Run an entry function (top level, probe, timer, trace_end) at depth 0; pairs "
          "snapshots made meanwhile are freed. A K_RUN_* status."),
    _call("int k_table_fill(kstate *s, ktable *t, const int64_t *pairs, int64_t n, "
          "const int64_t *strings, int64_t *failed)", "writes fails",
          "Store n constant pairs into t, in order, as n k_table_set calls would: "
          "pairs[4i..4i+4) = key tag, key payload, value tag, value payload, where a string's "
          "payload is an index into `strings` (the module's interned constants). On failure "
          "the error is recorded (as k_fail_table does), *failed is the index of the pair "
          "that failed, and the code is returned.", code=True),
    _call("ksnapshot *k_snapshot_scratch(kstate *s, ktable *t)", "writes",
          "A pairs snapshot owned by the running entry (freed when k_enter returns).", code=True),

    "the native event path (feed.c)",
    _call("kfeed *k_feed_new(int64_t start_ns)", "writes"),
    _call("void k_feed_free(kfeed *f)", "writes"),
    _call("int64_t k_feed_layout(kfeed *f, uint64_t sample_type, int64_t sample_id_all)", "writes",
          "A sample_type's layout; returns its index (-1: out of memory)."),
    _call("void k_feed_resolver(kfeed *f, int64_t mode, int64_t id_pos, int64_t is_pos, "
          "int64_t noid_group)", "argmem",
          "mode 0: layout 0 for every record; mode 1: a sample's id at byte id_pos, another "
          "record's id is_pos bytes before its end (-1: none). Samples without an id run group "
          "noid_group (-1: none)."),
    _call("int k_feed_id(kfeed *f, uint64_t id, int64_t layout, int64_t group)", "writes",
          "Sample id -> its layout and group (-1: no probes)."),
    _call("int64_t k_feed_group(kfeed *f)", "writes"),
    _call("int64_t k_feed_probe(kfeed *f, int64_t group, kcode code, int64_t fixed_size, "
          "const char *prefix, const char *label)", "reads writes",
          "Append a bound probe to a group; its index, -1 on failure. prefix and label make "
          "the corrupt-record message."),
    _call("int k_feed_slot(kfeed *f, int64_t probe, int64_t slot, int64_t kind, int64_t offset, "
          "int64_t size, int64_t flags, kval value)", "writes",
          "How slot `slot` of a probe is filled: a KF_* kind and its operands."),
    _call("int k_feed_dyn(kfeed *f, int64_t probe, int64_t offset, int64_t size, int64_t relative, "
          "const char *name)", "reads writes",
          "Every dynamic field of the probe's format, in order: a record is corrupt when one "
          "points outside it."),
    _call("int k_feed_filter(kfeed *f, int64_t probe, const int64_t *program, int64_t n, "
          "const char *patterns, int64_t npatterns)", "reads writes",
          "The probe's filter: n instructions of 6 words and the string patterns they name "
          "(kernel_filter/native.py)."),
    _call("int k_feed_argstr(kfeed *f, int64_t probe, const int64_t *program, int64_t n, "
          "const char *blob, int64_t nblob)", "reads writes",
          "The probe's argstr program (events/printfmt/bytecode.py): n instructions of KA_WIDTH words, "
          "the text they name in blob[0..nblob). 0, K_E_NOMEM, or -1 when it is not a valid "
          "program. KF_ARGSTR slots render it (argstr.c)."),
    _call("int k_argstr_eval(const int64_t *program, int64_t n, const char *blob, int64_t nblob, "
          "const uint8_t *raw, uint64_t len, kval *out)", "reads writes",
          "Render one argstr program over RAW data raw[0..len) into *out (an interned "
          "string): what a KF_ARGSTR slot holds. 0, K_E_NOMEM, or -1 (not a valid program). "
          "For tests and tools; feeds keep their programs."),
    _call("int k_feed_sites(kfeed *f, int64_t probe, const kval *names, int64_t n)", "reads writes",
          "The probe's site table (events/probes/probe_sites.py): names[0..n), interned strings, "
          "copied. KF_SITE_NAME slots read it. 0, K_E_NOMEM, or -1."),
    _call("int k_feed_timer(kfeed *f, int64_t period, kcode code)", "writes",
          "A tick timer, first due at start_ns + period; add in declaration order."),
    _call("void k_feed_walker(kfeed *f, kwalk walk)", "writes",
          "The session's compiled walker (NULL: none); it runs the records it accepts, the "
          "generic walker the rest."),
    _call("int k_feed_comm(kfeed *f, int64_t tid, kval *out)", "reads writes",
          "For a compiled walker: *out = execname of task tid as the generic walker finds it "
          "(COMM/FORK names, else \":tid\"); 0, or -1 when out of memory."),
    _call("int64_t k_feed(kstate *s, kfeed *f, const uint8_t *buf, uint64_t len, "
          "const uint64_t *offsets, uint64_t n, uint64_t base)", "reenters fails",
          "Run records: offsets[0..n) into buf when offsets is not NULL, else every record of "
          "buf[0..len) in order. base is added to offsets in messages. K_RUN_OK when all ran; "
          "K_RUN_EXIT/K_RUN_ERROR when an entry stopped tracing (s->err, s->site as usual); "
          "K_FEED_STREAM, K_FEED_BAD."),
    _call("int64_t k_feed_count(const uint8_t *buf, uint64_t len)", "reads",
          "The number of records in buf[0..len), -1 when a header is broken."),
    _call("int64_t k_feed_order(kfeed *f, const uint8_t *buf, uint64_t len, uint64_t out[], "
          "uint64_t cap)", "reads writes",
          "The offsets of buf's records in the order perf delivers a perf.data data section "
          "(events/records/merge.py order_perf_rounds: by time, ties in file order, flushed at "
          "FINISHED_ROUND; untimed records at once), into out[0..cap). The count, or -1 when a "
          "record is one the Python decoder would reject (or the native path cannot check as "
          "it does): then that path must run."),
    _call("int k_feed_push(kfeed *f, int64_t cpu, const uint8_t *buf, uint64_t len)", "reads writes",
          "Live rings (events/records/merge.py StreamMerger): queue a copy of the records of one CPU's "
          "drained bytes; 0, or -1 when a record is one the decoder would reject (nothing is "
          "queued then)."),
    _call("int64_t k_feed_release(kstate *s, kfeed *f, int64_t final, uint64_t budget)",
          "reenters fails",
          "Run what a round releases (final: everything), as k_feed runs records, at most "
          "budget records per call (0: no limit): K_FEED_MORE when records of the round are "
          "still due; the next call goes on with the same round (its final is then ignored). "
          "Bounded calls let the caller see signals."),
    _call("int64_t k_feed_discard(kfeed *f)", "writes",
          "Drop every queued record; the number of samples among them."),
    _call("void k_feed_keep(kfeed *f, int64_t on)", "argmem",
          "on: k_feed_release copies each record it runs, as it runs it, into a buffer: "
          "k_feed_kept (its *len is UINT64_MAX once a copy failed for want of memory) and "
          "k_feed_kept_clear. A recording then holds exactly what ran."),
    _call("const uint8_t *k_feed_kept(kfeed *f, uint64_t *len)", "argmem reads"),
    _call("void k_feed_kept_clear(kfeed *f)", "writes"),
    _call("void k_feed_info(kfeed *f, int64_t out[7])", "argmem reads",
          "out = last_time, lost (low 64 bits), consumed, stopped_at (record index, -1), "
          "error_offset, samples (run through probes), lost (high 64 bits)."),
    _call("const char *k_feed_fault(kfeed *f, int64_t slot)", "argmem reads",
          "The message of the last corrupt record a probe failed to read event slot `slot` of "
          "(a site index has its own: one record can fail both ways); of K_FEED_STREAM."),
    _call("const char *k_feed_message(kfeed *f)", "argmem reads"),
)


def _sectioned(items: tuple) -> tuple[Call, ...]:
    """The calls, each with the title of the section string before it."""
    calls, section = [], ""
    for item in items:
        if isinstance(item, str):
            section = item
        else:
            calls.append(replace(item, section=section))
    return tuple(calls)


CALLS: tuple[Call, ...] = _sectioned(_CALLS)
CALL = {c.name: c for c in CALLS}
CODE_CALLS = tuple(c for c in CALLS if c.code)

# -- the run state ----------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One public field of the runtime's state."""

    ctype: str
    name: str
    size: int
    doc: str


# The public prefix of struct kstate, which generated code reads and writes
# directly; the private fields follow it (ktrt.h).
STATE_FIELDS: tuple[Field, ...] = (
    Field("int64_t", "max_table", 8, "entries per table (--max-table)"),
    Field("int64_t", "max_string", 8, "bytes per made string (--max-string)"),
    Field("int64_t", "max_loop", 8, "for generated code: --max-loop"),
    Field("int64_t", "max_depth", 8, "for generated code: --max-depth"),
    Field("char *", "out", 8, "output buffer: out[0..out_len) pending"),
    Field("uint64_t", "out_len", 8, ""),
    Field("uint64_t", "out_cap", 8, ""),
    Field("int64_t", "n_tables", 8, 'tables numbered so far ("table: N")'),
    Field("int64_t", "n_funcs", 8, 'functions numbered so far ("function: N")'),
    Field("kerr", "err", 24, "the last failure; err.code == K_OK when none"),
    Field("kval *", "globals", 8, "script globals, then the host values (engine-owned)"),
    Field("int64_t", "now_ns", 8, "the current event time (gettimeofday_*)"),
    Field("int64_t", "site", 8, "the error site of the last K_RUN_ERROR (-1: none)"),
    Field("kval *", "event", 8, "the current event's slots (engine-owned)"),
    Field("kval *", "tail_args", 8, "a pending tail call's arguments"),
    Field("int64_t", "tail_n", 8, ""),
    Field("kfunc *", "tail_fn", 8, ""),
    Field("int64_t", "tail_cap", 8, "capacity of tail_args"),
    Field("uintptr_t", "stack_floor", 8, "calls fail below this native stack address"),
    Field("uint64_t", "stack_budget", 8, "bytes of native stack a run may use (engine-set)"),
)


def state_offsets() -> dict[str, int]:
    offsets, at = {}, 0
    for f in STATE_FIELDS:
        offsets[f.name] = at
        at += f.size
    return offsets


# -- enums ------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One value of an Enum."""

    name: str  # the C name
    value: int
    doc: str = ""


@dataclass(frozen=True)
class Enum:
    """A table of named constants shared by C and Python."""

    title: str
    members: tuple[Member, ...]
    count: str = ""  # a C name for one past the last value, if any


def _seq(start: int, *items: tuple[str, str] | str) -> tuple[Member, ...]:
    """Members numbered from start: each a name, or (name, doc)."""
    named = [item if isinstance(item, tuple) else (item, "") for item in items]
    return tuple(Member(name, start + i, doc) for i, (name, doc) in enumerate(named))


TAGS = Enum("Value tags: kval.tag", _seq(
    0,
    ("KT_NIL", "payload 0"),
    ("KT_BOOL", "payload 0 (false) or 1 (true)"),
    ("KT_INT", "payload: the int64"),
    ("KT_STR", "payload: (kstr *), interned"),
    ("KT_TABLE", "payload: (ktable *)"),
    ("KT_FUNC", "payload: (kfunc *), opaque; only its identity is used"),
))

# The language's name of each tag (k_type_name).
TYPE_NAMES = ("nil", "boolean", "integer", "string", "table", "function")


@dataclass(frozen=True)
class Error:
    """A runtime error code and its message."""

    name: str
    message: str  # the text k_err_message writes, with {fields} from err.a and err.b
    doc: str = ""


# Message fields: {a} and {b} are numbers; {a:type} a type name (a tag);
# {a:agg} hist, lhist or stats; {a:bound} min, max or step; {a:char} a byte;
# {a:conv} a printf conversion byte (\xNN unless printable); {a:lhist}
# lhist's reason by number.
ERRORS: tuple[Error, ...] = (
    Error("K_OK", ""),
    Error("K_E_NOMEM", "out of memory"),
    Error("K_E_COMPARE", "attempt to compare {a:type} with {b:type}",
          "type errors; err.a (and err.b) hold the KT_* tags"),
    Error("K_E_ARITH", "attempt to perform arithmetic on a {a:type} value"),
    Error("K_E_CONCAT", "attempt to concatenate a {a:type} value"),
    Error("K_E_INDEX", "attempt to index a {a:type} value"),
    Error("K_E_CALL", "attempt to call a {a:type} value"),
    Error("K_E_LEN", "attempt to get length of a {a:type} value"),
    Error("K_E_DIV_ZERO", "divide by zero"),
    Error("K_E_NIL_INDEX", "table index is nil"),
    Error("K_E_TABLE_OVERFLOW", "table overflow ({a} entries)"),
    Error("K_E_STRING_TOO_LONG", "string too long"),
    Error("K_E_LOOP_LIMIT", "loop limit exceeded ({a} iterations)"),
    Error("K_E_STACK_OVERFLOW", "stack overflow (depth {a})"),
    Error("K_E_TOO_MANY_ARGS", "too many arguments (function takes {a}, got {b})"),
    Error("K_E_FOR_INITIAL", "'for' initial value must be an integer"),
    Error("K_E_FOR_LIMIT", "'for' limit must be an integer"),
    Error("K_E_FOR_STEP", "'for' step must be an integer"),
    Error("K_E_FOR_STEP_ZERO", "'for' step is zero"),
    Error("K_E_PRINTF_FORMAT", "printf: format must be a string, got {a:type}"),
    Error("K_E_PRINTF_ARGS", "printf: not enough arguments"),
    Error("K_E_PRINTF_BADARG", "printf: bad argument for '%{a:char}': expected integer, got {b:type}"),
    Error("K_E_PRINTF_CONV", "printf: invalid conversion '%{a:conv}'"),
    Error("K_E_PRINTF_INCOMPLETE", "printf: incomplete conversion at end of format"),
    Error("K_E_PRINTF_WIDTH", "printf: width or precision too large"),
    Error("K_E_HIST_TABLE", "print_hist: expected a table, got {a:type}"),
    Error("K_E_HIST_ROWS", "print_hist: row count must be an integer, got {a:type}"),
    Error("K_E_HIST_VALUES", "print_hist: values must be non-negative integers"),
    Error("K_E_EVENT", "event slot {a} could not be read",
          "raised by generated code; the engine holds the real message"),
    Error("K_E_NATIVE_STACK", "native stack exhausted at depth {a} (raise the limit with ulimit -s)"),
    Error("K_E_FOLDED_TABLE", "print_folded: expected a table, got {a:type}"),
    Error("K_E_FOLDED_VALUES", "print_folded: values must be non-negative integers"),
    Error("K_E_AGG_TABLE", "{a:agg}: expected a table, got {b:type}",
          "aggregations: a = the builtin, 0 hist, 1 lhist, 2 stats"),
    Error("K_E_AGG_VALUE", "{a:agg}: value must be an integer, got {b:type}"),
    Error("K_E_AGG_KIND", "{a:agg}: existing value is not a {a:agg} aggregation"),
    Error("K_E_LHIST_BOUND_TYPE", "lhist: {a:bound} must be an integer, got {b:type}"),
    Error("K_E_LHIST_BOUNDS", "lhist: {a:lhist}"),
    Error("K_E_LHIST_OTHER", "lhist: existing aggregation has other bounds"),
    Error("K_E_PRINT_AGG_TABLE", "print_agg: expected a table, got {a:type}"),
    Error("K_E_PRINT_AGG_VALUES", "print_agg: values must be aggregations (hist, lhist or stats)"),
)
ERROR_CODES = Enum("Error codes: kerr.code, and what a failing call returns",
                   tuple(Member(e.name, i, e.doc) for i, e in enumerate(ERRORS)), count="K_E__COUNT")

AGG_NAMES = ("hist", "lhist", "stats")
LHIST_BOUND_NAMES = ("min", "max", "step")
LHIST_REASONS = ("?", "step must be positive", "min must be less than max",
                 "max - min must be a multiple of step", "too many buckets (more than 1000)")

RUN_STATUSES = Enum("How a generated function (kcode) returns", _seq(
    0,
    ("K_RUN_OK", "returned normally; *ret holds the value"),
    ("K_RUN_EXIT", "exit() ran: unwind to the engine"),
    ("K_RUN_ERROR", "s->err and s->site describe the error: unwind"),
    ("K_RUN_TAIL", "tail call: call s->tail_fn(s->tail_args[0..tail_n)) instead"),
))

FEED_STATUSES = Enum("What k_feed returns besides the K_RUN_* statuses", _seq(
    16,
    ("K_FEED_STREAM", "a corrupt timestamp: k_feed_message, error offset in k_feed_info"),
    ("K_FEED_BAD", "a record the feed cannot read (never for input the decoder accepts)"),
    ("K_FEED_MORE", "k_feed_release used its budget: more of the round is due"),
    ("K_FEED_DECLINED", "a compiled walker (kwalk) leaves the record to the generic walker"),
))

SLOT_KINDS = Enum("How a slot of a bound probe is filled (k_feed_slot)", _seq(
    0,
    ("KF_NIL", "nil"),
    ("KF_PID", "the sample's pid (nil without PERF_SAMPLE_TID)"),
    ("KF_TID", ""),
    ("KF_CPU", "nil without PERF_SAMPLE_CPU"),
    ("KF_EXECNAME", 'the thread\'s comm (":TID" when unknown)'),
    ("KF_CONST", "`value` (probename)"),
    ("KF_INT_FIELD", "RAW[offset, +size), size 1/2/4/8, flags: signed"),
    ("KF_BYTES_FIELD", "RAW[offset, +size) as a string"),
    ("KF_CHARS_FIELD", "char[size] at offset, cut at the first NUL"),
    ("KF_DATALOC_STRING", "__data_loc (flags 0) / __rel_loc (flags 1) char[]"),
    ("KF_FIELD_NIL", "nil, but a corrupt record fails the read"),
    ("KF_ARGSTR", "the print fmt rendered (the probe's k_feed_argstr program)"),
    ("KF_ARRAY_FIELD", "a fixed array as a table from 0: size elements, flags elem | signed << 8"),
    ("KF_DYN_ARRAY", "a __data_loc array: size the location's, flags elem | signed << 8 | rel << 9"),
    ("KF_SITE_NAME", "probename of a site event: the name the u32 at offset indexes (k_feed_sites)"),
))

MARK_KINDS = Enum("Output mark kinds (kmark.kind)", _seq(
    1,
    ("KM_PRINT", "a print item starts at `at`"),
    ("KM_PRINTF", "a printf item starts at `at`"),
    ("KM_HIST", "a print_hist item starts at `at`"),
    ("KM_FOLDED", "a print_folded item starts at `at`"),
    ("KM_AGG", "a print_agg item starts at `at`"),
    ("KM_ROW", "a row of the current item: its key or label is out[at..at+len), a its count, "
               "b its bar length (print_folded: a and b are the low and high 64 bits of its "
               "count, a merged sum of counts)"),
    ("KM_MORE", "print_hist left rows out"),
    ("KM_KEY", "a print_agg entry: its key is out[at..at+len), a its kind (KM_AGG_*)"),
    ("KM_STATS", "a stats entry's numbers: at count, len total, a min, b max"),
))

MARK_AGG_KINDS = Enum("The aggregation a KM_KEY mark names", _seq(
    0, "KM_AGG_HIST", "KM_AGG_LHIST", "KM_AGG_STATS"))

# argstr programs (events/printfmt/bytecode.py compiles them, argstr.c runs
# them): the opcodes, in bytecode.OPS's order, which documents each one.
ARGSTR_OPS = Enum("argstr opcodes (events/printfmt/bytecode.py OPS)", _seq(
    0, "KA_END", "KA_CONST", "KA_READ", "KA_READ_AT", "KA_READ_DYN", "KA_DYN_LEN", "KA_MASK",
    "KA_NOT", "KA_INV", "KA_NEG", "KA_ADD", "KA_SUB", "KA_MUL", "KA_DIV", "KA_MOD", "KA_SHL",
    "KA_SHR", "KA_AND", "KA_OR", "KA_XOR", "KA_LAND", "KA_LOR", "KA_EQ", "KA_NE", "KA_LT",
    "KA_LE", "KA_GT", "KA_GE", "KA_JZ", "KA_JMP", "KA_LIT", "KA_INT", "KA_STR_SPEC",
    "KA_PUT_TEXT", "KA_PUT_RAW", "KA_PUT_DYN", "KA_HEX8", "KA_FLAGS", "KA_SYM", "KA_ENTRY",
    "KA_PTR", "KA_ADDR"), count="KA_NOPS")

ENUMS = (TAGS, ERROR_CODES, RUN_STATUSES, FEED_STATUSES, SLOT_KINDS, MARK_KINDS, MARK_AGG_KINDS,
         ARGSTR_OPS)

# Plain constants (#define in the header).
CONSTANTS = (
    ("KA_WIDTH", 4, "words an argstr instruction: op, a, b, c"),
    ("KA_STACK", 32, "an argstr program's value stack, in entries"),
    ("KTABLE_ENTRIES_AT", 0, "byte offset of struct ktable's entries: generated code's memo hit"),
    ("KTABLE_INDEX_AT", 8, "byte offset of struct ktable's index"),
    ("KTABLE_MEMO_KEY_AT", 48, "byte offset of struct ktable's memo_key"),
    ("KTABLE_MEMO_SLOT_AT", 64, "byte offset of struct ktable's memo_slot"),
)


def values(enum: Enum, prefix: str) -> dict[str, int]:
    """An enum as Python names: {'E_NOMEM': 1, ...} for prefix 'K_'."""
    return {m.name.removeprefix(prefix): m.value for m in enum.members}


# -- messages ---------------------------------------------------------------------


def _field(value: int, kind: str) -> str:
    if kind == "type":
        return TYPE_NAMES[value] if 0 <= value < len(TYPE_NAMES) else "?"
    if kind == "agg":
        return AGG_NAMES[value] if value in (0, 1) else AGG_NAMES[2]
    if kind == "bound":
        return LHIST_BOUND_NAMES[value] if value in (0, 1) else LHIST_BOUND_NAMES[2]
    if kind == "char":
        return chr(value & 255)
    if kind == "conv":
        return chr(value) if 0x20 <= value < 0x7F else f"\\x{value & 255:02x}"
    if kind == "lhist":
        return LHIST_REASONS[value if 1 <= value <= 4 else 0]
    return str(value)


def error_message(code: int, a: int = 0, b: int = 0) -> str:
    """What k_err_message writes for err = {code, a, b}."""
    if not 0 <= code < len(ERRORS):
        return f"unknown runtime error {code}"
    return re.sub(r"\{(a|b)(?::(\w+))?\}",
                  lambda m: _field(a if m[1] == "a" else b, m[2] or ""), ERRORS[code].message)


# -- the version ------------------------------------------------------------------


def _canonical() -> str:
    """What the ABI is made of, docs left out."""
    parts = [f"{c.ret} {c.name}({', '.join(p.ctype for p in c.params)}) "
             f"{' '.join(sorted(c.effects))} {int(c.code)}" for c in CALLS]
    parts += [f"{f.ctype} {f.name} {f.size}" for f in STATE_FIELDS]
    parts += [f"{m.name}={m.value}" for e in ENUMS for m in e.members]
    parts += [f"{name}={value}" for name, value, _ in CONSTANTS]
    return "\n".join(parts)


ABI_VERSION = int(hashlib.sha256(_canonical().encode()).hexdigest()[:8], 16)

# -- the C header -----------------------------------------------------------------


def _comment(text: str, indent: str = "", width: int = 96) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(indent) + 3 + len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    lines.append(line)
    if len(lines) == 1:
        return [f"{indent}/* {lines[0]} */"]
    return ([f"{indent}/* {lines[0]}"] + [f"{indent} * {x}" for x in lines[1:-1]]
            + [f"{indent} * {lines[-1]} */"])


def _param(p: Param) -> str:
    base, _, array = p.ctype.partition("[")
    sep = "" if base.endswith("*") else " "
    return f"{base}{sep}{p.name}" + (f"[{array}" if array else "")


def _prototype(c: Call) -> str:
    sep = "" if c.ret.endswith("*") else " "
    params = ", ".join(_param(p) for p in c.params) or "void"
    return f"{c.ret}{sep}{c.name}({params});"


def _enum_lines(e: Enum) -> list[str]:
    out = _comment(e.title + ".")
    out.append("enum {")
    column = max(len(f"    {m.name} = {m.value},") for m in e.members) + 1
    for m in e.members:
        doc = m.doc
        if e is ERROR_CODES and ERRORS[m.value].message:
            doc = f'"{ERRORS[m.value].message}"' + (f" ({doc})" if doc else "")
        line = f"    {m.name} = {m.value},"
        if not doc:
            out.append(line)
        elif column + len(doc) + 6 <= 100:
            out.append(f"{line:<{column}}/* {doc} */")
        else:
            out += [*_comment(doc, "    "), line]
    if e.count:
        out.append(f"    {e.count}")
    out.append("};")
    return out


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_strings(name: str, texts: tuple[str, ...], size: str = "") -> list[str]:
    return [f"static const char *const {name}[{size}] = {{",
            *(f"    {_c_string(t)}," for t in texts), "};"]


def _message_lines() -> list[str]:
    """The messages k_err_message writes (state.c), as templates: {a} and {b}
    are err.a and err.b; after a colon, how to show them (runtime_abi.py)."""
    return [
        "/* Error messages (k_err_message): {a} and {b} stand for err.a and err.b, as",
        " * numbers, or after a colon as a type name, an aggregation (agg), an lhist",
        " * bound or reason (bound, lhist), a byte (char) or a printf conversion (conv). */",
        *_c_strings("krt_error_messages", tuple(e.message for e in ERRORS), "K_E__COUNT"),
        *_c_strings("krt_type_names", TYPE_NAMES),
        *_c_strings("krt_agg_names", AGG_NAMES),
        *_c_strings("krt_lhist_bound_names", LHIST_BOUND_NAMES),
        *_c_strings("krt_lhist_reasons", LHIST_REASONS),
    ]


def render_header() -> str:
    out = [
        "/* ktrt_abi.h -- the runtime ABI: calls, state fields, enums.",
        " *",
        " * Generated by `python -m ktapjit.jit.runtime_abi --write` from",
        " * ktapjit/jit/runtime_abi.py: do not edit. Included by ktrt.h after its types.",
        " */",
        "#ifndef KTAPJIT_KTRT_ABI_H",
        "#define KTAPJIT_KTRT_ABI_H",
        "",
        "/* A hash of the ABI: it changes with any call, field, enum or constant. */",
        f"#define KRT_ABI_VERSION {ABI_VERSION}",
        "",
    ]
    for name, value, doc in CONSTANTS:
        out.append(f"#define {name} {value} /* {doc} */")
    for e in ENUMS:
        out += ["", *_enum_lines(e)]
    out += ["", *_message_lines()]
    out += ["", "/* The public prefix of struct kstate: generated code reads and writes these",
            " * fields directly, at the offsets shown. */", "#define KRT_STATE_PUBLIC_FIELDS \\"]
    offsets = state_offsets()
    for f in STATE_FIELDS:
        decl = f"{f.ctype}{'' if f.ctype.endswith('*') else ' '}{f.name};"
        doc = f"{offsets[f.name]:3d}" + (f" {f.doc}" if f.doc else "")
        out.append(f"    {decl:<22}/* {doc} */ \\")
    out.append("    /* end of the public fields */")
    section = None
    for c in CALLS:
        if c.section != section:
            section = c.section
            out += ["", f"/* ---- {section} " + "-" * max(4, 72 - len(section)) + " */"]
        effects = " ".join(sorted(c.effects)) or "pure"
        out.append("")
        out += _comment(f"{c.doc} [{effects}]" if c.doc else f"[{effects}]")
        out.append(_prototype(c))
    out += ["", "#endif", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = render_header()
    if argv == ["--write"]:
        HEADER.write_text(text)
        print(f"wrote {HEADER}")
        return 0
    if argv == ["--check"]:
        if HEADER.exists() and HEADER.read_text() == text:
            return 0
        print(f"{HEADER} is stale: run python -m ktapjit.jit.runtime_abi --write", file=sys.stderr)
        return 1
    print("usage: python -m ktapjit.jit.runtime_abi --write | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
