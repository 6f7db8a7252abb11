/* Delivery order (events/records/merge.py order_perf_rounds): k_feed_order
 * puts a perf.data data section in the order perf delivers it, checking
 * every record as the Python decoder does, so a replay needs no Python per
 * record either. */
#include <stdlib.h>
#include <string.h>

#include "feed_private.h"

typedef struct kf_queued {
    uint64_t time, seq, offset;
} kf_queued;

static int queued_before(const kf_queued *a, const kf_queued *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

/* Merge the sorted runs a[lo..mid) and a[mid..hi) (tmp holds mid - lo). */
static void merge_runs(kf_queued *a, kf_queued *tmp, uint64_t lo, uint64_t mid, uint64_t hi)
{
    memcpy(tmp, a + lo, (size_t)(mid - lo) * sizeof *a);
    uint64_t i = 0, j = mid, k = lo, n = mid - lo;
    while (i < n && j < hi)
        a[k++] = queued_before(&a[j], &tmp[i]) ? a[j++] : tmp[i++];
    while (i < n)
        a[k++] = tmp[i++];
}

/* Sort a[0..n) by (time, seq): a bottom-up merge sort that skips runs
 * already in order, so the per-CPU runs of a round cost about one pass. */
static void sort_queued(kf_queued *a, kf_queued *tmp, uint64_t n)
{
    for (uint64_t width = 1; width < n; width *= 2)
        for (uint64_t lo = 0; lo + width < n; lo += 2 * width) {
            uint64_t mid = lo + width, hi = n - lo > 2 * width ? lo + 2 * width : n;
            if (queued_before(&a[mid], &a[mid - 1]))
                merge_runs(a, tmp, lo, mid, hi);
        }
}

/* At a FINISHED_ROUND (flush = 1, limit) or the end (everything): sort what
 * came since the last one into the waiting records (both sorted, the waiting
 * ones first: every seq of theirs is smaller), then deliver the due prefix. */
static void deliver(kf_queued *q, kf_queued *tmp, uint64_t *waiting, uint64_t *n, int all, uint64_t limit,
                    uint64_t *out, uint64_t *n_out)
{
    sort_queued(q + *waiting, tmp, *n - *waiting);
    if (*waiting && *n > *waiting && queued_before(&q[*waiting], &q[*waiting - 1]))
        merge_runs(q, tmp, 0, *waiting, *n);
    uint64_t due = 0;
    while (due < *n && (all || q[due].time <= limit))
        out[(*n_out)++] = q[due++].offset;
    memmove(q, q + due, (size_t)(*n - due) * sizeof *q);
    *n -= due;
    *waiting = *n;
}

int64_t k_feed_count(const uint8_t *buf, uint64_t len)
{
    uint64_t pos = 0;
    int64_t n = 0;
    while (pos < len) {
        if (len - pos < 8)
            return -1;
        uint64_t size = rd(buf + pos + 6, 2);
        if (size < 8 || size > len - pos)
            return -1;
        pos += size;
        n++;
    }
    return n;
}

int64_t k_feed_order(kfeed *f, const uint8_t *buf, uint64_t len, uint64_t *out, uint64_t cap)
{
    /* queue[0..waiting) sorted, left by earlier rounds; queue[waiting..n) this round's */
    kf_queued *queue = malloc((cap ? cap : 1) * sizeof *queue);
    kf_queued *tmp = malloc((cap ? cap : 1) * sizeof *tmp);
    uint64_t n = 0, waiting = 0, n_out = 0, seq = 0, pos = 0, max_time = 0, next_flush = 0;
    int64_t result = -1;
    if (!queue || !tmp)
        goto done;
    while (pos < len) {
        if (len - pos < 8)
            goto done;
        kf_rec r = {buf + pos, rd(buf + pos + 6, 2), pos};
        if (r.size < 8 || r.size > len - pos || n_out + n >= cap)
            goto done;
        kf_meta m;
        if (!record_meta(f, &r, 1, &m))
            goto done; /* the Python decoder reports it, at its place in the stream */
        if (m.type == PERF_RECORD_FINISHED_ROUND) { /* flush what a whole round had time to deliver */
            deliver(queue, tmp, &waiting, &n, 0, next_flush, out, &n_out);
            next_flush = max_time;
        } else if (!m.timed || m.time == 0 || m.time == UINT64_MAX) {
            out[n_out++] = pos; /* no timestamp: delivered at once */
        } else {
            queue[n++] = (kf_queued){m.time, seq++, pos};
            if (m.time > max_time)
                max_time = m.time;
        }
        pos += r.size;
    }
    deliver(queue, tmp, &waiting, &n, 1, 0, out, &n_out);
    result = (int64_t)n_out;
done:
    free(queue);
    free(tmp);
    return result;
}
