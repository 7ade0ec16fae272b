/* test_hdf5.c - HDF5 import/export against files made by h5py (tests/data/make_h5.py):
 * every dtype, nested groups, compound, strings, scalars, zero-size, chunked + gzip,
 * attributes of every kind, a 256 MiB dataset; save -> load compared byte by byte; a
 * missing / corrupt file, an unsupported type (refused, or skipped on request), an
 * existing prefix, a name too long, a file larger than the store: nothing left behind.
 * Skips (77) when built without HDF5 or when /usr/bin/python3 has no h5py. */
#include "test.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define MiB (1024ull * 1024ull)

static char g_dir[256];

static const char *make(const char *what, const char *extra)
{
    static char path[8][512];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 512, "%s/%s.h5", g_dir, what);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/make_h5.py %s %s %s", T_DATA_DIR, p, what,
             extra ? extra : "");
    if (access(p, R_OK) != 0)
        assert_int_equal(system(cmd), 0);
    return p;
}

struct fixture {
    char name[128];
    shmstore_t *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    t_store_name(f->name, sizeof(f->name));
    f->s = t_open_new(f->name, 1024 * MiB);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    t_cleanup(f->s, f->name);
    free(f);
    return 0;
}

static const void *member(shmstore_set_t *set, const char *name, shmstore_set_member_t *m)
{
    size_t i;
    shmstore_view_t v;
    if (shmstore_set_find(set, name, &i) != 0)
        fail_msg("no member '%s'", name);
    T_OK(shmstore_set_member(set, i, m));
    T_OK(shmstore_set_view(set, i, &v));
    const void *p = v.data;
    shmstore_view_release(&v); /* the handle keeps the block */
    return p;
}

static const void *attr(const shmstore_set_member_t *m, const char *key, shmstore_type_t type,
                        uint32_t *len)
{
    shmstore_type_t t;
    const void *v;
    uint32_t l;
    if (shmstore_attrs_get(m->desc.attrs, m->desc.attrs_len, key, &t, &v, &l) != 0)
        fail_msg("member '%s': no attr '%s'", m->name, key);
    assert_int_equal(t, type);
    if (len)
        *len = l;
    return v;
}

/* Attr values need not be aligned: read them with memcpy. */
static int64_t I64(const void *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}
static double F64(const void *p)
{
    double v;
    memcpy(&v, p, 8);
    return v;
}

static void test_hdf5_load_every_type(void **state)
{
    struct fixture *f = *state;
    uint64_t n = 0;
    T_OK(shmstore_hdf5_load(f->s, make("all", NULL), "proj", 0, NULL, NULL, &n));
    assert_int_equal(n, 25);
    shmstore_set_t *set;
    shmstore_set_member_t m;
    T_OK(shmstore_set_open(f->s, "proj", &set));
    const char *ints[] = {"num/i1", "num/i2", "num/i4", "num/i8", "num/u1", "num/u2", "num/u4", "num/u8"};
    for (int k = 0; k < 8; k++) {
        const unsigned char *p = member(set, ints[k], &m);
        int64_t isz = shmstore_dtype_itemsize(m.desc.dtype);
        assert_int_equal(m.desc.ndim, 3);
        assert_int_equal(m.desc.shape[2], 4);
        for (int i = 0; i < 24; i++) {
            uint64_t v = 0;
            memcpy(&v, p + i * isz, (size_t)isz);
            assert_int_equal(v, (uint64_t)i);
        }
    }
    const float *f4 = member(set, "num/f4", &m);
    assert_true(f4[23] == 23.0f);
    const double *f8 = member(set, "num/f8", &m);
    assert_true(f8[7] == 7.0);
    const uint16_t *f2 = member(set, "num/f2", &m);
    assert_string_equal(m.desc.dtype, "<f2");
    assert_int_equal(f2[1], 0x3c00); /* 1.0 in binary16 */
    const float *c8 = member(set, "num/c8", &m);
    assert_true(c8[2 * 5] == 5.0f && c8[2 * 5 + 1] == 0.0f);
    const double *c16 = member(set, "num/c16", &m);
    assert_string_equal(m.desc.dtype, "<c16");
    assert_true(c16[2 * 9] == 9.0);
    const long double *ld = member(set, "num/longdouble", &m);
    assert_string_equal(m.desc.dtype, "<f16");
    assert_true(fabsl(ld[2] - 2.0L / 3) < 1e-15L);
    const unsigned char *b = member(set, "bool", &m);
    assert_string_equal(m.desc.dtype, "|b1");
    assert_true(b[0] == 1 && b[1] == 0 && b[2] == 1);
    const char *s = member(set, "strings", &m);
    assert_string_equal(m.desc.dtype, "|S5");
    assert_memory_equal(s, "alphabe\0\0\0", 10);
    const unsigned char *rec = member(set, "records", &m);
    assert_string_equal(m.desc.dtype, "|S15");
    int32_t id;
    double x;
    memcpy(&id, rec + 15, 4);
    memcpy(&x, rec + 15 + 4, 8);
    assert_int_equal(id, 2);
    assert_true(x == 1.5);
    assert_memory_equal(rec + 15 + 12, "bb", 2);
    uint32_t l;
    const char *descr = attr(&m, "__dtype__", SHMSTORE_T_STR, &l);
    assert_non_null(memmem(descr, l, "'offsets': [0, 4, 12]", 21));
    assert_int_equal(*(const int64_t *)member(set, "scalar_int", &m), 42);
    assert_int_equal(m.desc.ndim, 0);
    assert_true(*(const double *)member(set, "scalar_float", &m) == 2.5);
    assert_memory_equal(member(set, "scalar_str", &m), "hello", 5);
    member(set, "empty", &m);
    assert_int_equal(m.len, 0);
    assert_int_equal(m.desc.ndim, 2);
    assert_int_equal(m.desc.shape[1], 3);
    const double *ch = member(set, "a/b/c/chunked", &m);
    assert_int_equal(m.desc.shape[0], 100000);
    for (int i = 0; i < 100000; i += 997)
        assert_true(ch[i] == (double)i);
    assert_memory_equal(attr(&m, "unit", SHMSTORE_T_STR, &l), "m/s", 3);
    assert_true(F64(attr(&m, "rate", SHMSTORE_T_FLOAT64, NULL)) == 100.0);
    assert_memory_equal(attr(&m, "shape_hint", SHMSTORE_T_BYTES, &l), "\x93NUMPY", 6);
    member(set, "a/b/c/.attrs", &m);
    assert_int_equal(I64(attr(&m, "depth", SHMSTORE_T_INT64, NULL)), 3);
    member(set, ".attrs", &m);
    assert_memory_equal(attr(&m, "title", SHMSTORE_T_STR, &l), "test file", 9);
    assert_int_equal(I64(attr(&m, "version", SHMSTORE_T_INT64, NULL)), 3);
    assert_int_equal(I64(attr(&m, "u64", SHMSTORE_T_INT64, NULL)), 1ll << 40);
    assert_true(F64(attr(&m, "scale", SHMSTORE_T_FLOAT64, NULL)) == 0.5);
    assert_int_equal(*(const uint8_t *)attr(&m, "ok", SHMSTORE_T_BOOL, NULL), 1);
    const char *z = attr(&m, "z", SHMSTORE_T_COMPLEX128, NULL);
    assert_true(F64(z) == 1.0 && F64(z + 8) == 2.0);
    const char *npy = attr(&m, "flags", SHMSTORE_T_BYTES, &l);
    assert_non_null(memmem(npy, l, "'descr': '<i2'", 14));
    assert_non_null(memmem(npy, l, "'shape': (3,)", 13));
    npy = attr(&m, "vstr_list", SHMSTORE_T_BYTES, &l);
    assert_non_null(memmem(npy, l, "'descr': '|S3'", 14));
    shmstore_set_close(set);
    T_OK(shmstore_delete(f->s, "proj"));
}

static void test_hdf5_save_then_load_is_identical(void **state)
{
    struct fixture *f = *state;
    char out[512];
    snprintf(out, sizeof(out), "%s/saved.h5", g_dir);
    T_OK(shmstore_hdf5_load(f->s, make("all", NULL), "a", 0, NULL, NULL, NULL));
    T_OK(shmstore_hdf5_save(f->s, "a", out));
    T_OK(shmstore_hdf5_load(f->s, out, "b", 0, NULL, NULL, NULL));
    shmstore_set_t *a, *b;
    T_OK(shmstore_set_open(f->s, "a", &a));
    T_OK(shmstore_set_open(f->s, "b", &b));
    assert_int_equal(shmstore_set_count(a), shmstore_set_count(b));
    for (size_t i = 0; i < shmstore_set_count(a); i++) {
        shmstore_set_member_t ma, mb;
        T_OK(shmstore_set_member(a, i, &ma));
        T_OK(shmstore_set_member(b, i, &mb));
        assert_string_equal(ma.name, mb.name);
        assert_int_equal(ma.desc.type, mb.desc.type);
        assert_string_equal(ma.desc.dtype, mb.desc.dtype);
        assert_int_equal(ma.desc.ndim, mb.desc.ndim);
        assert_memory_equal(ma.desc.shape, mb.desc.shape, ma.desc.ndim * 8);
        assert_int_equal(ma.len, mb.len);
        if (ma.desc.attrs_len != mb.desc.attrs_len ||
            (ma.desc.attrs_len && memcmp(ma.desc.attrs, mb.desc.attrs, ma.desc.attrs_len) != 0))
            fail_msg("member '%s': attrs differ after save -> load", ma.name);
        shmstore_view_t va, vb;
        T_OK(shmstore_set_view(a, i, &va));
        T_OK(shmstore_set_view(b, i, &vb));
        if (va.len)
            assert_memory_equal(va.data, vb.data, va.len);
        shmstore_view_release(&va);
        shmstore_view_release(&vb);
    }
    shmstore_set_close(a);
    shmstore_set_close(b);
    /* Saving into a directory that does not exist fails and leaves nothing. */
    T_ASSERT_RC(shmstore_hdf5_save(f->s, "a", "/nonexistent-dir/x.h5"), -EIO);
    T_ASSERT_RC(shmstore_hdf5_save(f->s, "nothing", out), -ENOENT);
    T_OK(shmstore_delete_prefix(f->s, "a", NULL));
    T_OK(shmstore_delete_prefix(f->s, "b", NULL));
}

static void assert_nothing(struct fixture *f)
{
    shmstore_stat_t st;
    T_OK(shmstore_gc(f->s, NULL));
    T_OK(shmstore_stat(f->s, &st));
    assert_int_equal(st.n_objects, 0);
}

static void test_hdf5_bad_input(void **state)
{
    struct fixture *f = *state;
    char p[512];
    snprintf(p, sizeof(p), "%s/missing.h5", g_dir);
    T_ASSERT_RC(shmstore_hdf5_load(f->s, p, "x", 0, NULL, NULL, NULL), -ENOENT);
    assert_non_null(strstr(shmstore_errmsg(), "missing.h5"));
    snprintf(p, sizeof(p), "%s/corrupt.h5", g_dir);
    FILE *fp = fopen(p, "w");
    fputs("not an hdf5 file at all", fp);
    fclose(fp);
    T_ASSERT_RC(shmstore_hdf5_load(f->s, p, "x", 0, NULL, NULL, NULL), -EIO);
    assert_non_null(strstr(shmstore_errmsg(), "corrupt.h5"));
    /* Unsupported: refused naming the path, nothing left; skipped on request. */
    const char *vl = make("vlen", NULL);
    T_ASSERT_RC(shmstore_hdf5_load(f->s, vl, "x", 0, NULL, NULL, NULL), SHMSTORE_EDTYPE);
    assert_non_null(strstr(shmstore_errmsg(), "bad/vlen"));
    assert_non_null(strstr(shmstore_errmsg(), "variable-length"));
    assert_nothing(f);
    uint64_t n = 0;
    T_OK(shmstore_hdf5_load(f->s, vl, "x", SHMSTORE_H5_SKIP_UNSUPPORTED, NULL, NULL, &n));
    assert_int_equal(n, 1);
    /* Existing prefix, then overwrite. */
    T_ASSERT_RC(shmstore_hdf5_load(f->s, vl, "x", SHMSTORE_H5_SKIP_UNSUPPORTED, NULL, NULL, &n), -EEXIST);
    T_OK(shmstore_hdf5_load(f->s, make("all", NULL), "x", SHMSTORE_H5_OVERWRITE, NULL, NULL, &n));
    assert_int_equal(n, 25);
    T_OK(shmstore_delete(f->s, "x"));
    /* A name too long once joined with the prefix. */
    char longp[64];
    memset(longp, 'p', 60); /* 60 + 1 + 208 > 255 */
    longp[60] = '\0';
    T_ASSERT_RC(shmstore_hdf5_load(f->s, make("deep", NULL), longp, 0, NULL, NULL, NULL), SHMSTORE_ENAME);
    assert_non_null(strstr(shmstore_errmsg(), "deep.h5"));
    assert_nothing(f);
}

static int cancel_half(const char *path, uint64_t done, uint64_t total, void *arg)
{
    (void)path;
    ++*(int *)arg;
    return done > total / 2;
}

static int count_calls(const char *path, uint64_t done, uint64_t total, void *arg)
{
    (void)path;
    assert_true(done <= total);
    ++*(int *)arg;
    return 0;
}

/* 256 MiB contiguous + 64 MiB chunked/gzip: read in slices with progress, values checked;
 * a cancel midway and a store too small leave nothing. */
static void test_hdf5_large(void **state)
{
    struct fixture *f = *state;
    const char *big = make("big", "256");
    int calls = 0;
    T_OK(shmstore_hdf5_load(f->s, big, "big", 0, count_calls, &calls, NULL));
    assert_true(calls > 4); /* slices: a real progress bar */
    shmstore_set_t *set;
    shmstore_set_member_t m;
    T_OK(shmstore_set_open(f->s, "big", &set));
    const double *d = member(set, "big", &m);
    assert_int_equal(m.len, 256 * MiB);
    for (uint64_t i = 0; i < m.len / 8; i += 4099)
        assert_true(d[i] == (double)i);
    assert_true(d[m.len / 8 - 1] == (double)(m.len / 8 - 1));
    const double *g = member(set, "big_gzip", &m);
    for (uint64_t i = 0; i < m.len / 8; i += 4099)
        assert_true(g[i] == (double)i);
    shmstore_set_close(set);
    T_OK(shmstore_delete(f->s, "big"));
    calls = 0;
    T_ASSERT_RC(shmstore_hdf5_load(f->s, big, "big", 0, cancel_half, &calls, NULL), -ECANCELED);
    assert_nothing(f);
    /* Larger than the store: -ENOSPC naming the size, nothing left. */
    char small[128];
    t_store_name(small, sizeof(small));
    shmstore_t *s2 = t_open_new(small, 64 * MiB);
    T_ASSERT_RC(shmstore_hdf5_load(s2, big, "big", 0, NULL, NULL, NULL), -ENOSPC);
    assert_non_null(strstr(shmstore_errmsg(), "bytes"));
    t_cleanup(s2, small);
}

int main(void)
{
    if (!shmstore_hdf5_available()) {
        fprintf(stderr, "skip: built without HDF5\n");
        return T_EXIT_SKIP;
    }
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0) {
        fprintf(stderr, "skip: /usr/bin/python3 has no h5py (apt-get install python3-h5py)\n");
        return T_EXIT_SKIP;
    }
    t_mkdtemp(g_dir, sizeof(g_dir));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hdf5_load_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hdf5_save_then_load_is_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hdf5_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hdf5_large, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
