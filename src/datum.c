/* datum.c - the datum descriptor (what payload bytes mean) and attribute maps.
 *
 * A descriptor is validated twice: when a caller hands it in (every field, and that it
 * describes exactly the payload length), and when it is read back from the mapping
 * (struct ver_hdr), because bytes in the store are never trusted: a descriptor that
 * does not fit its block is SHMSTORE_ECORRUPT, never a read past the block.
 *
 * Attribute map encoding (little-endian), a sequence of entries each padded to 8 bytes:
 *     u16 key_len (1..255) | u8 type | u8 0 | u32 val_len | key bytes | value bytes
 * Types are the scalar and string types of shmstore_type_t; scalars have their fixed
 * size (bool 1, int64 8, float64 8, complex128 16, none 0).
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ATTR_HDR 8u

static int64_t fixed_size(uint32_t type)
{
    switch (type) {
    case SHMSTORE_T_NONE:
        return 0;
    case SHMSTORE_T_BOOL:
        return 1;
    case SHMSTORE_T_INT64:
    case SHMSTORE_T_FLOAT64:
        return 8;
    case SHMSTORE_T_COMPLEX128:
        return 16;
    default:
        return -1; /* variable */
    }
}

const shmstore_datum_t shmstore__bytes_datum = {.type = SHMSTORE_T_BYTES};

SHMSTORE_API void shmstore_datum_init(shmstore_datum_t *d, shmstore_type_t type)
{
    memset(d, 0, sizeof(*d));
    d->type = (uint32_t)type;
}

SHMSTORE_API int64_t shmstore_dtype_itemsize(const char *dtype)
{
    if (!dtype)
        return SHMSTORE_EDTYPE;
    size_t n = strnlen(dtype, SHMSTORE_DTYPE_MAX);
    if (n < 3 || n >= SHMSTORE_DTYPE_MAX)
        return SHMSTORE_EDTYPE;
    char order = dtype[0], kind = dtype[1];
    /* Digits parsed by hand: this runs on every get that returns a descriptor. */
    uint64_t size = 0;
    for (size_t i = 2; i < n; i++) {
        if (dtype[i] < '0' || dtype[i] > '9')
            return SHMSTORE_EDTYPE;
        size = size * 10 + (uint64_t)(dtype[i] - '0');
    }
    if (size == 0 || dtype[2] == '0' || (order != '<' && order != '|'))
        return SHMSTORE_EDTYPE;
    switch (kind) {
    case 'b':
        return size == 1 && order == '|' ? 1 : SHMSTORE_EDTYPE;
    case 'i':
    case 'u':
        if (size == 1)
            return 1;
        return (size == 2 || size == 4 || size == 8) && order == '<' ? (int64_t)size
                                                                     : SHMSTORE_EDTYPE;
    case 'f': /* "<f16": numpy's float128, the C long double in 16 bytes (x86-64: 80-bit) */
        return (size == 2 || size == 4 || size == 8 || size == 16) && order == '<'
                   ? (int64_t)size
                   : SHMSTORE_EDTYPE;
    case 'c': /* "<c32": numpy's complex256, two long doubles */
        return (size == 8 || size == 16 || size == 32) && order == '<' ? (int64_t)size
                                                                       : SHMSTORE_EDTYPE;
    case 'S':
        return order == '|' && size <= (1u << 30) ? (int64_t)size : SHMSTORE_EDTYPE;
    case 'U':
        return order == '<' && size <= (1u << 28) ? (int64_t)size * 4 : SHMSTORE_EDTYPE;
    default:
        return SHMSTORE_EDTYPE;
    }
}

SHMSTORE_API int shmstore_datum_init_array(shmstore_datum_t *d, const char *dtype, uint32_t ndim,
                                           const uint64_t *shape)
{
    if (shmstore_dtype_itemsize(dtype) < 0)
        return shmstore__seterr(SHMSTORE_EDTYPE, "dtype '%.8s' is not supported", dtype ? dtype : "(null)");
    if (ndim > SHMSTORE_NDIM_MAX || (ndim && !shape))
        return shmstore__seterr(-EINVAL, "ndim %u is more than %u", ndim, SHMSTORE_NDIM_MAX);
    memset(d, 0, sizeof(*d));
    d->type = SHMSTORE_T_ARRAY;
    d->ndim = ndim;
    strcpy(d->dtype, dtype);
    for (uint32_t i = 0; i < ndim; i++)
        d->shape[i] = shape[i];
    return 0;
}

/* Bytes an array descriptor describes, or -EINVAL on overflow. */
static int array_bytes(const shmstore_datum_t *d, uint64_t *out)
{
    int64_t item = shmstore_dtype_itemsize(d->dtype);
    if (item < 0)
        return shmstore__seterr(SHMSTORE_EDTYPE, "dtype '%.8s' is not supported", d->dtype);
    if (d->ndim > SHMSTORE_NDIM_MAX)
        return shmstore__seterr(-EINVAL, "ndim %u is more than %u", d->ndim, SHMSTORE_NDIM_MAX);
    uint64_t n = (uint64_t)item;
    for (uint32_t i = 0; i < d->ndim; i++)
        if (__builtin_mul_overflow(n, d->shape[i], &n))
            return shmstore__seterr(-EINVAL, "array shape overflows 64 bits");
    *out = n;
    return 0;
}

SHMSTORE_API int shmstore_datum_validate(const shmstore_datum_t *d, size_t len)
{
    if (!d)
        return shmstore__seterr(-EINVAL, "descriptor is NULL");
    if (d->type >= SHMSTORE_T__COUNT)
        return shmstore__seterr(-EINVAL, "datum type %u is unknown", d->type);
    if (d->attrs_len > SHMSTORE_ATTRS_MAX || (d->attrs_len && !d->attrs))
        return shmstore__seterr(-EINVAL, "attrs of %u bytes: at most %u, and not NULL",
                                d->attrs_len, SHMSTORE_ATTRS_MAX);
    if (d->attrs_len) {
        int r = shmstore_attrs_foreach(d->attrs, d->attrs_len, NULL, NULL);
        if (r < 0)
            return shmstore__seterr(-EINVAL, "attrs are malformed");
    }
    uint64_t want = 0;
    if (d->type == SHMSTORE_T_ARRAY) {
        int r = array_bytes(d, &want);
        if (r < 0)
            return r;
    } else {
        int64_t fs = fixed_size(d->type);
        if (d->ndim != 0)
            return shmstore__seterr(-EINVAL, "ndim must be 0 for a non-array datum");
        if (fs < 0)
            return 0; /* bytes, str, pickle, record: any length */
        want = (uint64_t)fs;
    }
    if (want != len)
        return shmstore__seterr(-EINVAL, "descriptor describes %" PRIu64 " bytes but %zu were given",
                                want, len);
    return 0;
}

/* ---- attribute maps ---------------------------------------------------------------- */

static uint32_t pad8(uint32_t x)
{
    return (x + 7u) & ~7u;
}

SHMSTORE_API int shmstore_attrs_add(void *buf, size_t cap, uint32_t *len, const char *key,
                                    shmstore_type_t type, const void *val, uint32_t val_len)
{
    size_t klen = key ? strnlen(key, 256) : 0;
    if (klen == 0 || klen > 255 || type == SHMSTORE_T_ARRAY || type == SHMSTORE_T_RECORD ||
        (unsigned)type >= SHMSTORE_T__COUNT)
        return shmstore__seterr(-EINVAL, "attr key must be 1..255 bytes and its type a scalar, "
                                         "string or bytes");
    int64_t fs = fixed_size(type);
    if (fs >= 0 && (uint64_t)fs != val_len)
        return shmstore__seterr(-EINVAL, "attr '%s': value of %u bytes for a type of %" PRId64,
                                key, val_len, fs);
    if (val_len && !val)
        return shmstore__seterr(-EINVAL, "attr '%s': value is NULL", key);
    uint64_t need = (uint64_t)*len + pad8((uint32_t)(ATTR_HDR + klen + val_len));
    if (val_len > SHMSTORE_ATTRS_MAX || need > cap || need > SHMSTORE_ATTRS_MAX)
        return shmstore__seterr(-ENOSPC, "attrs: %" PRIu64 " bytes needed, buffer has %zu", need, cap);
    unsigned char *p = (unsigned char *)buf + *len;
    uint16_t kl = (uint16_t)klen;
    memcpy(p, &kl, 2);
    p[2] = (unsigned char)type;
    p[3] = 0;
    memcpy(p + 4, &val_len, 4);
    memcpy(p + ATTR_HDR, key, klen);
    if (val_len)
        memcpy(p + ATTR_HDR + klen, val, val_len);
    memset(p + ATTR_HDR + klen + val_len, 0, need - *len - (ATTR_HDR + klen + val_len));
    *len = (uint32_t)need;
    return 0;
}

SHMSTORE_API int shmstore_attrs_foreach(const void *attrs, uint32_t attrs_len,
                                        int (*fn)(const char *key, shmstore_type_t type,
                                                  const void *val, uint32_t val_len, void *arg),
                                        void *arg)
{
    const unsigned char *p = attrs;
    char key[256];
    for (uint32_t pos = 0; pos < attrs_len;) {
        if (attrs_len - pos < ATTR_HDR)
            return SHMSTORE_ECORRUPT;
        uint16_t kl;
        uint32_t vl;
        memcpy(&kl, p + pos, 2);
        memcpy(&vl, p + pos + 4, 4);
        unsigned type = p[pos + 2];
        if (kl == 0 || kl > 255 || type >= SHMSTORE_T__COUNT || type == SHMSTORE_T_ARRAY ||
            type == SHMSTORE_T_RECORD || vl > attrs_len ||
            (uint64_t)ATTR_HDR + kl + vl > (uint64_t)attrs_len - pos)
            return SHMSTORE_ECORRUPT;
        int64_t fs = fixed_size(type);
        if (fs >= 0 && (uint64_t)fs != vl)
            return SHMSTORE_ECORRUPT;
        memcpy(key, p + pos + ATTR_HDR, kl);
        key[kl] = '\0';
        if (memchr(key, '\0', kl))
            return SHMSTORE_ECORRUPT;
        if (fn) {
            int r = fn(key, (shmstore_type_t)type, p + pos + ATTR_HDR + kl, vl, arg);
            if (r)
                return r;
        }
        uint64_t step = pad8((uint32_t)(ATTR_HDR + kl + vl));
        pos = step > (uint64_t)attrs_len - pos ? attrs_len : pos + (uint32_t)step;
    }
    return 0;
}

struct attr_find {
    const char *key;
    shmstore_type_t type;
    const void *val;
    uint32_t val_len;
};

static int attr_match(const char *key, shmstore_type_t type, const void *val, uint32_t val_len,
                      void *arg)
{
    struct attr_find *f = arg;
    if (strcmp(key, f->key) != 0)
        return 0;
    f->type = type;
    f->val = val;
    f->val_len = val_len;
    return 1;
}

SHMSTORE_API int shmstore_attrs_get(const void *attrs, uint32_t attrs_len, const char *key,
                                    shmstore_type_t *type, const void **val, uint32_t *val_len)
{
    struct attr_find f = {.key = key};
    if (!key)
        return -EINVAL;
    int r = shmstore_attrs_foreach(attrs, attrs_len, attr_match, &f);
    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    if (type)
        *type = f.type;
    if (val)
        *val = f.val;
    if (val_len)
        *val_len = f.val_len;
    return 0;
}

/* ---- descriptors in the mapping ---------------------------------------------------- */

uint64_t shmstore__ver_block_len(uint32_t attrs_len, uint64_t len)
{
    uint64_t n = sizeof(struct ver_hdr) + ((attrs_len + 63ull) & ~63ull);
    return len > UINT64_MAX / 2 - n ? UINT64_MAX / 2 : n + len; /* the allocator refuses it */
}

/* Where a version's payload goes: inline in the descriptor for fixed-size scalars without
 * attrs (16-byte aligned: nothing gains from more), else 64-byte aligned after the
 * descriptor and attrs. */
static uint64_t data_off_for(uint32_t type, uint32_t attrs_len, uint64_t len)
{
    if (attrs_len == 0 && fixed_size(type) >= 0 && len <= VER_INLINE_MAX)
        return BLK_HDR_SIZE + offsetof(struct ver_hdr, inline_data);
    return BLK_HDR_SIZE + sizeof(struct ver_hdr) + ((attrs_len + 63ull) & ~63ull);
}

int shmstore__datum_to_ver(const shmstore_datum_t *d, size_t len, struct ver_hdr *vh)
{
    int r = shmstore_datum_validate(d, len);
    if (r < 0)
        return r;
    /* The fixed part only: shape entries past ndim are never read (ver_used()). */
    memset(vh, 0, offsetof(struct ver_hdr, shape));
    vh->type = d->type;
    vh->ndim = d->type == SHMSTORE_T_ARRAY ? d->ndim : 0;
    if (d->type == SHMSTORE_T_ARRAY)
        memcpy(vh->dtype, d->dtype, sizeof(vh->dtype));
    for (uint32_t i = 0; i < vh->ndim; i++)
        vh->shape[i] = d->shape[i];
    vh->len = len;
    vh->attrs_len = d->attrs_len;
    vh->data_off = data_off_for(d->type, d->attrs_len, len);
    return 0;
}

void shmstore__datum_copy(shmstore_datum_t *dst, const shmstore_datum_t *src)
{
    /* Field by field: the unused shape entries (most of the struct) are not copied. */
    dst->type = src->type;
    dst->ndim = src->ndim;
    memcpy(dst->dtype, src->dtype, sizeof(dst->dtype));
    memcpy(dst->shape, src->shape, src->ndim * sizeof(src->shape[0]));
    dst->attrs = src->attrs;
    dst->attrs_len = src->attrs_len;
}

/* Turn a descriptor read from block `b` (already copied out to `vh` by the caller when
 * the block may change under it) into a datum, checking it fits the block. Entries of
 * d->shape past ndim are left as they were. */
int shmstore__ver_to_datum(const shmstore_t *s, const struct blk_hdr *b, const struct ver_hdr *vh,
                           shmstore_datum_t *d, const void **data)
{
    uint64_t cap = shmstore__blk_payload_cap(b) + BLK_HDR_SIZE;
    if (vh->type >= SHMSTORE_T__COUNT || vh->ndim > SHMSTORE_NDIM_MAX ||
        vh->attrs_len > SHMSTORE_ATTRS_MAX ||
        vh->data_off != data_off_for(vh->type, vh->attrs_len, vh->len) || vh->data_off > cap ||
        vh->len > cap - vh->data_off)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': version descriptor at %" PRIu64
                                " does not fit its block", s->name, shmstore__off(s, b));
    shmstore_datum_t local, *dd = d ? d : &local;
    dd->type = vh->type;
    dd->ndim = vh->ndim;
    memcpy(dd->dtype, vh->dtype, sizeof(dd->dtype));
    dd->dtype[SHMSTORE_DTYPE_MAX - 1] = '\0';
    for (uint32_t i = 0; i < vh->ndim; i++)
        dd->shape[i] = vh->shape[i];
    dd->attrs_len = vh->attrs_len;
    dd->attrs = vh->attrs_len ? (const char *)b + BLK_HDR_SIZE + sizeof(struct ver_hdr) : NULL;
    if (shmstore_datum_validate(dd, vh->len) < 0)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': version descriptor at %" PRIu64
                                " does not describe its %" PRIu64 " bytes", s->name,
                                shmstore__off(s, b), vh->len);
    if (data)
        *data = (const char *)b + vh->data_off;
    return 0;
}
