/* test_crash.c - kill -9 soaks: a process is killed with a real SIGKILL at a random
 * moment while it works on a store, and the survivors must carry on.
 *
 * Scenarios (one cmocka test each; 1000 trials in all, a few seconds without sanitizers):
 *   writer_mid_put      a writer looping puts of 8 B .. 2 MB
 *   reader_views        a reader holding several views at once (view / release loop)
 *   metadata            a process creating / deleting objects in a loop, so that it holds
 *                       the store's robust metadata mutex much of the time (and, in some
 *                       trials, closing and reopening the store), while another process
 *                       holds views of those objects
 *   waiter              a process blocked in shmstore_value_wait()
 *   reserve_lock        a writer between reserve and commit, or between lock and unlock
 *                       (randomly, and deterministically parked while holding them)
 * and two targeted ones: a process killed while a child it forked lives on (its slot must
 * still be seen dead), and the creator of a store killed during shmstore_open(CREATE).
 *
 * Each trial:
 *   1. the parent (attached for the whole test) measures the baseline: stat().used after
 *      gc, excluding the name-index block, whose size depends on how many names the
 *      index ever held and is not a leak;
 *   2. it creates the trial's objects, then forks the victim, live companions (readers,
 *      writers or waiters that keep working through the kill) and a "post" child, which
 *      attaches before the kill or, in a third of the trials, right after it;
 *   3. after a start barrier it sleeps a random 1 us .. 4 ms to choose the moment, then
 *      kill(victim, SIGKILL);
 *   4. the post child then runs the store's operations (put, get, view, wait with
 *      timeout, lock, reserve, metadata calls) - after calling gc and checking its stats,
 *      or meeting the dead process's leftovers itself, or after having reclaimed it by
 *      attaching (see MODE_*) - and the parent waits for it with a timeout: a timeout
 *      means something blocked on the dead process -> failure. Payloads are checked for
 *      tears everywhere;
 *   5. companions are stopped and must exit cleanly (they checked every read);
 *   6. the parent deletes the trial's objects, runs gc, and asserts that stat().used is
 *      back to the baseline, that only the parent is attached, and shmstore_check() == 0.
 *
 * The random seed is printed; SHMSTORE_TEST_SEED=<n> replays a run.
 */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include "../mp/payload.h"
#include "internal.h"

#define STORE_CAP (512ull << 20)
#define MAX_LEN (2u << 20)
#define POST_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 30000
#define N_COMP_MAX 3

#define WRITER_VICTIM 1u
#define WRITER_COMP 2u
#define WRITER_POST 9u
#define WRITER_INIT 0u

struct trial;

/* Who meets the dead process first. The post child runs the same operations in all
 * three; what differs is the recovery path exercised:
 *   GC_FIRST     post attached before the kill, calls shmstore_gc() first and reports
 *                its stats (they must name the victim);
 *   OPS_FIRST    post attached before the kill and just works: its operations meet the
 *                dead writer's lock / pins / waiter count and must recover by themselves;
 *   ATTACH_AFTER post is forked after the kill: attaching must reclaim the dead slot
 *                (no dead slot may be listed right after shmstore_open). */
enum { MODE_GC_FIRST, MODE_OPS_FIRST, MODE_ATTACH_AFTER, MODE__COUNT };
static const char *const mode_names[] = {"gc-first", "ops-first", "attach-after"};

struct scenario {
    const char *name;
    unsigned n_trials;
    unsigned n_comp;
    void (*setup)(shmstore_t *s, struct trial *t);  /* parent: make the trial's objects */
    void (*victim)(struct trial *t, shmstore_t *s);  /* child: work until killed */
    void (*comp)(struct trial *t, shmstore_t *s, unsigned i); /* child: work until stop */
    void (*post)(struct trial *t, shmstore_t *s);    /* child: after the kill */
    /* gc-first trials: the victim's slot must be reported by gc exactly (1), or at most
     * (0: 0 or 1) when a companion may legitimately have recovered it first, or exactly
     * in even variants only (2). */
    int dead_exact;
    int leases_min; /* gc-first trials: leases the victim surely held (its value handle) */
};

/* Lives in shared memory: parent and children all see it. */
struct trial {
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    char value[64];
    unsigned k;         /* trial number */
    unsigned variant;   /* scenario-specific */
    uint64_t seed;
    int mode;           /* MODE_*: who recovers the dead process first */
    int gc_first;       /* mode == MODE_GC_FIRST */
    t_barrier_t *start; /* parent + victim + companions + post */
    t_barrier_t *go;    /* parent + post: the victim is dead */
    _Atomic int stop;   /* companions: finish */
    _Atomic uint64_t last_seq;   /* victim: last sequence number it completed */
    _Atomic uint64_t comp_seq;   /* writer companion: last completed */
    _Atomic uint64_t victim_iters;
    /* Filled by the post child in gc-first trials. */
    pid_t victim_pid;
    int victim_listed_dead;
    int gc_rc;
    shmstore_gc_stats_t gcst;
    int dead_after_attach; /* ATTACH_AFTER: dead slots listed right after attaching */
};

/* ---- small helpers ----------------------------------------------------------------- */

static uint64_t g_rnd;

static shmstore_t *child_attach(struct trial *t)
{
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(t->store, 0, NULL, &s), 0);
    return s;
}

static shmstore_value_t *child_value(shmstore_t *s, const char *name)
{
    shmstore_value_t *v = NULL;
    T_CHILD_RC(shmstore_value_open(s, name, 0, &v), 0);
    return v;
}

/* A random length from 8 B to `max`, spread evenly over the powers of two. */
static size_t rand_len(uint64_t *r, size_t max)
{
    unsigned bits = 3 + (unsigned)(pl_rand(r) % 19); /* 8 .. 2M */
    size_t base = (size_t)1 << bits;
    size_t len = base + (size_t)(pl_rand(r) % base);
    return len > max ? max : len;
}

/* Check a payload read after or around a kill: whole, and not newer than the victim's
 * last completed sequence plus the one it may have been publishing. */
static void check_payload(struct trial *t, const void *p, size_t len, const char *what)
{
    uint32_t wid = 0;
    uint64_t seq = 0;
    if (!pl_check(p, len, &wid, &seq)) {
        fprintf(stderr, "trial %u: torn payload from %s (len %zu)\n", t->k, what, len);
        T_CHILD_CHECK(!"torn payload");
    }
    if (wid == WRITER_VICTIM)
        T_CHILD_CHECK(seq <= atomic_load(&t->last_seq) + 1);
}

/* ---- the post child: what must work after the kill --------------------------------- */

static int find_victim(const shmstore_proc_info_t *info, void *arg)
{
    struct trial *t = arg;
    if (info->pid == t->victim_pid && !info->is_alive)
        t->victim_listed_dead = 1;
    return 0;
}

static int count_dead(const shmstore_proc_info_t *info, void *arg)
{
    if (!info->is_alive)
        (*(int *)arg)++;
    return 0;
}

/* Runs first in the post child. */
static void post_common_start(struct trial *t, shmstore_t *s)
{
    if (t->mode == MODE_ATTACH_AFTER) {
        /* Forked and attached after the kill: the attach reclaimed the victim's slot. */
        int n_dead = 0;
        T_CHILD_RC(shmstore_procs(s, count_dead, &n_dead), 0);
        t->dead_after_attach = n_dead;
        return;
    }
    t_barrier_wait(t->start);
    t_barrier_wait(t->go);
    if (t->gc_first) {
        (void)shmstore_procs(s, find_victim, t);
        memset(&t->gcst, 0, sizeof(t->gcst));
        t->gc_rc = shmstore_gc(s, &t->gcst);
    }
}

/* Value operations every scenario with a value checks after the kill. `writer_live`:
 * a companion is still publishing (waits may then succeed instead of timing out). */
static void post_value_ops(struct trial *t, shmstore_t *s, int writer_live)
{
    shmstore_value_t *v = child_value(s, t->value);
    unsigned char *buf = malloc(MAX_LEN);
    T_CHILD_CHECK(buf != NULL);
    size_t len = 0;
    uint64_t ver = 0, ver2 = 0;

    /* get: the last published version, whole. */
    T_CHILD_RC(shmstore_value_get(v, NULL, buf, MAX_LEN, &len, &ver), 0);
    check_payload(t, buf, len, "post get");

    /* put: the dead writer's lock (if any) is recovered, never waited on forever. */
    size_t plen = 4096 + 64 * (t->k % 64);
    pl_fill(buf, plen, WRITER_POST, t->k);
    T_CHILD_RC(shmstore_value_put(v, NULL, buf, plen, 0), 0);
    T_CHILD_RC(shmstore_value_version(v, &ver2), 0);
    T_CHILD_CHECK(ver2 > ver);
    if (!writer_live) {
        uint32_t wid = 0;
        uint64_t seq = 0;
        T_CHILD_RC(shmstore_value_get(v, NULL, buf, MAX_LEN, &len, &ver), 0);
        T_CHILD_CHECK(ver == ver2 && len == plen && pl_check(buf, len, &wid, &seq));
        T_CHILD_CHECK(wid == WRITER_POST && seq == t->k);
    }

    /* view: pinned and whole. */
    shmstore_view_t vw;
    T_CHILD_RC(shmstore_value_view(v, &vw), 0);
    check_payload(t, vw.data, vw.len, "post view");
    shmstore_view_release(&vw);

    /* wait: returns at once for an older version, times out for the current one. */
    T_CHILD_RC(shmstore_value_wait(v, ver2 - 1, 0, &ver), 0);
    T_CHILD_CHECK(ver >= ver2);
    int rc = shmstore_value_wait(v, ver, 5 * 1000 * 1000, NULL);
    if (writer_live)
        T_CHILD_CHECK(rc == 0 || rc == -ETIMEDOUT);
    else
        T_CHILD_RC(rc, -ETIMEDOUT);

    /* lock / unlock: a dead holder is recovered, so a long timeout is not reached. */
    void *data = NULL;
    shmstore_datum_t d;
    T_CHILD_RC(shmstore_value_lock(v, 20ll * 1000 * 1000 * 1000, &data, &len, &d), 0);
    check_payload(t, data, len, "post lock");
    pl_fill(data, len, WRITER_POST, t->k + 1);
    T_CHILD_RC(shmstore_value_unlock(v), 0);

    /* reserve / commit. */
    T_CHILD_RC(shmstore_value_reserve(v, NULL, 64, 0, &data), 0);
    pl_fill(data, 64, WRITER_POST, t->k + 2);
    T_CHILD_RC(shmstore_value_commit(v), 0);

    /* Metadata: create and delete an object, stat. */
    char name[64];
    snprintf(name, sizeof(name), "post/%u", t->k);
    pl_fill(buf, 64, WRITER_POST, 1);
    T_CHILD_RC(shmstore_put(s, name, NULL, buf, 64, 0), 0);
    T_CHILD_RC(shmstore_delete(s, name), 0);
    shmstore_stat_t st;
    T_CHILD_RC(shmstore_stat(s, &st), 0);

    free(buf);
    shmstore_value_close(v);
}

/* ---- (a) a writer killed mid-put ---------------------------------------------------- */

static void setup_value(shmstore_t *s, struct trial *t)
{
    unsigned char buf[256];
    snprintf(t->value, sizeof(t->value), "%s/%u", "v", t->k);
    pl_fill(buf, sizeof(buf), WRITER_INIT, 0);
    T_OK(shmstore_put(s, t->value, NULL, buf, sizeof(buf), 0));
}

static void victim_writer(struct trial *t, shmstore_t *s)
{
    shmstore_value_t *v = child_value(s, t->value);
    unsigned char *buf = malloc(MAX_LEN);
    T_CHILD_CHECK(buf != NULL);
    uint64_t r = t->seed | 1;

    pl_fill(buf, 64, WRITER_VICTIM, 1);
    T_CHILD_RC(shmstore_value_put(v, NULL, buf, 64, 0), 0);
    atomic_store(&t->last_seq, 1);
    t_barrier_wait(t->start);
    for (uint64_t seq = 2;; seq++) {
        size_t len = rand_len(&r, MAX_LEN);
        pl_fill(buf, len, WRITER_VICTIM, seq);
        T_CHILD_RC(shmstore_value_put(v, NULL, buf, len, 0), 0);
        atomic_store(&t->last_seq, seq);
        atomic_fetch_add(&t->victim_iters, 1);
    }
}

/* A reader that keeps reading through the kill: every get is whole, versions go up. */
static void comp_reader(struct trial *t, shmstore_t *s, unsigned i)
{
    (void)i;
    shmstore_value_t *v = child_value(s, t->value);
    unsigned char *buf = malloc(MAX_LEN);
    T_CHILD_CHECK(buf != NULL);
    uint64_t last = 0;

    t_barrier_wait(t->start);
    while (!atomic_load(&t->stop)) {
        size_t len = 0;
        uint64_t ver = 0;
        T_CHILD_RC(shmstore_value_get(v, NULL, buf, MAX_LEN, &len, &ver), 0);
        check_payload(t, buf, len, "companion get");
        T_CHILD_CHECK(ver >= last);
        last = ver;
        shmstore_view_t vw;
        T_CHILD_RC(shmstore_value_view(v, &vw), 0);
        check_payload(t, vw.data, vw.len, "companion view");
        T_CHILD_CHECK(vw.version >= last);
        last = vw.version;
        shmstore_view_release(&vw);
    }
    free(buf);
    shmstore_value_close(v);
}

static void post_writer(struct trial *t, shmstore_t *s)
{
    post_common_start(t, s);
    post_value_ops(t, s, 0);
}

/* ---- (b) a reader killed while holding views --------------------------------------- */

#define N_VIEWS 4
static void victim_viewer(struct trial *t, shmstore_t *s)
{
    shmstore_value_t *v = child_value(s, t->value);
    shmstore_view_t held[N_VIEWS];
    uint64_t held_seq[N_VIEWS];
    unsigned n = 0, first = 0;
    uint64_t r = t->seed | 1;
    unsigned char buf[4096];

    memset(held, 0, sizeof(held));
    t_barrier_wait(t->start);
    for (;;) {
        if (n == N_VIEWS || (n > 0 && pl_rand(&r) % 4 == 0)) {
            uint64_t seq = 0;
            T_CHILD_CHECK(pl_check(held[first].data, held[first].len, NULL, &seq));
            T_CHILD_CHECK(seq == held_seq[first]); /* unchanged while pinned */
            shmstore_view_release(&held[first]);
            first = (first + 1) % N_VIEWS;
            n--;
            continue;
        }
        unsigned at = (first + n) % N_VIEWS;
        T_CHILD_RC(shmstore_value_view(v, &held[at]), 0);
        T_CHILD_CHECK(pl_check(held[at].data, held[at].len, NULL, &held_seq[at]));
        n++;
        if (pl_rand(&r) % 8 == 0) {
            size_t len = 0;
            int rc = shmstore_value_get(v, NULL, buf, sizeof(buf), &len, NULL);
            T_CHILD_CHECK(rc == 0 || rc == -ENOBUFS);
            if (rc == 0)
                T_CHILD_CHECK(pl_check(buf, len, NULL, NULL));
        }
        atomic_fetch_add(&t->victim_iters, 1);
    }
}

/* A writer that keeps publishing through the kill (the dead reader's pins must not stop
 * it). Sizes up to 256 KiB keep versions coming fast. */
static void comp_writer(struct trial *t, shmstore_t *s, unsigned i)
{
    (void)i;
    shmstore_value_t *v = child_value(s, t->value);
    unsigned char *buf = malloc(256u << 10);
    T_CHILD_CHECK(buf != NULL);
    uint64_t r = (t->seed ^ 0xc0ffee) | 1;

    t_barrier_wait(t->start);
    for (uint64_t seq = 1; !atomic_load(&t->stop); seq++) {
        size_t len = rand_len(&r, 256u << 10);
        pl_fill(buf, len, WRITER_COMP, seq);
        T_CHILD_RC(shmstore_value_put(v, NULL, buf, len, 0), 0);
        atomic_store(&t->comp_seq, seq);
    }
    free(buf);
    shmstore_value_close(v);
}

static void post_viewer(struct trial *t, shmstore_t *s)
{
    post_common_start(t, s);
    /* The live writer still makes progress after the reader died. */
    shmstore_value_t *v = child_value(s, t->value);
    uint64_t cur = 0, nv = 0;
    T_CHILD_RC(shmstore_value_version(v, &cur), 0);
    int rc;
    do
        rc = shmstore_value_wait(v, cur, 20ll * 1000 * 1000 * 1000, &nv);
    while (rc == -EINTR);
    T_CHILD_RC(rc, 0);
    T_CHILD_CHECK(nv > cur);
    shmstore_value_close(v);
    post_value_ops(t, s, 1);
}

/* ---- (c) a process hammering the metadata ------------------------------------------- */

#define META_NAMES 24
static int collect_names(const shmstore_obj_info_t *info, void *arg)
{
    char (*names)[SHMSTORE_NAME_MAX + 1] = arg;
    for (unsigned i = 0; i < 256; i++) {
        if (names[i][0] == '\0') {
            snprintf(names[i], SHMSTORE_NAME_MAX + 1, "%s", info->name);
            return 0;
        }
    }
    return 0;
}

static int count_obj(const shmstore_obj_info_t *info, void *arg)
{
    (void)info;
    (*(unsigned *)arg)++;
    return 0;
}

static void setup_meta(shmstore_t *s, struct trial *t)
{
    setup_value(s, t);
}

static void victim_meta(struct trial *t, shmstore_t *s)
{
    uint64_t r = t->seed | 1;
    unsigned char buf[512];
    char name[64];
    int reopen = t->variant & 1;

    t_barrier_wait(t->start);
    for (uint64_t i = 0;; i++) {
        unsigned a = (unsigned)(pl_rand(&r) % META_NAMES);
        snprintf(name, sizeof(name), "m/%u/%u", t->k, a);
        size_t len = 8 + (size_t)(pl_rand(&r) % (sizeof(buf) - 8));
        pl_fill(buf, len, WRITER_VICTIM, i);
        T_CHILD_RC(shmstore_put(s, name, NULL, buf, len, 0), 0);
        snprintf(name, sizeof(name), "m/%u/%u", t->k, (a + META_NAMES / 2) % META_NAMES);
        int rc = shmstore_delete(s, name);
        T_CHILD_CHECK(rc == 0 || rc == -ENOENT);
        switch (i % 8) {
        case 1: {
            shmstore_stat_t st;
            T_CHILD_RC(shmstore_stat(s, &st), 0);
            break;
        }
        case 3: {
            unsigned n = 0;
            T_CHILD_RC(shmstore_list(s, "m/", count_obj, &n), 0);
            break;
        }
        case 5: {
            shmstore_value_t *v = NULL;
            snprintf(name, sizeof(name), "m/%u/h%u", t->k, a);
            T_CHILD_RC(shmstore_value_open(s, name, SHMSTORE_V_CREATE, &v), 0);
            shmstore_value_close(v);
            T_CHILD_RC(shmstore_delete(s, name), 0);
            break;
        }
        case 7:
            if (reopen) {
                shmstore_close(s);
                s = NULL;
                T_CHILD_RC(shmstore_open(t->store, 0, NULL, &s), 0);
            }
            break;
        default:
            break;
        }
        atomic_fetch_add(&t->victim_iters, 1);
    }
}

/* Views the objects the victim creates and deletes, holding a few at once: deleting a
 * pinned object makes its blocks ORPHAN, freed by the last unpin - also when the deleter
 * dies midway. */
static void comp_meta_viewer(struct trial *t, shmstore_t *s, unsigned i)
{
    (void)i;
    uint64_t r = (t->seed ^ 0xfeed) | 1;
    shmstore_view_t held[3];
    unsigned n = 0;
    char name[64];
    t_barrier_wait(t->start);
    while (!atomic_load(&t->stop)) {
        if (n == 3) {
            for (unsigned j = 0; j < n; j++) {
                T_CHILD_CHECK(pl_check(held[j].data, held[j].len, NULL, NULL));
                shmstore_view_release(&held[j]);
            }
            n = 0;
        }
        snprintf(name, sizeof(name), "m/%u/%u", t->k, (unsigned)(pl_rand(&r) % META_NAMES));
        shmstore_value_t *v = NULL;
        int rc = shmstore_value_open(s, name, 0, &v);
        if (rc == -ENOENT)
            continue;
        T_CHILD_RC(rc, 0);
        rc = shmstore_value_view(v, &held[n]);
        T_CHILD_CHECK(rc == 0 || rc == SHMSTORE_ENOVALUE || rc == -ESTALE);
        if (rc == 0) {
            T_CHILD_CHECK(pl_check(held[n].data, held[n].len, NULL, NULL));
            n++;
        }
        shmstore_value_close(v); /* views outlive their handle */
    }
    for (unsigned j = 0; j < n; j++) {
        T_CHILD_CHECK(pl_check(held[j].data, held[j].len, NULL, NULL));
        shmstore_view_release(&held[j]);
    }
}

static void post_meta(struct trial *t, shmstore_t *s)
{
    post_common_start(t, s);
    unsigned char buf[128];
    char name[64];
    for (unsigned i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "m/%u/post%u", t->k, i);
        pl_fill(buf, sizeof(buf), WRITER_POST, i);
        T_CHILD_RC(shmstore_put(s, name, NULL, buf, sizeof(buf), 0), 0);
        shmstore_obj_info_t info;
        T_CHILD_RC(shmstore_info(s, name, &info), 0);
        T_CHILD_RC(shmstore_delete(s, name), 0);
    }
    /* Whatever the victim left under m/ is whole. */
    static char names[256][SHMSTORE_NAME_MAX + 1];
    memset(names, 0, sizeof(names));
    char pfx[32];
    snprintf(pfx, sizeof(pfx), "m/%u/", t->k);
    T_CHILD_RC(shmstore_list(s, pfx, collect_names, names), 0);
    unsigned char *big = malloc(4096);
    T_CHILD_CHECK(big != NULL);
    for (unsigned i = 0; i < 256 && names[i][0]; i++) {
        size_t len = 0;
        int rc = shmstore_get(s, names[i], NULL, big, 4096, &len, NULL);
        /* A value created but never written (handle opened, killed) has no version. */
        T_CHILD_CHECK(rc == 0 || rc == SHMSTORE_ENOVALUE);
        if (rc == 0 && !pl_check(big, len, NULL, NULL)) {
            shmstore_obj_info_t info;
            memset(&info, 0, sizeof(info));
            (void)shmstore_info(s, names[i], &info);
            char rep[4096];
            rep[0] = '\0';
            int crc = shmstore_check(s, rep, sizeof(rep));
            fprintf(stderr, "trial %u: torn object %s: len %zu version %llu, bytes "
                            "%02x%02x%02x%02x %02x%02x%02x%02x...; check() = %d: %s\n",
                    t->k, names[i], len, (unsigned long long)info.version, big[0], big[1],
                    big[2], big[3], big[4], big[5], big[6], big[7], crc, rep);
            T_CHILD_CHECK(!"torn object after metadata crash");
        }
    }
    free(big);
    shmstore_stat_t st;
    T_CHILD_RC(shmstore_stat(s, &st), 0);
    post_value_ops(t, s, 0);
}

/* ---- (d) a waiter blocked in shmstore_value_wait ------------------------------------ */

static void victim_waiter(struct trial *t, shmstore_t *s)
{
    shmstore_value_t *v = child_value(s, t->value);
    unsigned char *buf = malloc(MAX_LEN);
    T_CHILD_CHECK(buf != NULL);
    uint64_t cur = 0;
    T_CHILD_RC(shmstore_value_version(v, &cur), 0);
    t_barrier_wait(t->start);
    for (;;) {
        uint64_t nv = 0;
        int rc = shmstore_value_wait(v, cur, -1, &nv);
        T_CHILD_CHECK(rc == 0 || rc == -EINTR);
        if (rc != 0)
            continue;
        T_CHILD_CHECK(nv > cur);
        cur = nv;
        size_t len = 0;
        T_CHILD_RC(shmstore_value_get(v, NULL, buf, MAX_LEN, &len, NULL), 0);
        T_CHILD_CHECK(pl_check(buf, len, NULL, NULL));
        atomic_fetch_add(&t->victim_iters, 1);
    }
}

/* Companion 0: a live waiter (forever timeouts), which must keep being woken after the
 * other waiter died; it leaves when told to stop (the parent then triggers). Companion 1
 * (variant 1 only): a live writer. */
static void comp_waiter_or_writer(struct trial *t, shmstore_t *s, unsigned i)
{
    if (i == 1) {
        if (t->variant & 1)
            comp_writer(t, s, i);
        else
            t_barrier_wait(t->start);
        return;
    }
    shmstore_value_t *v = child_value(s, t->value);
    unsigned char *buf = malloc(MAX_LEN);
    T_CHILD_CHECK(buf != NULL);
    uint64_t cur = 0;
    T_CHILD_RC(shmstore_value_version(v, &cur), 0);
    t_barrier_wait(t->start);
    while (!atomic_load(&t->stop)) {
        uint64_t nv = 0;
        int rc = shmstore_value_wait(v, cur, -1, &nv);
        T_CHILD_CHECK(rc == 0 || rc == -EINTR);
        if (rc != 0)
            continue;
        T_CHILD_CHECK(nv > cur);
        cur = nv;
        size_t len = 0;
        T_CHILD_RC(shmstore_value_get(v, NULL, buf, MAX_LEN, &len, NULL), 0);
        T_CHILD_CHECK(pl_check(buf, len, NULL, NULL));
    }
    free(buf);
    shmstore_value_close(v);
}

static void post_waiter(struct trial *t, shmstore_t *s)
{
    post_common_start(t, s);
    post_value_ops(t, s, (int)(t->variant & 1));
    /* A trigger wakes the live waiter, whatever the dead one left in the waiter count. */
    shmstore_value_t *v = child_value(s, t->value);
    T_CHILD_RC(shmstore_value_trigger(v), 0);
    shmstore_value_close(v);
}

/* ---- (e) a writer between reserve and commit, or lock and unlock --------------------- */

static void victim_reserver(struct trial *t, shmstore_t *s)
{
    shmstore_value_t *v = child_value(s, t->value);
    uint64_t r = t->seed | 1;
    void *data = NULL;
    size_t len = 0;
    shmstore_datum_t d;

    if (t->variant >= 1) {
        /* Deterministic: park holding the reservation (1) or the lock (2), with the block
         * half written, until killed. */
        if (t->variant == 1) {
            len = rand_len(&r, MAX_LEN);
            T_CHILD_RC(shmstore_value_reserve(v, NULL, len, 0, &data), 0);
        } else {
            T_CHILD_RC(shmstore_value_lock(v, -1, &data, &len, &d), 0);
        }
        pl_fill(data, len, WRITER_VICTIM, 1000);
        memset(data, 0x5a, len / 2);
        t_barrier_wait(t->start);
        for (;;)
            pause();
    }
    t_barrier_wait(t->start);
    /* seq numbers only what is published: an abort must not use one up, or a kill right
     * after the next commit shows a payload two ahead of last_seq. */
    for (uint64_t seq = 1;;) {
        uint64_t c = pl_rand(&r) % 3;
        if (c == 2) {
            len = rand_len(&r, MAX_LEN);
            T_CHILD_RC(shmstore_value_reserve(v, NULL, len, 0, &data), 0);
            memset(data, 0xa5, len);
            shmstore_value_abort(v);
            continue;
        }
        if (c == 0) {
            len = rand_len(&r, MAX_LEN);
            T_CHILD_RC(shmstore_value_reserve(v, NULL, len, 0, &data), 0);
            pl_fill(data, len, WRITER_VICTIM, seq);
            T_CHILD_RC(shmstore_value_commit(v), 0);
        } else {
            T_CHILD_RC(shmstore_value_lock(v, -1, &data, &len, &d), 0);
            T_CHILD_CHECK(pl_check(data, len, NULL, NULL));
            pl_fill(data, len, WRITER_VICTIM, seq);
            T_CHILD_RC(shmstore_value_unlock(v), 0);
        }
        atomic_store(&t->last_seq, seq++);
        atomic_fetch_add(&t->victim_iters, 1);
    }
}

static void post_reserver(struct trial *t, shmstore_t *s)
{
    post_common_start(t, s);
    if (t->variant >= 1) {
        /* The parked, half-written version must never have been published. */
        shmstore_value_t *v = child_value(s, t->value);
        unsigned char *buf = malloc(MAX_LEN);
        T_CHILD_CHECK(buf != NULL);
        size_t len = 0;
        uint32_t wid = 9;
        uint64_t seq = 0;
        T_CHILD_RC(shmstore_value_get(v, NULL, buf, MAX_LEN, &len, NULL), 0);
        T_CHILD_CHECK(pl_check(buf, len, &wid, &seq));
        T_CHILD_CHECK(wid == WRITER_INIT && seq == 0);
        free(buf);
        shmstore_value_close(v);
    }
    post_value_ops(t, s, 0);
}

/* ---- the trial runner --------------------------------------------------------------- */

static struct trial *g_t;
static const struct scenario *g_sc;

static void run_victim(void *arg)
{
    (void)arg;
    shmstore_t *s = child_attach(g_t);
    g_sc->victim(g_t, s);
    T_CHILD_CHECK(!"victim returned");
}

static void run_comp(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    shmstore_t *s = child_attach(g_t);
    g_sc->comp(g_t, s, i);
    shmstore_close(s);
}

static void run_post(void *arg)
{
    (void)arg;
    shmstore_t *s = child_attach(g_t);
    g_sc->post(g_t, s);
    shmstore_close(s);
}

/* Bytes of allocated blocks other than the name index's. */
static uint64_t used_sans_index(shmstore_t *s)
{
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    uint64_t idx = 0, off = s->hdr->index_off;
    if (off) {
        struct blk_hdr *b = shmstore__blk(s, off);
        assert_non_null(b);
        idx = b->size & BLK_SIZE_MASK;
    }
    return st.used - idx;
}

struct proc_count {
    unsigned n, alive, self;
};

static int count_procs(const shmstore_proc_info_t *info, void *arg)
{
    struct proc_count *c = arg;
    c->n++;
    c->alive += info->is_alive != 0;
    c->self += info->is_self != 0;
    return 0;
}

static int delete_prefix(shmstore_t *s, const char *pfx)
{
    static char names[256][SHMSTORE_NAME_MAX + 1];
    memset(names, 0, sizeof(names));
    T_OK(shmstore_list(s, pfx, collect_names, names));
    int n = 0;
    for (unsigned i = 0; i < 256 && names[i][0]; i++) {
        T_OK(shmstore_delete(s, names[i]));
        n++;
    }
    return n;
}

static uint64_t rand_delay_ns(void)
{
    /* Roughly log-uniform from 1 us to 4 ms. */
    unsigned e = (unsigned)(pl_rand(&g_rnd) % 12);
    uint64_t base = 1000ull << e;
    return base + pl_rand(&g_rnd) % base;
}

struct totals {
    unsigned trials, dead, leases, locks, blocks;
    uint64_t victim_iters;
};

static void run_trial(shmstore_t *s, const struct scenario *sc, struct trial *t, unsigned k,
                      struct totals *tot)
{
    /* Baseline: what the store holds before this trial's objects. */
    T_OK(shmstore_gc(s, NULL));
    uint64_t base = used_sans_index(s);

    char store[SHMSTORE_STORE_NAME_MAX + 1];
    snprintf(store, sizeof(store), "%s", t->store);
    t_barrier_t *go = t->go;
    memset(t, 0, sizeof(*t));
    snprintf(t->store, sizeof(t->store), "%s", store);
    t->go = go;
    t->k = k;
    t->seed = pl_rand(&g_rnd);
    t->mode = (int)(pl_rand(&g_rnd) % MODE__COUNT);
    t->gc_first = t->mode == MODE_GC_FIRST;
    t->variant = (unsigned)(pl_rand(&g_rnd) % 4);
    int post_before = t->mode != MODE_ATTACH_AFTER;
    t->start = t_barrier_new(2 + sc->n_comp + (unsigned)post_before);
    sc->setup(s, t);

    pid_t victim = t_fork(run_victim, NULL);
    t->victim_pid = victim;
    pid_t comp[N_COMP_MAX];
    for (unsigned i = 0; i < sc->n_comp; i++)
        comp[i] = t_fork(run_comp, (void *)(uintptr_t)i);
    pid_t post = post_before ? t_fork(run_post, NULL) : -1;

    if (t_barrier_wait_ms(t->start, POST_TIMEOUT_MS) != 0) {
        print_message("trial %u: children did not reach the start barrier\n", k);
        kill(victim, SIGKILL);
        fail();
    }
    uint64_t d = rand_delay_ns();
    struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
    nanosleep(&ts, NULL);
    assert_int_equal(kill(victim, SIGKILL), 0);
    int vst = t_wait_child(victim, POST_TIMEOUT_MS);
    if (vst != 128 + SIGKILL) {
        print_message("trial %u: victim ended with status %d before the kill\n", k, vst);
        fail();
    }

    /* After the kill: the post child's operations must all complete. */
    if (post_before)
        t_barrier_wait(t->go);
    else
        post = t_fork(run_post, NULL);
    int pst = t_wait_child(post, POST_TIMEOUT_MS);
    if (pst != 0) {
        print_message("[%s] trial %u (variant %u, %s, delay %llu ns, victim iters "
                      "%llu): post-kill child %s (status %d)\n",
                      sc->name, k, t->variant, mode_names[t->mode], (unsigned long long)d,
                      (unsigned long long)atomic_load(&t->victim_iters),
                      pst < 0 ? "timed out: blocked by the dead process" : "failed", pst);
        atomic_store(&t->stop, 1);
        for (unsigned i = 0; i < sc->n_comp; i++) {
            kill(comp[i], SIGKILL);
            t_wait_child(comp[i], -1);
        }
        fail();
    }

    /* Stop the companions; wake any waiter among them. */
    atomic_store(&t->stop, 1);
    {
        shmstore_value_t *v = NULL;
        if (t->value[0] && shmstore_value_open(s, t->value, 0, &v) == 0) {
            T_OK(shmstore_value_trigger(v));
            shmstore_value_close(v);
        }
    }
    int failed = 0;
    for (unsigned i = 0; i < sc->n_comp; i++) {
        int cst = t_wait_child(comp[i], STOP_TIMEOUT_MS);
        if (cst != 0) {
            print_message("[%s] trial %u: companion %u ended with status %d%s\n", sc->name, k,
                          i, cst, cst < 0 ? " (timeout: blocked)" : "");
            failed = 1;
        }
    }
    assert_int_equal(failed, 0);

    if (t->mode == MODE_ATTACH_AFTER) {
        if (t->dead_after_attach != 0)
            print_message("[%s] trial %u (variant %u): %d dead slots listed right after a "
                          "new process attached\n",
                          sc->name, k, t->variant, t->dead_after_attach);
        assert_int_equal(t->dead_after_attach, 0);
    }
    if (t->gc_first) {
        T_OK(t->gc_rc);
        int exact = sc->dead_exact == 1 || (sc->dead_exact == 2 && !(t->variant & 1));
        if (exact) {
            if (!t->victim_listed_dead || t->gcst.dead_procs != 1) {
                print_message("[%s] trial %u (variant %u): victim listed dead by procs(): %d; "
                              "gc: dead_procs %u leases %u locks %u blocks %u\n",
                              sc->name, k, t->variant, t->victim_listed_dead,
                              t->gcst.dead_procs, t->gcst.leases_dropped,
                              t->gcst.locks_released, t->gcst.blocks_freed);
            }
            assert_int_equal(t->victim_listed_dead, 1);
            assert_int_equal(t->gcst.dead_procs, 1);
            assert_true(t->gcst.leases_dropped >= (uint32_t)sc->leases_min);
        } else {
            assert_true(t->gcst.dead_procs <= 1);
        }
        if (sc->victim == victim_reserver && t->variant >= 1)
            assert_int_equal(t->gcst.locks_released, 1);
        tot->dead += t->gcst.dead_procs;
        tot->leases += t->gcst.leases_dropped;
        tot->locks += t->gcst.locks_released;
        tot->blocks += t->gcst.blocks_freed;
    }

    /* Clean up the trial's objects; nothing may be left. */
    shmstore_gc_stats_t st;
    memset(&st, 0, sizeof(st));
    T_OK(shmstore_gc(s, &st));
    if (t->value[0]) {
        /* Nobody holds the writer lock or sleeps on the value any more. */
        shmstore_value_t *v = NULL;
        T_OK(shmstore_value_open(s, t->value, 0, &v));
        uint32_t wl = atomic_load(&v->body->wlock), nw = 0;
        for (unsigned w = 0; w < 4; w++)
            nw |= atomic_load(&v->body->waiters[w]) != 0;
        if (wl != 0 || nw != 0)
            print_message("[%s] trial %u (variant %u, %s): after gc, wlock %#x waiter bits set %u\n",
                          sc->name, k, t->variant, mode_names[t->mode], wl, nw);
        assert_int_equal(wl, 0);
        assert_int_equal(nw, 0);
        shmstore_value_close(v);
        T_OK(shmstore_delete(s, t->value));
    }
    char pfx[32];
    snprintf(pfx, sizeof(pfx), "m/%u/", k);
    delete_prefix(s, pfx);
    T_OK(shmstore_gc(s, NULL));

    struct proc_count pc = {0, 0, 0};
    T_OK(shmstore_procs(s, count_procs, &pc));
    if (pc.n != 1 || pc.alive != 1 || pc.self != 1)
        print_message("[%s] trial %u: process table has %u slots (%u alive) after gc\n",
                      sc->name, k, pc.n, pc.alive);
    assert_int_equal(pc.n, 1);
    assert_int_equal(pc.self, 1);

    uint64_t after = used_sans_index(s);
    if (after != base) {
        print_message("[%s] trial %u (variant %u, %s): used %llu after, baseline "
                      "%llu: %lld bytes leaked\n",
                      sc->name, k, t->variant, mode_names[t->mode], (unsigned long long)after,
                      (unsigned long long)base, (long long)(after - base));
    }
    assert_int_equal(after, base);
    t_assert_clean(s);
    t_barrier_free(t->start);
    t->start = NULL;
    tot->trials++;
    tot->victim_iters += atomic_load(&t->victim_iters);
}

static void run_scenario(const struct scenario *sc)
{
    /* Replaying: SHMSTORE_CRASH_ONLY=<scenario name> SHMSTORE_CRASH_TRIALS=<n>. */
    const char *only = getenv("SHMSTORE_CRASH_ONLY");
    if (only && strcmp(only, sc->name) != 0)
        return;
    const char *nt = getenv("SHMSTORE_CRASH_TRIALS");
    unsigned n_trials = nt ? (unsigned)strtoul(nt, NULL, 0) : sc->n_trials;
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, STORE_CAP);
    struct trial *t = t_shared_alloc(sizeof(struct trial));
    snprintf(t->store, sizeof(t->store), "%s", name);
    t->go = t_barrier_new(2);
    g_t = t;
    g_sc = sc;

    struct totals tot;
    memset(&tot, 0, sizeof(tot));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned k = 0; k < n_trials; k++)
        run_trial(s, sc, t, k, &tot);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("[%s] %u trials in %.1f s; victims did %llu iterations; gc-first trials "
                  "reclaimed %u dead processes, %u leases, %u locks, %u blocks; metadata "
                  "mutex recovered from a dead owner %llu times\n",
                  sc->name, tot.trials,
                  (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
                  (unsigned long long)tot.victim_iters, tot.dead, tot.leases, tot.locks,
                  tot.blocks, (unsigned long long)s->hdr->n_repairs);
    t_barrier_free(t->go);
    t_shared_free(t, sizeof(struct trial));
    t_cleanup(s, name);
}

/* ---- the tests ---------------------------------------------------------------------- */

static void test_crash_writer_mid_put(void **state)
{
    (void)state;
    static const struct scenario sc = {"writer_mid_put", 300, 1, setup_value, victim_writer,
                                       comp_reader, post_writer, 1, 1};
    run_scenario(&sc);
}

static void test_crash_reader_holding_views(void **state)
{
    (void)state;
    static const struct scenario sc = {"reader_views", 150, 1, setup_value, victim_viewer,
                                       comp_writer, post_viewer, 0, 1};
    run_scenario(&sc);
}

static void test_crash_metadata_mutex(void **state)
{
    (void)state;
    /* Variant 1/3 reopen the store in the loop: a kill between close and open leaves no
     * slot, so gc may find none to report. The others must report exactly the victim. */
    static const struct scenario sc = {"metadata", 250, 1, setup_meta, victim_meta,
                                       comp_meta_viewer, post_meta, 2, 0};
    run_scenario(&sc);
}

static void test_crash_waiter_blocked(void **state)
{
    (void)state;
    static const struct scenario sc = {"waiter", 100, 2, setup_value, victim_waiter,
                                       comp_waiter_or_writer, post_waiter, 1, 1};
    run_scenario(&sc);
}

static void test_crash_reserve_and_lock(void **state)
{
    (void)state;
    static const struct scenario sc = {"reserve_lock", 200, 1, setup_value, victim_reserver,
                                       comp_reader, post_reserver, 1, 1};
    run_scenario(&sc);
}

/* ---- a parent dies while its forked child lives ------------------------------------- */

/* DESIGN 3: liveness is an OFD lock, and a forked child inherits the parent's open file
 * description; the library closes the child's copy at fork, so the parent's death is
 * seen even while the child lives. Here A attaches, pins a view, forks B (which never
 * touches the store) and is killed; B lives on. gc must still find A dead. */
struct orphan_shared {
    pid_t b_pid;
};

static struct orphan_shared *g_orph;
static t_barrier_t *g_orph_ready;
static char g_orph_store[SHMSTORE_STORE_NAME_MAX + 1];

static void orphan_a(void *arg)
{
    (void)arg;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(g_orph_store, 0, NULL, &s), 0);
    shmstore_value_t *v = child_value(s, "p");
    shmstore_view_t vw;
    T_CHILD_RC(shmstore_value_view(v, &vw), 0);
    pid_t b = fork();
    T_CHILD_CHECK(b >= 0);
    if (b == 0) {
        /* fork() returns here after the atfork handlers ran: our copy of A's descriptor
         * is closed by now (until then, B would legitimately keep A's lock). */
        t_barrier_wait(g_orph_ready);
        for (;;)
            pause();
    }
    g_orph->b_pid = b;
    t_barrier_wait(g_orph_ready);
    for (;;)
        pause();
}

static int print_proc(const shmstore_proc_info_t *info, void *arg)
{
    (void)arg;
    print_message("  slot %u pid %d alive %d self %d leases %u\n", info->slot, info->pid,
                  info->is_alive, info->is_self, info->n_leases);
    return 0;
}

static void test_crash_parent_dies_child_lives(void **state)
{
    (void)state;
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0); /* to reap B */
    t_store_name(g_orph_store, sizeof(g_orph_store));
    shmstore_t *s = t_open_new(g_orph_store, 64u << 20);
    unsigned char buf[4096];
    pl_fill(buf, sizeof(buf), WRITER_INIT, 0);
    T_OK(shmstore_put(s, "p", NULL, buf, sizeof(buf), 0));
    g_orph = t_shared_alloc(sizeof(*g_orph));
    g_orph_ready = t_barrier_new(3); /* the parent, A and B */
    for (int round = 0; round < 3; round++) {
        T_OK(shmstore_gc(s, NULL));
        uint64_t base = used_sans_index(s);
        pid_t a = t_fork(orphan_a, NULL);
        t_barrier_wait(g_orph_ready);
        assert_int_equal(kill(a, SIGKILL), 0);
        assert_int_equal(t_wait_child(a, POST_TIMEOUT_MS), 128 + SIGKILL);
        shmstore_gc_stats_t st;
        memset(&st, 0, sizeof(st));
        T_OK(shmstore_gc(s, &st));
        kill(g_orph->b_pid, SIGKILL);
        (void)t_wait_child(g_orph->b_pid, POST_TIMEOUT_MS);
        if (st.dead_procs != 1) {
            print_message("round %d: the parent A (pid %ld) was killed while its child B "
                          "(pid %ld) lives: gc reclaimed %u dead processes, %u leases (A's "
                          "slot still looks alive?); slots:\n",
                          round, (long)a, (long)g_orph->b_pid, st.dead_procs,
                          st.leases_dropped);
            (void)shmstore_procs(s, print_proc, NULL);
        }
        assert_int_equal(st.dead_procs, 1);
        assert_true(st.leases_dropped >= 2); /* A's value handle and view */
        T_OK(shmstore_gc(s, NULL));
        assert_int_equal(used_sans_index(s), base);
        struct proc_count pc = {0, 0, 0};
        T_OK(shmstore_procs(s, count_procs, &pc));
        assert_int_equal(pc.n, 1);
    }
    t_barrier_free(g_orph_ready);
    t_shared_free(g_orph, sizeof(*g_orph));
    T_OK(shmstore_delete(s, "p"));
    t_cleanup(s, g_orph_store);
}

/* ---- the creator of a store is killed ----------------------------------------------- */

/* Killed at a random moment of shmstore_open(CREATE|EXCL). Opening afterwards must not
 * hang (DESIGN 1: a dead process never blocks the others for long): it either finds a
 * complete store, or no store, or reports the half-made one (SHMSTORE_ECORRUPT, removable
 * with shmstore_unlink), and the name can then be created again. */
static char g_creat_store[SHMSTORE_STORE_NAME_MAX + 1];
static _Atomic int *g_creat_rc;

static void creator_victim(void *arg)
{
    (void)arg;
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 64u << 20;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(g_creat_store, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s), 0);
    for (;;)
        pause();
}

static void creator_post(void *arg)
{
    (void)arg;
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 64u << 20;
    shmstore_t *s = NULL;
    int rc = shmstore_open(g_creat_store, SHMSTORE_O_CREATE, &opt, &s);
    atomic_store(g_creat_rc, rc);
    if (rc == 0) {
        char rep[2048];
        T_CHILD_RC(shmstore_check(s, rep, sizeof(rep)), 0);
        unsigned char buf[256];
        pl_fill(buf, sizeof(buf), WRITER_POST, 1);
        T_CHILD_RC(shmstore_put(s, "x", NULL, buf, sizeof(buf), 0), 0);
        T_CHILD_RC(shmstore_delete(s, "x"), 0);
        shmstore_close(s);
    } else {
        T_CHILD_CHECK(rc == SHMSTORE_ECORRUPT);
    }
}

static void test_crash_creator_killed(void **state)
{
    (void)state;
    g_creat_rc = t_shared_alloc(sizeof(*g_creat_rc));
    unsigned n_ok = 0, n_corrupt = 0;
    for (int k = 0; k < 20; k++) {
        t_store_name(g_creat_store, sizeof(g_creat_store));
        pid_t v = t_fork(creator_victim, NULL);
        uint64_t d = pl_rand(&g_rnd) % 1500000; /* 0 .. 1.5 ms after the fork */
        struct timespec ts = {0, (long)d};
        nanosleep(&ts, NULL);
        kill(v, SIGKILL);
        int vst = t_wait_child(v, POST_TIMEOUT_MS);
        assert_int_equal(vst, 128 + SIGKILL);
        atomic_store(g_creat_rc, 1);
        int pst = t_wait_child(t_fork(creator_post, NULL), POST_TIMEOUT_MS);
        if (pst != 0)
            print_message("creator killed after %llu ns: opening afterwards %s (status %d, "
                          "open returned %d)\n",
                          (unsigned long long)d, pst < 0 ? "hung" : "failed", pst,
                          atomic_load(g_creat_rc));
        assert_int_equal(pst, 0);
        if (atomic_load(g_creat_rc) == 0)
            n_ok++;
        else
            n_corrupt++;
        int urc = shmstore_unlink(g_creat_store, NULL);
        assert_true(urc == 0 || urc == -ENOENT);
        shmstore_t *s = t_open_new(g_creat_store, 16u << 20);
        t_cleanup(s, g_creat_store);
    }
    print_message("[creator] 20 kills: %u stores usable afterwards, %u half-made "
                  "(SHMSTORE_ECORRUPT)\n", n_ok, n_corrupt);
    t_shared_free(g_creat_rc, sizeof(*g_creat_rc));
}

int main(void)
{
    const char *env = getenv("SHMSTORE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    printf("test_crash: SHMSTORE_TEST_SEED=%llu\n", (unsigned long long)seed);
    g_rnd = seed | 1;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_writer_mid_put),
        cmocka_unit_test(test_crash_reader_holding_views),
        cmocka_unit_test(test_crash_metadata_mutex),
        cmocka_unit_test(test_crash_waiter_blocked),
        cmocka_unit_test(test_crash_reserve_and_lock),
        cmocka_unit_test(test_crash_parent_dies_child_lives),
        cmocka_unit_test(test_crash_creator_killed),
    };
    /* SHMSTORE_TEST_FILTER=<glob> runs only the matching tests (for replaying one). */
    if (getenv("SHMSTORE_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHMSTORE_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
