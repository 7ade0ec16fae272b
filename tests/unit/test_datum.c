/* test_datum.c - datum descriptors (types, dtypes, itemsizes, shapes, overflow, ndim)
 * and attribute maps (add/get/foreach round trip, limits, malformed encodings), plus a
 * round trip of every dtype through a value. */
#include "test.h"

#include <errno.h>
#include <string.h>

#define MiB (1024ull * 1024ull)

/* ---- scalar types ------------------------------------------------------------------ */

static void test_datum_init_scalars(void **state)
{
    (void)state;
    static const struct {
        shmstore_type_t type;
        long fixed; /* payload size, or -1 for any length */
    } types[] = {
        {SHMSTORE_T_NONE, 0},       {SHMSTORE_T_BOOL, 1},    {SHMSTORE_T_INT64, 8},
        {SHMSTORE_T_FLOAT64, 8},    {SHMSTORE_T_COMPLEX128, 16}, {SHMSTORE_T_BYTES, -1},
        {SHMSTORE_T_STR, -1},       {SHMSTORE_T_PICKLE, -1}, {SHMSTORE_T_RECORD, -1},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        shmstore_datum_t d;
        memset(&d, 0xa5, sizeof(d)); /* init must set every field it uses */
        shmstore_datum_init(&d, types[i].type);
        assert_int_equal(d.type, types[i].type);
        assert_int_equal(d.ndim, 0);
        assert_null(d.attrs);
        assert_int_equal(d.attrs_len, 0);
        if (types[i].fixed >= 0) {
            size_t fixed = (size_t)types[i].fixed;
            T_OK(shmstore_datum_validate(&d, fixed));
            T_ASSERT_RC(shmstore_datum_validate(&d, fixed + 1), -EINVAL);
            if (fixed > 0)
                T_ASSERT_RC(shmstore_datum_validate(&d, fixed - 1), -EINVAL);
            T_ASSERT_RC(shmstore_datum_validate(&d, SIZE_MAX), -EINVAL);
        } else {
            T_OK(shmstore_datum_validate(&d, 0));
            T_OK(shmstore_datum_validate(&d, 1));
            T_OK(shmstore_datum_validate(&d, 12345));
        }
    }

    /* A type that does not exist. */
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    d.type = SHMSTORE_T__COUNT;
    T_ASSERT_RC(shmstore_datum_validate(&d, 0), -EINVAL);
    assert_true(shmstore_errmsg()[0] != '\0');
    d.type = 0xffffffffu;
    T_ASSERT_RC(shmstore_datum_validate(&d, 0), -EINVAL);
}

/* ---- dtypes ------------------------------------------------------------------------ */

static const struct {
    const char *dtype;
    int64_t itemsize;
} dtypes[] = {
    {"|b1", 1},  {"<i1", 1},  {"<i2", 2},  {"<i4", 4},     {"<i8", 8},     {"<u1", 1},
    {"<u2", 2},  {"<u4", 4},  {"<u8", 8},  {"<f2", 2},     {"<f4", 4},     {"<f8", 8},
    {"<f16", 16}, {"<c8", 8}, {"<c16", 16}, {"<c32", 32},  {"|S1", 1},     {"|S10", 10},
    {"|S255", 255}, {"<U1", 4},
    {"<U10", 40}, {"|S9999", 9999}, {"<U100", 400},
};

static void test_datum_itemsize(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
        int64_t got = shmstore_dtype_itemsize(dtypes[i].dtype);
        if (got != dtypes[i].itemsize)
            print_message("itemsize(%s) = %lld, want %lld\n", dtypes[i].dtype, (long long)got,
                          (long long)dtypes[i].itemsize);
        assert_int_equal(got, dtypes[i].itemsize);
    }
    static const char *const bad[] = {
        "",     "<",   "<i",   "<i3",  "<i16", "<f1",   "<f32", "<c4",  "<c64",   "i8",
        "|f16", ">f16", "<f12", "<c24", "|c32",
        "<x8",  "<i8x", "|S",   "|Sx",  "|S-1",  "<U",   "<U0x", "<i08 ", "<f8\n",
        "|S12345678",  /* does not fit in SHMSTORE_DTYPE_MAX */
        "<u8<u8",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t got = shmstore_dtype_itemsize(bad[i]);
        if (got != SHMSTORE_EDTYPE)
            print_message("itemsize(\"%s\") = %lld, want SHMSTORE_EDTYPE\n", bad[i],
                          (long long)got);
        assert_int_equal(got, SHMSTORE_EDTYPE);
    }
}

static void test_datum_init_array_all_dtypes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
        if (strlen(dtypes[i].dtype) >= SHMSTORE_DTYPE_MAX)
            continue;
        uint64_t isz = (uint64_t)dtypes[i].itemsize;
        shmstore_datum_t d;

        /* ndim 0: a single item. */
        T_OK(shmstore_datum_init_array(&d, dtypes[i].dtype, 0, NULL));
        assert_int_equal(d.type, SHMSTORE_T_ARRAY);
        assert_int_equal(d.ndim, 0);
        assert_string_equal(d.dtype, dtypes[i].dtype);
        assert_null(d.attrs);
        T_OK(shmstore_datum_validate(&d, isz));
        T_ASSERT_RC(shmstore_datum_validate(&d, 0), -EINVAL);

        uint64_t shape[3] = {2, 3, 5};
        for (uint32_t ndim = 1; ndim <= 3; ndim++) {
            T_OK(shmstore_datum_init_array(&d, dtypes[i].dtype, ndim, shape));
            assert_int_equal(d.ndim, ndim);
            uint64_t n = 1;
            for (uint32_t k = 0; k < ndim; k++) {
                assert_int_equal(d.shape[k], shape[k]);
                n *= shape[k];
            }
            T_OK(shmstore_datum_validate(&d, n * isz));
            T_ASSERT_RC(shmstore_datum_validate(&d, n * isz + 1), -EINVAL);
            T_ASSERT_RC(shmstore_datum_validate(&d, n * isz - 1), -EINVAL);
        }
        /* A zero extent: no bytes at all. */
        uint64_t zshape[2] = {4, 0};
        T_OK(shmstore_datum_init_array(&d, dtypes[i].dtype, 2, zshape));
        T_OK(shmstore_datum_validate(&d, 0));
        T_ASSERT_RC(shmstore_datum_validate(&d, isz), -EINVAL);
    }

    shmstore_datum_t d;
    uint64_t shape[1] = {4};
    T_ASSERT_RC(shmstore_datum_init_array(&d, "<i3", 1, shape), SHMSTORE_EDTYPE);
    T_ASSERT_RC(shmstore_datum_init_array(&d, "", 1, shape), SHMSTORE_EDTYPE);
}

static void test_datum_ndim_limits(void **state)
{
    (void)state;
    uint64_t shape[SHMSTORE_NDIM_MAX + 1];
    for (int i = 0; i <= SHMSTORE_NDIM_MAX; i++)
        shape[i] = 1;
    shape[0] = 3;
    shmstore_datum_t d;
    T_OK(shmstore_datum_init_array(&d, "<f8", SHMSTORE_NDIM_MAX, shape));
    assert_int_equal(d.ndim, SHMSTORE_NDIM_MAX);
    T_OK(shmstore_datum_validate(&d, 24));

    T_ASSERT_RC(shmstore_datum_init_array(&d, "<f8", SHMSTORE_NDIM_MAX + 1, shape), -EINVAL);
    T_ASSERT_RC(shmstore_datum_init_array(&d, "<f8", 1000, shape), -EINVAL);

    /* A hand-made descriptor with ndim 33 is refused by validate. */
    T_OK(shmstore_datum_init_array(&d, "<f8", 1, shape));
    d.ndim = SHMSTORE_NDIM_MAX + 1;
    T_ASSERT_RC(shmstore_datum_validate(&d, 24), -EINVAL);
    d.ndim = 0xffffffffu;
    T_ASSERT_RC(shmstore_datum_validate(&d, 24), -EINVAL);

    /* A dtype that is not NUL-terminated inside its field. */
    T_OK(shmstore_datum_init_array(&d, "<f8", 1, shape));
    memset(d.dtype, 'S', sizeof(d.dtype));
    int rc = shmstore_datum_validate(&d, 24);
    assert_true(rc == SHMSTORE_EDTYPE || rc == -EINVAL);
    /* A corrupted dtype string. */
    T_OK(shmstore_datum_init_array(&d, "<f8", 1, shape));
    memcpy(d.dtype, "<q8", 4);
    T_ASSERT_RC(shmstore_datum_validate(&d, 24), SHMSTORE_EDTYPE);
}

/* The product of the shape, times the itemsize, must not wrap around 2^64. */
static void test_datum_shape_overflow(void **state)
{
    (void)state;
    static const struct {
        const char *dtype;
        uint32_t ndim;
        uint64_t shape[3];
        size_t len; /* what the wrapped product would be */
    } cases[] = {
        {"<f8", 1, {1ull << 61}, 0},                    /* 8 * 2^61 = 2^64 -> 0 */
        {"<i1", 2, {1ull << 32, 1ull << 32}, 0},         /* 2^64 -> 0 */
        {"<i1", 3, {1ull << 32, 1ull << 32, 2}, 0},
        {"<c16", 1, {(1ull << 60) + 1}, 16},             /* 2^64 + 16 -> 16 */
        {"<u8", 2, {UINT64_MAX, 2}, (size_t)(UINT64_MAX * 2 * 8)},
        {"|S10", 1, {(UINT64_MAX / 10) + 1}, (size_t)(((UINT64_MAX / 10) + 1) * 10)},
        {"<i1", 2, {UINT64_MAX, UINT64_MAX}, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        shmstore_datum_t d;
        int rc = shmstore_datum_init_array(&d, cases[i].dtype, cases[i].ndim, cases[i].shape);
        if (rc == 0) {
            rc = shmstore_datum_validate(&d, cases[i].len);
            if (rc != -EINVAL)
                print_message("overflow case %zu: validate(len %zu) = %d (%s)\n", i,
                              cases[i].len, rc, shmstore_err_name(rc));
            T_ASSERT_RC(rc, -EINVAL);
        } else {
            T_ASSERT_RC(rc, -EINVAL);
        }
    }
    /* Through a value: the put is refused and nothing is written. */
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 4 * MiB);
    shmstore_datum_t d;
    d.type = SHMSTORE_T_ARRAY;
    d.ndim = 2;
    memset(d.dtype, 0, sizeof(d.dtype));
    strcpy(d.dtype, "<i1");
    d.shape[0] = 1ull << 32;
    d.shape[1] = 1ull << 32;
    d.attrs = NULL;
    d.attrs_len = 0;
    T_ASSERT_RC(shmstore_put(s, "ovf", &d, "", 0, 0), -EINVAL);
    shmstore_obj_info_t info;
    int rc = shmstore_info(s, "ovf", &info);
    if (rc == 0)
        assert_int_equal(info.version, 0);
    else
        T_ASSERT_RC(rc, -ENOENT);
    t_cleanup(s, name);
}

/* ---- attrs ------------------------------------------------------------------------- */

struct attr_entry {
    const char *key;
    shmstore_type_t type;
    const void *val;
    uint32_t val_len;
};

static const double srate = 1000.0;
static const int64_t count = -42;
static const uint8_t flag = 1;
static const double zval[2] = {1.5, -2.5};
static const uint8_t blob[100] = {1, 2, 3, 0, 5};

static const struct attr_entry entries[] = {
    {"srate", SHMSTORE_T_FLOAT64, &srate, sizeof(srate)},
    {"axis", SHMSTORE_T_STR, "time", 4},
    {"count", SHMSTORE_T_INT64, &count, sizeof(count)},
    {"flag", SHMSTORE_T_BOOL, &flag, 1},
    {"z", SHMSTORE_T_COMPLEX128, zval, sizeof(zval)},
    {"blob", SHMSTORE_T_BYTES, blob, sizeof(blob)},
    {"empty", SHMSTORE_T_BYTES, "", 0},
    {"nothing", SHMSTORE_T_NONE, NULL, 0},
    {"unicode/ключ", SHMSTORE_T_STR, "значение", 16},
};
#define N_ENTRIES (sizeof(entries) / sizeof(entries[0]))

static uint32_t build_map(uint8_t *buf, size_t cap, uint32_t *boundaries)
{
    uint32_t len = 0;
    for (size_t i = 0; i < N_ENTRIES; i++) {
        T_OK(shmstore_attrs_add(buf, cap, &len, entries[i].key, entries[i].type, entries[i].val,
                                entries[i].val_len));
        if (boundaries)
            boundaries[i] = len;
    }
    return len;
}

struct walk {
    size_t n;
    int stop_at;
    int mismatch;
};

static int walk_fn(const char *key, shmstore_type_t type, const void *val, uint32_t val_len,
                   void *arg)
{
    struct walk *w = arg;
    if (w->n >= N_ENTRIES) {
        w->mismatch++;
        return 0;
    }
    const struct attr_entry *e = &entries[w->n];
    if (strcmp(key, e->key) != 0 || type != e->type || val_len != e->val_len ||
        (val_len && memcmp(val, e->val, val_len) != 0))
        w->mismatch++;
    w->n++;
    if (w->stop_at && (int)w->n == w->stop_at)
        return 5;
    return 0;
}

static int count_fn(const char *key, shmstore_type_t type, const void *val, uint32_t val_len,
                    void *arg)
{
    (void)key;
    (void)type;
    (void)val;
    (void)val_len;
    (*(int *)arg)++;
    return 0;
}

static void test_datum_attrs_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[4096];
    uint32_t len = build_map(buf, sizeof(buf), NULL);
    assert_true(len > 0);

    for (size_t i = 0; i < N_ENTRIES; i++) {
        shmstore_type_t type = SHMSTORE_T__COUNT;
        const void *val = NULL;
        uint32_t val_len = 12345;
        T_OK(shmstore_attrs_get(buf, len, entries[i].key, &type, &val, &val_len));
        assert_int_equal(type, entries[i].type);
        assert_int_equal(val_len, entries[i].val_len);
        if (val_len) {
            assert_memory_equal(val, entries[i].val, val_len);
            assert_true((const uint8_t *)val >= buf && (const uint8_t *)val + val_len <= buf + len);
        }
    }
    shmstore_type_t type;
    const void *val;
    uint32_t val_len;
    T_ASSERT_RC(shmstore_attrs_get(buf, len, "missing", &type, &val, &val_len), -ENOENT);
    T_ASSERT_RC(shmstore_attrs_get(buf, len, "srat", &type, &val, &val_len), -ENOENT);
    T_ASSERT_RC(shmstore_attrs_get(buf, len, "srate2", &type, &val, &val_len), -ENOENT);

    struct walk w = {0, 0, 0};
    T_OK(shmstore_attrs_foreach(buf, len, walk_fn, &w));
    assert_int_equal(w.n, N_ENTRIES);
    assert_int_equal(w.mismatch, 0);

    struct walk w2 = {0, 3, 0};
    T_ASSERT_RC(shmstore_attrs_foreach(buf, len, walk_fn, &w2), 5);
    assert_int_equal(w2.n, 3);

    /* The empty map. */
    int n = 0;
    T_OK(shmstore_attrs_foreach(NULL, 0, count_fn, &n));
    T_OK(shmstore_attrs_foreach(buf, 0, count_fn, &n));
    assert_int_equal(n, 0);
    T_ASSERT_RC(shmstore_attrs_get(NULL, 0, "srate", &type, &val, &val_len), -ENOENT);
}

static void test_datum_attrs_limits(void **state)
{
    (void)state;
    uint8_t buf[1024];
    uint32_t len = 0;
    char key[300];
    int64_t i64 = 1;

    memset(key, 'k', sizeof(key));
    key[255] = '\0';
    T_OK(shmstore_attrs_add(buf, sizeof(buf), &len, key, SHMSTORE_T_INT64, &i64, 8));
    uint32_t len1 = len;
    key[255] = 'k';
    key[256] = '\0';
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, key, SHMSTORE_T_INT64, &i64, 8),
                -EINVAL);
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, "", SHMSTORE_T_INT64, &i64, 8),
                -EINVAL);
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, "a", SHMSTORE_T_ARRAY, &i64, 8),
                -EINVAL);
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, "a", SHMSTORE_T_RECORD, &i64, 8),
                -EINVAL);
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, "a", SHMSTORE_T__COUNT, &i64, 8),
                -EINVAL);
    /* A fixed-size type with the wrong length. */
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, "a", SHMSTORE_T_INT64, &i64, 4),
                -EINVAL);
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, "a", SHMSTORE_T_FLOAT64, &i64, 9),
                -EINVAL);
    assert_int_equal(len, len1); /* failures change nothing */

    /* Buffer too small: -ENOSPC, the map stays valid and unchanged. */
    uint8_t big[2000];
    memset(big, 3, sizeof(big));
    T_ASSERT_RC(shmstore_attrs_add(buf, sizeof(buf), &len, "big", SHMSTORE_T_BYTES, big,
                                   sizeof(big)),
                -ENOSPC);
    assert_int_equal(len, len1);
    T_ASSERT_RC(shmstore_attrs_add(buf, len1, &len, "x", SHMSTORE_T_BOOL, "\1", 1), -ENOSPC);
    assert_int_equal(len, len1);
    shmstore_type_t type;
    const void *val;
    uint32_t val_len;
    key[255] = '\0';
    T_OK(shmstore_attrs_get(buf, len, key, &type, &val, &val_len));
    assert_int_equal(type, SHMSTORE_T_INT64);
    int n = 0;
    T_OK(shmstore_attrs_foreach(buf, len, count_fn, &n));
    assert_int_equal(n, 1);

    /* A datum whose attrs are too long, or NULL with a length, is invalid. */
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    d.attrs = buf;
    d.attrs_len = len;
    T_OK(shmstore_datum_validate(&d, 3));
    d.attrs = NULL;
    T_ASSERT_RC(shmstore_datum_validate(&d, 3), -EINVAL);
    uint8_t *huge = calloc(1, SHMSTORE_ATTRS_MAX + 64);
    assert_non_null(huge);
    d.attrs = huge;
    d.attrs_len = SHMSTORE_ATTRS_MAX + 1;
    T_ASSERT_RC(shmstore_datum_validate(&d, 3), -EINVAL);
    free(huge);
}

/* A truncated map is either reported as malformed or still parses to exactly the
 * original entries it holds whole (never a misparse); every byte flip is either still a
 * map or reported as malformed, never a crash or an out-of-bounds read (the copies are
 * exactly sized for AddressSanitizer). */
static void test_datum_attrs_malformed(void **state)
{
    (void)state;
    uint8_t buf[4096];
    uint32_t boundaries[N_ENTRIES];
    uint32_t len = build_map(buf, sizeof(buf), boundaries);

    for (uint32_t cut = 1; cut < len; cut++) {
        uint8_t *copy = malloc(cut);
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        bool at_boundary = false;
        size_t n_whole = 0; /* entries that end at or before the cut */
        for (size_t i = 0; i < N_ENTRIES; i++) {
            if (boundaries[i] == cut)
                at_boundary = true;
            if (boundaries[i] <= cut)
                n_whole++;
        }
        struct walk w = {0, 0, 0};
        int rc = shmstore_attrs_foreach(copy, cut, walk_fn, &w);
        shmstore_type_t type;
        const void *val;
        uint32_t val_len;
        int rc_get = shmstore_attrs_get(copy, cut, "not-a-key", &type, &val, &val_len);
        if (at_boundary) {
            /* A shorter, valid map. */
            T_OK(rc);
            assert_int_equal(w.n, n_whole);
            T_ASSERT_RC(rc_get, -ENOENT);
        } else if (rc == 0) {
            /* The encoding may tolerate a cut inside the last entry's padding: then every
             * entry seen is exactly one of the originals, complete, in order, and no
             * more than the one cut short. */
            if (w.mismatch != 0 || w.n < n_whole || w.n > n_whole + 1)
                print_message("map truncated to %u of %u bytes parsed as %zu entries "
                              "(%d wrong); %zu were whole\n",
                              cut, len, w.n, w.mismatch, n_whole);
            assert_int_equal(w.mismatch, 0);
            assert_true(w.n >= n_whole && w.n <= n_whole + 1);
            T_ASSERT_RC(rc_get, -ENOENT);
        } else {
            T_ASSERT_RC(rc, SHMSTORE_ECORRUPT);
            T_ASSERT_RC(rc_get, SHMSTORE_ECORRUPT);
        }
        free(copy);
    }

    uint64_t seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, buf, len);
        int flips = 1 + iter % 4;
        for (int f = 0; f < flips; f++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t pos = (uint32_t)((seed >> 33) % len);
            uint8_t x = (uint8_t)(seed >> 17);
            copy[pos] ^= x ? x : 0xff;
        }
        int n = 0;
        int rc = shmstore_attrs_foreach(copy, len, count_fn, &n);
        assert_true(rc == 0 || rc == SHMSTORE_ECORRUPT);
        for (size_t i = 0; i < N_ENTRIES; i++) {
            shmstore_type_t type;
            const void *val = NULL;
            uint32_t val_len = 0;
            int rg = shmstore_attrs_get(copy, len, entries[i].key, &type, &val, &val_len);
            assert_true(rg == 0 || rg == -ENOENT || rg == SHMSTORE_ECORRUPT);
            if (rg == 0 && val_len > 0) {
                assert_true((const uint8_t *)val >= copy);
                assert_true((const uint8_t *)val + val_len <= copy + len);
            }
        }
        free(copy);
    }
    /* Pure garbage. */
    uint8_t junk[64];
    memset(junk, 0xff, sizeof(junk));
    int n = 0;
    T_ASSERT_RC(shmstore_attrs_foreach(junk, sizeof(junk), count_fn, &n), SHMSTORE_ECORRUPT);

    /* A datum carrying malformed attrs does not validate. */
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    d.attrs = junk;
    d.attrs_len = sizeof(junk);
    T_ASSERT_RC(shmstore_datum_validate(&d, 1), -EINVAL);
}

/* ---- through a value --------------------------------------------------------------- */

static void test_datum_value_roundtrip(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);
    uint8_t attrs[4096];
    uint32_t attrs_len = build_map(attrs, sizeof(attrs), NULL);
    uint8_t data[4096], out[4096];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13);

    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "arr", SHMSTORE_V_CREATE, &v));
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
        if (strlen(dtypes[i].dtype) >= SHMSTORE_DTYPE_MAX || dtypes[i].itemsize > 400)
            continue;
        uint64_t shape[2] = {2, 5};
        size_t len = 10 * (size_t)dtypes[i].itemsize;
        shmstore_datum_t d;
        T_OK(shmstore_datum_init_array(&d, dtypes[i].dtype, 2, shape));
        d.attrs = (i % 2) ? attrs : NULL;
        d.attrs_len = (i % 2) ? attrs_len : 0;
        T_OK(shmstore_value_put(v, &d, data, len, 0));

        shmstore_datum_t got;
        size_t got_len = 0;
        memset(&got, 0x5a, sizeof(got));
        T_OK(shmstore_value_get(v, &got, out, sizeof(out), &got_len, NULL));
        assert_int_equal(got_len, len);
        assert_memory_equal(out, data, len);
        assert_int_equal(got.type, SHMSTORE_T_ARRAY);
        assert_string_equal(got.dtype, dtypes[i].dtype);
        assert_int_equal(got.ndim, 2);
        assert_int_equal(got.shape[0], 2);
        assert_int_equal(got.shape[1], 5);
        assert_null(got.attrs); /* get does not return attrs */

        shmstore_view_t view;
        T_OK(shmstore_value_view(v, &view));
        assert_string_equal(view.desc.dtype, dtypes[i].dtype);
        assert_int_equal(view.desc.attrs_len, d.attrs_len);
        if (d.attrs_len) {
            assert_non_null(view.desc.attrs);
            assert_memory_equal(view.desc.attrs, attrs, attrs_len);
            struct walk w = {0, 0, 0};
            T_OK(shmstore_attrs_foreach(view.desc.attrs, view.desc.attrs_len, walk_fn, &w));
            assert_int_equal(w.n, N_ENTRIES);
            assert_int_equal(w.mismatch, 0);
        }
        T_OK(shmstore_datum_validate(&view.desc, view.len));
        shmstore_view_release(&view);
    }

    /* Every scalar type. */
    static const struct {
        shmstore_type_t type;
        size_t len;
    } scalars[] = {
        {SHMSTORE_T_NONE, 0},      {SHMSTORE_T_BOOL, 1},  {SHMSTORE_T_INT64, 8},
        {SHMSTORE_T_FLOAT64, 8},   {SHMSTORE_T_COMPLEX128, 16}, {SHMSTORE_T_BYTES, 77},
        {SHMSTORE_T_STR, 5},       {SHMSTORE_T_PICKLE, 300}, {SHMSTORE_T_RECORD, 64},
    };
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
        shmstore_datum_t d;
        shmstore_datum_init(&d, scalars[i].type);
        T_OK(shmstore_value_put(v, &d, data, scalars[i].len, 0));
        shmstore_datum_t got;
        size_t got_len = 99999;
        T_OK(shmstore_value_get(v, &got, out, sizeof(out), &got_len, NULL));
        assert_int_equal(got.type, scalars[i].type);
        assert_int_equal(got_len, scalars[i].len);
        assert_memory_equal(out, data, scalars[i].len);
        /* A wrong size for a fixed type is refused. */
        if (scalars[i].type <= SHMSTORE_T_COMPLEX128)
            T_ASSERT_RC(shmstore_value_put(v, &d, data, scalars[i].len + 1, 0), -EINVAL);
    }
    /* A descriptor with malformed attrs is refused by put. */
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_BYTES);
    uint8_t junk[32];
    memset(junk, 0xff, sizeof(junk));
    d.attrs = junk;
    d.attrs_len = sizeof(junk);
    T_ASSERT_RC(shmstore_value_put(v, &d, data, 4, 0), -EINVAL);
    shmstore_value_close(v);
    t_cleanup(s, name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datum_init_scalars),
        cmocka_unit_test(test_datum_itemsize),
        cmocka_unit_test(test_datum_init_array_all_dtypes),
        cmocka_unit_test(test_datum_ndim_limits),
        cmocka_unit_test(test_datum_shape_overflow),
        cmocka_unit_test(test_datum_attrs_roundtrip),
        cmocka_unit_test(test_datum_attrs_limits),
        cmocka_unit_test(test_datum_attrs_malformed),
        cmocka_unit_test(test_datum_value_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
