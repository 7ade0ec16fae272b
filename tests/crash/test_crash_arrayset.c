/* test_crash_arrayset.c - kill -9 soak of set loading: a process creating, filling,
 * committing and deleting sets (1..40 members of 0 B .. 2 MiB, some tied to it) is killed
 * with a real SIGKILL at a random moment, 60 trials.
 * After each kill the parent runs gc and asserts: no set is left half-made (a set that
 * is there opens, and every member holds its whole pattern), no tied set of the dead
 * process remains, and once the persistent survivors are deleted the used bytes are
 * back to the baseline and shmstore_check() is clean.
 * Then the same for shmstore_hdf5_load() of a file of 64 datasets (50 trials; skipped
 * without HDF5 or h5py), and, as root, loads into a store larger than the small tmpfs
 * it lives on: -ENOSPC, nothing left behind, never SIGBUS.
 * The random seed is printed; SHMSTORE_TEST_SEED=<n> replays a run. */
#include "test.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>

#define STORE_CAP (256ull << 20)
#define N_TRIALS 60

static uint64_t rnd(uint64_t *r)
{
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    return *r;
}

struct shared {
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    uint64_t seed;
    _Atomic int started;
};

static uint8_t pattern(uint64_t gen_seed, size_t member, uint64_t k)
{
    return (uint8_t)(gen_seed * 31 + member * 7 + k);
}

/* Make one set "s<k>" with members whose bytes follow pattern(seed, i, k). */
static void victim(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    T_CHILD_RC(shmstore_open(sh->store, 0, NULL, &s), 0);
    uint64_t r = sh->seed | 1;
    atomic_store(&sh->started, 1);
    for (uint64_t k = 0;; k++) {
        size_t n = 1 + rnd(&r) % 40;
        shmstore_set_member_t m[40];
        char names[40][48];
        uint64_t shapes[40][1];
        for (size_t i = 0; i < n; i++) {
            snprintf(names[i], sizeof(names[i]), "g%zu/m%zu", i % 3, i);
            shapes[i][0] = (rnd(&r) % 8 == 0) ? rnd(&r) % (2u << 20) : rnd(&r) % 4096;
            m[i].name = names[i];
            shmstore_datum_init_array(&m[i].desc, "|u1", 1, shapes[i]);
            m[i].len = shapes[i][0];
        }
        unsigned flags = rnd(&r) % 3 == 0 ? SHMSTORE_SET_TIED : 0;
        char name[32];
        snprintf(name, sizeof(name), "s%" PRIu64, k % 4);
        int del = shmstore_delete(s, name);
        T_CHILD_CHECK(del == 0 || del == -ENOENT);
        shmstore_set_t *set;
        int c = shmstore_set_create(s, name, flags, m, n, &set);
        if (c == -ENOSPC || c == SHMSTORE_ELEASES)
            continue;
        T_CHILD_RC(c, 0);
        /* The seed of the set's pattern is its member count: the checker reads it back. */
        for (size_t i = 0; i < n; i++) {
            shmstore_set_member_t mi;
            T_CHILD_RC(shmstore_set_member(set, i, &mi), 0);
            uint8_t *p = shmstore_set_data(set, i);
            for (uint64_t b = 0; b < mi.len; b++)
                p[b] = pattern(n, i, b);
        }
        T_CHILD_RC(shmstore_set_commit(set), 0);
        shmstore_set_close(set);
    }
}

static int collect_sets(const shmstore_obj_info_t *info, void *arg)
{
    char (*names)[SHMSTORE_NAME_MAX + 1] = arg;
    if (info->set_prefix_len)
        return 0; /* a member: checked through its set */
    for (int i = 0; i < 16; i++)
        if (!names[i][0]) {
            snprintf(names[i], sizeof(names[i]), "%s", info->name);
            break;
        }
    return 0;
}

/* A fresh store with its name index made, and the used bytes nothing else takes. */
static shmstore_t *new_store(char *name, size_t cap, uint64_t *base)
{
    t_store_name(name, cap);
    shmstore_t *s = t_open_new(name, STORE_CAP);
    uint64_t x = 1;
    shmstore_stat_t st;
    T_OK(shmstore_put(s, "index-maker", NULL, &x, sizeof(x), 0));
    T_OK(shmstore_delete(s, "index-maker"));
    T_OK(shmstore_gc(s, NULL));
    T_OK(shmstore_stat(s, &st));
    *base = st.used;
    return s;
}

/* Fork fn(sh), let it start, SIGKILL it after 1 .. max_us microseconds, reap it. */
static void kill_soon(void (*fn)(void *), struct shared *sh, uint64_t *r, unsigned max_us)
{
    atomic_store(&sh->started, 0);
    pid_t pid = t_fork(fn, sh);
    while (!atomic_load(&sh->started))
        usleep(100);
    usleep((useconds_t)(1 + rnd(r) % max_us));
    kill(pid, SIGKILL);
    assert_int_equal(t_wait_child(pid, 10000), 128 + SIGKILL);
}

/* After gc: no object, no process but us, used bytes at the baseline, check clean. */
static void assert_back_to(shmstore_t *s, uint64_t base, const char *what, int t)
{
    shmstore_stat_t st;
    T_OK(shmstore_gc(s, NULL));
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 0);
    assert_int_equal(st.n_procs, 1);
    if (st.used != base)
        fail_msg("%s trial %d: %" PRIu64 " bytes leaked", what, t, st.used - base);
    t_assert_clean(s);
}

static void test_crash_arrayset_kill_soak(void **state)
{
    (void)state;
    char name[128];
    uint64_t base;
    shmstore_t *s = new_store(name, sizeof(name), &base);
    const char *env = getenv("SHMSTORE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    print_message("seed %" PRIu64 "\n", seed);
    uint64_t r = seed | 1;
    struct shared *sh = t_shared_alloc(sizeof(*sh));
    unsigned survivors = 0;
    for (int t = 0; t < N_TRIALS; t++) {
        snprintf(sh->store, sizeof(sh->store), "%s", name);
        sh->seed = rnd(&r);
        kill_soon(victim, sh, &r, 20000);
        T_OK(shmstore_gc(s, NULL));
        char names[16][SHMSTORE_NAME_MAX + 1];
        memset(names, 0, sizeof(names));
        T_OK(shmstore_list(s, NULL, collect_sets, names));
        for (int i = 0; i < 16 && names[i][0]; i++) {
            shmstore_set_t *set;
            T_OK(shmstore_set_open(s, names[i], &set)); /* nothing half-made is listed */
            shmstore_obj_info_t info;
            T_OK(shmstore_set_info(set, &info));
            assert_int_equal(info.set_flags & SHMSTORE_SET_TIED, 0); /* its creator is dead */
            size_t n = shmstore_set_count(set);
            for (size_t k = 0; k < n; k++) {
                shmstore_view_t v;
                T_OK(shmstore_set_view(set, k, &v));
                const uint8_t *p = v.data;
                for (uint64_t b = 0; b < v.len; b++)
                    if (p[b] != pattern(n, k, b))
                        fail_msg("trial %d: set '%s' member %zu byte %" PRIu64 " is torn", t,
                                 names[i], k, b);
                shmstore_view_release(&v);
            }
            shmstore_set_close(set);
            T_OK(shmstore_delete(s, names[i]));
            survivors++;
        }
        assert_back_to(s, base, "set", t);
    }
    print_message("%d trials, %u complete sets survived their killed creator\n", N_TRIALS,
                  survivors);
    t_shared_free(sh, sizeof(*sh));
    t_cleanup(s, name);
}

/* ---- HDF5 --------------------------------------------------------------------------- */

#define N_H5_TRIALS 50
static char g_h5[512];

static int have_h5(void)
{
    if (!shmstore_hdf5_available() || system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0)
        return 0;
    if (!g_h5[0]) {
        char dir[256], cmd[1024];
        t_mkdtemp(dir, sizeof(dir));
        snprintf(g_h5, sizeof(g_h5), "%s/many.h5", dir);
        snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/make_h5.py %s many", T_DATA_DIR, g_h5);
        if (system(cmd) != 0)
            return 0;
    }
    return 1;
}

static void h5_victim(void *arg)
{
    struct shared *sh = arg;
    shmstore_t *s;
    T_CHILD_RC(shmstore_open(sh->store, 0, NULL, &s), 0);
    atomic_store(&sh->started, 1);
    for (;;) {
        int d = shmstore_delete(s, "h");
        T_CHILD_CHECK(d == 0 || d == -ENOENT);
        T_CHILD_RC(shmstore_hdf5_load(s, g_h5, "h", 0, NULL, NULL, NULL), 0);
    }
}

static void test_crash_arrayset_hdf5_kill_soak(void **state)
{
    (void)state;
    if (!have_h5())
        T_SKIP("built without HDF5, or no h5py to make the file");
    char name[128];
    uint64_t base, r = (uint64_t)time(NULL) | 1;
    shmstore_t *s = new_store(name, sizeof(name), &base);
    struct shared *sh = t_shared_alloc(sizeof(*sh));
    unsigned complete = 0;
    for (int t = 0; t < N_H5_TRIALS; t++) {
        snprintf(sh->store, sizeof(sh->store), "%s", name);
        kill_soon(h5_victim, sh, &r, 30000);
        T_OK(shmstore_gc(s, NULL));
        shmstore_set_t *set;
        int o = shmstore_set_open(s, "h", &set);
        if (o == 0) { /* complete: every dataset whole */
            assert_int_equal(shmstore_set_count(set), 64);
            for (size_t k = 0; k < 64; k++) {
                shmstore_view_t v;
                shmstore_set_member_t m;
                T_OK(shmstore_set_member(set, k, &m));
                T_OK(shmstore_set_view(set, k, &v));
                int id = atoi(strrchr(m.name, 'd') + 1);
                const double *d = v.data;
                assert_int_equal(v.len, 32768 * 8);
                assert_true(d[0] == id && d[32767] == id);
                shmstore_view_release(&v);
            }
            shmstore_set_close(set);
            T_OK(shmstore_delete(s, "h"));
            complete++;
        } else {
            T_ASSERT_RC(o, -ENOENT);
        }
        assert_back_to(s, base, "hdf5", t);
    }
    print_message("%d HDF5 trials, %u loads complete when killed\n", N_H5_TRIALS, complete);
    t_shared_free(sh, sizeof(*sh));
    t_cleanup(s, name);
}

/* As root: a 256 MiB store on a 16 MiB tmpfs (private mount namespace of a child). */
static void tmpfs_child(void *arg)
{
    const char *dir = arg;
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("shmstore_test", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0700") != 0)
        _exit(T_EXIT_SKIP);
    shmstore_options_t opt = {.capacity = 256ull << 20, .dir = dir};
    shmstore_t *s;
    T_CHILD_RC(shmstore_open("tiny", SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s), 0);
    shmstore_set_member_t m[2] = {{.name = "small", .len = 4096}, {.name = "big", .len = 64ull << 20}};
    uint64_t n0 = 4096, n1 = 64ull << 20;
    shmstore_datum_init_array(&m[0].desc, "|u1", 1, &n0);
    shmstore_datum_init_array(&m[1].desc, "|u1", 1, &n1);
    shmstore_set_t *set;
    T_CHILD_RC(shmstore_set_create(s, "p", 0, m, 2, &set), -ENOSPC);
    if (g_h5[0]) /* 16 MiB of datasets, plus the store's own pages: not on this tmpfs */
        T_CHILD_RC(shmstore_hdf5_load(s, g_h5, "h", 0, NULL, NULL, NULL), -ENOSPC);
    shmstore_stat_t st;
    T_CHILD_RC(shmstore_stat(s, &st), 0);
    T_CHILD_CHECK(st.n_objects == 0);
    T_CHILD_RC(shmstore_set_create(s, "p", 0, m, 1, &set), 0); /* the store still works */
    T_CHILD_RC(shmstore_set_commit(set), 0);
    shmstore_set_close(set);
    T_CHILD_RC(shmstore_check(s, NULL, 0), 0);
    shmstore_close(s);
    shmstore_unlink("tiny", dir);
    umount(dir);
}

static void test_crash_arrayset_small_tmpfs(void **state)
{
    (void)state;
    if (!t_is_root())
        T_SKIP("mounting a small tmpfs needs root");
    have_h5(); /* the 16 MiB file, if it can be made */
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/shmstore-tmpfs-XXXXXX");
    if (!mkdtemp(dir))
        T_SKIP("mkdtemp: %s", strerror(errno));
    int st = t_wait_child(t_fork(tmpfs_child, dir), 60000);
    rmdir(dir);
    if (st == T_EXIT_SKIP)
        T_SKIP("cannot mount a tmpfs here");
    assert_int_equal(st, 0); /* 128 + SIGBUS would be the bug */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_arrayset_kill_soak),
        cmocka_unit_test(test_crash_arrayset_hdf5_kill_soak),
        cmocka_unit_test(test_crash_arrayset_small_tmpfs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
