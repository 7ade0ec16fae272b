/* test_fork.c - handles across fork(): in the child every call through a handle opened
 * by the parent returns SHMSTORE_EFORK (and closing them does not disturb the parent);
 * the child opens the store again and works; the parent's attachment is untouched. */
#include "test.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024ull * 1024ull)

struct fork_arg {
    const char *name;
    shmstore_t *s;
    shmstore_value_t *v;
    shmstore_view_t *view;
    shmstore_value_t *v_reserved; /* the parent has a version reserved on it */
    shmstore_value_t *v_locked;   /* the parent holds it with value_lock() */
};

static int count_procs_cb(const shmstore_proc_info_t *info, void *arg)
{
    (void)info;
    (*(int *)arg)++;
    return 0;
}

static int list_cb(const shmstore_obj_info_t *info, void *arg)
{
    (void)info;
    (void)arg;
    return 0;
}

static void child_old_handles(void *p)
{
    struct fork_arg *a = p;
    char buf[64];
    size_t len = 0;
    uint64_t ver = 0;
    shmstore_view_t view;
    shmstore_stat_t st;
    shmstore_obj_info_t info;
    shmstore_datum_t d;
    shmstore_value_t *v2 = NULL;
    void *data = NULL;
    char report[256];
    int n = 0;

    T_CHILD_RC(shmstore_value_get(a->v, NULL, buf, sizeof(buf), &len, &ver), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_put(a->v, NULL, "child", 5, 0), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_view(a->v, &view), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_version(a->v, &ver), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_mtime(a->v, &ver), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_wait(a->v, 0, 0, &ver), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_trigger(a->v), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_seal(a->v), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_info(a->v, &info), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_reserve(a->v, NULL, 4, 0, &data), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_lock(a->v, 0, &data, &len, &d), SHMSTORE_EFORK);
    /* The parent's reservation and lock are the parent's: the child cannot publish them. */
    T_CHILD_RC(shmstore_value_commit(a->v_reserved), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_unlock(a->v_locked), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_value_open(a->s, "obj", 0, &v2), SHMSTORE_EFORK);
    T_CHILD_CHECK(v2 == NULL);
    T_CHILD_RC(shmstore_put(a->s, "obj", NULL, "child", 5, 0), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_get(a->s, "obj", NULL, buf, sizeof(buf), &len, &ver), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_info(a->s, "obj", &info), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_delete(a->s, "obj"), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_stat(a->s, &st), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_list(a->s, NULL, list_cb, NULL), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_procs(a->s, count_procs_cb, &n), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_gc(a->s, NULL), SHMSTORE_EFORK);
    T_CHILD_RC(shmstore_check(a->s, report, sizeof(report)), SHMSTORE_EFORK);
    T_CHILD_CHECK(strstr(shmstore_errmsg(), "fork") != NULL ||
                  strstr(shmstore_errmsg(), "EFORK") != NULL);

    /* Destroyers accept the inherited handles without touching the parent's state: its
     * view stays pinned, its writer locks stay held. */
    shmstore_view_release(a->view);
    shmstore_value_abort(a->v);
    shmstore_value_abort(a->v_reserved);
    shmstore_value_close(a->v_reserved);
    shmstore_value_close(a->v_locked);
    shmstore_value_close(a->v);
    shmstore_close(a->s);

    /* Opening again works: a new attachment of this process. */
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(a->name, 0, NULL, &s), 0);
    shmstore_value_t *v = NULL;
    T_CHILD_RC(shmstore_value_open(s, "obj", 0, &v), 0);
    T_CHILD_RC(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, &ver), 0);
    T_CHILD_CHECK(len == 6 && memcmp(buf, "parent", 6) == 0 && ver == 1);
    T_CHILD_RC(shmstore_value_put(v, NULL, "child!", 6, 0), 0);
    T_CHILD_RC(shmstore_stat(s, &st), 0);
    T_CHILD_CHECK(st.n_procs == 2);
    /* The parent still holds the writer locks of "res" and "lck", and nothing the child
     * did published the parent's reserved or locked versions. */
    static const char *const held[] = {"res", "lck"};
    for (int i = 0; i < 2; i++) {
        shmstore_value_t *hv = NULL;
        T_CHILD_RC(shmstore_value_open(s, held[i], 0, &hv), 0);
        T_CHILD_RC(shmstore_value_version(hv, &ver), 0);
        T_CHILD_CHECK(ver == 1);
        T_CHILD_RC(shmstore_value_lock(hv, 0, &data, &len, &d), -ETIMEDOUT);
        T_CHILD_RC(shmstore_value_lock(hv, 1000000, &data, &len, &d), -ETIMEDOUT);
        shmstore_value_close(hv);
    }
    T_CHILD_RC(shmstore_check(s, report, sizeof(report)), 0);
    shmstore_value_close(v);
    shmstore_close(s);
}

static void test_fork_old_handles_efork(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 8 * MiB);
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "obj", SHMSTORE_V_CREATE, &v));
    T_OK(shmstore_value_put(v, NULL, "parent", 6, 0));
    shmstore_view_t view;
    T_OK(shmstore_value_view(v, &view));
    shmstore_value_t *vr = NULL, *vl = NULL;
    T_OK(shmstore_value_open(s, "res", SHMSTORE_V_CREATE, &vr));
    T_OK(shmstore_value_put(vr, NULL, "r0", 2, 0));
    void *rdata = NULL, *ldata = NULL;
    T_OK(shmstore_value_reserve(vr, NULL, 2, 0, &rdata));
    memcpy(rdata, "r1", 2);
    T_OK(shmstore_value_open(s, "lck", SHMSTORE_V_CREATE, &vl));
    T_OK(shmstore_value_put(vl, NULL, "l0", 2, 0));
    size_t llen = 0;
    T_OK(shmstore_value_lock(vl, 0, &ldata, &llen, NULL));
    assert_int_equal(llen, 2);
    memcpy(ldata, "l1", 2);

    struct fork_arg a = {name, s, v, &view, vr, vl};
    pid_t pid = t_fork(child_old_handles, &a);
    assert_int_equal(t_wait_child(pid, 60000), 0);

    /* The parent publishes what it reserved and locked before the fork. */
    T_OK(shmstore_value_commit(vr));
    T_OK(shmstore_value_unlock(vl));
    char rl[4];
    size_t rlen = 0;
    uint64_t rver = 0;
    T_OK(shmstore_value_get(vr, NULL, rl, sizeof(rl), &rlen, &rver));
    assert_int_equal(rver, 2);
    assert_memory_equal(rl, "r1", 2);
    T_OK(shmstore_value_get(vl, NULL, rl, sizeof(rl), &rlen, &rver));
    assert_int_equal(rver, 2);
    assert_memory_equal(rl, "l1", 2);
    shmstore_value_close(vr);
    shmstore_value_close(vl);

    /* The parent is still attached, its view still pinned and intact. */
    assert_memory_equal(view.data, "parent", 6);
    uint64_t ver = 0;
    T_OK(shmstore_value_version(v, &ver));
    assert_int_equal(ver, 2); /* the child's put */
    char buf[16];
    size_t len = 0;
    T_OK(shmstore_value_get(v, NULL, buf, sizeof(buf), &len, NULL));
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "child!", 6);
    int n = 0;
    T_OK(shmstore_procs(s, count_procs_cb, &n));
    assert_int_equal(n, 1);
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_procs, 1);
    t_assert_clean(s);
    T_OK(shmstore_value_put(v, NULL, "again", 5, 0));
    /* The view the child "released" is still held by the parent. */
    for (int i = 0; i < 10; i++)
        T_OK(shmstore_value_put(v, NULL, "overwrite", 9, 0));
    assert_memory_equal(view.data, "parent", 6);
    shmstore_view_release(&view);
    shmstore_value_close(v);
    t_cleanup(s, name);
}

/* A child that exits without closing leaves a dead slot and a lease; gc reclaims them
 * and the store is consistent. */
static void child_leaves_lease(void *p)
{
    struct fork_arg *a = p;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(a->name, 0, NULL, &s), 0);
    shmstore_value_t *v = NULL;
    T_CHILD_RC(shmstore_value_open(s, "obj", 0, &v), 0);
    shmstore_view_t view;
    T_CHILD_RC(shmstore_value_view(v, &view), 0);
    /* _exit without close. */
}

static void test_fork_child_exit_without_close(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 8 * MiB);
    T_OK(shmstore_put(s, "obj", NULL, "data", 4, 0));
    struct fork_arg a = {name, NULL, NULL, NULL, NULL, NULL};
    pid_t pid = t_fork(child_leaves_lease, &a);
    assert_int_equal(t_wait_child(pid, 60000), 0);

    shmstore_gc_stats_t gs;
    memset(&gs, 0, sizeof(gs));
    T_OK(shmstore_gc(s, &gs));
    assert_int_equal(gs.dead_procs, 1);
    assert_true(gs.leases_dropped >= 1);
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_procs, 1);
    /* The object the child had pinned can be deleted and its memory reclaimed. */
    T_OK(shmstore_delete(s, "obj"));
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_objects, 0);
    t_cleanup(s, name);
}

/* Fork while nothing is open: the child simply opens. */
static void child_open_fresh(void *p)
{
    struct fork_arg *a = p;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(a->name, 0, NULL, &s), 0);
    T_CHILD_RC(shmstore_put(s, "from_child", NULL, "hi", 2, 0), 0);
    shmstore_close(s);
}

static void test_fork_child_opens(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 8 * MiB);
    struct fork_arg a = {name, NULL, NULL, NULL, NULL, NULL};
    for (int i = 0; i < 5; i++) {
        pid_t pid = t_fork(child_open_fresh, &a);
        assert_int_equal(t_wait_child(pid, 60000), 0);
    }
    char buf[4];
    size_t len = 0;
    uint64_t ver = 0;
    T_OK(shmstore_get(s, "from_child", NULL, buf, sizeof(buf), &len, &ver));
    assert_int_equal(len, 2);
    assert_int_equal(ver, 5);
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_procs, 1);
    t_cleanup(s, name);
}

/* ---- views inherited across fork: shmstore_view_adopt ------------------------------- */

#define ADOPT_LEN (256u * 1024u)

struct adopt_arg {
    const char *name;
    shmstore_view_t *view;  /* the parent's, inherited */
    int to_child[2], to_parent[2];
    int parent_first;       /* the parent releases its view before the child adopts: */
};                          /* ADOPT_LATE, or ADOPT_REFILLED (then holds the same block
                               again, refilled with a newer version) */

#define ADOPT_LATE 1
#define ADOPT_REFILLED 2

static void pipe_signal(int fd)
{
    char c = 1;
    if (write(fd, &c, 1) != 1)
        t_child_fail(__FILE__, __LINE__, "pipe write");
}

static int pipe_await(int fd)
{
    char c;
    return read(fd, &c, 1) == 1 ? 0 : -1;
}

static int all_bytes(const void *p, size_t n, unsigned char want)
{
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != want)
            return 0;
    return 1;
}

static void child_adopts(void *p)
{
    struct adopt_arg *a = p;
    shmstore_t *s = NULL;
    shmstore_view_t mine, again, own;
    shmstore_value_t *v = NULL;
    T_CHILD_RC(shmstore_open(a->name, SHMSTORE_O_NORECOVER, NULL, &s), 0);
    if (a->parent_first) {
        T_CHILD_CHECK(pipe_await(a->to_child[0]) == 0);
        T_CHILD_RC(shmstore_view_adopt(s, a->view, &mine), -ESTALE);
        shmstore_close(s);
        return;
    }
    T_CHILD_RC(shmstore_view_adopt(s, a->view, &mine), 0);
    T_CHILD_CHECK(mine.len == ADOPT_LEN && mine.version == a->view->version);
    T_CHILD_CHECK(mine.data != a->view->data && all_bytes(mine.data, ADOPT_LEN, 0xab));
    T_CHILD_RC(shmstore_view_adopt(s, a->view, &again), 0); /* a second lease: counted */
    shmstore_view_release(&again);
    /* Errors: a view of this process, nothing, a handle inherited itself. */
    T_CHILD_RC(shmstore_value_open(s, "img", 0, &v), 0);
    T_CHILD_RC(shmstore_value_view(v, &own), 0);
    T_CHILD_RC(shmstore_view_adopt(s, &own, &again), -EINVAL);
    shmstore_view_release(&own);
    shmstore_value_close(v);
    T_CHILD_RC(shmstore_view_adopt(s, NULL, &again), -EINVAL);
    T_CHILD_RC(shmstore_view_adopt(a->view->store, a->view, &again), SHMSTORE_EFORK);

    /* The parent now drops its view and overwrites the value many times over. */
    pipe_signal(a->to_parent[1]);
    T_CHILD_CHECK(pipe_await(a->to_child[0]) == 0);
    T_CHILD_CHECK(all_bytes(mine.data, ADOPT_LEN, 0xab));
    T_CHILD_CHECK(all_bytes(a->view->data, ADOPT_LEN, 0xab)); /* same bytes, other mapping */
    shmstore_view_release(a->view);
    shmstore_view_release(&mine);
    shmstore_close(s);
}

static void run_adopt(int parent_first)
{
    static unsigned char buf[ADOPT_LEN];
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MiB);
    shmstore_value_t *v = NULL;
    T_OK(shmstore_value_open(s, "img", SHMSTORE_V_CREATE, &v));
    memset(buf, 0xab, sizeof(buf));
    T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));
    shmstore_view_t view;
    T_OK(shmstore_value_view(v, &view));
    struct adopt_arg a = {.name = name, .view = &view, .parent_first = parent_first};
    assert_int_equal(pipe(a.to_child), 0);
    assert_int_equal(pipe(a.to_parent), 0);
    pid_t pid = t_fork(child_adopts, &a);
    if (!parent_first)
        assert_int_equal(pipe_await(a.to_parent[0]), 0);
    uint64_t block = view.block_off;
    shmstore_view_release(&view);
    memset(buf, 0xcd, sizeof(buf));
    for (int i = 0; i < 20; i++) /* every rotation block is reused, unless leased */
        T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));
    shmstore_view_t again = {0};
    for (int i = 0; parent_first == ADOPT_REFILLED && again.block_off != block; i++) {
        /* hold the same block, refilled: the child finds our lease on it, not our data */
        assert_true(i < 100);
        shmstore_view_release(&again);
        T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));
        T_OK(shmstore_value_view(v, &again));
    }
    shmstore_gc_stats_t gs;
    T_OK(shmstore_gc(s, &gs));
    pipe_signal(a.to_child[1]);
    assert_int_equal(t_wait_child(pid, 60000), 0);
    shmstore_view_release(&again);
    for (int i = 0; i < 2; i++) {
        close(a.to_child[i]);
        close(a.to_parent[i]);
    }
    T_OK(shmstore_value_put(v, NULL, buf, sizeof(buf), 0));
    shmstore_value_close(v);
    t_assert_clean(s);
    t_cleanup(s, name);
}

/* The child leases the parent's version: the parent's release and later puts leave its
 * bytes alone, and its release frees the block. */
static void test_fork_view_adopt(void **state)
{
    (void)state;
    run_adopt(0);
}

/* Too late: the parent released its view before the child adopted it, and may even
 * hold the same block again with other bytes: -ESTALE, never the wrong bytes. */
static void test_fork_view_adopt_too_late(void **state)
{
    (void)state;
    run_adopt(ADOPT_LATE);
    run_adopt(ADOPT_REFILLED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_old_handles_efork),
        cmocka_unit_test(test_fork_child_exit_without_close),
        cmocka_unit_test(test_fork_child_opens),
        cmocka_unit_test(test_fork_view_adopt),
        cmocka_unit_test(test_fork_view_adopt_too_late),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
