/* print_folded: ktapjit/semantics/folded.py, byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

/* Folded text -> merged count, in first-seen order. Keys are interned, so
 * the map compares pointers. */
typedef struct fold_map {
    kstr **keys;          /* in first-seen order */
    unsigned __int128 *counts;
    int64_t *slots;       /* -1 empty, else an index into keys */
    uint64_t mask;
    int64_t n;
} fold_map;

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The length of a frame without a trailing "+0x<hex digits>". */
static uint64_t frame_length(const char *p, uint64_t len)
{
    uint64_t i = len;
    while (i > 0 && is_hex(p[i - 1]))
        i--;
    if (i < len && i >= 3 && p[i - 1] == 'x' && p[i - 2] == '0' && p[i - 3] == '+')
        return i - 3;
    return len;
}

/* Reverse the lines of text into buf joined by ';', offsets cut, empty
 * frames dropped. buf holds at least len bytes. Returns the folded length. */
static uint64_t fold_text(const char *text, uint64_t len, char *buf)
{
    uint64_t out = 0, end = len;
    for (;;) {
        uint64_t start = end;
        while (start > 0 && text[start - 1] != '\n')
            start--;
        uint64_t n = frame_length(text + start, end - start);
        if (n) {
            if (out)
                buf[out++] = ';';
            memcpy(buf + out, text + start, n);
            out += n;
        }
        if (start == 0)
            return out;
        end = start - 1;
    }
}

static int map_add(fold_map *m, kstr *key, int64_t count)
{
    uint64_t i = (uint64_t)(uintptr_t)key >> 4;
    for (;; i++) {
        int64_t *slot = &m->slots[i & m->mask];
        if (*slot < 0) {
            *slot = m->n;
            m->keys[m->n] = key;
            m->counts[m->n++] = (unsigned __int128)count;
            return 0;
        }
        if (m->keys[*slot] == key) {
            m->counts[*slot] += (unsigned __int128)count;
            return 0;
        }
    }
}

static int write_line(kstate *s, kstr *stack, unsigned __int128 count)
{
    if (krt_mark(s, KM_ROW, (int64_t)s->out_len, (int64_t)stack->len, (int64_t)(uint64_t)count,
                 (int64_t)(uint64_t)(count >> 64)))
        return K_E_NOMEM;
    char digits[48];
    int n = 0;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + (int)(count % 10));
        count /= 10;
    } while (count);
    if (k_out_write(s, stack->data, stack->len) || k_out_write(s, " ", 1) ||
        k_out_write(s, digits + sizeof digits - n, (uint64_t)n) || k_out_write(s, "\n", 1))
        return K_E_NOMEM;
    return K_OK;
}

static int fold_entries(kstate *s, ktable *t, fold_map *m)
{
    char scratch[KRT_TEXT_SCRATCH];
    for (uint32_t i = 0; i < t->used; i++) {
        kentry *e = &t->entries[i];
        if (e->key.tag == KT_NIL)
            continue;
        const char *text;
        uint64_t len;
        if (krt_text(s, e->key, scratch, &text, &len))
            return K_E_NOMEM;
        char *buf = malloc(len ? len : 1);
        if (!buf)
            return k_fail(s, K_E_NOMEM, 0, 0);
        kstr *folded = k_intern(buf, (uint32_t)fold_text(text, len, buf));
        free(buf);
        if (!folded)
            return k_fail(s, K_E_NOMEM, 0, 0);
        map_add(m, folded, e->value.payload);
    }
    return K_OK;
}

int k_print_folded(kstate *s, kval table)
{
    if (table.tag != KT_TABLE)
        return k_fail(s, K_E_FOLDED_TABLE, table.tag, 0);
    ktable *t = (ktable *)(intptr_t)table.payload;
    for (uint32_t i = 0; i < t->used; i++) {
        kentry *e = &t->entries[i];
        if (e->key.tag != KT_NIL && (e->value.tag != KT_INT || e->value.payload < 0))
            return k_fail(s, K_E_FOLDED_VALUES, 0, 0);
    }
    uint64_t size = 2;
    while (size < 2 * (uint64_t)t->count)
        size <<= 1;
    fold_map m = {malloc(t->count * sizeof(kstr *) + 1), malloc(t->count * sizeof(unsigned __int128) + 1),
                  malloc(size * sizeof(int64_t)), size - 1, 0};
    int rc = (!m.keys || !m.counts || !m.slots) ? k_fail(s, K_E_NOMEM, 0, 0) : K_OK;
    if (rc == K_OK) {
        memset(m.slots, 0xff, size * sizeof(int64_t));
        rc = fold_entries(s, t, &m);
    }
    if (rc == K_OK)
        rc = krt_mark(s, KM_FOLDED, (int64_t)s->out_len, 0, 0, 0);
    for (int64_t i = 0; rc == K_OK && i < m.n; i++)
        rc = write_line(s, m.keys[i], m.counts[i]);
    free(m.keys);
    free(m.counts);
    free(m.slots);
    return rc;
}
