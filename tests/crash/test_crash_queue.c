/* test_crash_queue.c - kill -9 soaks of queues: a process working on a queue is killed
 * with a real SIGKILL at a random moment while a producer and a consumer keep working.
 *
 * Victims (one role per trial, drawn at random; 240 trials in all):
 *   push        pushing copies of 24 B .. 64 KiB
 *   reserve     reserve, fill, commit; in some trials parked between reserve and commit
 *   pop_view    popping views and holding up to four at once
 *   pop_copy    popping copies
 *   reader      read() / read_latest() views, holding up to four
 *   delete      deleting recent entries (with and without force)
 *   wait_pop    asleep in pop() on an empty queue
 *   wait_push   asleep in push() on a full queue
 * Each trial:
 *   1. the parent (attached throughout) measures the baseline (gc, then used bytes
 *      without the name index) and creates the queues;
 *   2. it forks the victim and two companions: a producer and a consumer that checks
 *      every entry it pops (whole, not torn; per producer in FIFO order, no duplicate);
 *   3. after a start barrier it sleeps a random 1 us .. 4 ms and kills the victim;
 *   4. the companions go on for a moment, the producer stops, and the consumer drains
 *      the queue: an entry the victim left mid-commit or mid-pop must not block it (its
 *      waits recover the dead process's cells) - a drain that times out fails the trial;
 *   5. the parent checks the queues work (a push and a pop on each, including the ones
 *      the waiters slept on, with no sleeper left registered), deletes them, runs gc and
 *      asserts used bytes are back to the baseline, only itself attached, and
 *      shmstore_check() clean.
 * The random seed is printed; SHMSTORE_TEST_SEED=<n> replays a run.
 */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "../mp/payload.h"
#include "internal.h"

#define STORE_CAP (256ull << 20)
#define N_TRIALS 240
#define MAX_LEN (64u << 10)
#define MS 1000000ll
#define DRAIN_TIMEOUT_MS 20000

enum role { R_PUSH, R_RESERVE, R_POP_VIEW, R_POP_COPY, R_READER, R_DELETE, R_WAIT_POP,
            R_WAIT_PUSH, R__COUNT };
static const char *const role_names[R__COUNT] = {"push", "reserve", "pop_view", "pop_copy",
                                                 "reader", "delete", "wait_pop", "wait_push"};

#define W_VICTIM 1u
#define W_COMP 2u

struct shared {
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    enum role role;
    uint64_t seed;
    _Atomic int stop_producer, stop_consumer;
    _Atomic int victim_ready;
    _Atomic uint64_t victim_iters, popped, bad;
    char why[256];
};

static uint64_t g_rnd;

static size_t rand_len(uint64_t *r)
{
    unsigned e = (unsigned)(pl_rand(r) % 12); /* 24 B .. 64 KiB, roughly log-uniform */
    size_t n = (size_t)24 << e;
    n += pl_rand(r) % n;
    return n > MAX_LEN ? MAX_LEN : n;
}

static void note_bad(struct shared *sh, const char *what)
{
    if (atomic_fetch_add(&sh->bad, 1) == 0)
        snprintf(sh->why, sizeof(sh->why), "%s", what);
}

static void attach(struct shared *sh, shmstore_t **s, shmstore_queue_t **q, const char *name)
{
    T_CHILD_RC(shmstore_open(sh->store, 0, NULL, s), 0);
    T_CHILD_RC(shmstore_queue_open(*s, name, 0, NULL, q), 0);
}

/* ---- the victim ------------------------------------------------------------------------ */

static void victim(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_queue_t *q;
    uint64_t r = sh->seed | 1, seq = 0;
    static unsigned char buf[MAX_LEN];
    shmstore_view_t views[4] = {{0}};
    const char *qname = sh->role == R_WAIT_POP ? "empty" : sh->role == R_WAIT_PUSH ? "full" : "q";
    attach(sh, &s, &q, qname);
    atomic_store(&sh->victim_ready, 1);
    for (;;) {
        size_t len = rand_len(&r);
        shmstore_queue_res_t res;
        uint64_t idx;
        int k = (int)(pl_rand(&r) % 4);
        switch (sh->role) {
        case R_PUSH:
            pl_fill(buf, len, W_VICTIM, seq);
            if (shmstore_queue_push(q, NULL, buf, len, 10 * MS, NULL) == 0)
                seq++;
            break;
        case R_RESERVE:
            if (shmstore_queue_reserve(q, NULL, len, &res) != 0)
                break;
            pl_fill(res.data, len, W_VICTIM, seq);
            if ((sh->seed & 7) == 0 && seq == 3)
                for (;;) /* parked holding a reservation */
                    pause();
            if (shmstore_queue_commit(q, &res, 10 * MS, NULL) == 0)
                seq++;
            else
                shmstore_queue_abort(q, &res);
            break;
        case R_POP_VIEW:
            shmstore_view_release(&views[k]);
            if (shmstore_queue_pop(q, 10 * MS, &views[k]) == 0 &&
                !pl_check(views[k].data, views[k].len, NULL, NULL))
                note_bad(sh, "victim popped a torn entry");
            break;
        case R_POP_COPY:
            if (shmstore_queue_pop_copy(q, 10 * MS, NULL, buf, sizeof(buf), &len, NULL) == 0 &&
                !pl_check(buf, len, NULL, NULL))
                note_bad(sh, "victim copied a torn entry");
            break;
        case R_READER: {
            shmstore_view_release(&views[k]);
            int rc = k & 1 ? shmstore_queue_read_latest(q, &views[k])
                           : shmstore_queue_read(q, seq++ % 4096, &views[k]);
            if (rc == 0 && !pl_check(views[k].data, views[k].len, NULL, NULL))
                note_bad(sh, "victim read a torn entry");
            break;
        }
        case R_DELETE: {
            shmstore_obj_info_t info;
            if (shmstore_queue_info(q, &info) == 0 && info.next_index > info.first_index) {
                idx = info.first_index + pl_rand(&r) % (info.next_index - info.first_index);
                shmstore_queue_delete(q, idx, (int)(pl_rand(&r) & 1));
            }
            break;
        }
        case R_WAIT_POP:
            shmstore_queue_pop(q, -1, &views[0]);
            break;
        case R_WAIT_PUSH:
            pl_fill(buf, 24, W_VICTIM, 0);
            shmstore_queue_push(q, NULL, buf, 24, -1, NULL);
            break;
        default:
            break;
        }
        atomic_fetch_add_explicit(&sh->victim_iters, 1, memory_order_relaxed);
    }
}

/* ---- companions ------------------------------------------------------------------------ */

static void comp_producer(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_queue_t *q;
    uint64_t r = (sh->seed ^ 0xabc) | 1, seq = 0;
    static unsigned char buf[MAX_LEN];
    attach(sh, &s, &q, "q");
    while (!atomic_load(&sh->stop_producer)) {
        size_t len = rand_len(&r);
        pl_fill(buf, len, W_COMP, seq);
        int rc = shmstore_queue_push(q, NULL, buf, len, 5 * MS, NULL);
        if (rc == 0)
            seq++;
        else if (rc != -ETIMEDOUT)
            T_CHILD_RC(rc, 0);
    }
    shmstore_queue_close(q);
    shmstore_close(s);
}

static void comp_consumer(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_queue_t *q;
    static unsigned char buf[MAX_LEN];
    uint64_t last[3] = {~0ull, ~0ull, ~0ull};
    attach(sh, &s, &q, "q");
    uint64_t start = 0;
    for (;;) {
        size_t len;
        int rc = shmstore_queue_pop_copy(q, 50 * MS, NULL, buf, sizeof(buf), &len, NULL);
        if (rc == -ETIMEDOUT) {
            uint64_t n = 1;
            if (atomic_load(&sh->stop_consumer) && shmstore_queue_count(q, &n) == 0 && n == 0)
                break;
            if (atomic_load(&sh->stop_consumer)) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
                if (!start)
                    start = now;
                else if (now - start > DRAIN_TIMEOUT_MS) {
                    note_bad(sh, "the queue never drained: an entry is stuck");
                    break;
                }
            }
            continue;
        }
        T_CHILD_RC(rc, 0);
        uint32_t w;
        uint64_t seq;
        if (!pl_check(buf, len, &w, &seq) || w > 2) {
            note_bad(sh, "companion popped a torn entry");
            continue;
        }
        /* FIFO per producer, no duplicate: sequence numbers only grow. */
        if (last[w] != ~0ull && seq <= last[w])
            note_bad(sh, "an entry came twice or out of order");
        last[w] = seq;
        atomic_fetch_add(&sh->popped, 1);
    }
    shmstore_queue_close(q);
    shmstore_close(s);
}

/* ---- the trials ------------------------------------------------------------------------ */

static uint64_t used_sans_index(shmstore_t *s)
{
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    struct blk_hdr *b = s->hdr->index_off ? shmstore__blk(s, s->hdr->index_off) : NULL;
    return st.used - (b ? b->size & BLK_SIZE_MASK : 0);
}

static int count_live(const shmstore_proc_info_t *p, void *arg)
{
    *(unsigned *)arg += 1;
    (void)p;
    return 0;
}

static shmstore_queue_t *make_queue(shmstore_t *s, const char *name, uint64_t cap)
{
    shmstore_queue_options_t o = {.capacity = cap, .full = SHMSTORE_QUEUE_BLOCK};
    shmstore_queue_t *q;
    T_OK(shmstore_queue_open(s, name, SHMSTORE_Q_CREATE | SHMSTORE_Q_EXCL, &o, &q));
    return q;
}

/* A queue the trial used still works: an entry goes in and comes out, promptly. */
static void check_works(shmstore_queue_t *q)
{
    unsigned char buf[64];
    size_t len;
    pl_fill(buf, 24, 3, 1);
    T_OK(shmstore_queue_push(q, NULL, buf, 24, 2000 * MS, NULL));
    T_OK(shmstore_queue_pop_copy(q, 2000 * MS, NULL, buf, sizeof(buf), &len, NULL));
    assert_true(pl_check(buf, len, NULL, NULL));
}

static void run_trial(shmstore_t *s, struct shared *sh, unsigned k, unsigned *per_role)
{
    T_OK(shmstore_gc(s, NULL));
    uint64_t base = used_sans_index(s);
    char store[sizeof(sh->store)];
    snprintf(store, sizeof(store), "%s", sh->store);
    memset(sh, 0, sizeof(*sh));
    snprintf(sh->store, sizeof(sh->store), "%s", store);
    sh->seed = pl_rand(&g_rnd);
    sh->role = (enum role)(sh->seed % R__COUNT);
    per_role[sh->role]++;

    shmstore_queue_t *q = make_queue(s, "q", 16 + sh->seed % 64);
    shmstore_queue_t *e = make_queue(s, "empty", 4);
    shmstore_queue_t *f = make_queue(s, "full", 1);
    unsigned char one[24];
    pl_fill(one, 24, 3, 0);
    T_OK(shmstore_queue_push(f, NULL, one, 24, 0, NULL));

    pid_t prod = t_fork(comp_producer, sh);
    pid_t cons = t_fork(comp_consumer, sh);
    pid_t vic = t_fork(victim, sh);
    while (!atomic_load(&sh->victim_ready)) {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
    unsigned e_pow = (unsigned)(pl_rand(&g_rnd) % 12);
    uint64_t delay = (1000ull << e_pow) + pl_rand(&g_rnd) % (1000ull << e_pow);
    struct timespec ts = {0, (long)delay};
    nanosleep(&ts, NULL);
    kill(vic, SIGKILL);
    assert_int_equal(t_wait_child(vic, 10000), 128 + SIGKILL);

    atomic_store(&sh->stop_producer, 1);
    assert_int_equal(t_wait_child(prod, 20000), 0);
    atomic_store(&sh->stop_consumer, 1);
    int rc = t_wait_child(cons, DRAIN_TIMEOUT_MS + 10000);
    if (rc != 0 || atomic_load(&sh->bad))
        fail_msg("trial %u (victim %s, seed %llu): consumer exit %d: %s", k,
                 role_names[sh->role], (unsigned long long)sh->seed, rc, sh->why);

    check_works(q);
    T_OK(shmstore_queue_pop_copy(f, 2000 * MS, NULL, one, sizeof(one), NULL, NULL));
    check_works(f);
    check_works(e);
    /* The dead process is recovered by now (a companion's timed-out wait met one of its
     * cells) or by this gc; the companions exited cleanly. */
    shmstore_gc_stats_t st;
    T_OK(shmstore_gc(s, &st));
    assert_true(st.dead_procs <= 1);
    shmstore_obj_info_t info;
    T_OK(shmstore_queue_info(e, &info));
    assert_int_equal(info.consumers_waiting, 0); /* the dead sleeper's bit is gone */
    T_OK(shmstore_queue_info(f, &info));
    assert_int_equal(info.producers_waiting, 0);
    T_OK(shmstore_queue_info(q, &info));
    assert_int_equal(info.count, 0);

    shmstore_queue_close(q);
    shmstore_queue_close(e);
    shmstore_queue_close(f);
    T_OK(shmstore_delete(s, "q"));
    T_OK(shmstore_delete(s, "empty"));
    T_OK(shmstore_delete(s, "full"));
    T_OK(shmstore_gc(s, NULL));
    uint64_t used = used_sans_index(s);
    if (used != base)
        fail_msg("trial %u (victim %s, seed %llu): %llu bytes used after gc, %llu before", k,
                 role_names[sh->role], (unsigned long long)sh->seed, (unsigned long long)used,
                 (unsigned long long)base);
    unsigned n_procs = 0;
    T_OK(shmstore_procs(s, count_live, &n_procs));
    assert_int_equal(n_procs, 1);
    t_assert_clean(s);
}

static void test_crash_queue_kills(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, STORE_CAP);
    struct shared *sh = t_shared_alloc(sizeof(*sh));
    snprintf(sh->store, sizeof(sh->store), "%s", name);
    unsigned per_role[R__COUNT] = {0};
    for (unsigned k = 0; k < N_TRIALS; k++)
        run_trial(s, sh, k, per_role);
    for (unsigned i = 0; i < R__COUNT; i++)
        print_message("  victim %-9s %u trials\n", role_names[i], per_role[i]);
    t_shared_free(sh, sizeof(*sh));
    t_cleanup(s, name);
}

int main(void)
{
    const char *env = getenv("SHMSTORE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    printf("test_crash_queue: SHMSTORE_TEST_SEED=%llu\n", (unsigned long long)seed);
    g_rnd = seed | 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_queue_kills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
