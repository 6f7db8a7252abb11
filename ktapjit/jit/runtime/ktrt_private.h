/* Declarations shared between the runtime's own C files; not part of the ABI. */
#ifndef KTAPJIT_KTRT_PRIVATE_H
#define KTAPJIT_KTRT_PRIVATE_H

#include "ktrt.h"

/* splitmix64's finaliser: a cheap full-avalanche 64-bit mix. */
static inline uint64_t krt_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* The print number of a table or function (numbered on first request), or
 * -1 when out of memory. */
int64_t krt_identity(kstate *s, kval v);

/* Make room for `extra` more output bytes (0 or K_E_NOMEM, recorded). */
int krt_out_reserve(kstate *s, uint64_t extra);

/* Scratch space large enough for any non-string value text. */
#define KRT_TEXT_SCRATCH 48

/* The print text of v: *p points at the bytes (a string's own data or
 * scratch). Returns 0 or K_E_NOMEM (recorded). */
int krt_text(kstate *s, kval v, char scratch[KRT_TEXT_SCRATCH], const char **p, uint64_t *len);

/* Free every table of the run; free the tables made since `mark` (the head
 * of s->all_tables then) that did not escape (table.c). Tables are made
 * newest first, so an entry's own are the ones in front of its mark. */
void krt_tables_free(kstate *s);
void krt_tables_sweep(kstate *s, ktable *mark);

/* Functions stored where they outlive an entry, ever, by any run of the
 * process: an entry whose run leaves it unchanged made no closure that
 * outlives it. Only ever compared for equality, so another thread's
 * increments can only make an entry keep what it could have freed. */
extern volatile int64_t krt_func_escapes;

/* Memory of generated code's cells and closures (calls.c). */
void krt_arena_free(kstate *s);
/* Pairs snapshots of the running entry (calls.c). */
void krt_scratch_free(kstate *s);

/* A kernel filter compiled by kernel_filter/native.py (filter.c). */
typedef struct krt_filter {
    int64_t *program; /* 6 words an instruction, postfix */
    int64_t n;        /* instructions; 0: no filter */
    uint8_t *stack;   /* n truth values, for evaluating it */
    char *patterns;   /* string patterns and CPUS{} bitmaps */
} krt_filter;

/* Check and copy a program in: 0, K_E_NOMEM, or -1 when it is malformed
 * (an unknown instruction, bytes outside `patterns`, an unbalanced stack).
 * krt_filter_free frees what krt_filter_set made. */
int krt_filter_set(krt_filter *p, const int64_t *program, int64_t n, const char *patterns, int64_t npatterns);
void krt_filter_free(krt_filter *p);
/* Whether a sample with RAW data raw[0..n) passes the filter; cpu counts
 * when has_cpu, comm is the task name the kernel's filter sees. */
int krt_filter_matches(const krt_filter *p, const uint8_t *raw, uint64_t n, int has_cpu, uint32_t cpu,
                       const kstr *comm);

/* A print fmt compiled by events/printfmt/bytecode.py (argstr.c): 4 words an
 * instruction, text in the blob. */
typedef struct krt_argstr {
    int64_t *code;
    int64_t n; /* instructions; 0: none registered */
    char *blob;
} krt_argstr;

/* A growable output buffer, reused between renders. */
typedef struct krt_buf {
    char *p;
    uint64_t len, cap;
} krt_buf;

/* Whether code[0..n) (with a blob of nblob bytes) is safe to run. */
int krt_argstr_valid(const int64_t *code, int64_t n, int64_t nblob);
/* Validate and copy a program in: 0, K_E_NOMEM, or -1 (not a valid program). */
int krt_argstr_set(krt_argstr *a, const int64_t *code, int64_t n, const char *blob, int64_t nblob);
void krt_argstr_free(krt_argstr *a);
/* Render over RAW data raw[0..n) into out (its len reset first): 0,
 * K_E_NOMEM (the text would pass 4 GiB or memory ran out), or -1 (a
 * program the compiler never makes). */
int krt_argstr_render(const krt_argstr *a, const uint8_t *raw, uint64_t n, krt_buf *out);

#endif
