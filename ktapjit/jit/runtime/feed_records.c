/* Reading perf records as the decoder does (events/records/decode.py):
 * a sample's layout from its id, its RAW data, and every record's type,
 * time and sample_id trailer, rejecting what the decoder rejects. */
#include <stdlib.h>
#include <string.h>

#include "feed_private.h"

/* A sample's layout and the group its id runs (-1: none), from one id
 * lookup (decode._Resolver.for_sample, then StreamPlan.by_id). 0 when the
 * sample cannot be read. */
static int resolve_sample(kfeed *f, const kf_rec *r, const kf_layout **layout, int64_t *group)
{
    if (!f->nlayouts)
        return 0;
    const kf_layout *l = &f->layouts[0];
    int64_t at = f->mode == 0 ? l->id : f->id_pos;
    *group = f->noid_group;
    if (at < 0) { /* one layout without ids */
        *layout = l;
        return 1;
    }
    if ((uint64_t)at + 8 > r->size)
        return 0;
    uint64_t id = rd(r->p + at, 8);
    int64_t v;
    if (f->has_last_id && id == f->last_id) {
        v = f->last_id_value;
    } else if (map_get(&f->ids, id, &v)) {
        f->has_last_id = 1;
        f->last_id = id;
        f->last_id_value = v;
    } else if (f->mode == 0 || id == 0) { /* perf's zeroed synthesized ids: the first event's layout */
        v = 0;
    } else {
        return 0;
    }
    *layout = &f->layouts[v >> 32];
    *group = (v & 0xFFFFFFFF) - 1;
    return 1;
}

/* The RAW data of a sample: *raw, *n (empty when the sample has none). */
static int sample_raw(const kf_layout *l, const kf_rec *r, const uint8_t **raw, uint64_t *n)
{
    uint64_t p = (uint64_t)l->head_end;
    *raw = NULL;
    *n = 0;
    if (p > r->size)
        return 0;
    if (l->has_callchain) {
        if (p + 8 > r->size)
            return 0;
        uint64_t nr = rd(r->p + p, 8);
        if (nr > (r->size - p - 8) / 8)
            return 0;
        p += 8 + 8 * nr;
    }
    if (l->has_raw) {
        if (p + 4 > r->size)
            return 0;
        uint64_t len = rd(r->p + p, 4);
        if (len > r->size - p - 4)
            return 0;
        *raw = r->p + p + 4;
        *n = len;
    }
    return 1;
}

/* The body sizes decode._decode_other checks, by record type (0: none). */
static uint64_t body_size(uint32_t type)
{
    switch (type) {
    case 1: return 32;             /* MMAP */
    case 2: return 16;             /* LOST */
    case 3: return 8;              /* COMM */
    case 4: case 5: case 6: case 7: return 24; /* EXIT, THROTTLE, UNTHROTTLE, FORK */
    case 10: return 64;            /* MMAP2 (both of its layouts) */
    case 13: return 8;             /* LOST_SAMPLES */
    case 15: return 8;             /* SWITCH_CPU_WIDE */
    default: return 0;
    }
}

static int sample_meta(kfeed *f, const kf_rec *r, kf_meta *m)
{
    if (!resolve_sample(f, r, &m->layout, &m->group))
        return 0;
    const kf_layout *l = m->layout;
    if ((uint64_t)l->head_end > r->size || !sample_raw(l, r, &m->raw, &m->n))
        return 0;
    if (l->time >= 0) {
        m->timed = 1;
        m->time = rd(r->p + l->time, 8);
    }
    return 1;
}

/* A record's type, time and trailer as the decoder reads them; 0 when the
 * decoder would reject it. `strict` also refuses what the native path
 * cannot check as the decoder does (READ's values). */
int record_meta(kfeed *f, const kf_rec *r, int strict, kf_meta *m)
{
    memset(m, 0, sizeof *m);
    m->type = (uint32_t)rd(r->p, 4);
    m->body_end = r->size;
    m->group = -1;
    if (m->type == PERF_RECORD_SAMPLE)
        return sample_meta(f, r, m);
    if (m->type >= PERF_RECORD_USER_TYPE_START)
        return 1; /* perf's own records: no trailer, no time */
    if (strict && m->type == PERF_RECORD_READ)
        return 0; /* its values' layout depends on read_format: left to the decoder */
    const kf_layout *o;
    if (f->mode == 0) {
        o = f->nlayouts ? &f->layouts[0] : NULL;
    } else if (f->is_pos < 0) {
        o = NULL;
    } else {
        if ((uint64_t)f->is_pos > r->size - 8)
            return 0;
        int64_t v;
        uint64_t id = rd(r->p + r->size - f->is_pos, 8);
        if (map_get(&f->ids, id, &v))
            o = &f->layouts[v >> 32];
        else if (id == 0 && f->nlayouts)
            o = &f->layouts[0];
        else
            return 0;
    }
    if (o && o->trailer_size) {
        if ((uint64_t)o->trailer_size > r->size - 8)
            return 0;
        m->body_end = r->size - (uint64_t)o->trailer_size;
        if (o->trailer_time >= 0) {
            m->timed = 1;
            m->time = rd(r->p + m->body_end + o->trailer_time, 8);
        }
    }
    uint64_t need = body_size(m->type);
    if (8 + need > m->body_end)
        return 0;
    if ((m->type == 4 || m->type == 7) && !m->timed) { /* FORK/EXIT: the body's time is the fallback */
        m->timed = 1;
        m->time = rd(r->p + 24, 8);
    } else if (m->type == 5 || m->type == 6) { /* THROTTLE: the body's time */
        m->timed = 1;
        m->time = rd(r->p + 8, 8);
    }
    return 1;
}
