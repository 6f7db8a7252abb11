/* The native event path: a kfeed runs a whole chunk of perf records.
 *
 * The reference meaning is ktapjit/tracing/dispatch.py (StreamDriver) with
 * sample_event.py's event values; every rule below mirrors a line there:
 * COMM/FORK keep each thread's name, records with no real time do not move
 * the clock, tick timers fire at start + k*N before a record with the same
 * time (ties in declaration order), the corrupt-timestamp guard stops the
 * stream, every probe bound to a sample id runs in declaration order, and
 * nothing runs once an entry exited or failed. A probe's event slots are
 * filled from the RAW data at offsets the plan fixed (ktapjit/jit/feed.py);
 * a field of a corrupt record becomes a slot with a negative tag, so the
 * error is reported where the body reads it, with the text the Python path
 * gives (kept in the feed for the engine). A probe's kernel filter, when
 * it has one, runs in filter.c. argstr renders the probe's print fmt program
 * (argstr.c) over the RAW bytes there are, without the corrupt-record
 * checks: the Python path renders it from the raw data too.
 *
 * Every read from the record buffer is bounds-checked: a malformed record
 * ends the chunk with K_FEED_BAD, never a crash.
 *
 * The other parts of the path, one file for each Python reference:
 * feed_records.c reads records as events/records/decode.py does,
 * feed_order.c orders a perf.data file (events/records/merge.py
 * order_perf_rounds) and feed_live.c merges live rings (merge.py
 * StreamMerger); feed_private.h is what they share.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed_private.h"

/* ---- a small hash map ---- */

static int map_grow(kf_map *m)
{
    uint64_t old_cap = m->keys ? m->mask + 1 : 0, cap = old_cap ? old_cap * 2 : 64;
    uint64_t *old_keys = m->keys;
    int64_t *old_vals = m->vals;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        free(m->keys);
        free(m->vals);
        m->keys = old_keys;
        m->vals = old_vals;
        return K_E_NOMEM;
    }
    m->mask = cap - 1;
    m->used = 0;
    for (uint64_t i = 0; i < old_cap; i++)
        if (old_keys[i])
            map_put(m, old_keys[i], old_vals[i]);
    free(old_keys);
    free(old_vals);
    return K_OK;
}

int map_put(kf_map *m, uint64_t key, int64_t val)
{
    if (key == 0) {
        m->has_zero = 1;
        m->zero = val;
        return K_OK;
    }
    if ((!m->keys || 2 * (m->used + 1) > m->mask + 1) && map_grow(m))
        return K_E_NOMEM;
    uint64_t i = krt_mix64(key) & m->mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & m->mask;
    if (!m->keys[i])
        m->used++;
    m->keys[i] = key;
    m->vals[i] = val;
    return K_OK;
}

int map_get(const kf_map *m, uint64_t key, int64_t *val)
{
    if (key == 0) {
        *val = m->zero;
        return m->has_zero;
    }
    if (!m->keys)
        return 0;
    uint64_t i = krt_mix64(key) & m->mask;
    while (m->keys[i]) {
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 0;
}

/* ---- building ---- */

kfeed *k_feed_new(int64_t start_ns)
{
    kfeed *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->last_time = start_ns;
    f->noid_group = -1;
    f->is_pos = -1;
    f->stopped_at = -1;
    f->site_slot = -1;
    kstr *swapper = k_intern("swapper", 7); /* perf's name of the idle task */
    if (!swapper || map_put(&f->comms, 0, (int64_t)(intptr_t)swapper)) {
        k_feed_free(f);
        return NULL;
    }
    return f;
}

void k_feed_free(kfeed *f)
{
    if (!f)
        return;
    for (int64_t i = 0; i < f->nprobes; i++) {
        kf_probe *p = &f->probes[i];
        free(p->prefix);
        free(p->label);
        free(p->slots);
        for (int64_t j = 0; j < p->ndyn; j++)
            free(p->dyn[j].name);
        free(p->dyn);
        krt_filter_free(&p->filter);
        krt_argstr_free(&p->argstr);
        free(p->sites);
    }
    for (int64_t i = 0; i < f->ngroups; i++)
        free(f->groups[i].probes);
    free(f->probes);
    free(f->groups);
    free(f->layouts);
    free(f->timers);
    free(f->ids.keys);
    free(f->ids.vals);
    free(f->comms.keys);
    free(f->comms.vals);
    live_free(f->live);
    free(f->kept);
    free(f->argbuf.p);
    free(f);
}

/* Grow array *p of *n elements by one zeroed element; its index or -1. */
static int64_t push(void **p, int64_t *n, size_t size)
{
    void *q = realloc(*p, (size_t)(*n + 1) * size);
    if (!q)
        return -1;
    memset((char *)q + (size_t)*n * size, 0, size);
    *p = q;
    return (*n)++;
}

int64_t k_feed_layout(kfeed *f, uint64_t sample_type, int64_t sample_id_all)
{
    int64_t i = push((void **)&f->layouts, &f->nlayouts, sizeof(kf_layout));
    if (i < 0)
        return -1;
    kf_layout *l = &f->layouts[i];
    int64_t p = 8; /* the fixed head, in kernel order (events/records/decode.py _FIXED) */
    l->id = l->tid = l->time = l->cpu = -1;
    if (sample_type & S_IDENTIFIER) { l->id = p; p += 8; }
    if (sample_type & S_IP) p += 8;
    if (sample_type & S_TID) { l->tid = p + 4; p += 8; }
    if (sample_type & S_TIME) { l->time = p; p += 8; }
    if (sample_type & S_ADDR) p += 8;
    if (sample_type & S_ID) { l->id = p; p += 8; }
    if (sample_type & S_STREAM_ID) p += 8;
    if (sample_type & S_CPU) { l->cpu = p; p += 8; }
    if (sample_type & S_PERIOD) p += 8;
    l->head_end = p;
    l->has_callchain = !!(sample_type & S_CALLCHAIN);
    l->has_raw = !!(sample_type & S_RAW);
    /* the sample_id trailer: TID, TIME, ID, STREAM_ID, CPU, IDENTIFIER */
    l->trailer_time = -1;
    if (sample_id_all) {
        int64_t t = 0;
        if (sample_type & S_TID) t += 8;
        if (sample_type & S_TIME) { l->trailer_time = t; t += 8; }
        if (sample_type & S_ID) t += 8;
        if (sample_type & S_STREAM_ID) t += 8;
        if (sample_type & S_CPU) t += 8;
        if (sample_type & S_IDENTIFIER) t += 8;
        l->trailer_size = t;
    }
    return i;
}

void k_feed_resolver(kfeed *f, int64_t mode, int64_t id_pos, int64_t is_pos, int64_t noid_group)
{
    f->mode = mode;
    f->id_pos = id_pos;
    f->is_pos = is_pos;
    f->noid_group = noid_group;
}

int k_feed_id(kfeed *f, uint64_t id, int64_t layout, int64_t group)
{
    f->has_last_id = 0;
    return map_put(&f->ids, id, (layout << 32) | (group + 1));
}

int64_t k_feed_group(kfeed *f)
{
    return push((void **)&f->groups, &f->ngroups, sizeof(kf_group));
}

static char *dup_text(const char *t)
{
    size_t n = strlen(t);
    char *p = malloc(n + 1);
    if (p)
        memcpy(p, t, n + 1);
    return p;
}

int64_t k_feed_probe(kfeed *f, int64_t group, kcode code, int64_t fixed_size, const char *prefix,
                     const char *label)
{
    if (group < 0 || group >= f->ngroups)
        return -1;
    kf_group *g = &f->groups[group];
    int64_t *ps = realloc(g->probes, (size_t)(g->n + 1) * sizeof *ps);
    if (!ps)
        return -1;
    g->probes = ps;
    int64_t i = push((void **)&f->probes, &f->nprobes, sizeof(kf_probe));
    if (i < 0)
        return -1;
    kf_probe *p = &f->probes[i];
    p->code = code;
    p->fixed_size = fixed_size;
    p->prefix = dup_text(prefix);
    p->label = dup_text(label);
    if (!p->prefix || !p->label)
        return -1;
    g->probes[g->n++] = i;
    return i;
}

int k_feed_slot(kfeed *f, int64_t probe, int64_t slot, int64_t kind, int64_t offset, int64_t size,
                int64_t flags, kval value)
{
    kf_probe *p = &f->probes[probe];
    int64_t i = push((void **)&p->slots, &p->nslots, sizeof(kf_slot));
    if (i < 0)
        return K_E_NOMEM;
    kf_slot s = {slot, kind, offset, size, flags, value};
    p->slots[i] = s;
    p->needs_comm |= kind == KF_EXECNAME;
    if (kind == KF_SITE_NAME)
        f->site_slot = slot;
    return K_OK;
}

int k_feed_dyn(kfeed *f, int64_t probe, int64_t offset, int64_t size, int64_t relative,
               const char *name)
{
    kf_probe *p = &f->probes[probe];
    int64_t i = push((void **)&p->dyn, &p->ndyn, sizeof(kf_dyn));
    if (i < 0)
        return K_E_NOMEM;
    kf_dyn d = {offset, size, relative, dup_text(name)};
    p->dyn[i] = d;
    return d.name ? K_OK : K_E_NOMEM;
}

int k_feed_filter(kfeed *f, int64_t probe, const int64_t *program, int64_t n, const char *patterns,
                  int64_t npatterns)
{
    return krt_filter_set(&f->probes[probe].filter, program, n, patterns, npatterns);
}

int k_feed_argstr(kfeed *f, int64_t probe, const int64_t *program, int64_t n, const char *blob,
                  int64_t nblob)
{
    if (probe < 0 || probe >= f->nprobes)
        return -1;
    return krt_argstr_set(&f->probes[probe].argstr, program, n, blob, nblob);
}

int k_feed_sites(kfeed *f, int64_t probe, const kval *names, int64_t n)
{
    if (probe < 0 || probe >= f->nprobes || n < 0)
        return -1;
    kf_probe *p = &f->probes[probe];
    kval *copy = malloc((size_t)(n ? n : 1) * sizeof *copy);
    if (!copy)
        return K_E_NOMEM;
    memcpy(copy, names, (size_t)n * sizeof *copy);
    free(p->sites);
    p->sites = copy;
    p->nsites = n;
    return K_OK;
}

int k_feed_timer(kfeed *f, int64_t period, kcode code)
{
    int64_t i = push((void **)&f->timers, &f->ntimers, sizeof(kf_timer));
    if (i < 0)
        return K_E_NOMEM;
    kf_timer t = {(__int128)f->last_time + period, period, code};
    f->timers[i] = t;
    return K_OK;
}

/* last_time, lost (low word), consumed, stopped_at, error_offset, samples, lost (high word) */
void k_feed_info(kfeed *f, int64_t out[7])
{
    out[0] = f->last_time;
    out[1] = (int64_t)(uint64_t)f->lost;
    out[6] = (int64_t)(uint64_t)(f->lost >> 64);
    out[2] = f->consumed;
    out[3] = f->stopped_at;
    out[4] = f->error_offset;
    out[5] = f->samples;
}

const char *k_feed_fault(kfeed *f, int64_t slot) { return slot == f->site_slot ? f->site_fault : f->fault; }
const char *k_feed_message(kfeed *f) { return f->message; }

/* ---- running entries ---- */

static int64_t run_entry(kstate *s, kcode code, int64_t now)
{
    s->now_ns = now;
    return k_enter(s, code);
}

/* The timer due first; ties go to the one declared first. */
static kf_timer *next_timer(kfeed *f)
{
    kf_timer *first = NULL;
    for (int64_t i = 0; i < f->ntimers; i++)
        if (!first || f->timers[i].due < first->due)
            first = &f->timers[i];
    return first;
}

/* dispatch.StreamDriver.advance. K_RUN_OK, a stopping status, or K_FEED_STREAM. */
static int64_t advance(kstate *s, kfeed *f, int64_t time, uint64_t offset)
{
    kf_timer *first = next_timer(f);
    if (first && (__int128)time - first->due > (__int128)MAX_TIMER_CATCH_UP * first->period) {
        /* Only a corrupt timestamp jumps this far; firing every tick would hang. */
        snprintf(f->message, sizeof f->message, "timestamp %lld jumps %lld ns ahead of the stream",
                 (long long)time, (long long)((__int128)time - f->last_time));
        f->error_offset = (int64_t)offset;
        return K_FEED_STREAM;
    }
    int64_t status = K_RUN_OK;
    while (first && first->due <= time) {
        int64_t due = (int64_t)first->due; /* <= time here */
        first->due += first->period;
        status = run_entry(s, first->code, due);
        if (status != K_RUN_OK)
            break;
        first = next_timer(f);
    }
    if (time > f->last_time) /* the clock moves even when a timer stopped tracing */
        f->last_time = time;
    return status;
}

/* Where a dynamic field's data is (schema._dynamic_reader): 0 when it points
 * outside the record (then *start, *end are what the message names). */
static int dyn_span(const kf_dyn *d, const uint8_t *raw, uint64_t n, int64_t *start, int64_t *end)
{
    uint64_t loc = rd(raw + d->offset, d->size == 4 ? 4 : 2);
    int64_t s0 = (int64_t)(loc & 0xFFFF);
    /* 2-byte locations (very old kernels) carry no length: data runs to the end */
    int64_t length = d->size == 4 ? (int64_t)(loc >> 16) : (int64_t)n - s0;
    *start = d->relative ? s0 + d->offset + d->size : s0;
    *end = *start + length;
    return *end <= (int64_t)n;
}

/* Whether the RAW data decodes for probe p (schema decode: size, then every
 * dynamic field in format order); when not, the fault text is set. */
static int record_valid(kfeed *f, const kf_probe *p, const kf_rec *r, const uint8_t *raw, uint64_t n)
{
    if ((int64_t)n < p->fixed_size) {
        snprintf(f->fault, sizeof f->fault, "%s%llu: %s: raw data is %llu bytes, the format needs %lld",
                 p->prefix, (unsigned long long)r->offset, p->label, (unsigned long long)n,
                 (long long)p->fixed_size);
        return 0;
    }
    for (int64_t i = 0; i < p->ndyn; i++) {
        int64_t start, end;
        if (!dyn_span(&p->dyn[i], raw, n, &start, &end)) {
            snprintf(f->fault, sizeof f->fault,
                     "%s%llu: %s: field '%s' points to bytes %lld..%lld but the record has %llu", p->prefix,
                     (unsigned long long)r->offset, p->label, p->dyn[i].name, (long long)start,
                     (long long)end, (unsigned long long)n);
            return 0;
        }
    }
    return 1;
}

static kval str_val(const uint8_t *p, uint64_t n, int cut)
{
    if (cut) {
        const uint8_t *nul = memchr(p, 0, (size_t)n);
        if (nul)
            n = (uint64_t)(nul - p);
    }
    kstr *k = k_intern((const char *)p, (uint32_t)n);
    kval v = {k ? KT_STR : -1, (int64_t)(intptr_t)k};
    return v;
}

static kval int_val(const uint8_t *p, int64_t size, int64_t is_signed)
{
    uint64_t u = rd(p, size);
    if (is_signed && size < 8) {
        uint64_t sign = 1ULL << (8 * size - 1);
        u = (u ^ sign) - sign;
    }
    kval v = {KT_INT, (int64_t)u}; /* 64-bit unsigned wraps to int64, as C casts it */
    return v;
}

typedef struct kf_task {
    int has_tid, has_cpu;
    uint32_t pid, tid, cpu;
    kval comm;
} kf_task;

/* An array field as SampleEvent makes it: a table of its elements keyed
 * from 0, its limit at least their count. Elements of 1, 2, 4 or 8 bytes
 * (flags & 0xFF) read as integers, zero- or sign-extended (flags >> 8 & 1);
 * the element count is the whole elements in the bytes. A tag of -1 when out
 * of memory. */
static kval array_val(kfeed *f, kstate *s, const kf_slot *sl, const uint8_t *raw, uint64_t n)
{
    int64_t elem = sl->flags & 0xFF, is_signed = (sl->flags >> 8) & 1, start = sl->offset, count = sl->size;
    if (sl->kind == KF_DYN_ARRAY) {
        kf_dyn d = {sl->offset, sl->size, (sl->flags >> 9) & 1, NULL};
        int64_t end;
        dyn_span(&d, raw, n, &start, &end); /* checked by record_valid */
        count = end > start ? (end - start) / elem : 0;
    }
    ktable *t = k_table_new(s);
    if (!t) {
        snprintf(f->fault, sizeof f->fault, "out of memory");
        return (kval){-1, 0};
    }
    t->max_entries = count > s->max_table ? count : s->max_table;
    for (int64_t i = 0; i < count; i++) {
        kval key = {KT_INT, i};
        if (k_table_set(t, key, int_val(raw + start + i * elem, elem, is_signed)) != K_OK) {
            snprintf(f->fault, sizeof f->fault, "out of memory");
            return (kval){-1, 0};
        }
    }
    return (kval){KT_TABLE, (int64_t)(intptr_t)t};
}

/* The value of the array field at `offset` that an earlier slot of this
 * probe run made, so every read of one field in one event is one table. */
static int made_array(const kstate *s, const kf_probe *p, int64_t before, int64_t offset, kval *out)
{
    for (int64_t i = 0; i < before; i++) {
        const kf_slot *sl = &p->slots[i];
        if ((sl->kind == KF_ARRAY_FIELD || sl->kind == KF_DYN_ARRAY) && sl->offset == offset) {
            *out = s->event[sl->slot];
            return 1;
        }
    }
    return 0;
}

static kval field_val(const kf_slot *sl, const uint8_t *raw, uint64_t n)
{
    kval nil = {KT_NIL, 0};
    switch (sl->kind) {
    case KF_INT_FIELD:
        return int_val(raw + sl->offset, sl->size, sl->flags);
    case KF_BYTES_FIELD:
        return str_val(raw + sl->offset, (uint64_t)sl->size, 0);
    case KF_CHARS_FIELD:
        return str_val(raw + sl->offset, (uint64_t)sl->size, 1);
    case KF_DATALOC_STRING: {
        kf_dyn d = {sl->offset, sl->size, sl->flags, NULL};
        int64_t start, end;
        dyn_span(&d, raw, n, &start, &end); /* checked by record_valid */
        if (start >= end || start >= (int64_t)n)
            return str_val(raw, 0, 0);
        return str_val(raw + start, (uint64_t)(end - start), 1);
    }
    default: /* KF_FIELD_NIL */
        return nil;
    }
}

/* argstr: the probe's program over the RAW bytes there are. Only memory
 * (or a text past 4 GiB) fails it: the read fails as a corrupt one does. */
static kval argstr_val(kfeed *f, const kf_probe *p, const kf_rec *r, const uint8_t *raw, uint64_t n)
{
    if (krt_argstr_render(&p->argstr, raw, n, &f->argbuf) == K_OK) {
        kval v = str_val((const uint8_t *)(f->argbuf.p ? f->argbuf.p : ""), f->argbuf.len, 0);
        if (v.tag >= 0)
            return v;
    }
    snprintf(f->fault, sizeof f->fault, "%s%llu: %s: out of memory rendering argstr", p->prefix,
             (unsigned long long)r->offset, p->label);
    return (kval){-1, 0};
}

/* probename of a site event (BoundEvent.probename_of): the name its u32
 * site index picks; a record too short for the index, or an index past the
 * table, fails the read as SampleEvent.probename does. */
static kval site_val(kfeed *f, const kf_probe *p, const kf_slot *sl, const kf_rec *r, const uint8_t *raw,
                     uint64_t n)
{
    if ((uint64_t)sl->offset + 4 <= n) {
        uint64_t index = rd(raw + sl->offset, 4);
        if (index < (uint64_t)p->nsites)
            return p->sites[index];
    }
    snprintf(f->site_fault, sizeof f->site_fault, "%s%llu: its probe site is not in the event's site table",
             p->prefix, (unsigned long long)r->offset);
    return (kval){-1, 0};
}

static void fill_slots(kfeed *f, kstate *s, const kf_probe *p, const kf_task *t, const kf_rec *r,
                       const uint8_t *raw, uint64_t n)
{
    int valid = -1; /* decoded lazily, once, as SampleEvent.fields */
    for (int64_t i = 0; i < p->nslots; i++) {
        const kf_slot *sl = &p->slots[i];
        kval v = {KT_NIL, 0};
        switch (sl->kind) {
        case KF_PID:
            if (t->has_tid) v = (kval){KT_INT, t->pid};
            break;
        case KF_TID:
            if (t->has_tid) v = (kval){KT_INT, t->tid};
            break;
        case KF_CPU:
            if (t->has_cpu) v = (kval){KT_INT, t->cpu};
            break;
        case KF_EXECNAME:
            v = t->comm;
            break;
        case KF_CONST:
            v = sl->value;
            break;
        case KF_NIL:
            break;
        case KF_ARGSTR: /* not decoded: SampleEvent renders argstr from the raw bytes */
            v = argstr_val(f, p, r, raw, n);
            break;
        case KF_SITE_NAME: /* not decoded either: probename reads only the index */
            v = site_val(f, p, sl, r, raw, n);
            break;
        default:
            if (valid < 0)
                valid = record_valid(f, p, r, raw, n);
            if (!valid)
                v = (kval){-1, 0};
            else if (sl->kind != KF_ARRAY_FIELD && sl->kind != KF_DYN_ARRAY)
                v = field_val(sl, raw, n);
            else if (!made_array(s, p, i, sl->offset, &v))
                v = array_val(f, s, sl, raw, n);
        }
        s->event[sl->slot] = v;
    }
}

static kval comm_of(kfeed *f, const kf_task *t)
{
    int64_t v;
    if (t->has_tid && f->last_comm && f->last_tid == t->tid)
        return (kval){KT_STR, f->last_comm};
    if (t->has_tid && map_get(&f->comms, t->tid, &v)) {
        f->last_tid = t->tid;
        f->last_comm = v;
        return (kval){KT_STR, v};
    }
    char name[16]; /* as perf script names an unknown thread */
    int len = snprintf(name, sizeof name, ":%u", t->has_tid ? t->tid : 0);
    return str_val((const uint8_t *)name, (uint64_t)len, 0);
}

int k_feed_comm(kfeed *f, int64_t tid, kval *out)
{
    kf_task t = {0};
    t.has_tid = 1;
    t.tid = (uint32_t)tid;
    *out = comm_of(f, &t);
    return out->tag < 0 ? -1 : 0;
}

/* The task name a kernel filter's `comm` sees (dispatch._kernel_comm): perf
 * calls the idle task "swapper", the kernel names each CPU's "swapper/N". */
static const kstr *filter_comm(const kf_task *t)
{
    if (t->has_tid && t->tid == 0) {
        char name[32];
        int len = snprintf(name, sizeof name, "swapper/%u", t->has_cpu ? t->cpu : 0);
        kstr *k = k_intern(name, (uint32_t)len);
        if (k)
            return k;
    }
    return (const kstr *)(intptr_t)t->comm.payload;
}

/* A sample whose head and RAW data sample_meta checked (m). */
static int64_t run_sample(kstate *s, kfeed *f, const kf_meta *m, const kf_rec *r, int64_t time)
{
    const kf_layout *l = m->layout;
    const uint8_t *raw = m->raw;
    uint64_t n = m->n;
    if (m->group < 0 || m->group >= f->ngroups)
        return K_RUN_OK;
    kf_task t = {0};
    t.has_tid = l->tid >= 0;
    t.has_cpu = l->cpu >= 0;
    if (t.has_tid) {
        t.pid = (uint32_t)rd(r->p + l->tid - 4, 4);
        t.tid = (uint32_t)rd(r->p + l->tid, 4);
    }
    if (t.has_cpu)
        t.cpu = (uint32_t)rd(r->p + l->cpu, 4);
    f->samples++;
    const kf_group *g = &f->groups[m->group];
    int have_comm = 0; /* the name is a hash lookup: only for probes that read it */
    const kstr *kernel_comm = NULL; /* the filters' view of it, made once per sample */
    for (int64_t i = 0; i < g->n; i++) {
        const kf_probe *p = &f->probes[g->probes[i]];
        ktable *mark = s->all_tables; /* array fields' tables are the run's to free */
        if (!have_comm && (p->needs_comm || p->filter.n)) {
            t.comm = comm_of(f, &t);
            if (t.comm.tag < 0)
                return K_FEED_BAD;
            have_comm = 1;
        }
        if (p->filter.n && !kernel_comm)
            kernel_comm = filter_comm(&t);
        if (p->filter.n && !krt_filter_matches(&p->filter, raw, n, t.has_cpu, t.cpu, kernel_comm))
            continue;
        fill_slots(f, s, p, &t, r, raw, n);
        int64_t status = run_entry(s, p->code, time);
        if (s->all_tables != mark)
            krt_tables_sweep(s, mark);
        if (status != K_RUN_OK)
            return status;
    }
    return K_RUN_OK;
}

/* COMM, FORK, LOST, LOST_SAMPLES; other records only move the clock. */
static int64_t side_band(kfeed *f, const kf_rec *r, uint32_t type, uint64_t body_end)
{
    if (type == PERF_RECORD_COMM || type == PERF_RECORD_FORK)
        f->last_comm = 0;
    if (type == PERF_RECORD_COMM) {
        if (16 > body_end)
            return K_FEED_BAD;
        uint32_t tid = (uint32_t)rd(r->p + 12, 4);
        kval comm = str_val(r->p + 16, body_end - 16, 1);
        if (comm.tag < 0 || map_put(&f->comms, tid, comm.payload))
            return K_FEED_BAD;
    } else if (type == PERF_RECORD_FORK) {
        if (32 > body_end)
            return K_FEED_BAD;
        uint32_t tid = (uint32_t)rd(r->p + 16, 4), ptid = (uint32_t)rd(r->p + 20, 4);
        int64_t v;
        if (map_get(&f->comms, ptid, &v) && map_put(&f->comms, tid, v))
            return K_FEED_BAD;
    } else if (type == PERF_RECORD_LOST) {
        if (24 > body_end)
            return K_FEED_BAD;
        f->lost += rd(r->p + 16, 8);
    } else if (type == PERF_RECORD_LOST_SAMPLES) {
        if (16 > body_end)
            return K_FEED_BAD;
        f->lost += rd(r->p + 8, 8);
    }
    return K_RUN_OK;
}

void k_feed_walker(kfeed *f, kwalk walk) { f->walk = walk; }

/* What the compiled walker is told of the timers: the first due time, at
 * most INT64_MAX (a timer past it never fires). */
static int64_t walk_due(kfeed *f)
{
    if (!f->ntimers)
        return INT64_MAX;
    __int128 due = next_timer(f)->due;
    return due > INT64_MAX ? INT64_MAX : due < INT64_MIN ? INT64_MIN : (int64_t)due;
}

/* The generic walker. Not inlined into run_record: its register saves
 * would then be paid by every record the compiled walker runs. */
static __attribute__((noinline)) int64_t walk_record(kstate *s, kfeed *f, const kf_rec *r)
{
    kf_meta m;
    if (!record_meta(f, r, 0, &m))
        return K_FEED_BAD;
    int real = m.timed && has_time(m.time);
    if (real) { /* synthesized records carry time 0: they do not move the clock */
        int64_t status = advance(s, f, (int64_t)m.time, r->offset);
        if (status != K_RUN_OK)
            return status;
    }
    if (m.type == PERF_RECORD_SAMPLE)
        return run_sample(s, f, &m, r, real ? (int64_t)m.time : f->last_time);
    return side_band(f, r, m.type, m.body_end);
}

int64_t run_record(kstate *s, kfeed *f, const kf_rec *r)
{
    if (f->walk) {
        int64_t io[2];
        int64_t status = f->walk(s, f, r->p, r->size, walk_due(f), io);
        if (status != K_FEED_DECLINED) { /* as advance and run_sample keep them */
            if (io[0] > f->last_time)
                f->last_time = io[0];
            f->samples += io[1];
            return status;
        }
    }
    return walk_record(s, f, r);
}

int64_t k_feed(kstate *s, kfeed *f, const uint8_t *buf, uint64_t len, const uint64_t *offsets,
               uint64_t n, uint64_t base)
{
    f->consumed = 0;
    f->stopped_at = -1;
    uint64_t pos = 0;
    for (uint64_t i = 0; offsets ? i < n : pos < len; i++) {
        uint64_t at = offsets ? offsets[i] : pos;
        if (offsets && i + 4 < n && offsets[i + 4] < len) { /* records are memory bound: fetch ahead */
            __builtin_prefetch(buf + offsets[i + 4]);
            __builtin_prefetch(buf + offsets[i + 4] + 64);
        }
        if (at > len || len - at < 8 || rd(buf + at + 6, 2) < 8 || rd(buf + at + 6, 2) > len - at) {
            f->stopped_at = (int64_t)i;
            f->error_offset = (int64_t)(base + at);
            return K_FEED_BAD;
        }
        kf_rec r = {buf + at, rd(buf + at + 6, 2), base + at};
        pos = at + r.size;
        int64_t status = run_record(s, f, &r);
        if (status != K_RUN_OK) {
            f->stopped_at = (int64_t)i;
            if (status == K_FEED_BAD)
                f->error_offset = (int64_t)r.offset;
            return status;
        }
        f->consumed = i + 1;
    }
    return K_RUN_OK;
}
