/* Calls between generated functions, closures and cells, and the scratch
 * memory of one entry (pairs snapshots).
 *
 * Calls go through k_call so that every call site makes the interpreter's
 * checks in the interpreter's order and tail calls run in constant native
 * stack: a tail call returns K_RUN_TAIL to the k_call (or k_enter) below it,
 * which loops. */
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

/* ---- the arena: cells and closures live as long as the run ---- */

struct karena {
    struct karena *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define ARENA_CHUNK (64 * 1024)

static void *arena_alloc(kstate *s, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct karena *a = s->arena;
    if (!a || a->cap - a->used < size) {
        size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        a = malloc(sizeof *a + cap);
        if (!a) {
            k_fail(s, K_E_NOMEM, 0, 0);
            return NULL;
        }
        a->next = s->arena;
        a->used = 0;
        a->cap = cap;
        s->arena = a;
    }
    void *p = a->data + a->used;
    a->used += size;
    return p;
}

/* Free what the arena got since (mark, used): the chunks newer than mark,
 * and mark's own bytes past `used`. */
static void arena_rewind(kstate *s, struct karena *mark, size_t used)
{
    while (s->arena && s->arena != mark) {
        struct karena *next = s->arena->next;
        free(s->arena);
        s->arena = next;
    }
    if (mark)
        mark->used = used;
}

int64_t k_arena_bytes(kstate *s)
{
    int64_t n = 0;
    for (struct karena *a = s->arena; a; a = a->next)
        n += (int64_t)a->used;
    return n;
}

void krt_arena_free(kstate *s)
{
    for (struct karena *a = s->arena, *next; a; a = next) {
        next = a->next;
        free(a);
    }
    s->arena = NULL;
}

kcell *k_cell_new(kstate *s, kval v)
{
    kcell *c = arena_alloc(s, sizeof *c);
    if (c)
        c->value = v;
    k_escape(v);
    return c;
}

kfunc *k_closure_new(kstate *s, kcode code, int64_t nparams, int64_t ncells)
{
    kfunc *f = arena_alloc(s, sizeof *f + (size_t)ncells * sizeof(kcell *));
    if (f) {
        f->code = code;
        f->nparams = nparams;
        f->ncells = ncells;
    }
    return f;
}

/* ---- scratch: pairs snapshots, freed when the entry returns ---- */

struct kscratch {
    struct kscratch *next;
    ksnapshot *snap;
};

ksnapshot *k_snapshot_scratch(kstate *s, ktable *t)
{
    struct kscratch *node = malloc(sizeof *node);
    ksnapshot *snap = node ? k_table_keys(t) : NULL;
    if (!snap) {
        free(node);
        k_fail(s, K_E_NOMEM, 0, 0);
        return NULL;
    }
    node->snap = snap;
    node->next = s->scratch;
    s->scratch = node;
    return snap;
}

void krt_scratch_free(kstate *s)
{
    for (struct kscratch *n = s->scratch, *next; n; n = next) {
        next = n->next;
        k_snapshot_free(n->snap);
        free(n);
    }
    s->scratch = NULL;
}

/* ---- calls ---- */

static int64_t fail_at(kstate *s, int64_t site, int code, int64_t a, int64_t b)
{
    k_fail(s, code, a, b);
    s->site = site;
    return K_RUN_ERROR;
}

/* The checks every call and tail call makes, in the interpreter's order. */
static int64_t check_callee(kstate *s, kval callee, int64_t n, int64_t site)
{
    if (callee.tag != KT_FUNC)
        return fail_at(s, site, K_E_CALL, callee.tag, 0);
    kfunc *f = (kfunc *)(intptr_t)callee.payload;
    if (n > f->nparams)
        return fail_at(s, site, K_E_TOO_MANY_ARGS, f->nparams, n);
    return K_RUN_OK;
}

/* Run code (as closure self, NULL for an entry) and follow tail calls
 * until a function really returns. */
static int64_t run_from(kstate *s, kcode code, kfunc *self, kval *args, int64_t n, int64_t depth, kval *ret)
{
    int64_t status = code(s, self, args, n, depth, ret);
    while (status == K_RUN_TAIL) {
        kfunc *f = s->tail_fn;
        status = f->code(s, f, s->tail_args, s->tail_n, depth, ret);
    }
    return status;
}

int64_t k_call(kstate *s, kval callee, kval *args, int64_t n, int64_t depth, kval *ret,
               int64_t site)
{
    int64_t status = check_callee(s, callee, n, site);
    if (status != K_RUN_OK)
        return status;
    if (depth + 1 > s->max_depth)
        return fail_at(s, site, K_E_STACK_OVERFLOW, s->max_depth, 0);
    /* Deep recursion is legal up to --max-depth; past the native stack the
     * engine gave us, fail cleanly instead of crashing the process. */
    if ((uintptr_t)__builtin_frame_address(0) < s->stack_floor)
        return fail_at(s, site, K_E_NATIVE_STACK, depth, 0);
    kfunc *f = (kfunc *)(intptr_t)callee.payload;
    return run_from(s, f->code, f, args, n, depth + 1, ret);
}

kval *k_tail_args(kstate *s, kval callee, int64_t n, int64_t site)
{
    if (check_callee(s, callee, n, site) != K_RUN_OK)
        return NULL;
    if (n > s->tail_cap || !s->tail_args) { /* never NULL: NULL means failure */
        int64_t cap = n < 8 ? 8 : n;
        kval *p = realloc(s->tail_args, (size_t)cap * sizeof *p);
        if (!p) {
            fail_at(s, site, K_E_NOMEM, 0, 0);
            return NULL;
        }
        s->tail_args = p;
        s->tail_cap = cap;
    }
    s->tail_fn = (kfunc *)(intptr_t)callee.payload;
    s->tail_n = n;
    return s->tail_args;
}

int64_t k_enter(kstate *s, kcode code)
{
    kval ret = {KT_NIL, 0};
    ktable *mark = s->all_tables;
    struct karena *arena = s->arena;
    size_t arena_used = arena ? arena->used : 0;
    int64_t escapes = krt_func_escapes;
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    s->stack_floor = s->stack_budget < here ? here - s->stack_budget : 0;
    s->site = -1;
    int64_t status = run_from(s, code, NULL, NULL, 0, 0, &ret);
    if (s->scratch) /* only loops over pairs() leave any */
        krt_scratch_free(s);
    if (s->all_tables != mark) /* what the entry made and kept nowhere is garbage now */
        krt_tables_sweep(s, mark);
    if (krt_func_escapes == escapes) /* no closure outlives the entry: nor do its cells */
        arena_rewind(s, arena, arena_used);
    return status;
}

/* ---- constant table constructors ---- */

static kval const_value(int64_t tag, int64_t payload, const int64_t *strings)
{
    kval v = {tag, tag == KT_STR ? strings[payload] : payload};
    return v;
}

int k_table_fill(kstate *s, ktable *t, const int64_t *pairs, int64_t n, const int64_t *strings,
                 int64_t *failed)
{
    for (int64_t i = 0; i < n; i++) {
        const int64_t *p = pairs + 4 * i;
        int code = k_table_set(t, const_value(p[0], p[1], strings), const_value(p[2], p[3], strings));
        if (code) {
            *failed = i;
            return k_fail_table(s, t, code);
        }
    }
    return K_OK;
}
