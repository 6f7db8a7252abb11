/* argstr natively: a tracepoint's print fmt, compiled by events/printfmt/bytecode.py
 * into a flat program, interpreted over one sample's RAW bytes.
 *
 * events/printfmt/closures.py (ArgstrRenderer) is the reference, byte for byte:
 * values are unsigned 64-bit, reads past the RAW data give 0, and the
 * conversions follow its _format_int/_format_str/_pad. A program is
 * validated once when it is registered (k_feed_argstr): opcodes, blob
 * ranges, table rows and forward-only jumps, so rendering any record
 * terminates; every read of the record is bounds-checked against its size.
 */
#include <stdlib.h>
#include <string.h>

#include "ktrt_private.h"

/* The instruction set (KA_*), KA_WIDTH and KA_STACK: ktrt_abi.h, in the
 * order of events/printfmt/bytecode.py's OPS. */

/* Conversion flags (bytecode._FLAG_BITS) and where '*' goes. */
#define F_ALT 1
#define F_LEFT 2
#define F_PLUS 4
#define F_ZERO 8
#define STAR_WIDTH 1
#define STAR_PREC 2

/* ---- output ---- */

static int grow(krt_buf *o, uint64_t extra);

/* Room for extra more bytes; the common case inline, growing out of line. */
static inline int reserve(krt_buf *o, uint64_t extra)
{
    return extra <= o->cap - o->len ? K_OK : grow(o, extra);
}

static int grow(krt_buf *o, uint64_t extra)
{
    if (extra > UINT32_MAX - o->len) /* an interned string's length is a u32 */
        return K_E_NOMEM;
    uint64_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + extra)
        cap *= 2;
    if (cap > UINT32_MAX) /* so the inline check alone keeps len within a u32 */
        cap = UINT32_MAX;
    char *p = realloc(o->p, cap);
    if (!p)
        return K_E_NOMEM;
    o->p = p;
    o->cap = cap;
    return K_OK;
}

static int put_bytes(krt_buf *o, const void *p, uint64_t n)
{
    if (reserve(o, n))
        return K_E_NOMEM;
    if (n)
        memcpy(o->p + o->len, p, n);
    o->len += n;
    return K_OK;
}

static int put_fill(krt_buf *o, char c, uint64_t n)
{
    if (!n) /* the buffer may not exist yet */
        return K_OK;
    if (reserve(o, n))
        return K_E_NOMEM;
    memset(o->p + o->len, c, n);
    o->len += n;
    return K_OK;
}

/* v's digits in base 8, 10 or 16, at the end of buf[24]; returns the first.
 * Constant divisors: a division by a variable base costs ~30 cycles a digit. */
static char *digits(uint64_t v, int base, int upper, char buf[24])
{
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *p = buf + 24;
    if (base == 16) {
        do { *--p = set[v & 15]; v >>= 4; } while (v);
    } else if (base == 8) {
        do { *--p = (char)('0' + (v & 7)); v >>= 3; } while (v);
    } else {
        do { *--p = (char)('0' + v % 10); v /= 10; } while (v);
    }
    return p;
}

/* "0x" and v in hex: printfmt's b"0x%x" (prefix NULL: plain %x). */
static int put_hex(krt_buf *o, const char *prefix, uint64_t v)
{
    char buf[24];
    char *d = digits(v, 16, 0, buf);
    if (prefix && put_bytes(o, prefix, strlen(prefix)))
        return K_E_NOMEM;
    return put_bytes(o, d, (uint64_t)(buf + 24 - d));
}

/* The %s piece spec (printfmt's put): cut at NUL and at prec, pad to width. */
typedef struct put_spec {
    int64_t width, prec; /* -1: none */
    int left;
} put_spec;

/* p[0..n) padded with spaces to width (-1: none): printfmt._pad. */
static int put_padded(krt_buf *o, const void *p, uint64_t n, int64_t width, int left)
{
    uint64_t pad = width > 0 && (uint64_t)width > n ? (uint64_t)width - n : 0;
    if (!left && put_fill(o, ' ', pad))
        return K_E_NOMEM;
    if (put_bytes(o, p, n))
        return K_E_NOMEM;
    return left ? put_fill(o, ' ', pad) : K_OK;
}

static int put_piece(krt_buf *o, const put_spec *ps, const uint8_t *p, uint64_t n)
{
    const uint8_t *nul = n ? memchr(p, 0, (size_t)n) : NULL;
    if (nul)
        n = (uint64_t)(nul - p);
    if (ps->prec >= 0 && n > (uint64_t)ps->prec)
        n = (uint64_t)ps->prec;
    return put_padded(o, p, n, ps->width, ps->left);
}

/* A '*' argument (printfmt._star): an int; a negative width pads left. */
static void apply_star(int star, uint64_t arg, int64_t *width, int64_t *prec, int *left)
{
    int64_t v = (int32_t)(uint32_t)arg;
    if (star == STAR_WIDTH) {
        if (v < 0) {
            *left = 1;
            v = -v;
        }
        *width = v;
    } else if (star == STAR_PREC) {
        *prec = v >= 0 ? v : -1;
    }
}

/* One integer conversion: printfmt._format_int. */
static int put_int(krt_buf *o, uint64_t v, int conv, int flags, int bits, int64_t width, int64_t prec)
{
    int left = !!(flags & F_LEFT);
    if (bits < 64)
        v &= (1ULL << bits) - 1;
    if (conv == 'c') { /* the byte, even a NUL */
        uint8_t ch = (uint8_t)v;
        return put_padded(o, &ch, 1, width, left);
    }
    char head[3];
    int hlen = 0;
    if ((conv == 'd' || conv == 'i')) {
        if (v >> (bits - 1) & 1) {
            v = bits < 64 ? (1ULL << bits) - v : ~v + 1; /* the magnitude */
            head[hlen++] = '-';
        } else if (flags & F_PLUS) {
            head[hlen++] = '+';
        }
    }
    int base = conv == 'o' ? 8 : (conv == 'x' || conv == 'X') ? 16 : 10;
    char buf[24];
    char *d = digits(v, base, conv == 'X', buf);
    uint64_t nd = prec == 0 && v == 0 ? 0 : (uint64_t)(buf + 24 - d);
    uint64_t zeros = prec > 0 && (uint64_t)prec > nd ? (uint64_t)prec - nd : 0;
    if (flags & F_ALT) {
        if (base == 16 && v) {
            head[hlen++] = '0';
            head[hlen++] = conv == 'x' ? 'x' : 'X';
        } else if (conv == 'o' && !zeros && !(nd && d[0] == '0')) {
            zeros = 1;
        }
    }
    if (width >= 0 && (flags & F_ZERO) && !left && prec < 0 && (uint64_t)width > hlen + zeros + nd)
        zeros = (uint64_t)width - hlen - nd;
    uint64_t body = hlen + zeros + nd;
    uint64_t pad = width > 0 && (uint64_t)width > body ? (uint64_t)width - body : 0;
    if (!left && put_fill(o, ' ', pad))
        return K_E_NOMEM;
    if (put_bytes(o, head, (uint64_t)hlen) || put_fill(o, '0', zeros) || put_bytes(o, d, nd))
        return K_E_NOMEM;
    return left ? put_fill(o, ' ', pad) : K_OK;
}

/* ---- the record ---- */

/* RAW[off, +size) little endian, 0 when it is not all there. */
static uint64_t read_at(const uint8_t *raw, uint64_t n, uint64_t off, int64_t size)
{
    if (off > n || (uint64_t)size > n - off)
        return 0;
    uint64_t v = 0;
    memcpy(&v, raw + off, (size_t)size); /* little-endian hosts, as feed.c */
    return v;
}

/* A 4-byte __data_loc/__rel_loc's data: printfmt._dyn_loc. */
static void dyn_loc(const uint8_t *raw, uint64_t n, int64_t field, int64_t relative, uint64_t *off,
                    uint64_t *len)
{
    *off = *len = 0;
    if ((uint64_t)field + 4 > n)
        return;
    uint64_t word = read_at(raw, n, (uint64_t)field, 4);
    *off = (word & 0xFFFF) + (relative ? (uint64_t)field + 4 : 0);
    *len = word >> 16;
    if (*off > n)
        *off = 0;
    if (*off + *len > n)
        *len = 0;
}

/* ---- the interpreter ---- */

static uint64_t binary(int64_t op, uint64_t a, uint64_t b)
{
    switch (op) {
    case KA_ADD: return a + b;
    case KA_SUB: return a - b;
    case KA_MUL: return a * b;
    case KA_DIV: return b ? a / b : 0;
    case KA_MOD: return b ? a % b : 0;
    case KA_SHL: return a << (b & 63);
    case KA_SHR: return a >> (b & 63);
    case KA_AND: return a & b;
    case KA_OR: return a | b;
    case KA_XOR: return a ^ b;
    case KA_LAND: return a && b;
    case KA_LOR: return a || b;
    case KA_EQ: return a == b;
    case KA_NE: return a != b;
    case KA_LT: return a < b;
    case KA_LE: return a <= b;
    case KA_GT: return a > b;
    default: return a >= b; /* KA_GE */
    }
}

/* __print_flags over the table rows at e (printfmt._str_flags). */
static int put_flags(krt_buf *o, const put_spec *ps, const char *blob, const int64_t *in, uint64_t val)
{
    const char *delim = blob + in[1];
    uint64_t dlen = (uint64_t)in[2];
    int printed = 0;
    const int64_t *e = in + KA_WIDTH;
    for (int64_t k = 0; k < in[3]; k++, e += KA_WIDTH) {
        const uint8_t *name = (const uint8_t *)blob + e[2];
        if (!val && e[1] < 0)
            return put_piece(o, ps, name, (uint64_t)e[3]);
        uint64_t fv = (uint64_t)e[1];
        if (e[1] > 0 && (val & fv) == fv) {
            if (printed && put_bytes(o, delim, dlen))
                return K_E_NOMEM;
            if (put_piece(o, ps, name, (uint64_t)e[3]))
                return K_E_NOMEM;
            printed = 1;
            val &= ~fv;
        }
    }
    if (!val)
        return K_OK;
    if (printed && put_bytes(o, delim, dlen))
        return K_E_NOMEM;
    return put_hex(o, "0x", val);
}

/* __print_symbolic: the first row whose value is val (printfmt._str_symbolic). */
static int put_symbolic(krt_buf *o, const put_spec *ps, const char *blob, const int64_t *in, uint64_t val)
{
    const int64_t *e = in + KA_WIDTH;
    for (int64_t k = 0; k < in[3]; k++, e += KA_WIDTH)
        if ((uint64_t)e[1] == val)
            return put_piece(o, ps, (const uint8_t *)blob + e[2], (uint64_t)e[3]);
    return put_hex(o, "0x", val);
}

#define PUSH(x)                  \
    do {                         \
        if (sp == KA_STACK)      \
            return -1;           \
        stack[sp++] = (x);       \
    } while (0)
#define POP(x)                   \
    do {                         \
        if (sp == 0)             \
            return -1;           \
        (x) = stack[--sp];       \
    } while (0)

int krt_argstr_render(const krt_argstr *a, const uint8_t *raw, uint64_t n, krt_buf *o)
{
    uint64_t stack[KA_STACK], x, y;
    int sp = 0;
    put_spec ps = {-1, -1, 0};
    o->len = 0;
    for (int64_t pc = 0; pc < a->n; pc++) {
        const int64_t *in = a->code + KA_WIDTH * pc;
        int rc = K_OK;
        switch (in[0]) {
        case KA_END:
            return K_OK;
        case KA_CONST:
            PUSH((uint64_t)in[1]);
            break;
        case KA_READ:
            PUSH(read_at(raw, n, (uint64_t)in[1], in[2]));
            break;
        case KA_READ_AT: /* an index beyond the record reads past it: 0 */
            POP(x);
            PUSH(x < n ? read_at(raw, n, (uint64_t)in[1] + x * (uint64_t)in[2], in[2]) : 0);
            break;
        case KA_READ_DYN: {
            uint64_t off, len;
            POP(x);
            dyn_loc(raw, n, in[1], in[3], &off, &len);
            PUSH(x <= n ? read_at(raw, n, off + x, in[2]) : 0);
            break;
        }
        case KA_DYN_LEN: {
            uint64_t off, len;
            dyn_loc(raw, n, in[1], in[3], &off, &len);
            PUSH(len);
            break;
        }
        case KA_MASK: POP(x); PUSH(x & (uint64_t)in[1]); break;
        case KA_NOT: POP(x); PUSH(!x); break;
        case KA_INV: POP(x); PUSH(~x); break;
        case KA_NEG: POP(x); PUSH(-x); break;
        case KA_JZ:
            POP(x);
            if (!x)
                pc = in[1] - 1;
            break;
        case KA_JMP:
            pc = in[1] - 1;
            break;
        case KA_LIT:
            rc = put_bytes(o, a->blob + in[1], (uint64_t)in[2]);
            break;
        case KA_INT: {
            int64_t width = in[2], prec = in[3];
            int flags = (int)(in[1] >> 8 & 0xFF), star = (int)(in[1] >> 24 & 0xFF), left = 0;
            POP(x);
            if (star) {
                POP(y);
                apply_star(star, y, &width, &prec, &left);
            }
            rc = put_int(o, x, (int)(in[1] & 0xFF), flags | (left ? F_LEFT : 0), (int)(in[1] >> 16 & 0xFF),
                         width, prec);
            break;
        }
        case KA_STR_SPEC: {
            int star = (int)(in[1] >> 8 & 0xFF);
            ps.width = in[2];
            ps.prec = in[3];
            ps.left = !!(in[1] & F_LEFT);
            if (star) {
                POP(y);
                apply_star(star, y, &ps.width, &ps.prec, &ps.left);
            }
            break;
        }
        case KA_PUT_TEXT:
            rc = put_piece(o, &ps, (const uint8_t *)a->blob + in[1], (uint64_t)in[2]);
            break;
        case KA_PUT_RAW: { /* raw[off:off + size], as Python slices */
            uint64_t off = (uint64_t)in[1], end = off + (uint64_t)in[2];
            if (end > n)
                end = n;
            if (off < end)
                rc = put_piece(o, &ps, raw + off, end - off);
            else
                rc = put_piece(o, &ps, (const uint8_t *)"", 0);
            break;
        }
        case KA_PUT_DYN: {
            uint64_t off, len;
            dyn_loc(raw, n, in[1], in[3], &off, &len);
            if (len) /* libtraceevent prints nothing for an empty string: no padding either */
                rc = put_piece(o, &ps, raw + off, len);
            break;
        }
        case KA_HEX8:
            rc = put_hex(o, NULL, read_at(raw, n, (uint64_t)in[1], 8));
            break;
        case KA_FLAGS:
            POP(x);
            rc = put_flags(o, &ps, a->blob, in, x);
            pc += in[3];
            break;
        case KA_SYM:
            POP(x);
            rc = put_symbolic(o, &ps, a->blob, in, x);
            pc += in[3];
            break;
        case KA_ENTRY:
            break;
        case KA_PTR:
            POP(x);
            rc = x ? put_hex(o, "0x", x) : put_bytes(o, "(nil)", 5);
            break;
        case KA_ADDR:
            POP(x);
            rc = put_hex(o, "0x", x);
            break;
        default:
            POP(y);
            POP(x);
            PUSH(binary(in[0], x, y));
        }
        if (rc)
            return rc;
    }
    return K_OK;
}

/* ---- registering ---- */

static int in_blob(int64_t off, int64_t len, int64_t nblob)
{
    return off >= 0 && len >= 0 && off <= nblob && len <= nblob - off;
}

/* Whether code[0..n) is a program the interpreter may run (see the top). */
int krt_argstr_valid(const int64_t *code, int64_t n, int64_t nblob)
{
    if (n <= 0 || code[KA_WIDTH * (n - 1)] != KA_END)
        return 0;
    for (int64_t pc = 0; pc < n; pc++) {
        const int64_t *in = code + KA_WIDTH * pc;
        switch (in[0]) {
        case KA_READ: case KA_READ_AT: case KA_READ_DYN:
            if (in[1] < 0 || !(in[2] == 1 || in[2] == 2 || in[2] == 4 || in[2] == 8))
                return 0;
            break;
        case KA_DYN_LEN: case KA_PUT_DYN:
            if (in[1] < 0 || in[1] > INT32_MAX)
                return 0;
            break;
        case KA_PUT_RAW: case KA_HEX8:
            if (in[1] < 0 || in[1] > INT32_MAX || in[2] < 0 || in[2] > INT32_MAX)
                return 0;
            break;
        case KA_INT: {
            int64_t bits = in[1] >> 16 & 0xFF, star = in[1] >> 24 & 0xFF;
            if (!strchr("cdiuxXo", (int)(in[1] & 0xFF)) || (in[1] & 0xFF) == 0 || star > STAR_PREC
                || !(bits == 8 || bits == 16 || bits == 32 || bits == 64))
                return 0;
            break;
        }
        case KA_STR_SPEC:
            if ((in[1] >> 8 & 0xFF) > STAR_PREC)
                return 0;
            break;
        case KA_JZ: case KA_JMP:
            if (in[1] <= pc || in[1] >= n)
                return 0;
            break;
        case KA_LIT: case KA_PUT_TEXT:
            if (!in_blob(in[1], in[2], nblob))
                return 0;
            break;
        case KA_FLAGS: case KA_SYM:
            if ((in[0] == KA_FLAGS && !in_blob(in[1], in[2], nblob)) || in[3] < 0 || in[3] >= n - pc)
                return 0;
            for (int64_t k = 1; k <= in[3]; k++) {
                const int64_t *e = in + KA_WIDTH * k;
                if (e[0] != KA_ENTRY || !in_blob(e[2], e[3], nblob))
                    return 0;
            }
            pc += in[3];
            break;
        case KA_ENTRY: /* only inside a table */
            return 0;
        default:
            if (in[0] < 0 || in[0] >= KA_NOPS)
                return 0;
        }
    }
    return 1;
}

int krt_argstr_set(krt_argstr *a, const int64_t *code, int64_t n, const char *blob, int64_t nblob)
{
    if (nblob < 0 || !krt_argstr_valid(code, n, nblob))
        return -1;
    krt_argstr_free(a);
    a->code = malloc((size_t)n * KA_WIDTH * sizeof *code);
    a->blob = malloc(nblob ? (size_t)nblob : 1);
    if (!a->code || !a->blob) {
        krt_argstr_free(a);
        return K_E_NOMEM;
    }
    memcpy(a->code, code, (size_t)n * KA_WIDTH * sizeof *code);
    if (nblob)
        memcpy(a->blob, blob, (size_t)nblob);
    a->n = n;
    return K_OK;
}

void krt_argstr_free(krt_argstr *a)
{
    free(a->code);
    free(a->blob);
    a->code = NULL;
    a->blob = NULL;
    a->n = 0;
}

int k_argstr_eval(const int64_t *code, int64_t n, const char *blob, int64_t nblob, const uint8_t *raw,
                  uint64_t len, kval *out)
{
    if (nblob < 0 || !krt_argstr_valid(code, n, nblob))
        return -1;
    krt_argstr a = {(int64_t *)code, n, (char *)blob};
    krt_buf buf = {0};
    int rc = krt_argstr_render(&a, raw, len, &buf);
    kstr *k = rc ? NULL : k_intern(buf.p ? buf.p : "", (uint32_t)buf.len);
    free(buf.p);
    if (rc < 0)
        return -1;
    if (!k)
        return K_E_NOMEM;
    *out = (kval){KT_STR, (int64_t)(intptr_t)k};
    return K_OK;
}
