/*
 * ktrt.h -- the native runtime of ktapjit's LLVM JIT.
 *
 * Generated code and ktapjit/jit/rtlib.py (ctypes) call the runtime. Its
 * calls, the public state fields and the enums are one table,
 * ktapjit/jit/runtime_abi.py, which generates ktrt_abi.h (included below,
 * after the types it names); this file holds the types and the conventions.
 * The semantics are ktapjit/semantics/ (values.py, intmath.py, printf.py,
 * hist.py, folded.py, agg.py): every function reproduces them byte for byte,
 * including the error texts, and tests/jit/test_runtime.py checks that.
 *
 * ABI version KRT_ABI_VERSION, a hash of the table: JIT object caches are
 * keyed by it. A change to a struct layout here must change the table too
 * (tests/jit/test_runtime_abi.py checks the state layout).
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

/* ---- values ------------------------------------------------------------ */

/* A value: 16 bytes, passed and returned by value ({i64, i64} in LLVM). */
typedef struct kval {
    int64_t tag;     /* one of KT_* */
    int64_t payload; /* see below */
} kval;

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

/* ---- errors -------------------------------------------------------------- */

typedef struct kerr {
    int64_t code; /* K_* */
    int64_t a;    /* detail, see the enum */
    int64_t b;    /* detail, see the enum */
} kerr;

/* ---- state --------------------------------------------------------------- */

typedef struct kidmap kidmap;   /* private: table/function print numbering */
typedef struct ktable ktable;

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
typedef struct kmark {
    int64_t kind, at, len, a, b;
} kmark;

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

/* The keys present now, in insertion order, for `pairs`. Caller frees. */
typedef struct ksnapshot {
    int64_t len;
    kval keys[];
} ksnapshot;

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

/* ---- the native event path (feed.c) ---------------------------------------- */

/* A kfeed runs whole chunks of perf records natively: it decodes headers,
 * finds each sample's bound probes by sample id, fills their event slots
 * from the RAW data at offsets fixed when the feed was built
 * (ktapjit/jit/feed.py), keeps COMM/FORK thread names, fires tick timers
 * and counts lost records. Semantics: ktapjit/tracing/dispatch.py. */
typedef struct kfeed kfeed;

/* A record walker compiled per session (ktapjit/jit/walker.py, set with
 * k_feed_walker): runs the record rec[0..size) when it is a sample of a
 * shape it was compiled for and no timer is due by its time (due: the first
 * timer's due time, INT64_MAX when none); then io[0] is the sample's time
 * and io[1] 1 when it counts as a sample, and it returns a K_RUN_* status.
 * Otherwise it returns K_FEED_DECLINED having changed nothing the script
 * can see, and the generic walker runs the record. It reads the feed only
 * through k_feed_comm. */
typedef int64_t (*kwalk)(kstate *s, kfeed *f, const uint8_t *rec, uint64_t size, int64_t due, int64_t *io);

/* The calls, the public state fields and the enums. */
#include "ktrt_abi.h"

/* ---- the run state ------------------------------------------------------- */

/* One run's state. Its public prefix (KRT_STATE_PUBLIC_FIELDS) is a stable
 * layout that generated code reads and writes directly. */
typedef struct kstate {
    KRT_STATE_PUBLIC_FIELDS
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

/* Record a mark when marks are on (0 or K_E_NOMEM). */
int krt_mark(kstate *s, int64_t kind, int64_t at, int64_t len, int64_t a, int64_t b);
/* Forget the marks after the first n (a failed item's). */
void krt_marks_cut(kstate *s, uint64_t n);

#endif
