/* test_mp_values.c - values shared by concurrent writers and readers, in separate
 * processes (fork) and in threads of one process (what ThreadSanitizer checks).
 *
 * Every payload is self-checking (payload.h): it names its writer and sequence number and
 * carries a hash over all its bytes, so a reader detects any torn read from the bytes
 * alone. What is asserted, for frames of 8 B, 4 KiB and 1.2 MB:
 * - get (copy) and view (zero-copy) never return a torn payload; the version returned
 *   with a payload is the one that payload was written as (one writer: seq == version);
 * - versions seen by each reader never go down;
 * - a view stays byte-for-byte intact while the writer publishes more than VAL_ROT newer
 *   versions (the block it pins is not reused);
 * - a waiter that is faster than the writer sees every version (the writer pauses on a
 *   barrier handshake after each put - no sleeping anywhere);
 * - several writers serialize: each put / reserve+commit is atomic, versions strictly
 *   increase, lock/unlock read-modify-writes lose no update;
 * - trigger wakes waiters (also on a value with no version yet);
 * - wait times out with -ETIMEDOUT, and 0 never blocks.
 *
 * Processes: tests fork only while the parent has no threads (ThreadSanitizer and fork do
 * not mix otherwise); children reopen the store by name, as the header requires. Threads:
 * one store handle shared by all threads, one value handle per thread.
 * Deadlocks fail by the child timeout (t_wait_child) and by the CTest timeout.
 */
#include "test.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"

#define SZ_SMALL 8u
#define SZ_PAGE 4096u
#define SZ_FRAME (1200u * 1000u) /* 1.2 MB */
#define BUF_CAP (2u << 20)
#define CHILD_TIMEOUT_MS 60000
#define STORE_CAP (256ull << 20)
#define VAL_ROT_PLUS 5 /* more versions than a value's rotation blocks (VAL_ROT = 4) */

static const size_t sizes[] = {SZ_SMALL, SZ_PAGE, SZ_FRAME};

/* Versions a writer publishes per size (scaled down under sanitizers). */
static uint64_t n_versions(size_t len)
{
    if (len <= SZ_SMALL)
        return T_SCALE(20000);
    if (len <= SZ_PAGE)
        return T_SCALE(10000);
    return T_SCALE(400);
}

/* ---- checks inside workers ------------------------------------------------------------ */

/* Workers cannot use cmocka asserts (in a forked child they would unwind into the
 * parent's runner copy; in a thread they are not thread-safe). A failed check prints and
 * ends the process: a forked child with _exit (the parent owns the files), the test
 * binary itself - in thread mode - with exit(), so that the atexit cleanup still
 * unlinks its stores. */
static _Atomic int g_in_threads;

static _Noreturn void w_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: %s %ld: check failed: %s (errmsg: %s)\n", file, line,
            atomic_load(&g_in_threads) ? "thread of" : "child", (long)getpid(), what,
            shmstore_errmsg());
    fflush(stderr);
    if (atomic_load(&g_in_threads))
        exit(T_CHILD_FAILED);
    _exit(T_CHILD_FAILED);
}

static void w_rc(int got, int expected, const char *what, const char *file, int line)
{
    if (got == expected)
        return;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s returned %d (%s), expected %d (%s)", what, got,
             shmstore_err_name(got), expected, shmstore_err_name(expected));
    w_fail(file, line, msg);
}

#define W_CHECK(cond)                              \
    do {                                           \
        if (!(cond))                               \
            w_fail(__FILE__, __LINE__, #cond);     \
    } while (0)
#define W_RC(expr, expected) w_rc((int)(expr), (int)(expected), #expr, __FILE__, __LINE__)

/* ---- the shared context ------------------------------------------------------------- */

enum { MODE_PROC, MODE_THREAD };

struct ctx {
    int mode;
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    char value[64];
    shmstore_t *s;        /* thread mode: the shared store handle */
    size_t len;           /* payload size (single-size tests) */
    uint64_t n;           /* versions the writer publishes / per-writer operations */
    uint32_t n_writers;
    t_barrier_t *start;   /* every worker arrives once before its loop */
    t_barrier_t *step;    /* every-version handshake */
};

struct worker {
    struct ctx *c;
    uint32_t id; /* writer id (1-based) or reader number */
    void (*fn)(struct worker *w, shmstore_t *s);
};

/* Open the store for a worker: processes attach anew, threads share the parent's. */
static shmstore_t *worker_store(struct worker *w)
{
    if (w->c->mode == MODE_THREAD)
        return w->c->s;
    shmstore_t *s = NULL;
    W_RC(shmstore_open(w->c->store, 0, NULL, &s), 0);
    return s;
}

static void worker_done(struct worker *w, shmstore_t *s)
{
    if (w->c->mode == MODE_PROC)
        shmstore_close(s);
}

static void proc_entry(void *arg)
{
    struct worker *w = arg;
    shmstore_t *s = worker_store(w);
    w->fn(w, s);
    worker_done(w, s);
}

static void *thread_entry(void *arg)
{
    struct worker *w = arg;
    w->fn(w, w->c->s);
    return NULL;
}

/* Wait for `n` children; as soon as one fails (or the deadline passes: a deadlock),
 * kill the others, since they may be waiting for what the failed one would have done.
 * Returns 0 when all exited with status 0. */
static int wait_all(pid_t *pids, unsigned n, int timeout_ms)
{
    int pfd[16], done[16] = {0}, failed = 0;
    unsigned left = n;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < n; i++)
        pfd[i] = (int)syscall(SYS_pidfd_open, pids[i], 0);
    while (left > 0 && !failed) {
        struct pollfd p[16];
        for (unsigned i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = done[i] ? -1 : pfd[i], .events = POLLIN};
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long el = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms || poll(p, n, (int)(timeout_ms - el)) == 0) {
            print_message("workers still running after %d ms: deadlock?\n", timeout_ms);
            failed = 1;
            break;
        }
        for (unsigned i = 0; i < n; i++) {
            if (done[i] || !(p[i].revents & POLLIN))
                continue;
            int st = t_wait_child(pids[i], 0);
            done[i] = 1;
            left--;
            if (st != 0) {
                print_message("worker %u (pid %ld) ended with status %d\n", i, (long)pids[i], st);
                failed = 1;
            }
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (!done[i]) {
            kill(pids[i], SIGKILL);
            (void)t_wait_child(pids[i], -1);
        }
        close(pfd[i]);
    }
    return failed;
}

/* Run `n` workers (processes or threads by c->mode) and wait for all of them. */
static void run_workers(struct ctx *c, struct worker *ws, unsigned n)
{
    if (c->mode == MODE_PROC) {
        pid_t pids[16];
        assert_true(n <= 16);
        for (unsigned i = 0; i < n; i++)
            pids[i] = t_fork(proc_entry, &ws[i]);
        assert_int_equal(wait_all(pids, n, CHILD_TIMEOUT_MS), 0);
    } else {
        pthread_t th[16];
        assert_true(n <= 16);
        atomic_store(&g_in_threads, 1);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(pthread_create(&th[i], NULL, thread_entry, &ws[i]), 0);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        atomic_store(&g_in_threads, 0);
    }
}

static shmstore_value_t *open_value(shmstore_t *s, const char *name)
{
    shmstore_value_t *v = NULL;
    W_RC(shmstore_value_open(s, name, 0, &v), 0);
    return v;
}

static void ctx_init(struct ctx *c, int mode, char *store_name, shmstore_t **s_out)
{
    memset(c, 0, sizeof(*c));
    c->mode = mode;
    t_store_name(c->store, sizeof(c->store));
    snprintf(store_name, SHMSTORE_STORE_NAME_MAX + 1, "%s", c->store);
    *s_out = t_open_new(c->store, STORE_CAP);
    c->s = *s_out;
}

/* The parent's checks at the end of a test: only it is attached, the value holds
 * version `ver` with an intact payload, the store is clean. */
static void expect_final(shmstore_t *s, const char *value, uint64_t ver)
{
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_procs, 1);

    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, value, 0, &v));
    uint64_t got = 0;
    T_OK(shmstore_value_version(v, &got));
    assert_int_equal(got, ver);
    if (ver > 0) {
        shmstore_view_t vw;
        T_OK(shmstore_value_view(v, &vw));
        assert_true(pl_check(vw.data, vw.len, NULL, NULL));
        assert_int_equal(vw.version, ver);
        shmstore_view_release(&vw);
    }
    shmstore_value_close(v);
    t_assert_clean(s);
}

/* ---- single writer, readers by get / view / wait ------------------------------------- */

static void w_writer(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    unsigned char *buf = malloc(c->len);
    W_CHECK(buf != NULL);

    t_barrier_wait(c->start);
    for (uint64_t seq = 1; seq <= c->n; seq++) {
        pl_fill(buf, c->len, w->id, seq);
        W_RC(shmstore_value_put(v, NULL, buf, c->len, 0), 0);
    }
    free(buf);
    shmstore_value_close(v);
}

/* Copying reader: get in a loop, sometimes waiting for the next version in between. */
static void w_get_reader(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    unsigned char *buf = malloc(BUF_CAP);
    W_CHECK(buf != NULL);
    uint64_t last = 0, n_reads = 0;

    t_barrier_wait(c->start);
    while (last < c->n) {
        shmstore_datum_t d;
        size_t len = 0;
        uint64_t ver = 0, seq = 0;
        uint32_t wid = 0;
        int rc = shmstore_value_get(v, &d, buf, BUF_CAP, &len, &ver);
        if (rc == SHMSTORE_ENOVALUE) {
            W_CHECK(last == 0);
            rc = shmstore_value_wait(v, 0, -1, NULL);
            W_CHECK(rc == 0 || rc == -EINTR);
            continue;
        }
        W_RC(rc, 0);
        n_reads++;
        W_CHECK(len == c->len);
        W_CHECK(d.type == SHMSTORE_T_BYTES);
        if (!pl_check(buf, len, &wid, &seq)) {
            fprintf(stderr, "torn get: version %llu len %zu\n", (unsigned long long)ver, len);
            W_CHECK(!"get returned a torn payload");
        }
        W_CHECK(wid == 1);
        W_CHECK(seq == ver); /* the version returned is the payload's own */
        W_CHECK(ver >= last); /* monotonic per reader */
        last = ver;
        if ((n_reads & 1) && last < c->n) {
            uint64_t nv = 0;
            rc = shmstore_value_wait(v, last, -1, &nv);
            W_CHECK(rc == 0 || rc == -EINTR);
            if (rc == 0)
                W_CHECK(nv > last);
        }
    }
    free(buf);
    shmstore_value_close(v);
}

/* Zero-copy reader: holds up to three views at once; before releasing the oldest it waits
 * until the writer has published more versions than the value has rotation blocks, then
 * checks that the pinned bytes did not change. */
#define N_HELD 3
static void w_view_reader(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    shmstore_view_t held[N_HELD];
    uint64_t held_seq[N_HELD];
    unsigned n_held = 0, first = 0;
    uint64_t last = 0;

    t_barrier_wait(c->start);
    for (;;) {
        if (n_held == N_HELD || (last >= c->n && n_held > 0)) {
            /* Re-verify the oldest after newer versions went by, then release it. */
            shmstore_view_t *o = &held[first];
            uint64_t target = o->version + VAL_ROT_PLUS;
            if (target > c->n)
                target = c->n;
            if (target > o->version) {
                uint64_t nv = 0;
                int rc;
                do
                    rc = shmstore_value_wait(v, target - 1, -1, &nv);
                while (rc == -EINTR);
                W_RC(rc, 0);
                W_CHECK(nv >= target);
            }
            uint64_t seq = 0;
            if (!pl_check(o->data, o->len, NULL, &seq) || seq != held_seq[first]) {
                fprintf(stderr, "pinned view changed: version %llu\n",
                        (unsigned long long)o->version);
                W_CHECK(!"bytes of a pinned view changed while newer versions were published");
            }
            shmstore_view_release(o);
            first = (first + 1) % N_HELD;
            n_held--;
            continue;
        }
        if (last >= c->n)
            break;
        shmstore_view_t *vw = &held[(first + n_held) % N_HELD];
        int rc = shmstore_value_view(v, vw);
        if (rc == SHMSTORE_ENOVALUE) {
            W_CHECK(last == 0);
            rc = shmstore_value_wait(v, 0, -1, NULL);
            W_CHECK(rc == 0 || rc == -EINTR);
            continue;
        }
        W_RC(rc, 0);
        uint64_t seq = 0;
        uint32_t wid = 0;
        W_CHECK(((uintptr_t)vw->data & 63u) == 0);
        W_CHECK(vw->len == c->len);
        if (!pl_check(vw->data, vw->len, &wid, &seq)) {
            fprintf(stderr, "torn view: version %llu\n", (unsigned long long)vw->version);
            W_CHECK(!"view returned a torn payload");
        }
        W_CHECK(seq == vw->version);
        W_CHECK(vw->version >= last);
        last = vw->version;
        held_seq[(first + n_held) % N_HELD] = seq;
        n_held++;
    }
    shmstore_value_close(v);
}

static void readers_writer_case(int mode, size_t len)
{
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    shmstore_t *s;
    struct ctx c;

    ctx_init(&c, mode, name, &s);
    snprintf(c.value, sizeof(c.value), "frames/%zu", len);
    c.len = len;
    c.n = n_versions(len);
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, c.value, SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v));
    shmstore_value_close(v);

    struct worker ws[] = {
        {&c, 1, w_writer}, {&c, 2, w_get_reader}, {&c, 3, w_get_reader}, {&c, 4, w_view_reader},
    };
    c.start = t_barrier_new(4);
    run_workers(&c, ws, 4);
    t_barrier_free(c.start);
    expect_final(s, c.value, c.n);
    t_cleanup(s, name);
}

static void test_mp_values_readers_never_torn_procs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        readers_writer_case(MODE_PROC, sizes[i]);
}

static void test_mp_values_readers_never_torn_threads(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        readers_writer_case(MODE_THREAD, sizes[i]);
}

/* ---- a waiter faster than the writer sees every version --------------------------- */

/* The writer makes each payload after the handshake (so the waiters are usually asleep
 * in the futex when it publishes), puts it, then waits on the barrier until every waiter
 * has seen and checked exactly that version. */
static void w_slow_writer(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    unsigned char *buf = malloc(c->len);
    W_CHECK(buf != NULL);

    t_barrier_wait(c->start);
    for (uint64_t seq = 1; seq <= c->n; seq++) {
        pl_fill(buf, c->len, w->id, seq);
        W_RC(shmstore_value_put(v, NULL, buf, c->len, 0), 0);
        t_barrier_wait(c->step);
    }
    free(buf);
    shmstore_value_close(v);
}

static void w_every_waiter(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    unsigned char *buf = malloc(BUF_CAP);
    W_CHECK(buf != NULL);

    t_barrier_wait(c->start);
    for (uint64_t k = 1; k <= c->n; k++) {
        uint64_t ver = 0, seq = 0, gver = 0;
        int rc;
        do
            rc = shmstore_value_wait(v, k - 1, -1, &ver);
        while (rc == -EINTR);
        W_RC(rc, 0);
        if (ver != k) {
            fprintf(stderr, "waiter %u: wait(after=%llu) returned version %llu\n", w->id,
                    (unsigned long long)(k - 1), (unsigned long long)ver);
            W_CHECK(ver == k);
        }
        size_t len = 0;
        W_RC(shmstore_value_get(v, NULL, buf, BUF_CAP, &len, &gver), 0);
        W_CHECK(gver == k);
        W_CHECK(len == c->len && pl_check(buf, len, NULL, &seq) && seq == k);
        /* The version number alone answers the same (one atomic load). */
        W_RC(shmstore_value_version(v, &gver), 0);
        W_CHECK(gver == k);
        t_barrier_wait(c->step);
    }
    free(buf);
    shmstore_value_close(v);
}

static void every_version_case(int mode, size_t len)
{
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    shmstore_t *s;
    struct ctx c;

    ctx_init(&c, mode, name, &s);
    snprintf(c.value, sizeof(c.value), "every/%zu", len);
    c.len = len;
    c.n = len > SZ_PAGE ? T_SCALE(200) : T_SCALE(2000);
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, c.value, SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v));
    shmstore_value_close(v);

    struct worker ws[] = {{&c, 1, w_slow_writer}, {&c, 2, w_every_waiter}, {&c, 3, w_every_waiter}};
    c.start = t_barrier_new(3);
    c.step = t_barrier_new(3);
    run_workers(&c, ws, 3);
    t_barrier_free(c.start);
    t_barrier_free(c.step);
    expect_final(s, c.value, c.n);
    t_cleanup(s, name);
}

static void test_mp_values_waiter_sees_every_version_procs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        every_version_case(MODE_PROC, sizes[i]);
}

static void test_mp_values_waiter_sees_every_version_threads(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        every_version_case(MODE_THREAD, sizes[i]);
}

/* ---- several writers ---------------------------------------------------------------- */

/* Each writer publishes c->n versions of its own numbered payloads, by put or by
 * reserve + commit (and aborts some reservations, which must publish nothing). Sizes
 * vary per put among the three frame sizes. */
static void w_multi_writer(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    unsigned char *buf = malloc(SZ_FRAME);
    W_CHECK(buf != NULL);
    uint64_t rnd = 0x1234567ull * w->id + 1;

    t_barrier_wait(c->start);
    for (uint64_t seq = 1; seq <= c->n; seq++) {
        uint64_t r = pl_rand(&rnd);
        size_t len = (r % 16 == 0) ? SZ_FRAME : (r % 2 ? SZ_PAGE : SZ_SMALL);
        if (r & 0x100) {
            pl_fill(buf, len, w->id, seq);
            W_RC(shmstore_value_put(v, NULL, buf, len, 0), 0);
        } else {
            void *p = NULL;
            if (r & 0x200) {
                /* A reservation that is abandoned publishes nothing. */
                W_RC(shmstore_value_reserve(v, NULL, len, 0, &p), 0);
                memset(p, 0xee, len);
                shmstore_value_abort(v);
            }
            W_RC(shmstore_value_reserve(v, NULL, len, 0, &p), 0);
            W_CHECK(((uintptr_t)p & 63u) == 0);
            pl_fill(p, len, w->id, seq);
            W_RC(shmstore_value_commit(v), 0);
        }
    }
    free(buf);
    shmstore_value_close(v);
}

/* Reads until the total number of versions is reached; per writer the sequence numbers
 * must never go down while versions go up, and every payload is whole. */
static void w_multi_reader(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    unsigned char *buf = malloc(BUF_CAP);
    W_CHECK(buf != NULL);
    uint64_t last_seq[8] = {0}, last = 0, total = c->n * c->n_writers;

    t_barrier_wait(c->start);
    while (last < total) {
        size_t len = 0;
        uint64_t ver = 0, seq = 0;
        uint32_t wid = 0;
        int rc = shmstore_value_get(v, NULL, buf, BUF_CAP, &len, &ver);
        if (rc == SHMSTORE_ENOVALUE) {
            rc = shmstore_value_wait(v, 0, -1, NULL);
            W_CHECK(rc == 0 || rc == -EINTR);
            continue;
        }
        W_RC(rc, 0);
        if (!pl_check(buf, len, &wid, &seq)) {
            fprintf(stderr, "torn get (multi-writer): version %llu len %zu\n",
                    (unsigned long long)ver, len);
            W_CHECK(!"get returned a torn payload");
        }
        W_CHECK(wid >= 1 && wid <= c->n_writers);
        W_CHECK(ver >= last);
        if (ver > last)
            W_CHECK(seq > last_seq[wid]); /* one writer's puts stay in order */
        else
            W_CHECK(seq == last_seq[wid]); /* same version: same payload */
        W_CHECK(ver <= total);
        last_seq[wid] = seq;
        last = ver;
    }
    free(buf);
    shmstore_value_close(v);
}

/* In-place read-modify-write under the writer lock: the payload's sequence number is a
 * shared counter; a lost update (two writers inside at once) shows as a final count
 * below n_writers * n. */
static void w_lock_counter(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);

    t_barrier_wait(c->start);
    for (uint64_t i = 0; i < c->n; i++) {
        void *data = NULL;
        size_t len = 0;
        shmstore_datum_t d;
        uint64_t seq = 0;
        W_RC(shmstore_value_lock(v, -1, &data, &len, &d), 0);
        W_CHECK(len == 64 && d.type == SHMSTORE_T_BYTES);
        W_CHECK(pl_check(data, len, NULL, &seq)); /* pre-filled with the current */
        pl_fill(data, len, w->id, seq + 1);
        W_RC(shmstore_value_unlock(v), 0);
    }
    shmstore_value_close(v);
}

static void multi_writer_case(int mode)
{
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    shmstore_t *s;
    struct ctx c;

    ctx_init(&c, mode, name, &s);
    snprintf(c.value, sizeof(c.value), "multi");
    c.n = T_SCALE(1500);
    c.n_writers = 3;
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, c.value, SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v));
    shmstore_value_close(v);

    struct worker ws[] = {{&c, 1, w_multi_writer}, {&c, 2, w_multi_writer},
                          {&c, 3, w_multi_writer}, {&c, 4, w_multi_reader}};
    c.start = t_barrier_new(4);
    run_workers(&c, ws, 4);
    /* Every commit made exactly one version: they strictly increased. */
    expect_final(s, c.value, c.n * c.n_writers);

    /* Lock / unlock counter. */
    unsigned char init[64];
    snprintf(c.value, sizeof(c.value), "counter");
    pl_fill(init, sizeof(init), 0, 0);
    T_OK(shmstore_put(s, c.value, NULL, init, sizeof(init), 0));
    c.n = T_SCALE(2000);
    struct worker ls[] = {{&c, 1, w_lock_counter}, {&c, 2, w_lock_counter},
                          {&c, 3, w_lock_counter}};
    t_barrier_free(c.start);
    c.start = t_barrier_new(3);
    run_workers(&c, ls, 3);
    t_barrier_free(c.start);
    unsigned char out[64];
    size_t len = 0;
    uint64_t ver = 0, seq = 0;
    T_OK(shmstore_get(s, c.value, NULL, out, sizeof(out), &len, &ver));
    assert_int_equal(len, 64);
    assert_true(pl_check(out, len, NULL, &seq));
    assert_int_equal(seq, 3 * c.n);    /* no lost update */
    assert_int_equal(ver, 1 + 3 * c.n); /* one version per unlock */
    expect_final(s, c.value, 1 + 3 * c.n);
    t_cleanup(s, name);
}

static void test_mp_values_writers_serialize_procs(void **state)
{
    (void)state;
    multi_writer_case(MODE_PROC);
}

static void test_mp_values_writers_serialize_threads(void **state)
{
    (void)state;
    multi_writer_case(MODE_THREAD);
}

/* ---- trigger and timeouts ----------------------------------------------------------- */

static void w_trigger_waiter(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    uint64_t before = 0, ver = 0;
    W_RC(shmstore_value_version(v, &before), 0);
    t_barrier_wait(c->start);
    int rc;
    do
        rc = shmstore_value_wait(v, before, -1, &ver);
    while (rc == -EINTR);
    W_RC(rc, 0);
    W_CHECK(ver == before + 1);
    /* Same data, new version. */
    unsigned char buf[SZ_PAGE];
    size_t len = 0;
    uint64_t gver = 0, seq = 0;
    uint32_t wid = 0;
    W_RC(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, &gver), 0);
    W_CHECK(gver == before + 1);
    W_CHECK(len == SZ_PAGE && pl_check(buf, len, &wid, &seq) && wid == 7 && seq == 41);
    shmstore_value_close(v);
}

static void w_trigger_waiter_empty(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = NULL;
    W_RC(shmstore_value_open(s, "empty", 0, &v), 0);
    uint64_t ver = 0;
    t_barrier_wait(c->start);
    int rc;
    do
        rc = shmstore_value_wait(v, 0, -1, &ver);
    while (rc == -EINTR);
    W_RC(rc, 0);
    W_CHECK(ver == 1);
    shmstore_datum_t d;
    size_t len = 99;
    char buf[8];
    W_RC(shmstore_value_get(v, &d, buf, sizeof(buf), &len, &ver), 0);
    W_CHECK(d.type == SHMSTORE_T_NONE && len == 0 && ver == 1);
    shmstore_value_close(v);
}

static void w_triggerer(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value), *e = NULL;
    W_RC(shmstore_value_open(s, "empty", 0, &e), 0);
    t_barrier_wait(c->start);
    W_RC(shmstore_value_trigger(v), 0);
    W_RC(shmstore_value_trigger(e), 0);
    shmstore_value_close(v);
    shmstore_value_close(e);
}

static void trigger_case(int mode)
{
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    shmstore_t *s;
    struct ctx c;

    ctx_init(&c, mode, name, &s);
    snprintf(c.value, sizeof(c.value), "signal");
    unsigned char buf[SZ_PAGE];
    pl_fill(buf, sizeof(buf), 7, 41);
    T_OK(shmstore_put(s, c.value, NULL, buf, sizeof(buf), 0));
    shmstore_value_t *e = NULL;
    T_OK(shmstore_value_open(s, "empty", SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &e));
    shmstore_value_close(e);

    for (int round = 0; round < T_SCALE(50); round++) {
        struct worker ws[] = {{&c, 1, w_trigger_waiter}, {&c, 2, w_trigger_waiter},
                              {&c, 3, w_trigger_waiter_empty}, {&c, 4, w_triggerer}};
        c.start = t_barrier_new(4);
        run_workers(&c, ws, 4);
        t_barrier_free(c.start);
        /* Reset "empty" to no version for the next round. */
        T_OK(shmstore_delete(s, "empty"));
        T_OK(shmstore_value_open(s, "empty", SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &e));
        shmstore_value_close(e);
    }
    expect_final(s, c.value, 1 + (uint64_t)T_SCALE(50));
    t_cleanup(s, name);
}

static void test_mp_values_trigger_wakes_waiters_procs(void **state)
{
    (void)state;
    trigger_case(MODE_PROC);
}

static void test_mp_values_trigger_wakes_waiters_threads(void **state)
{
    (void)state;
    trigger_case(MODE_THREAD);
}

static void w_timeout_waiter(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    uint64_t cur = 0, ver = 77;
    W_RC(shmstore_value_version(v, &cur), 0);
    t_barrier_wait(c->start);
    /* Nobody writes: a bounded wait times out and leaves *version alone. */
    W_RC(shmstore_value_wait(v, cur, 20 * 1000 * 1000, &ver), -ETIMEDOUT);
    W_CHECK(ver == 77);
    /* 0 never blocks. */
    W_RC(shmstore_value_wait(v, cur, 0, &ver), -ETIMEDOUT);
    /* Already newer: returns at once even with timeout 0. */
    W_RC(shmstore_value_wait(v, cur - 1, 0, &ver), 0);
    W_CHECK(ver == cur);
    /* Far in the future still times out (unsigned comparison must not wrap). */
    W_RC(shmstore_value_wait(v, cur + 1000, 1000 * 1000, NULL), -ETIMEDOUT);
    shmstore_value_close(v);
}

static void timeout_case(int mode)
{
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    shmstore_t *s;
    struct ctx c;

    ctx_init(&c, mode, name, &s);
    snprintf(c.value, sizeof(c.value), "quiet");
    unsigned char buf[SZ_SMALL];
    pl_fill(buf, sizeof(buf), 1, 1);
    T_OK(shmstore_put(s, c.value, NULL, buf, sizeof(buf), 0));
    struct worker ws[] = {{&c, 1, w_timeout_waiter}, {&c, 2, w_timeout_waiter}};
    c.start = t_barrier_new(2);
    run_workers(&c, ws, 2);
    t_barrier_free(c.start);
    expect_final(s, c.value, 1);
    t_cleanup(s, name);
}

static void test_mp_values_wait_timeout_procs(void **state)
{
    (void)state;
    timeout_case(MODE_PROC);
}

static void test_mp_values_wait_timeout_threads(void **state)
{
    (void)state;
    timeout_case(MODE_THREAD);
}

int main(void)
{
    /* Process tests first: they fork, and this process must have no threads then. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mp_values_readers_never_torn_procs),
        cmocka_unit_test(test_mp_values_waiter_sees_every_version_procs),
        cmocka_unit_test(test_mp_values_writers_serialize_procs),
        cmocka_unit_test(test_mp_values_trigger_wakes_waiters_procs),
        cmocka_unit_test(test_mp_values_wait_timeout_procs),
        cmocka_unit_test(test_mp_values_readers_never_torn_threads),
        cmocka_unit_test(test_mp_values_waiter_sees_every_version_threads),
        cmocka_unit_test(test_mp_values_writers_serialize_threads),
        cmocka_unit_test(test_mp_values_trigger_wakes_waiters_threads),
        cmocka_unit_test(test_mp_values_wait_timeout_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
