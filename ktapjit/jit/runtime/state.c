/* Run state: limits, output buffer, print numbering of tables and
 * functions, and error reporting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

/* Identity numbering of functions: (tag, payload) -> number, open addressing
 * (a table keeps its own number, so freeing it leaves nothing behind). */
struct kidmap {
    uint64_t mask;
    uint64_t count;
    struct idslot {
        int64_t tag; /* KT_NIL marks an empty slot */
        int64_t payload;
        int64_t number;
    } *slots;
};

kstate *k_state_new(int64_t max_table, int64_t max_string, int64_t max_loop, int64_t max_depth)
{
    kstate *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->max_table = max_table;
    s->max_string = max_string;
    s->max_loop = max_loop;
    s->max_depth = max_depth;
    s->site = -1;
    return s;
}

void k_state_free(kstate *s)
{
    if (!s)
        return;
    krt_tables_free(s);
    if (s->ids) {
        free(s->ids->slots);
        free(s->ids);
    }
    krt_arena_free(s);
    krt_scratch_free(s);
    free(s->tail_args);
    free(s->out);
    free(s->marks);
    free(s);
}

/* ---- errors ---- */

int k_fail(kstate *s, int code, int64_t a, int64_t b)
{
    s->err.code = code;
    s->err.a = a;
    s->err.b = b;
    return code;
}

int k_fail_table(kstate *s, ktable *t, int code)
{
    return k_fail(s, code, code == K_E_TABLE_OVERFLOW ? t->max_entries : 0, 0);
}

const char *k_type_name(int64_t tag)
{
    static const char *const names[] = {"nil",    "boolean", "integer",
                                        "string", "table",   "function"};
    return tag >= 0 && tag <= KT_FUNC ? names[tag] : "?";
}

static const char *agg_name(int64_t which)
{
    return which == 0 ? "hist" : which == 1 ? "lhist" : "stats";
}

int k_err_message(kstate *s, char *buf, size_t cap)
{
    int64_t a = s->err.a, b = s->err.b;
    switch (s->err.code) {
    case K_OK: return snprintf(buf, cap, "%s", "");
    case K_E_NOMEM: return snprintf(buf, cap, "out of memory");
    case K_E_COMPARE:
        return snprintf(buf, cap, "attempt to compare %s with %s", k_type_name(a), k_type_name(b));
    case K_E_ARITH:
        return snprintf(buf, cap, "attempt to perform arithmetic on a %s value", k_type_name(a));
    case K_E_CONCAT:
        return snprintf(buf, cap, "attempt to concatenate a %s value", k_type_name(a));
    case K_E_INDEX: return snprintf(buf, cap, "attempt to index a %s value", k_type_name(a));
    case K_E_CALL: return snprintf(buf, cap, "attempt to call a %s value", k_type_name(a));
    case K_E_LEN: return snprintf(buf, cap, "attempt to get length of a %s value", k_type_name(a));
    case K_E_DIV_ZERO: return snprintf(buf, cap, "divide by zero");
    case K_E_NIL_INDEX: return snprintf(buf, cap, "table index is nil");
    case K_E_TABLE_OVERFLOW:
        return snprintf(buf, cap, "table overflow (%lld entries)", (long long)a);
    case K_E_STRING_TOO_LONG: return snprintf(buf, cap, "string too long");
    case K_E_LOOP_LIMIT:
        return snprintf(buf, cap, "loop limit exceeded (%lld iterations)", (long long)a);
    case K_E_STACK_OVERFLOW:
        return snprintf(buf, cap, "stack overflow (depth %lld)", (long long)a);
    case K_E_TOO_MANY_ARGS:
        return snprintf(buf, cap, "too many arguments (function takes %lld, got %lld)",
                        (long long)a, (long long)b);
    case K_E_FOR_INITIAL: return snprintf(buf, cap, "'for' initial value must be an integer");
    case K_E_FOR_LIMIT: return snprintf(buf, cap, "'for' limit must be an integer");
    case K_E_FOR_STEP: return snprintf(buf, cap, "'for' step must be an integer");
    case K_E_FOR_STEP_ZERO: return snprintf(buf, cap, "'for' step is zero");
    case K_E_PRINTF_FORMAT:
        return snprintf(buf, cap, "printf: format must be a string, got %s", k_type_name(a));
    case K_E_PRINTF_ARGS: return snprintf(buf, cap, "printf: not enough arguments");
    case K_E_PRINTF_BADARG:
        return snprintf(buf, cap, "printf: bad argument for '%%%c': expected integer, got %s",
                        (char)a, k_type_name(b));
    case K_E_PRINTF_CONV:
        if (a >= 0x20 && a < 0x7f)
            return snprintf(buf, cap, "printf: invalid conversion '%%%c'", (char)a);
        return snprintf(buf, cap, "printf: invalid conversion '%%\\x%02x'", (unsigned)(a & 255));
    case K_E_PRINTF_INCOMPLETE:
        return snprintf(buf, cap, "printf: incomplete conversion at end of format");
    case K_E_PRINTF_WIDTH: return snprintf(buf, cap, "printf: width or precision too large");
    case K_E_HIST_TABLE:
        return snprintf(buf, cap, "print_hist: expected a table, got %s", k_type_name(a));
    case K_E_HIST_ROWS:
        return snprintf(buf, cap, "print_hist: row count must be an integer, got %s",
                        k_type_name(a));
    case K_E_HIST_VALUES:
        return snprintf(buf, cap, "print_hist: values must be non-negative integers");
    case K_E_FOLDED_TABLE:
        return snprintf(buf, cap, "print_folded: expected a table, got %s", k_type_name(a));
    case K_E_FOLDED_VALUES:
        return snprintf(buf, cap, "print_folded: values must be non-negative integers");
    case K_E_AGG_TABLE:
        return snprintf(buf, cap, "%s: expected a table, got %s", agg_name(a), k_type_name(b));
    case K_E_AGG_VALUE:
        return snprintf(buf, cap, "%s: value must be an integer, got %s", agg_name(a),
                        k_type_name(b));
    case K_E_AGG_KIND:
        return snprintf(buf, cap, "%s: existing value is not a %s aggregation", agg_name(a),
                        agg_name(a));
    case K_E_LHIST_BOUND_TYPE:
        return snprintf(buf, cap, "lhist: %s must be an integer, got %s",
                        a == 0 ? "min" : a == 1 ? "max" : "step", k_type_name(b));
    case K_E_LHIST_BOUNDS: {
        static const char *const why[] = {"?", "step must be positive", "min must be less than max",
                                          "max - min must be a multiple of step",
                                          "too many buckets (more than 1000)"};
        return snprintf(buf, cap, "lhist: %s", why[a >= 1 && a <= 4 ? a : 0]);
    }
    case K_E_LHIST_OTHER: return snprintf(buf, cap, "lhist: existing aggregation has other bounds");
    case K_E_PRINT_AGG_TABLE:
        return snprintf(buf, cap, "print_agg: expected a table, got %s", k_type_name(a));
    case K_E_PRINT_AGG_VALUES:
        return snprintf(buf, cap, "print_agg: values must be aggregations (hist, lhist or stats)");
    case K_E_EVENT: return snprintf(buf, cap, "event slot %lld could not be read", (long long)a);
    case K_E_NATIVE_STACK:
        return snprintf(buf, cap,
                        "native stack exhausted at depth %lld (raise the limit with ulimit -s)",
                        (long long)a);
    default: return snprintf(buf, cap, "unknown runtime error %lld", (long long)s->err.code);
    }
}

/* ---- output ---- */

int krt_out_reserve(kstate *s, uint64_t extra)
{
    if (s->out && s->out_cap - s->out_len >= extra)
        return K_OK; /* (the first call allocates, so s->out is never NULL after it) */
    uint64_t cap = s->out_cap ? s->out_cap : 4096;
    while (cap - s->out_len < extra)
        cap *= 2;
    char *p = realloc(s->out, cap);
    if (!p)
        return k_fail(s, K_E_NOMEM, 0, 0);
    s->out = p;
    s->out_cap = cap;
    return K_OK;
}

int k_out_write(kstate *s, const char *p, uint64_t len)
{
    int rc = krt_out_reserve(s, len);
    if (rc)
        return rc;
    if (len)
        memcpy(s->out + s->out_len, p, len);
    s->out_len += len;
    return K_OK;
}

void k_out_take(kstate *s, const char **ptr, uint64_t *len)
{
    *ptr = s->out;
    *len = s->out_len;
    s->out_len = 0;
}

void k_out_marks_on(kstate *s)
{
    s->marks_on = 1;
}

void k_out_marks_take(kstate *s, const kmark **ptr, uint64_t *n)
{
    *ptr = s->marks;
    *n = s->n_marks;
    s->n_marks = 0;
}

int krt_mark(kstate *s, int64_t kind, int64_t at, int64_t len, int64_t a, int64_t b)
{
    if (!s->marks_on)
        return K_OK;
    if (s->n_marks == s->marks_cap) {
        uint64_t cap = s->marks_cap ? s->marks_cap * 2 : 64;
        kmark *p = realloc(s->marks, cap * sizeof *p);
        if (!p)
            return k_fail(s, K_E_NOMEM, 0, 0);
        s->marks = p;
        s->marks_cap = cap;
    }
    s->marks[s->n_marks++] = (kmark){kind, at, len, a, b};
    return K_OK;
}

void krt_marks_cut(kstate *s, uint64_t n)
{
    if (s->n_marks > n)
        s->n_marks = n;
}

/* ---- identities ---- */

static int idmap_grow(kidmap *m)
{
    uint64_t size = m->slots ? (m->mask + 1) * 2 : 64;
    struct idslot *fresh = calloc(size, sizeof *fresh);
    if (!fresh)
        return -1;
    if (m->slots) {
        for (uint64_t i = 0; i <= m->mask; i++) {
            struct idslot *o = &m->slots[i];
            if (o->tag == KT_NIL)
                continue;
            uint64_t j = k_key_hash((kval){o->tag, o->payload}) & (size - 1);
            while (fresh[j].tag != KT_NIL)
                j = (j + 1) & (size - 1);
            fresh[j] = *o;
        }
        free(m->slots);
    }
    m->slots = fresh;
    m->mask = size - 1;
    return 0;
}

int64_t krt_identity(kstate *s, kval v)
{
    if (v.tag == KT_TABLE) { /* kept in the table: a freed table leaves no stale entry */
        ktable *t = (ktable *)(intptr_t)v.payload;
        return t->number ? t->number : (t->number = ++s->n_tables);
    }
    /* a numbered closure keeps its memory: its address must stay its own */
    krt_func_escapes++;
    if (!s->ids && !(s->ids = calloc(1, sizeof *s->ids)))
        return -1;
    kidmap *m = s->ids;
    if ((!m->slots || (m->count + 1) * 2 > m->mask + 1) && idmap_grow(m) != 0)
        return -1;
    uint64_t i = k_key_hash(v) & m->mask;
    for (; m->slots[i].tag != KT_NIL; i = (i + 1) & m->mask) {
        if (m->slots[i].tag == v.tag && m->slots[i].payload == v.payload)
            return m->slots[i].number;
    }
    int64_t n = ++s->n_funcs; /* tables number themselves, above */
    m->slots[i].tag = v.tag;
    m->slots[i].payload = v.payload;
    m->slots[i].number = n;
    m->count++;
    return n;
}
