/* Live rings (events/records/merge.py StreamMerger).
 *
 * Each drain pass pushes every CPU's bytes; a record is queued by (time,
 * cpu, position in that CPU's ring), a record without a time taking the
 * time of the one before it in its ring. A round releases what is due by
 * perf's rule (everything up to the highest time seen by the end of the
 * round before), the finish everything. Queued records live in copies of
 * the pushed chunks, freed when their last record has run. */
#include <stdlib.h>
#include <string.h>

#include "feed_private.h"

typedef struct kf_block {
    uint8_t *data;
    int64_t refs;
} kf_block;

typedef struct kf_pending {
    uint64_t time;
    int64_t cpu;
    uint64_t pos, at;
    kf_block *block;
} kf_pending;

typedef struct kf_ring {
    uint64_t pos, last;
} kf_ring;

struct kf_live {
    kf_pending *heap;
    uint64_t n, cap;
    kf_ring *rings;
    int64_t nrings;
    uint64_t max_time, next_flush;
    int has_next_flush;
    /* A round's release that ran out of budget goes on with the same limit. */
    int releasing, release_open, release_all;
    uint64_t release_limit;
};

void live_free(struct kf_live *live)
{
    if (!live)
        return;
    for (uint64_t i = 0; i < live->n; i++)
        if (--live->heap[i].block->refs == 0) {
            free(live->heap[i].block->data);
            free(live->heap[i].block);
        }
    free(live->heap);
    free(live->rings);
    free(live);
}

static int pending_before(const kf_pending *a, const kf_pending *b)
{
    if (a->time != b->time)
        return a->time < b->time;
    if (a->cpu != b->cpu)
        return a->cpu < b->cpu;
    return a->pos < b->pos;
}

static void pending_push(struct kf_live *l, kf_pending q)
{
    uint64_t i = l->n++;
    while (i && pending_before(&q, &l->heap[(i - 1) / 2])) {
        l->heap[i] = l->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    l->heap[i] = q;
}

static kf_pending pending_pop(struct kf_live *l)
{
    kf_pending top = l->heap[0], last = l->heap[--l->n];
    uint64_t i = 0;
    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= l->n)
            break;
        if (c + 1 < l->n && pending_before(&l->heap[c + 1], &l->heap[c]))
            c++;
        if (!pending_before(&l->heap[c], &last))
            break;
        l->heap[i] = l->heap[c];
        i = c;
    }
    if (l->n)
        l->heap[i] = last;
    return top;
}

/* Room for `more` queued records and ring `cpu`. */
static int live_reserve(kfeed *f, int64_t cpu, uint64_t more)
{
    if (!f->live && !(f->live = calloc(1, sizeof *f->live)))
        return 0;
    struct kf_live *l = f->live;
    if (l->n + more > l->cap) {
        uint64_t cap = l->cap ? l->cap : 1024;
        while (cap < l->n + more)
            cap *= 2;
        kf_pending *h = realloc(l->heap, cap * sizeof *h);
        if (!h)
            return 0;
        l->heap = h;
        l->cap = cap;
    }
    if (cpu >= l->nrings) {
        kf_ring *r = realloc(l->rings, (size_t)(cpu + 1) * sizeof *r);
        if (!r)
            return 0;
        memset(r + l->nrings, 0, (size_t)(cpu + 1 - l->nrings) * sizeof *r);
        l->rings = r;
        l->nrings = cpu + 1;
    }
    return 1;
}

int k_feed_push(kfeed *f, int64_t cpu, const uint8_t *buf, uint64_t len)
{
    int64_t count = k_feed_count(buf, len);
    if (cpu < 0 || cpu > 65535 || count < 0)
        return -1;
    kf_meta m;
    for (uint64_t pos = 0; pos < len; pos += rd(buf + pos + 6, 2)) {
        kf_rec r = {buf + pos, rd(buf + pos + 6, 2), pos};
        if (!record_meta(f, &r, 0, &m))
            return -1; /* the Python decoder says what is wrong, before anything is queued */
    }
    if (!count)
        return 0;
    if (!live_reserve(f, cpu, (uint64_t)count))
        return -1;
    kf_block *block = malloc(sizeof *block);
    uint8_t *copy = malloc(len);
    if (!block || !copy) {
        free(block);
        free(copy);
        return -1;
    }
    memcpy(copy, buf, len);
    block->data = copy;
    block->refs = count;
    struct kf_live *l = f->live;
    kf_ring *ring = &l->rings[cpu];
    for (uint64_t pos = 0; pos < len; pos += rd(buf + pos + 6, 2)) {
        kf_rec r = {copy + pos, rd(copy + pos + 6, 2), pos};
        record_meta(f, &r, 0, &m);
        uint64_t t = ring->last;
        if (m.timed) {
            t = ring->last = m.time;
            if (t > l->max_time)
                l->max_time = t;
        }
        pending_push(l, (kf_pending){t, cpu, ring->pos++, pos, block});
    }
    return 0;
}

/* Append a record that is about to run to kept (k_feed_keep). */
static void keep_record(kfeed *f, const uint8_t *p, uint64_t n)
{
    if (f->kept_failed)
        return;
    if (f->kept_len + n > f->kept_cap) {
        uint64_t cap = f->kept_cap ? f->kept_cap : 65536;
        while (cap < f->kept_len + n)
            cap *= 2;
        uint8_t *grown = realloc(f->kept, cap);
        if (!grown) {
            f->kept_failed = 1;
            return;
        }
        f->kept = grown;
        f->kept_cap = cap;
    }
    memcpy(f->kept + f->kept_len, p, n);
    f->kept_len += n;
}

int64_t k_feed_release(kstate *s, kfeed *f, int64_t final, uint64_t budget)
{
    struct kf_live *l = f->live;
    if (!l)
        return K_RUN_OK;
    if (!l->releasing) {
        l->releasing = 1;
        l->release_open = final || l->has_next_flush;
        l->release_all = final != 0;
        l->release_limit = l->next_flush;
        l->has_next_flush = !final;
        l->next_flush = l->max_time;
    }
    int64_t status = K_RUN_OK;
    uint64_t ran = 0;
    while (status == K_RUN_OK && l->release_open && l->n && (l->release_all || l->heap[0].time <= l->release_limit)) {
        if (budget && ran == budget)
            return K_FEED_MORE;
        kf_pending q = pending_pop(l);
        kf_rec r = {q.block->data + q.at, rd(q.block->data + q.at + 6, 2), q.at};
        if (f->keeping)
            keep_record(f, r.p, r.size);
        status = run_record(s, f, &r);
        ran++;
        if (status == K_FEED_BAD)
            f->error_offset = (int64_t)q.at;
        if (--q.block->refs == 0) {
            free(q.block->data);
            free(q.block);
        }
    }
    l->releasing = 0;
    return status;
}

int64_t k_feed_discard(kfeed *f)
{
    struct kf_live *l = f->live;
    if (!l)
        return 0;
    int64_t samples = 0;
    for (uint64_t i = 0; i < l->n; i++) {
        kf_pending *q = &l->heap[i];
        samples += rd(q->block->data + q->at, 4) == PERF_RECORD_SAMPLE;
        if (--q->block->refs == 0) {
            free(q->block->data);
            free(q->block);
        }
    }
    l->n = 0;
    l->releasing = 0;
    return samples;
}

void k_feed_keep(kfeed *f, int64_t on) { f->keeping = on != 0; }

const uint8_t *k_feed_kept(kfeed *f, uint64_t *len)
{
    *len = f->kept_failed ? UINT64_MAX : f->kept_len;
    return f->kept;
}

void k_feed_kept_clear(kfeed *f) { f->kept_len = 0; }
