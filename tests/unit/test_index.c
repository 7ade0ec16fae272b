/* test_index.c - object names and the name index: length and UTF-8 rules, names with
 * '/', prefix listing, 100,000 objects with constant fds and mappings, and handles that
 * fail with -ESTALE once their object is deleted (also after the name is re-created). */
#include "test.h"

#include <errno.h>
#include <string.h>

#define MiB (1024ull * 1024ull)

static void put_str(shmstore_t *s, const char *obj, const char *text)
{
    T_OK(shmstore_put(s, obj, NULL, text, strlen(text), 0));
}

static void expect_str(shmstore_t *s, const char *obj, const char *text)
{
    char buf[512];
    size_t len = 0;
    T_OK(shmstore_get(s, obj, NULL, buf, sizeof(buf), &len, NULL));
    assert_int_equal(len, strlen(text));
    assert_memory_equal(buf, text, len);
}

/* ---- name rules -------------------------------------------------------------------- */

static void test_index_name_lengths(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);

    char obj[SHMSTORE_NAME_MAX + 2];
    memset(obj, 'a', sizeof(obj));
    obj[SHMSTORE_NAME_MAX] = '\0'; /* 255 bytes: fine */
    put_str(s, obj, "max");
    expect_str(s, obj, "max");
    shmstore_obj_info_t info;
    T_OK(shmstore_info(s, obj, &info));
    assert_string_equal(info.name, obj);
    assert_int_equal(strlen(info.name), SHMSTORE_NAME_MAX);

    /* 255 bytes of multi-byte characters (3 x 85). */
    char wide[SHMSTORE_NAME_MAX + 1];
    for (int i = 0; i < 85; i++)
        memcpy(wide + 3 * i, "\xe6\x97\xa5", 3); /* U+65E5 */
    wide[255] = '\0';
    put_str(s, wide, "wide");
    expect_str(s, wide, "wide");

    /* 256 bytes: SHMSTORE_ENAME from every function that takes a name. */
    memset(obj, 'a', sizeof(obj));
    obj[SHMSTORE_NAME_MAX + 1] = '\0';
    shmstore_value_t *v = NULL;
    char buf[8];
    size_t len;
    T_ASSERT_RC(shmstore_value_open(s, obj, SHMSTORE_V_CREATE, &v), SHMSTORE_ENAME);
    assert_null(v);
    assert_true(shmstore_errmsg()[0] != '\0');
    T_ASSERT_RC(shmstore_put(s, obj, NULL, "x", 1, 0), SHMSTORE_ENAME);
    T_ASSERT_RC(shmstore_get(s, obj, NULL, buf, sizeof(buf), &len, NULL), SHMSTORE_ENAME);
    T_ASSERT_RC(shmstore_info(s, obj, &info), SHMSTORE_ENAME);
    T_ASSERT_RC(shmstore_delete(s, obj), SHMSTORE_ENAME);

    /* Empty. */
    T_ASSERT_RC(shmstore_value_open(s, "", SHMSTORE_V_CREATE, &v), SHMSTORE_ENAME);
    T_ASSERT_RC(shmstore_put(s, "", NULL, "x", 1, 0), SHMSTORE_ENAME);
    T_ASSERT_RC(shmstore_info(s, "", &info), SHMSTORE_ENAME);
    T_ASSERT_RC(shmstore_delete(s, ""), SHMSTORE_ENAME);

    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 2);
    t_cleanup(s, name);
}

static void test_index_utf8(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);

    static const char *const bad[] = {
        "\xff",                 /* never valid */
        "abc\x80",              /* lone continuation byte */
        "\xc3",                 /* truncated 2-byte sequence */
        "a\xe6\x97",            /* truncated 3-byte sequence */
        "\xc0\xaf",             /* overlong '/' */
        "\xe0\x80\xaf",         /* overlong, 3 bytes */
        "\xed\xa0\x80",         /* UTF-16 surrogate U+D800 */
        "\xf4\x90\x80\x80",     /* U+110000, beyond Unicode */
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
        "ok/\xfe/x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        shmstore_value_t *v = NULL;
        int rc = shmstore_value_open(s, bad[i], SHMSTORE_V_CREATE, &v);
        if (rc != SHMSTORE_ENAME)
            print_message("invalid UTF-8 name #%zu accepted or wrong code: %d (%s)\n", i, rc,
                          shmstore_err_name(rc));
        T_ASSERT_RC(rc, SHMSTORE_ENAME);
        assert_null(v);
        T_ASSERT_RC(shmstore_put(s, bad[i], NULL, "x", 1, 0), SHMSTORE_ENAME);
    }

    static const char *const good[] = {
        "caméra/rgb",
        "日本語/データ",
        "emoji/\xf0\x9f\x8e\xa5",  /* U+1F3A5 */
        "max/\xf4\x8f\xbf\xbf",    /* U+10FFFF */
        "\xc2\x80",                /* U+0080 */
        "a b\tc",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        put_str(s, good[i], good[i]);
        expect_str(s, good[i], good[i]);
        shmstore_obj_info_t info;
        T_OK(shmstore_info(s, good[i], &info));
        assert_string_equal(info.name, good[i]);
    }
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, sizeof(good) / sizeof(good[0]));
    t_cleanup(s, name);
}

struct listed {
    int n;
    int stop_at;
    char names[16][SHMSTORE_NAME_MAX + 1];
};

static int collect(const shmstore_obj_info_t *info, void *arg)
{
    struct listed *l = arg;
    if (l->n < 16)
        snprintf(l->names[l->n], sizeof(l->names[0]), "%s", info->name);
    l->n++;
    if (l->stop_at && l->n == l->stop_at)
        return 99;
    return 0;
}

static bool listed_has(const struct listed *l, const char *name)
{
    for (int i = 0; i < l->n && i < 16; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}

static int list_prefix(shmstore_t *s, const char *prefix, struct listed *l)
{
    memset(l, 0, sizeof(*l));
    T_OK(shmstore_list(s, prefix, collect, l));
    return l->n;
}

static void test_index_names_with_slashes(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);
    static const char *const names[] = {
        "camera/rgb", "camera/depth", "camera", "cameras/x", "h5/group/dataset",
        "/leading",   "trailing/",    "a//b",   "/",
    };
    const int n = (int)(sizeof(names) / sizeof(names[0]));
    for (int i = 0; i < n; i++)
        put_str(s, names[i], names[i]);
    for (int i = 0; i < n; i++)
        expect_str(s, names[i], names[i]);

    struct listed l;
    assert_int_equal(list_prefix(s, NULL, &l), n);
    for (int i = 0; i < n; i++)
        assert_true(listed_has(&l, names[i]));
    assert_int_equal(list_prefix(s, "", &l), n);
    assert_int_equal(list_prefix(s, "camera/", &l), 2);
    assert_true(listed_has(&l, "camera/rgb"));
    assert_true(listed_has(&l, "camera/depth"));
    assert_int_equal(list_prefix(s, "camera", &l), 4);
    assert_int_equal(list_prefix(s, "h5/", &l), 1);
    assert_int_equal(list_prefix(s, "/", &l), 2);
    assert_int_equal(list_prefix(s, "nothing", &l), 0);

    /* fn returning non-zero stops the walk and is returned. */
    memset(&l, 0, sizeof(l));
    l.stop_at = 3;
    T_ASSERT_RC(shmstore_list(s, NULL, collect, &l), 99);
    assert_int_equal(l.n, 3);

    /* Deleting one name leaves its neighbours alone. */
    T_OK(shmstore_delete(s, "camera"));
    expect_str(s, "camera/rgb", "camera/rgb");
    assert_int_equal(list_prefix(s, "camera", &l), 3);
    assert_false(listed_has(&l, "camera"));
    t_cleanup(s, name);
}

static void test_index_open_flags(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);
    shmstore_value_t *v = NULL, *v2 = NULL;
    shmstore_value_t *sentinel = (shmstore_value_t *)(uintptr_t)0x4321;

    v = sentinel;
    T_ASSERT_RC(shmstore_value_open(s, "missing", 0, &v), -ENOENT);
    assert_ptr_equal(v, sentinel);
    T_ASSERT_RC(shmstore_value_open(s, "missing", SHMSTORE_V_EXCL, &v), -ENOENT);
    T_OK(shmstore_value_open(s, "x", SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v));
    T_ASSERT_RC(shmstore_value_open(s, "x", SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v2),
                -EEXIST);
    assert_null(v2);
    T_OK(shmstore_value_open(s, "x", SHMSTORE_V_CREATE, &v2));
    T_OK(shmstore_value_put(v, NULL, "one", 3, 0));
    char buf[8];
    size_t len = 0;
    T_OK(shmstore_value_get(v2, NULL, buf, sizeof(buf), &len, NULL));
    assert_int_equal(len, 3);
    shmstore_value_close(v);
    shmstore_value_close(v2);
    shmstore_value_close(NULL);

    shmstore_obj_info_t info;
    T_ASSERT_RC(shmstore_info(s, "missing", &info), -ENOENT);
    T_ASSERT_RC(shmstore_delete(s, "missing"), -ENOENT);
    T_ASSERT_RC(shmstore_get(s, "missing", NULL, buf, sizeof(buf), &len, NULL), -ENOENT);
    T_OK(shmstore_info(s, "x", &info));
    assert_string_equal(info.name, "x");
    assert_int_equal(info.kind, SHMSTORE_KIND_VALUE);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.size, 3);
    assert_true(info.footprint >= info.size);
    assert_int_equal(info.desc.type, SHMSTORE_T_BYTES);
    T_OK(shmstore_delete(s, "x"));
    T_ASSERT_RC(shmstore_delete(s, "x"), -ENOENT);
    t_cleanup(s, name);
}

/* ---- scale ------------------------------------------------------------------------- */

#define N_MANY 100000

static int count_many(const shmstore_obj_info_t *info, void *arg)
{
    uint8_t *seen = arg;
    unsigned i = 0;
    if (sscanf(info->name, "many/%u", &i) != 1 || i >= N_MANY)
        return -1;
    if (seen[i]++ != 0)
        return -2; /* listed twice */
    if (info->size != sizeof(uint32_t) || info->version != 1)
        return -3;
    return 0;
}

static void test_index_100k_objects(void **state)
{
    (void)state;
    char name[128], obj[64];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 1024 * MiB);
    uint8_t *seen = calloc(N_MANY, 1);
    assert_non_null(seen);
    /* Warm the paths that allocate process memory once (errmsg, stdio). */
    T_OK(shmstore_put(s, "warm", NULL, "w", 1, 0));
    T_OK(shmstore_delete(s, "warm"));

    long fds0 = t_count_fds(), maps0 = t_count_maps(), smaps0 = t_count_shared_maps();

    for (uint32_t i = 0; i < N_MANY; i++) {
        snprintf(obj, sizeof(obj), "many/%u", i);
        shmstore_value_t *v = NULL;
        T_OK(shmstore_value_open(s, obj, SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v));
        T_OK(shmstore_value_put(v, NULL, &i, sizeof(i), 0));
        shmstore_value_close(v);
    }
    assert_int_equal(t_count_fds(), fds0);
    T_ASSERT_MAPS(maps0, smaps0);

    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, N_MANY);

    T_OK(shmstore_list(s, "many/", count_many, seen));
    for (uint32_t i = 0; i < N_MANY; i++)
        assert_int_equal(seen[i], 1);

    /* Open every one by name and read it back. */
    for (uint32_t i = 0; i < N_MANY; i++) {
        snprintf(obj, sizeof(obj), "many/%u", i);
        shmstore_value_t *v = NULL;
        T_OK(shmstore_value_open(s, obj, 0, &v));
        uint32_t got = 0;
        size_t len = 0;
        T_OK(shmstore_value_get(v, NULL, &got, sizeof(got), &len, NULL));
        assert_int_equal(len, sizeof(got));
        assert_int_equal(got, i);
        shmstore_value_close(v);
    }
    assert_int_equal(t_count_fds(), fds0);
    T_ASSERT_MAPS(maps0, smaps0);
    t_assert_clean(s);

    /* Delete the odd ones, check the even ones are still found, then the rest. */
    for (uint32_t i = 1; i < N_MANY; i += 2) {
        snprintf(obj, sizeof(obj), "many/%u", i);
        T_OK(shmstore_delete(s, obj));
    }
    for (uint32_t i = 0; i < N_MANY; i += 2) {
        snprintf(obj, sizeof(obj), "many/%u", i);
        uint32_t got = 0;
        size_t len = 0;
        T_OK(shmstore_get(s, obj, NULL, &got, sizeof(got), &len, NULL));
        assert_int_equal(got, i);
        snprintf(obj, sizeof(obj), "many/%u", i + 1);
        shmstore_obj_info_t info;
        T_ASSERT_RC(shmstore_info(s, obj, &info), -ENOENT);
    }
    t_assert_clean(s);
    for (uint32_t i = 0; i < N_MANY; i += 2) {
        snprintf(obj, sizeof(obj), "many/%u", i);
        T_OK(shmstore_delete(s, obj));
    }
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 0);
    memset(seen, 0, N_MANY);
    T_OK(shmstore_list(s, NULL, count_many, seen));
    for (uint32_t i = 0; i < N_MANY; i++)
        assert_int_equal(seen[i], 0);
    assert_int_equal(t_count_fds(), fds0);
    T_ASSERT_MAPS(maps0, smaps0);
    free(seen);
    t_cleanup(s, name);
}

/* Create/delete churn on a few names (tombstones) keeps lookups right. */
static void test_index_churn(void **state)
{
    (void)state;
    char name[128], obj[64];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 64 * MiB);
    for (int i = 0; i < 200; i++) {
        snprintf(obj, sizeof(obj), "stay/%d", i);
        put_str(s, obj, obj);
    }
    for (int round = 0; round < 20000; round++) {
        snprintf(obj, sizeof(obj), "churn/%d", round % 37);
        put_str(s, obj, "c");
        T_OK(shmstore_delete(s, obj));
    }
    for (int i = 0; i < 200; i++) {
        snprintf(obj, sizeof(obj), "stay/%d", i);
        expect_str(s, obj, obj);
    }
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 200);
    t_cleanup(s, name);
}

/* ---- stale handles ----------------------------------------------------------------- */

static void expect_stale(shmstore_value_t *v)
{
    char buf[16];
    size_t len;
    uint64_t ver;
    shmstore_view_t view;
    shmstore_obj_info_t info;
    void *p = NULL;
    shmstore_datum_t d;

    T_ASSERT_RC(shmstore_value_put(v, NULL, "x", 1, 0), -ESTALE);
    T_ASSERT_RC(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, &ver), -ESTALE);
    T_ASSERT_RC(shmstore_value_view(v, &view), -ESTALE);
    T_ASSERT_RC(shmstore_value_version(v, &ver), -ESTALE);
    T_ASSERT_RC(shmstore_value_mtime(v, &ver), -ESTALE);
    T_ASSERT_RC(shmstore_value_wait(v, 0, 0, &ver), -ESTALE);
    T_ASSERT_RC(shmstore_value_wait(v, 1000, 1000000, &ver), -ESTALE);
    T_ASSERT_RC(shmstore_value_trigger(v), -ESTALE);
    T_ASSERT_RC(shmstore_value_seal(v), -ESTALE);
    T_ASSERT_RC(shmstore_value_info(v, &info), -ESTALE);
    T_ASSERT_RC(shmstore_value_reserve(v, NULL, 4, 0, &p), -ESTALE);
    T_ASSERT_RC(shmstore_value_lock(v, 0, &p, &len, &d), -ESTALE);
}

static void test_index_stale_handle(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);
    shmstore_value_t *old = NULL, *fresh = NULL;
    T_OK(shmstore_value_open(s, "obj", SHMSTORE_V_CREATE, &old));
    T_OK(shmstore_value_put(old, NULL, "old", 3, 0));
    T_OK(shmstore_delete(s, "obj"));
    expect_stale(old);

    /* Re-create the same name: the old handle stays stale, a new one works. */
    put_str(s, "obj", "new");
    expect_stale(old);
    T_OK(shmstore_value_open(s, "obj", 0, &fresh));
    char buf[16];
    size_t len = 0;
    uint64_t ver = 0;
    T_OK(shmstore_value_get(fresh, NULL, buf, sizeof(buf), &len, &ver));
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "new", 3);
    assert_int_equal(ver, 1);
    /* The old handle never wrote into the new object. */
    expect_str(s, "obj", "new");

    /* Many delete/re-create cycles (the new object may land in the old block). */
    for (int i = 0; i < 100; i++) {
        T_OK(shmstore_delete(s, "obj"));
        put_str(s, "obj", "again");
        expect_stale(old);
    }
    shmstore_value_close(old);
    shmstore_value_close(fresh);
    t_cleanup(s, name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_name_lengths),
        cmocka_unit_test(test_index_utf8),
        cmocka_unit_test(test_index_names_with_slashes),
        cmocka_unit_test(test_index_open_flags),
        cmocka_unit_test(test_index_100k_objects),
        cmocka_unit_test(test_index_churn),
        cmocka_unit_test(test_index_stale_handle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
