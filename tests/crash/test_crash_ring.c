/* test_crash_ring.c - kill -9 soaks of rings: a process working on a ring is killed with
 * a real SIGKILL at a random moment while a checking reader (and, unless the victim is
 * the writer, a writer) keep working.
 *
 * Victims (one role per trial, drawn at random; 240 trials in all):
 *   writer      streaming a ramp in chunks of 1..600 frames (some larger than the
 *               capacity), reconfiguring every few thousand frames (killed mid-write,
 *               mid-copy, mid-reconfiguration: with the metadata mutex held, or between
 *               publishing a generation and dropping the old one)
 *   views       a reader holding up to four views, across generations
 *   waiter      a reader asleep in shmstore_ring_wait()
 * Each trial:
 *   1. the parent (attached throughout) measures the baseline (gc, then used bytes
 *      without the name index) and creates the ring;
 *   2. it forks the victim and the companions: a reader that checks every frame it gets
 *      against the ramp (frame p holds p * 1000 + j) and that its positions add up (every
 *      frame is delivered or counted lost, never both, never torn unreported), and a
 *      writer when the victim is not one;
 *   3. it sleeps a random 1 us .. 4 ms and kills the victim;
 *   4. a writer (the companion, or a new one when the victim was the writer: it must get
 *      the dead writer's role) writes on for a while, from the ring's total;
 *   5. the checker reads to the end; the parent deletes the ring, runs gc and asserts
 *      used bytes are back to the baseline, only itself attached, shmstore_check() clean.
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

#define STORE_CAP (128ull << 20)
#define N_TRIALS 240
#define MS 1000000ll
#define MAX_CHUNK 600
#define MAX_WIDTH 6

enum role { R_WRITER, R_VIEWS, R_WAITER, R__COUNT };
static const char *const role_names[R__COUNT] = {"writer", "views", "waiter"};

struct shared {
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    enum role role;
    uint64_t seed;
    _Atomic int stop_writer, stop_reader, victim_ready;
    _Atomic uint64_t final_total; /* set by the parent once the last writer stopped... */
    _Atomic int has_final;        /* ...and then this */
    _Atomic uint64_t got, lost, bad, gens;
    char why[256];
};

static uint64_t g_rnd;

static void note_bad(struct shared *sh, const char *what)
{
    if (atomic_fetch_add(&sh->bad, 1) == 0)
        snprintf(sh->why, sizeof(sh->why), "%s", what);
}

static shmstore_ring_config_t layout(uint64_t *width, uint64_t cap)
{
    shmstore_ring_config_t c;
    memset(&c, 0, sizeof(c));
    shmstore_datum_init_array(&c.frame, "<u8", 1, width);
    c.capacity = cap;
    return c;
}

static void attach(struct shared *sh, shmstore_t **s, shmstore_ring_t **r, unsigned flags)
{
    T_CHILD_RC(shmstore_open(sh->store, 0, NULL, s), 0);
    T_CHILD_RC(shmstore_ring_open(*s, "r", flags, NULL, r), 0);
}

static bool ramp_ok(const uint64_t *f, uint64_t first, uint64_t n, uint64_t width)
{
    for (uint64_t k = 0; k < n; k++)
        for (uint64_t j = 0; j < width; j++)
            if (f[k * width + j] != (first + k) * 1000 + j)
                return false;
    return true;
}

/* Write the ramp on from the ring's total until told to stop (or forever). */
static void write_loop(struct shared *sh, shmstore_ring_t *r, uint64_t rs, bool is_victim)
{
    static uint64_t buf[MAX_CHUNK * MAX_WIDTH];
    uint64_t since = 0;
    if (is_victim)
        atomic_store(&sh->victim_ready, 1);
    while (is_victim || !atomic_load(&sh->stop_writer)) {
        shmstore_ring_state_t st;
        T_CHILD_RC(shmstore_ring_state(r, &st), 0);
        uint64_t width = st.cfg.frame.shape[0], n = 1 + pl_rand(&rs) % MAX_CHUNK;
        for (uint64_t k = 0; k < n; k++)
            for (uint64_t j = 0; j < width; j++)
                buf[k * width + j] = (st.total + k) * 1000 + j;
        T_CHILD_RC(shmstore_ring_write(r, buf, n), 0);
        since += n;
        if (since > 2000 + pl_rand(&rs) % 4000) {
            since = 0;
            uint64_t w = 2 + pl_rand(&rs) % (MAX_WIDTH - 1);
            shmstore_ring_config_t c = layout(&w, 50 + pl_rand(&rs) % 400);
            T_CHILD_RC(shmstore_ring_reconfigure(r, &c), 0);
        }
    }
}

/* ---- processes ---------------------------------------------------------------------- */

static void victim(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_ring_t *r;
    uint64_t rs = sh->seed | 1, cursor = 0;
    shmstore_ring_view_t views[4];
    memset(views, 0, sizeof(views));
    attach(sh, &s, &r, sh->role == R_WRITER ? SHMSTORE_R_WRITER : 0);
    if (sh->role == R_WRITER)
        write_loop(sh, r, rs, true);
    atomic_store(&sh->victim_ready, 1);
    for (;;) {
        int k = (int)(pl_rand(&rs) % 4), rc;
        if (sh->role == R_WAITER) {
            uint64_t t = 0;
            shmstore_ring_total(r, &t);
            shmstore_ring_wait(r, t + (1ull << 40), -1, NULL); /* never satisfied */
            shmstore_ring_follow(r);
            continue;
        }
        shmstore_ring_view_release(&views[k]);
        rc = shmstore_ring_view_since(r, cursor, 1 + pl_rand(&rs) % 200, &views[k]);
        if (rc == SHMSTORE_EGENERATION)
            T_CHILD_RC(shmstore_ring_follow(r), 1);
        else if (rc == 0)
            cursor = views[k].span.cursor;
        else
            T_CHILD_RC(rc, 0);
    }
}

static void comp_writer(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_ring_t *r;
    attach(sh, &s, &r, 0);
    /* The victim writer may still hold the role (killed but not yet recovered): the
     * first write retries until the role is ours. Once dead, it is reclaimed. */
    for (int tries = 0;; tries++) {
        int rc = shmstore_ring_write(r, NULL, 0);
        if (rc == 0)
            break;
        T_CHILD_CHECK(rc == -EBUSY && tries < 200000);
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    write_loop(sh, r, (sh->seed ^ 0x5eed) | 1, false);
    shmstore_ring_close(r);
    shmstore_close(s);
}

static void comp_reader(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_ring_t *r;
    static uint64_t buf[400 * MAX_WIDTH];
    attach(sh, &s, &r, 0);
    uint64_t cursor = 0;
    for (;;) {
        shmstore_ring_state_t st;
        shmstore_ring_span_t sp;
        T_CHILD_RC(shmstore_ring_state(r, &st), 0);
        int rc = shmstore_ring_read_since(r, cursor, buf, 400, &sp);
        if (rc == SHMSTORE_EGENERATION) {
            T_CHILD_RC(shmstore_ring_follow(r), 1);
            atomic_fetch_add(&sh->gens, 1);
            continue;
        }
        T_CHILD_RC(rc, 0);
        if (!ramp_ok(buf, sp.first, sp.n, st.cfg.frame.shape[0]))
            note_bad(sh, "the checker got a torn or wrong frame");
        if (sp.first != cursor + sp.lost || sp.cursor != sp.first + sp.n)
            note_bad(sh, "positions do not add up");
        atomic_fetch_add(&sh->got, sp.n);
        atomic_fetch_add(&sh->lost, sp.lost);
        cursor = sp.cursor;
        if (sp.n)
            continue;
        int has_fin = atomic_load(&sh->has_final);
        uint64_t fin = atomic_load(&sh->final_total);
        if (has_fin && cursor >= fin) {
            if (cursor != fin)
                note_bad(sh, "the checker read past the end");
            break;
        }
        if (has_fin && shmstore_ring_follow(r) == 1)
            continue;
        shmstore_ring_wait(r, cursor, 20 * MS, NULL);
    }
    shmstore_ring_close(r);
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

    uint64_t w = 4;
    shmstore_ring_config_t c = layout(&w, 97);
    shmstore_ring_t *r;
    T_OK(shmstore_ring_open(s, "r", SHMSTORE_R_CREATE | SHMSTORE_R_EXCL, &c, &r));

    pid_t rd = t_fork(comp_reader, sh);
    pid_t wr = sh->role == R_WRITER ? 0 : t_fork(comp_writer, sh);
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
    if (!wr) /* the writer died: a new one takes its role over */
        wr = t_fork(comp_writer, sh);
    ts.tv_nsec = 2 * MS;
    nanosleep(&ts, NULL);
    atomic_store(&sh->stop_writer, 1);
    int rc = t_wait_child(wr, 20000);
    if (rc != 0)
        fail_msg("trial %u (victim %s, seed %llu): writer exit %d", k, role_names[sh->role],
                 (unsigned long long)sh->seed, rc);
    T_OK(shmstore_ring_follow(r) < 0 ? -1 : 0);
    uint64_t total;
    T_OK(shmstore_ring_total(r, &total));
    atomic_store(&sh->final_total, total);
    atomic_store(&sh->has_final, 1);
    rc = t_wait_child(rd, 20000);
    if (rc != 0 || atomic_load(&sh->bad) || sh->got + sh->lost != total)
        fail_msg("trial %u (victim %s, seed %llu): reader exit %d, %llu got + %llu lost of %llu: "
                 "%s", k, role_names[sh->role], (unsigned long long)sh->seed, rc,
                 (unsigned long long)sh->got, (unsigned long long)sh->lost,
                 (unsigned long long)total, sh->why);

    /* The ring works: a write (taking the role, whoever held it) and a read of it. */
    shmstore_ring_state_t st;
    T_OK(shmstore_ring_state(r, &st));
    uint64_t frame[MAX_WIDTH], back[MAX_WIDTH];
    for (uint64_t j = 0; j < st.cfg.frame.shape[0]; j++)
        frame[j] = total * 1000 + j;
    T_OK(shmstore_ring_write(r, frame, 1));
    shmstore_ring_span_t sp;
    T_OK(shmstore_ring_read_since(r, total, back, 1, &sp));
    assert_int_equal(sp.n, 1);
    assert_true(ramp_ok(back, total, 1, st.cfg.frame.shape[0]));
    shmstore_gc_stats_t gs;
    T_OK(shmstore_gc(s, &gs));
    assert_true(gs.dead_procs <= 1);
    shmstore_obj_info_t info;
    T_OK(shmstore_ring_info(r, &info));
    assert_int_equal(info.consumers_waiting, 0); /* the dead sleeper's bit is gone */

    shmstore_ring_close(r);
    T_OK(shmstore_delete(s, "r"));
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

static void test_crash_ring_kills(void **state)
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
        print_message("  victim %-7s %u trials\n", role_names[i], per_role[i]);
    t_shared_free(sh, sizeof(*sh));
    t_cleanup(s, name);
}

int main(void)
{
    const char *env = getenv("SHMSTORE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    printf("test_crash_ring: SHMSTORE_TEST_SEED=%llu\n", (unsigned long long)seed);
    g_rnd = seed | 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_ring_kills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
