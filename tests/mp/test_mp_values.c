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
 * - wait times out with -ETIMEDOUT, and 0 never blocks; a signal makes it return -EINTR;
 *   lock with a timeout against a live holder returns -ETIMEDOUT without blocking readers;
 * - a value deleted while others read or wait on it gives them -ESTALE (never another
 *   error), and views taken before stay intact;
 * - views stay correct while the writer's blocks are replaced and other values churn
 *   through the freed memory (and those other values are never damaged);
 * - handles opened before fork() return SHMSTORE_EFORK in the child, and closing them
 *   there does not detach the parent.
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
    shmstore_value_t *shared_v; /* thread mode: one value handle the get readers share */
    size_t len;           /* payload size (single-size tests) */
    uint64_t n;           /* versions the writer publishes / per-writer operations */
    uint32_t n_writers;
    t_barrier_t *start;   /* every worker arrives once before its loop */
    t_barrier_t *step;    /* every-version handshake */
    _Atomic int *stop;    /* shared (MAP_SHARED) stop flag for open-ended workers */
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
    /* Threads share one handle (handles may be used from any thread); processes open. */
    shmstore_value_t *v = c->shared_v ? c->shared_v : open_value(s, c->value);
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
    if (v != c->shared_v)
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
    if (mode == MODE_THREAD)
        c.shared_v = v;
    else
        shmstore_value_close(v);

    struct worker ws[] = {
        {&c, 1, w_writer}, {&c, 2, w_get_reader}, {&c, 3, w_get_reader}, {&c, 4, w_view_reader},
    };
    c.start = t_barrier_new(4);
    run_workers(&c, ws, 4);
    t_barrier_free(c.start);
    if (c.shared_v)
        shmstore_value_close(c.shared_v);
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

/* Lock with a timeout against a live holder: -ETIMEDOUT, and readers are not blocked. */
static void w_lock_holder(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    void *data = NULL;
    size_t len = 0;
    shmstore_datum_t d;
    W_RC(shmstore_value_lock(v, -1, &data, &len, &d), 0);
    W_CHECK(len == SZ_SMALL);
    pl_fill(data, len, 2, 2);
    t_barrier_wait(c->step); /* 1: locked */
    t_barrier_wait(c->step); /* 2: the other one timed out */
    W_RC(shmstore_value_unlock(v), 0);
    shmstore_value_close(v);
}

static void w_lock_contender(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, c->value);
    void *data = NULL;
    size_t len = 0;
    uint64_t ver = 0, seq = 0;
    shmstore_datum_t d;
    unsigned char buf[SZ_PAGE];
    t_barrier_wait(c->step); /* 1 */
    W_RC(shmstore_value_lock(v, 10 * 1000 * 1000, &data, &len, &d), -ETIMEDOUT);
    W_RC(shmstore_value_lock(v, 0, &data, &len, &d), -ETIMEDOUT);
    /* Readers still read the previous version while the lock is held. */
    W_RC(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, &ver), 0);
    W_CHECK(ver == 1 && pl_check(buf, len, NULL, &seq) && seq == 1);
    t_barrier_wait(c->step); /* 2 */
    /* The failed attempts left nothing behind: this one waits for the unlock. */
    W_RC(shmstore_value_lock(v, -1, &data, &len, &d), 0);
    W_CHECK(pl_check(data, len, NULL, &seq) && seq == 2);
    pl_fill(data, len, 3, 3);
    W_RC(shmstore_value_unlock(v), 0);
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

    struct worker ls[] = {{&c, 1, w_lock_holder}, {&c, 2, w_lock_contender}};
    c.step = t_barrier_new(2);
    run_workers(&c, ls, 2);
    t_barrier_free(c.step);
    expect_final(s, c.value, 3);
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

/* ---- deleting a value while others read it ---------------------------------------- */

/* One worker creates and deletes the value "x" in a loop; the others open it and read
 * through their handle until it is gone. The header allows exactly: get -> 0,
 * SHMSTORE_ENOVALUE, -ESTALE; view -> the same (+ ELEASES, not expected here); and a
 * view taken before the deletion stays intact. */
static void w_deleter(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    unsigned char buf[SZ_PAGE];
    t_barrier_wait(c->start);
    for (uint64_t i = 1; i <= c->n; i++) {
        pl_fill(buf, (i & 1) ? SZ_PAGE : SZ_SMALL, w->id, i);
        W_RC(shmstore_put(s, "x", NULL, buf, (i & 1) ? SZ_PAGE : SZ_SMALL, 0), 0);
        if (i % 3 == 0)
            W_RC(shmstore_put(s, "x", NULL, buf, (i & 1) ? SZ_PAGE : SZ_SMALL, 0), 0);
        W_RC(shmstore_delete(s, "x"), 0);
    }
    atomic_store(c->stop, 1);
}

static void w_del_reader(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    _Atomic int *stop = c->stop;
    unsigned char buf[SZ_PAGE];
    t_barrier_wait(c->start);
    while (!atomic_load(stop)) {
        shmstore_value_t *v = NULL;
        int rc = shmstore_value_open(s, "x", 0, &v);
        if (rc == -ENOENT)
            continue;
        W_RC(rc, 0);
        shmstore_view_t vw;
        int have_view = 0;
        for (int i = 0; i < 64; i++) {
            size_t len = 0;
            rc = shmstore_value_get(v, NULL, buf, sizeof(buf), &len, NULL);
            if (!(rc == 0 || rc == SHMSTORE_ENOVALUE || rc == -ESTALE)) {
                fprintf(stderr, "get on a value being deleted: %d (%s): %s\n", rc,
                        shmstore_err_name(rc), shmstore_errmsg());
                W_CHECK(!"get returned a code the header does not allow");
            }
            if (rc == 0)
                W_CHECK(pl_check(buf, len, NULL, NULL));
            if (rc == -ESTALE)
                break;
            if (!have_view) {
                rc = shmstore_value_view(v, &vw);
                if (!(rc == 0 || rc == SHMSTORE_ENOVALUE || rc == -ESTALE)) {
                    fprintf(stderr, "view on a value being deleted: %d (%s): %s\n", rc,
                            shmstore_err_name(rc), shmstore_errmsg());
                    W_CHECK(!"view returned a code the header does not allow");
                }
                if (rc == 0) {
                    W_CHECK(pl_check(vw.data, vw.len, NULL, NULL));
                    have_view = 1;
                }
                if (rc == -ESTALE)
                    break;
            }
        }
        shmstore_value_close(v);
        if (have_view) {
            /* Still intact after the handle is closed and the value deleted. */
            W_CHECK(pl_check(vw.data, vw.len, NULL, NULL));
            shmstore_view_release(&vw);
        }
    }
}

/* A waiter sleeping on a value that gets deleted wakes with -ESTALE. */
static void w_del_waiter(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, "w");
    uint64_t cur = 0;
    W_RC(shmstore_value_version(v, &cur), 0);
    t_barrier_wait(c->start);
    int rc;
    do
        rc = shmstore_value_wait(v, cur, -1, NULL);
    while (rc == -EINTR);
    W_RC(rc, -ESTALE);
    shmstore_value_close(v);
}

static void w_del_after_start(struct worker *w, shmstore_t *s)
{
    t_barrier_wait(w->c->start);
    W_RC(shmstore_delete(s, "w"), 0);
}

static void delete_case(int mode)
{
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    shmstore_t *s;
    struct ctx c;

    ctx_init(&c, mode, name, &s);
    c.n = T_SCALE(10000);
    c.stop = t_shared_alloc(4096);
    struct worker ws[] = {{&c, 1, w_deleter}, {&c, 2, w_del_reader}, {&c, 3, w_del_reader}};
    c.start = t_barrier_new(3);
    run_workers(&c, ws, 3);
    t_barrier_free(c.start);
    t_shared_free((void *)c.stop, 4096);
    unsigned char buf[SZ_SMALL];
    for (int round = 0; round < T_SCALE(20); round++) {
        pl_fill(buf, sizeof(buf), 1, 1);
        T_OK(shmstore_put(s, "w", NULL, buf, sizeof(buf), 0));
        struct worker wd[] = {{&c, 1, w_del_waiter}, {&c, 2, w_del_waiter},
                              {&c, 3, w_del_after_start}};
        c.start = t_barrier_new(3);
        run_workers(&c, wd, 3);
        t_barrier_free(c.start);
    }
    T_OK(shmstore_gc(s, NULL));
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 0);
    t_assert_clean(s);
    t_cleanup(s, name);
}

static void test_mp_values_delete_while_reading_procs(void **state)
{
    (void)state;
    delete_case(MODE_PROC);
}

static void test_mp_values_delete_while_reading_threads(void **state)
{
    (void)state;
    delete_case(MODE_THREAD);
}

/* ---- views while the writer's blocks move ------------------------------------------ */

/* The writer of "a" grows and shrinks its payload, so its version blocks are replaced
 * (released, freed, merged) all the time, while a churn worker creates and deletes other
 * values whose blocks reuse that memory, and readers view "a" as fast as they can. A view
 * pins the block it found; a stale pin must never write into memory that now belongs to
 * another block (that would flip bits in someone else's payload), and view may only
 * return what the header allows. Every churn value is re-read and checked. */
static void w_growing_writer(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, "a");
    unsigned char *buf = malloc(256u << 10);
    W_CHECK(buf != NULL);
    t_barrier_wait(c->start);
    for (uint64_t seq = 1; seq <= c->n; seq++) {
        size_t len = (size_t)64 << (seq % 12); /* 64 B .. 128 KiB, growing then back */
        pl_fill(buf, len, w->id, seq);
        W_RC(shmstore_value_put(v, NULL, buf, len, 0), 0);
    }
    atomic_store(c->stop, 1);
    free(buf);
    shmstore_value_close(v);
}

static void w_churn(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    unsigned char *buf = malloc(64u << 10), *rb = malloc(64u << 10);
    W_CHECK(buf && rb);
    uint64_t r = 77, seqs[16] = {0};
    size_t lens[16] = {0};
    char name[32];
    t_barrier_wait(c->start);
    for (uint64_t i = 1; !atomic_load(c->stop); i++) {
        unsigned k = (unsigned)(pl_rand(&r) % 16);
        snprintf(name, sizeof(name), "churn/%u", k);
        if (seqs[k] && pl_rand(&r) % 3 == 0) {
            W_RC(shmstore_delete(s, name), 0);
            seqs[k] = 0;
            continue;
        }
        size_t len = 24 + (size_t)(pl_rand(&r) % ((64u << 10) - 24));
        pl_fill(buf, len, w->id, i);
        W_RC(shmstore_put(s, name, NULL, buf, len, 0), 0);
        seqs[k] = i;
        lens[k] = len;
        /* Everything this worker owns still reads back exactly. */
        for (unsigned j = 0; j < 16; j++) {
            if (!seqs[j])
                continue;
            size_t got = 0;
            uint64_t seq = 0;
            snprintf(name, sizeof(name), "churn/%u", j);
            W_RC(shmstore_get(s, name, NULL, rb, 64u << 10, &got, NULL), 0);
            if (got != lens[j] || !pl_check(rb, got, NULL, &seq) || seq != seqs[j]) {
                fprintf(stderr, "churn/%u: %zu bytes, seq %llu expected; got %zu bytes that %s\n",
                        j, lens[j], (unsigned long long)seqs[j], got,
                        pl_check(rb, got, NULL, &seq) ? "are another version" : "are damaged");
                W_CHECK(!"a value not written by anyone else changed");
            }
        }
    }
    for (unsigned j = 0; j < 16; j++) {
        if (seqs[j]) {
            snprintf(name, sizeof(name), "churn/%u", j);
            W_RC(shmstore_delete(s, name), 0);
        }
    }
    free(buf);
    free(rb);
}

static void w_mover_viewer(struct worker *w, shmstore_t *s)
{
    struct ctx *c = w->c;
    shmstore_value_t *v = open_value(s, "a");
    t_barrier_wait(c->start);
    while (!atomic_load(c->stop)) {
        shmstore_view_t vw;
        int rc = shmstore_value_view(v, &vw);
        if (rc == SHMSTORE_ENOVALUE)
            continue;
        if (rc != 0) {
            fprintf(stderr, "view of a value whose blocks move: %d (%s): %s\n", rc,
                    shmstore_err_name(rc), shmstore_errmsg());
            W_CHECK(!"view returned a code the header does not allow");
        }
        W_CHECK(pl_check(vw.data, vw.len, NULL, NULL));
        shmstore_view_release(&vw);
    }
    shmstore_value_close(v);
}

static void moving_blocks_case(int mode)
{
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    shmstore_t *s;
    struct ctx c;

    ctx_init(&c, mode, name, &s);
    c.n = T_SCALE(20000);
    c.stop = t_shared_alloc(4096);
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "a", SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v));
    shmstore_value_close(v);
    struct worker ws[] = {{&c, 1, w_growing_writer}, {&c, 2, w_churn}, {&c, 3, w_mover_viewer},
                          {&c, 4, w_mover_viewer}};
    c.start = t_barrier_new(4);
    run_workers(&c, ws, 4);
    t_barrier_free(c.start);
    t_shared_free((void *)c.stop, 4096);
    expect_final(s, "a", c.n);
    T_OK(shmstore_delete(s, "a"));
    T_OK(shmstore_gc(s, NULL));
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 0);
    t_cleanup(s, name);
}

static void test_mp_values_views_while_blocks_move_procs(void **state)
{
    (void)state;
    moving_blocks_case(MODE_PROC);
}

static void test_mp_values_views_while_blocks_move_threads(void **state)
{
    (void)state;
    moving_blocks_case(MODE_THREAD);
}

/* ---- a signal interrupts a wait -------------------------------------------------- */

static void on_usr1(int sig)
{
    (void)sig;
}

struct eintr_shared {
    _Atomic int got_eintr;
    _Atomic int other_rc;
};

static struct eintr_shared *g_eintr;
static char g_eintr_store[SHMSTORE_STORE_NAME_MAX + 1];

static void eintr_waiter(void *arg)
{
    t_barrier_t *ready = arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    shmstore_t *s = NULL;
    W_RC(shmstore_open(g_eintr_store, 0, NULL, &s), 0);
    shmstore_value_t *v = open_value(s, "sig");
    uint64_t cur = 0;
    W_RC(shmstore_value_version(v, &cur), 0);
    t_barrier_wait(ready);
    for (;;) {
        int rc = shmstore_value_wait(v, cur, -1, NULL);
        if (rc == -EINTR) {
            atomic_store(&g_eintr->got_eintr, 1);
            break;
        }
        atomic_store(&g_eintr->other_rc, rc);
        W_CHECK(!"wait on a value nobody writes returned without -EINTR");
    }
    shmstore_value_close(v);
    shmstore_close(s);
}

/* The header: wait returns -EINTR when a signal arrives (so that the caller's handler can
 * act); the os layer must not retry the futex wait behind its back. The parent cannot
 * know when the waiter is asleep, so it signals repeatedly until the waiter reports. */
static void test_mp_values_wait_eintr_procs(void **state)
{
    (void)state;
    t_store_name(g_eintr_store, sizeof(g_eintr_store));
    shmstore_t *s = t_open_new(g_eintr_store, 16u << 20);
    unsigned char buf[SZ_SMALL];
    pl_fill(buf, sizeof(buf), 1, 1);
    T_OK(shmstore_put(s, "sig", NULL, buf, sizeof(buf), 0));
    g_eintr = t_shared_alloc(sizeof(*g_eintr));
    t_barrier_t *ready = t_barrier_new(2);
    pid_t pid = t_fork(eintr_waiter, ready);
    t_barrier_wait(ready);
    struct timespec t0, now, pace = {0, 200 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n_signals = 0;
    while (!atomic_load(&g_eintr->got_eintr)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20)
            break;
        kill(pid, SIGUSR1);
        n_signals++;
        nanosleep(&pace, NULL); /* pacing the retries, not synchronisation */
    }
    int got = atomic_load(&g_eintr->got_eintr);
    if (!got) {
        print_message("wait never returned -EINTR after %d signals\n", n_signals);
        kill(pid, SIGKILL);
    }
    int st = t_wait_child(pid, CHILD_TIMEOUT_MS);
    assert_true(got);
    assert_int_equal(st, 0);
    t_barrier_free(ready);
    t_shared_free(g_eintr, sizeof(*g_eintr));
    expect_final(s, "sig", 1);
    t_cleanup(s, g_eintr_store);
}

/* ---- handles across fork ------------------------------------------------------------ */

struct fork_args {
    shmstore_t *s;
    shmstore_value_t *v;
    const char *store;
};

static void fork_child(void *arg)
{
    struct fork_args *a = arg;
    unsigned char buf[SZ_PAGE];
    size_t len = 0;
    uint64_t ver = 0;
    shmstore_view_t vw;
    pl_fill(buf, SZ_PAGE, 5, 5);
    /* The parent's handles are not ours: every operation says so. */
    W_RC(shmstore_value_get(a->v, NULL, buf, sizeof(buf), &len, &ver), SHMSTORE_EFORK);
    W_RC(shmstore_value_put(a->v, NULL, buf, SZ_PAGE, 0), SHMSTORE_EFORK);
    W_RC(shmstore_value_view(a->v, &vw), SHMSTORE_EFORK);
    W_RC(shmstore_value_wait(a->v, 0, 0, NULL), SHMSTORE_EFORK);
    W_RC(shmstore_value_trigger(a->v), SHMSTORE_EFORK);
    W_RC(shmstore_put(a->s, "other", NULL, buf, SZ_PAGE, 0), SHMSTORE_EFORK);
    shmstore_stat_t st;
    W_RC(shmstore_stat(a->s, &st), SHMSTORE_EFORK);
    /* Closing them here must not detach the parent (its slot, leases and lock stay). */
    shmstore_value_close(a->v);
    shmstore_close(a->s);
    /* Reopening works. */
    shmstore_t *s = NULL;
    W_RC(shmstore_open(a->store, 0, NULL, &s), 0);
    shmstore_value_t *v = open_value(s, "forked");
    W_RC(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, &ver), 0);
    W_CHECK(ver == 1 && pl_check(buf, len, NULL, NULL));
    pl_fill(buf, SZ_PAGE, 6, 2);
    W_RC(shmstore_value_put(v, NULL, buf, SZ_PAGE, 0), 0);
    shmstore_value_close(v);
    shmstore_close(s);
}

static int count_alive_procs(const shmstore_proc_info_t *info, void *arg)
{
    if (info->is_alive)
        (*(int *)arg)++;
    return 0;
}

static int self_leases(const shmstore_proc_info_t *info, void *arg)
{
    if (info->is_self)
        *(uint32_t *)arg = info->n_leases;
    return 0;
}

static void test_mp_values_handles_across_fork(void **state)
{
    (void)state;
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16u << 20);
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "forked", SHMSTORE_V_CREATE, &v));
    unsigned char buf[SZ_PAGE];
    pl_fill(buf, SZ_PAGE, 1, 1);
    T_OK(shmstore_value_put(v, NULL, buf, SZ_PAGE, 0));
    shmstore_view_t vw;
    T_OK(shmstore_value_view(v, &vw)); /* a lease the child must not drop */

    uint32_t leases_before = 0, leases_after = 0;
    T_OK(shmstore_procs(s, self_leases, &leases_before));
    assert_true(leases_before >= 2); /* the value handle and the view */

    struct fork_args a = {s, v, name};
    int st = t_wait_child(t_fork(fork_child, &a), CHILD_TIMEOUT_MS);
    assert_int_equal(st, 0);
    T_OK(shmstore_procs(s, self_leases, &leases_after));
    assert_int_equal(leases_after, leases_before);

    /* The parent is still attached and its handles and view still work. */
    int n_alive = 0;
    T_OK(shmstore_procs(s, count_alive_procs, &n_alive));
    assert_int_equal(n_alive, 1);
    uint64_t seq = 0;
    assert_true(pl_check(vw.data, vw.len, NULL, &seq) && seq == 1);
    shmstore_gc_stats_t gst;
    T_OK(shmstore_gc(s, &gst)); /* the parent is alive: nothing of it is reclaimed */
    assert_int_equal(gst.dead_procs, 0);
    assert_true(pl_check(vw.data, vw.len, NULL, &seq) && seq == 1);
    size_t len = 0;
    uint64_t ver = 0;
    T_OK(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, &ver));
    assert_int_equal(ver, 2);
    pl_fill(buf, SZ_PAGE, 1, 3);
    T_OK(shmstore_value_put(v, NULL, buf, SZ_PAGE, 0));
    shmstore_view_release(&vw);
    shmstore_value_close(v);
    expect_final(s, "forked", 3);
    t_cleanup(s, name);
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
        cmocka_unit_test(test_mp_values_wait_eintr_procs),
        cmocka_unit_test(test_mp_values_handles_across_fork),
        cmocka_unit_test(test_mp_values_delete_while_reading_procs),
        cmocka_unit_test(test_mp_values_views_while_blocks_move_procs),
        cmocka_unit_test(test_mp_values_readers_never_torn_threads),
        cmocka_unit_test(test_mp_values_waiter_sees_every_version_threads),
        cmocka_unit_test(test_mp_values_writers_serialize_threads),
        cmocka_unit_test(test_mp_values_trigger_wakes_waiters_threads),
        cmocka_unit_test(test_mp_values_wait_timeout_threads),
        cmocka_unit_test(test_mp_values_delete_while_reading_threads),
        cmocka_unit_test(test_mp_values_views_while_blocks_move_threads),
    };
    /* SHMSTORE_TEST_FILTER=<glob> runs only the matching tests (for replaying one). */
    if (getenv("SHMSTORE_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHMSTORE_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
