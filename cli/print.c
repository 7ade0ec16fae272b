/* print.c - how the CLI shows things: byte counts, dates, datum descriptors, payloads
 * (scalars in full, arrays summarized).
 *
 * Payloads come straight from the store (a view), so nothing here trusts a length or a
 * descriptor: every read is bounded by `len`. JSON output is in json.c.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define BYTES_SHOWN 64  /* bytes of a BYTES/PICKLE payload that `cat` shows */
#define ITEMS_SHOWN 3   /* array items shown at each end */

const char *cli_fmt_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%" PRIu64 " B", n);
    else
        snprintf(buf, cap, "%.*f %s", v < 10 ? 1 : 0, v, units[u]);
    return buf;
}

const char *cli_fmt_time(uint64_t ns, char *buf, size_t cap)
{
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    char date[32], zone[8];

    if (ns == 0 || !localtime_r(&t, &tm)) {
        snprintf(buf, cap, "-");
        return buf;
    }
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof zone, "%z", &tm); /* "+0200": ISO-8601 wants "+02:00" */
    snprintf(buf, cap, "%s.%03u%.3s:%.2s", date, (unsigned)(ns / 1000000u % 1000u), zone,
             zone + 3);
    return buf;
}

const char *cli_type_name(uint32_t type)
{
    static const char *const names[] = {"none",  "bool", "int64",  "float64", "complex128",
                                        "bytes", "str",  "array",  "pickle",  "record"};
    return type < SHMSTORE_T__COUNT ? names[type] : "?";
}

const char *cli_fmt_type(const shmstore_obj_info_t *o, char *buf, size_t cap)
{
    if (o->kind == SHMSTORE_KIND_QUEUE) {
        snprintf(buf, cap, "%" PRIu64 "/%" PRIu64 " entries", o->count, o->capacity);
        return buf;
    }
    if (o->kind == SHMSTORE_KIND_TABLE) {
        snprintf(buf, cap, "%" PRIu64 "/%" PRIu64 " records of %" PRIu64 " B", o->count,
                 o->capacity, o->record_size);
        return buf;
    }
    if (o->kind == SHMSTORE_KIND_SET) {
        snprintf(buf, cap, "%" PRIu64 " members%s%s%s", o->count, o->set_loading ? ", loading" : "",
                 o->set_flags & SHMSTORE_SET_TIED ? ", tied" : "",
                 o->set_flags & SHMSTORE_SET_WRITABLE ? ", writable" : "");
        return buf;
    }
    if (!o->version) {
        snprintf(buf, cap, "-");
        return buf;
    }
    if (o->kind == SHMSTORE_KIND_RING) { /* "frames <f4 (64,) x 30000" */
        char d[400];
        const char *fd = cli_fmt_desc(&o->desc, d, sizeof d);
        snprintf(buf, cap, "frames %s x %" PRIu64, strncmp(fd, "array ", 6) ? fd : fd + 6,
                 o->capacity);
        return buf;
    }
    return cli_fmt_desc(&o->desc, buf, cap);
}

const char *cli_queue_full_name(uint32_t full)
{
    return full == SHMSTORE_QUEUE_DROP_OLDEST ? "drop_oldest"
           : full == SHMSTORE_QUEUE_ERROR     ? "error"
                                              : "block";
}

const char *cli_fmt_desc(const shmstore_datum_t *d, char *buf, size_t cap)
{
    size_t pos;
    uint32_t i;

    if (d->type != SHMSTORE_T_ARRAY) {
        snprintf(buf, cap, "%s", cli_type_name(d->type));
        return buf;
    }
    pos = (size_t)snprintf(buf, cap, "array %.8s (", d->dtype);
    for (i = 0; i < d->ndim && i < SHMSTORE_NDIM_MAX && pos < cap; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%" PRIu64, i ? ", " : "", d->shape[i]);
    if (pos < cap)
        snprintf(buf + pos, cap - pos, d->ndim == 1 ? ",)" : ")");
    return buf;
}

/* ---- scalars and array items ------------------------------------------------------------ */

/* Whether `c` rounds to the half-precision value `x`: it is within half a unit in the
 * last place of x (11 significant bits; subnormals below 2^-14). */
static int half_roundtrips(double c, double x)
{
    int e = 0;

    if (x != 0)
        frexp(x, &e); /* |x| = m * 2^e, 0.5 <= m < 1 */
    e = e - 1 < -14 ? -14 : e - 1;
    return fabs(c - x) < ldexp(1, e - 10) / 2;
}

/* The shortest digits that read back as the same double, laid out as Python's repr():
 * fixed notation for 1e-4 <= |x| < 1e16 ("100000.0", "0.001"), else "1e+16". */
static void put_real(FILE *f, double x, size_t size)
{
    char buf[400];
    int prec, exp;

    if (isnan(x)) {
        fputs("nan", f);
        return;
    }
    if (isinf(x)) {
        fputs(x < 0 ? "-inf" : "inf", f);
        return;
    }
    /* Round-trip at the item's own precision: float32 "0.33333334", not the digits of
     * its double. */
    for (prec = 0; prec < 16; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec, x);
        if (size == 2 ? half_roundtrips(strtod(buf, NULL), x)
                      : size == 4 ? (float)strtod(buf, NULL) == (float)x : strtod(buf, NULL) == x)
            break;
    }
    snprintf(buf, sizeof buf, "%.*e", prec, x);
    exp = atoi(strchr(buf, 'e') + 1);
    if (x != 0 && (exp < -4 || exp >= 16)) {
        fputs(buf, f);
        return;
    }
    snprintf(buf, sizeof buf, "%.*f", prec - exp > 0 ? prec - exp : 0, x);
    if (!strchr(buf, '.'))
        strcat(buf, ".0"); /* keep a float looking like a float: "3" -> "3.0" */
    fputs(buf, f);
}

static void put_double(FILE *f, double x)
{
    put_real(f, x, 8);
}

/* "(1.0+2.0j)", as Python writes complex numbers. */
static void put_complex(FILE *f, double re, double im, size_t part_size)
{
    fputc('(', f);
    put_real(f, re, part_size);
    if (!(im < 0 || signbit(im)) || isnan(im))
        fputc('+', f);
    put_real(f, im, part_size);
    fputs("j)", f);
}

static double half_to_double(uint16_t h)
{
    int exp = (h >> 10) & 0x1f;
    double mant = h & 0x3ff;
    double v;

    if (exp == 0)
        v = ldexp(mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexp(mant + 1024, exp - 25);
    return (h & 0x8000) ? -v : v;
}

/* One code point of a '<U' item as UTF-8; control characters, '"' and invalid code
 * points escaped. */
static void put_utf8(FILE *f, uint32_t c)
{
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || (c >= 0xd800 && c <= 0xdfff) ||
        c > 0x10ffff)
        fprintf(f, "\\u%04x", c);
    else if (c < 0x80)
        fputc((int)c, f);
    else if (c < 0x800)
        fprintf(f, "%c%c", 0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000)
        fprintf(f, "%c%c%c", 0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else
        fprintf(f, "%c%c%c%c", 0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f),
                0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
}

/* Bytes as a quoted, escaped literal, at most `max` of them. */
static void put_bytes(FILE *f, const unsigned char *p, size_t len, size_t max)
{
    size_t i, n = len < max ? len : max;

    fputc('"', f);
    for (i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\')
            fprintf(f, "\\%c", p[i]);
        else if (isprint(p[i]) && p[i] < 0x80)
            fputc(p[i], f);
        else
            fprintf(f, "\\x%02x", p[i]);
    }
    fputc('"', f);
    if (n < len)
        fprintf(f, "... (%zu bytes)", len);
}

/* The kind of number a dtype holds: 'b' bool, 'i' signed, 'u' unsigned, 'f' float,
 * 'c' complex, 'S' bytes, 'U' UCS-4 text, 0 unknown. */
static int dtype_kind(const char *dtype)
{
    return strchr("biufcSU", dtype[1]) ? dtype[1] : 0;
}

/* Item `p` of `size` bytes as a double (for min/max and printing floats); integers also
 * exactly, in `*iv` or `*uv`. */
static double item_double(int kind, size_t size, const unsigned char *p, int64_t *iv,
                          uint64_t *uv)
{
    union { int8_t i8; int16_t i16; int32_t i32; int64_t i64; uint8_t u8; uint16_t u16;
            uint32_t u32; uint64_t u64; float f32; double f64; long double f16; } u;

    memcpy(&u, p, size < sizeof u ? size : sizeof u);
    *iv = 0;
    *uv = 0;
    if (kind == 'i') {
        *iv = size == 1 ? u.i8 : size == 2 ? u.i16 : size == 4 ? u.i32 : u.i64;
        return (double)*iv;
    }
    if (kind == 'u' || kind == 'b') {
        *uv = size == 1 ? u.u8 : size == 2 ? u.u16 : size == 4 ? u.u32 : u.u64;
        return (double)*uv;
    }
    if (kind == 'f' && size == 2)
        return half_to_double(u.u16);
    if (kind == 'f' && size == 4)
        return u.f32;
    if (kind == 'f' && size == 8)
        return u.f64;
    /* "<f16" is the long double: shown at double precision, as the summary it is */
    if (kind == 'f' && size == 16 && sizeof(long double) == 16)
        return (double)u.f16;
    return NAN;
}

static void put_item(FILE *f, int kind, size_t size, const unsigned char *p)
{
    int64_t iv;
    uint64_t uv;
    double re, im;

    switch (kind) {
    case 'b':
        fputs(p[0] ? "True" : "False", f);
        return;
    case 'i':
        item_double(kind, size, p, &iv, &uv);
        fprintf(f, "%" PRId64, iv);
        return;
    case 'u':
        item_double(kind, size, p, &iv, &uv);
        fprintf(f, "%" PRIu64, uv);
        return;
    case 'f':
        put_real(f, item_double(kind, size, p, &iv, &uv), size);
        return;
    case 'c': /* two floats of half the item size */
        re = item_double('f', size / 2, p, &iv, &uv);
        im = item_double('f', size / 2, p + size / 2, &iv, &uv);
        put_complex(f, re, im, size / 2);
        return;
    case 'S':
        put_bytes(f, p, strnlen((const char *)p, size), BYTES_SHOWN);
        return;
    case 'U': { /* UCS-4: show ASCII, escape the rest */
        size_t i;
        fputc('"', f);
        for (i = 0; i + 4 <= size; i += 4) {
            uint32_t c;
            memcpy(&c, p + i, 4);
            if (c == 0)
                break;
            put_utf8(f, c);
        }
        fputc('"', f);
        return;
    }
    default:
        fputc('?', f);
    }
}

/* "min M, max X" of a numeric array (NaNs ignored; integers compared exactly). */
static void put_min_max(FILE *f, int kind, size_t size, const unsigned char *p, uint64_t n)
{
    int64_t iv, imin = INT64_MAX, imax = INT64_MIN;
    uint64_t uv, umin = UINT64_MAX, umax = 0, i, n_nan = 0;
    double dv, dmin = INFINITY, dmax = -INFINITY;

    for (i = 0; i < n; i++, p += size) {
        dv = item_double(kind, size, p, &iv, &uv);
        if (kind == 'i') {
            imin = iv < imin ? iv : imin;
            imax = iv > imax ? iv : imax;
        } else if (kind == 'u') {
            umin = uv < umin ? uv : umin;
            umax = uv > umax ? uv : umax;
        } else if (isnan(dv)) {
            n_nan++;
        } else {
            dmin = dv < dmin ? dv : dmin;
            dmax = dv > dmax ? dv : dmax;
        }
    }
    if (kind == 'i') {
        fprintf(f, "; min %" PRId64 ", max %" PRId64, imin, imax);
    } else if (kind == 'u') {
        fprintf(f, "; min %" PRIu64 ", max %" PRIu64, umin, umax);
    } else if (n_nan < n) {
        fputs("; min ", f);
        put_real(f, dmin, size);
        fputs(", max ", f);
        put_real(f, dmax, size);
    }
    if (n_nan)
        fprintf(f, "; %" PRIu64 " nan", n_nan);
}

static void print_array(FILE *f, const shmstore_datum_t *d, const unsigned char *p,
                        size_t len)
{
    char desc[512];
    int64_t isz = shmstore_dtype_itemsize(d->dtype);
    int kind = dtype_kind(d->dtype);
    uint64_t n, i;

    fprintf(f, "%s", cli_fmt_desc(d, desc, sizeof desc));
    if (isz <= 0 || kind == 0) {
        fprintf(f, ", %zu bytes\n", len);
        return;
    }
    n = len / (uint64_t)isz; /* validated: len == itemsize * prod(shape) */
    fprintf(f, ", %" PRIu64 " item%s", n, n == 1 ? "" : "s");
    if (n == 0) {
        fputc('\n', f);
        return;
    }
    fputs(": ", f);
    for (i = 0; i < n; i++) {
        if (i == ITEMS_SHOWN && n > 2 * ITEMS_SHOWN) {
            fputs(", ...", f);
            i = n - ITEMS_SHOWN;
        }
        if (i)
            fputs(", ", f);
        put_item(f, kind, (size_t)isz, p + i * (uint64_t)isz);
    }
    if (strchr("iuf", kind) && n > 1)
        put_min_max(f, kind, (size_t)isz, p, n);
    fputc('\n', f);
}

void cli_print_datum(FILE *f, const shmstore_datum_t *d, const void *data, size_t len)
{
    const unsigned char *p = data;
    int64_t iv;
    double dv[2];

    switch (d->type) {
    case SHMSTORE_T_NONE:
        fputs("None\n", f);
        return;
    case SHMSTORE_T_BOOL:
        fputs(len >= 1 && p[0] ? "True\n" : "False\n", f);
        return;
    case SHMSTORE_T_INT64:
        if (len < 8)
            break;
        memcpy(&iv, p, 8);
        fprintf(f, "%" PRId64 "\n", iv);
        return;
    case SHMSTORE_T_FLOAT64:
        if (len < 8)
            break;
        memcpy(dv, p, 8);
        put_double(f, dv[0]);
        fputc('\n', f);
        return;
    case SHMSTORE_T_COMPLEX128:
        if (len < 16)
            break;
        memcpy(dv, p, 16);
        put_complex(f, dv[0], dv[1], 8);
        fputc('\n', f);
        return;
    case SHMSTORE_T_STR:
        fwrite(p, 1, len, f);
        fputc('\n', f);
        return;
    case SHMSTORE_T_BYTES:
        fputs("b", f);
        put_bytes(f, p, len, BYTES_SHOWN * 4);
        fputc('\n', f);
        return;
    case SHMSTORE_T_ARRAY:
        print_array(f, d, p, len);
        return;
    default: /* PICKLE, RECORD: only the Python layer understands them */
        fprintf(f, "%s, %zu bytes (use --raw for the payload)\n", cli_type_name(d->type), len);
        return;
    }
    fprintf(f, "%s with a short payload (%zu bytes)\n", cli_type_name(d->type), len);
}
