/* test_crash_table.c - kill -9 soaks of tables: a process appending, writing in place or
 * sampling is killed with a real SIGKILL at a random moment while a companion writer
 * and a companion sampler keep working on the same table.
 *
 * Victims (one role per trial, drawn at random; 240 trials in all):
 *   append     appending batches of 1..4 records of 28 KiB (most kills land mid-record)
 *   write      overwriting records in place
 *   sample     sampling and gathering batches (uniform and, on prioritized tables, by
 *              priority, also setting priorities)
 * Each trial:
 *   1. the parent creates the table (64 records of 28,240 bytes: the seed's record; every
 *      other trial prioritized) and forks the companions and the victim;
 *   2. it sleeps a random 1 us .. 4 ms and kills the victim;
 *   3. it asks the companion writer to pause: it must answer (it is never blocked by the
 *      dead writer's slot: it recovers it) within the timeout;
 *   4. with the writer paused, gc; then every index of the window reads whole, or
 *      -ENODATA (a record the victim died writing; counted), or -ENOENT (a ticket the
 *      victim took and never wrote) - never -EBUSY and never a torn record; the invalid
 *      records are as many as the table counts;
 *   5. the writer resumes and appends two more laps: every slot is reused (the invalid
 *      count drops to 0), the companion sampler never saw a torn record, and the store
 *      checks clean with the used bytes back to the baseline once the table is deleted.
 * test_crash_table_creators: 40 creators of a table killed at a random moment of the
 * creation (often while they clear the slots outside the metadata mutex); the next open
 * always gets a working, empty table.
 * The random seed is printed; SHMSTORE_TEST_SEED=<n> replays a run.
 */
#include "test.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "../mp/table_payload.h"

#define STORE_CAP (64ull << 20)
#define N_TRIALS 240
#define CAP 64u
#define DATA_LEN 28224u /* 4 x 84 x 84 frames; with tag and sum: 28,240 bytes */
#define BATCH 4u
#define SAMPLE_K 8u
#define TIMEOUT_MS 20000

enum role { R_APPEND, R_WRITE, R_SAMPLE, R__COUNT };
static const char *const role_names[R__COUNT] = {"append", "write", "sample"};

struct shared {
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    enum role role;
    uint64_t seed;
    int prioritized;
    _Atomic int stop, pause_req, paused, victim_ready;
    _Atomic uint64_t appended, sampled, torn, errors;
    char why[256];
};

static uint64_t g_rnd;

/* Columns of BATCH checksummed records (static: children are forked, not threads). */
static uint64_t g_tags[BATCH > SAMPLE_K ? BATCH : SAMPLE_K];
static uint64_t g_sums[BATCH > SAMPLE_K ? BATCH : SAMPLE_K];
static uint8_t g_data[(BATCH > SAMPLE_K ? BATCH : SAMPLE_K) * DATA_LEN];
static void *g_cols[3] = {g_tags, g_data, g_sums};

static void note(struct shared *sh, _Atomic uint64_t *ctr, const char *what, int rc)
{
    if (atomic_fetch_add(ctr, 1) == 0)
        snprintf(sh->why, sizeof sh->why, "%s (%s: %s)", what, shmstore_err_name(rc),
                 shmstore_errmsg());
}

static shmstore_table_t *attach(struct shared *sh, shmstore_t **s)
{
    shmstore_table_t *t;
    T_CHILD_RC(shmstore_open(sh->store, 0, NULL, s), 0);
    T_CHILD_RC(shmstore_table_open(*s, "c", 0, NULL, &t), 0);
    return t;
}

static void fill(size_t n, uint64_t tag0)
{
    for (size_t j = 0; j < n; j++)
        tp_fill(g_tags, g_data, g_sums, DATA_LEN, j, tag0 + j);
}

/* Sample (and gather a few indices of the window): every record returned must be whole. */
static void sample_once(struct shared *sh, shmstore_table_t *t, uint64_t *rng, int by_prio)
{
    uint64_t idx[SAMPLE_K], total;
    double p[SAMPLE_K];
    int rc = shmstore_table_sample(t, SAMPLE_K, by_prio ? SHMSTORE_SAMPLE_PRIORITIZED : 0, rng,
                                   g_cols, idx, p);
    if (rc == -ENOENT || rc == -EAGAIN)
        return;
    if (rc != 0)
        return note(sh, &sh->errors, "sample failed", rc);
    for (size_t j = 0; j < SAMPLE_K; j++)
        if (!tp_ok(g_tags, g_data, g_sums, DATA_LEN, j))
            note(sh, &sh->torn, "sampled a torn record", 0);
    if (by_prio) {
        double pr[SAMPLE_K];
        for (size_t j = 0; j < SAMPLE_K; j++)
            pr[j] = (double)(tp_mix(idx[j]) % 100) / 10.0;
        if ((rc = shmstore_table_set_priorities(t, idx, pr, SAMPLE_K)) != 0)
            note(sh, &sh->errors, "set_priorities failed", rc);
    }
    if (shmstore_table_count(t, &total, NULL) != 0 || total < CAP)
        return;
    for (size_t j = 0; j < SAMPLE_K; j++)
        idx[j] = total - 1 - tp_mix(*rng + j) % CAP;
    rc = shmstore_table_gather(t, idx, SAMPLE_K, g_cols, NULL);
    if (rc == 0)
        for (size_t j = 0; j < SAMPLE_K; j++)
            if (!tp_ok(g_tags, g_data, g_sums, DATA_LEN, j))
                note(sh, &sh->torn, "gathered a torn record", 0);
    atomic_fetch_add(&sh->sampled, SAMPLE_K);
}

/* ---- the victim and the companions -------------------------------------------------------- */

static void victim(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_table_t *t = attach(sh, &s);
    uint64_t r = sh->seed | 1, total;
    /* Filled once: the victim's time goes to the table's copies, where kills should land. */
    fill(BATCH, 1ull << 62);
    atomic_store(&sh->victim_ready, 1);
    for (;;) {
        switch (sh->role) {
        case R_APPEND:
            shmstore_table_append(t, (const void *const *)g_cols,
                                  (size_t)(tp_mix(r++) % BATCH) + 1, NULL);
            break;
        case R_WRITE:
            if (shmstore_table_count(t, &total, NULL) == 0 && total)
                shmstore_table_write(t, total - 1 - tp_mix(r++) % CAP, 1,
                                     (const void *const *)g_cols);
            break;
        default:
            sample_once(sh, t, &r, sh->prioritized && (r & 1));
            r++;
            break;
        }
    }
}

static void comp_writer(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_table_t *t = attach(sh, &s);
    uint64_t n = 0;
    while (!atomic_load(&sh->stop)) {
        if (atomic_load(&sh->pause_req)) {
            atomic_store(&sh->paused, 1);
            while (atomic_load(&sh->pause_req) && !atomic_load(&sh->stop))
                sched_yield();
            atomic_store(&sh->paused, 0);
            continue;
        }
        size_t b = (size_t)(tp_mix(n) % 3) + 1;
        fill(b, n);
        int rc = shmstore_table_append(t, (const void *const *)g_cols, b, NULL);
        if (rc != 0)
            note(sh, &sh->errors, "companion append failed", rc);
        n += b;
        atomic_fetch_add(&sh->appended, b);
    }
    shmstore_table_close(t);
    shmstore_close(s);
}

static void comp_sampler(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    shmstore_table_t *t = attach(sh, &s);
    uint64_t r = sh->seed ^ 0x5a5a;
    while (!atomic_load(&sh->stop)) {
        sample_once(sh, t, &r, sh->prioritized && (r & 2));
        r++;
    }
    shmstore_table_close(t);
    shmstore_close(s);
}

/* ---- trials --------------------------------------------------------------------------------- */

static int wait_flag(_Atomic int *flag, int want, int timeout_ms)
{
    for (int waited = 0; atomic_load(flag) != want; waited++) {
        if (waited >= timeout_ms * 10)
            return -1;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int count_live(const shmstore_proc_info_t *p, void *arg)
{
    *(unsigned *)arg += p->is_alive;
    return 0;
}

struct totals {
    unsigned per_role[R__COUNT];
    uint64_t invalid_seen, unwritten_seen;
};

static void run_trial(shmstore_t *s, struct shared *sh, unsigned k, struct totals *tot)
{
    shmstore_stat_t st0, st1;
    T_OK(shmstore_gc(s, NULL));
    T_OK(shmstore_stat(s, &st0));
    char store[sizeof(sh->store)];
    snprintf(store, sizeof store, "%s", sh->store);
    memset(sh, 0, sizeof(*sh));
    snprintf(sh->store, sizeof sh->store, "%s", store);
    sh->seed = tp_mix(g_rnd++);
    sh->role = (enum role)(sh->seed % R__COUNT);
    sh->prioritized = (int)(k & 1);
    tot->per_role[sh->role]++;

    shmstore_table_field_t f[3];
    tp_schema(f, DATA_LEN);
    shmstore_table_options_t o = {.capacity = CAP, .n_fields = 3, .fields = f,
                                  .flags = sh->prioritized ? SHMSTORE_TABLE_PRIORITIZED : 0};
    shmstore_table_t *t;
    T_OK(shmstore_table_open(s, "c", SHMSTORE_T_CREATE | SHMSTORE_T_EXCL, &o, &t));
    fill(BATCH, 1000);
    for (unsigned i = 0; i < CAP; i += BATCH)
        T_OK(shmstore_table_append(t, (const void *const *)g_cols, BATCH, NULL));

    pid_t wr = t_fork(comp_writer, sh);
    pid_t sa = t_fork(comp_sampler, sh);
    pid_t vic = t_fork(victim, sh);
    assert_int_equal(wait_flag(&sh->victim_ready, 1, TIMEOUT_MS), 0);
    unsigned e_pow = (unsigned)(tp_mix(g_rnd++) % 12);
    uint64_t delay = (1000ull << e_pow) + tp_mix(g_rnd++) % (1000ull << e_pow);
    struct timespec ts = {0, (long)(delay > 4000000 ? 4000000 : delay)};
    nanosleep(&ts, NULL);
    kill(vic, SIGKILL);
    assert_int_equal(t_wait_child(vic, 10000), 128 + SIGKILL);

    /* The writer is never blocked by the dead one: it answers a pause. */
    atomic_store(&sh->pause_req, 1);
    if (wait_flag(&sh->paused, 1, TIMEOUT_MS) < 0)
        fail_msg("trial %u (victim %s, seed %llu): the companion writer is blocked", k,
                 role_names[sh->role], (unsigned long long)sh->seed);
    T_OK(shmstore_gc(s, NULL));
    uint64_t total, count, n_invalid = 0, n_unwritten = 0;
    T_OK(shmstore_table_count(t, &total, &count));
    for (uint64_t i = total - CAP; i < total; i++) {
        int rc = shmstore_table_get(t, i, g_cols);
        if (rc == -ENODATA)
            n_invalid++;
        else if (rc == -ENOENT)
            n_unwritten++;
        else if (rc != 0 || !tp_ok(g_tags, g_data, g_sums, DATA_LEN, 0))
            fail_msg("trial %u (victim %s, seed %llu): record %llu: %s %s", k,
                     role_names[sh->role], (unsigned long long)sh->seed,
                     (unsigned long long)i, shmstore_err_name(rc), shmstore_errmsg());
    }
    shmstore_obj_info_t info;
    T_OK(shmstore_table_info(t, &info));
    assert_true(n_invalid <= info.n_invalid);
    assert_true(sh->role != R_SAMPLE || info.n_invalid == 0);
    tot->invalid_seen += info.n_invalid;
    tot->unwritten_seen += n_unwritten;
    t_assert_clean(s);

    /* Two more laps: every slot is written again, the invalid ones included. */
    uint64_t before = atomic_load(&sh->appended);
    atomic_store(&sh->pause_req, 0);
    for (int waited = 0; atomic_load(&sh->appended) < before + 2 * CAP; waited++) {
        if (waited > TIMEOUT_MS * 10)
            fail_msg("trial %u: the companion writer does not get past the dead one", k);
        struct timespec w = {0, 100000};
        nanosleep(&w, NULL);
    }
    atomic_store(&sh->stop, 1);
    assert_int_equal(t_wait_child(wr, TIMEOUT_MS), 0);
    assert_int_equal(t_wait_child(sa, TIMEOUT_MS), 0);
    if (atomic_load(&sh->torn) || atomic_load(&sh->errors))
        fail_msg("trial %u (victim %s, seed %llu): %s", k, role_names[sh->role],
                 (unsigned long long)sh->seed, sh->why);
    T_OK(shmstore_table_info(t, &info));
    assert_int_equal(info.n_invalid, 0);
    assert_int_equal(info.count, CAP);

    shmstore_table_close(t);
    T_OK(shmstore_delete(s, "c"));
    T_OK(shmstore_gc(s, NULL));
    T_OK(shmstore_stat(s, &st1));
    if (st1.used != st0.used)
        fail_msg("trial %u: %llu bytes used after gc, %llu before", k,
                 (unsigned long long)st1.used, (unsigned long long)st0.used);
    unsigned n_procs = 0;
    T_OK(shmstore_procs(s, count_live, &n_procs));
    assert_int_equal(n_procs, 1);
    t_assert_clean(s);
}

static void test_crash_table_kills(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, STORE_CAP);
    struct shared *sh = t_shared_alloc(sizeof(*sh));
    snprintf(sh->store, sizeof(sh->store), "%s", name);
    struct totals tot = {{0}, 0, 0};
    /* The name index is made by the first object and stays: make it before the baseline. */
    T_OK(shmstore_put(s, "index", NULL, "x", 1, 0));
    T_OK(shmstore_delete(s, "index"));
    for (unsigned k = 0; k < N_TRIALS; k++)
        run_trial(s, sh, k, &tot);
    for (unsigned i = 0; i < R__COUNT; i++)
        print_message("  victim %-7s %u trials\n", role_names[i], tot.per_role[i]);
    print_message("  records left invalid by a killed writer: %llu; tickets taken, never "
                  "written: %llu\n", (unsigned long long)tot.invalid_seen,
                  (unsigned long long)tot.unwritten_seen);
    /* Most kills of a writer land mid-record (the copy is most of its time). */
    assert_true(tot.invalid_seen > 0);
    t_shared_free(sh, sizeof(*sh));
    t_cleanup(s, name);
}

/* ---- creators killed mid-creation ------------------------------------------------------- */

#define CREATE_TRIALS 40
#define CREATE_CAP (1u << 16) /* 64 Ki slots of 128 bytes: 8 MiB of slot headers */

static int open_created(shmstore_t *s, shmstore_table_t **t)
{
    shmstore_table_field_t f[3];
    tp_schema(f, 40);
    shmstore_table_options_t o = {.capacity = CREATE_CAP, .n_fields = 3, .fields = f};
    return shmstore_table_open(s, "c", SHMSTORE_T_CREATE, &o, t);
}

static void creator(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s = NULL;
    shmstore_table_t *t = NULL;
    T_CHILD_RC(shmstore_open(sh->store, 0, NULL, &s), 0);
    atomic_store(&sh->victim_ready, 1);
    T_CHILD_RC(open_created(s, &t), 0);
    shmstore_table_close(t);
    shmstore_close(s);
}

/* A process creating a table is killed at a random moment (before, in the middle of
 * clearing the slots outside the metadata mutex, or after): the next open always gets a
 * ready table (finishing the creation itself when the creator died in it) with no record
 * in it, that works, and the store checks clean after gc. */
static void test_crash_table_creators(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 512ull << 20);
    struct shared *sh = t_shared_alloc(sizeof(*sh));
    snprintf(sh->store, sizeof(sh->store), "%s", name);
    unsigned caught = 0;
    for (unsigned k = 0; k < CREATE_TRIALS; k++) {
        atomic_store(&sh->victim_ready, 0);
        pid_t pid = t_fork(creator, sh);
        assert_int_equal(wait_flag(&sh->victim_ready, 1, TIMEOUT_MS), 0);
        struct timespec d = {0, (long)(tp_mix(g_rnd++) % 6000) * 1000}; /* 0 .. 6 ms */
        nanosleep(&d, NULL);
        shmstore_obj_info_t info;
        memset(&info, 0, sizeof info);
        caught += shmstore_info(s, "c", &info) == 0 && info.table_initialising;
        kill(pid, SIGKILL);
        int st = t_wait_child(pid, TIMEOUT_MS);
        assert_true(st == 128 + SIGKILL || st == 0);
        shmstore_table_t *t = NULL;
        T_OK(open_created(s, &t));
        uint64_t total = 1, count = 1;
        T_OK(shmstore_table_count(t, &total, &count));
        assert_int_equal(total, 0);
        assert_int_equal(count, 0);
        tp_fill(g_tags, g_data, g_sums, 40, 0, 1000 + k);
        T_OK(shmstore_table_append(t, (const void *const *)g_cols, 1, NULL));
        T_OK(shmstore_table_get(t, 0, g_cols));
        assert_true(tp_ok(g_tags, g_data, g_sums, 40, 0) && g_tags[0] == 1000 + k);
        shmstore_table_close(t);
        T_OK(shmstore_gc(s, NULL));
        t_assert_clean(s);
        T_OK(shmstore_delete(s, "c"));
    }
    print_message("  %u of %u creators were killed while they cleared the slots\n", caught,
                  CREATE_TRIALS);
    t_shared_free(sh, sizeof(*sh));
    t_cleanup(s, name);
}

int main(void)
{
    const char *env = getenv("SHMSTORE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    printf("test_crash_table: SHMSTORE_TEST_SEED=%llu\n", (unsigned long long)seed);
    g_rnd = seed | 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_table_kills),
        cmocka_unit_test(test_crash_table_creators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
