/* Process-wide string interning: equal bytes <=> the same kstr pointer. */
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

static kstr **slots;      /* open addressing, linear probing */
static uint64_t slot_mask;
static uint64_t n_strings;

static uint64_t hash_bytes(const char *p, uint32_t len)
{
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    uint64_t h = (uint64_t)len * k + 0x2545f4914f6cdd1dULL;
    uint32_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ krt_mix64(w)) * k;
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i);
        h = (h ^ krt_mix64(w ^ 0xff51afd7ed558ccdULL)) * k;
    }
    return krt_mix64(h);
}

static int grow(void)
{
    uint64_t size = slots ? (slot_mask + 1) * 2 : 1024;
    kstr **fresh = calloc(size, sizeof *fresh);
    if (!fresh)
        return -1;
    if (slots) {
        for (uint64_t i = 0; i <= slot_mask; i++) {
            kstr *s = slots[i];
            if (!s)
                continue;
            uint64_t j = s->hash & (size - 1);
            while (fresh[j])
                j = (j + 1) & (size - 1);
            fresh[j] = s;
        }
        free(slots);
    }
    slots = fresh;
    slot_mask = size - 1;
    return 0;
}

kstr *k_intern(const char *p, uint32_t len)
{
    if ((!slots || (n_strings + 1) * 2 > slot_mask + 1) && grow() != 0)
        return NULL;
    uint64_t h = hash_bytes(p, len);
    uint64_t i = h & slot_mask;
    for (kstr *s; (s = slots[i]) != NULL; i = (i + 1) & slot_mask) {
        if (s->hash == h && s->len == len && memcmp(s->data, p, len) == 0)
            return s;
    }
    kstr *s = malloc(sizeof(kstr) + (size_t)len + 1);
    if (!s)
        return NULL;
    s->hash = h;
    s->len = len;
    if (len)
        memcpy(s->data, p, len);
    s->data[len] = 0;
    slots[i] = s;
    n_strings++;
    return s;
}

uint64_t k_intern_count(void) { return n_strings; }
