/* npy.c - the header of numpy's .npy files (format versions 1.0, 2.0 and 3.0), for
 * `shmstore put --file`.
 *
 * A .npy file is: the magic "\x93NUMPY", a major and a minor version byte, the header
 * length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0), then the header: a
 * Python dict literal with exactly the keys 'descr' (a dtype string), 'fortran_order'
 * (True/False) and 'shape' (a tuple of ints), padded with spaces and a newline. The
 * items follow, C order unless fortran_order. 3.0 only allows UTF-8 in the header,
 * which changes nothing for the keys we accept. The header comes from a file anyone
 * may have written, so the parser is strict and bounded by the header length.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct cur {
    const char *p, *end;
    char *err;
    size_t err_cap;
};

static int fail(struct cur *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct cur *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->err_cap, fmt, ap);
    va_end(ap);
    return -1;
}

static void skip_ws(struct cur *c)
{
    while (c->p < c->end && isspace((unsigned char)*c->p))
        c->p++;
}

static int expect(struct cur *c, char ch)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch)
        return fail(c, "bad header: expected '%c'", ch);
    c->p++;
    return 0;
}

/* A quoted string without escapes (all that dtype strings and the keys need). */
static int parse_str(struct cur *c, char *out, size_t cap)
{
    char q;
    size_t n = 0;

    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return fail(c, "bad header: expected a string");
    q = *c->p++;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap)
            return fail(c, "bad header: unsupported string");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return fail(c, "bad header: unterminated string");
    c->p++;
    out[n] = '\0';
    return 0;
}

static int parse_shape(struct cur *c, shmstore_datum_t *d)
{
    if (expect(c, '(') != 0)
        return -1;
    d->ndim = 0;
    for (;;) {
        uint64_t v = 0;
        skip_ws(c);
        if (c->p < c->end && *c->p == ')')
            break;
        if (c->p >= c->end || !isdigit((unsigned char)*c->p))
            return fail(c, "bad header: shape must be a tuple of whole numbers");
        while (c->p < c->end && isdigit((unsigned char)*c->p)) {
            if (v > (UINT64_MAX - 9) / 10)
                return fail(c, "bad header: shape extent too large");
            v = v * 10 + (uint64_t)(*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') /* Python 2 long */
            c->p++;
        if (d->ndim == SHMSTORE_NDIM_MAX)
            return fail(c, "more than %d dimensions", SHMSTORE_NDIM_MAX);
        d->shape[d->ndim++] = v;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',')
            c->p++;
        else if (c->p >= c->end || *c->p != ')')
            return fail(c, "bad header: expected ',' or ')' in shape");
    }
    c->p++;
    return 0;
}

/* numpy's descr to the library's dtype string: '|u1' -> '<u1', '<f8' stays. */
static int map_dtype(struct cur *c, const char *descr, char *out)
{
    char cand[2][SHMSTORE_DTYPE_MAX];
    int i;

    if (descr[0] == '[')
        return fail(c, "structured dtypes are not supported");
    if (strlen(descr) < 2 || strlen(descr) >= SHMSTORE_DTYPE_MAX ||
        !strchr("<>|=", descr[0]))
        return fail(c, "dtype '%s' is not supported", descr);
    if (descr[0] == '>' && strcmp(descr + 1, "i1") && strcmp(descr + 1, "u1") &&
        strcmp(descr + 1, "b1") && descr[1] != 'S')
        return fail(c, "big-endian dtype '%s' is not supported; save a.astype('<%s')", descr,
                    descr + 1);
    /* Library spellings: '|' for b1 and S<n>, '<' for the rest; try both. */
    snprintf(cand[0], sizeof cand[0], "%c%.6s", strchr("bS", descr[1]) ? '|' : '<', descr + 1);
    snprintf(cand[1], sizeof cand[1], "%c%.6s", strchr("bS", descr[1]) ? '<' : '|', descr + 1);
    for (i = 0; i < 2; i++) {
        if (shmstore_dtype_itemsize(cand[i]) > 0) {
            memcpy(out, cand[i], SHMSTORE_DTYPE_MAX);
            return 0;
        }
    }
    return fail(c, "dtype '%s' is not supported by shmstore", descr);
}

int cli_npy_prefix_len(const unsigned char *buf, size_t len, uint64_t *prefix,
                       uint64_t *header_len)
{
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return -1;
    if (buf[6] == 1) {
        *prefix = 10;
        *header_len = (uint64_t)buf[8] | (uint64_t)buf[9] << 8;
        return 0;
    }
    if ((buf[6] == 2 || buf[6] == 3) && len >= 12) {
        *prefix = 12;
        *header_len = (uint64_t)buf[8] | (uint64_t)buf[9] << 8 | (uint64_t)buf[10] << 16 |
                      (uint64_t)buf[11] << 24;
        return 0;
    }
    return -1;
}

int cli_npy_parse(const char *hdr, size_t len, shmstore_datum_t *d, uint64_t *data_len,
                  char *err, size_t err_cap)
{
    struct cur c = {hdr, hdr + len, err, err_cap};
    char key[32], descr[64], dtype[SHMSTORE_DTYPE_MAX] = "";
    int has_descr = 0, has_order = 0, has_shape = 0, rc;
    shmstore_datum_t tmp = {0};
    uint64_t n = 1;
    int64_t isz;
    uint32_t i;

    if (expect(&c, '{') != 0)
        return -1;
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}')
            break;
        if (parse_str(&c, key, sizeof key) != 0 || expect(&c, ':') != 0)
            return -1;
        skip_ws(&c);
        if (strcmp(key, "descr") == 0 && !has_descr) {
            if (c.p < c.end && *c.p == '[')
                return fail(&c, "structured dtypes are not supported");
            if (parse_str(&c, descr, sizeof descr) != 0 || map_dtype(&c, descr, dtype) != 0)
                return -1;
            has_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !has_order) {
            if ((size_t)(c.end - c.p) >= 5 && memcmp(c.p, "False", 5) == 0)
                c.p += 5;
            else if ((size_t)(c.end - c.p) >= 4 && memcmp(c.p, "True", 4) == 0)
                return fail(&c, "Fortran-order arrays are not supported; save "
                                "np.ascontiguousarray(a)");
            else
                return fail(&c, "bad header: fortran_order must be True or False");
            has_order = 1;
        } else if (strcmp(key, "shape") == 0 && !has_shape) {
            if (parse_shape(&c, &tmp) != 0)
                return -1;
            has_shape = 1;
        } else {
            return fail(&c, "bad header: unexpected key '%s'", key);
        }
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',')
            c.p++;
        else if (c.p >= c.end || *c.p != '}')
            return fail(&c, "bad header: expected ',' or '}'");
    }
    if (!has_descr || !has_order || !has_shape)
        return fail(&c, "bad header: it needs descr, fortran_order and shape");

    rc = shmstore_datum_init_array(d, dtype, tmp.ndim, tmp.shape);
    if (rc < 0)
        return fail(&c, "dtype '%s' with %u dimensions: %s", dtype, tmp.ndim,
                    shmstore_strerror(rc));
    isz = shmstore_dtype_itemsize(dtype);
    n = (uint64_t)isz;
    for (i = 0; i < tmp.ndim; i++) {
        if (tmp.shape[i] && n > UINT64_MAX / tmp.shape[i])
            return fail(&c, "the array is too large");
        n *= tmp.shape[i];
    }
    *data_len = n;
    return 0;
}
