/* Insertion-ordered open-addressing tables (layout documented in ktrt.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

/* Generated code reads a table's memo (ktapjit/jit/lower.py _table_set). */
_Static_assert(offsetof(ktable, entries) == KTABLE_ENTRIES_AT, "ktable layout");
_Static_assert(offsetof(ktable, index) == KTABLE_INDEX_AT, "ktable layout");
_Static_assert(offsetof(ktable, memo_key) == KTABLE_MEMO_KEY_AT, "ktable layout");
_Static_assert(offsetof(ktable, memo_slot) == KTABLE_MEMO_SLOT_AT, "ktable layout");
_Static_assert(sizeof(kentry) == 32, "ktable layout");

#define MIN_CAP 8u
#define MAX_CAP (1u << 30) /* entry numbers must fit int32 */

uint64_t k_key_hash(kval key)
{
    if (key.tag == KT_STR)
        return ((const kstr *)(intptr_t)key.payload)->hash;
    return krt_mix64((uint64_t)key.payload ^ ((uint64_t)key.tag * 0x9e3779b97f4a7c15ULL));
}

ktable *k_table_new(kstate *s)
{
    ktable *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->max_entries = s->max_table;
    t->memo_slot = -1;
    t->next_in_state = s->all_tables;
    s->all_tables = t;
    return t;
}

/* The index slot holding key, or -1. */
static int64_t find(ktable *t, kval key)
{
    if (t->memo_slot >= 0 && t->memo_key.payload == key.payload && t->memo_key.tag == key.tag)
        return t->memo_slot;
    if (!t->index)
        return -1;
    uint64_t i = k_key_hash(key) & t->mask;
    for (;;) {
        int32_t e = t->index[i];
        if (e < 0)
            return -1;
        const kval *k = &t->entries[e].key;
        if (k->tag == key.tag && k->payload == key.payload) {
            t->memo_key = key;
            t->memo_slot = (int64_t)i;
            return (int64_t)i;
        }
        i = (i + 1) & t->mask;
    }
}

/* The slot where a new key goes: the first empty slot or tombstone. */
static uint64_t free_slot(const ktable *t, kval key)
{
    uint64_t i = k_key_hash(key) & t->mask;
    for (;;) {
        int32_t e = t->index[i];
        if (e < 0 || t->entries[e].key.tag == KT_NIL)
            return i;
        i = (i + 1) & t->mask;
    }
}

/* Drop holes and reallocate for `cap` entries. */
static int rebuild(ktable *t, uint32_t cap)
{
    uint32_t index_size = 1;
    while (index_size < 2 * cap)
        index_size <<= 1;
    kentry *entries = malloc((size_t)cap * sizeof *entries);
    int32_t *index = malloc((size_t)index_size * sizeof *index);
    if (!entries || !index) {
        free(entries);
        free(index);
        return K_E_NOMEM;
    }
    memset(index, 0xff, (size_t)index_size * sizeof *index);
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->used; i++) {
        if (t->entries[i].key.tag != KT_NIL)
            entries[n++] = t->entries[i];
    }
    free(t->entries);
    free(t->index);
    t->memo_slot = -1; /* index slots move */
    t->entries = entries;
    t->index = index;
    t->used = n;
    t->count = n;
    t->cap = cap;
    t->mask = index_size - 1;
    for (uint32_t i = 0; i < n; i++)
        t->index[free_slot(t, entries[i].key)] = (int32_t)i;
    return K_OK;
}

int k_table_get(ktable *t, kval key, kval *out)
{
    int64_t slot = key.tag == KT_NIL ? -1 : find(t, key);
    if (slot < 0) {
        out->tag = KT_NIL;
        out->payload = 0;
        return 0;
    }
    *out = t->entries[t->index[slot]].value;
    return 1;
}

volatile int64_t krt_func_escapes;

void k_escape(kval v)
{
    if (v.tag == KT_TABLE)
        ((ktable *)(intptr_t)v.payload)->escaped = 1;
    else if (v.tag == KT_FUNC)
        krt_func_escapes++;
}

int64_t k_tables_live(kstate *s)
{
    int64_t n = 0;
    for (const ktable *t = s->all_tables; t; t = t->next_in_state)
        n++;
    return n;
}

static void table_free(ktable *t)
{
    free(t->entries);
    free(t->index);
    free(t);
}

void krt_tables_free(kstate *s)
{
    for (ktable *t = s->all_tables, *next; t; t = next) {
        next = t->next_in_state;
        table_free(t);
    }
    s->all_tables = NULL;
}

void krt_tables_sweep(kstate *s, ktable *mark)
{
    ktable **link = &s->all_tables;
    while (*link && *link != mark) {
        ktable *t = *link;
        if (t->escaped) {
            link = &t->next_in_state;
        } else {
            *link = t->next_in_state;
            table_free(t);
        }
    }
}

int k_table_set(ktable *t, kval key, kval value)
{
    if (key.tag == KT_NIL)
        return K_E_NIL_INDEX;
    /* a table kept in a table lives as long as it may: never freed early */
    k_escape(key);
    k_escape(value);
    int64_t slot = find(t, key);
    if (slot >= 0) {
        kentry *e = &t->entries[t->index[slot]];
        if (value.tag == KT_NIL) {
            /* A hole: its index slot becomes a tombstone. */
            e->key.tag = KT_NIL;
            e->key.payload = 0;
            e->value = value;
            t->count--;
            t->memo_slot = -1; /* the slot is a tombstone now */
        } else {
            e->value = value;
        }
        return K_OK;
    }
    if (value.tag == KT_NIL)
        return K_OK;
    if ((int64_t)t->count >= t->max_entries)
        return K_E_TABLE_OVERFLOW;
    if (t->used == t->cap) {
        uint32_t cap = t->cap < MIN_CAP ? MIN_CAP : t->cap;
        if ((uint64_t)(t->count + 1) * 2 > cap) {
            if (cap >= MAX_CAP)
                return K_E_NOMEM;
            cap *= 2;
        }
        int rc = rebuild(t, cap);
        if (rc)
            return rc;
    }
    uint32_t n = t->used++;
    t->entries[n].key = key;
    t->entries[n].value = value;
    t->index[free_slot(t, key)] = (int32_t)n;
    t->count++;
    return K_OK;
}

int64_t k_table_len(ktable *t) { return t->count; }

void k_table_clear(ktable *t)
{
    if (t->index)
        memset(t->index, 0xff, ((size_t)t->mask + 1) * sizeof *t->index);
    t->used = 0;
    t->count = 0;
    t->memo_slot = -1;
}

ksnapshot *k_table_keys(ktable *t)
{
    ksnapshot *snap = malloc(sizeof *snap + (size_t)t->count * sizeof(kval));
    if (!snap)
        return NULL;
    int64_t n = 0;
    for (uint32_t i = 0; i < t->used; i++) {
        if (t->entries[i].key.tag != KT_NIL)
            snap->keys[n++] = t->entries[i].key;
    }
    snap->len = n;
    return snap;
}

int64_t k_snapshot_len(ksnapshot *snap) { return snap->len; }

kval k_snapshot_get(ksnapshot *snap, int64_t i)
{
    if (i < 0 || i >= snap->len) {
        kval nil = {KT_NIL, 0};
        return nil;
    }
    return snap->keys[i];
}

void k_snapshot_free(ksnapshot *snap) { free(snap); }
