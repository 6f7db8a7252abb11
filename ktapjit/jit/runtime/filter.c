/* A probe's kernel filter on the native event path (frontend/filter.py).
 *
 * jit/feed_filter.py compiles the filter into a postfix program of 6-word
 * instructions (op, operator, offset, size, flags/kind, value); string
 * predicates point into one pattern buffer. Every read stays inside the
 * RAW bytes present, reading a short field the way Python's int.from_bytes
 * reads a short slice, so a truncated record filters exactly as the Python
 * path filters it.
 */
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

enum { KF_F_FALSE, KF_F_CPU, KF_F_FIELD, KF_F_NOT, KF_F_AND, KF_F_OR, KF_F_STRING };
enum { KF_S_COMM, KF_S_STATIC, KF_S_DYNAMIC, KF_S_RELDYNAMIC };

static int compare(int64_t op, int64_t a, int64_t b)
{
    switch (op) {
    case 0: return a == b;
    case 1: return a != b;
    case 2: return a < b;
    case 3: return a <= b;
    case 4: return a > b;
    case 5: return a >= b;
    default: return 0; /* & is not a comparison (filter._compare) */
    }
}

static int compare_unsigned(int64_t op, uint64_t a, uint64_t b)
{
    switch (op) {
    case 0: return a == b;
    case 1: return a != b;
    case 2: return a < b;
    case 3: return a <= b;
    case 4: return a > b;
    case 5: return a >= b;
    default: return (a & b) != 0;
    }
}

/* A little-endian unsigned read of raw[off, off+size) of the bytes present. */
static uint64_t partial_read(const uint8_t *raw, uint64_t n, uint64_t off, uint64_t size)
{
    uint64_t k = off < n ? (n - off < size ? n - off : size) : 0, u = 0;
    for (uint64_t i = 0; i < k; i++)
        u |= (uint64_t)raw[off + i] << (8 * i);
    return u;
}

/* A field predicate on raw[0..n): only the bytes present are read (Python's
 * int.from_bytes of a short slice), the sign from the last of them. */
static int field_matches(const int64_t *ins, const uint8_t *raw, uint64_t n)
{
    uint64_t off = (uint64_t)ins[2], size = (uint64_t)ins[3];
    uint64_t k = off < n ? (n - off < size ? n - off : size) : 0, u = partial_read(raw, n, off, size);
    if (!ins[4])
        return compare_unsigned(ins[1], u, (uint64_t)ins[5]);
    if (k && k < 8 && (u >> (8 * k - 1)) & 1)
        u |= ~0ULL << (8 * k);
    return compare(ins[1], (int64_t)u, ins[5]);
}

/* p[0..n) up to its first NUL: the length of that C string. */
static uint64_t cut(const uint8_t *p, uint64_t n)
{
    const uint8_t *nul = n ? memchr(p, 0, (size_t)n) : NULL;
    return nul ? (uint64_t)(nul - p) : n;
}

/* filter._full: the kernel's whole-string match of s[0..slen) (a C string
 * there, the bytes we have here) against the pattern, `limit` the length
 * the kernel passes (0: compare the C strings). */
static int full_match(const uint8_t *s, uint64_t slen, const uint8_t *pat, uint64_t plen, uint64_t limit)
{
    if (!limit) {
        uint64_t a = cut(s, slen);
        return a == plen && !memcmp(s, pat, (size_t)a);
    }
    uint64_t a = cut(s, slen < limit ? slen : limit), b = cut(pat, plen < limit ? plen : limit);
    return a == b && !memcmp(s, pat, (size_t)a);
}

/* A string predicate (filter._compile_string, whole-string matches only). */
static int string_matches(const krt_filter *p, const int64_t *ins, const uint8_t *raw, uint64_t n,
                          const kstr *comm)
{
    const uint8_t *pat = (const uint8_t *)p->patterns + ((uint64_t)ins[5] >> 32);
    uint64_t plen = (uint64_t)ins[5] & 0xFFFFFFFF, off = (uint64_t)ins[2];
    const uint8_t *s = raw;
    uint64_t slen = 0, limit;
    switch (ins[4]) {
    case KF_S_COMM: /* the task name, as the kernel's 16-byte comm */
        s = (const uint8_t *)comm->data;
        slen = comm->len;
        limit = 16;
        break;
    case KF_S_STATIC: /* the kernel reads on past the field, to a NUL */
        if (off < n) {
            s = raw + off;
            slen = n - off;
        }
        limit = (uint64_t)ins[3];
        break;
    default: { /* __data_loc / __rel_loc */
        uint64_t word = partial_read(raw, n, off, 4), start = word & 0xFFFF;
        if (ins[4] == KF_S_RELDYNAMIC)
            start += off + 4;
        if (start < n) {
            s = raw + start;
            slen = n - start;
        }
        limit = word >> 16;
    }
    }
    return full_match(s, slen, pat, plen, limit) != (int)ins[1];
}

int krt_filter_matches(const krt_filter *p, const uint8_t *raw, uint64_t n, int has_cpu, uint32_t cpu,
                       const kstr *comm)
{
    uint8_t *stack = p->stack;
    int64_t top = 0;
    for (int64_t i = 0; i < p->n; i++) {
        const int64_t *ins = p->program + 6 * i;
        switch (ins[0]) {
        case KF_F_CPU:
            stack[top++] = has_cpu && compare(ins[1], (int64_t)cpu, ins[5]);
            break;
        case KF_F_FIELD:
            stack[top++] = (uint8_t)field_matches(ins, raw, n);
            break;
        case KF_F_STRING:
            stack[top++] = (uint8_t)string_matches(p, ins, raw, n, comm);
            break;
        case KF_F_NOT:
            if (top < 1) return 0;
            stack[top - 1] = !stack[top - 1];
            break;
        case KF_F_AND:
        case KF_F_OR:
            if (top < 2) return 0;
            top--;
            stack[top - 1] = ins[0] == KF_F_AND ? (stack[top - 1] && stack[top]) : (stack[top - 1] || stack[top]);
            break;
        default:
            stack[top++] = 0;
        }
    }
    return top == 1 && stack[0];
}

int krt_filter_set(krt_filter *p, const int64_t *program, int64_t n, const char *patterns, int64_t npatterns)
{
    p->program = malloc((size_t)(n ? n : 1) * 6 * sizeof *p->program);
    p->stack = malloc((size_t)(n ? n : 1));
    p->patterns = malloc((size_t)(npatterns ? npatterns : 1));
    if (!p->program || !p->stack || !p->patterns)
        return K_E_NOMEM;
    memcpy(p->program, program, (size_t)n * 6 * sizeof *program);
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
