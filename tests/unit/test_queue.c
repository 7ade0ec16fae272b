/* test_queue.c - queues: push/pop/reserve/commit/abort, read/read_latest/read_batch,
 * delete, count/indices, the full-queue policies, blocking waits, threads of one process
 * (MPMC, exactly once), processes (fork MPMC) and SIGKILLed producers and consumers. */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

#define MiB (1024ull * 1024ull)
#define MS 1000000ll

struct fixture {
    char name[128];
    shmstore_t *s;
    shmstore_queue_t *q;
};

static shmstore_queue_t *open_queue(shmstore_t *s, const char *name, uint64_t cap, uint32_t full)
{
    shmstore_queue_options_t o = {.capacity = cap, .full = full};
    shmstore_queue_t *q = NULL;
    T_OK(shmstore_queue_open(s, name, SHMSTORE_Q_CREATE | SHMSTORE_Q_EXCL, &o, &q));
    return q;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    t_store_name(f->name, sizeof(f->name));
    f->s = t_open_new(f->name, 64 * MiB);
    f->q = open_queue(f->s, "q", 8, SHMSTORE_QUEUE_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    shmstore_queue_close(f->q);
    t_cleanup(f->s, f->name);
    free(f);
    return 0;
}

static uint64_t push_u64(shmstore_queue_t *q, uint64_t x)
{
    shmstore_datum_t d;
    uint64_t idx = ~0ull;
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    T_OK(shmstore_queue_push(q, &d, &x, sizeof(x), 0, &idx));
    return idx;
}

static uint64_t pop_u64(shmstore_queue_t *q, uint64_t *idx)
{
    uint64_t x = 0;
    size_t len = 0;
    shmstore_datum_t d;
    T_OK(shmstore_queue_pop_copy(q, 0, &d, &x, sizeof(x), &len, idx));
    assert_int_equal(d.type, SHMSTORE_T_INT64);
    assert_int_equal(len, sizeof(x));
    return x;
}

static uint64_t count_of(shmstore_queue_t *q)
{
    uint64_t n = ~0ull;
    T_OK(shmstore_queue_count(q, &n));
    return n;
}

static uint64_t used_bytes(shmstore_t *s)
{
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    return st.used;
}

/* ---- basics ---------------------------------------------------------------------------- */

static void test_queue_fifo(void **state)
{
    struct fixture *f = *state;
    uint64_t idx;
    for (uint64_t round = 0; round < 5; round++) { /* wraps the 8 cells several times */
        for (uint64_t i = 0; i < 8; i++)
            assert_int_equal(push_u64(f->q, 100 * round + i), round * 8 + i);
        assert_int_equal(count_of(f->q), 8);
        for (uint64_t i = 0; i < 8; i++) {
            assert_int_equal(pop_u64(f->q, &idx), 100 * round + i);
            assert_int_equal(idx, round * 8 + i);
        }
        assert_int_equal(count_of(f->q), 0);
    }
    shmstore_view_t v;
    T_ASSERT_RC(shmstore_queue_pop(f->q, 0, &v), -ETIMEDOUT);
    T_ASSERT_RC(shmstore_queue_pop(f->q, 5 * MS, &v), -ETIMEDOUT);
}

static void test_queue_reserve_commit_abort(void **state)
{
    struct fixture *f = *state;
    uint64_t base = used_bytes(f->s), shape[2] = {4, 8}, idx = 99;
    shmstore_datum_t d;
    shmstore_queue_res_t a, b;
    T_OK(shmstore_datum_init_array(&d, "<f4", 2, shape));
    T_OK(shmstore_queue_reserve(f->q, &d, 4 * 8 * 4, &a));
    T_OK(shmstore_queue_reserve(f->q, &d, 4 * 8 * 4, &b)); /* several per handle */
    assert_int_equal((uintptr_t)a.data % 64, 0);
    float *p = a.data;
    for (int i = 0; i < 32; i++)
        p[i] = (float)i;
    assert_int_equal(count_of(f->q), 0); /* invisible until committed */
    shmstore_queue_abort(f->q, &b);
    shmstore_queue_abort(f->q, &b); /* twice is harmless */
    T_OK(shmstore_queue_commit(f->q, &a, 0, &idx));
    assert_int_equal(idx, 0);
    T_ASSERT_RC(shmstore_queue_commit(f->q, &a, 0, &idx), -EINVAL); /* already committed */
    shmstore_view_t v;
    T_OK(shmstore_queue_pop(f->q, 0, &v));
    assert_int_equal(v.version, 0);
    assert_int_equal(v.desc.type, SHMSTORE_T_ARRAY);
    assert_string_equal(v.desc.dtype, "<f4");
    assert_int_equal(v.desc.shape[1], 8);
    assert_true(((const float *)v.data)[31] == 31.0f);
    shmstore_view_release(&v);
    assert_int_equal(used_bytes(f->s), base); /* every entry block is freed */

    /* commit_keep: the writer keeps its pointer valid past the commit and the pop. */
    shmstore_view_t keep;
    T_OK(shmstore_queue_reserve(f->q, NULL, 64, &a));
    memset(a.data, 9, 64);
    T_OK(shmstore_queue_commit_keep(f->q, &a, 0, &keep));
    assert_null(a.data); /* the reservation is spent */
    assert_int_equal(keep.version, 1);
    uint8_t out[64];
    size_t len;
    T_OK(shmstore_queue_pop_copy(f->q, 0, NULL, out, sizeof(out), &len, &idx));
    for (int i = 0; i < 20; i++) /* the cell's spare is pinned: pushes take other blocks */
        push_u64(f->q, (uint64_t)i), pop_u64(f->q, &idx);
    assert_int_equal(((const uint8_t *)keep.data)[63], 9);
    shmstore_view_release(&keep);
}

static void test_queue_read_delete(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 0; i < 5; i++)
        push_u64(f->q, 10 + i);
    shmstore_view_t v, batch[3];
    T_OK(shmstore_queue_read(f->q, 2, &v));
    assert_int_equal(*(const uint64_t *)v.data, 12);
    assert_int_equal(v.version, 2);
    T_ASSERT_RC(shmstore_queue_delete(f->q, 2, 0), -EBUSY); /* a view holds it */
    T_OK(shmstore_queue_delete(f->q, 2, 1));               /* force: the view stays valid */
    assert_int_equal(*(const uint64_t *)v.data, 12);
    shmstore_view_release(&v);
    T_ASSERT_RC(shmstore_queue_read(f->q, 2, &v), -ENOENT);
    T_ASSERT_RC(shmstore_queue_delete(f->q, 2, 0), -ENOENT);
    T_ASSERT_RC(shmstore_queue_read(f->q, 7, &v), -ENOENT); /* not committed yet */
    uint64_t alias = 3 + (1ull << 54); /* the cell word keeps 54 bits: never an alias */
    T_ASSERT_RC(shmstore_queue_read(f->q, alias, &v), -ENOENT);
    T_ASSERT_RC(shmstore_queue_delete(f->q, alias, 1), -ENOENT);
    T_ASSERT_RC(shmstore_queue_contains(f->q, alias), 0);
    T_ASSERT_RC(shmstore_queue_contains(f->q, 3), 1);
    assert_int_equal(count_of(f->q), 4);
    uint64_t ids[8];
    size_t n = 0;
    T_OK(shmstore_queue_indices(f->q, ids, 8, &n));
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[2], 3);
    T_ASSERT_RC(shmstore_queue_indices(f->q, ids, 2, &n), -ENOBUFS);
    assert_int_equal(n, 4);

    T_OK(shmstore_queue_read_latest(f->q, &v));
    assert_int_equal(v.version, 4);
    shmstore_view_release(&v);
    T_OK(shmstore_queue_delete(f->q, 4, 0));
    T_OK(shmstore_queue_read_latest(f->q, &v)); /* skips the hole at the end */
    assert_int_equal(v.version, 3);
    shmstore_view_release(&v);

    uint64_t want[3] = {0, 1, 3}, bad[3] = {0, 2, 3};
    T_OK(shmstore_queue_read_batch(f->q, want, 3, batch));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(batch[i].version, want[i]);
        shmstore_view_release(&batch[i]);
    }
    T_ASSERT_RC(shmstore_queue_read_batch(f->q, bad, 3, batch), -ENOENT); /* all or nothing */
    assert_null(batch[0].store); /* the first view was released again */

    uint64_t idx;
    assert_int_equal(pop_u64(f->q, &idx), 10);
    assert_int_equal(pop_u64(f->q, &idx), 11);
    assert_int_equal(pop_u64(f->q, &idx), 13); /* the hole at 2 is skipped */
    assert_int_equal(idx, 3);
    T_ASSERT_RC(shmstore_queue_pop(f->q, 0, &v), -ETIMEDOUT); /* the hole at 4 too */
    assert_int_equal(count_of(f->q), 0);

    /* Deleting the oldest entries of a full queue makes room (SMOS's pattern: entries
     * deleted by index, never popped). */
    for (uint64_t i = 0; i < 8; i++)
        push_u64(f->q, i);
    uint64_t x = 9, first = 0;
    T_ASSERT_RC(shmstore_queue_push(f->q, NULL, &x, sizeof(x), 0, NULL), -EAGAIN);
    T_OK(shmstore_queue_indices(f->q, &first, 1, NULL) == -ENOBUFS ? 0 : -1);
    T_OK(shmstore_queue_delete(f->q, first, 0));
    T_OK(shmstore_queue_delete(f->q, first + 1, 0));
    push_u64(f->q, 100);
    push_u64(f->q, 101);
    T_ASSERT_RC(shmstore_queue_push(f->q, NULL, &x, sizeof(x), 0, NULL), -EAGAIN);
    assert_int_equal(count_of(f->q), 8);
}

static void test_queue_pop_view_outlives(void **state)
{
    struct fixture *f = *state;
    uint64_t base = used_bytes(f->s);
    push_u64(f->q, 7);
    shmstore_view_t v, r, none;
    T_OK(shmstore_queue_read(f->q, 0, &r)); /* a reader and the consumer share it */
    T_OK(shmstore_queue_pop(f->q, 0, &v));
    T_ASSERT_RC(shmstore_queue_read(f->q, 0, &none), -ENOENT); /* it left the queue */
    shmstore_view_release(&v);
    assert_int_equal(*(const uint64_t *)r.data, 7);
    shmstore_queue_close(f->q);
    T_OK(shmstore_delete(f->s, "q"));
    assert_int_equal(*(const uint64_t *)r.data, 7); /* still valid after the delete */
    shmstore_view_release(&r);
    f->q = open_queue(f->s, "q", 8, SHMSTORE_QUEUE_ERROR);
    assert_true(used_bytes(f->s) == base);
}

/* A copying pop leaves the entry's block in its cell for the next lap's push; a reader
 * still holding that block keeps its bytes (the push takes another block). */
static void test_queue_spare_blocks(void **state)
{
    struct fixture *f = *state;
    uint64_t idx, base = 0;
    for (uint64_t i = 0; i < 8; i++) /* one lap: every cell gets a spare */
        push_u64(f->q, i);
    for (uint64_t i = 0; i < 8; i++)
        pop_u64(f->q, &idx);
    base = used_bytes(f->s);
    for (uint64_t lap = 1; lap < 50; lap++) { /* steady state: no allocation at all */
        for (uint64_t i = 0; i < 8; i++)
            push_u64(f->q, 100 * lap + i);
        for (uint64_t i = 0; i < 8; i++)
            assert_int_equal(pop_u64(f->q, &idx), 100 * lap + i);
        assert_int_equal(used_bytes(f->s), base);
    }
    shmstore_view_t r;
    uint64_t first = push_u64(f->q, 77);
    T_OK(shmstore_queue_read(f->q, first, &r));
    assert_int_equal(pop_u64(f->q, &idx), 77); /* its block is now the cell's spare */
    for (uint64_t i = 0; i < 8; i++)           /* the next lap reaches that cell */
        push_u64(f->q, 500 + i);
    assert_int_equal(*(const uint64_t *)r.data, 77); /* untouched: the push took another */
    for (uint64_t i = 0; i < 8; i++)
        assert_int_equal(pop_u64(f->q, &idx), 500 + i);
    shmstore_view_release(&r);
    t_assert_clean(f->s);
    /* A bigger entry than the spare holds gets a block of its own. */
    char big[4000] = "big";
    T_OK(shmstore_queue_push(f->q, NULL, big, sizeof(big), 0, NULL));
    size_t len;
    T_OK(shmstore_queue_pop_copy(f->q, 0, NULL, big, sizeof(big), &len, &idx));
    assert_string_equal(big, "big");
}

static void test_queue_pop_copy_small_buffer(void **state)
{
    struct fixture *f = *state;
    char big[100] = "entry", small[10];
    size_t len = 0;
    uint64_t idx;
    T_OK(shmstore_queue_push(f->q, NULL, big, sizeof(big), 0, NULL));
    T_ASSERT_RC(shmstore_queue_pop_copy(f->q, 0, NULL, small, sizeof(small), &len, &idx), -ENOBUFS);
    assert_int_equal(len, sizeof(big));
    assert_int_equal(count_of(f->q), 1); /* it stayed */
    T_OK(shmstore_queue_pop_copy(f->q, 0, NULL, big, sizeof(big), &len, &idx));
    assert_string_equal(big, "entry");
}

/* ---- policies and errors -------------------------------------------------------------- */

static void test_queue_full_policies(void **state)
{
    struct fixture *f = *state;
    uint64_t x = 1, idx;
    for (int i = 0; i < 8; i++)
        push_u64(f->q, (uint64_t)i);
    T_ASSERT_RC(shmstore_queue_push(f->q, NULL, &x, sizeof(x), -1, NULL), -EAGAIN); /* ERROR */
    assert_int_equal(count_of(f->q), 8);

    shmstore_queue_t *d = open_queue(f->s, "drop", 4, SHMSTORE_QUEUE_DROP_OLDEST);
    for (uint64_t i = 0; i < 10; i++)
        push_u64(d, i);
    assert_int_equal(count_of(d), 4);
    assert_int_equal(pop_u64(d, &idx), 6);
    assert_int_equal(idx, 6);
    shmstore_obj_info_t info;
    T_OK(shmstore_queue_info(d, &info));
    assert_int_equal(info.dropped, 6);
    assert_int_equal(info.count, 3);
    assert_int_equal(info.capacity, 4);
    assert_int_equal(info.next_index, 10);
    assert_int_equal(info.kind, SHMSTORE_KIND_QUEUE);
    assert_string_equal(shmstore_kind_name(info.kind), "queue");
    shmstore_queue_close(d);

    shmstore_queue_t *b = open_queue(f->s, "block", 2, SHMSTORE_QUEUE_BLOCK);
    push_u64(b, 1);
    push_u64(b, 2);
    T_ASSERT_RC(shmstore_queue_push(b, NULL, &x, sizeof(x), 0, NULL), -EAGAIN);
    T_ASSERT_RC(shmstore_queue_push(b, NULL, &x, sizeof(x), 10 * MS, NULL), -ETIMEDOUT);
    assert_int_equal(count_of(b), 2);
    shmstore_queue_close(b);
}

static void test_queue_errors(void **state)
{
    struct fixture *f = *state;
    shmstore_queue_t *q;
    shmstore_queue_options_t o = {.capacity = 4, .slot_size = 16};
    T_OK(shmstore_queue_open(f->s, "slots", SHMSTORE_Q_CREATE, &o, &q));
    char buf[32] = {0};
    uint64_t base = used_bytes(f->s);
    T_ASSERT_RC(shmstore_queue_push(q, NULL, buf, 17, 0, NULL), -EMSGSIZE);
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    T_ASSERT_RC(shmstore_queue_push(q, &d, buf, 3, 0, NULL), -EINVAL); /* does not match */
    shmstore_datum_init(&d, SHMSTORE_T_STR);
    T_ASSERT_RC(shmstore_queue_push(q, &d, "\xff\xfe", 2, 0, NULL), -EINVAL);
    assert_int_equal(used_bytes(f->s), base); /* nothing allocated */
    shmstore_queue_close(q);

    T_ASSERT_RC(shmstore_queue_open(f->s, "q", SHMSTORE_Q_CREATE | SHMSTORE_Q_EXCL, NULL, &q),
                -EEXIST);
    T_ASSERT_RC(shmstore_queue_open(f->s, "none", 0, NULL, &q), -ENOENT);
    o.full = 7;
    T_ASSERT_RC(shmstore_queue_open(f->s, "bad", SHMSTORE_Q_CREATE, &o, &q), -EINVAL);
    shmstore_value_t *v;
    T_ASSERT_RC(shmstore_value_open(f->s, "q", 0, &v), SHMSTORE_EKIND);
    T_OK(shmstore_put(f->s, "val", NULL, "x", 1, 0));
    T_ASSERT_RC(shmstore_queue_open(f->s, "val", 0, NULL, &q), SHMSTORE_EKIND);

    /* A handle of a deleted queue. */
    push_u64(f->q, 1);
    T_OK(shmstore_delete(f->s, "q"));
    shmstore_view_t view;
    uint64_t n;
    T_ASSERT_RC(shmstore_queue_pop(f->q, 0, &view), -ESTALE);
    T_ASSERT_RC(shmstore_queue_push(f->q, NULL, buf, 1, 0, NULL), -ESTALE);
    T_ASSERT_RC(shmstore_queue_count(f->q, &n), -ESTALE);
    T_ASSERT_RC(shmstore_queue_read(f->q, 0, &view), -ESTALE);
    shmstore_queue_close(f->q);
    f->q = open_queue(f->s, "q", 8, SHMSTORE_QUEUE_ERROR);
}

static void test_queue_listed(void **state)
{
    struct fixture *f = *state;
    push_u64(f->q, 5);
    shmstore_obj_info_t info;
    T_OK(shmstore_info(f->s, "q", &info));
    assert_int_equal(info.kind, SHMSTORE_KIND_QUEUE);
    assert_int_equal(info.count, 1);
    assert_int_equal(info.first_index, 0);
    assert_int_equal(info.next_index, 1);
    assert_true(info.footprint > 8 * 16);
    shmstore_gc_stats_t st;
    T_OK(shmstore_gc(f->s, &st)); /* gc keeps entries: they are reachable */
    assert_int_equal(st.blocks_freed, 0);
    assert_int_equal(count_of(f->q), 1);
}

/* A million entries: one fd and one mapping still, whatever the number of entries. */
static void test_queue_million_entries(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 1ull << 30);
    long fds = t_count_fds(), maps = t_count_shared_maps();
    uint64_t n = 1000000, idx;
    shmstore_queue_t *q = open_queue(s, "big", n, SHMSTORE_QUEUE_ERROR);
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(push_u64(q, i), i);
    assert_int_equal(count_of(q), n);
    uint64_t x = 0;
    T_ASSERT_RC(shmstore_queue_push(q, NULL, &x, sizeof(x), 0, NULL), -EAGAIN);
    assert_int_equal(t_count_fds(), fds);
    assert_int_equal(t_count_shared_maps(), maps);
    shmstore_view_t v;
    T_OK(shmstore_queue_read_latest(q, &v)); /* O(1): the newest, at the tail */
    assert_int_equal(v.version, n - 1);
    shmstore_view_release(&v);
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(pop_u64(q, &idx), i);
    assert_int_equal(count_of(q), 0);
    assert_int_equal(t_count_fds(), fds);
    assert_int_equal(t_count_shared_maps(), maps);
    shmstore_queue_close(q);
    t_cleanup(s, name);
}

/* ---- threads -------------------------------------------------------------------------- */

#define T_PRODUCERS 4
#define T_CONSUMERS 4
#define T_PER_PRODUCER 5000

struct mt {
    shmstore_queue_t *q;
    int id;
    _Atomic uint64_t *seen; /* per value: times popped */
    _Atomic int *done_producers;
    uint64_t sum;
};

static void *producer(void *arg)
{
    struct mt *m = arg;
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_INT64);
    for (uint64_t i = 0; i < T_PER_PRODUCER; i++) {
        uint64_t x = (uint64_t)m->id * T_PER_PRODUCER + i;
        int r = shmstore_queue_push(m->q, &d, &x, sizeof(x), -1, NULL);
        assert_int_equal(r, 0);
    }
    atomic_fetch_add(m->done_producers, 1);
    return NULL;
}

static void *consumer(void *arg)
{
    struct mt *m = arg;
    uint64_t last[T_PRODUCERS];
    memset(last, 0xff, sizeof(last));
    for (;;) {
        uint64_t x;
        size_t len;
        int r = shmstore_queue_pop_copy(m->q, 20 * MS, NULL, &x, sizeof(x), &len, NULL);
        if (r == -ETIMEDOUT) {
            if (atomic_load(m->done_producers) == T_PRODUCERS) {
                uint64_t n = 1;
                shmstore_queue_count(m->q, &n);
                if (n == 0)
                    return NULL;
            }
            continue;
        }
        assert_int_equal(r, 0);
        /* FIFO: one consumer sees each producer's entries in order. */
        uint64_t p = x / T_PER_PRODUCER, i = x % T_PER_PRODUCER;
        assert_true(last[p] == ~0ull || i > last[p]);
        last[p] = i;
        atomic_fetch_add(&m->seen[x], 1);
        m->sum += x;
    }
}

static void test_queue_threads_exactly_once(void **state)
{
    struct fixture *f = *state;
    shmstore_queue_t *q = open_queue(f->s, "mt", 64, SHMSTORE_QUEUE_BLOCK);
    size_t n = T_PRODUCERS * T_PER_PRODUCER;
    _Atomic uint64_t *seen = calloc(n, sizeof(*seen));
    _Atomic int done = 0;
    struct mt m[T_PRODUCERS + T_CONSUMERS];
    pthread_t th[T_PRODUCERS + T_CONSUMERS];
    for (int i = 0; i < T_PRODUCERS + T_CONSUMERS; i++) {
        m[i] = (struct mt){q, i, seen, &done, 0};
        assert_int_equal(pthread_create(&th[i], NULL, i < T_PRODUCERS ? producer : consumer, &m[i]), 0);
    }
    for (int i = 0; i < T_PRODUCERS + T_CONSUMERS; i++)
        pthread_join(th[i], NULL);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
    shmstore_queue_close(q);
}

/* ---- deletion while cells are busy ------------------------------------------------------ */

#define DQ_ROUNDS 150
#define DQ_LEN 256

struct busy {
    shmstore_t *s;
    _Atomic int *go;
    int id;
    int bad; /* an entry popped with bytes that are not its own */
};

/* Mover 0 pushes entries whose bytes all say their index and pops them by copy into a
 * buffer too small (the cell is given back READY), by copy (the block becomes the
 * spare) and as a view; mover 1 only pops into a buffer too small. Both until the queue
 * is deleted under them. */
static void *busy_mover(void *arg)
{
    struct busy *b = arg;
    shmstore_queue_t *q = NULL;
    if (shmstore_queue_open(b->s, "dq", 0, NULL, &q) < 0)
        return NULL; /* deleted before we came */
    while (!atomic_load(b->go))
        ;
    unsigned char buf[DQ_LEN], small[8];
    for (unsigned n = 0;; n++) {
        size_t len;
        uint64_t idx;
        int r;
        if (b->id == 1) { /* only gives cells back: nobody else pops after it */
            r = shmstore_queue_pop_copy(q, 0, NULL, small, sizeof(small), &len, &idx);
        } else if (n % 2 == 0) {
            memset(buf, (int)(n & 0xff), sizeof(buf));
            r = shmstore_queue_push(q, NULL, buf, sizeof(buf), 0, NULL);
        } else if (n % 3 == 0) {
            r = shmstore_queue_pop_copy(q, 0, NULL, small, sizeof(small), &len, &idx);
        } else if (n % 5 == 0) {
            shmstore_view_t v;
            if ((r = shmstore_queue_pop(q, 0, &v)) == 0)
                shmstore_view_release(&v);
        } else {
            r = shmstore_queue_pop_copy(q, 0, NULL, buf, sizeof(buf), &len, &idx);
            for (size_t k = 1; r == 0 && k < len; k++)
                if (buf[k] != buf[0])
                    b->bad = 1;
        }
        if (r == -ESTALE)
            break;
    }
    shmstore_queue_close(q);
    return NULL;
}

/* A deletion skips the cells that are busy; their movers sweep them. Whatever the
 * interleaving, once the handles are closed every block is back without gc, and a gc run
 * during the deletion frees nothing a mover still copies from. */
static void test_queue_deleted_while_busy(void **state)
{
    struct fixture *f = *state;
    uint64_t base = used_bytes(f->s);
    for (int round = 0; round < DQ_ROUNDS; round++) {
        shmstore_queue_t *q = open_queue(f->s, "dq", 4, SHMSTORE_QUEUE_DROP_OLDEST);
        _Atomic int go = 0;
        struct busy m[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            m[i] = (struct busy){f->s, &go, i, 0};
            assert_int_equal(pthread_create(&th[i], NULL, busy_mover, &m[i]), 0);
        }
        atomic_store(&go, 1);
        for (volatile int spin = 0; spin < 2000 * (round % 7 + 1); spin++)
            ;
        T_OK(shmstore_delete(f->s, "dq"));
        shmstore_gc_stats_t st;
        if (round % 2) /* on the other rounds nothing but the movers may sweep */
            T_OK(shmstore_gc(f->s, &st));
        for (int i = 0; i < 2; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(m[i].bad, 0);
        }
        shmstore_queue_close(q);
        assert_int_equal(used_bytes(f->s), base);
    }
    t_assert_clean(f->s);
}

/* gc (the repair pass) runs while a producer and a consumer move blocks between a cell's
 * entry and spare words, with no lock: it must see every block in transit, or it frees
 * one the queue still uses, and a reused block shows up as a torn, repeated or
 * out-of-order entry. */
#define GC_TRAFFIC_ENTRIES 200000u
#define GC_TRAFFIC_WORDS 32u

struct traffic {
    shmstore_queue_t *q;
    _Atomic int done;
    int bad;
};

static void *traffic_producer(void *arg)
{
    struct traffic *t = arg;
    uint64_t buf[GC_TRAFFIC_WORDS];
    for (uint64_t n = 0; n < GC_TRAFFIC_ENTRIES && !t->bad;) {
        for (unsigned k = 0; k < GC_TRAFFIC_WORDS; k++)
            buf[k] = n;
        int r = shmstore_queue_push(t->q, NULL, buf, sizeof(buf), 1000 * MS, NULL);
        if (r == 0)
            n++;
        else if (r != -ETIMEDOUT)
            t->bad = 1;
    }
    return NULL;
}

static void *traffic_consumer(void *arg)
{
    struct traffic *t = arg;
    uint64_t buf[GC_TRAFFIC_WORDS];
    for (uint64_t want = 0; want < GC_TRAFFIC_ENTRIES && !t->bad;) {
        size_t len;
        int r = shmstore_queue_pop_copy(t->q, 1000 * MS, NULL, buf, sizeof(buf), &len, NULL);
        if (r == -ETIMEDOUT)
            continue;
        if (r != 0 || len != sizeof(buf)) {
            t->bad = 2;
            break;
        }
        for (unsigned k = 0; k < GC_TRAFFIC_WORDS; k++)
            if (buf[k] != want)
                t->bad = 3;
        want++;
    }
    atomic_store(&t->done, 1);
    return NULL;
}

static void test_queue_gc_during_traffic(void **state)
{
    struct fixture *f = *state;
    shmstore_queue_t *q = open_queue(f->s, "traffic", 4, SHMSTORE_QUEUE_BLOCK);
    struct traffic t = {q, 0, 0};
    pthread_t th[2];
    assert_int_equal(pthread_create(&th[0], NULL, traffic_producer, &t), 0);
    assert_int_equal(pthread_create(&th[1], NULL, traffic_consumer, &t), 0);
    unsigned runs = 0;
    while (!atomic_load(&t.done)) {
        shmstore_gc_stats_t st;
        T_OK(shmstore_gc(f->s, &st));
        runs++;
    }
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    if (t.bad)
        fail_msg("after %u gc runs: %s", runs,
                 t.bad == 3 ? "an entry came torn, twice or out of order"
                            : t.bad == 2 ? "a pop failed" : "a push failed");
    shmstore_queue_close(q);
    T_OK(shmstore_delete(f->s, "traffic"));
    t_assert_clean(f->s);
}

struct waiter {
    shmstore_queue_t *q;
    int rc;
    uint64_t x;
};

static void *blocked_pop(void *arg)
{
    struct waiter *w = arg;
    size_t len;
    w->rc = shmstore_queue_pop_copy(w->q, 10000 * MS, NULL, &w->x, sizeof(w->x), &len, NULL);
    return NULL;
}

static void test_queue_blocked_pop_woken(void **state)
{
    struct fixture *f = *state;
    struct waiter w = {f->q, 1, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_pop, &w), 0);
    /* Until the waiter sleeps registered (its bit is visible in the info). */
    for (int i = 0; i < 2000; i++) {
        shmstore_obj_info_t info;
        T_OK(shmstore_queue_info(f->q, &info));
        if (info.consumers_waiting)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    push_u64(f->q, 42);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.x, 42);
}

/* ---- processes ------------------------------------------------------------------------ */

struct proc_arg {
    const char *store;
    int id;
    uint64_t *seen; /* shared: per value, times popped */
    _Atomic int *done;
};

static void proc_producer(void *arg)
{
    struct proc_arg *a = arg;
    shmstore_t *s;
    shmstore_queue_t *q;
    T_CHILD_RC(shmstore_open(a->store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_queue_open(s, "pq", 0, NULL, &q), 0);
    for (uint64_t i = 0; i < T_PER_PRODUCER; i++) {
        uint64_t x = (uint64_t)a->id * T_PER_PRODUCER + i;
        T_CHILD_RC(shmstore_queue_push(q, NULL, &x, sizeof(x), -1, NULL), 0);
    }
    atomic_fetch_add(a->done, 1);
    shmstore_queue_close(q);
    shmstore_close(s);
}

static void proc_consumer(void *arg)
{
    struct proc_arg *a = arg;
    shmstore_t *s;
    shmstore_queue_t *q;
    T_CHILD_RC(shmstore_open(a->store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_queue_open(s, "pq", 0, NULL, &q), 0);
    for (;;) {
        uint64_t x, n = 1;
        size_t len;
        int r = shmstore_queue_pop_copy(q, 20 * MS, NULL, &x, sizeof(x), &len, NULL);
        if (r == -ETIMEDOUT && atomic_load(a->done) == T_PRODUCERS &&
            shmstore_queue_count(q, &n) == 0 && n == 0)
            break;
        if (r == -ETIMEDOUT)
            continue;
        T_CHILD_RC(r, 0);
        T_CHILD_CHECK(x < T_PRODUCERS * T_PER_PRODUCER);
        __atomic_fetch_add(&a->seen[x], 1, __ATOMIC_RELAXED);
    }
    shmstore_queue_close(q);
    shmstore_close(s);
}

/* fork + ThreadSanitizer is fragile (see tests/unit/CMakeLists.txt): the process tests
 * run in the other builds. */
#if defined(__SANITIZE_THREAD__)
#define SKIP_FORK_UNDER_TSAN() T_SKIP("fork under ThreadSanitizer")
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SKIP_FORK_UNDER_TSAN() T_SKIP("fork under ThreadSanitizer")
#endif
#endif
#ifndef SKIP_FORK_UNDER_TSAN
#define SKIP_FORK_UNDER_TSAN() ((void)0)
#endif

static void test_queue_processes_exactly_once(void **state)
{
    struct fixture *f = *state;
    SKIP_FORK_UNDER_TSAN();
    shmstore_queue_close(open_queue(f->s, "pq", 32, SHMSTORE_QUEUE_BLOCK));
    size_t n = T_PRODUCERS * T_PER_PRODUCER;
    uint64_t *seen = t_shared_alloc(n * sizeof(uint64_t));
    _Atomic int *done = t_shared_alloc(sizeof(*done));
    struct proc_arg a[T_PRODUCERS + T_CONSUMERS];
    pid_t pids[T_PRODUCERS + T_CONSUMERS];
    for (int i = 0; i < T_PRODUCERS + T_CONSUMERS; i++) {
        a[i] = (struct proc_arg){f->name, i, seen, done};
        pids[i] = t_fork(i < T_PRODUCERS ? proc_producer : proc_consumer, &a[i]);
    }
    for (int i = 0; i < T_PRODUCERS + T_CONSUMERS; i++)
        assert_int_equal(t_wait_child(pids[i], 60000), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    t_shared_free(seen, n * sizeof(uint64_t));
    t_shared_free(done, sizeof(*done));
}

#define SPSC_N 300000

static void spsc_producer(void *arg)
{
    const char *store = arg;
    shmstore_t *s;
    shmstore_queue_t *q;
    T_CHILD_RC(shmstore_open(store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_queue_open(s, "spsc", 0, NULL, &q), 0);
    for (uint64_t i = 0; i < SPSC_N; i++)
        T_CHILD_RC(shmstore_queue_push(q, NULL, &i, sizeof(i), -1, NULL), 0);
    shmstore_queue_close(q);
    shmstore_close(s);
}

/* Every entry holds its own bytes: an entry block freed while still queued (a freer's
 * look racing the commit that takes the block back, once seen at ~1 in 10^6) shows up
 * as the next entry's value under this one's index. */
static void test_queue_processes_values(void **state)
{
    struct fixture *f = *state;
    SKIP_FORK_UNDER_TSAN();
    shmstore_queue_t *q = open_queue(f->s, "spsc", 256, SHMSTORE_QUEUE_BLOCK);
    pid_t pid = t_fork(spsc_producer, f->name);
    for (uint64_t i = 0; i < SPSC_N; i++) {
        uint64_t x = ~0ull, idx = ~0ull;
        size_t len;
        T_OK(shmstore_queue_pop_copy(q, 10000 * MS, NULL, &x, sizeof(x), &len, &idx));
        if (x != i || idx != i)
            fail_msg("entry %llu holds %llu (index %llu)", (unsigned long long)i,
                     (unsigned long long)x, (unsigned long long)idx);
    }
    assert_int_equal(t_wait_child(pid, 30000), 0);
    shmstore_queue_close(q);
}

/* A child that reserves (and optionally commits, pops or reads) and is then killed. */
enum victim { V_RESERVED, V_POPPED_VIEW, V_READ_VIEW, V_WAITING_POP };

struct victim_arg {
    const char *store;
    enum victim what;
    _Atomic int *ready;
};

static void victim(void *arg)
{
    struct victim_arg *a = arg;
    shmstore_t *s;
    shmstore_queue_t *q;
    shmstore_queue_res_t res;
    shmstore_view_t v;
    T_CHILD_RC(shmstore_open(a->store, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_queue_open(s, "q", 0, NULL, &q), 0);
    switch (a->what) {
    case V_RESERVED:
        T_CHILD_RC(shmstore_queue_reserve(q, NULL, 100000, &res), 0);
        memset(res.data, 1, 100000);
        break;
    case V_POPPED_VIEW:
        T_CHILD_RC(shmstore_queue_pop(q, 0, &v), 0);
        break;
    case V_READ_VIEW:
        T_CHILD_RC(shmstore_queue_read(q, 1, &v), 0);
        break;
    case V_WAITING_POP:
        atomic_store(a->ready, 1);
        shmstore_queue_pop(q, -1, &v);
        return;
    }
    atomic_store(a->ready, 1);
    for (;;)
        pause();
}

static void kill_victim(struct fixture *f, enum victim what)
{
    _Atomic int *ready = t_shared_alloc(sizeof(*ready));
    struct victim_arg a = {f->name, what, ready};
    pid_t pid = t_fork(victim, &a);
    while (!atomic_load(ready)) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    if (what == V_WAITING_POP) {
        struct timespec ts = {0, 5000000}; /* let it go to sleep (not required for the test) */
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    assert_int_equal(t_wait_child(pid, 10000), 128 + SIGKILL);
    t_shared_free(ready, sizeof(*ready));
}

static void test_queue_killed(void **state)
{
    struct fixture *f = *state;
    SKIP_FORK_UNDER_TSAN();
    for (uint64_t i = 0; i < 3; i++)
        push_u64(f->q, i);
    uint64_t base = used_bytes(f->s);
    shmstore_gc_stats_t st;

    kill_victim(f, V_RESERVED); /* a producer mid-write: nothing visible, nothing leaked */
    T_OK(shmstore_gc(f->s, &st));
    assert_int_equal(st.dead_procs, 1);
    assert_int_equal(used_bytes(f->s), base);
    assert_int_equal(count_of(f->q), 3);

    kill_victim(f, V_READ_VIEW); /* a reader holding entry 1: the entry stays */
    T_OK(shmstore_gc(f->s, &st));
    assert_int_equal(count_of(f->q), 3);
    T_OK(shmstore_queue_delete(f->q, 1, 0)); /* no lease of the dead reader is left */

    kill_victim(f, V_POPPED_VIEW); /* a consumer holding popped entry 0: it is freed */
    T_OK(shmstore_gc(f->s, &st));
    assert_int_equal(count_of(f->q), 1);

    uint64_t idx;
    assert_int_equal(pop_u64(f->q, &idx), 2);
    kill_victim(f, V_WAITING_POP); /* a consumer asleep on the empty queue */
    T_OK(shmstore_gc(f->s, &st));
    shmstore_obj_info_t info;
    T_OK(shmstore_queue_info(f->q, &info));
    assert_int_equal(info.consumers_waiting, 0);
    t_assert_clean(f->s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_reserve_commit_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_read_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_pop_view_outlives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_spare_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_pop_copy_small_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_listed, setup, teardown),
        cmocka_unit_test(test_queue_million_entries),
        cmocka_unit_test_setup_teardown(test_queue_threads_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_blocked_pop_woken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_deleted_while_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_gc_during_traffic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_processes_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_processes_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_killed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
