/* Operators and builtins that are not inlined: value text, print, concat,
 * stringof, compare, len, div/mod, printf and print_hist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

#define STR(v) ((const kstr *)(intptr_t)(v).payload)

/* ---- value text ---- */

/* v in decimal at out (KRT_TEXT_SCRATCH bytes); its length. snprintf
 * would do, at ~1,000 instructions a call; this runs per concat. */
static int decimal(char *out, int64_t v)
{
    char digits[24], *end = digits + sizeof digits, *d = end;
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do {
        *--d = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--d = '-';
    int n = (int)(end - d);
    memcpy(out, d, (size_t)n);
    return n;
}

int krt_text(kstate *s, kval v, char scratch[KRT_TEXT_SCRATCH], const char **p, uint64_t *len)
{
    int n;
    switch (v.tag) {
    case KT_STR:
        *p = STR(v)->data;
        *len = STR(v)->len;
        return K_OK;
    case KT_INT:
        n = decimal(scratch, v.payload);
        break;
    case KT_BOOL:
        n = snprintf(scratch, KRT_TEXT_SCRATCH, "%s", v.payload ? "true" : "false");
        break;
    case KT_TABLE:
    case KT_FUNC: {
        int64_t id = krt_identity(s, v);
        if (id < 0)
            return k_fail(s, K_E_NOMEM, 0, 0);
        n = snprintf(scratch, KRT_TEXT_SCRATCH, "%s: %lld",
                     v.tag == KT_TABLE ? "table" : "function", (long long)id);
        break;
    }
    default: /* nil */
        n = snprintf(scratch, KRT_TEXT_SCRATCH, "nil");
        break;
    }
    *p = scratch;
    *len = (uint64_t)n;
    return K_OK;
}

static int intern_out(kstate *s, const char *p, uint64_t len, kval *out)
{
    kstr *str = k_intern(p, (uint32_t)len);
    if (!str)
        return k_fail(s, K_E_NOMEM, 0, 0);
    out->tag = KT_STR;
    out->payload = (int64_t)(intptr_t)str;
    return K_OK;
}

int k_value_text(kstate *s, kval v, kval *out)
{
    if (v.tag == KT_STR) {
        *out = v;
        return K_OK;
    }
    char scratch[KRT_TEXT_SCRATCH];
    const char *p;
    uint64_t len;
    int rc = krt_text(s, v, scratch, &p, &len);
    return rc ? rc : intern_out(s, p, len, out);
}

int k_stringof(kstate *s, kval v, kval *out)
{
    kval text;
    int rc = k_value_text(s, v, &text); /* numbers v first, as the semantics do */
    if (rc)
        return rc;
    if ((int64_t)STR(text)->len > s->max_string)
        return k_fail(s, K_E_STRING_TOO_LONG, 0, 0);
    *out = text;
    return K_OK;
}

int k_print(kstate *s, const kval *args, int64_t n)
{
    char scratch[KRT_TEXT_SCRATCH];
    if (krt_mark(s, KM_PRINT, (int64_t)s->out_len, 0, 0, 0))
        return K_E_NOMEM;
    for (int64_t i = 0; i < n; i++) {
        const char *p;
        uint64_t len;
        int rc = krt_text(s, args[i], scratch, &p, &len);
        if (!rc && i > 0)
            rc = k_out_write(s, "\t", 1);
        if (!rc)
            rc = k_out_write(s, p, len);
        if (rc)
            return rc;
    }
    return k_out_write(s, "\n", 1);
}

/* ---- operators ---- */

static int concat_part(kstate *s, kval v, char *scratch, const char **p, uint64_t *len)
{
    if (v.tag == KT_STR) {
        *p = STR(v)->data;
        *len = STR(v)->len;
        return K_OK;
    }
    if (v.tag == KT_INT) {
        *len = (uint64_t)decimal(scratch, v.payload);
        *p = scratch;
        return K_OK;
    }
    return k_fail(s, K_E_CONCAT, v.tag, 0);
}

int k_concat(kstate *s, kval a, kval b, kval *out)
{
    char sa[KRT_TEXT_SCRATCH], sb[KRT_TEXT_SCRATCH];
    const char *pa = NULL, *pb = NULL;
    uint64_t la = 0, lb = 0;
    int rc = concat_part(s, a, sa, &pa, &la);
    if (!rc)
        rc = concat_part(s, b, sb, &pb, &lb);
    if (rc)
        return rc;
    uint64_t len = la + lb;
    /* Checked before joining; kstr lengths are 32-bit whatever the limit. */
    if ((int64_t)len > s->max_string || len > UINT32_MAX)
        return k_fail(s, K_E_STRING_TOO_LONG, 0, 0);
    if (lb == 0 && b.tag == KT_STR && a.tag == KT_STR) {
        *out = a;
        return K_OK;
    }
    if (la == 0 && a.tag == KT_STR && b.tag == KT_STR) {
        *out = b;
        return K_OK;
    }
    char stack[1024];
    char *buf = len <= sizeof stack ? stack : malloc(len);
    if (!buf)
        return k_fail(s, K_E_NOMEM, 0, 0);
    memcpy(buf, pa, la);
    memcpy(buf + la, pb, lb);
    rc = intern_out(s, buf, len, out);
    if (buf != stack)
        free(buf);
    return rc;
}

int k_compare(kstate *s, kval a, kval b, int64_t *out)
{
    if (a.tag == KT_INT && b.tag == KT_INT) {
        *out = (a.payload > b.payload) - (a.payload < b.payload);
        return K_OK;
    }
    if (a.tag == KT_STR && b.tag == KT_STR) {
        const kstr *x = STR(a), *y = STR(b);
        if (x == y) {
            *out = 0;
            return K_OK;
        }
        uint32_t n = x->len < y->len ? x->len : y->len;
        int c = n ? memcmp(x->data, y->data, n) : 0; /* memcmp compares unsigned bytes */
        if (c == 0)
            c = (x->len > y->len) - (x->len < y->len);
        *out = (c > 0) - (c < 0);
        return K_OK;
    }
    return k_fail(s, K_E_COMPARE, a.tag, b.tag);
}

int k_len(kstate *s, kval v, int64_t *out)
{
    if (v.tag == KT_STR) {
        *out = STR(v)->len;
        return K_OK;
    }
    if (v.tag == KT_TABLE) {
        *out = ((ktable *)(intptr_t)v.payload)->count;
        return K_OK;
    }
    return k_fail(s, K_E_LEN, v.tag, 0);
}

int k_div(kstate *s, int64_t a, int64_t b, int64_t *out)
{
    if (b == 0)
        return k_fail(s, K_E_DIV_ZERO, 0, 0);
    *out = b == -1 ? (int64_t)(0 - (uint64_t)a) : a / b; /* INT64_MIN / -1 wraps */
    return K_OK;
}

int k_mod(kstate *s, int64_t a, int64_t b, int64_t *out)
{
    if (b == 0)
        return k_fail(s, K_E_DIV_ZERO, 0, 0);
    *out = b == -1 ? 0 : a % b;
    return K_OK;
}

/* ---- printf ---- */

#define MAX_WIDTH 4096

typedef struct pspec {
    unsigned char conv;
    unsigned char minus, plus, space, zero, alt;
    int width;
    int precision; /* -1 when absent */
} pspec;

static int is_int_conv(unsigned char c)
{
    return c == 'd' || c == 'i' || c == 'u' || c == 'x' || c == 'X' || c == 'o' || c == 'c';
}

/* Digits at f[*pos..]; mirrors semantics/printf.py's _number: the format
 * must not end inside the digits, then the value must be <= MAX_WIDTH. */
static int parse_number(const unsigned char *f, uint64_t n, uint64_t *pos, int *value)
{
    uint64_t i = *pos;
    while (f[i] >= '0' && f[i] <= '9') {
        if (++i >= n)
            return K_E_PRINTF_INCOMPLETE;
    }
    uint64_t start = *pos;
    while (start < i && f[start] == '0')
        start++;
    if (i - start > 4)
        return K_E_PRINTF_WIDTH;
    int v = 0;
    for (uint64_t j = start; j < i; j++)
        v = v * 10 + (f[j] - '0');
    if (v > MAX_WIDTH)
        return K_E_PRINTF_WIDTH;
    *value = v;
    *pos = i;
    return K_OK;
}

/* Parse the conversion after the '%' at f[pos-1]. On success fills *sp and
 * *next (the position after it). On K_E_PRINTF_CONV, *bad is the byte. */
static int parse_spec(const unsigned char *f, uint64_t n, uint64_t pos, pspec *sp, uint64_t *next,
                      int *bad)
{
#define NEED(p) \
    if ((p) >= n) \
        return K_E_PRINTF_INCOMPLETE
    memset(sp, 0, sizeof *sp);
    sp->precision = -1;
    NEED(pos);
    for (;;) {
        unsigned char c = f[pos];
        if (c == '-')
            sp->minus = 1;
        else if (c == '+')
            sp->plus = 1;
        else if (c == ' ')
            sp->space = 1;
        else if (c == '0')
            sp->zero = 1;
        else if (c == '#')
            sp->alt = 1;
        else
            break;
        pos++;
        NEED(pos);
    }
    int rc = parse_number(f, n, &pos, &sp->width);
    if (rc)
        return rc;
    if (f[pos] == '.') {
        pos++;
        NEED(pos);
        rc = parse_number(f, n, &pos, &sp->precision);
        if (rc)
            return rc;
    }
    if (f[pos] == 'l') {
        pos++;
        NEED(pos);
        if (f[pos] == 'l') {
            pos++;
            NEED(pos);
        }
    } else if (f[pos] == 'h') {
        pos++;
        NEED(pos);
    }
    unsigned char c = f[pos];
    if (!(is_int_conv(c) || c == 's' || c == '%')) {
        *bad = c;
        return K_E_PRINTF_CONV;
    }
    sp->conv = c;
    *next = pos + 1;
    return K_OK;
#undef NEED
}

static int pad_bytes(kstate *s, const pspec *sp, const char *p, uint64_t len)
{
    uint64_t fill = (uint64_t)sp->width > len ? (uint64_t)sp->width - len : 0;
    int rc = krt_out_reserve(s, len + fill);
    if (rc)
        return rc;
    char *o = s->out + s->out_len;
    if (!sp->minus) {
        memset(o, ' ', fill);
        o += fill;
    }
    if (len)
        memcpy(o, p, len);
    o += len;
    if (sp->minus)
        memset(o, ' ', fill);
    s->out_len += len + fill;
    return K_OK;
}

/* The common conversions without precision or '#' (%d, %-6d, %03d, %+d,
 * %x...), formatted here: snprintf costs ~1,000 instructions a call, most
 * of it setting up a FILE. The rules are C's: the sign ('-', else '+' or
 * ' ' for d/i), then zeros up to the width when '0' and not '-', digits;
 * spaces pad on the left, or the right with '-'. */
static int format_int_plain(kstate *s, const pspec *sp, int64_t v)
{
    char digits[24], *end = digits + sizeof digits, *d = end;
    const char *hex = sp->conv == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
    int is_signed = sp->conv == 'd' || sp->conv == 'i';
    uint64_t u = is_signed && v < 0 ? -(uint64_t)v : (uint64_t)v;
    unsigned base = sp->conv == 'x' || sp->conv == 'X' ? 16 : sp->conv == 'o' ? 8 : 10;
    do {
        *--d = hex[u % base];
        u /= base;
    } while (u);
    char sign = !is_signed ? 0 : v < 0 ? '-' : sp->plus ? '+' : sp->space ? ' ' : 0;
    uint64_t body = (uint64_t)(end - d) + (sign != 0);
    uint64_t fill = (uint64_t)sp->width > body ? (uint64_t)sp->width - body : 0;
    int rc = krt_out_reserve(s, body + fill);
    if (rc)
        return rc;
    char *o = s->out + s->out_len;
    int zeros = sp->zero && !sp->minus;
    if (!zeros && !sp->minus) {
        memset(o, ' ', fill);
        o += fill;
    }
    if (sign)
        *o++ = sign;
    if (zeros) {
        memset(o, '0', fill);
        o += fill;
    }
    memcpy(o, d, (size_t)(end - d));
    o += end - d;
    if (sp->minus) {
        memset(o, ' ', fill);
        o += fill;
    }
    s->out_len = (uint64_t)(o - s->out);
    return K_OK;
}

static int format_int(kstate *s, const pspec *sp, int64_t v)
{
    if (sp->precision < 0 && !sp->alt)
        return format_int_plain(s, sp, v);
    /* Rebuild the spec for snprintf with "ll", dropping the flags glibc
     * ignores anyway ("#" for d/i, "+" and " " for unsigned) so no libc
     * leeway remains. */
    char spec[32], *q = spec;
    int is_signed = sp->conv == 'd' || sp->conv == 'i';
    *q++ = '%';
    if (sp->minus)
        *q++ = '-';
    if (is_signed && sp->plus)
        *q++ = '+';
    if (is_signed && sp->space)
        *q++ = ' ';
    if (sp->zero)
        *q++ = '0';
    if (!is_signed && sp->alt)
        *q++ = '#';
    if (sp->width)
        q += sprintf(q, "%d", sp->width);
    if (sp->precision >= 0)
        q += sprintf(q, ".%d", sp->precision);
    *q++ = 'l';
    *q++ = 'l';
    *q++ = (char)sp->conv;
    *q = 0;
    /* At most max(width, precision + 2 for "0x", 22 digits + sign) bytes. */
    uint64_t room = MAX_WIDTH + 32;
    int rc = krt_out_reserve(s, room);
    if (rc)
        return rc;
    int n = is_signed ? snprintf(s->out + s->out_len, room, spec, (long long)v)
                      : snprintf(s->out + s->out_len, room, spec, (unsigned long long)v);
    if (n < 0 || (uint64_t)n >= room)
        return k_fail(s, K_E_NOMEM, 0, 0); /* cannot happen with the limits above */
    s->out_len += (uint64_t)n;
    return K_OK;
}

int k_printf(kstate *s, kval fmt, const kval *args, int64_t nargs)
{
    if (fmt.tag != KT_STR)
        return k_fail(s, K_E_PRINTF_FORMAT, fmt.tag, 0);
    const unsigned char *f = (const unsigned char *)STR(fmt)->data;
    uint64_t n = STR(fmt)->len;
    pspec sp;
    uint64_t pos, next;
    int bad = 0, rc;
    int64_t argi;

    /* Pass 1: check in scan order, writing nothing. An argument error of
     * an earlier conversion wins over a format error further on. */
    argi = 0;
    for (pos = 0;;) {
        const unsigned char *pct = pos < n ? memchr(f + pos, '%', n - pos) : NULL;
        if (!pct)
            break;
        rc = parse_spec(f, n, (uint64_t)(pct - f) + 1, &sp, &next, &bad);
        if (rc)
            return k_fail(s, rc, bad, 0);
        pos = next;
        if (sp.conv == '%')
            continue;
        if (argi >= nargs)
            return k_fail(s, K_E_PRINTF_ARGS, 0, 0);
        kval a = args[argi++];
        if (is_int_conv(sp.conv) && a.tag != KT_INT)
            return k_fail(s, K_E_PRINTF_BADARG, sp.conv, a.tag);
    }

    /* Pass 2: render. */
    argi = 0;
    uint64_t start = s->out_len, marks = s->n_marks;
    if ((rc = krt_mark(s, KM_PRINTF, (int64_t)start, 0, 0, 0)) != 0)
        return rc;
    char scratch[KRT_TEXT_SCRATCH];
    for (pos = 0;;) {
        const unsigned char *pct = pos < n ? memchr(f + pos, '%', n - pos) : NULL;
        uint64_t lit_end = pct ? (uint64_t)(pct - f) : n;
        if ((rc = k_out_write(s, (const char *)f + pos, lit_end - pos)) != 0)
            goto fail;
        if (!pct)
            break;
        parse_spec(f, n, lit_end + 1, &sp, &next, &bad);
        pos = next;
        if (sp.conv == '%') {
            rc = k_out_write(s, "%", 1); /* glibc ignores flags and width here */
        } else {
            kval a = args[argi++];
            if (sp.conv == 's') {
                const char *p;
                uint64_t len;
                rc = krt_text(s, a, scratch, &p, &len);
                if (!rc) {
                    if (sp.precision >= 0 && (uint64_t)sp.precision < len)
                        len = (uint64_t)sp.precision;
                    rc = pad_bytes(s, &sp, p, len);
                }
            } else if (sp.conv == 'c') {
                char c = (char)(a.payload & 255); /* precision is ignored */
                rc = pad_bytes(s, &sp, &c, 1);
            } else {
                rc = format_int(s, &sp, a.payload);
            }
        }
        if (rc)
            goto fail;
    }
    return K_OK;
fail:
    s->out_len = start; /* only out of memory gets here */
    krt_marks_cut(s, marks);
    return rc;
}

/* ---- print_hist ---- */

#define HIST_DEFAULT_ROWS 20
#define HIST_BAR 38

typedef struct hrow {
    kval key;
    int64_t count;
    uint32_t order;
} hrow;

static int hrow_cmp(const void *pa, const void *pb)
{
    const hrow *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1; /* descending */
    return a->order < b->order ? -1 : a->order > b->order; /* ties: insertion order */
}

static int hist_row(kstate *s, kval key, int64_t count, unsigned __int128 total)
{
    char scratch[KRT_TEXT_SCRATCH];
    const char *p;
    uint64_t len;
    int rc = krt_text(s, key, scratch, &p, &len);
    if (rc)
        return rc;
    uint64_t label_fill = len < 31 ? 31 - len : 0;
    uint64_t bar = total ? (uint64_t)((unsigned __int128)count * HIST_BAR / total) : 0;
    rc = krt_out_reserve(s, label_fill + len + 2 + HIST_BAR + 32);
    if (!rc)
        rc = krt_mark(s, KM_ROW, (int64_t)(s->out_len + label_fill), (int64_t)len, count, (int64_t)bar);
    if (rc)
        return rc;
    char *o = s->out + s->out_len;
    memset(o, ' ', label_fill);
    o += label_fill;
    memcpy(o, p, len);
    o += len;
    *o++ = ' ';
    *o++ = '|';
    memset(o, '@', bar);
    memset(o + bar, ' ', HIST_BAR - bar);
    o += HIST_BAR;
    o += sprintf(o, "%-7lld\n", (long long)count);
    s->out_len = (uint64_t)(o - s->out);
    return K_OK;
}

int k_print_hist(kstate *s, kval table, kval nrows)
{
    static const char header[] =
        "                         value ------------- Distribution ------------- count\n";
    static const char cut[] = "                            ... |\n";
    if (table.tag != KT_TABLE)
        return k_fail(s, K_E_HIST_TABLE, table.tag, 0);
    int64_t rows = HIST_DEFAULT_ROWS;
    if (nrows.tag != KT_NIL) {
        if (nrows.tag != KT_INT)
            return k_fail(s, K_E_HIST_ROWS, nrows.tag, 0);
        rows = nrows.payload < 0 ? 0 : nrows.payload;
    }
    ktable *t = (ktable *)(intptr_t)table.payload;
    /* Validate every value before printing anything or numbering any key. */
    unsigned __int128 total = 0; /* exact: no int64 wrap */
    for (uint32_t i = 0; i < t->used; i++) {
        const kentry *e = &t->entries[i];
        if (e->key.tag == KT_NIL)
            continue;
        if (e->value.tag != KT_INT || e->value.payload < 0)
            return k_fail(s, K_E_HIST_VALUES, 0, 0);
        total += (uint64_t)e->value.payload;
    }
    hrow *sorted = malloc(((size_t)t->count + 1) * sizeof *sorted);
    if (!sorted)
        return k_fail(s, K_E_NOMEM, 0, 0);
    uint32_t m = 0;
    for (uint32_t i = 0; i < t->used; i++) {
        const kentry *e = &t->entries[i];
        if (e->key.tag != KT_NIL) {
            sorted[m].key = e->key;
            sorted[m].count = e->value.payload;
            sorted[m].order = m;
            m++;
        }
    }
    qsort(sorted, m, sizeof *sorted, hrow_cmp);
    uint64_t start = s->out_len, marks = s->n_marks;
    int rc = krt_mark(s, KM_HIST, (int64_t)start, 0, 0, 0);
    if (!rc)
        rc = k_out_write(s, header, sizeof header - 1);
    for (uint32_t i = 0; !rc && i < m && (int64_t)i < rows; i++)
        rc = hist_row(s, sorted[i].key, sorted[i].count, total);
    if (!rc && (int64_t)m > rows)
        rc = krt_mark(s, KM_MORE, (int64_t)s->out_len, 0, 0, 0);
    if (!rc && (int64_t)m > rows)
        rc = k_out_write(s, cut, sizeof cut - 1);
    free(sorted);
    if (rc) {
        s->out_len = start;
        krt_marks_cut(s, marks);
    }
    return rc;
}
