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
    return tag >= 0 && tag <= KT_FUNC ? krt_type_names[tag] : "?";
}

/* snprintf's contract over pieces: writes what fits of them into buf[0..cap)
 * NUL-terminated, and counts all of them. */
typedef struct msgbuf {
    char *buf;
    size_t cap;
    size_t len;
} msgbuf;

static void put(msgbuf *m, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++, m->len++)
        if (m->len + 1 < m->cap)
            m->buf[m->len] = p[i];
}

static void put_str(msgbuf *m, const char *p) { put(m, p, strlen(p)); }

/* One {a:kind} of a message template (ktrt_abi.h's krt_error_messages). */
static void put_field(msgbuf *m, int64_t v, const char *kind, size_t n)
{
    char text[32];
    if (n == 4 && !memcmp(kind, "type", 4)) {
        put_str(m, k_type_name(v));
    } else if (n == 3 && !memcmp(kind, "agg", 3)) {
        put_str(m, krt_agg_names[v == 0 || v == 1 ? v : 2]);
    } else if (n == 5 && !memcmp(kind, "bound", 5)) {
        put_str(m, krt_lhist_bound_names[v == 0 || v == 1 ? v : 2]);
    } else if (n == 5 && !memcmp(kind, "lhist", 5)) {
        put_str(m, krt_lhist_reasons[v >= 1 && v <= 4 ? v : 0]);
    } else if (n == 4 && !memcmp(kind, "char", 4)) {
        char c = (char)v;
        put(m, &c, 1);
    } else if (n == 4 && !memcmp(kind, "conv", 4) && v >= 0x20 && v < 0x7f) {
        char c = (char)v;
        put(m, &c, 1);
    } else if (n == 4 && !memcmp(kind, "conv", 4)) {
        put(m, text, (size_t)snprintf(text, sizeof text, "\\x%02x", (unsigned)(v & 255)));
    } else {
        put(m, text, (size_t)snprintf(text, sizeof text, "%lld", (long long)v));
    }
}

int k_err_message(kstate *s, char *buf, size_t cap)
{
    int64_t code = s->err.code;
    if (code < 0 || code >= K_E__COUNT)
        return snprintf(buf, cap, "unknown runtime error %lld", (long long)code);
    msgbuf m = {buf, cap, 0};
    for (const char *p = krt_error_messages[code]; *p;) {
        const char *close = p[0] == '{' ? strchr(p, '}') : NULL;
        if (!close) {
            put(&m, p++, 1);
            continue;
        }
        const char *kind = p[2] == ':' ? p + 3 : close;
        put_field(&m, p[1] == 'a' ? s->err.a : s->err.b, kind, (size_t)(close - kind));
        p = close + 1;
    }
    if (cap)
        buf[m.len < cap ? m.len : cap - 1] = 0;
    return (int)m.len;
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
