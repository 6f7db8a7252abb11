/*
 * ktrt.h -- the native runtime of ktapjit's LLVM JIT.
 *
 * Generated code and ktapjit/jit/rtlib.py (ctypes) call these functions. The
 * semantics are ktapjit/semantics/ (values.py, intmath.py, printf.py,
 * hist.py, folded.py, agg.py): every function here reproduces them byte for byte, including
 * the error texts, and tests/jit/test_runtime.py checks that.
 *
 * ABI version KRT_ABI_VERSION. Bump it on any change to a struct layout, an
 * enum value or a signature below; JIT object caches are keyed by it.
 *
 * Conventions
 * - Plain C11, no Python headers, no global constructors. Not thread safe:
 *   one run uses the runtime from one thread at a time (the intern table is
 *   process-wide).
 * - Errors are status codes, never longjmp/abort/exit. A function that takes
 *   a kstate returns 0 (K_OK) on success; on failure it stores the code and
 *   its details in state->err and returns the (nonzero) code. Nothing is
 *   written to the output on failure (printf and print_hist validate
 *   everything first) and no table/function is numbered.
 *   Functions without a kstate (k_table_set) return a code only; pass it to
 *   k_fail() to record it.
 * - All memory of a run (tables, the output buffer, the identity map) belongs
 *   to its kstate and is released by k_state_free. Interned strings are
 *   process-wide and never freed.
 */
#ifndef KTAPJIT_KTRT_H
#define KTAPJIT_KTRT_H

#include <stddef.h>
#include <stdint.h>

#define KRT_ABI_VERSION 5

/* ---- values ------------------------------------------------------------ */

/* A value: 16 bytes, passed and returned by value ({i64, i64} in LLVM). */
typedef struct kval {
    int64_t tag;     /* one of KT_* */
    int64_t payload; /* see below */
} kval;

enum {
    KT_NIL = 0,    /* payload 0 */
    KT_BOOL = 1,   /* payload 0 (false) or 1 (true) */
    KT_INT = 2,    /* payload: the int64 */
    KT_STR = 3,    /* payload: (kstr *), interned */
    KT_TABLE = 4,  /* payload: (ktable *) */
    KT_FUNC = 5,   /* payload: (kfunc *), opaque; only its identity is used */
};

/* An interned string. Equal contents <=> same pointer. data[len] == 0 (an
 * extra byte, not counted; data may also contain NULs). Layout is fixed:
 * hash at 0, len at 8, data at 12. */
typedef struct kstr {
    uint64_t hash;
    uint32_t len;
    char data[];
} kstr;

typedef struct kfunc kfunc;
typedef struct kstate kstate;

/* Two values are equal (==) iff tag and payload are both equal: strings are
 * interned, tables and functions compare by identity. */
static inline int k_equal(kval a, kval b) { return a.tag == b.tag && a.payload == b.payload; }

/* The interned string for p[0..len). NULL only when out of memory. */
kstr *k_intern(const char *p, uint32_t len);
/* Number of distinct strings interned so far (for tests and stats). */
uint64_t k_intern_count(void);

/* ---- errors -------------------------------------------------------------- */

enum {
    K_OK = 0,
    K_E_NOMEM = 1,           /* "out of memory" */
    /* type errors; err.a (and err.b) hold the KT_* tags */
    K_E_COMPARE = 2,         /* "attempt to compare T1 with T2" (a, b) */
    K_E_ARITH = 3,           /* "attempt to perform arithmetic on a T value" */
    K_E_CONCAT = 4,          /* "attempt to concatenate a T value" */
    K_E_INDEX = 5,           /* "attempt to index a T value" */
    K_E_CALL = 6,            /* "attempt to call a T value" */
    K_E_LEN = 7,             /* "attempt to get length of a T value" */
    K_E_DIV_ZERO = 8,        /* "divide by zero" */
    K_E_NIL_INDEX = 9,       /* "table index is nil" */
    K_E_TABLE_OVERFLOW = 10, /* "table overflow (N entries)", N = err.a */
    K_E_STRING_TOO_LONG = 11,/* "string too long" */
    K_E_LOOP_LIMIT = 12,     /* "loop limit exceeded (N iterations)", N = err.a */
    K_E_STACK_OVERFLOW = 13, /* "stack overflow (depth N)", N = err.a */
    K_E_TOO_MANY_ARGS = 14,  /* "too many arguments (function takes N, got M)" a, b */
    K_E_FOR_INITIAL = 15,    /* "'for' initial value must be an integer" */
    K_E_FOR_LIMIT = 16,      /* "'for' limit must be an integer" */
    K_E_FOR_STEP = 17,       /* "'for' step must be an integer" */
    K_E_FOR_STEP_ZERO = 18,  /* "'for' step is zero" */
    /* printf */
    K_E_PRINTF_FORMAT = 19,  /* "printf: format must be a string, got T" */
    K_E_PRINTF_ARGS = 20,    /* "printf: not enough arguments" */
    K_E_PRINTF_BADARG = 21,  /* "printf: bad argument for '%C': expected integer, got T"
                                a = conversion byte, b = tag */
    K_E_PRINTF_CONV = 22,    /* "printf: invalid conversion '%C'", a = byte
                                (printed as \xNN unless 0x20..0x7e) */
    K_E_PRINTF_INCOMPLETE = 23, /* "printf: incomplete conversion at end of format" */
    K_E_PRINTF_WIDTH = 24,   /* "printf: width or precision too large" */
    /* print_hist */
    K_E_HIST_TABLE = 25,     /* "print_hist: expected a table, got T" */
    K_E_HIST_ROWS = 26,      /* "print_hist: row count must be an integer, got T" */
    K_E_HIST_VALUES = 27,    /* "print_hist: values must be non-negative integers" */
    /* generated code */
    K_E_EVENT = 28,          /* reading event slot a failed; the engine holds the message */
    K_E_NATIVE_STACK = 29,   /* "native stack exhausted at depth N (raise ulimit -s)", N = a */
    K_E_FOLDED_TABLE = 30,   /* "print_folded: expected a table, got T" */
    K_E_FOLDED_VALUES = 31,  /* "print_folded: values must be non-negative integers" */
    /* aggregations; a = the builtin: 0 hist, 1 lhist, 2 stats */
    K_E_AGG_TABLE = 32,      /* "B: expected a table, got T" (a, b = tag) */
    K_E_AGG_VALUE = 33,      /* "B: value must be an integer, got T" (a, b = tag) */
    K_E_AGG_KIND = 34,       /* "B: existing value is not a B aggregation" (a) */
    K_E_LHIST_BOUND_TYPE = 35, /* "lhist: N must be an integer, got T": a 0 min, 1 max,
                                  2 step; b = tag */
    K_E_LHIST_BOUNDS = 36,   /* "lhist: step must be positive" (a = 1), "min must be less
                                than max" (2), "max - min must be a multiple of step" (3),
                                "too many buckets (more than 1000)" (4) */
    K_E_LHIST_OTHER = 37,    /* "lhist: existing aggregation has other bounds" */
    K_E_PRINT_AGG_TABLE = 38,  /* "print_agg: expected a table, got T" */
    K_E_PRINT_AGG_VALUES = 39, /* "print_agg: values must be aggregations (hist, lhist or stats)" */
    K_E__COUNT
};

typedef struct kerr {
    int64_t code; /* K_* */
    int64_t a;    /* detail, see the enum */
    int64_t b;    /* detail, see the enum */
} kerr;

/* ---- state --------------------------------------------------------------- */

typedef struct kidmap kidmap;   /* private: table/function print numbering */
typedef struct ktable ktable;

/* How a generated function (kcode) returns. */
enum {
    K_RUN_OK = 0,    /* returned normally; *ret holds the value */
    K_RUN_EXIT = 1,  /* exit() ran: unwind to the engine */
    K_RUN_ERROR = 2, /* s->err and s->site describe the error: unwind */
    K_RUN_TAIL = 3,  /* tail call: call s->tail_fn(s->tail_args[0..tail_n)) instead */
};

/* One run's state. Fields up to `stack_floor` are a stable layout that
 * generated code reads and writes directly (offsets in the comments). */
typedef struct kstate {
    int64_t max_table;   /*   0 entries per table (--max-table) */
    int64_t max_string;  /*   8 bytes per made string (--max-string) */
    int64_t max_loop;    /*  16 for generated code: --max-loop */
    int64_t max_depth;   /*  24 for generated code: --max-depth */
    char *out;           /*  32 output buffer: out[0..out_len) pending */
    uint64_t out_len;    /*  40 */
    uint64_t out_cap;    /*  48 */
    int64_t n_tables;    /*  56 tables numbered so far ("table: N") */
    int64_t n_funcs;     /*  64 functions numbered so far ("function: N") */
    kerr err;            /*  72 the last failure; err.code == K_OK when none */
    kval *globals;       /*  96 script globals, then the host values (engine-owned) */
    int64_t now_ns;      /* 104 the current event time (gettimeofday_*) */
    int64_t site;        /* 112 the error site of the last K_RUN_ERROR (-1: none) */
    kval *event;         /* 120 the current event's slots (engine-owned) */
    kval *tail_args;     /* 128 a pending tail call's arguments */
    int64_t tail_n;      /* 136 */
    kfunc *tail_fn;      /* 144 */
    int64_t tail_cap;    /* 152 capacity of tail_args */
    uintptr_t stack_floor; /* 160 calls fail below this native stack address */
    uint64_t stack_budget; /* 168 bytes of native stack a run may use (engine-set) */
    /* private from here on */
    kidmap *ids;
    ktable *all_tables;  /* every table of this run, freed with the state */
    struct karena *arena;    /* cells and closures, freed with the state */
    struct kscratch *scratch; /* pairs snapshots, freed when k_enter returns */
    struct kmark *marks; /* output marks (k_out_marks_on), freed with the state */
    uint64_t n_marks;
    uint64_t marks_cap;
    int marks_on;
} kstate;

kstate *k_state_new(int64_t max_table, int64_t max_string, int64_t max_loop, int64_t max_depth);
void k_state_free(kstate *s);

/* Record a failure: sets s->err = {code, a, b} and returns code. */
int k_fail(kstate *s, int code, int64_t a, int64_t b);
/* Like k_fail for codes from k_table_set (fills N for table overflow). */
int k_fail_table(kstate *s, ktable *t, int code);
/* The message of s->err, without location, NUL-terminated like snprintf:
 * returns the full length (which may be >= cap). */
int k_err_message(kstate *s, char *buf, size_t cap);
/* The language's name of a tag: "nil", "boolean", ... */
const char *k_type_name(int64_t tag);

/* Output: hand the pending bytes to the caller and empty the buffer. The
 * pointer stays valid until the next write to the state. */
void k_out_take(kstate *s, const char **ptr, uint64_t *len);
/* Append raw bytes to the output (0 or K_E_NOMEM). */
int k_out_write(kstate *s, const char *p, uint64_t len);

/* Output marks: where each output item starts and what it holds, so that
 * `-f json` structures the output without reading its text back. Recorded
 * only once k_out_marks_on was called. `at` is an offset into the pending
 * output; the meaning of len, a and b depends on the kind:
 *   KM_PRINT, KM_PRINTF, KM_FOLDED, KM_AGG: an item starts at `at`
 *   KM_HIST: a print_hist item starts at `at`
 *   KM_ROW: a row of the current item: its key or label is out[at..at+len),
 *           a its count, b its bar length (print_folded: a and b are the
 *           low and high 64 bits of its count, a merged sum of counts)
 *   KM_MORE: print_hist left rows out
 *   KM_KEY: a print_agg entry: its key is out[at..at+len), a its kind (KM_AGG_*)
 *   KM_STATS: a stats entry's numbers: at count, len total, a min, b max */
enum { KM_PRINT = 1, KM_PRINTF, KM_HIST, KM_FOLDED, KM_AGG, KM_ROW, KM_MORE, KM_KEY, KM_STATS };
enum { KM_AGG_HIST = 0, KM_AGG_LHIST = 1, KM_AGG_STATS = 2 };
typedef struct kmark {
    int64_t kind, at, len, a, b;
} kmark;
void k_out_marks_on(kstate *s);
/* Hand the pending marks to the caller (taken with the output they describe). */
void k_out_marks_take(kstate *s, const kmark **ptr, uint64_t *n);
/* Record a mark when marks are on (0 or K_E_NOMEM). */
int krt_mark(kstate *s, int64_t kind, int64_t at, int64_t len, int64_t a, int64_t b);
/* Forget the marks after the first n (a failed item's). */
void krt_marks_cut(kstate *s, uint64_t n);

/* ---- tables ---------------------------------------------------------------- */

/* Insertion-ordered open addressing. entries[0..used) is dense in insertion
 * order; a deleted entry becomes a hole (key.tag == KT_NIL) and stays until
 * the next rebuild; a key stored again after deletion is appended at the end.
 * index[] (size mask+1, a power of two >= 2*cap) holds -1 for an empty slot
 * or an entry number; a slot whose entry is a hole is a tombstone. Linear
 * probing from hash & mask. Rebuilt (holes dropped, grown if needed) when
 * `used` reaches `cap`, so index load including tombstones stays <= 1/2. */
typedef struct kentry {
    kval key;
    kval value;
} kentry;

struct ktable {
    kentry *entries;
    int32_t *index;
    uint32_t used;       /* entries[0..used) used, holes included */
    uint32_t count;      /* live entries */
    uint32_t cap;        /* capacity of entries[] */
    uint32_t mask;       /* index size - 1 */
    int64_t max_entries; /* table overflow past this */
    ktable *next_in_state; /* private */
    /* private: the last key found and its index slot (-1: none), because a
     * `t[k] += v` finds the same key twice in a row */
    kval memo_key;
    int64_t memo_slot;
    /* private: stored where it outlives the entry that made it (a global,
     * a cell, a table): only tables without it are freed when it returns */
    int escaped;
    int64_t number; /* its print number ("table: N"), 0 until printed */
};

/* How many tables of the run are allocated now (tests: memory is reclaimed). */
int64_t k_tables_live(kstate *s);
/* Bytes of cells and closures the run holds (tests: memory is reclaimed). */
int64_t k_arena_bytes(kstate *s);

/* The hash of a non-nil key; the probe starts at k_key_hash(k) & mask. */
uint64_t k_key_hash(kval key);

/* A new empty table owned by s (limit s->max_table). NULL when out of memory. */
ktable *k_table_new(kstate *s);
/* 1 and *out = value when key is present, else 0 and *out = nil (also for a
 * nil key). */
int k_table_get(ktable *t, kval key, kval *out);
/* Store; a nil value deletes. Returns K_OK, K_E_NIL_INDEX (nil key, checked
 * first), K_E_TABLE_OVERFLOW (a new key when count >= max_entries) or
 * K_E_NOMEM. The table is unchanged on failure. */
int k_table_set(ktable *t, kval key, kval value);
int64_t k_table_len(ktable *t);
void k_table_clear(ktable *t);

/* The keys present now, in insertion order, for `pairs`. Caller frees. */
typedef struct ksnapshot {
    int64_t len;
    kval keys[];
} ksnapshot;
ksnapshot *k_table_keys(ktable *t); /* NULL when out of memory */
int64_t k_snapshot_len(ksnapshot *snap);
kval k_snapshot_get(ksnapshot *snap, int64_t i); /* nil when out of range */
void k_snapshot_free(ksnapshot *snap);

/* ---- builtins and operators -------------------------------------------------- */

/* The text print writes for v as an interned string (numbers a table or
 * function on first use; no length limit). */
int k_value_text(kstate *s, kval v, kval *out);
/* stringof(v): k_value_text, then K_E_STRING_TOO_LONG above max_string. */
int k_stringof(kstate *s, kval v, kval *out);
/* a .. b: strings and integers (decimal); K_E_CONCAT for the first bad
 * operand; K_E_STRING_TOO_LONG when the result would exceed max_string. */
int k_concat(kstate *s, kval a, kval b, kval *out);
/* -1, 0, 1 for two integers or two strings (unsigned bytes, prefix first);
 * otherwise K_E_COMPARE. */
int k_compare(kstate *s, kval a, kval b, int64_t *out);
/* len(v) of a string or a table; otherwise K_E_LEN. */
int k_len(kstate *s, kval v, int64_t *out);
/* Integer / and % with the language's rules (zero divisor: K_E_DIV_ZERO). */
int k_div(kstate *s, int64_t a, int64_t b, int64_t *out);
int k_mod(kstate *s, int64_t a, int64_t b, int64_t *out);

/* print(args[0..n)): tab separated, then a newline. */
int k_print(kstate *s, const kval *args, int64_t n);
/* printf(fmt, args[0..n)); extra arguments are ignored. */
int k_printf(kstate *s, kval fmt, const kval *args, int64_t n);
/* print_hist(t [, n]); pass nil for n when omitted. */
int k_print_hist(kstate *s, kval table, kval n);
/* print_folded(t): ktapjit/semantics/folded.py. */
int k_print_folded(kstate *s, kval table);
/* Aggregations (agg.c: ktapjit/semantics/agg.py). args[0..3) = t, k, v;
 * lhist's args[3..6) = min, max, step. */
int k_hist(kstate *s, const kval *args);
int k_lhist(kstate *s, const kval *args);
int k_stats(kstate *s, const kval *args);
/* print_agg(t). */
int k_print_agg(kstate *s, kval table);

/* ---- functions, cells and calls (generated code) ------------------------- */

/* Every generated function has this signature. self is the closure called
 * (NULL for an entry function); args[0..nargs) its arguments; depth the call
 * depth (entry functions run at 0). Returns a K_RUN_* status. */
typedef int64_t (*kcode)(kstate *s, kfunc *self, kval *args, int64_t nargs, int64_t depth,
                         kval *ret);

typedef struct kcell {
    kval value;
} kcell;

/* A function value. Layout fixed: code 0, nparams 8, ncells 16, cells 24. */
struct kfunc {
    kcode code;
    int64_t nparams;
    int64_t ncells;
    kcell *cells[];
};

/* New cells and closures live until the state is freed. NULL: out of memory
 * (recorded). A closure's cells are filled in by the caller. */
kcell *k_cell_new(kstate *s, kval v);
/* v is being stored in a global, a cell or a table: when a table, it
 * outlives the entry (k_enter frees the tables an entry made that did not);
 * when a function, the entry's cells and closures do (k_enter reclaims them
 * only when no function escaped). */
void k_escape(kval v);
kfunc *k_closure_new(kstate *s, kcode code, int64_t nparams, int64_t ncells);

/* Call callee(args[0..n)) at depth+1 with the interpreter's checks in its
 * order (callable, argument count, --max-depth), following tail calls.
 * A failed check records its error at `site`. Returns a K_RUN_* status
 * other than K_RUN_TAIL. */
int64_t k_call(kstate *s, kval callee, kval *args, int64_t n, int64_t depth, kval *ret,
               int64_t site);
/* A tail call's checks (callable, argument count) and its argument buffer:
 * store n arguments there and return K_RUN_TAIL. NULL: the check failed,
 * recorded at `site`. */
kval *k_tail_args(kstate *s, kval callee, int64_t n, int64_t site);
/* Run an entry function (top level, probe, timer, trace_end) at depth 0;
 * pairs snapshots made meanwhile are freed. A K_RUN_* status. */
int64_t k_enter(kstate *s, kcode code);

/* Store n constant pairs into t, in order, as n k_table_set calls would:
 * pairs[4i..4i+4) = key tag, key payload, value tag, value payload, where a
 * string's payload is an index into `strings` (the module's interned
 * constants). On failure the error is recorded (as k_fail_table does),
 * *failed is the index of the pair that failed, and the code is returned. */
int k_table_fill(kstate *s, ktable *t, const int64_t *pairs, int64_t n, const int64_t *strings,
                 int64_t *failed);

/* A pairs snapshot owned by the running entry (freed when k_enter returns). */
ksnapshot *k_snapshot_scratch(kstate *s, ktable *t);

/* ---- the native event path (feed.c) ---------------------------------------- */

/* A kfeed runs whole chunks of perf records natively: it decodes headers,
 * finds each sample's bound probes by sample id, fills their event slots
 * from the RAW data at offsets fixed when the feed was built
 * (ktapjit/jit/feed.py), keeps COMM/FORK thread names, fires tick timers
 * and counts lost records. Semantics: ktapjit/tracing/dispatch.py. */
typedef struct kfeed kfeed;

/* What k_feed returns besides the K_RUN_* statuses. */
enum {
    K_FEED_STREAM = 16, /* a corrupt timestamp: k_feed_message, error offset in k_feed_info */
    K_FEED_BAD = 17,    /* a record the feed cannot read (never for input the decoder accepts) */
    K_FEED_MORE = 18,   /* k_feed_release used its budget: more of the round is due */
};

/* How a slot of a bound probe is filled (k_feed_slot). */
enum {
    KF_NIL = 0,           /* nil */
    KF_PID = 1,           /* the sample's pid (nil without PERF_SAMPLE_TID) */
    KF_TID = 2,
    KF_CPU = 3,           /* nil without PERF_SAMPLE_CPU */
    KF_EXECNAME = 4,      /* the thread's comm (":TID" when unknown) */
    KF_CONST = 5,         /* `value` (probename) */
    KF_INT_FIELD = 6,     /* RAW[offset, +size), size 1/2/4/8, flags: signed */
    KF_BYTES_FIELD = 7,   /* RAW[offset, +size) as a string */
    KF_CHARS_FIELD = 8,   /* char[size] at offset, cut at the first NUL */
    KF_DATALOC_STRING = 9,/* __data_loc (flags 0) / __rel_loc (flags 1) char[] */
    KF_FIELD_NIL = 10,    /* nil, but a corrupt record fails the read */
    KF_ARGSTR = 11,       /* the print fmt rendered (the probe's k_feed_argstr program) */
    KF_ARRAY_FIELD = 12,  /* a fixed array as a table from 0: size elements, flags elem | signed << 8 */
    KF_DYN_ARRAY = 13,    /* a __data_loc array: size the location's, flags elem | signed << 8 | rel << 9 */
    KF_SITE_NAME = 14,    /* probename of a site event: the name the u32 at offset indexes (k_feed_sites) */
};

kfeed *k_feed_new(int64_t start_ns);
void k_feed_free(kfeed *f);
/* A sample_type's layout; returns its index (-1: out of memory). */
int64_t k_feed_layout(kfeed *f, uint64_t sample_type, int64_t sample_id_all);
/* mode 0: layout 0 for every record; mode 1: a sample's id at byte id_pos,
 * another record's id is_pos bytes before its end (-1: none). Samples
 * without an id run group noid_group (-1: none). */
void k_feed_resolver(kfeed *f, int64_t mode, int64_t id_pos, int64_t is_pos, int64_t noid_group);
/* Sample id -> its layout and group (-1: no probes). */
int k_feed_id(kfeed *f, uint64_t id, int64_t layout, int64_t group);
int64_t k_feed_group(kfeed *f);
/* Append a bound probe to a group; its index, -1 on failure. prefix and
 * label make the corrupt-record message. */
int64_t k_feed_probe(kfeed *f, int64_t group, kcode code, int64_t fixed_size, const char *prefix,
                     const char *label);
int k_feed_slot(kfeed *f, int64_t probe, int64_t slot, int64_t kind, int64_t offset, int64_t size,
                int64_t flags, kval value);
/* Every dynamic field of the probe's format, in order: a record is corrupt
 * when one points outside it. */
int k_feed_dyn(kfeed *f, int64_t probe, int64_t offset, int64_t size, int64_t relative,
               const char *name);
/* The probe's filter: n instructions of 6 words and the string patterns
 * they name (jit/feed_filter.py). */
int k_feed_filter(kfeed *f, int64_t probe, const int64_t *program, int64_t n, const char *patterns,
                  int64_t npatterns);
/* The probe's argstr program (events/printfmt/bytecode.py): n instructions of 4
 * words, the text they name in blob[0..nblob). 0, K_E_NOMEM, or -1 when it
 * is not a valid program. KF_ARGSTR slots render it (argstr.c). */
int k_feed_argstr(kfeed *f, int64_t probe, const int64_t *program, int64_t n, const char *blob,
                  int64_t nblob);
/* Render one argstr program over RAW data raw[0..len) into *out (an
 * interned string): what a KF_ARGSTR slot holds. 0, K_E_NOMEM, or -1 (not
 * a valid program). For tests and tools; feeds keep their programs. */
int k_argstr_eval(const int64_t *program, int64_t n, const char *blob, int64_t nblob, const uint8_t *raw,
                  uint64_t len, kval *out);
/* The probe's site table (events/probes/probe_sites.py): names[0..n), interned
 * strings, copied. KF_SITE_NAME slots read it. 0, K_E_NOMEM, or -1. */
int k_feed_sites(kfeed *f, int64_t probe, const kval *names, int64_t n);
/* A tick timer, first due at start_ns + period; add in declaration order. */
int k_feed_timer(kfeed *f, int64_t period, kcode code);
/* Run records: offsets[0..n) into buf when offsets is not NULL, else every
 * record of buf[0..len) in order. base is added to offsets in messages.
 * K_RUN_OK when all ran; K_RUN_EXIT/K_RUN_ERROR when an entry stopped
 * tracing (s->err, s->site as usual); K_FEED_STREAM, K_FEED_BAD. */
int64_t k_feed(kstate *s, kfeed *f, const uint8_t *buf, uint64_t len, const uint64_t *offsets,
               uint64_t n, uint64_t base);
/* The number of records in buf[0..len), -1 when a header is broken. */
int64_t k_feed_count(const uint8_t *buf, uint64_t len);
/* The offsets of buf's records in the order perf delivers a perf.data data
 * section (events/records/merge.py order_perf_rounds: by time, ties in file order,
 * flushed at FINISHED_ROUND; untimed records at once), into out[0..cap).
 * The count, or -1 when a record is one the Python decoder would reject (or
 * the native path cannot check as it does): then that path must run. */
int64_t k_feed_order(kfeed *f, const uint8_t *buf, uint64_t len, uint64_t *out, uint64_t cap);
/* Live rings (events/records/merge.py StreamMerger): queue a copy of the records
 * of one CPU's drained bytes; 0, or -1 when a record is one the decoder
 * would reject (nothing is queued then). */
int k_feed_push(kfeed *f, int64_t cpu, const uint8_t *buf, uint64_t len);
/* Run what a round releases (final: everything), as k_feed runs records,
 * at most budget records per call (0: no limit): K_FEED_MORE when records
 * of the round are still due; the next call goes on with the same round
 * (its final is then ignored). Bounded calls let the caller see signals. */
int64_t k_feed_release(kstate *s, kfeed *f, int64_t final, uint64_t budget);
/* Drop every queued record; the number of samples among them. */
int64_t k_feed_discard(kfeed *f);
/* on: k_feed_release copies each record it runs, as it runs it, into a
 * buffer: k_feed_kept (its *len is UINT64_MAX once a copy failed for want
 * of memory) and
 * k_feed_kept_clear. A recording then holds exactly what ran. */
void k_feed_keep(kfeed *f, int64_t on);
const uint8_t *k_feed_kept(kfeed *f, uint64_t *len);
void k_feed_kept_clear(kfeed *f);
/* out = last_time, lost (low 64 bits), consumed, stopped_at (record index,
 * -1), error_offset, samples (run through probes), lost (high 64 bits). */
void k_feed_info(kfeed *f, int64_t out[7]);
/* The message of the last corrupt record a probe failed to read event slot
 * `slot` of (a site index has its own: one record can fail both ways); of
 * K_FEED_STREAM. */
const char *k_feed_fault(kfeed *f, int64_t slot);
const char *k_feed_message(kfeed *f);

#endif
