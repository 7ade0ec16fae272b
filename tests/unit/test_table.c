/* test_table.c - tables: schema and layout, append/get/get_range/gather/write, the ring
 * (wrap-around), uniform and prioritized sampling (statistical tests with fixed seeds),
 * deletion, every error, threads and processes appending checksummed records while
 * others sample them, and a table of 10^6 records with constant fds and mappings.
 * SIGKILL trials are in tests/crash/test_crash_table.c. */
#include "test.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../mp/table_payload.h"

#define MiB (1024ull * 1024ull)
#define DATA_LEN 40u /* tag + data + sum = 56 bytes: one 64-byte slot with its header */

struct fixture {
    char name[128];
    shmstore_t *s;
    shmstore_table_t *t; /* "t": 16 checksummed records */
};

/* Open (or create) table `name` of `cap` records of the fixture's schema. */
static int open_table_rc(shmstore_t *s, const char *name, uint64_t cap, shmstore_table_t **t)
{
    shmstore_table_field_t f[3];
    tp_schema(f, DATA_LEN);
    shmstore_table_options_t o = {.capacity = cap, .n_fields = 3, .fields = f};
    return shmstore_table_open(s, name, SHMSTORE_T_CREATE, &o, t);
}

static shmstore_table_t *open_table(shmstore_t *s, const char *name, uint64_t cap,
                                    uint64_t data_len, uint32_t flags)
{
    shmstore_table_field_t f[3];
    tp_schema(f, data_len);
    shmstore_table_options_t o = {.capacity = cap, .n_fields = 3, .flags = flags, .fields = f};
    shmstore_table_t *t = NULL;
    T_OK(shmstore_table_open(s, name, SHMSTORE_T_CREATE | SHMSTORE_T_EXCL, &o, &t));
    return t;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    t_store_name(f->name, sizeof(f->name));
    f->s = t_open_new(f->name, 64 * MiB);
    f->t = open_table(f->s, "t", 16, DATA_LEN, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    shmstore_table_close(f->t);
    t_cleanup(f->s, f->name);
    free(f);
    return 0;
}

/* Columns for up to `n` checksummed records. */
struct rows {
    size_t n;
    uint64_t data_len;
    uint64_t *tags, *sums;
    uint8_t *data;
    void *cols[3];
};

static void rows_init(struct rows *r, size_t n, uint64_t data_len)
{
    r->n = n;
    r->data_len = data_len;
    r->tags = calloc(n, 8);
    r->sums = calloc(n, 8);
    r->data = calloc(n, data_len);
    assert_true(r->tags && r->sums && r->data);
    r->cols[0] = r->tags;
    r->cols[1] = r->data;
    r->cols[2] = r->sums;
}

static void rows_free(struct rows *r)
{
    free(r->tags);
    free(r->sums);
    free(r->data);
}

static void rows_fill(struct rows *r, size_t n, uint64_t tag0)
{
    for (size_t j = 0; j < n; j++)
        tp_fill(r->tags, r->data, r->sums, r->data_len, j, tag0 + j);
}

static uint64_t append_tags(shmstore_table_t *t, struct rows *r, size_t n, uint64_t tag0)
{
    uint64_t first = ~0ull;
    rows_fill(r, n, tag0);
    T_OK(shmstore_table_append(t, (const void *const *)r->cols, n, &first));
    return first;
}

static void counts(shmstore_table_t *t, uint64_t total, uint64_t count)
{
    uint64_t a = ~0ull, b = ~0ull;
    T_OK(shmstore_table_count(t, &a, &b));
    assert_int_equal(a, total);
    assert_int_equal(b, count);
}

/* ---- schema ---------------------------------------------------------------------------- */

static void test_table_schema_layout(void **state)
{
    struct fixture *f = *state;
    const shmstore_table_field_t *fl;
    uint32_t n;
    shmstore_table_fields(f->t, &fl, &n);
    assert_int_equal(n, 3);
    assert_string_equal(fl[0].name, "tag");
    assert_int_equal(fl[0].size, 8);
    assert_int_equal(fl[0].offset, 16); /* after the 16-byte seq + id header */
    assert_int_equal(fl[1].size, DATA_LEN);
    assert_int_equal(fl[2].offset % 8, 0);
    assert_int_equal(shmstore_table_capacity(f->t), 16);

    /* The seed's record: 4 ints, 4x84x84 frames: frames start on a cache line. */
    shmstore_table_field_t g[3];
    memset(g, 0, sizeof g);
    strcpy(g[0].name, "actor_id");
    strcpy(g[0].dtype, "<i4");
    strcpy(g[1].name, "state");
    strcpy(g[1].dtype, "|u1");
    g[1].ndim = 3;
    g[1].shape[0] = 4;
    g[1].shape[1] = 84;
    g[1].shape[2] = 84;
    strcpy(g[2].name, "done");
    strcpy(g[2].dtype, "|b1");
    shmstore_table_options_t o = {.capacity = 4, .n_fields = 3, .fields = g};
    shmstore_table_t *t;
    T_OK(shmstore_table_open(f->s, "frames", SHMSTORE_T_CREATE, &o, &t));
    shmstore_table_fields(t, &fl, &n);
    assert_int_equal(fl[1].offset % 64, 0);
    assert_int_equal(fl[1].size, 4 * 84 * 84);
    assert_int_equal(fl[2].offset, fl[1].offset + fl[1].size);
    shmstore_obj_info_t info;
    T_OK(shmstore_table_info(t, &info));
    assert_int_equal(info.kind, SHMSTORE_KIND_TABLE);
    assert_int_equal(info.capacity, 4);
    assert_int_equal(info.record_size, 4 + 4 * 84 * 84 + 1);
    assert_int_equal(info.n_fields, 3);
    assert_int_equal(info.count, 0);
    assert_true(info.footprint >= 4 * (4 * 84 * 84 + 64));
    assert_string_equal(shmstore_kind_name(SHMSTORE_KIND_TABLE), "table");
    /* Opened again without options: the creator's schema. */
    shmstore_table_t *t2;
    T_OK(shmstore_table_open(f->s, "frames", 0, NULL, &t2));
    shmstore_table_fields(t2, &fl, &n);
    assert_int_equal(n, 3);
    assert_string_equal(fl[1].name, "state");
    shmstore_table_close(t2);
    shmstore_table_close(t);
    T_OK(shmstore_delete(f->s, "frames"));
}

static void test_table_open_errors(void **state)
{
    struct fixture *f = *state;
    shmstore_table_t *t = NULL;
    shmstore_table_field_t g[3];
    shmstore_stat_t st0, st1;
    T_OK(shmstore_stat(f->s, &st0));
    tp_schema(g, 8);
    shmstore_table_options_t o = {.capacity = 8, .n_fields = 3, .fields = g};
    T_ASSERT_RC(shmstore_table_open(f->s, "nope", 0, NULL, &t), -ENOENT);
    T_ASSERT_RC(shmstore_table_open(f->s, "t", SHMSTORE_T_CREATE | SHMSTORE_T_EXCL, &o, &t),
                -EEXIST);
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, NULL, &t), -EINVAL);
    o.n_fields = 0;
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    o.n_fields = 3;
    o.capacity = 0;
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    o.capacity = 8;
    o.flags = 0x80;
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    o.flags = 0;
    strcpy(g[2].name, "tag"); /* duplicate name */
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    strcpy(g[2].name, "");
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    strcpy(g[2].name, "sum");
    strcpy(g[2].dtype, "<q9");
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), SHMSTORE_EDTYPE);
    strcpy(g[2].dtype, "<u8");
    g[1].ndim = 9;
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    g[1].ndim = 1;
    g[1].shape[0] = 0;
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    /* Does not fit the 64 MiB store: ENOSPC, nothing created. */
    g[1].shape[0] = 1 << 20;
    o.capacity = 100;
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -ENOSPC);
    g[1].shape[0] = 1 << 10;
    o.capacity = 60000; /* 61 MB: smaller than the store, larger than its free space */
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -ENOSPC);
    o.capacity = SHMSTORE_TABLE_CAPACITY_MAX + 1;
    T_ASSERT_RC(shmstore_table_open(f->s, "x", SHMSTORE_T_CREATE, &o, &t), -EINVAL);
    T_ASSERT_RC(shmstore_table_open(f->s, "x", 0, NULL, &t), -ENOENT);
    T_OK(shmstore_stat(f->s, &st1));
    assert_int_equal(st1.n_objects, st0.n_objects);
    assert_int_equal(st1.used, st0.used);
    /* Another kind under that name. */
    shmstore_queue_t *q;
    T_OK(shmstore_queue_open(f->s, "q", SHMSTORE_Q_CREATE, NULL, &q));
    g[1].shape[0] = 8;
    o.capacity = 8;
    T_ASSERT_RC(shmstore_table_open(f->s, "q", SHMSTORE_T_CREATE, &o, &t), SHMSTORE_EKIND);
    T_ASSERT_RC(shmstore_queue_open(f->s, "t", 0, NULL, &q), SHMSTORE_EKIND);
    shmstore_queue_close(q);
    T_OK(shmstore_delete(f->s, "q"));
}

/* ---- append, get, write ---------------------------------------------------------------- */

static void test_table_append_get(void **state)
{
    struct fixture *f = *state;
    struct rows w, r;
    rows_init(&w, 8, DATA_LEN);
    rows_init(&r, 8, DATA_LEN);
    counts(f->t, 0, 0);
    assert_int_equal(append_tags(f->t, &w, 1, 100), 0);
    assert_int_equal(append_tags(f->t, &w, 5, 200), 1);
    counts(f->t, 6, 6);
    T_OK(shmstore_table_get(f->t, 0, r.cols));
    assert_int_equal(r.tags[0], 100);
    assert_true(tp_ok(r.tags, r.data, r.sums, DATA_LEN, 0));
    T_OK(shmstore_table_get_range(f->t, 1, 5, r.cols));
    for (size_t j = 0; j < 5; j++) {
        assert_int_equal(r.tags[j], 200 + j);
        assert_true(tp_ok(r.tags, r.data, r.sums, DATA_LEN, j));
    }
    uint64_t idx[4] = {5, 0, 3, 3}, failed = 0;
    T_OK(shmstore_table_gather(f->t, idx, 4, r.cols, &failed));
    assert_int_equal(r.tags[0], 204);
    assert_int_equal(r.tags[1], 100);
    assert_int_equal(r.tags[2], 202);
    assert_int_equal(r.tags[3], 202);
    /* A NULL column is skipped on reads. */
    void *only_tag[3] = {r.tags, NULL, NULL};
    T_OK(shmstore_table_get(f->t, 2, only_tag));
    assert_int_equal(r.tags[0], 201);
    /* Not appended yet. */
    T_ASSERT_RC(shmstore_table_get(f->t, 6, r.cols), -ENOENT);
    T_ASSERT_RC(shmstore_table_get_range(f->t, 4, 3, r.cols), -ENOENT);
    idx[2] = 99;
    T_ASSERT_RC(shmstore_table_gather(f->t, idx, 4, r.cols, &failed), -ENOENT);
    assert_int_equal(failed, 99);
    T_ASSERT_RC(shmstore_table_get(f->t, UINT64_MAX, r.cols), -ENOENT);
    /* In place. */
    rows_fill(&w, 1, 777);
    T_OK(shmstore_table_write(f->t, 3, 1, (const void *const *)w.cols));
    T_OK(shmstore_table_get(f->t, 3, r.cols));
    assert_int_equal(r.tags[0], 777);
    assert_true(tp_ok(r.tags, r.data, r.sums, DATA_LEN, 0));
    T_ASSERT_RC(shmstore_table_write(f->t, 6, 1, (const void *const *)w.cols), -ENOENT);
    counts(f->t, 6, 6);
    /* Bad input: nothing written. */
    const void *missing[3] = {w.tags, NULL, w.sums};
    T_ASSERT_RC(shmstore_table_append(f->t, missing, 1, NULL), -EINVAL);
    T_ASSERT_RC(shmstore_table_append(f->t, NULL, 1, NULL), -EINVAL);
    T_ASSERT_RC(shmstore_table_append(f->t, (const void *const *)w.cols, 0, NULL), -EINVAL);
    T_ASSERT_RC(shmstore_table_append(f->t, (const void *const *)w.cols, 17, NULL), -EINVAL);
    T_ASSERT_RC(shmstore_table_write(f->t, 1, 1, missing), -EINVAL);
    T_ASSERT_RC(shmstore_table_get(f->t, 0, NULL), -EINVAL);
    counts(f->t, 6, 6);
    rows_free(&w);
    rows_free(&r);
}

static void test_table_wraparound(void **state)
{
    struct fixture *f = *state;
    struct rows w, r;
    rows_init(&w, 16, DATA_LEN);
    rows_init(&r, 16, DATA_LEN);
    uint64_t next = 0;
    for (int round = 0; round < 10; round++) { /* batches of 1..7: every phase of the ring */
        size_t n = (size_t)round % 7 + 1;
        assert_int_equal(append_tags(f->t, &w, n, 1000 + next), next);
        next += n;
    }
    counts(f->t, next, 16);
    shmstore_obj_info_t info;
    T_OK(shmstore_table_info(f->t, &info));
    assert_int_equal(info.next_index, next);
    assert_int_equal(info.first_index, next - 16);
    assert_int_equal(info.count, 16);
    assert_int_equal(info.size, 16 * (16 + DATA_LEN));
    for (uint64_t i = 0; i < next; i++) {
        int rc = shmstore_table_get(f->t, i, r.cols);
        if (i < next - 16) {
            T_ASSERT_RC(rc, -ENOENT); /* overwritten */
        } else {
            T_OK(rc);
            assert_int_equal(r.tags[0], 1000 + i);
            assert_true(tp_ok(r.tags, r.data, r.sums, DATA_LEN, 0));
        }
    }
    T_OK(shmstore_table_get_range(f->t, next - 16, 16, r.cols));
    T_ASSERT_RC(shmstore_table_write(f->t, next - 17, 1, (const void *const *)w.cols), -ENOENT);
    /* A batch as large as the table replaces all of it. */
    assert_int_equal(append_tags(f->t, &w, 16, 5000), next);
    T_OK(shmstore_table_get_range(f->t, next, 16, r.cols));
    for (size_t j = 0; j < 16; j++)
        assert_int_equal(r.tags[j], 5000 + j);
    rows_free(&w);
    rows_free(&r);
}

static void test_table_advance_and_write_range(void **state)
{
    struct fixture *f = *state;
    struct rows w, r;
    rows_init(&w, 16, DATA_LEN);
    rows_init(&r, 16, DATA_LEN);
    uint64_t first = 99, idx[16], rng = 5;
    T_ASSERT_RC(shmstore_table_advance(f->t, 0, NULL), -EINVAL);
    T_OK(shmstore_table_advance(f->t, 16, &first)); /* a fixed array of 16 records */
    assert_int_equal(first, 0);
    counts(f->t, 16, 0); /* indices taken, no record yet: len counts valid records */
    T_ASSERT_RC(shmstore_table_get(f->t, 3, r.cols), -ENOENT); /* not written yet */
    T_ASSERT_RC(shmstore_table_sample(f->t, 1, 0, &rng, r.cols, idx, NULL), -EAGAIN);
    /* Fill any index, in any order, then several in one call. */
    rows_fill(&w, 1, 500);
    T_OK(shmstore_table_write(f->t, 9, 1, (const void *const *)w.cols));
    counts(f->t, 16, 1);
    T_OK(shmstore_table_write(f->t, 9, 1, (const void *const *)w.cols));
    counts(f->t, 16, 1); /* written again in place: still one */
    T_OK(shmstore_table_get(f->t, 9, r.cols));
    assert_int_equal(r.tags[0], 500);
    T_OK(shmstore_table_sample(f->t, 16, 0, &rng, r.cols, idx, NULL));
    for (size_t j = 0; j < 16; j++)
        assert_int_equal(idx[j], 9); /* the only record written */
    rows_fill(&w, 4, 600);
    T_OK(shmstore_table_write(f->t, 12, 4, (const void *const *)w.cols));
    T_OK(shmstore_table_get_range(f->t, 12, 4, r.cols));
    for (size_t j = 0; j < 4; j++)
        assert_int_equal(r.tags[j], 600 + j);
    counts(f->t, 16, 5);
    T_ASSERT_RC(shmstore_table_write(f->t, 14, 4, (const void *const *)w.cols), -ENOENT);
    T_ASSERT_RC(shmstore_table_write(f->t, 16, 1, (const void *const *)w.cols), -ENOENT);
    T_ASSERT_RC(shmstore_table_write(f->t, 0, 0, (const void *const *)w.cols), -EINVAL);
    /* Appends go on after the advanced indices, replacing slot 0 on. */
    assert_int_equal(append_tags(f->t, &w, 2, 700), 16);
    counts(f->t, 18, 7); /* two fresh slots (0 and 1) */
    T_OK(shmstore_table_advance(f->t, 14, NULL)); /* tickets 18..31: slots 2..15 */
    counts(f->t, 32, 7); /* the old records 9 and 12..15 still fill their slots */
    T_ASSERT_RC(shmstore_table_get(f->t, 0, r.cols), -ENOENT);
    T_OK(shmstore_table_get(f->t, 17, r.cols));
    assert_int_equal(r.tags[0], 701);
    rows_free(&w);
    rows_free(&r);
}

/* ---- sampling -------------------------------------------------------------------------- */

static void test_table_sample_uniform(void **state)
{
    struct fixture *f = *state;
    struct rows w, r;
    enum { K = 64 };
    rows_init(&w, 16, DATA_LEN);
    rows_init(&r, K, DATA_LEN);
    uint64_t idx[K], rng = 42;
    double p[K];
    T_ASSERT_RC(shmstore_table_sample(f->t, 4, 0, &rng, r.cols, idx, NULL), -ENOENT);
    T_ASSERT_RC(shmstore_table_sample(f->t, 4, SHMSTORE_SAMPLE_PRIORITIZED, NULL, r.cols, idx,
                                      NULL), -EINVAL);
    append_tags(f->t, &w, 3, 10);
    /* k > the records: with replacement. */
    T_OK(shmstore_table_sample(f->t, K, 0, &rng, r.cols, idx, p));
    for (size_t j = 0; j < K; j++) {
        assert_true(idx[j] < 3);
        assert_int_equal(r.tags[j], 10 + idx[j]);
        assert_true(tp_ok(r.tags, r.data, r.sums, DATA_LEN, j));
        assert_true(fabs(p[j] - 1.0 / 3) < 1e-12);
    }
    /* The same seed draws the same records; the handle's own generator works too. */
    uint64_t a = 7, b = 7, ia[K], ib[K];
    T_OK(shmstore_table_sample(f->t, K, 0, &a, r.cols, ia, NULL));
    T_OK(shmstore_table_sample(f->t, K, 0, &b, r.cols, ib, NULL));
    assert_memory_equal(ia, ib, sizeof ia);
    assert_int_equal(a, b);
    T_OK(shmstore_table_sample(f->t, K, 0, NULL, r.cols, NULL, NULL));
    /* Uniform over a full ring: chi-square over 16 cells, fixed seed (deterministic). */
    append_tags(f->t, &w, 16, 100);
    uint64_t hist[16] = {0}, total;
    T_OK(shmstore_table_count(f->t, &total, NULL));
    rng = 12345;
    for (int round = 0; round < 1000; round++) {
        T_OK(shmstore_table_sample(f->t, K, 0, &rng, r.cols, idx, NULL));
        for (size_t j = 0; j < K; j++) {
            assert_true(idx[j] >= total - 16 && idx[j] < total);
            hist[idx[j] % 16]++;
        }
    }
    double chi = 0, e = 1000.0 * K / 16;
    for (int i = 0; i < 16; i++)
        chi += (hist[i] - e) * (hist[i] - e) / e;
    assert_true(chi < 40.0); /* 15 degrees of freedom: P(chi2 > 40) ~ 5e-4 */
    rows_free(&w);
    rows_free(&r);
}

static void test_table_prioritized(void **state)
{
    struct fixture *f = *state;
    enum { N = 10, K = 100, ROUNDS = 2000 };
    shmstore_table_t *t = open_table(f->s, "prio", N, 8, SHMSTORE_TABLE_PRIORITIZED);
    struct rows w, r;
    rows_init(&w, N, 8);
    rows_init(&r, K, 8);
    uint64_t idx[K], rng = 2026, ind[N];
    double p[K], pr[N], sum = 0;
    append_tags(t, &w, N, 0);
    /* New records all have the same priority: uniform. */
    T_OK(shmstore_table_sample(t, K, SHMSTORE_SAMPLE_PRIORITIZED, &rng, r.cols, idx, p));
    for (size_t j = 0; j < K; j++)
        assert_true(fabs(p[j] - 0.1) < 1e-9);
    for (int i = 0; i < N; i++) {
        ind[i] = (uint64_t)i;
        pr[i] = i == 3 ? 0.0 : (double)(i + 1) * 0.5;
        sum += pr[i];
    }
    T_OK(shmstore_table_set_priorities(t, ind, pr, N));
    uint64_t hist[N] = {0};
    for (int round = 0; round < ROUNDS; round++) {
        T_OK(shmstore_table_sample(t, K, SHMSTORE_SAMPLE_PRIORITIZED, &rng, r.cols, idx, p));
        for (size_t j = 0; j < K; j++) {
            assert_true(idx[j] < N);
            assert_int_equal(r.tags[j], idx[j]);
            assert_true(tp_ok(r.tags, r.data, r.sums, 8, j));
            assert_true(fabs(p[j] - pr[idx[j]] / sum) < 1e-9);
            hist[idx[j]]++;
        }
    }
    /* Each frequency within 6 standard deviations of its probability (fixed seed: this
     * is deterministic; the bound says the generator and the tree are right). */
    double n = (double)K * ROUNDS;
    for (int i = 0; i < N; i++) {
        double q = pr[i] / sum, sd = sqrt(n * q * (1 - q));
        assert_true(fabs((double)hist[i] - n * q) <= 6 * sd + 1e-9);
    }
    assert_int_equal(hist[3], 0); /* priority 0: never drawn */
    /* Errors: nothing set. */
    double bad[2] = {1.0, -1.0};
    T_ASSERT_RC(shmstore_table_set_priorities(t, ind, bad, 2), -EINVAL);
    bad[1] = NAN;
    T_ASSERT_RC(shmstore_table_set_priorities(t, ind, bad, 2), -EINVAL);
    bad[1] = shmstore_table_priority_max(t) * 2;
    T_ASSERT_RC(shmstore_table_set_priorities(t, ind, bad, 2), -EINVAL);
    T_ASSERT_RC(shmstore_table_set_priorities(f->t, ind, pr, 1), -EINVAL);
    /* Indices not in the table are skipped. */
    uint64_t gone[1] = {N + 5};
    T_OK(shmstore_table_set_priorities(t, gone, pr, 1));
    /* All zero: nothing to draw. */
    double zero[N] = {0};
    T_OK(shmstore_table_set_priorities(t, ind, zero, N));
    T_ASSERT_RC(shmstore_table_sample(t, 1, SHMSTORE_SAMPLE_PRIORITIZED, &rng, r.cols, idx, p),
                -ENOENT);
    /* A new record gets the largest priority set so far (5.0): it is the only one. */
    append_tags(t, &w, 1, 99);
    T_OK(shmstore_table_sample(t, 8, SHMSTORE_SAMPLE_PRIORITIZED, &rng, r.cols, idx, p));
    for (size_t j = 0; j < 8; j++) {
        assert_int_equal(idx[j], N);
        assert_true(fabs(p[j] - 1.0) < 1e-12);
    }
    shmstore_table_close(t);
    T_OK(shmstore_delete(f->s, "prio"));
    rows_free(&w);
    rows_free(&r);
}

/* ---- deletion ---------------------------------------------------------------------------- */

static void test_table_delete(void **state)
{
    struct fixture *f = *state;
    shmstore_stat_t st0, st1;
    struct rows w;
    rows_init(&w, 4, 1000);
    T_OK(shmstore_stat(f->s, &st0));
    shmstore_table_t *t = open_table(f->s, "d", 1000, 1000, SHMSTORE_TABLE_PRIORITIZED);
    append_tags(t, &w, 4, 0);
    T_OK(shmstore_delete(f->s, "d"));
    T_ASSERT_RC(shmstore_table_append(t, (const void *const *)w.cols, 1, NULL), -ESTALE);
    T_ASSERT_RC(shmstore_table_get(t, 0, w.cols), -ESTALE);
    T_ASSERT_RC(shmstore_table_count(t, NULL, NULL), -ESTALE);
    T_ASSERT_RC(shmstore_table_open(f->s, "d", 0, NULL, &t), -ENOENT);
    T_OK(shmstore_stat(f->s, &st1));
    assert_true(st1.used > st0.used); /* the handle keeps the blocks */
    shmstore_table_close(t);
    T_OK(shmstore_stat(f->s, &st1));
    assert_int_equal(st1.used, st0.used);
    shmstore_table_close(NULL);
    rows_free(&w);
}

/* ---- concurrency: threads --------------------------------------------------------------- */

enum { W_THREADS = 4, S_THREADS = 2, PER_WRITER = 20000, BATCH_MAX = 7, SAMPLE_K = 32 };

struct conc {
    shmstore_table_t *t;
    uint64_t data_len;
    _Atomic int writers_done; /* samplers: set when the writers are joined */
    _Atomic uint64_t torn, bad_index, sampled, appended;
    int id;
};

static void *writer_thread(void *arg)
{
    struct conc *c = arg;
    int id = c->id;
    struct rows w;
    rows_init(&w, BATCH_MAX, c->data_len);
    uint64_t n = 0, rng = (uint64_t)id * 7919;
    while (n < PER_WRITER) {
        size_t b = (size_t)(tp_mix(rng++) % BATCH_MAX) + 1;
        if (b > PER_WRITER - n)
            b = PER_WRITER - n;
        rows_fill(&w, b, (uint64_t)id << 40 | n);
        if (shmstore_table_append(c->t, (const void *const *)w.cols, b, NULL) == 0) {
            n += b;
            atomic_fetch_add(&c->appended, b);
        }
    }
    rows_free(&w);
    return NULL;
}

static void *sampler_thread(void *arg)
{
    struct conc *c = arg;
    struct rows r;
    uint64_t idx[SAMPLE_K], rng = (uint64_t)c->id, total;
    rows_init(&r, SAMPLE_K, c->data_len);
    while (atomic_load(&c->writers_done) < W_THREADS) {
        int rc = shmstore_table_sample(c->t, SAMPLE_K, 0, &rng, r.cols, idx, NULL);
        if (rc == -ENOENT)
            continue;
        if (rc != 0 || shmstore_table_count(c->t, &total, NULL) != 0) {
            atomic_fetch_add(&c->bad_index, 1);
            continue;
        }
        for (size_t j = 0; j < SAMPLE_K; j++) {
            if (!tp_ok(r.tags, r.data, r.sums, c->data_len, j))
                atomic_fetch_add(&c->torn, 1);
            if (idx[j] >= total)
                atomic_fetch_add(&c->bad_index, 1);
        }
        atomic_fetch_add(&c->sampled, SAMPLE_K);
    }
    rows_free(&r);
    return NULL;
}

static void run_threads(shmstore_table_t *t, uint64_t data_len)
{
    pthread_t th[W_THREADS + S_THREADS];
    struct conc c[W_THREADS];
    for (int i = 0; i < W_THREADS; i++)
        c[i] = (struct conc){.t = t, .data_len = data_len, .id = i};
    for (int i = 0; i < W_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer_thread, &c[i]), 0);
    struct conc sam[S_THREADS];
    for (int i = 0; i < S_THREADS; i++) {
        sam[i] = (struct conc){.t = t, .data_len = data_len, .id = 100 + i};
        assert_int_equal(pthread_create(&th[W_THREADS + i], NULL, sampler_thread, &sam[i]), 0);
    }
    for (int i = 0; i < W_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < S_THREADS; i++)
        atomic_store(&sam[i].writers_done, W_THREADS);
    uint64_t sampled = 0;
    for (int i = 0; i < S_THREADS; i++) {
        pthread_join(th[W_THREADS + i], NULL);
        assert_int_equal(atomic_load(&sam[i].torn), 0);
        assert_int_equal(atomic_load(&sam[i].bad_index), 0);
        sampled += atomic_load(&sam[i].sampled);
    }
    uint64_t appended = 0;
    for (int i = 0; i < W_THREADS; i++)
        appended += atomic_load(&c[i].appended);
    assert_int_equal(appended, (uint64_t)W_THREADS * PER_WRITER);
    print_message("[  INFO    ] %d writers appended %llu records while %d samplers drew %llu\n",
                  W_THREADS, (unsigned long long)appended, S_THREADS,
                  (unsigned long long)sampled);
}

static void check_after(shmstore_table_t *t, uint64_t cap, uint64_t data_len)
{
    uint64_t total, count;
    T_OK(shmstore_table_count(t, &total, &count));
    assert_int_equal(total, (uint64_t)W_THREADS * PER_WRITER);
    assert_int_equal(count, cap < total ? cap : total);
    /* Every record left is whole and is the one its index says. */
    struct rows r;
    rows_init(&r, 1, data_len);
    for (uint64_t i = total - count; i < total; i++) {
        T_OK(shmstore_table_get(t, i, r.cols));
        assert_true(tp_ok(r.tags, r.data, r.sums, data_len, 0));
    }
    rows_free(&r);
}

static void test_table_threads(void **state)
{
    struct fixture *f = *state;
    /* A small ring (writers of consecutive laps meet on slots) and one that holds all. */
    shmstore_table_t *small = open_table(f->s, "small", 64, 200, 0);
    run_threads(small, 200);
    check_after(small, 64, 200);
    shmstore_table_close(small);
    shmstore_table_t *big = open_table(f->s, "big", W_THREADS * PER_WRITER, 24, 0);
    run_threads(big, 24);
    check_after(big, W_THREADS * PER_WRITER, 24);
    shmstore_table_close(big);
}

/* ---- concurrency: processes --------------------------------------------------------------- */

struct mp {
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    _Atomic int writers_left;
    _Atomic uint64_t torn, bad, sampled;
};

/* In a child: attach to the store and open table "mp". */
static shmstore_table_t *mp_attach(struct mp *m, shmstore_t **s)
{
    shmstore_table_t *t;
    T_CHILD_RC(shmstore_open(m->store, 0, NULL, s), 0);
    T_CHILD_RC(shmstore_table_open(*s, "mp", 0, NULL, &t), 0);
    return t;
}

static void mp_writer(void *arg)
{
    struct mp *m = arg;
    shmstore_t *s;
    shmstore_table_t *t = mp_attach(m, &s);
    uint64_t tags[BATCH_MAX], sums[BATCH_MAX];
    uint8_t data[BATCH_MAX * 200];
    struct rows w = {.data_len = 200, .tags = tags, .sums = sums, .data = data,
                     .cols = {tags, data, sums}};
    uint64_t n = 0, id = (uint64_t)getpid();
    while (n < PER_WRITER) {
        size_t b = (size_t)(tp_mix(id + n) % BATCH_MAX) + 1;
        if (b > PER_WRITER - n)
            b = PER_WRITER - n;
        for (size_t j = 0; j < b; j++)
            tp_fill(w.tags, w.data, w.sums, 200, j, id << 32 | (n + j));
        T_CHILD_RC(shmstore_table_append(t, (const void *const *)w.cols, b, NULL), 0);
        n += b;
    }
    atomic_fetch_sub(&m->writers_left, 1);
    shmstore_table_close(t);
    shmstore_close(s);
}

static void mp_sampler(void *arg)
{
    struct mp *m = arg;
    shmstore_t *s;
    shmstore_table_t *t = mp_attach(m, &s);
    uint64_t tags[SAMPLE_K], sums[SAMPLE_K], idx[SAMPLE_K], total;
    uint8_t data[SAMPLE_K * 200];
    void *cols[3] = {tags, data, sums};
    while (atomic_load(&m->writers_left) > 0) {
        int rc = shmstore_table_sample(t, SAMPLE_K, 0, NULL, cols, idx, NULL);
        if (rc == -ENOENT)
            continue;
        T_CHILD_RC(rc, 0);
        T_CHILD_RC(shmstore_table_count(t, &total, NULL), 0);
        for (size_t j = 0; j < SAMPLE_K; j++) {
            if (!tp_ok(tags, data, sums, 200, j))
                atomic_fetch_add(&m->torn, 1);
            if (idx[j] >= total)
                atomic_fetch_add(&m->bad, 1);
        }
        atomic_fetch_add(&m->sampled, SAMPLE_K);
    }
    shmstore_table_close(t);
    shmstore_close(s);
}

static void test_table_processes(void **state)
{
    struct fixture *f = *state;
    struct mp *m = t_shared_alloc(sizeof(*m));
    snprintf(m->store, sizeof m->store, "%s", f->name);
    atomic_store(&m->writers_left, W_THREADS);
    shmstore_table_t *t = open_table(f->s, "mp", 1000, 200, 0);
    pid_t pids[W_THREADS + S_THREADS];
    for (int i = 0; i < S_THREADS; i++)
        pids[W_THREADS + i] = t_fork(mp_sampler, m);
    for (int i = 0; i < W_THREADS; i++)
        pids[i] = t_fork(mp_writer, m);
    for (int i = 0; i < W_THREADS + S_THREADS; i++)
        assert_int_equal(t_wait_child(pids[i], 120000), 0);
    assert_int_equal(atomic_load(&m->torn), 0);
    assert_int_equal(atomic_load(&m->bad), 0);
    uint64_t total, count;
    T_OK(shmstore_table_count(t, &total, &count));
    assert_int_equal(total, (uint64_t)W_THREADS * PER_WRITER);
    assert_int_equal(count, 1000);
    print_message("[  INFO    ] 4 writer processes, 2 samplers drew %llu records\n",
                  (unsigned long long)atomic_load(&m->sampled));
    shmstore_table_close(t);
    t_shared_free(m, sizeof(*m));
}

/* ---- scale ------------------------------------------------------------------------------ */

static void test_table_million_records(void **state)
{
    struct fixture *f = *state;
    enum { N = 1000000, B = 1000 };
    char name[128];
    t_store_name(name, sizeof name);
    shmstore_t *s = t_open_new(name, 256 * MiB);
    long fds = t_count_fds(), maps = t_count_maps(), shared = t_count_shared_maps();
    shmstore_table_t *t = open_table(s, "m", N, DATA_LEN, SHMSTORE_TABLE_PRIORITIZED);
    struct rows w;
    rows_init(&w, B, DATA_LEN);
    for (uint64_t i = 0; i < N + N / 2; i += B)
        append_tags(t, &w, B, i);
    counts(t, N + N / 2, N);
    T_OK(shmstore_table_sample(t, B, 0, NULL, w.cols, NULL, NULL));
    T_OK(shmstore_table_sample(t, B, SHMSTORE_SAMPLE_PRIORITIZED, NULL, w.cols, NULL, NULL));
    for (size_t j = 0; j < B; j++)
        assert_true(tp_ok(w.tags, w.data, w.sums, DATA_LEN, j));
    assert_int_equal(t_count_fds(), fds);
    T_ASSERT_MAPS(maps, shared);
    shmstore_table_close(t);
    rows_free(&w);
    (void)f;
    t_cleanup(s, name);
}

/* ---- creation outside the metadata mutex ------------------------------------------------ */

#include <signal.h>
#include <sys/wait.h>

#define BIG_CAP (1ull << 20) /* 1 Mi slots of 128 bytes: 128 MiB, 32 Ki pages to clear */
/* Room for 9 of them: a freed block is found again only by a smaller request (the
 * allocator's size classes round up), so each try takes fresh space. */
#define BIG_STORE (9 * 128 * MiB + 64 * MiB)

struct create_ctx {
    char store[128];
};

static void create_big_child(void *arg)
{
    struct create_ctx *c = arg;
    shmstore_t *s = NULL;
    shmstore_table_t *t = NULL;
    T_CHILD_RC(shmstore_open(c->store, 0, NULL, &s), 0);
    T_CHILD_RC(open_table_rc(s, "big", BIG_CAP, &t), 0);
    uint64_t total = 1, count = 1;
    T_CHILD_RC(shmstore_table_count(t, &total, &count), 0);
    T_CHILD_CHECK(total == 0 && count == 0);
    shmstore_table_close(t);
    shmstore_close(s);
}

static void put_value_child(void *arg)
{
    struct create_ctx *c = arg;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(c->store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_put(s, "v", NULL, "made while the table is created", 31, 0), 0);
    T_CHILD_RC(shmstore_delete(s, "v"), 0);
    shmstore_close(s);
}

static void open_stuck_child(void *arg)
{
    struct create_ctx *c = arg;
    shmstore_t *s = NULL;
    shmstore_table_t *t = NULL;
    T_CHILD_RC(shmstore_open(c->store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_table_open(s, "big", 0, NULL, &t), -EBUSY); /* creator stopped */
    shmstore_close(s);
}

/* 1 while "big" exists and its creator is still clearing its slots. */
static int initialising(shmstore_t *s)
{
    shmstore_obj_info_t info;
    memset(&info, 0, sizeof info);
    return shmstore_info(s, "big", &info) == 0 && info.table_initialising;
}

/* Start a child creating "big" and stop it (SIGSTOP) while it clears the slots. Returns
 * its pid, or 0 when it finished before it could be caught (the caller tries again). */
static pid_t caught_creating(shmstore_t *s, struct create_ctx *c)
{
    pid_t pid = t_fork(create_big_child, c);
    for (;;) {
        if (initialising(s)) {
            kill(pid, SIGSTOP);
            if (initialising(s))
                return pid;
            kill(pid, SIGCONT);
            break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            pid = 0;
            break;
        }
    }
    if (pid)
        assert_int_equal(t_wait_child(pid, 60000), 0);
    T_OK(shmstore_delete(s, "big"));
    return 0;
}

/* A big table's creation holds the metadata mutex only to allocate its records: while
 * its creator is stopped in the middle of clearing the slot headers, another process
 * creates and deletes a value, and an open of the table gives up with -EBUSY after a
 * second without progress; resumed, the creator finishes and the table works. A creator
 * killed there: the next open finishes the creation, and the store checks clean. */
static void test_table_create_outside_lock(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof name);
    shmstore_t *s = t_open_new(name, BIG_STORE);
    struct create_ctx *c = t_shared_alloc(sizeof(*c));
    snprintf(c->store, sizeof c->store, "%s", name);
        for (int round = 0; round < 2; round++) {
        pid_t pid = 0;
        int tries = 0;
        while (tries < 4 && !pid) {
            tries++;
            pid = caught_creating(s, c);
        }
        assert_true(pid > 0); /* caught mid-creation at least once in 4 tries */
        print_message("[  INFO    ] creator stopped mid-creation at try %d\n", tries);
        assert_int_equal(t_wait_child(t_fork(put_value_child, c), 20000), 0);
        if (round == 0) {
            assert_int_equal(t_wait_child(t_fork(open_stuck_child, c), 20000), 0);
            kill(pid, SIGCONT);
            assert_int_equal(t_wait_child(pid, 60000), 0);
        } else {
            kill(pid, SIGKILL);
            assert_int_equal(t_wait_child(pid, 60000), 128 + SIGKILL);
        }
        shmstore_table_t *t = NULL;
        T_OK(open_table_rc(s, "big", BIG_CAP, &t)); /* round 1: finishes the creation */
        assert_false(initialising(s));
        counts(t, 0, 0);
        struct rows w;
        rows_init(&w, 3, DATA_LEN);
        append_tags(t, &w, 3, 42);
        counts(t, 3, 3);
        T_OK(shmstore_table_get(t, 2, w.cols));
        assert_int_equal(w.tags[0], 44);
        rows_free(&w);
        shmstore_table_close(t);
        t_assert_clean(s);
        T_OK(shmstore_delete(s, "big"));
    }
    t_shared_free(c, sizeof(*c));
    t_cleanup(s, name);
}

/* ---- list / info ------------------------------------------------------------------------ */

static int find_table(const shmstore_obj_info_t *o, void *arg)
{
    if (o->kind == SHMSTORE_KIND_TABLE)
        *(uint64_t *)arg = o->count;
    return 0;
}

static void test_table_list_info(void **state)
{
    struct fixture *f = *state;
    struct rows w;
    rows_init(&w, 3, DATA_LEN);
    append_tags(f->t, &w, 3, 0);
    uint64_t count = 0;
    T_OK(shmstore_list(f->s, NULL, find_table, &count));
    assert_int_equal(count, 3);
    shmstore_obj_info_t o;
    T_OK(shmstore_info(f->s, "t", &o));
    assert_int_equal(o.kind, SHMSTORE_KIND_TABLE);
    assert_int_equal(o.next_index, 3);
    assert_int_equal(o.capacity, 16);
    assert_int_equal(o.n_invalid, 0);
    rows_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table_schema_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_append_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_advance_and_write_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_sample_uniform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_prioritized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_million_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_list_info, setup, teardown),
        cmocka_unit_test(test_table_create_outside_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
