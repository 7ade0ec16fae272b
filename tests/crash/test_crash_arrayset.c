/* test_crash_arrayset.c - kill -9 soak of set loading: a process creating, filling,
 * committing and deleting sets (1..40 members of 0 B .. 2 MiB, some tied to it) is killed
 * with a real SIGKILL at a random moment, 60 trials.
 * After each kill the parent runs gc and asserts: no set is left half-made (a set that
 * is there opens, and every member holds its whole pattern), no tied set of the dead
 * process remains, and once the persistent survivors are deleted the used bytes are
 * back to the baseline and shmstore_check() is clean.
 * The random seed is printed; SHMSTORE_TEST_SEED=<n> replays a run. */
#include "test.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
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
    for (int i = 0; i < 16; i++)
        if (!names[i][0]) {
            snprintf(names[i], sizeof(names[i]), "%s", info->name);
            break;
        }
    return 0;
}

static void test_crash_arrayset_kill_soak(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, STORE_CAP);
    uint64_t x = 1;
    T_OK(shmstore_put(s, "index-maker", NULL, &x, sizeof(x), 0));
    T_OK(shmstore_delete(s, "index-maker"));
    T_OK(shmstore_gc(s, NULL));
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    uint64_t base = st.used;
    const char *env = getenv("SHMSTORE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    print_message("seed %" PRIu64 "\n", seed);
    uint64_t r = seed | 1;
    struct shared *sh = t_shared_alloc(sizeof(*sh));
    unsigned survivors = 0;
    for (int t = 0; t < N_TRIALS; t++) {
        snprintf(sh->store, sizeof(sh->store), "%s", name);
        sh->seed = rnd(&r);
        atomic_store(&sh->started, 0);
        pid_t pid = t_fork(victim, sh);
        while (!atomic_load(&sh->started))
            usleep(100);
        usleep((useconds_t)(1 + rnd(&r) % 20000));
        kill(pid, SIGKILL);
        int w = t_wait_child(pid, 10000);
        assert_int_equal(w, 128 + SIGKILL);
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
        T_OK(shmstore_gc(s, NULL));
        T_OK(shmstore_stat(s, &st));
        assert_int_equal(st.n_objects, 0);
        assert_int_equal(st.n_procs, 1);
        if (st.used != base)
            fail_msg("trial %d: %" PRIu64 " bytes leaked", t, st.used - base);
        t_assert_clean(s);
    }
    print_message("%d trials, %u complete sets survived their killed creator\n", N_TRIALS,
                  survivors);
    t_shared_free(sh, sizeof(*sh));
    t_cleanup(s, name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_arrayset_kill_soak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
