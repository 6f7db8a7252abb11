/* Aggregations (hist, lhist, stats, print_agg): ktapjit/semantics/agg.py,
 * byte for byte. An aggregation is an ordinary table: a "kind" field, the
 * integer fields of its kind, and buckets keyed by the least value they
 * count (docs/language-notes.md, "Aggregations"). */
#include <stdio.h>
#include <string.h>

#include "ktrt_private.h"

#define LHIST_MAX_BUCKETS 1000
#define AGG_BAR 52
#define HIST_BUCKETS 65 /* negatives, 0, then 2^0 .. 2^62 */

/* The kinds, in K_E_AGG_* messages' order. */
enum { AGG_HIST = 0, AGG_LHIST = 1, AGG_STATS = 2 };

/* The field names, interned once (interned strings are never freed). The
 * kinds' names follow the fields, in AGG_* order. */
enum { F_KIND, F_MIN, F_MAX, F_STEP, F_SUM, F_COUNT, F_KINDS, N_NAMES = F_KINDS + 3 };
static const char *const name_text[N_NAMES] = {"kind", "min", "max", "step", "sum",
                                               "count", "hist", "lhist", "stats"};
static kstr *names[N_NAMES];

/* The fields of each kind after "kind", in the order a new one stores them. */
static const int kind_fields[3][4] = {
    {F_SUM}, {F_MIN, F_MAX, F_STEP, F_SUM}, {F_COUNT, F_SUM, F_MIN, F_MAX}};
static const int kind_nfields[3] = {1, 4, 4};

static int names_ready(kstate *s)
{
    if (names[N_NAMES - 1])
        return K_OK;
    for (int i = 0; i < N_NAMES; i++) {
        names[i] = k_intern(name_text[i], (uint32_t)strlen(name_text[i]));
        if (!names[i])
            return k_fail(s, K_E_NOMEM, 0, 0);
    }
    return K_OK;
}

static kval name(int i)
{
    kval v = {KT_STR, (int64_t)(intptr_t)names[i]};
    return v;
}

static kval integer(int64_t n)
{
    kval v = {KT_INT, n};
    return v;
}

static int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

static kval field(ktable *t, int f)
{
    kval v;
    k_table_get(t, name(f), &v);
    return v;
}

#define TABLE(v) ((ktable *)(intptr_t)(v).payload)

/* ---- buckets ---- */

static int64_t hist_bucket(int64_t v)
{
    if (v < 0)
        return INT64_MIN;
    return v ? (int64_t)(1ULL << (63 - __builtin_clzll((uint64_t)v))) : 0;
}

static int64_t lhist_bucket(int64_t v, int64_t lo, int64_t hi, int64_t step)
{
    if (v < lo)
        return INT64_MIN;
    if (v >= hi)
        return hi;
    uint64_t offset = ((uint64_t)v - (uint64_t)lo) / (uint64_t)step * (uint64_t)step;
    return (int64_t)((uint64_t)lo + offset);
}

/* 0, or why (lo, hi, step) cannot make an lhist (K_E_LHIST_BOUNDS' a). */
static int lhist_bounds_error(int64_t lo, int64_t hi, int64_t step)
{
    if (step <= 0)
        return 1;
    if (lo >= hi)
        return 2;
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    if (span % (uint64_t)step)
        return 3;
    if (span / (uint64_t)step > LHIST_MAX_BUCKETS)
        return 4;
    return 0;
}

/* ---- updates ---- */

static int check_target(kstate *s, int kind, const kval *args)
{
    if (args[0].tag != KT_TABLE)
        return k_fail(s, K_E_AGG_TABLE, kind, args[0].tag);
    if (args[2].tag != KT_INT)
        return k_fail(s, K_E_AGG_VALUE, kind, args[2].tag);
    return names_ready(s);
}

/* A new aggregation: kind, then pairs[0..n), stored into t[key]. */
static int add_new(kstate *s, ktable *t, kval key, int kind, const kval *pairs, int n)
{
    ktable *agg = k_table_new(s);
    if (!agg)
        return k_fail(s, K_E_NOMEM, 0, 0);
    int rc = k_table_set(agg, name(F_KIND), name(F_KINDS + kind));
    for (int i = 0; rc == K_OK && i < n; i++)
        rc = k_table_set(agg, pairs[2 * i], pairs[2 * i + 1]);
    if (rc)
        return k_fail_table(s, agg, rc);
    kval value = {KT_TABLE, (int64_t)(intptr_t)agg};
    rc = k_table_set(t, key, value);
    return rc ? k_fail_table(s, t, rc) : K_OK;
}

static int is_kind(kval agg, int kind)
{
    if (agg.tag != KT_TABLE)
        return 0;
    kval k = field(TABLE(agg), F_KIND);
    return k.tag == KT_STR && k.payload == name(F_KINDS + kind).payload;
}

/* hist and lhist: bounds is NULL for hist. */
static int update_histogram(kstate *s, int kind, const kval *args, int64_t bucket,
                            const int64_t *bounds)
{
    ktable *t = TABLE(args[0]);
    kval key = args[1];
    int64_t v = args[2].payload;
    if (key.tag == KT_NIL)
        return k_fail(s, K_E_NIL_INDEX, 0, 0);
    kval agg;
    if (!k_table_get(t, key, &agg)) {
        kval pairs[10];
        int n = 0;
        for (int i = 0; bounds && i < 3; i++) {
            pairs[2 * n] = name(F_MIN + i);
            pairs[2 * n++ + 1] = integer(bounds[i]);
        }
        pairs[2 * n] = name(F_SUM);
        pairs[2 * n++ + 1] = integer(v);
        pairs[2 * n] = integer(bucket);
        pairs[2 * n++ + 1] = integer(1);
        return add_new(s, t, key, kind, pairs, n);
    }
    if (!is_kind(agg, kind))
        return k_fail(s, K_E_AGG_KIND, kind, 0);
    ktable *a = TABLE(agg);
    for (int i = 0; bounds && i < 3; i++) {
        kval held = field(a, F_MIN + i);
        if (held.tag != KT_INT || held.payload != bounds[i])
            return k_fail(s, K_E_LHIST_OTHER, 0, 0);
    }
    kval total = field(a, F_SUM), count;
    k_table_get(a, integer(bucket), &count);
    if (total.tag != KT_INT || (count.tag != KT_NIL && count.tag != KT_INT))
        return k_fail(s, K_E_AGG_KIND, kind, 0);
    /* only a new bucket can overflow: first */
    int rc = k_table_set(a, integer(bucket), integer(wrap_add(count.payload, 1)));
    if (!rc)
        rc = k_table_set(a, name(F_SUM), integer(wrap_add(total.payload, v)));
    return rc ? k_fail_table(s, a, rc) : K_OK;
}

int k_hist(kstate *s, const kval *args)
{
    int rc = check_target(s, AGG_HIST, args);
    return rc ? rc : update_histogram(s, AGG_HIST, args, hist_bucket(args[2].payload), NULL);
}

int k_lhist(kstate *s, const kval *args)
{
    int rc = check_target(s, AGG_LHIST, args);
    if (rc)
        return rc;
    int64_t bounds[3];
    for (int i = 0; i < 3; i++) {
        if (args[3 + i].tag != KT_INT)
            return k_fail(s, K_E_LHIST_BOUND_TYPE, i, args[3 + i].tag);
        bounds[i] = args[3 + i].payload;
    }
    int why = lhist_bounds_error(bounds[0], bounds[1], bounds[2]);
    if (why)
        return k_fail(s, K_E_LHIST_BOUNDS, why, 0);
    int64_t bucket = lhist_bucket(args[2].payload, bounds[0], bounds[1], bounds[2]);
    return update_histogram(s, AGG_LHIST, args, bucket, bounds);
}

int k_stats(kstate *s, const kval *args)
{
    int rc = check_target(s, AGG_STATS, args);
    if (rc)
        return rc;
    ktable *t = TABLE(args[0]);
    kval key = args[1];
    int64_t v = args[2].payload;
    if (key.tag == KT_NIL)
        return k_fail(s, K_E_NIL_INDEX, 0, 0);
    kval agg;
    if (!k_table_get(t, key, &agg)) {
        kval pairs[8] = {name(F_COUNT), integer(1), name(F_SUM), integer(v),
                         name(F_MIN),   integer(v), name(F_MAX), integer(v)};
        return add_new(s, t, key, AGG_STATS, pairs, 4);
    }
    if (!is_kind(agg, AGG_STATS))
        return k_fail(s, K_E_AGG_KIND, AGG_STATS, 0);
    ktable *a = TABLE(agg);
    kval count = field(a, F_COUNT), total = field(a, F_SUM), least = field(a, F_MIN),
         most = field(a, F_MAX);
    if (count.tag != KT_INT || total.tag != KT_INT || least.tag != KT_INT || most.tag != KT_INT)
        return k_fail(s, K_E_AGG_KIND, AGG_STATS, 0);
    rc = k_table_set(a, name(F_COUNT), integer(wrap_add(count.payload, 1)));
    if (!rc)
        rc = k_table_set(a, name(F_SUM), integer(wrap_add(total.payload, v)));
    if (!rc)
        rc = k_table_set(a, name(F_MIN), integer(v < least.payload ? v : least.payload));
    if (!rc)
        rc = k_table_set(a, name(F_MAX), integer(v > most.payload ? v : most.payload));
    return rc ? k_fail_table(s, a, rc) : K_OK;
}

/* ---- print_agg ---- */

/* The kind of a well-formed aggregation, or -1. */
static int agg_kind(kval v)
{
    if (v.tag != KT_TABLE)
        return -1;
    kval k = field(TABLE(v), F_KIND);
    for (int kind = 0; kind < 3; kind++)
        if (k.tag == KT_STR && k.payload == name(F_KINDS + kind).payload)
            return kind;
    return -1;
}

static int is_field(int kind, kval key)
{
    if (key.tag != KT_STR)
        return 0;
    if (key.payload == name(F_KIND).payload)
        return 1;
    for (int i = 0; i < kind_nfields[kind]; i++)
        if (key.payload == name(kind_fields[kind][i]).payload)
            return 1;
    return 0;
}

typedef struct lbounds {
    int64_t lo, hi, step;
} lbounds;

static lbounds bounds_of(ktable *a)
{
    lbounds b = {field(a, F_MIN).payload, field(a, F_MAX).payload, field(a, F_STEP).payload};
    return b;
}

static int is_bucket(int kind, const lbounds *b, int64_t key)
{
    if (kind == AGG_HIST)
        return key == INT64_MIN || key == 0 || (key > 0 && (key & (key - 1)) == 0);
    if (key < b->lo)
        return key == INT64_MIN;
    return key == b->hi ||
           (key < b->hi && ((uint64_t)key - (uint64_t)b->lo) % (uint64_t)b->step == 0);
}

static int well_formed(kval v)
{
    int kind = agg_kind(v);
    if (kind < 0)
        return 0;
    ktable *a = TABLE(v);
    for (int i = 0; i < kind_nfields[kind]; i++)
        if (field(a, kind_fields[kind][i]).tag != KT_INT)
            return 0;
    if (kind == AGG_STATS)
        return field(a, F_COUNT).payload >= 1 && a->count == 5;
    lbounds b = bounds_of(a);
    if (kind == AGG_LHIST && lhist_bounds_error(b.lo, b.hi, b.step))
        return 0;
    for (uint32_t i = 0; i < a->used; i++) {
        const kentry *e = &a->entries[i];
        if (e->key.tag == KT_NIL || is_field(kind, e->key))
            continue;
        if (e->key.tag != KT_INT || !is_bucket(kind, &b, e->key.payload))
            return 0;
        if (e->value.tag != KT_INT || e->value.payload < 0)
            return 0;
    }
    return 1;
}

/* The position of a bucket key in its kind's ascending sequence. */
static int64_t bucket_index(int kind, const lbounds *b, int64_t key)
{
    if (kind == AGG_HIST) {
        if (key == INT64_MIN)
            return 0;
        return key ? 2 + (63 - __builtin_clzll((uint64_t)key)) : 1;
    }
    int below = b->lo > INT64_MIN;
    if (key < b->lo)
        return 0;
    return below + (int64_t)(((uint64_t)key - (uint64_t)b->lo) / (uint64_t)b->step);
}

static int power_label(char *o, int power)
{
    static const char suffix[] = "\0KMGTPE";
    int n = sprintf(o, "%llu", 1ULL << (power % 10));
    if (power >= 10)
        o[n++] = suffix[power / 10];
    o[n] = 0;
    return n;
}

static int number_label(char *o, int64_t n, int64_t step)
{
    if (n != 0 && step % 1048576 == 0 && n % 1048576 == 0)
        return sprintf(o, "%lldM", (long long)(n / 1048576));
    if (n != 0 && step % 1024 == 0 && n % 1024 == 0)
        return sprintf(o, "%lldK", (long long)(n / 1024));
    return sprintf(o, "%lld", (long long)n);
}

/* The label of the bucket at index i of its sequence. */
static void bucket_label(char *o, int kind, const lbounds *b, int64_t i)
{
    if (kind == AGG_HIST) {
        if (i == 0) {
            strcpy(o, "(..., 0)");
        } else if (i <= 2) {
            sprintf(o, "[%d]", (int)(i - 1));
        } else {
            *o++ = '[';
            o += power_label(o, (int)(i - 2));
            *o++ = ',';
            *o++ = ' ';
            o += power_label(o, (int)(i - 1));
            strcpy(o, ")");
        }
        return;
    }
    int below = b->lo > INT64_MIN;
    int64_t n = (int64_t)(((uint64_t)b->hi - (uint64_t)b->lo) / (uint64_t)b->step);
    if (below && i == 0) {
        o += sprintf(o, "(..., ");
        o += number_label(o, b->lo, b->step);
        strcpy(o, ")");
    } else if (i == below + n) {
        *o++ = '[';
        o += number_label(o, b->hi, b->step);
        strcpy(o, ", ...)");
    } else {
        int64_t start = (int64_t)((uint64_t)b->lo + (uint64_t)(i - below) * (uint64_t)b->step);
        *o++ = '[';
        o += number_label(o, start, b->step);
        *o++ = ',';
        *o++ = ' ';
        o += number_label(o, wrap_add(start, b->step), b->step);
        strcpy(o, ")");
    }
}

static int write_row(kstate *s, const char *label, int64_t count, int64_t most)
{
    uint64_t bar = most ? (uint64_t)((unsigned __int128)count * AGG_BAR / (uint64_t)most) : 0;
    char line[128 + AGG_BAR];
    if (krt_mark(s, KM_ROW, (int64_t)s->out_len, (int64_t)strlen(label), count, (int64_t)bar))
        return K_E_NOMEM;
    int n = snprintf(line, sizeof line, "%-16s%8lld |", label, (long long)count);
    memset(line + n, '@', bar);
    memset(line + n + bar, ' ', AGG_BAR - bar);
    n += AGG_BAR;
    line[n++] = '|';
    line[n++] = '\n';
    return k_out_write(s, line, (uint64_t)n) ? K_E_NOMEM : K_OK;
}

static int write_histogram(kstate *s, int kind, ktable *a)
{
    lbounds b = kind == AGG_LHIST ? bounds_of(a) : (lbounds){0, 0, 1};
    int64_t counts[LHIST_MAX_BUCKETS + 2] = {0};
    int64_t first = -1, last = -1, most = 0;
    for (uint32_t i = 0; i < a->used; i++) {
        const kentry *e = &a->entries[i];
        if (e->key.tag != KT_INT)
            continue;
        int64_t at = bucket_index(kind, &b, e->key.payload);
        counts[at] = e->value.payload;
        if (first < 0 || at < first)
            first = at;
        if (at > last)
            last = at;
        if (e->value.payload > most)
            most = e->value.payload;
    }
    char label[96];
    for (int64_t i = first; first >= 0 && i <= last; i++) {
        bucket_label(label, kind, &b, i);
        if (write_row(s, label, counts[i], most))
            return K_E_NOMEM;
    }
    return k_out_write(s, "\n", 1) ? K_E_NOMEM : K_OK;
}

static int write_entry(kstate *s, kval key, kval value)
{
    char scratch[KRT_TEXT_SCRATCH];
    const char *text;
    uint64_t len;
    if (krt_text(s, key, scratch, &text, &len))
        return K_E_NOMEM;
    int kind = agg_kind(value);
    ktable *a = TABLE(value);
    int64_t km = kind == AGG_HIST ? KM_AGG_HIST : kind == AGG_LHIST ? KM_AGG_LHIST : KM_AGG_STATS;
    if (krt_mark(s, KM_KEY, (int64_t)s->out_len, (int64_t)len, km, 0))
        return K_E_NOMEM;
    if (k_out_write(s, text, len))
        return K_E_NOMEM;
    if (kind != AGG_STATS)
        return k_out_write(s, ":\n", 2) ? K_E_NOMEM : write_histogram(s, kind, a);
    int64_t count = field(a, F_COUNT).payload, total = field(a, F_SUM).payload;
    if (krt_mark(s, KM_STATS, count, total, field(a, F_MIN).payload, field(a, F_MAX).payload))
        return K_E_NOMEM;
    char line[160];
    int n = snprintf(line, sizeof line, ": count %lld, average %lld, total %lld, min %lld, max %lld\n",
                     (long long)count, (long long)(total / count), (long long)total,
                     (long long)field(a, F_MIN).payload, (long long)field(a, F_MAX).payload);
    return k_out_write(s, line, (uint64_t)n) ? K_E_NOMEM : K_OK;
}

int k_print_agg(kstate *s, kval table)
{
    if (table.tag != KT_TABLE)
        return k_fail(s, K_E_PRINT_AGG_TABLE, table.tag, 0);
    int rc = names_ready(s);
    if (rc)
        return rc;
    ktable *t = TABLE(table);
    /* Validate every value before printing anything or numbering any key. */
    for (uint32_t i = 0; i < t->used; i++) {
        const kentry *e = &t->entries[i];
        if (e->key.tag != KT_NIL && !well_formed(e->value))
            return k_fail(s, K_E_PRINT_AGG_VALUES, 0, 0);
    }
    uint64_t start = s->out_len, marks = s->n_marks;
    rc = krt_mark(s, KM_AGG, (int64_t)start, 0, 0, 0);
    for (uint32_t i = 0; rc == K_OK && i < t->used; i++) {
        const kentry *e = &t->entries[i];
        if (e->key.tag != KT_NIL)
            rc = write_entry(s, e->key, e->value);
    }
    if (rc) {
        s->out_len = start;
        krt_marks_cut(s, marks);
        return k_fail(s, K_E_NOMEM, 0, 0);
    }
    return K_OK;
}
