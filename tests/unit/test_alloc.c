/* test_alloc.c - the allocator, seen through the public API: used bytes return to their
 * baseline, payloads are 64-byte aligned, a full store says -ENOSPC (naming the store)
 * and loses nothing, freed space is reused, steady-state updates do not grow the heap. */
#include "test.h"

#include <errno.h>
#include <string.h>

#define KiB 1024ull
#define MiB (1024ull * 1024ull)

static uint64_t rng_state;

static uint32_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static void fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
}

static bool check_pattern(const uint8_t *p, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(seed * 31u + i * 7u + (i >> 8)))
            return false;
    return true;
}

static shmstore_stat_t stat_of(shmstore_t *s)
{
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    return st;
}

/* A size distribution with many small, some medium and a few large payloads, and the
 * edges around the 64-byte granule. */
static size_t pick_size(void)
{
    uint32_t r = rng() % 100;
    if (r < 10) {
        size_t granule = 64 * (1 + rng() % 3);
        return granule - 1 + rng() % 3; /* 63..65, 127..129, 191..193 */
    }
    if (r < 60)
        return rng() % 512;
    if (r < 90)
        return rng() % (16 * KiB);
    return rng() % (256 * KiB);
}

#define N_OBJ 300

struct obj_state {
    size_t len;
    uint32_t seed;
    int live;
};

/* One round: create N_OBJ values of random sizes (some updated several times), verify
 * them, then delete them in random order. */
static void churn_round(shmstore_t *s, uint8_t *buf, struct obj_state *objs)
{
    char name[64];
    for (int i = 0; i < N_OBJ; i++) {
        int n_puts = 1 + (int)(rng() % 3);
        snprintf(name, sizeof(name), "obj/%d", i);
        for (int k = 0; k < n_puts; k++) {
            objs[i].len = pick_size();
            objs[i].seed = rng();
            fill_pattern(buf, objs[i].len, objs[i].seed);
            T_OK(shmstore_put(s, name, NULL, buf, objs[i].len, 0));
        }
        objs[i].live = 1;
    }
    for (int i = 0; i < N_OBJ; i++) {
        size_t len = 0;
        snprintf(name, sizeof(name), "obj/%d", i);
        T_OK(shmstore_get(s, name, NULL, buf, 256 * KiB, &len, NULL));
        assert_int_equal(len, objs[i].len);
        assert_true(check_pattern(buf, len, objs[i].seed));
    }
    t_assert_clean(s);
    /* Delete in a random order (Fisher-Yates over the indices). */
    int order[N_OBJ];
    for (int i = 0; i < N_OBJ; i++)
        order[i] = i;
    for (int i = N_OBJ - 1; i > 0; i--) {
        int j = (int)(rng() % (uint32_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < N_OBJ; i++) {
        snprintf(name, sizeof(name), "obj/%d", order[i]);
        T_OK(shmstore_delete(s, name));
        objs[order[i]].live = 0;
        if (i % 97 == 0)
            t_assert_clean(s);
    }
}

static void test_alloc_used_returns_to_baseline(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 512 * MiB);
    uint8_t *buf = malloc(256 * KiB);
    struct obj_state *objs = calloc(N_OBJ, sizeof(*objs));
    assert_non_null(buf);
    assert_non_null(objs);
    rng_state = 0x9e3779b97f4a7c15ull;

    /* A warm-up round sizes the index for N_OBJ names; the baseline is taken after. */
    churn_round(s, buf, objs);
    shmstore_stat_t base = stat_of(s);
    assert_int_equal(base.n_objects, 0);

    for (int round = 0; round < 3; round++) {
        churn_round(s, buf, objs);
        shmstore_stat_t st = stat_of(s);
        if (st.used != base.used || st.n_blocks != base.n_blocks)
            print_message("round %d: used %llu (baseline %llu), blocks %llu (baseline %llu)\n",
                          round, (unsigned long long)st.used, (unsigned long long)base.used,
                          (unsigned long long)st.n_blocks, (unsigned long long)base.n_blocks);
        assert_int_equal(st.used, base.used);
        assert_int_equal(st.n_blocks, base.n_blocks);
        assert_int_equal(st.n_objects, 0);
        assert_true(st.committed <= st.capacity);
    }
    free(objs);
    free(buf);
    t_cleanup(s, name);
}

static void test_alloc_view_alignment(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 64 * MiB);
    uint8_t data[5000];
    memset(data, 0x5a, sizeof(data));
    uint8_t attrs[512];
    uint32_t attrs_len = 0;

    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "aligned", SHMSTORE_V_CREATE, &v));
    for (size_t len = 0; len < 300; len++) {
        T_OK(shmstore_value_put(v, NULL, data, len, 0));
        shmstore_view_t view;
        T_OK(shmstore_value_view(v, &view));
        assert_int_equal((uintptr_t)view.data % 64, 0);
        assert_int_equal(view.len, len);
        shmstore_view_release(&view);
    }
    /* Arrays with attrs of odd lengths in front of the payload stay aligned. */
    for (int k = 0; k < 20; k++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", k);
        int64_t val = k;
        T_OK(shmstore_attrs_add(attrs, sizeof(attrs), &attrs_len, key, SHMSTORE_T_INT64, &val,
                                sizeof(val)));
        shmstore_datum_t d;
        uint64_t shape[1] = {(uint64_t)(k + 1)};
        T_OK(shmstore_datum_init_array(&d, "<i2", 1, shape));
        d.attrs = attrs;
        d.attrs_len = attrs_len;
        T_OK(shmstore_value_put(v, &d, data, 2 * shape[0], 0));
        shmstore_view_t view;
        T_OK(shmstore_value_view(v, &view));
        assert_int_equal((uintptr_t)view.data % 64, 0);
        assert_int_equal(view.desc.attrs_len, attrs_len);
        shmstore_view_release(&view);

        /* A reserved block is aligned too. */
        void *p = NULL;
        T_OK(shmstore_value_reserve(v, &d, 2 * shape[0], 0, &p));
        assert_int_equal((uintptr_t)p % 64, 0);
        shmstore_value_abort(v);
    }
    shmstore_value_close(v);
    t_cleanup(s, name);
}

static void test_alloc_enospc_loses_nothing(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 4 * MiB);
    uint8_t *buf = malloc(8 * MiB);
    assert_non_null(buf);

    /* The value we must not lose. */
    fill_pattern(buf, 100 * KiB, 1);
    T_OK(shmstore_put(s, "keep", NULL, buf, 100 * KiB, 0));

    /* Too big for the store whatever else it holds. */
    fill_pattern(buf, 8 * MiB, 2);
    T_ASSERT_RC(shmstore_put(s, "keep", NULL, buf, 8 * MiB, 0), -ENOSPC);
    const char *msg = shmstore_errmsg();
    print_message("ENOSPC message: %s\n", msg);
    assert_non_null(strstr(msg, name)); /* names the store */

    /* Fill the store with 256 KiB values until it is full. */
    int n_fill = 0, rc = 0;
    char obj[64];
    for (; n_fill < 64; n_fill++) {
        snprintf(obj, sizeof(obj), "fill/%d", n_fill);
        fill_pattern(buf, 256 * KiB, (uint32_t)(100 + n_fill));
        rc = shmstore_put(s, obj, NULL, buf, 256 * KiB, 0);
        if (rc != 0)
            break;
    }
    T_ASSERT_RC(rc, -ENOSPC);
    assert_non_null(strstr(shmstore_errmsg(), name));
    assert_true(n_fill >= 4); /* a 4 MiB store holds several 256 KiB values */
    shmstore_stat_t st = stat_of(s);
    assert_true(st.committed <= st.capacity);
    t_assert_clean(s);

    /* A bigger update of "keep" does not fit: -ENOSPC, and the old version is intact. */
    fill_pattern(buf, 1 * MiB, 3);
    T_ASSERT_RC(shmstore_put(s, "keep", NULL, buf, 1 * MiB, 0), -ENOSPC);
    size_t len = 0;
    uint64_t ver = 0;
    T_OK(shmstore_get(s, "keep", NULL, buf, 8 * MiB, &len, &ver));
    assert_int_equal(len, 100 * KiB);
    assert_int_equal(ver, 1);
    assert_true(check_pattern(buf, len, 1));
    /* Same through reserve. */
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "keep", 0, &v));
    void *p = NULL;
    T_ASSERT_RC(shmstore_value_reserve(v, NULL, 1 * MiB, 0, &p), -ENOSPC);
    assert_null(p);
    /* ... and a failed reserve left no writer lock behind: a small put works. */
    T_OK(shmstore_value_put(v, NULL, "x", 1, 0));
    T_OK(shmstore_value_version(v, &ver));
    assert_int_equal(ver, 2);
    shmstore_value_close(v);
    t_assert_clean(s);

    /* Every fill value is intact. */
    for (int i = 0; i < n_fill; i++) {
        snprintf(obj, sizeof(obj), "fill/%d", i);
        T_OK(shmstore_get(s, obj, NULL, buf, 8 * MiB, &len, NULL));
        assert_int_equal(len, 256 * KiB);
        assert_true(check_pattern(buf, len, (uint32_t)(100 + i)));
    }

    /* Free the space: it is reusable, for the big update and as many fill values. */
    for (int i = 0; i < n_fill; i++) {
        snprintf(obj, sizeof(obj), "fill/%d", i);
        T_OK(shmstore_delete(s, obj));
    }
    /* The put that failed on a new name may or may not have left an empty object. */
    snprintf(obj, sizeof(obj), "fill/%d", n_fill);
    rc = shmstore_delete(s, obj);
    assert_true(rc == 0 || rc == -ENOENT);
    t_assert_clean(s);

    fill_pattern(buf, 1 * MiB, 4);
    T_OK(shmstore_put(s, "keep", NULL, buf, 1 * MiB, 0));
    T_OK(shmstore_get(s, "keep", NULL, buf, 8 * MiB, &len, &ver));
    assert_int_equal(len, 1 * MiB);
    assert_true(check_pattern(buf, len, 4));
    /* A value keeps its rotation blocks: deleting it gives back its 1 MiB block too. */
    T_OK(shmstore_delete(s, "keep"));
    t_assert_clean(s);

    int n_refill = 0;
    for (; n_refill < 64; n_refill++) {
        snprintf(obj, sizeof(obj), "refill/%d", n_refill);
        fill_pattern(buf, 256 * KiB, (uint32_t)n_refill);
        rc = shmstore_put(s, obj, NULL, buf, 256 * KiB, 0);
        if (rc != 0)
            break;
    }
    T_ASSERT_RC(rc, -ENOSPC);
    print_message("filled %d then %d values of 256 KiB\n", n_fill, n_refill);
    assert_true(n_refill >= n_fill); /* "keep" (100 KiB) is gone too: at least as many */
    for (int i = 0; i <= n_refill; i++) {
        snprintf(obj, sizeof(obj), "refill/%d", i);
        rc = shmstore_delete(s, obj);
        assert_true(rc == 0 || (i == n_refill && rc == -ENOENT));
    }
    free(buf);
    t_cleanup(s, name);
}

/* Updating a value with the same size over and over reuses its blocks. */
static void test_alloc_steady_state_reuse(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 64 * MiB);
    uint8_t buf[4096];
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "v", SHMSTORE_V_CREATE, &v));
    for (int i = 0; i < 16; i++) {
        fill_pattern(buf, sizeof(buf), (uint32_t)i);
        T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));
    }
    shmstore_stat_t st0 = stat_of(s);
    for (int i = 0; i < 2000; i++) {
        fill_pattern(buf, sizeof(buf), (uint32_t)i);
        T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));
    }
    shmstore_stat_t st1 = stat_of(s);
    assert_int_equal(st1.used, st0.used);
    assert_int_equal(st1.n_blocks, st0.n_blocks);
    assert_int_equal(st1.committed, st0.committed);
    shmstore_value_close(v);
    t_cleanup(s, name);
}

/* Alternating small and large versions does not leak. */
static void test_alloc_resize_no_leak(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 64 * MiB);
    uint8_t *buf = malloc(300 * KiB);
    assert_non_null(buf);
    const size_t sizes[] = {1, 100 * KiB, 64, 300 * KiB, 0, 5000};
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "v", SHMSTORE_V_CREATE, &v));
    shmstore_stat_t st_after_warmup = {0};
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            fill_pattern(buf, sizes[i], (uint32_t)(round * 7 + (int)i));
            T_OK(shmstore_value_put(v, NULL, buf, sizes[i], 0));
            shmstore_view_t view;
            T_OK(shmstore_value_view(v, &view));
            assert_int_equal(view.len, sizes[i]);
            assert_true(check_pattern(view.data, view.len, (uint32_t)(round * 7 + (int)i)));
            shmstore_view_release(&view);
        }
        if (round == 5)
            st_after_warmup = stat_of(s);
    }
    shmstore_stat_t st = stat_of(s);
    /* The value holds at most VAL_ROT version blocks of at most 300 KiB each. */
    assert_true(st.used <= st_after_warmup.used + 4 * 301 * KiB);
    assert_true(st.n_blocks <= st_after_warmup.n_blocks + 4);
    shmstore_value_close(v);
    T_OK(shmstore_delete(s, "v"));
    free(buf);
    t_cleanup(s, name);
}

/* Many small blocks freed out of order coalesce: one large value fits afterwards. */
static void test_alloc_coalesce(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 8 * MiB);
    char obj[32];
    uint8_t small[1000];
    memset(small, 1, sizeof(small));
    int n = 0, rc = 0;
    for (; n < 100000; n++) {
        snprintf(obj, sizeof(obj), "s%d", n);
        rc = shmstore_put(s, obj, NULL, small, sizeof(small), 0);
        if (rc != 0)
            break;
    }
    T_ASSERT_RC(rc, -ENOSPC);
    /* Delete the even ones, then the odd ones. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = pass; i < n; i += 2) {
            snprintf(obj, sizeof(obj), "s%d", i);
            T_OK(shmstore_delete(s, obj));
        }
        t_assert_clean(s);
    }
    snprintf(obj, sizeof(obj), "s%d", n);
    rc = shmstore_delete(s, obj);
    assert_true(rc == 0 || rc == -ENOENT);
    uint8_t *big = malloc(4 * MiB);
    assert_non_null(big);
    fill_pattern(big, 4 * MiB, 9);
    T_OK(shmstore_put(s, "big", NULL, big, 4 * MiB, 0));
    free(big);
    t_cleanup(s, name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_used_returns_to_baseline),
        cmocka_unit_test(test_alloc_view_alignment),
        cmocka_unit_test(test_alloc_enospc_loses_nothing),
        cmocka_unit_test(test_alloc_steady_state_reuse),
        cmocka_unit_test(test_alloc_resize_no_leak),
        cmocka_unit_test(test_alloc_coalesce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
