/* A probe's kernel filter on the native event path (kernel_filter/language.py).
 *
 * kernel_filter/native.py compiles the filter into a postfix program of 6-word
 * instructions (code, operator, offset, size, kind, value); string patterns
 * and CPUS{} bitmaps live in one byte buffer beside it, an instruction
 * naming its bytes as (offset << 32 | length). filter.py is the reference,
 * quirks included: every predicate here reproduces its compiled matcher
 * byte for byte, reading only the RAW bytes present, and reading a short
 * field the way Python reads a short slice, so a truncated record filters
 * exactly as the Python path filters it.
 */
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

/* Instruction codes, operators and string kinds: feed_filter.py's F_*, the
 * values of its _OPS, S_* and M_*. */
enum {
    KF_F_FALSE, KF_F_CPU, KF_F_FIELD, KF_F_NOT, KF_F_AND, KF_F_OR, KF_F_STRING,
    KF_F_CPU_IN, KF_F_FIELD_IN, KF_F_CPUMASK, KF_F_COUNT
};
enum { KF_OP_EQ, KF_OP_NE, KF_OP_LT, KF_OP_LE, KF_OP_GT, KF_OP_GE, KF_OP_AND };
enum { KF_S_COMM, KF_S_STATIC, KF_S_DYNAMIC, KF_S_RELDYNAMIC };
enum { KF_M_FULL, KF_M_FRONT, KF_M_MIDDLE, KF_M_END, KF_M_GLOB };

/* ---- integers ------------------------------------------------------------ */

static int compare(int64_t op, int64_t a, int64_t b)
{
    switch (op) {
    case KF_OP_EQ: return a == b;
    case KF_OP_NE: return a != b;
    case KF_OP_LT: return a < b;
    case KF_OP_LE: return a <= b;
    case KF_OP_GT: return a > b;
    case KF_OP_GE: return a >= b;
    default: return 0; /* & is not a comparison (filter._compare) */
    }
}

static int compare_unsigned(int64_t op, uint64_t a, uint64_t b)
{
    switch (op) {
    case KF_OP_EQ: return a == b;
    case KF_OP_NE: return a != b;
    case KF_OP_LT: return a < b;
    case KF_OP_LE: return a <= b;
    case KF_OP_GT: return a > b;
    case KF_OP_GE: return a >= b;
    default: return (a & b) != 0;
    }
}

/* How many of the bytes raw[off, off+size) are present in raw[0..n). */
static uint64_t present(uint64_t n, uint64_t off, uint64_t size)
{
    return off < n ? (n - off < size ? n - off : size) : 0;
}

/* A little-endian unsigned read of raw[off, off+size) of the bytes present
 * (Python's int.from_bytes of a short slice); size <= 8. */
static uint64_t partial_read(const uint8_t *raw, uint64_t n, uint64_t off, uint64_t size)
{
    uint64_t k = present(n, off, size), u = 0;
    for (uint64_t i = 0; i < k; i++)
        u |= (uint64_t)raw[off + i] << (8 * i);
    return u;
}

/* A field predicate on raw[0..n): the sign from the last byte present. */
static int field_matches(const int64_t *ins, const uint8_t *raw, uint64_t n)
{
    uint64_t off = (uint64_t)ins[2], size = (uint64_t)ins[3];
    uint64_t k = present(n, off, size), u = partial_read(raw, n, off, size);
    if (!ins[4])
        return compare_unsigned(ins[1], u, (uint64_t)ins[5]);
    if (k && k < 8 && (u >> (8 * k - 1)) & 1)
        u |= ~0ULL << (8 * k);
    return compare(ins[1], (int64_t)u, ins[5]);
}

/* ---- CPUS{} -------------------------------------------------------------- */

/* A CPU list as a bitmap: bit i of byte i / 8 is CPU i. */
typedef struct kf_bits {
    const uint8_t *p;
    uint64_t len;
} kf_bits;

static kf_bits pattern_bytes(const krt_filter *f, int64_t ref)
{
    kf_bits b = {(const uint8_t *)f->patterns + ((uint64_t)ref >> 32), (uint64_t)ref & 0xFFFFFFFF};
    return b;
}

static int has_bit(kf_bits b, uint64_t i)
{
    return i / 8 < b.len && (b.p[i / 8] >> (i % 8)) & 1;
}

/* filter._compile_cpus's scalar_in_mask once the value is known: == never
 * matches a list of several CPUs, != always does, & asks whether the value
 * is one of them (any other operator acts as &). */
static int in_list(int64_t op, kf_bits cpus, uint64_t value)
{
    if (op == KF_OP_EQ)
        return 0;
    if (op == KF_OP_NE)
        return 1;
    return has_bit(cpus, value);
}

/* A scalar field against CPUS{a,b,..}: the whole field as an unsigned
 * number (any size, short data read as far as present), and a value of
 * nr_cpu_ids (ins[4]) or more never matches. */
static int field_in_list(const krt_filter *f, const int64_t *ins, const uint8_t *raw, uint64_t n)
{
    uint64_t off = (uint64_t)ins[2], k = present(n, off, (uint64_t)ins[3]);
    for (uint64_t i = 8; i < k; i++)
        if (raw[off + i])
            return 0; /* 2**64 or more */
    uint64_t value = partial_read(raw, n, off, k < 8 ? k : 8);
    if (value >= (uint64_t)ins[4])
        return 0;
    return in_list(ins[1], pattern_bytes(f, ins[5]), value);
}

/* A __data_loc cpumask_t field against CPUS{..}: its bits are the bytes of
 * raw[start, start+length) present; == and != compare the two sets, any
 * other operator asks whether they share a CPU. */
static int cpumask_matches(const krt_filter *f, const int64_t *ins, const uint8_t *raw, uint64_t n)
{
    uint64_t word = partial_read(raw, n, (uint64_t)ins[2], 4), start = word & 0xFFFF;
    kf_bits have = {start < n ? raw + start : raw, present(n, start, word >> 16)};
    kf_bits want = pattern_bytes(f, ins[5]);
    uint64_t longer = have.len > want.len ? have.len : want.len;
    int same = 1, common = 0;
    for (uint64_t i = 0; i < longer; i++) {
        uint8_t a = i < have.len ? have.p[i] : 0, b = i < want.len ? want.p[i] : 0;
        same &= a == b;
        common |= (a & b) != 0;
    }
    if (ins[1] == KF_OP_EQ)
        return same;
    if (ins[1] == KF_OP_NE)
        return !same;
    return common;
}

/* ---- strings ------------------------------------------------------------- */

/* A string as filter._string_source hands it to the matchers: the bytes
 * p[0..len) then NULs, `size` bytes in all (RAW data: what remains of the
 * record from the string's start and one NUL; comm: exactly 16 bytes).
 * Bytes past `size` do not exist: a comparison reaching them fails, as a
 * Python slice falling short compares unequal. */
typedef struct kf_view {
    const uint8_t *p;
    uint64_t len, size;
} kf_view;

static uint8_t view_at(const kf_view *v, uint64_t i)
{
    return i < v->len ? v->p[i] : 0;
}

/* p[0..n) up to its first NUL: the length of that C string. */
static uint64_t cut(const uint8_t *p, uint64_t n)
{
    const uint8_t *nul = n ? memchr(p, 0, (size_t)n) : NULL;
    return nul ? (uint64_t)(nul - p) : n;
}

/* The C string at the view's start: its length (its bytes are all in p). */
static uint64_t view_strlen(const kf_view *v)
{
    return cut(v->p, v->len);
}

/* Whether the view's bytes [at, at+len) exist and equal s[0..len). */
static int view_equals(const kf_view *v, uint64_t at, const uint8_t *s, uint64_t len)
{
    if (at > v->size || v->size - at < len)
        return 0;
    for (uint64_t i = 0; i < len; i++)
        if (view_at(v, at + i) != s[i])
            return 0;
    return 1;
}

/* filter._strncmp_eq: the first `limit` bytes of each, up to a NUL, equal. */
static int strncmp_equal(const kf_view *v, const uint8_t *pat, uint64_t plen, uint64_t limit)
{
    uint64_t a = view_strlen(v), b = cut(pat, plen < limit ? plen : limit);
    if (a > limit)
        a = limit;
    return a == b && !memcmp(v->p, pat, (size_t)a);
}

/* filter._full: with no length (0) the C strings compare, else strncmp. */
static int full_match(const kf_view *v, const uint8_t *pat, uint64_t plen, uint64_t limit)
{
    if (limit)
        return strncmp_equal(v, pat, plen, limit);
    uint64_t a = view_strlen(v);
    return a == plen && !memcmp(v->p, pat, (size_t)a);
}

/* "abc*": a prefix of the string, unless the kernel's length is shorter. */
static int front_match(const kf_view *v, const uint8_t *pat, uint64_t plen, uint64_t limit)
{
    if (limit && limit < plen)
        return 0;
    return strncmp_equal(v, pat, plen, plen);
}

/* "*abc*": with a length, the kernel's strnstr over raw bytes (NULs
 * included) at every start up to length - plen; without one, a substring
 * of the C string. */
static int middle_match(const kf_view *v, const uint8_t *pat, uint64_t plen, uint64_t limit)
{
    if (!plen)
        return 1;
    uint64_t last;
    if (!limit) {
        uint64_t a = view_strlen(v);
        if (a < plen)
            return 0;
        last = a - plen;
    } else {
        if (limit < plen || v->size < plen)
            return 0;
        last = limit - plen < v->size - plen ? limit - plen : v->size - plen;
    }
    for (uint64_t at = 0; at <= last; at++)
        if (view_equals(v, at, pat, plen))
            return 1;
    return 0;
}

/* "*abc": the kernel compares the plen bytes before the last of its
 * length, whatever they are. */
static int end_match(const kf_view *v, const uint8_t *pat, uint64_t plen, uint64_t limit)
{
    if (limit < 1 || limit - 1 < plen)
        return 0;
    return !plen || view_equals(v, limit - 1 - plen, pat, plen);
}

/* One character class at pat[*p] (just past its '['), matched against c:
 * 1 it matches (*p moves past its ']'), 0 it does not, -1 it is malformed
 * and the '[' is a literal character. */
static int class_match(const uint8_t *pat, uint64_t plen, uint64_t *p, uint8_t c)
{
#define PAT(i) ((i) < plen ? pat[i] : 0)
    int matched = 0, inverted = PAT(*p) == '!';
    uint64_t cls = *p + (uint64_t)inverted;
    uint8_t a = PAT(cls);
    cls++;
    do {
        uint8_t b = a;
        if (!a)
            return -1;
        if (PAT(cls) == '-' && PAT(cls + 1) != ']') {
            b = PAT(cls + 1);
            if (!b)
                return -1;
            cls += 2;
        }
        matched |= a <= c && c <= b;
        a = PAT(cls);
        cls++;
    } while (a != ']');
#undef PAT
    if (matched == inverted)
        return 0;
    *p = cls;
    return 1;
}

/* lib/glob.c's glob_match (filter.glob_match) on the C strings pat[0..plen)
 * and s[0..slen): *, ?, [..] with ranges and [!..], \ escapes; a class,
 * even an inverted one, never matches the end of the string. */
static int glob_match(const uint8_t *pat, uint64_t plen, const uint8_t *s, uint64_t slen)
{
    uint64_t p = 0, i = 0, back_pat = 0, back_str = 0;
    int can_back = 0;
    for (;;) {
        uint8_t c = i < slen ? s[i] : 0, d = p < plen ? pat[p] : 0;
        i++;
        p++;
        int token; /* 1 matched, 0 failed: backtrack; -1 compare c and d */
        switch (d) {
        case '?':
            if (!c)
                return 0;
            token = 1;
            break;
        case '*':
            if (p >= plen)
                return 1; /* a trailing * matches the rest */
            back_pat = p;
            back_str = --i; /* a zero-length match first */
            can_back = 1;
            token = 1;
            break;
        case '[':
            if (!c)
                return 0;
            token = class_match(pat, plen, &p, c);
            break;
        case '\\':
            d = p < plen ? pat[p] : 0;
            p++;
            token = -1;
            break;
        default:
            token = -1;
        }
        if (token < 0) {
            if (c == d) {
                if (!d)
                    return 1;
                continue;
            }
        } else if (token) {
            continue;
        }
        if (!c || !can_back)
            return 0;
        p = back_pat;
        i = ++back_str;
    }
}

/* The bytes a string predicate reads, and the length the kernel passes. */
static kf_view string_view(const int64_t *ins, const uint8_t *raw, uint64_t n, const kstr *comm,
                           uint64_t *limit)
{
    kf_view v = {raw, 0, 1};
    uint64_t off = (uint64_t)ins[2], start = off;
    switch (ins[4]) {
    case KF_S_COMM: /* the task name as the kernel's 16-byte, NUL-padded comm */
        v.p = (const uint8_t *)comm->data;
        v.size = (uint64_t)ins[3];
        v.len = comm->len < v.size ? comm->len : v.size;
        *limit = v.size;
        return v;
    case KF_S_STATIC: /* the kernel reads on past the field, to a NUL */
        *limit = (uint64_t)ins[3];
        break;
    default: { /* __data_loc / __rel_loc: (length << 16 | offset) */
        uint64_t word = partial_read(raw, n, off, 4);
        start = (word & 0xFFFF) + (ins[4] == KF_S_RELDYNAMIC ? off + 4 : 0);
        *limit = word >> 16;
    }
    }
    if (start < n) {
        v.p = raw + start;
        v.len = n - start;
        v.size = v.len + 1;
    }
    return v;
}

/* A string predicate (filter._compile_string): the match kind feed_filter.py
 * chose as filter._regex chooses it, maybe negated. */
static int string_matches(const krt_filter *f, const int64_t *ins, const uint8_t *raw, uint64_t n,
                          const kstr *comm)
{
    if (ins[4] == KF_S_COMM && !comm)
        return 0; /* no task name: no match, negated or not */
    uint64_t limit;
    kf_view v = string_view(ins, raw, n, comm, &limit);
    kf_bits pat = pattern_bytes(f, ins[5]);
    int negate = (int)(ins[1] & 1), m;
    switch (ins[1] >> 1) {
    case KF_M_FRONT: m = front_match(&v, pat.p, pat.len, limit); break;
    case KF_M_MIDDLE: m = middle_match(&v, pat.p, pat.len, limit); break;
    case KF_M_END: m = end_match(&v, pat.p, pat.len, limit); break;
    case KF_M_GLOB: m = glob_match(pat.p, cut(pat.p, pat.len), v.p, view_strlen(&v)); break;
    default: m = full_match(&v, pat.p, pat.len, limit);
    }
    return m != negate;
}

/* ---- the program --------------------------------------------------------- */

static int predicate(const krt_filter *f, const int64_t *ins, const uint8_t *raw, uint64_t n, int has_cpu,
                     uint32_t cpu, const kstr *comm)
{
    switch (ins[0]) {
    case KF_F_CPU:
        return has_cpu && compare(ins[1], (int64_t)cpu, ins[5]);
    case KF_F_FIELD:
        return field_matches(ins, raw, n);
    case KF_F_STRING:
        return string_matches(f, ins, raw, n, comm);
    case KF_F_CPU_IN:
        return has_cpu && in_list(ins[1], pattern_bytes(f, ins[5]), cpu);
    case KF_F_FIELD_IN:
        return field_in_list(f, ins, raw, n);
    case KF_F_CPUMASK:
        return cpumask_matches(f, ins, raw, n);
    default: /* KF_F_FALSE */
        return 0;
    }
}

int krt_filter_matches(const krt_filter *p, const uint8_t *raw, uint64_t n, int has_cpu, uint32_t cpu,
                       const kstr *comm)
{
    uint8_t *stack = p->stack;
    int64_t top = 0;
    for (int64_t i = 0; i < p->n; i++) {
        const int64_t *ins = p->program + 6 * i;
        switch (ins[0]) {
        case KF_F_NOT:
            stack[top - 1] = !stack[top - 1];
            break;
        case KF_F_AND:
        case KF_F_OR:
            top--;
            stack[top - 1] = ins[0] == KF_F_AND ? (stack[top - 1] && stack[top]) : (stack[top - 1] || stack[top]);
            break;
        default:
            stack[top++] = (uint8_t)predicate(p, ins, raw, n, has_cpu, cpu, comm);
        }
    }
    return p->n ? stack[0] : 1; /* krt_filter_set checked the stack's use */
}

/* Whether `ins` is sound: a known code, its bytes inside the pattern
 * buffer; *depth tracks the stack, which must never run dry. */
static int valid_instruction(const int64_t *ins, int64_t npatterns, int64_t *depth)
{
    switch (ins[0]) {
    case KF_F_NOT:
        return *depth >= 1;
    case KF_F_AND:
    case KF_F_OR:
        return (*depth)-- >= 2;
    case KF_F_STRING:
    case KF_F_CPU_IN:
    case KF_F_FIELD_IN:
    case KF_F_CPUMASK: {
        uint64_t at = (uint64_t)ins[5] >> 32, len = (uint64_t)ins[5] & 0xFFFFFFFF;
        if (at > (uint64_t)npatterns || len > (uint64_t)npatterns - at)
            return 0;
        break;
    }
    default:
        if (ins[0] < 0 || ins[0] >= KF_F_COUNT)
            return 0;
    }
    ++*depth;
    return 1;
}

int krt_filter_set(krt_filter *p, const int64_t *program, int64_t n, const char *patterns, int64_t npatterns)
{
    int64_t depth = 0;
    for (int64_t i = 0; i < n; i++)
        if (!valid_instruction(program + 6 * i, npatterns, &depth))
            return -1;
    if (n && depth != 1)
        return -1; /* the program must leave exactly its verdict */
    krt_filter_free(p); /* a probe's filter set again replaces the old one */
    p->program = malloc((size_t)(n ? n : 1) * 6 * sizeof *p->program);
    p->stack = malloc((size_t)(n ? n : 1));
    p->patterns = malloc((size_t)(npatterns ? npatterns : 1));
    if (!p->program || !p->stack || !p->patterns)
        return K_E_NOMEM;
    memcpy(p->program, program, (size_t)n * 6 * sizeof *program);
    if (npatterns)
        memcpy(p->patterns, patterns, (size_t)npatterns);
    p->n = n;
    return K_OK;
}

void krt_filter_free(krt_filter *p)
{
    free(p->program);
    free(p->stack);
    free(p->patterns);
    p->program = NULL;
    p->stack = NULL;
    p->patterns = NULL;
    p->n = 0;
}
