/* test_value.c - values: put/get/view/version/mtime/trigger/seal/delete,
 * reserve/commit/abort, lock/unlock, wait, and every documented error code of each. */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define KiB 1024ull
#define MiB (1024ull * 1024ull)
#define MS 1000000ll

static uint64_t now_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct fixture {
    char name[128];
    shmstore_t *s;
    shmstore_value_t *v;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    t_store_name(f->name, sizeof(f->name));
    f->s = t_open_new(f->name, 64 * MiB);
    T_OK(shmstore_value_open(f->s, "val", SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &f->v));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    shmstore_value_close(f->v);
    t_cleanup(f->s, f->name);
    free(f);
    return 0;
}

static uint64_t version_of(shmstore_value_t *v)
{
    uint64_t ver = 0xdead;
    T_OK(shmstore_value_version(v, &ver));
    return ver;
}

static void expect_bytes(shmstore_value_t *v, const void *data, size_t len, uint64_t ver)
{
    uint8_t buf[4096];
    size_t got_len = 0;
    uint64_t got_ver = 0;
    shmstore_datum_t d;
    assert_true(len <= sizeof(buf));
    T_OK(shmstore_value_get(v, &d, buf, sizeof(buf), &got_len, &got_ver));
    assert_int_equal(got_len, len);
    assert_memory_equal(buf, data, len);
    assert_int_equal(got_ver, ver);
}

/* ---- put / get --------------------------------------------------------------------- */

static void test_value_put_get(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;

    T_OK(shmstore_value_put(v, NULL, "hello", 5, 0));
    expect_bytes(v, "hello", 5, 1);
    shmstore_datum_t d;
    char buf[16];
    size_t len = 0;
    T_OK(shmstore_value_get(v, &d, buf, sizeof(buf), &len, NULL));
    assert_int_equal(d.type, SHMSTORE_T_BYTES); /* NULL descriptor = BYTES */
    assert_null(d.attrs);
    T_OK(shmstore_value_get(v, NULL, buf, 5, NULL, NULL)); /* exact fit, NULL outs */

    /* -ENOBUFS says the size needed and writes nothing else. */
    memset(buf, '#', sizeof(buf));
    len = 0;
    uint64_t ver = 777;
    T_ASSERT_RC(shmstore_value_get(v, NULL, buf, 4, &len, &ver), -ENOBUFS);
    assert_int_equal(len, 5);
    assert_int_equal(ver, 777);
    assert_true(buf[4] == '#');
    len = 0;
    T_ASSERT_RC(shmstore_value_get(v, NULL, NULL, 0, &len, NULL), -ENOBUFS);
    assert_int_equal(len, 5);
    T_ASSERT_RC(shmstore_value_get(v, NULL, NULL, 0, NULL, NULL), -ENOBUFS);

    /* An empty payload. */
    T_OK(shmstore_value_put(v, NULL, NULL, 0, 0));
    len = 99;
    T_OK(shmstore_value_get(v, NULL, NULL, 0, &len, &ver));
    assert_int_equal(len, 0);
    assert_int_equal(ver, 2);

    /* By name. */
    T_OK(shmstore_put(f->s, "byname", NULL, "abc", 3, 0));
    T_OK(shmstore_get(f->s, "byname", NULL, buf, sizeof(buf), &len, &ver));
    assert_int_equal(len, 3);
    assert_int_equal(ver, 1);
    T_ASSERT_RC(shmstore_get(f->s, "byname", NULL, buf, 2, &len, &ver), -ENOBUFS);
    assert_int_equal(len, 3);
    T_ASSERT_RC(shmstore_get(f->s, "nope", NULL, buf, sizeof(buf), &len, &ver), -ENOENT);
    T_ASSERT_RC(shmstore_put(f->s, "", NULL, "abc", 3, 0), SHMSTORE_ENAME);
}

static void test_value_no_version(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    char buf[8];
    size_t len = 42;
    uint64_t ver = 42;
    shmstore_view_t view;
    void *p = NULL;
    shmstore_datum_t d;

    T_ASSERT_RC(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, &ver), SHMSTORE_ENOVALUE);
    assert_int_equal(len, 42);
    assert_int_equal(ver, 42);
    memset(&view, 0, sizeof(view));
    T_ASSERT_RC(shmstore_value_view(v, &view), SHMSTORE_ENOVALUE);
    assert_null(view.data);
    T_ASSERT_RC(shmstore_value_seal(v), SHMSTORE_ENOVALUE);
    T_ASSERT_RC(shmstore_value_lock(v, 0, &p, &len, &d), SHMSTORE_ENOVALUE);
    T_ASSERT_RC(shmstore_value_unlock(v), -EINVAL);
    assert_int_equal(version_of(v), 0);
    T_ASSERT_RC(shmstore_value_wait(v, 0, 0, &ver), -ETIMEDOUT);
    T_ASSERT_RC(shmstore_get(f->s, "val", NULL, buf, sizeof(buf), &len, &ver),
                SHMSTORE_ENOVALUE);
    shmstore_obj_info_t info;
    T_OK(shmstore_value_info(v, &info));
    assert_int_equal(info.version, 0);
    assert_int_equal(info.kind, SHMSTORE_KIND_VALUE);
    assert_string_equal(info.name, "val");
    /* A lock attempt that failed left no writer lock: a put works. */
    T_OK(shmstore_value_put(v, NULL, "x", 1, 0));
    assert_int_equal(version_of(v), 1);
}

static void test_value_descriptor_mismatch(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    T_OK(shmstore_value_put(v, NULL, "keep", 4, 0));

    shmstore_datum_t d;
    int64_t i64 = 7;
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    T_ASSERT_RC(shmstore_value_put(v, &d, &i64, 4, 0), -EINVAL);
    assert_true(shmstore_errmsg()[0] != '\0');
    T_ASSERT_RC(shmstore_value_put(v, &d, &i64, 9, 0), -EINVAL);
    uint64_t shape[2] = {2, 3};
    T_OK(shmstore_datum_init_array(&d, "<f4", 2, shape));
    float fl[6] = {0};
    T_ASSERT_RC(shmstore_value_put(v, &d, fl, sizeof(fl) - 4, 0), -EINVAL);
    d.ndim = 40;
    T_ASSERT_RC(shmstore_value_put(v, &d, fl, sizeof(fl), 0), -EINVAL);
    void *p = (void *)(uintptr_t)0x1;
    T_ASSERT_RC(shmstore_value_reserve(v, &d, sizeof(fl), 0, &p), -EINVAL);
    assert_ptr_equal(p, (void *)(uintptr_t)0x1);
    /* Nothing changed, and no writer lock is left behind. */
    expect_bytes(v, "keep", 4, 1);
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    T_OK(shmstore_value_put(v, &d, &i64, 8, 0));
    assert_int_equal(version_of(v), 2);
}

static void test_value_change_layout(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    shmstore_datum_t d, got;
    uint8_t *buf = malloc(1 * MiB);
    uint8_t *big = malloc(1 * MiB);
    assert_non_null(buf);
    assert_non_null(big);
    for (size_t i = 0; i < 1 * MiB; i++)
        big[i] = (uint8_t)(i * 7);

    uint64_t shape23[2] = {2, 3};
    float f6[6] = {1, 2, 3, 4, 5, 6};
    T_OK(shmstore_datum_init_array(&d, "<f4", 2, shape23));
    T_OK(shmstore_value_put(v, &d, f6, sizeof(f6), 0));
    size_t len = 0;
    T_OK(shmstore_value_get(v, &got, buf, 1 * MiB, &len, NULL));
    assert_int_equal(len, sizeof(f6));
    assert_string_equal(got.dtype, "<f4");
    assert_int_equal(got.ndim, 2);

    uint64_t shape4[1] = {4};
    int64_t i4[4] = {-1, 2, -3, 4};
    T_OK(shmstore_datum_init_array(&d, "<i8", 1, shape4));
    T_OK(shmstore_value_put(v, &d, i4, sizeof(i4), 0));
    T_OK(shmstore_value_get(v, &got, buf, 1 * MiB, &len, NULL));
    assert_int_equal(len, sizeof(i4));
    assert_string_equal(got.dtype, "<i8");
    assert_int_equal(got.ndim, 1);
    assert_int_equal(got.shape[0], 4);
    assert_memory_equal(buf, i4, sizeof(i4));

    T_OK(shmstore_value_put(v, NULL, big, 1 * MiB, 0));
    T_OK(shmstore_value_get(v, &got, buf, 1 * MiB, &len, NULL));
    assert_int_equal(got.type, SHMSTORE_T_BYTES);
    assert_int_equal(len, 1 * MiB);
    assert_memory_equal(buf, big, 1 * MiB);

    shmstore_datum_init(&d, SHMSTORE_T_STR);
    T_OK(shmstore_value_put(v, &d, "short", 5, 0));
    T_OK(shmstore_value_get(v, &got, buf, 1 * MiB, &len, NULL));
    assert_int_equal(got.type, SHMSTORE_T_STR);
    assert_int_equal(len, 5);
    assert_int_equal(version_of(v), 4);
    free(big);
    free(buf);
}

static void test_value_same_layout(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    shmstore_datum_t d;
    uint64_t shape23[2] = {2, 3}, shape32[2] = {3, 2}, shape6[1] = {6};
    float f6[6] = {0};
    void *p = NULL;

    T_OK(shmstore_datum_init_array(&d, "<f4", 2, shape23));
    T_OK(shmstore_value_put(v, &d, f6, sizeof(f6), 0));
    T_OK(shmstore_value_put(v, &d, f6, sizeof(f6), SHMSTORE_PUT_SAME_LAYOUT));
    assert_int_equal(version_of(v), 2);

    T_OK(shmstore_datum_init_array(&d, "<f4", 2, shape32));
    T_ASSERT_RC(shmstore_value_put(v, &d, f6, sizeof(f6), SHMSTORE_PUT_SAME_LAYOUT),
                SHMSTORE_ELAYOUT);
    T_ASSERT_RC(shmstore_value_reserve(v, &d, sizeof(f6), SHMSTORE_PUT_SAME_LAYOUT, &p),
                SHMSTORE_ELAYOUT);
    T_OK(shmstore_datum_init_array(&d, "<f4", 1, shape6));
    T_ASSERT_RC(shmstore_value_put(v, &d, f6, sizeof(f6), SHMSTORE_PUT_SAME_LAYOUT),
                SHMSTORE_ELAYOUT);
    T_OK(shmstore_datum_init_array(&d, "<i4", 2, shape23));
    T_ASSERT_RC(shmstore_value_put(v, &d, f6, sizeof(f6), SHMSTORE_PUT_SAME_LAYOUT),
                SHMSTORE_ELAYOUT);
    T_ASSERT_RC(shmstore_value_put(v, NULL, f6, sizeof(f6), SHMSTORE_PUT_SAME_LAYOUT),
                SHMSTORE_ELAYOUT);
    assert_int_equal(version_of(v), 2);
    /* Without the flag the layout may change. */
    T_OK(shmstore_value_put(v, &d, f6, sizeof(f6), 0));
    assert_int_equal(version_of(v), 3);

    /* Bytes: the size is part of the layout. */
    T_OK(shmstore_value_put(v, NULL, "abcd", 4, 0));
    T_OK(shmstore_value_put(v, NULL, "wxyz", 4, SHMSTORE_PUT_SAME_LAYOUT));
    T_ASSERT_RC(shmstore_value_put(v, NULL, "abc", 3, SHMSTORE_PUT_SAME_LAYOUT),
                SHMSTORE_ELAYOUT);
    expect_bytes(v, "wxyz", 4, 5);
    T_OK(shmstore_value_reserve(v, NULL, 4, SHMSTORE_PUT_SAME_LAYOUT, &p));
    memcpy(p, "rsvd", 4);
    T_OK(shmstore_value_commit(v));
    expect_bytes(v, "rsvd", 4, 6);
}

/* ---- version, mtime, trigger ------------------------------------------------------- */

static void test_value_version_mtime(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    uint64_t prev_ver = version_of(v), mtime = 0;
    assert_int_equal(prev_ver, 0);
    for (int i = 0; i < 200; i++) {
        uint64_t before = now_real_ns();
        T_OK(shmstore_value_put(v, NULL, &i, sizeof(i), 0));
        uint64_t after = now_real_ns();
        uint64_t ver = version_of(v);
        assert_true(ver > prev_ver);
        assert_int_equal(ver, prev_ver + 1); /* one writer: exactly one step */
        prev_ver = ver;
        T_OK(shmstore_value_mtime(v, &mtime));
        assert_true(mtime >= before && mtime <= after);

        shmstore_view_t view;
        T_OK(shmstore_value_view(v, &view));
        assert_int_equal(view.version, ver);
        assert_int_equal(view.mtime_ns, mtime);
        shmstore_view_release(&view);
        shmstore_obj_info_t info;
        T_OK(shmstore_value_info(v, &info));
        assert_int_equal(info.version, ver);
        assert_int_equal(info.mtime_ns, mtime);
        assert_int_equal(info.size, sizeof(i));
    }
}

static void test_value_trigger(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;

    /* On a value with no version: version 1, type NONE, no bytes. */
    T_OK(shmstore_value_trigger(v));
    assert_int_equal(version_of(v), 1);
    shmstore_datum_t d;
    size_t len = 99;
    char buf[16];
    T_OK(shmstore_value_get(v, &d, buf, sizeof(buf), &len, NULL));
    assert_int_equal(d.type, SHMSTORE_T_NONE);
    assert_int_equal(len, 0);

    /* With data: a new version, same data and descriptor. */
    shmstore_datum_init(&d, SHMSTORE_T_STR);
    T_OK(shmstore_value_put(v, &d, "payload", 7, 0));
    uint64_t m1 = 0, m2 = 0, got = 0;
    T_OK(shmstore_value_mtime(v, &m1));
    T_OK(shmstore_value_trigger(v));
    T_OK(shmstore_value_mtime(v, &m2));
    assert_true(m2 >= m1);
    assert_int_equal(version_of(v), 3);
    expect_bytes(v, "payload", 7, 3);
    T_OK(shmstore_value_get(v, &d, buf, sizeof(buf), &len, NULL));
    assert_int_equal(d.type, SHMSTORE_T_STR);
    T_OK(shmstore_value_wait(v, 2, 0, &got));
    assert_int_equal(got, 3);
}

/* Each way of publishing reports its own version; reads and failures leave it alone. */
static void test_value_published(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v, *other;
    shmstore_datum_t d;
    void *data;
    size_t len;
    int64_t i = 7;

    assert_int_equal(shmstore_value_published(NULL), 0);
    assert_int_equal(shmstore_value_published(v), 0);
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    T_OK(shmstore_value_put(v, &d, &i, sizeof(i), 0));
    assert_int_equal(shmstore_value_published(v), 1);
    T_OK(shmstore_value_trigger(v));
    assert_int_equal(shmstore_value_published(v), 2);
    T_OK(shmstore_value_reserve(v, &d, sizeof(i), 0, &data));
    memcpy(data, &i, sizeof(i));
    T_OK(shmstore_value_commit(v));
    assert_int_equal(shmstore_value_published(v), 3);
    T_OK(shmstore_value_lock(v, -1, &data, &len, &d));
    T_OK(shmstore_value_unlock(v));
    assert_int_equal(shmstore_value_published(v), 4);

    /* Another handle's put moves the value, not this handle's record. */
    T_OK(shmstore_value_open(f->s, "val", 0, &other));
    T_OK(shmstore_value_put(other, &d, &i, sizeof(i), 0));
    assert_int_equal(shmstore_value_published(other), 5);
    assert_int_equal(shmstore_value_published(v), 4);
    shmstore_value_close(other);

    T_ASSERT_RC(shmstore_value_put(v, &d, &i, 3, 0), -EINVAL);
    assert_int_equal(shmstore_value_published(v), 4);
    assert_int_equal(version_of(v), 5);
}

/* ---- seal -------------------------------------------------------------------------- */

static void test_value_seal(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    void *p = NULL;
    size_t len = 0;
    shmstore_datum_t d;

    T_OK(shmstore_value_put(v, NULL, "final", 5, 0));
    T_OK(shmstore_value_seal(v));
    T_ASSERT_RC(shmstore_value_put(v, NULL, "later", 5, 0), SHMSTORE_ESEALED);
    T_ASSERT_RC(shmstore_value_reserve(v, NULL, 5, 0, &p), SHMSTORE_ESEALED);
    assert_null(p);
    T_ASSERT_RC(shmstore_value_trigger(v), SHMSTORE_ESEALED);
    T_ASSERT_RC(shmstore_value_lock(v, 0, &p, &len, &d), SHMSTORE_ESEALED);
    T_ASSERT_RC(shmstore_put(f->s, "val", NULL, "later", 5, 0), SHMSTORE_ESEALED);
    T_ASSERT_RC(shmstore_value_commit(v), -EINVAL);
    expect_bytes(v, "final", 5, 1);
    shmstore_obj_info_t info;
    T_OK(shmstore_value_info(v, &info));
    assert_int_equal(info.is_sealed, 1);
    T_OK(shmstore_info(f->s, "val", &info));
    assert_int_equal(info.is_sealed, 1);
    /* Views of a sealed value work; a sealed value can be deleted. */
    shmstore_view_t view;
    T_OK(shmstore_value_view(v, &view));
    assert_memory_equal(view.data, "final", 5);
    T_OK(shmstore_delete(f->s, "val"));
    assert_memory_equal(view.data, "final", 5);
    shmstore_view_release(&view);
    T_ASSERT_RC(shmstore_value_seal(v), -ESTALE);
}

/* ---- views ------------------------------------------------------------------------- */

#define N_HELD 6

static void test_value_views_survive(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    uint8_t buf[4096];
    shmstore_view_t views[N_HELD];
    shmstore_stat_t st0, st;

    /* Baseline with the value holding a version of the same size. */
    memset(buf, 0, sizeof(buf));
    T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));

    for (int i = 0; i < N_HELD; i++) {
        memset(buf, 'A' + i, sizeof(buf));
        T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));
        T_OK(shmstore_value_view(v, &views[i]));
        assert_int_equal((uintptr_t)views[i].data % 64, 0);
        assert_int_equal(views[i].len, sizeof(buf));
        assert_int_equal(views[i].version, (uint64_t)(i + 2));
    }
    /* Many newer versions, some of other sizes. */
    for (int i = 0; i < 50; i++) {
        memset(buf, 'a' + (i % 26), sizeof(buf));
        T_OK(shmstore_value_put(v, NULL, buf, (i % 3) ? sizeof(buf) : 100, 0));
    }
    for (int i = 0; i < N_HELD; i++) {
        const uint8_t *p = views[i].data;
        for (size_t k = 0; k < views[i].len; k++)
            assert_int_equal(p[k], 'A' + i);
    }
    t_assert_clean(f->s);

    /* Deleting the value and closing the handle keeps the views intact. */
    T_OK(shmstore_delete(f->s, "val"));
    shmstore_value_close(v);
    f->v = NULL;
    for (int i = 0; i < N_HELD; i++) {
        const uint8_t *p = views[i].data;
        for (size_t k = 0; k < views[i].len; k++)
            assert_int_equal(p[k], 'A' + i);
    }
    /* A new object in the freed space does not overwrite pinned bytes. */
    for (int i = 0; i < 20; i++) {
        memset(buf, 'z', sizeof(buf));
        T_OK(shmstore_put(f->s, "other", NULL, buf, sizeof(buf), 0));
    }
    T_OK(shmstore_delete(f->s, "other"));
    for (int i = 0; i < N_HELD; i++) {
        const uint8_t *p = views[i].data;
        for (size_t k = 0; k < views[i].len; k++)
            assert_int_equal(p[k], 'A' + i);
    }
    T_OK(shmstore_stat(f->s, &st0));
    assert_true(st0.used > 0);
    for (int i = 0; i < N_HELD; i++) {
        shmstore_view_release(&views[i]);
        shmstore_view_release(&views[i]); /* twice is harmless */
    }
    shmstore_view_t zero;
    memset(&zero, 0, sizeof(zero));
    shmstore_view_release(&zero);

    /* The last release freed the memory. */
    T_OK(shmstore_stat(f->s, &st));
    assert_int_equal(st.n_objects, 0);
    assert_true(st.used + N_HELD * sizeof(buf) <= st0.used);
    T_OK(shmstore_value_open(f->s, "val", SHMSTORE_V_CREATE, &f->v));
}

static void test_value_view_after_value_close(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v2 = NULL;
    T_OK(shmstore_value_open(f->s, "val", 0, &v2));
    T_OK(shmstore_value_put(v2, NULL, "viewed", 6, 0));
    shmstore_view_t view;
    T_OK(shmstore_value_view(v2, &view));
    shmstore_value_close(v2);
    assert_memory_equal(view.data, "viewed", 6);
    T_OK(shmstore_value_put(f->v, NULL, "newer!", 6, 0));
    assert_memory_equal(view.data, "viewed", 6);
    shmstore_view_release(&view);
}

/* close() releases what is still open; views released and handles closed afterwards are
 * harmless. */
static void test_value_view_release_after_store_close(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);
    T_OK(shmstore_put(s, "warm", NULL, "w", 1, 0));
    T_OK(shmstore_delete(s, "warm"));
    shmstore_stat_t st0;
    T_OK(shmstore_stat(s, &st0));

    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "v", SHMSTORE_V_CREATE, &v));
    T_OK(shmstore_value_put(v, NULL, "pinned", 6, 0));
    shmstore_view_t view1, view2;
    T_OK(shmstore_value_view(v, &view1));
    T_OK(shmstore_value_put(v, NULL, "second", 6, 0));
    T_OK(shmstore_value_view(v, &view2));
    T_OK(shmstore_delete(s, "v"));
    /* Close with a value handle and two views still open. */
    shmstore_close(s);
    shmstore_view_release(&view1);
    shmstore_view_release(&view2);
    shmstore_value_close(v); /* allowed after close: only frees the handle */

    /* Nothing stayed pinned: reopening finds the deleted value's memory freed. */
    s = NULL;
    T_OK(shmstore_open(name, 0, NULL, &s));
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 0);
    assert_int_equal(st.n_procs, 1);
    assert_int_equal(st.used, st0.used);
    t_cleanup(s, name);
}

/* ---- reserve / commit / abort ------------------------------------------------------ */

static void test_value_reserve_commit_abort(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    void *p = NULL;

    T_ASSERT_RC(shmstore_value_commit(v), -EINVAL); /* nothing reserved */
    shmstore_value_abort(v);                        /* harmless */

    /* reserve + commit on a value with no version. */
    T_OK(shmstore_value_reserve(v, NULL, 100, 0, &p));
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    memset(p, 'r', 100);
    char buf[128];
    size_t len;
    T_ASSERT_RC(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, NULL), SHMSTORE_ENOVALUE);
    assert_int_equal(version_of(v), 0);
    T_OK(shmstore_value_commit(v));
    assert_int_equal(version_of(v), 1);
    char want[100];
    memset(want, 'r', sizeof(want));
    expect_bytes(v, want, 100, 1);
    T_ASSERT_RC(shmstore_value_commit(v), -EINVAL); /* already committed */

    /* reserve + abort: nothing changes. */
    T_OK(shmstore_value_reserve(v, NULL, 50, 0, &p));
    memset(p, 'x', 50);
    expect_bytes(v, want, 100, 1);
    shmstore_value_abort(v);
    expect_bytes(v, want, 100, 1);
    T_ASSERT_RC(shmstore_value_commit(v), -EINVAL);

    /* The writer lock was released by commit and abort: puts work. */
    T_OK(shmstore_value_put(v, NULL, "after", 5, 0));
    expect_bytes(v, "after", 5, 2);

    /* A typed reservation. */
    shmstore_datum_t d, got;
    uint64_t shape[1] = {3};
    T_OK(shmstore_datum_init_array(&d, "<f8", 1, shape));
    T_OK(shmstore_value_reserve(v, &d, 24, 0, &p));
    double vals[3] = {1.0, 2.0, 3.0};
    memcpy(p, vals, sizeof(vals));
    T_OK(shmstore_value_commit(v));
    T_OK(shmstore_value_get(v, &got, buf, sizeof(buf), &len, NULL));
    assert_int_equal(len, 24);
    assert_string_equal(got.dtype, "<f8");
    assert_memory_equal(buf, vals, sizeof(vals));

    /* Many reserve/abort cycles leak nothing. */
    shmstore_stat_t st0, st1;
    T_OK(shmstore_stat(f->s, &st0));
    for (int i = 0; i < 500; i++) {
        T_OK(shmstore_value_reserve(v, NULL, (size_t)(i * 37 % 5000), 0, &p));
        shmstore_value_abort(v);
    }
    T_OK(shmstore_stat(f->s, &st1));
    assert_true(st1.used <= st0.used + 4 * 6 * KiB);
    assert_int_equal(version_of(v), 3);
}

/* ---- lock / unlock ----------------------------------------------------------------- */

static void test_value_lock_unlock(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    shmstore_datum_t d;
    uint64_t shape[1] = {4};
    int32_t vals[4] = {1, 2, 3, 4};

    T_ASSERT_RC(shmstore_value_unlock(v), -EINVAL);
    T_OK(shmstore_datum_init_array(&d, "<i4", 1, shape));
    T_OK(shmstore_value_put(v, &d, vals, sizeof(vals), 0));

    void *p = NULL;
    size_t len = 0;
    shmstore_datum_t ld;
    T_OK(shmstore_value_lock(v, 0, &p, &len, &ld));
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    assert_int_equal(len, sizeof(vals));
    assert_int_equal(ld.type, SHMSTORE_T_ARRAY);
    assert_string_equal(ld.dtype, "<i4");
    assert_int_equal(ld.ndim, 1);
    assert_int_equal(ld.shape[0], 4);
    assert_memory_equal(p, vals, sizeof(vals)); /* pre-filled with the current version */
    ((int32_t *)p)[2] = 30;

    /* Readers keep seeing the previous version until unlock. */
    int32_t out[4];
    size_t out_len = 0;
    uint64_t ver = 0;
    T_OK(shmstore_value_get(v, NULL, out, sizeof(out), &out_len, &ver));
    assert_memory_equal(out, vals, sizeof(vals));
    assert_int_equal(ver, 1);
    shmstore_view_t view;
    T_OK(shmstore_value_view(v, &view));
    assert_memory_equal(view.data, vals, sizeof(vals));

    T_OK(shmstore_value_unlock(v));
    int32_t want[4] = {1, 2, 30, 4};
    T_OK(shmstore_value_get(v, NULL, out, sizeof(out), &out_len, &ver));
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(ver, 2);
    assert_memory_equal(view.data, vals, sizeof(vals)); /* the old view is unchanged */
    shmstore_view_release(&view);
    T_ASSERT_RC(shmstore_value_unlock(v), -EINVAL);

    /* Contention: while one handle holds the writer lock, lock with timeout 0 or a
     * small timeout fails with -ETIMEDOUT; after the holder lets go it succeeds. */
    shmstore_value_t *v2 = NULL;
    T_OK(shmstore_value_open(f->s, "val", 0, &v2));
    T_OK(shmstore_value_reserve(v, &d, sizeof(vals), 0, &p));
    T_ASSERT_RC(shmstore_value_lock(v2, 0, &p, &len, &ld), -ETIMEDOUT);
    T_ASSERT_RC(shmstore_value_lock(v2, 2 * MS, &p, &len, &ld), -ETIMEDOUT);
    shmstore_value_abort(v);
    T_OK(shmstore_value_lock(v2, 0, &p, &len, &ld));
    T_ASSERT_RC(shmstore_value_lock(v, 1 * MS, &p, &len, &ld), -ETIMEDOUT);
    T_OK(shmstore_value_unlock(v2));
    assert_int_equal(version_of(v), 3);
    T_OK(shmstore_value_get(v, NULL, out, sizeof(out), &out_len, &ver));
    assert_memory_equal(out, want, sizeof(want));
    shmstore_value_close(v2);
}

/* ---- wait -------------------------------------------------------------------------- */

static void test_value_wait_timeouts(void **state)
{
    struct fixture *f = *state;
    shmstore_value_t *v = f->v;
    uint64_t ver = 12345;

    T_ASSERT_RC(shmstore_value_wait(v, 0, 0, &ver), -ETIMEDOUT);
    T_ASSERT_RC(shmstore_value_wait(v, 0, 1 * MS, &ver), -ETIMEDOUT);
    assert_int_equal(ver, 12345);
    T_OK(shmstore_value_put(v, NULL, "1", 1, 0));
    T_OK(shmstore_value_wait(v, 0, 0, &ver));
    assert_int_equal(ver, 1);
    T_OK(shmstore_value_wait(v, 0, -1, NULL)); /* already newer: returns at once */
    T_ASSERT_RC(shmstore_value_wait(v, 1, 0, &ver), -ETIMEDOUT);
    T_ASSERT_RC(shmstore_value_wait(v, 1, 3 * MS, &ver), -ETIMEDOUT);
    T_ASSERT_RC(shmstore_value_wait(v, 1000, 0, &ver), -ETIMEDOUT);
    T_OK(shmstore_value_put(v, NULL, "2", 1, 0));
    T_OK(shmstore_value_wait(v, 1, 1 * MS, &ver));
    assert_int_equal(ver, 2);
}

struct waiter {
    shmstore_value_t *v;
    uint64_t after;
    int rc;
    uint64_t got;
    t_barrier_t *b;
};

static void *waiter_thread(void *p)
{
    struct waiter *w = p;
    t_barrier_wait(w->b);
    w->rc = shmstore_value_wait(w->v, w->after, 30000 * MS, &w->got);
    return NULL;
}

static void test_value_wait_woken_by_put(void **state)
{
    struct fixture *f = *state;
    T_OK(shmstore_value_put(f->v, NULL, "0", 1, 0));
    for (int round = 0; round < 20; round++) {
        struct waiter w = {f->v, version_of(f->v), -1, 0, t_barrier_new(2)};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, waiter_thread, &w), 0);
        t_barrier_wait(w.b);
        T_OK(shmstore_value_put(f->v, NULL, "x", 1, 0));
        assert_int_equal(pthread_join(th, NULL), 0);
        t_barrier_free(w.b);
        T_OK(w.rc);
        assert_int_equal(w.got, w.after + 1);
    }
}

static void on_alarm(int sig)
{
    (void)sig;
}

static void test_value_wait_eintr(void **state)
{
    struct fixture *f = *state;
    T_OK(shmstore_value_put(f->v, NULL, "0", 1, 0));
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old_sa), 0);
    /* A repeating timer, so a signal arrives while the waiter sleeps in the kernel
     * whatever the length of its spin phase. */
    struct itimerval it = {{0, 20000}, {0, 20000}}, off = {{0, 0}, {0, 0}};
    assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
    uint64_t ver = 0;
    int rc = shmstore_value_wait(f->v, 1, 10000 * MS, &ver);
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old_sa, NULL);
    T_ASSERT_RC(rc, -EINTR);
    /* The caller may retry. */
    T_ASSERT_RC(shmstore_value_wait(f->v, 1, 0, &ver), -ETIMEDOUT);
}

/* ---- leases ------------------------------------------------------------------------ */

static void test_value_eleases(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 16 * MiB;
    opt.n_leases = 16; /* the smallest lease table (a power of two >= 16) */
    shmstore_t *s = NULL;
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s));

    /* Every handle holds a lease on its object header, every view one on its block. */
    shmstore_value_t *vs[32] = {0};
    shmstore_view_t views[32];
    int n_open = 0, n_views = 0, rc = 0;
    char obj[32];
    for (int i = 0; i < 32; i++) {
        snprintf(obj, sizeof(obj), "v%d", i);
        T_OK(shmstore_put(s, obj, NULL, obj, strlen(obj), 0));
    }
    for (; n_open < 32; n_open++) {
        snprintf(obj, sizeof(obj), "v%d", n_open);
        rc = shmstore_value_open(s, obj, 0, &vs[n_open]);
        if (rc != 0)
            break;
    }
    T_ASSERT_RC(rc, SHMSTORE_ELEASES);
    assert_true(n_open >= 1 && n_open <= 16);
    assert_null(vs[n_open]);
    assert_true(shmstore_errmsg()[0] != '\0');
    /* Free two leases; views may use them until the table is full again. */
    shmstore_value_close(vs[--n_open]);
    vs[n_open] = NULL;
    shmstore_value_close(vs[--n_open]);
    vs[n_open] = NULL;
    for (; n_views < 32; n_views++) {
        rc = shmstore_value_view(vs[0], &views[n_views]);
        if (rc != 0)
            break;
        T_OK(shmstore_value_put(vs[0], NULL, "new", 3, 0)); /* next view pins a new block */
    }
    T_ASSERT_RC(rc, SHMSTORE_ELEASES);
    assert_true(n_views >= 1 && n_views <= 2);
    for (int i = 0; i < n_views; i++)
        shmstore_view_release(&views[i]);
    for (int i = 0; i < n_open; i++)
        shmstore_value_close(vs[i]);
    /* All leases back: opening works again. */
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "v0", 0, &v));
    shmstore_value_close(v);
    t_cleanup(s, name);
}

/* ---- large ------------------------------------------------------------------------- */

static void test_value_large(void **state)
{
    struct fixture *f = *state;
    const size_t len = 16 * MiB;
    uint8_t *buf = malloc(len), *out = malloc(len);
    assert_non_null(buf);
    assert_non_null(out);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i ^ (i >> 9));
    T_OK(shmstore_value_put(f->v, NULL, buf, len, 0));
    size_t got = 0;
    T_OK(shmstore_value_get(f->v, NULL, out, len, &got, NULL));
    assert_int_equal(got, len);
    assert_memory_equal(out, buf, len);
    shmstore_view_t view;
    T_OK(shmstore_value_view(f->v, &view));
    assert_int_equal(view.len, len);
    assert_memory_equal(view.data, buf, len);
    shmstore_view_release(&view);
    /* Bigger than the store: -ENOSPC, nothing changed. */
    free(out);
    out = malloc(80 * MiB);
    assert_non_null(out);
    memset(out, 1, 80 * MiB);
    T_ASSERT_RC(shmstore_value_put(f->v, NULL, out, 80 * MiB, 0), -ENOSPC);
    assert_true(shmstore_errmsg()[0] != '\0');
    assert_int_equal(version_of(f->v), 1);
    void *p = NULL;
    T_ASSERT_RC(shmstore_value_reserve(f->v, NULL, 80 * MiB, 0, &p), -ENOSPC);
    free(out);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_value_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_no_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_descriptor_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_change_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_same_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_version_mtime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_trigger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_seal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_views_survive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_view_after_value_close, setup, teardown),
        cmocka_unit_test(test_value_view_release_after_store_close),
        cmocka_unit_test_setup_teardown(test_value_reserve_commit_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_lock_unlock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_wait_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_wait_woken_by_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_wait_eintr, setup, teardown),
        cmocka_unit_test(test_value_eleases),
        cmocka_unit_test_setup_teardown(test_value_large, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
