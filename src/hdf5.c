/* hdf5.c - HDF5 import and export (see shmstore.h). Built with libhdf5 when CMake finds it
 * (SHMSTORE_HAVE_HDF5); otherwise every call reports that this build has no HDF5. */
#include <errno.h>

#include "internal.h"

#ifndef SHMSTORE_HAVE_HDF5
SHMSTORE_API int shmstore_hdf5_available(void)
{
    return 0;
}

static int no_hdf5(void)
{
    return shmstore__seterr(-ENOSYS, "shmstore was built without HDF5 (install libhdf5-dev and "
                            "rebuild)");
}

SHMSTORE_API int shmstore_hdf5_load(shmstore_t *s, const char *path, const char *prefix,
                                    unsigned flags, shmstore_progress_fn progress, void *arg,
                                    uint64_t *n_loaded)
{
    (void)s, (void)path, (void)prefix, (void)flags, (void)progress, (void)arg, (void)n_loaded;
    return no_hdf5();
}

SHMSTORE_API int shmstore_hdf5_save(shmstore_t *s, const char *prefix, const char *path)
{
    (void)s, (void)prefix, (void)path;
    return no_hdf5();
}
#else /* SHMSTORE_HAVE_HDF5 */

#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <pthread.h>
#include <zlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads of a large dataset go in slices along its first axis (progress between them). */
#define SLICE_BYTES (64ull << 20)
#define NPY_MAGIC "\x93NUMPY\x01\x00"

SHMSTORE_API int shmstore_hdf5_available(void)
{
    return 1;
}

/* libhdf5 prints its error stack by default; the library never prints: silence it for
 * the call and put the caller's handler back after. */
struct quiet {
    H5E_auto2_t fn;
    void *data;
};
static void quiet_begin(struct quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
static void quiet_end(const struct quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

/* Close `id` with `fn` (H5Tclose, H5Sclose, ...) if it is one. */
static void h5close(hid_t id, herr_t (*fn)(hid_t))
{
    if (id >= 0)
        fn(id);
}

/* ---- types ------------------------------------------------------------------------------ */

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_TIME: return "time";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    case H5T_VLEN: return "variable-length sequence";
    case H5T_STRING: return "variable-length string";
    case H5T_COMPOUND: return "compound";
    case H5T_ARRAY: return "array";
    case H5T_ENUM: return "enum";
    default: return "unknown";
    }
}

static hid_t int_type(size_t size, bool is_signed)
{
    switch (size) {
    case 1: return H5Tcopy(is_signed ? H5T_STD_I8LE : H5T_STD_U8LE);
    case 2: return H5Tcopy(is_signed ? H5T_STD_I16LE : H5T_STD_U16LE);
    case 4: return H5Tcopy(is_signed ? H5T_STD_I32LE : H5T_STD_U32LE);
    case 8: return H5Tcopy(is_signed ? H5T_STD_I64LE : H5T_STD_U64LE);
    default: return -1;
    }
}

/* numpy's float16 as h5py writes it. */
static hid_t f16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

static hid_t float_type(size_t size)
{
    switch (size) {
    case 2: return f16_type();
    case 4: return H5Tcopy(H5T_IEEE_F32LE);
    case 8: return H5Tcopy(H5T_IEEE_F64LE);
    case 16: return sizeof(long double) == 16 ? H5Tcopy(H5T_NATIVE_LDOUBLE) : -1;
    default: return -1;
    }
}

static hid_t complex_type(size_t size)
{
    hid_t f = float_type(size / 2);
    if (f < 0)
        return -1;
    hid_t t = H5Tcreate(H5T_COMPOUND, size);
    H5Tinsert(t, "r", 0, f);
    H5Tinsert(t, "i", size / 2, f);
    H5Tclose(f);
    return t;
}

static hid_t bool_type(void)
{
    hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t v = 0;
    H5Tenum_insert(t, "FALSE", &v);
    v = 1;
    H5Tenum_insert(t, "TRUE", &v);
    return t;
}

static bool is_bool_enum(hid_t t)
{
    if (H5Tget_size(t) != 1 || H5Tget_nmembers(t) != 2)
        return false;
    char *a = H5Tget_member_name(t, 0), *b = H5Tget_member_name(t, 1);
    bool ok = a && b && strcmp(a, "FALSE") == 0 && strcmp(b, "TRUE") == 0;
    H5free_memory(a);
    H5free_memory(b);
    return ok;
}

static bool is_complex(hid_t t)
{
    if (H5Tget_nmembers(t) != 2)
        return false;
    char *a = H5Tget_member_name(t, 0), *b = H5Tget_member_name(t, 1);
    hid_t ta = H5Tget_member_type(t, 0), tb = H5Tget_member_type(t, 1);
    size_t fs = H5Tget_size(ta);
    bool ok = a && b && strcmp(a, "r") == 0 && strcmp(b, "i") == 0 &&
              H5Tget_class(ta) == H5T_FLOAT && H5Tget_class(tb) == H5T_FLOAT &&
              fs == H5Tget_size(tb) && (fs == 4 || fs == 8) && H5Tget_member_offset(t, 1) == fs &&
              H5Tget_size(t) == 2 * fs;
    H5free_memory(a);
    H5free_memory(b);
    H5Tclose(ta);
    H5Tclose(tb);
    return ok;
}

/* The datum of HDF5 type `t`: dtype string, memory type to read with (caller closes),
 * extra trailing dims (array types), and for records the numpy layout in `descr`.
 * Returns 0, or SHMSTORE_EDTYPE with `*why` the unsupported type's name. */
struct tmap {
    char dtype[SHMSTORE_DTYPE_MAX];
    hid_t mem;
    uint32_t n_extra;
    hsize_t extra[SHMSTORE_NDIM_MAX];
    char descr[2048]; /* records: "{'names': [...], ...}", else "" */
};

static int map_type(hid_t t, struct tmap *m, const char **why, bool top);

static int map_record(hid_t t, struct tmap *m, const char **why)
{
    int n = H5Tget_nmembers(t);
    size_t size = H5Tget_size(t);
    char names[640] = "", formats[640] = "", offsets[512] = ""; /* fit m->descr */
    size_t pn = 0, pf = 0, po = 0;
    for (int i = 0; i < n; i++) {
        char *fname = H5Tget_member_name(t, (unsigned)i);
        hid_t ft = H5Tget_member_type(t, (unsigned)i);
        struct tmap fm;
        int r = fname && !strpbrk(fname, "'\\") ? map_type(ft, &fm, why, false) : SHMSTORE_EDTYPE;
        if (r == 0)
            H5Tclose(fm.mem);
        H5Tclose(ft);
        if (r < 0 || fm.n_extra) {
            if (r == 0)
                *why = "compound with an array field";
            else if (!*why)
                *why = "compound with an unusual field name";
            H5free_memory(fname);
            return SHMSTORE_EDTYPE;
        }
        pn += (size_t)snprintf(names + pn, sizeof(names) - pn, "%s'%s'", i ? ", " : "", fname);
        pf += (size_t)snprintf(formats + pf, sizeof(formats) - pf, "%s'%s'", i ? ", " : "", fm.dtype);
        po += (size_t)snprintf(offsets + po, sizeof(offsets) - po, "%s%zu", i ? ", " : "",
                               (size_t)H5Tget_member_offset(t, (unsigned)i));
        H5free_memory(fname);
        if (pn >= sizeof(names) || pf >= sizeof(formats) || po >= sizeof(offsets)) {
            *why = "compound with too many fields";
            return SHMSTORE_EDTYPE;
        }
    }
    snprintf(m->descr, sizeof(m->descr),
             "{'names': [%s], 'formats': [%s], 'offsets': [%s], 'itemsize': %zu}", names, formats,
             offsets, size);
    if (size > 99999) {
        *why = "compound larger than 99999 bytes";
        return SHMSTORE_EDTYPE;
    }
    snprintf(m->dtype, sizeof(m->dtype), "|S%zu", size);
    m->mem = H5Tcopy(t); /* the file's bytes as they are (numpy's layout, little-endian) */
    return 0;
}

static int map_type(hid_t t, struct tmap *m, const char **why, bool top)
{
    H5T_class_t c = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    m->mem = -1;
    m->n_extra = 0;
    m->descr[0] = '\0';
    switch (c) {
    case H5T_INTEGER: {
        bool sgn = H5Tget_sign(t) == H5T_SGN_2;
        m->mem = int_type(size, sgn);
        snprintf(m->dtype, sizeof(m->dtype), size == 1 ? "|%c1" : "<%c%zu", sgn ? 'i' : 'u', size);
        break;
    }
    case H5T_FLOAT:
        m->mem = float_type(size);
        snprintf(m->dtype, sizeof(m->dtype), "<f%zu", size);
        break;
    case H5T_ENUM:
        if (is_bool_enum(t)) {
            m->mem = H5Tcopy(t);
            snprintf(m->dtype, sizeof(m->dtype), "|b1");
        } else if (H5Tget_order(t) == H5T_ORDER_LE || size == 1) {
            hid_t base = H5Tget_super(t);
            bool sgn = H5Tget_sign(base) == H5T_SGN_2;
            H5Tclose(base);
            m->mem = size <= 8 ? H5Tcopy(t) : -1; /* the stored integers, as they are */
            snprintf(m->dtype, sizeof(m->dtype), size == 1 ? "|%c1" : "<%c%zu", sgn ? 'i' : 'u',
                     size);
        }
        break;
    case H5T_COMPOUND:
        if (is_complex(t)) {
            m->mem = complex_type(size);
            snprintf(m->dtype, sizeof(m->dtype), "<c%zu", size);
        } else if (top) {
            return map_record(t, m, why);
        }
        break;
    case H5T_STRING:
        if (!H5Tis_variable_str(t) && size <= 99999) {
            m->mem = H5Tcopy(t);
            snprintf(m->dtype, sizeof(m->dtype), "|S%zu", size);
        }
        break;
    case H5T_ARRAY: {
        hid_t base = H5Tget_super(t);
        int nd = H5Tget_array_ndims(t);
        hsize_t dims[H5S_MAX_RANK];
        struct tmap bm;
        int r = top && nd > 0 && nd <= SHMSTORE_NDIM_MAX && H5Tget_array_dims2(t, dims) == nd
                    ? map_type(base, &bm, why, false)
                    : SHMSTORE_EDTYPE;
        H5Tclose(base);
        if (r < 0) {
            if (!*why)
                *why = "array of an unsupported type";
            return SHMSTORE_EDTYPE;
        }
        memcpy(m->dtype, bm.dtype, sizeof(m->dtype));
        m->mem = H5Tarray_create2(bm.mem, (unsigned)nd, dims);
        H5Tclose(bm.mem);
        m->n_extra = (uint32_t)nd;
        memcpy(m->extra, dims, (size_t)nd * sizeof(dims[0]));
        break;
    }
    default:
        break;
    }
    if (m->mem < 0) {
        *why = class_name(c);
        if (c == H5T_INTEGER || c == H5T_FLOAT)
            *why = c == H5T_INTEGER ? "integer of an unusual size" : "float of an unusual size";
        return SHMSTORE_EDTYPE;
    }
    return 0;
}

/* ---- attributes ---------------------------------------------------------------------------- */

struct abuf {
    char *p;
    uint32_t len, cap;
};

static int abuf_add(struct abuf *a, const char *key, shmstore_type_t type, const void *val,
                    uint32_t val_len)
{
    for (;;) {
        int r = shmstore_attrs_add(a->p, a->cap, &a->len, key, type, val, val_len);
        if (r != -ENOSPC)
            return r;
        if (a->cap >= SHMSTORE_ATTRS_MAX)
            return -E2BIG;
        uint32_t cap = a->cap ? 2 * a->cap : 1024;
        if (cap > SHMSTORE_ATTRS_MAX)
            cap = SHMSTORE_ATTRS_MAX;
        char *p = realloc(a->p, cap);
        if (!p)
            return -ENOMEM;
        a->p = p;
        a->cap = cap;
    }
}

/* An .npy image (format 1.0) of `n` bytes of data: how array attrs are kept. */
static char *npy_encode(const char *dtype, int ndim, const hsize_t *dims, const void *data,
                        size_t n, uint32_t *len)
{
    char shape[512] = "";
    size_t p = 0;
    for (int i = 0; i < ndim && p < sizeof(shape); i++)
        p += (size_t)snprintf(shape + p, sizeof(shape) - p, "%" PRIu64 ",%s", (uint64_t)dims[i],
                              i + 1 < ndim ? " " : "");
    char hdr[700];
    int h = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     dtype, shape);
    size_t hlen = (size_t)h, total = 10 + hlen + 1;
    size_t pad = (64 - total % 64) % 64;
    hlen += pad + 1;
    if (10 + hlen + n > SHMSTORE_ATTRS_MAX)
        return NULL;
    char *out = malloc(10 + hlen + n + 1);
    if (!out)
        return NULL;
    memcpy(out, NPY_MAGIC, 8);
    out[8] = (char)(hlen & 0xff);
    out[9] = (char)(hlen >> 8);
    memcpy(out + 10, hdr, (size_t)h);
    memset(out + 10 + h, ' ', pad);
    out[10 + hlen - 1] = '\n';
    memcpy(out + 10 + hlen, data, n);
    *len = (uint32_t)(10 + hlen + n);
    return out;
}

struct load_ctx;
static int fail_path(struct load_ctx *c, int err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct h5item {
    char name[SHMSTORE_NAME_MAX + 1]; /* member name, relative to the prefix */
    hid_t mem;                        /* memory type to read with, -1 = nothing to read */
    shmstore_datum_t desc;
    uint64_t len;
    struct abuf attrs;
};

struct load_ctx {
    shmstore_t *s;
    const char *file;
    const char *prefix;
    size_t prefix_len;
    unsigned flags;
    hid_t fid;
    struct h5item *items;
    size_t n, cap;
    int err;
    const char *cur; /* path of the object whose attrs are being read */
    struct abuf *cur_attrs;
};

static int fail_path(struct load_ctx *c, int err, const char *path, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->err = shmstore__seterr(err, "%s: '/%s': %s", c->file, path, msg);
    return -1;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *arg)
{
    (void)info;
    struct load_ctx *c = arg;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
    herr_t ret = 0;
    int r = 0;
    if (t < 0 || sp < 0) {
        ret = fail_path(c, -EIO, c->cur, "cannot read attribute '%s'", name);
        goto out;
    }
    if (strlen(name) > 255 || !name[0]) {
        ret = fail_path(c, SHMSTORE_ENAME, c->cur, "attribute name '%.40s...' is longer than 255 "
                        "bytes", name);
        goto out;
    }
    H5S_class_t sc = H5Sget_simple_extent_type(sp);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[H5S_MAX_RANK];
    if (nd > 0)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    bool scalar = sc == H5S_SCALAR;
    H5T_class_t cl = H5Tget_class(t);
    if (sc == H5S_NULL) {
        r = abuf_add(c->cur_attrs, name, SHMSTORE_T_NONE, NULL, 0);
    } else if (cl == H5T_STRING) {
        size_t n = (size_t)np;
        if (H5Tis_variable_str(t)) {
            char **v = calloc(n ? n : 1, sizeof(*v));
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            if (!v || H5Aread(a, mt, v) < 0) {
                ret = fail_path(c, -EIO, c->cur, "cannot read attribute '%s'", name);
            } else if (scalar) {
                r = abuf_add(c->cur_attrs, name, SHMSTORE_T_STR, v[0] ? v[0] : "",
                             v[0] ? (uint32_t)strlen(v[0]) : 0);
            } else {
                size_t w = 1;
                for (size_t i = 0; i < n; i++)
                    if (v[i] && strlen(v[i]) > w)
                        w = strlen(v[i]);
                char *flat = calloc(n ? n : 1, w), dt[32];
                for (size_t i = 0; flat && i < n; i++)
                    if (v[i])
                        memcpy(flat + i * w, v[i], strlen(v[i]));
                snprintf(dt, sizeof(dt), "|S%zu", w);
                uint32_t len;
                char *npy = flat ? npy_encode(dt, nd, dims, flat, n * w, &len) : NULL;
                r = npy ? abuf_add(c->cur_attrs, name, SHMSTORE_T_BYTES, npy, len) : -E2BIG;
                free(npy);
                free(flat);
            }
            if (v)
                H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v);
            H5Tclose(mt);
            free(v);
        } else {
            size_t w = H5Tget_size(t);
            char *buf = calloc(n ? n : 1, w), dt[32];
            if (!buf || H5Aread(a, t, buf) < 0) {
                ret = fail_path(c, -EIO, c->cur, "cannot read attribute '%s'", name);
            } else if (scalar) {
                size_t l = strnlen(buf, w);
                r = abuf_add(c->cur_attrs, name, SHMSTORE_T_STR, buf, (uint32_t)l);
            } else {
                snprintf(dt, sizeof(dt), "|S%zu", w);
                uint32_t len;
                char *npy = npy_encode(dt, nd, dims, buf, n * w, &len);
                r = npy ? abuf_add(c->cur_attrs, name, SHMSTORE_T_BYTES, npy, len) : -E2BIG;
                free(npy);
            }
            free(buf);
        }
    } else {
        struct tmap m;
        const char *why = NULL;
        r = map_type(t, &m, &why, false);
        if (r < 0) {
            if (c->flags & SHMSTORE_H5_SKIP_UNSUPPORTED) {
                r = 0;
                goto out;
            }
            ret = fail_path(c, SHMSTORE_EDTYPE, c->cur, "attribute '%s' has an unsupported HDF5 "
                            "type (%s); use --skip-unsupported to leave it out", name, why);
            goto out;
        }
        size_t isz = H5Tget_size(m.mem);
        size_t n = (size_t)np;
        /* A scalar is converted in place to a double below: room for 16 bytes at least. */
        char *buf = calloc(n ? n : 1, isz > 16 ? isz : 16);
        if (!buf || H5Aread(a, m.mem, buf) < 0) {
            ret = fail_path(c, -EIO, c->cur, "cannot read attribute '%s'", name);
        } else if (scalar) {
            char k = m.dtype[1];
            int64_t iv = 0;
            double dv;
            if (k == 'b') {
                uint8_t bv = buf[0] != 0;
                r = abuf_add(c->cur_attrs, name, SHMSTORE_T_BOOL, &bv, 1);
            } else if (k == 'i' || k == 'u') {
                if (k == 'u' && isz == 8) {
                    uint64_t u;
                    memcpy(&u, buf, 8);
                    iv = (int64_t)u; /* above INT64_MAX: wraps, as numpy's astype */
                } else if (k == 'u') {
                    uint32_t u32 = 0;
                    uint16_t u16 = 0;
                    iv = isz == 1 ? (uint8_t)buf[0]
                                  : isz == 2 ? (memcpy(&u16, buf, 2), u16) : (memcpy(&u32, buf, 4), u32);
                } else {
                    int32_t s32 = 0;
                    int16_t s16 = 0;
                    iv = isz == 1   ? (int8_t)buf[0]
                         : isz == 2 ? (memcpy(&s16, buf, 2), s16)
                         : isz == 4 ? (memcpy(&s32, buf, 4), s32)
                                    : (memcpy(&iv, buf, 8), iv);
                }
                r = abuf_add(c->cur_attrs, name, SHMSTORE_T_INT64, &iv, 8);
            } else if (k == 'f') {
                H5Tconvert(m.mem, H5T_NATIVE_DOUBLE, 1, buf, NULL, H5P_DEFAULT);
                memcpy(&dv, buf, 8);
                r = abuf_add(c->cur_attrs, name, SHMSTORE_T_FLOAT64, &dv, 8);
            } else { /* complex */
                double z[2];
                if (isz == 8) {
                    float f[2];
                    memcpy(f, buf, 8);
                    z[0] = f[0];
                    z[1] = f[1];
                } else {
                    memcpy(z, buf, 16);
                }
                r = abuf_add(c->cur_attrs, name, SHMSTORE_T_COMPLEX128, z, 16);
            }
        } else {
            uint32_t len;
            char *npy = npy_encode(m.dtype, nd, dims, buf, n * isz, &len);
            r = npy ? abuf_add(c->cur_attrs, name, SHMSTORE_T_BYTES, npy, len) : -E2BIG;
            free(npy);
        }
        free(buf);
        H5Tclose(m.mem);
    }
out:
    if (r == -E2BIG && ret == 0)
        ret = fail_path(c, -EINVAL, c->cur, "attributes larger than %d bytes in all (at '%s')",
                        SHMSTORE_ATTRS_MAX, name);
    else if (r < 0 && ret == 0)
        ret = fail_path(c, r, c->cur, "attribute '%s': cannot store it", name);
    h5close(sp, H5Sclose);
    h5close(t, H5Tclose);
    h5close(a, H5Aclose);
    return ret;
}

static int read_attrs(struct load_ctx *c, hid_t obj, const char *path, struct abuf *a)
{
    c->cur = path;
    c->cur_attrs = a;
    hsize_t idx = 0;
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, c) < 0 && !c->err)
        fail_path(c, -EIO, path, "cannot list its attributes");
    return c->err;
}

/* ---- the walk ------------------------------------------------------------------------------ */

static struct h5item *new_item(struct load_ctx *c, const char *name)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        void *p = realloc(c->items, cap * sizeof(*c->items));
        if (!p) {
            c->err = shmstore__seterr(-ENOMEM, "out of process memory");
            return NULL;
        }
        c->items = p;
        c->cap = cap;
    }
    struct h5item *it = &c->items[c->n++];
    memset(it, 0, sizeof(*it));
    it->mem = -1;
    snprintf(it->name, sizeof(it->name), "%s", name);
    return it;
}

static int check_len(struct load_ctx *c, const char *name)
{
    if (c->prefix_len + 1 + strlen(name) > SHMSTORE_NAME_MAX)
        return fail_path(c, SHMSTORE_ENAME, name, "the name '%s/%s' is longer than %d bytes",
                         c->prefix, name, SHMSTORE_NAME_MAX);
    return 0;
}

static int add_dataset(struct load_ctx *c, hid_t d, const char *name)
{
    if (check_len(c, name) < 0)
        return -1;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    struct tmap m;
    const char *why = NULL;
    int ret = 0;
    if (t < 0 || sp < 0) {
        ret = fail_path(c, -EIO, name, "cannot read the dataset's type or shape");
        goto out;
    }
    H5S_class_t sc = H5Sget_simple_extent_type(sp);
    if (map_type(t, &m, &why, true) < 0) {
        if (c->flags & SHMSTORE_H5_SKIP_UNSUPPORTED)
            goto out;
        ret = fail_path(c, SHMSTORE_EDTYPE, name, "dataset of unsupported HDF5 type (%s); use "
                        "--skip-unsupported to leave it out", why);
        goto out;
    }
    struct h5item *it = new_item(c, name);
    if (!it) {
        H5Tclose(m.mem);
        ret = -1;
        goto out;
    }
    int nd = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : 0;
    hsize_t dims[H5S_MAX_RANK];
    if (nd > 0)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sc == H5S_NULL) { /* no data at all: a NONE member (its attrs kept) */
        H5Tclose(m.mem);
        shmstore_datum_init(&it->desc, SHMSTORE_T_NONE);
    } else {
        uint64_t shape[SHMSTORE_NDIM_MAX];
        if ((uint32_t)nd + m.n_extra > SHMSTORE_NDIM_MAX) {
            H5Tclose(m.mem);
            c->n--;
            ret = fail_path(c, SHMSTORE_EDTYPE, name, "more than %d dimensions", SHMSTORE_NDIM_MAX);
            goto out;
        }
        for (int i = 0; i < nd; i++)
            shape[i] = dims[i];
        for (uint32_t i = 0; i < m.n_extra; i++)
            shape[nd + i] = m.extra[i];
        shmstore_datum_init_array(&it->desc, m.dtype, (uint32_t)nd + m.n_extra, shape);
        int64_t isz = shmstore_dtype_itemsize(m.dtype);
        uint64_t len = (uint64_t)isz;
        for (uint32_t i = 0; i < it->desc.ndim; i++) {
            if (shape[i] && len > UINT64_MAX / 4 / shape[i]) {
                H5Tclose(m.mem);
                c->n--;
                ret = fail_path(c, -ENOSPC, name, "dataset larger than any store");
                goto out;
            }
            len *= shape[i];
        }
        it->len = len;
        it->mem = m.mem;
    }
    if (m.descr[0]) {
        int r = abuf_add(&it->attrs, "__dtype__", SHMSTORE_T_STR, m.descr, (uint32_t)strlen(m.descr));
        if (r < 0) {
            ret = fail_path(c, r, name, "cannot store its record layout");
            goto out;
        }
    }
    if (read_attrs(c, d, name, &it->attrs) < 0)
        ret = -1;
out:
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return ret;
}

static int walk_group(struct load_ctx *c, hid_t g, const char *path);

struct link_arg {
    struct load_ctx *c;
    const char *path;
};

static herr_t link_cb(hid_t g, const char *name, const H5L_info_t *info, void *arg)
{
    (void)info;
    struct link_arg *la = arg;
    struct load_ctx *c = la->c;
    char child[2 * SHMSTORE_NAME_MAX + 2];
    snprintf(child, sizeof(child), "%s%s%s", la->path, la->path[0] ? "/" : "", name);
    if (strlen(child) > SHMSTORE_NAME_MAX || check_len(c, child) < 0) {
        if (!c->err)
            fail_path(c, SHMSTORE_ENAME, child, "path too long");
        return -1;
    }
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        if (c->flags & SHMSTORE_H5_SKIP_UNSUPPORTED)
            return 0; /* a dangling soft or external link */
        return fail_path(c, -EIO, child, "cannot open it (a dangling or external link?)");
    }
    int r;
    switch (H5Iget_type(o)) {
    case H5I_GROUP:
        r = walk_group(c, o, child);
        break;
    case H5I_DATASET:
        r = add_dataset(c, o, child);
        break;
    default: /* a named datatype: nothing to load */
        r = 0;
        break;
    }
    H5Oclose(o);
    return r < 0 ? -1 : 0;
}

static int walk_group(struct load_ctx *c, hid_t g, const char *path)
{
    /* Group attributes: a NONE member "<group>/.attrs" carrying them. */
    struct abuf a = {0};
    if (read_attrs(c, g, path[0] ? path : "", &a) < 0) {
        free(a.p);
        return -1;
    }
    if (a.len) {
        char name[SHMSTORE_NAME_MAX + 8];
        snprintf(name, sizeof(name), "%s%s.attrs", path, path[0] ? "/" : "");
        struct h5item *it = strlen(name) <= SHMSTORE_NAME_MAX && check_len(c, name) == 0
                                ? new_item(c, name)
                                : NULL;
        if (!it) {
            free(a.p);
            return -1;
        }
        shmstore_datum_init(&it->desc, SHMSTORE_T_NONE);
        it->attrs = a;
    } else {
        free(a.p);
    }
    struct link_arg la = {c, path};
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, link_cb, &la) < 0) {
        if (!c->err)
            fail_path(c, -EIO, path, "cannot list the group");
        return -1;
    }
    return 0;
}

static void free_items(struct load_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->items[i].mem >= 0)
            H5Tclose(c->items[i].mem);
        free(c->items[i].attrs.p);
    }
    free(c->items);
}

/* ---- chunked + deflate datasets, decompressed in parallel ---------------------------------
 * libhdf5 (serial, not thread-safe) decompresses chunk after chunk on one core. For the
 * common layout (chunks that span whole rows, the deflate filter with or without shuffle,
 * the file's type being the memory type byte for byte), the chunks' file addresses are
 * looked up with libhdf5, then INFLATE_THREADS_MAX threads (one per core) each pread() a
 * chunk's bytes and inflate them with zlib straight into the member (or, for an edge
 * chunk or a shuffled one, through a buffer). Anything else is read by H5Dread. */
#define INFLATE_THREADS_MAX 4

struct chunk_job {
    uint64_t addr, csize; /* the compressed bytes in the file */
    uint64_t dst_off;     /* where the chunk's first row goes */
    uint64_t len;         /* bytes of the chunk inside the dataset (< full: an edge chunk) */
};

struct inflate_ctx {
    int fd;
    char *dst;
    const struct chunk_job *jobs;
    size_t n_jobs;
    uint64_t full, max_csize; /* bytes of an inflated chunk; largest compressed chunk */
    size_t shuffle;           /* element size to unshuffle by, 0 = no shuffle filter */
    _Atomic size_t next;
    _Atomic uint64_t done;
    _Atomic int err;          /* first failure: -EIO (read), -EILSEQ (inflate), -ENOMEM */
};

static int inflate_job(struct inflate_ctx *x, const struct chunk_job *j, unsigned char *cbuf,
                       unsigned char *tmp)
{
    for (uint64_t got = 0; got < j->csize;) {
        ssize_t r = pread(x->fd, cbuf + got, j->csize - got, (off_t)(j->addr + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -EIO;
        got += (uint64_t)r;
    }
    bool direct = j->len == x->full && !x->shuffle;
    unsigned char *out = direct ? (unsigned char *)x->dst + j->dst_off : tmp;
    uLongf out_len = (uLongf)x->full;
    if (uncompress(out, &out_len, cbuf, (uLong)j->csize) != Z_OK || out_len != x->full)
        return -EILSEQ;
    if (direct)
        return 0;
    char *d = x->dst + j->dst_off;
    if (!x->shuffle) {
        memcpy(d, tmp, j->len);
        return 0;
    }
    /* Shuffled: byte b of element i is at tmp[b * n + i] (n elements in the chunk). */
    size_t es = x->shuffle, n = x->full / es, n_valid = j->len / es;
    for (size_t i = 0; i < n_valid; i++)
        for (size_t b = 0; b < es; b++)
            d[i * es + b] = (char)tmp[b * n + i];
    return 0;
}

/* Take jobs until none is left or one failed; `progress` only from the loading thread. */
static void inflate_jobs(struct inflate_ctx *x, bool is_main, struct load_ctx *c,
                         const struct h5item *it, uint64_t done0, uint64_t total,
                         shmstore_progress_fn progress, void *arg)
{
    unsigned char *cbuf = malloc(x->max_csize ? x->max_csize : 1), *tmp = malloc(x->full);
    if (!cbuf || !tmp) {
        int zero = 0;
        atomic_compare_exchange_strong(&x->err, &zero, -ENOMEM);
    }
    for (size_t i; !atomic_load_explicit(&x->err, memory_order_relaxed) &&
                   (i = atomic_fetch_add_explicit(&x->next, 1, memory_order_relaxed)) < x->n_jobs;) {
        int r = inflate_job(x, &x->jobs[i], cbuf, tmp);
        int zero = 0;
        if (r < 0)
            atomic_compare_exchange_strong(&x->err, &zero, r);
        uint64_t d = atomic_fetch_add_explicit(&x->done, x->jobs[i].len, memory_order_relaxed);
        if (is_main && r == 0 && progress &&
            progress(it->name, done0 + d + x->jobs[i].len, total, arg)) {
            c->err = shmstore__seterr(-ECANCELED, "%s: load cancelled", c->file);
            atomic_compare_exchange_strong(&x->err, &zero, -ECANCELED);
        }
    }
    free(cbuf);
    free(tmp);
}

static void *inflate_thread(void *arg)
{
    inflate_jobs(arg, false, NULL, NULL, 0, 0, NULL, NULL);
    return NULL;
}

/* The jobs of dataset `d` if it has the layout described above (caller frees), or NULL. */
static struct chunk_job *deflate_jobs(struct load_ctx *c, hid_t d, const struct h5item *it,
                                      struct inflate_ctx *x)
{
    hid_t dcpl = H5Dget_create_plist(d), ft = H5Dget_type(d), sp = H5Dget_space(d);
    struct chunk_job *jobs = NULL;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1, nf = -1;
    hsize_t dims[H5S_MAX_RANK], cdims[H5S_MAX_RANK];
    bool ok = dcpl >= 0 && ft >= 0 && nd >= 1 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
              H5Pget_chunk(dcpl, nd, cdims) == nd && H5Tequal(ft, it->mem) > 0 &&
              H5Sget_simple_extent_dims(sp, dims, NULL) == nd && dims[0] && cdims[0] &&
              (nf = H5Pget_nfilters(dcpl)) >= 1 && nf <= 2;
    for (int k = 1; ok && k < nd; k++)
        ok = cdims[k] == dims[k]; /* chunks of whole rows: each is contiguous in the member */
    x->shuffle = 0;
    for (int f = 0; ok && f < nf; f++) {
        unsigned flags, cd[8];
        size_t n_cd = 8;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)f, &flags, &n_cd, cd, 0, NULL, NULL);
        if (id == H5Z_FILTER_SHUFFLE && f == 0 && nf == 2)
            x->shuffle = H5Tget_size(ft);
        else
            ok = id == H5Z_FILTER_DEFLATE && f == nf - 1;
    }
    uint64_t row = ok ? it->len / dims[0] : 0, n = ok ? (dims[0] + cdims[0] - 1) / cdims[0] : 0;
    haddr_t base = 0;
    hid_t fcpl = ok ? H5Fget_create_plist(c->fid) : -1;
    hsize_t ub = 0;
    if (fcpl >= 0 && H5Pget_userblock(fcpl, &ub) >= 0)
        base = ub; /* chunk addresses are relative to the superblock, after a user block */
    ok = ok && row && (jobs = calloc(n, sizeof(*jobs))) != NULL;
    x->full = cdims[0] * row;
    x->max_csize = 0;
    for (uint64_t i = 0; ok && i < n; i++) {
        hsize_t off[H5S_MAX_RANK] = {0};
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        off[0] = i * cdims[0];
        ok = H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size) >= 0 && mask == 0 &&
             addr != HADDR_UNDEF && size > 0; /* a chunk never written or stored raw: H5Dread */
        jobs[i].addr = base + addr;
        jobs[i].csize = size;
        jobs[i].dst_off = off[0] * row;
        jobs[i].len = (dims[0] - off[0] < cdims[0] ? dims[0] - off[0] : cdims[0]) * row;
        if (size > x->max_csize)
            x->max_csize = size;
    }
    x->n_jobs = n;
    h5close(fcpl, H5Pclose);
    h5close(dcpl, H5Pclose);
    h5close(ft, H5Tclose);
    h5close(sp, H5Sclose);
    if (!ok) {
        free(jobs);
        return NULL;
    }
    return jobs;
}

/* Read dataset `d` by parallel inflate: 0, -1 (failed, c->err set), 1 (not this layout:
 * nothing written; use H5Dread). */
static int read_deflate(struct load_ctx *c, hid_t d, const struct h5item *it, void *dst,
                        uint64_t *done, uint64_t total, shmstore_progress_fn progress, void *arg)
{
    struct inflate_ctx x = {.fd = -1, .dst = dst};
    struct chunk_job *jobs = deflate_jobs(c, d, it, &x);
    if (!jobs)
        return 1;
    if ((x.fd = open(c->file, O_RDONLY | O_CLOEXEC)) < 0) {
        free(jobs);
        return 1;
    }
    x.jobs = jobs;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n_threads = ncpu > 1 ? (size_t)ncpu - 1 : 0; /* and this thread */
    if (n_threads > INFLATE_THREADS_MAX - 1)
        n_threads = INFLATE_THREADS_MAX - 1;
    if (n_threads > x.n_jobs - 1)
        n_threads = x.n_jobs - 1;
    pthread_t th[INFLATE_THREADS_MAX];
    size_t started = 0;
    while (started < n_threads && pthread_create(&th[started], NULL, inflate_thread, &x) == 0)
        started++;
    inflate_jobs(&x, true, c, it, *done, total, progress, arg);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    close(x.fd);
    free(jobs);
    int err = atomic_load(&x.err);
    if (err == -ECANCELED)
        return -1;
    if (err < 0) {
        fail_path(c, err == -ENOMEM ? -ENOMEM : -EIO, it->name, "%s",
                  err == -EILSEQ ? "a compressed chunk does not inflate (corrupt file?)"
                  : err == -ENOMEM ? "out of process memory"
                                   : "reading the file failed");
        return -1;
    }
    *done += it->len;
    return 0;
}

/* Read dataset `it` into `dst`, in slices along axis 0 when large. */
static int read_dataset(struct load_ctx *c, const struct h5item *it, void *dst, uint64_t *done,
                        uint64_t total, shmstore_progress_fn progress, void *arg)
{
    char path[SHMSTORE_NAME_MAX + 2];
    snprintf(path, sizeof(path), "/%s", it->name);
    hid_t d = H5Dopen2(c->fid, path, H5P_DEFAULT);
    if (d < 0)
        return fail_path(c, -EIO, it->name, "cannot open the dataset");
    int ret = read_deflate(c, d, it, dst, done, total, progress, arg);
    if (ret <= 0) {
        H5Dclose(d);
        return ret;
    }
    ret = 0;
    hid_t fsp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(fsp);
    hsize_t dims[H5S_MAX_RANK];
    if (nd > 0)
        H5Sget_simple_extent_dims(fsp, dims, NULL);
    uint64_t row = nd > 0 && dims[0] ? it->len / dims[0] : it->len;
    if (it->len <= SLICE_BYTES || nd < 1 || row == 0 || row > SLICE_BYTES) {
        if (H5Dread(d, it->mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
            ret = fail_path(c, -EIO, it->name, "reading the dataset failed (%" PRIu64 " bytes)",
                            it->len);
        *done += it->len;
    } else {
        hsize_t step = SLICE_BYTES / row, start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
        memcpy(count, dims, (size_t)nd * sizeof(dims[0]));
        for (hsize_t r0 = 0; r0 < dims[0] && ret == 0; r0 += step) {
            start[0] = r0;
            count[0] = dims[0] - r0 < step ? dims[0] - r0 : step;
            hid_t msp = H5Screate_simple(nd, count, NULL);
            H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
            if (H5Dread(d, it->mem, msp, fsp, H5P_DEFAULT, (char *)dst + r0 * row) < 0)
                ret = fail_path(c, -EIO, it->name, "reading the dataset failed at row %" PRIu64,
                                (uint64_t)r0);
            H5Sclose(msp);
            *done += count[0] * row;
            if (ret == 0 && progress && progress(it->name, *done, total, arg)) {
                c->err = shmstore__seterr(-ECANCELED, "%s: load cancelled", c->file);
                ret = -1;
            }
        }
    }
    H5Sclose(fsp);
    H5Dclose(d);
    return ret;
}

SHMSTORE_API int shmstore_hdf5_load(shmstore_t *s, const char *path, const char *prefix,
                                    unsigned flags, shmstore_progress_fn progress, void *arg,
                                    uint64_t *n_loaded)
{
    shmstore__clearerr();
    int r = shmstore__check_fork(s);
    size_t plen;
    if (r < 0 || (r = shmstore__name_check(prefix, &plen)) < 0)
        return r;
    if (!path)
        return shmstore__seterr(-EINVAL, "no HDF5 file given");
    if (access(path, R_OK) < 0) {
        r = -errno;
        return shmstore__seterr(r, "cannot read HDF5 file '%s': %s", path, strerror(-r));
    }
    struct quiet q;
    quiet_begin(&q);
    struct load_ctx c = {.s = s, .file = path, .prefix = prefix, .prefix_len = plen,
                         .flags = flags, .fid = -1};
    shmstore_set_member_t *m = NULL;
    shmstore_set_t *set = NULL;
    if (H5Fis_hdf5(path) <= 0 || (c.fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        r = shmstore__seterr(-EIO, "'%s' is not an HDF5 file, or is corrupt", path);
        goto out;
    }
    hid_t root = H5Gopen2(c.fid, "/", H5P_DEFAULT);
    if (root < 0 || walk_group(&c, root, "") < 0) {
        r = c.err ? c.err : shmstore__seterr(-EIO, "%s: cannot read the root group", path);
        if (root >= 0)
            H5Gclose(root);
        goto out;
    }
    H5Gclose(root);
    m = calloc(c.n ? c.n : 1, sizeof(*m));
    if (!m) {
        r = shmstore__seterr(-ENOMEM, "out of process memory");
        goto out;
    }
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < c.n; i++) {
        m[i].name = c.items[i].name;
        m[i].desc = c.items[i].desc;
        m[i].desc.attrs = c.items[i].attrs.p;
        m[i].desc.attrs_len = c.items[i].attrs.len;
        m[i].len = c.items[i].len;
        total += m[i].len;
    }
    unsigned sflags = (flags & SHMSTORE_H5_OVERWRITE ? SHMSTORE_SET_OVERWRITE : 0) |
                      (flags & SHMSTORE_H5_TIED ? SHMSTORE_SET_TIED : 0) |
                      (flags & SHMSTORE_H5_WRITABLE ? SHMSTORE_SET_WRITABLE : 0);
    if ((r = shmstore_set_create(s, prefix, sflags, m, c.n, &set)) < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        shmstore__seterr(r, "%s (%" PRIu64 " bytes in %zu datasets): %s", path, total, c.n, msg);
        goto out;
    }
    for (size_t i = 0; i < c.n && r == 0; i++) {
        if (c.items[i].mem < 0)
            continue;
        size_t k;
        shmstore_set_find(set, c.items[i].name, &k);
        if (progress && progress(c.items[i].name, done, total, arg)) {
            r = shmstore__seterr(-ECANCELED, "%s: load cancelled", path);
            break;
        }
        if (c.items[i].len && read_dataset(&c, &c.items[i], shmstore_set_data(set, k), &done, total,
                                           progress, arg) < 0)
            r = c.err ? c.err : -EIO;
    }
    if (r == 0 && progress)
        progress(NULL, total, total, arg);
    if (r == 0)
        r = shmstore_set_commit(set);
    if (r == 0 && n_loaded)
        *n_loaded = c.n;
out:
    if (set && r < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        shmstore_set_abort(set);
        shmstore__errmsg_restore(msg);
    } else {
        shmstore_set_close(set);
    }
    free(m);
    free_items(&c);
    if (c.fid >= 0)
        H5Fclose(c.fid);
    quiet_end(&q);
    return r;
}

/* ---- export -------------------------------------------------------------------------------- */

/* The HDF5 type of a dtype string (h5py's conventions), or -1. */
static hid_t dtype_to_h5(const char *dt)
{
    int64_t isz = shmstore_dtype_itemsize(dt);
    if (isz <= 0)
        return -1;
    switch (dt[1]) {
    case 'b': return bool_type();
    case 'i': return int_type((size_t)isz, true);
    case 'u': return int_type((size_t)isz, false);
    case 'f': return float_type((size_t)isz);
    case 'c': return complex_type((size_t)isz);
    case 'S': {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, (size_t)isz);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        return t;
    }
    default: return -1; /* "<U": no HDF5 equivalent h5py reads */
    }
}

/* The next quoted string ('...') or integer of a Python-literal list at *p, advancing. */
static bool next_item(const char **p, char *str, size_t cap, uint64_t *num)
{
    const char *q = *p + strspn(*p, " ,");
    if (*q == '\'') {
        const char *end = strchr(q + 1, '\'');
        if (!end || (size_t)(end - q - 1) >= cap)
            return false;
        memcpy(str, q + 1, (size_t)(end - q - 1));
        str[end - q - 1] = '\0';
        *p = end + 1;
        return true;
    }
    char *end;
    *num = strtoull(q, &end, 10);
    if (end == q)
        return false;
    *p = end;
    return true;
}

/* The compound type of a record member: its "__dtype__" attr as map_record() wrote it
 * ("{'names': [...], 'formats': [...], 'offsets': [...], 'itemsize': N}"), each field
 * of the HDF5 type of its dtype. -1 if it does not parse (the member is saved as bytes). */
static hid_t record_type(const char *descr, uint32_t len)
{
    char d[2048];
    if (len >= sizeof(d))
        return -1;
    memcpy(d, descr, len);
    d[len] = '\0';
    const char *pn = strstr(d, "'names': ["), *pf = strstr(d, "'formats': ["),
               *po = strstr(d, "'offsets': ["), *pi = strstr(d, "'itemsize': ");
    if (!pn || !pf || !po || !pi)
        return -1;
    pn += 10, pf += 12, po += 12, pi += 12;
    uint64_t size = strtoull(pi, NULL, 10), off, unused;
    hid_t t = size ? H5Tcreate(H5T_COMPOUND, size) : -1;
    char fname[640], fmt[SHMSTORE_DTYPE_MAX];
    while (t >= 0 && *pn != ']') {
        hid_t ft = -1;
        if (!next_item(&pn, fname, sizeof(fname), &unused) ||
            !next_item(&pf, fmt, sizeof(fmt), &unused) || !next_item(&po, fname + 0, 0, &off) ||
            (ft = dtype_to_h5(fmt)) < 0 || H5Tinsert(t, fname, off, ft) < 0) {
            H5Tclose(t);
            t = -1;
        }
        if (ft >= 0)
            H5Tclose(ft);
        pn += strspn(pn, " ");
    }
    return t;
}

struct save_ctx {
    const char *file;
    const char *member;
    hid_t obj;
    int err;
    bool is_record; /* written as a compound: its "__dtype__" attr is the type itself */
};

/* Parse the .npy header we write (npy_encode): descr and shape. */
static bool npy_parse(const char *p, uint32_t len, char *dtype, int *nd, hsize_t *dims,
                      const char **data, size_t *n)
{
    if (len < 10 || memcmp(p, NPY_MAGIC, 8) != 0)
        return false;
    size_t hlen = (uint8_t)p[8] | (size_t)(uint8_t)p[9] << 8;
    if (10 + hlen > len)
        return false;
    char hdr[1024];
    if (hlen >= sizeof(hdr))
        return false;
    memcpy(hdr, p + 10, hlen);
    hdr[hlen] = '\0';
    const char *d = strstr(hdr, "'descr': '"), *sh = strstr(hdr, "'shape': (");
    if (!d || !sh)
        return false;
    d += 10;
    size_t dl = strcspn(d, "'");
    if (dl >= SHMSTORE_DTYPE_MAX)
        return false;
    memcpy(dtype, d, dl);
    dtype[dl] = '\0';
    sh += 10;
    *nd = 0;
    while (*sh && *sh != ')' && *nd < H5S_MAX_RANK) {
        char *end;
        unsigned long long v = strtoull(sh, &end, 10);
        if (end == sh)
            break;
        dims[(*nd)++] = v;
        sh = end + strspn(end, ", ");
    }
    *data = p + 10 + hlen;
    *n = len - 10 - hlen;
    return true;
}

static int write_attr(hid_t obj, const char *key, hid_t t, hid_t sp, const void *buf)
{
    hid_t a = H5Acreate2(obj, key, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int r = a >= 0 && H5Awrite(a, t, buf) >= 0 ? 0 : -EIO;
    if (a >= 0)
        H5Aclose(a);
    return r;
}

static int attr_out(const char *key, shmstore_type_t type, const void *val, uint32_t len, void *arg)
{
    struct save_ctx *c = arg;
    if (c->is_record && strcmp(key, "__dtype__") == 0)
        return 0;
    hid_t t = -1, sp = H5Screate(H5S_SCALAR);
    int r = 0;
    char dt[SHMSTORE_DTYPE_MAX];
    int nd;
    hsize_t dims[H5S_MAX_RANK];
    const char *data;
    size_t n;
    switch (type) {
    case SHMSTORE_T_NONE:
        H5Sclose(sp);
        sp = H5Screate(H5S_NULL);
        t = H5Tcopy(H5T_STD_I8LE);
        break;
    case SHMSTORE_T_BOOL: t = bool_type(); break;
    case SHMSTORE_T_INT64: t = H5Tcopy(H5T_STD_I64LE); break;
    case SHMSTORE_T_FLOAT64: t = H5Tcopy(H5T_IEEE_F64LE); break;
    case SHMSTORE_T_COMPLEX128: t = complex_type(16); break;
    case SHMSTORE_T_STR: {
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        char *z = malloc(len + 1);
        if (!z) {
            r = -ENOMEM;
            break;
        }
        memcpy(z, val, len);
        z[len] = '\0';
        r = write_attr(c->obj, key, t, sp, &z);
        free(z);
        goto done;
    }
    case SHMSTORE_T_BYTES:
        if (npy_parse(val, len, dt, &nd, dims, &data, &n) && (t = dtype_to_h5(dt)) >= 0) {
            H5Sclose(sp);
            sp = H5Screate_simple(nd, dims, NULL);
            r = write_attr(c->obj, key, t, sp, data);
            goto done;
        }
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, len ? len : 1);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        if (!len)
            val = "";
        break;
    default:
        r = SHMSTORE_EDTYPE;
        break;
    }
    if (r == 0 && t >= 0)
        r = write_attr(c->obj, key, t, sp, val);
done:
    if (t >= 0)
        H5Tclose(t);
    H5Sclose(sp);
    if (r < 0) {
        c->err = shmstore__seterr(r == SHMSTORE_EDTYPE ? r : -EIO, "%s: '%s': cannot write "
                                  "attribute '%s'", c->file, c->member, key);
        return 1;
    }
    return 0;
}

/* The group `path` of the file (created with its parents if needed); caller closes. */
static hid_t group_at(hid_t fid, const char *path)
{
    if (!path[0])
        return H5Gopen2(fid, "/", H5P_DEFAULT);
    if (H5Lexists(fid, path, H5P_DEFAULT) > 0)
        return H5Gopen2(fid, path, H5P_DEFAULT);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(fid, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    return g;
}

static int save_member(hid_t fid, const char *file, const shmstore_set_member_t *mi,
                       const void *data)
{
    struct save_ctx c = {file, mi->name, -1, 0, false};
    const char *last = strrchr(mi->name, '/');
    last = last ? last + 1 : mi->name;
    char dir[SHMSTORE_NAME_MAX + 1];
    snprintf(dir, sizeof(dir), "%.*s", (int)(last - mi->name - (last != mi->name)), mi->name);
    if (strcmp(last, ".attrs") == 0 && mi->desc.type == SHMSTORE_T_NONE) {
        c.obj = group_at(fid, dir);
        if (c.obj < 0)
            return shmstore__seterr(-EIO, "%s: cannot create group '/%s'", file, dir);
        shmstore_attrs_foreach(mi->desc.attrs, mi->desc.attrs_len, attr_out, &c);
        H5Gclose(c.obj);
        return c.err;
    }
    hid_t t = -1, sp = -1;
    const shmstore_datum_t *d = &mi->desc;
    switch (d->type) {
    case SHMSTORE_T_ARRAY: {
        hsize_t dims[SHMSTORE_NDIM_MAX];
        for (uint32_t i = 0; i < d->ndim; i++)
            dims[i] = d->shape[i];
        shmstore_type_t at;
        const void *descr;
        uint32_t dl;
        /* A compound dataset loaded from HDF5 goes back as the same compound type. */
        if (d->dtype[1] == 'S' && d->attrs_len &&
            shmstore_attrs_get(d->attrs, d->attrs_len, "__dtype__", &at, &descr, &dl) == 0 &&
            at == SHMSTORE_T_STR && (t = record_type(descr, dl)) >= 0 &&
            (int64_t)H5Tget_size(t) == shmstore_dtype_itemsize(d->dtype))
            c.is_record = true;
        else if (t >= 0)
            H5Tclose(t), t = -1;
        if (t < 0)
            t = dtype_to_h5(d->dtype);
        sp = d->ndim ? H5Screate_simple((int)d->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
        break;
    }
    case SHMSTORE_T_BOOL: t = bool_type(); break;
    case SHMSTORE_T_INT64: t = H5Tcopy(H5T_STD_I64LE); break;
    case SHMSTORE_T_FLOAT64: t = H5Tcopy(H5T_IEEE_F64LE); break;
    case SHMSTORE_T_COMPLEX128: t = complex_type(16); break;
    case SHMSTORE_T_STR:
    case SHMSTORE_T_BYTES:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, mi->len ? mi->len : 1);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        if (d->type == SHMSTORE_T_STR)
            H5Tset_cset(t, H5T_CSET_UTF8);
        if (!mi->len)
            data = "";
        break;
    case SHMSTORE_T_NONE:
        t = H5Tcopy(H5T_STD_I8LE);
        sp = H5Screate(H5S_NULL);
        break;
    default:
        break;
    }
    if (t < 0) {
        if (sp >= 0)
            H5Sclose(sp);
        return shmstore__seterr(SHMSTORE_EDTYPE, "%s: member '%s' (%s) has no HDF5 type", file,
                                mi->name, d->type == SHMSTORE_T_ARRAY ? d->dtype : "pickle/record");
    }
    if (sp < 0)
        sp = H5Screate(H5S_SCALAR);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    char path[SHMSTORE_NAME_MAX + 2];
    snprintf(path, sizeof(path), "/%s", mi->name);
    hid_t ds = H5Dcreate2(fid, path, t, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int r = 0;
    if (ds < 0 || (d->type != SHMSTORE_T_NONE && mi->len &&
                   H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
        r = shmstore__seterr(-EIO, "%s: cannot write dataset '%s' (%" PRIu64 " bytes)", file,
                             path, mi->len);
    if (r == 0 && d->attrs_len) {
        c.obj = ds;
        shmstore_attrs_foreach(d->attrs, d->attrs_len, attr_out, &c);
        r = c.err;
    }
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(sp);
    H5Tclose(t);
    return r;
}

SHMSTORE_API int shmstore_hdf5_save(shmstore_t *s, const char *prefix, const char *path)
{
    shmstore__clearerr();
    shmstore_set_t *set;
    int r = shmstore_set_open(s, prefix, &set);
    if (r < 0)
        return r;
    char tmp[4096];
    if (!path || snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        shmstore_set_close(set);
        return shmstore__seterr(-EINVAL, "bad output path");
    }
    struct quiet q;
    quiet_begin(&q);
    hid_t fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (fid < 0) {
        r = shmstore__seterr(-EIO, "cannot create HDF5 file '%s'", tmp);
    } else {
        size_t n = shmstore_set_count(set);
        for (size_t i = 0; i < n && r == 0; i++) {
            shmstore_set_member_t mi;
            shmstore_view_t v;
            if ((r = shmstore_set_member(set, i, &mi)) < 0 || (r = shmstore_set_view(set, i, &v)) < 0)
                break;
            r = save_member(fid, path, &mi, v.data);
            shmstore_view_release(&v);
        }
        if (H5Fclose(fid) < 0 && r == 0)
            r = shmstore__seterr(-EIO, "cannot write HDF5 file '%s'", tmp);
    }
    if (r == 0 && rename(tmp, path) < 0)
        r = shmstore__seterr(-errno, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (r < 0)
        unlink(tmp);
    quiet_end(&q);
    shmstore_set_close(set);
    return r;
}
#endif
