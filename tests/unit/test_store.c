/* test_store.c - stores: create/open/close/unlink, names, options, directories, file
 * mode and O_NOFOLLOW, figures, listing, reopening, header validation, other users. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>

#include "layout.h"

#define MiB (1024ull * 1024ull)

static bool file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static uint64_t now_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_str(shmstore_t *s, const char *obj, const char *text)
{
    T_OK(shmstore_put(s, obj, NULL, text, strlen(text), 0));
}

static void expect_str(shmstore_t *s, const char *obj, const char *text, uint64_t version)
{
    char buf[256];
    size_t len = 0;
    uint64_t ver = 0;
    T_OK(shmstore_get(s, obj, NULL, buf, sizeof(buf), &len, &ver));
    assert_int_equal(len, strlen(text));
    assert_memory_equal(buf, text, len);
    assert_int_equal(ver, version);
}

/* ---- life cycle -------------------------------------------------------------------- */

static void test_store_create_open_close_unlink(void **state)
{
    (void)state;
    char name[128], path[512];
    t_store_name(name, sizeof(name));
    t_store_path(path, sizeof(path), name, NULL);

    shmstore_t *s = t_open_new(name, 8 * MiB);
    assert_true(file_exists(path));
    assert_string_equal(shmstore_name(s), name);
    assert_non_null(shmstore_dir(s));
    put_str(s, "hello", "world");
    t_assert_clean(s);
    shmstore_close(s);

    /* Reopen without O_CREATE: the data is there. */
    s = NULL;
    T_OK(shmstore_open(name, 0, NULL, &s));
    assert_non_null(s);
    expect_str(s, "hello", "world", 1);
    t_assert_clean(s);
    shmstore_close(s);

    T_OK(shmstore_unlink(name, NULL));
    assert_false(file_exists(path));
    T_ASSERT_RC(shmstore_unlink(name, NULL), -ENOENT);
    shmstore_t *sentinel = (shmstore_t *)(uintptr_t)0x1234;
    s = sentinel;
    T_ASSERT_RC(shmstore_open(name, 0, NULL, &s), -ENOENT);
    assert_ptr_equal(s, sentinel); /* out-parameters are written only on success */
    shmstore_close(NULL);          /* accepts NULL */
    t_cleanup(NULL, name);
}

static void test_store_unlink_while_open(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 8 * MiB);
    put_str(s, "k", "before");
    T_OK(shmstore_unlink(name, NULL));
    /* The open store keeps working; the name is gone. */
    put_str(s, "k", "after");
    expect_str(s, "k", "after", 2);
    shmstore_t *s2 = NULL;
    T_ASSERT_RC(shmstore_open(name, 0, NULL, &s2), -ENOENT);
    /* A new store may take the name while the old one is still mapped. */
    shmstore_t *s3 = t_open_new(name, 8 * MiB);
    shmstore_obj_info_t info;
    T_ASSERT_RC(shmstore_info(s3, "k", &info), -ENOENT);
    t_assert_clean(s);
    shmstore_close(s);
    t_cleanup(s3, name);
}

static void test_store_excl(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 8 * MiB);
    put_str(s, "k", "v");

    shmstore_t *s2 = NULL;
    T_ASSERT_RC(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s2), -EEXIST);
    assert_null(s2);
    /* O_CREATE alone opens the existing store and leaves it as it is. */
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE, NULL, &s2));
    expect_str(s2, "k", "v", 1);
    shmstore_close(s2);
    t_cleanup(s, name);
}

static void test_store_missing(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = NULL;
    long fds = t_count_fds(), maps = t_count_maps(), smaps = t_count_shared_maps();
    T_ASSERT_RC(shmstore_open(name, 0, NULL, &s), -ENOENT);
    assert_null(s);
    assert_true(shmstore_errmsg()[0] != '\0');
    assert_int_equal(t_count_fds(), fds);
    T_ASSERT_MAPS(maps, smaps);
    T_ASSERT_RC(shmstore_unlink(name, NULL), -ENOENT);
}

static void test_store_bad_names(void **state)
{
    (void)state;
    shmstore_t *s = NULL;
    char longname[SHMSTORE_STORE_NAME_MAX + 2];

    T_ASSERT_RC(shmstore_open("", SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s), -EINVAL);
    T_ASSERT_RC(shmstore_open("a/b", SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s), -EINVAL);
    T_ASSERT_RC(shmstore_open("/", SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s), -EINVAL);
    T_ASSERT_RC(shmstore_open("a/", 0, NULL, &s), -EINVAL);
    T_ASSERT_RC(shmstore_open("../x", SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s), -EINVAL);
    memset(longname, 'n', SHMSTORE_STORE_NAME_MAX + 1);
    longname[SHMSTORE_STORE_NAME_MAX + 1] = '\0';
    T_ASSERT_RC(shmstore_open(longname, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s),
                -EINVAL);
    assert_null(s);
    assert_true(shmstore_errmsg()[0] != '\0');

    /* Exactly SHMSTORE_STORE_NAME_MAX bytes is fine. */
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    char prefix[64];
    t_store_name(prefix, sizeof(prefix));
    memset(name, 'x', SHMSTORE_STORE_NAME_MAX);
    memcpy(name, prefix, strlen(prefix));
    name[SHMSTORE_STORE_NAME_MAX] = '\0';
    t_track(name, NULL);
    s = t_open_new(name, 4 * MiB);
    assert_string_equal(shmstore_name(s), name);
    t_cleanup(s, name);
}

/* ---- options ----------------------------------------------------------------------- */

static void test_store_capacity_option(void **state)
{
    (void)state;
    char name[128], path[512];
    t_store_name(name, sizeof(name));
    t_store_path(path, sizeof(path), name, NULL);

    shmstore_t *s = t_open_new(name, 6 * MiB);
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.capacity, 6 * MiB);
    struct stat fst;
    assert_int_equal(stat(path, &fst), 0);
    assert_int_equal((uint64_t)fst.st_size, st.capacity);
    /* Sparse: creating does not commit the whole capacity. */
    assert_true(st.committed <= st.capacity);
    assert_true(st.used <= st.committed);
    t_assert_clean(s);
    shmstore_close(s);

    /* Options are used only when creating: reopening with another capacity changes
     * nothing. */
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 64 * MiB;
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE, &opt, &s));
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.capacity, 6 * MiB);
    t_cleanup(s, name);
}

static void test_store_default_capacity(void **state)
{
    (void)state;
    char name[128];
    struct statvfs vfs;
    assert_int_equal(statvfs("/dev/shm", &vfs), 0);
    uint64_t fs_size = (uint64_t)vfs.f_blocks * vfs.f_frsize;

    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 0);
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    /* "0 = size of the filesystem the store lives on" (page-rounded at most). */
    assert_true(st.capacity <= fs_size);
    assert_true(st.capacity + 2 * MiB >= fs_size);
    /* Nothing near that size is committed. */
    assert_true(st.committed < 64 * MiB);
    t_cleanup(s, name);
}

static void test_store_bad_options(void **state)
{
    (void)state;
    char name[128];
    shmstore_options_t opt;
    shmstore_t *s = NULL;
    t_store_name(name, sizeof(name));

    memset(&opt, 0, sizeof(opt));
    opt.n_procs = SHMSTORE_PROCS_MAX + 1;
    T_ASSERT_RC(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s), -EINVAL);

    memset(&opt, 0, sizeof(opt));
    opt.capacity = 4096; /* cannot even hold the header and process table */
    T_ASSERT_RC(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s), -EINVAL);
    assert_null(s);

    char path[512];
    t_store_path(path, sizeof(path), name, NULL);
    assert_false(file_exists(path)); /* a failed create leaves nothing behind */

    /* O_EXCL without O_CREATE is not a create: the store must exist. */
    T_ASSERT_RC(shmstore_open(name, SHMSTORE_O_EXCL, NULL, &s), -ENOENT);
}

static void test_store_n_procs_option(void **state)
{
    (void)state;
    char name[128];
    shmstore_options_t opt;
    shmstore_t *s = NULL;
    t_store_name(name, sizeof(name));
    memset(&opt, 0, sizeof(opt));
    opt.n_procs = 8;
    opt.capacity = 8 * MiB;
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s));
    shmstore_stat_t st;
    T_OK(shmstore_stat(s, &st));
    assert_int_equal(st.n_slots, 8);
    assert_int_equal(st.n_procs, 1);
    t_cleanup(s, name);
}

/* EPROCS: a store with 2 slots, the parent and one child attached; a second child
 * gets SHMSTORE_EPROCS. */
struct eprocs_arg {
    const char *name;
    t_barrier_t *b;
};

static void eprocs_holder(void *p)
{
    struct eprocs_arg *a = p;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(a->name, 0, NULL, &s), 0);
    t_barrier_wait(a->b); /* 1: attached */
    t_barrier_wait(a->b); /* 2: the other child tried */
    shmstore_close(s);
}

static void eprocs_tryer(void *p)
{
    struct eprocs_arg *a = p;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(a->name, 0, NULL, &s), SHMSTORE_EPROCS);
    T_CHILD_CHECK(s == NULL);
}

static void test_store_eprocs(void **state)
{
    (void)state;
    char name[128];
    shmstore_options_t opt;
    shmstore_t *s = NULL;
    t_store_name(name, sizeof(name));
    memset(&opt, 0, sizeof(opt));
    opt.n_procs = 2;
    opt.capacity = 4 * MiB;
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s));

    struct eprocs_arg a = {name, t_barrier_new(2)};
    pid_t holder = t_fork(eprocs_holder, &a);
    t_barrier_wait(a.b);
    pid_t tryer = t_fork(eprocs_tryer, &a);
    int rc_tryer = t_wait_child(tryer, 30000);
    t_barrier_wait(a.b);
    int rc_holder = t_wait_child(holder, 30000);
    t_barrier_free(a.b);
    assert_int_equal(rc_tryer, 0);
    assert_int_equal(rc_holder, 0);

    /* The holder detached: a slot is free again. */
    shmstore_t *s2 = NULL;
    T_OK(shmstore_open(name, 0, NULL, &s2));
    shmstore_close(s2);
    t_cleanup(s, name);
}

/* A process that dies attached leaves its slot LIVE with no lock holder; the next open
 * recovers it through the header's live_hint (it does not read every slot), and a slot
 * the hint calls free is what that open claims. */
static void dead_attacher(void *p)
{
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(p, 0, NULL, &s), 0);
    /* no close: exiting drops the OFD lock and leaves the slot LIVE */
}

static int count_procs(const shmstore_proc_info_t *pi, void *arg)
{
    int *n = arg;
    n[0]++;
    n[1] += !pi->is_alive;
    return 0;
}

static void test_store_dead_slot_recovered_on_open(void **state)
{
    (void)state;
    char name[128];
    shmstore_options_t opt;
    shmstore_t *s = NULL, *s2 = NULL;
    t_store_name(name, sizeof(name));
    memset(&opt, 0, sizeof(opt));
    opt.n_procs = 130; /* the hint spans three words */
    opt.capacity = 8 * MiB;
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s));
    for (int k = 0; k < 3; k++)
        assert_int_equal(t_wait_child(t_fork(dead_attacher, name), 30000), 0);
    int n[2] = {0, 0};
    T_OK(shmstore_procs(s, count_procs, n));
    assert_int_equal(n[0], 2); /* ours and the last child's: each recovered the one before */
    assert_int_equal(n[1], 1);
    T_OK(shmstore_open(name, 0, NULL, &s2));
    n[0] = n[1] = 0;
    T_OK(shmstore_procs(s, count_procs, n));
    assert_int_equal(n[0], 2); /* s and s2; the dead slot was recovered */
    assert_int_equal(n[1], 0);
    shmstore_close(s2);
    t_cleanup(s, name);
}

/* ---- directories ------------------------------------------------------------------- */

static void test_store_env_dir(void **state)
{
    (void)state;
    char dir[256], name[128], path[512], default_path[512];
    t_mkdtemp(dir, sizeof(dir));
    t_store_name(name, sizeof(name));
    t_track(name, dir);
    snprintf(path, sizeof(path), "%s/shmstore.%s", dir, name);
    snprintf(default_path, sizeof(default_path), "/dev/shm/shmstore.%s", name);

    const char *old = getenv("SHMSTORE_DIR");
    char *saved = old ? strdup(old) : NULL;
    assert_int_equal(setenv("SHMSTORE_DIR", dir, 1), 0);

    shmstore_t *s = NULL;
    int rc = shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s);
    bool in_dir = file_exists(path), in_default = file_exists(default_path);
    if (rc == 0) {
        put_str(s, "k", "v");
        t_assert_clean(s);
        shmstore_close(s);
    }
    int urc = shmstore_unlink(name, NULL);
    bool gone = !file_exists(path);

    if (saved) {
        setenv("SHMSTORE_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("SHMSTORE_DIR");
    }
    T_OK(rc);
    assert_true(in_dir);
    assert_false(in_default);
    T_OK(urc);
    assert_true(gone);
}

static void test_store_opt_dir(void **state)
{
    (void)state;
    char dir[256], dir2[256], name[128], path[512], default_path[512];
    t_mkdtemp(dir, sizeof(dir));
    t_mkdtemp(dir2, sizeof(dir2));
    t_store_name(name, sizeof(name));
    t_track(name, dir);
    snprintf(path, sizeof(path), "%s/shmstore.%s", dir, name);
    snprintf(default_path, sizeof(default_path), "/dev/shm/shmstore.%s", name);

    /* opt->dir wins over $SHMSTORE_DIR. */
    const char *old = getenv("SHMSTORE_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("SHMSTORE_DIR", dir2, 1);
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.dir = dir;
    opt.capacity = 4 * MiB;
    shmstore_t *s = NULL;
    int rc = shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s);
    if (saved) {
        setenv("SHMSTORE_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("SHMSTORE_DIR");
    }
    T_OK(rc);
    assert_true(file_exists(path));
    assert_false(file_exists(default_path));
    assert_string_equal(shmstore_dir(s), dir);
    put_str(s, "k", "v");
    t_assert_clean(s);
    shmstore_close(s);

    /* Opening uses opt->dir too; without it the store is not found. */
    shmstore_options_t oopt;
    memset(&oopt, 0, sizeof(oopt));
    oopt.dir = dir;
    s = NULL;
    T_ASSERT_RC(shmstore_open(name, 0, NULL, &s), -ENOENT);
    T_OK(shmstore_open(name, 0, &oopt, &s));
    expect_str(s, "k", "v", 1);
    t_assert_clean(s);
    shmstore_close(s);

    T_ASSERT_RC(shmstore_unlink(name, NULL), -ENOENT);
    T_OK(shmstore_unlink(name, dir));
    assert_false(file_exists(path));
}

/* ---- file mode, owner, symlinks ---------------------------------------------------- */

static void test_store_file_mode_0600(void **state)
{
    (void)state;
    char name[128], path[512];
    t_store_name(name, sizeof(name));
    t_store_path(path, sizeof(path), name, NULL);

    mode_t old = umask(0); /* the library must not depend on the caller's umask */
    shmstore_t *s = NULL;
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 4 * MiB;
    int rc = shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s);
    umask(old);
    T_OK(rc);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    shmstore_stat_t sst;
    T_OK(shmstore_stat(s, &sst));
    assert_int_equal(sst.uid, geteuid());
    t_cleanup(s, name);
}

static void test_store_group_mode(void **state)
{
    (void)state;
    char name[128], path[512];
    t_store_name(name, sizeof(name));
    t_store_path(path, sizeof(path), name, NULL);
    gid_t gid = t_is_root() ? 65534 : getegid();

    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 4 * MiB;
    opt.group = gid;
    shmstore_t *s = NULL;
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s));
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660);
    assert_int_equal(st.st_gid, gid);
    t_cleanup(s, name);
}

static void test_store_symlink_refused(void **state)
{
    (void)state;
    char name[128], target[128], path[512], target_path[512];
    t_store_name(name, sizeof(name));
    t_store_name(target, sizeof(target));
    t_store_path(path, sizeof(path), name, NULL);
    t_store_path(target_path, sizeof(target_path), target, NULL);

    /* The link points at a perfectly valid store: following it would work, so only
     * O_NOFOLLOW (or an equivalent check) refuses it. */
    shmstore_t *ts = t_open_new(target, 4 * MiB);
    put_str(ts, "k", "target");
    assert_int_equal(symlink(target_path, path), 0);

    shmstore_t *s = NULL;
    int rc_open = shmstore_open(name, 0, NULL, &s);
    int rc_create = shmstore_open(name, SHMSTORE_O_CREATE, NULL, &s);
    int rc_excl = shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s);
    struct stat st;
    bool still_link = lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
    (void)unlink(path);
    if (s != NULL)
        shmstore_close(s);

    if (rc_open >= 0 || rc_create >= 0)
        print_message("open through a symlink: %d %d (must fail)\n", rc_open, rc_create);
    assert_true(rc_open < 0);
    assert_true(rc_create < 0);
    T_ASSERT_RC(rc_excl, -EEXIST);
    assert_null(s);
    assert_true(still_link);
    /* The target is untouched. */
    expect_str(ts, "k", "target", 1);
    t_cleanup(ts, target);
    t_cleanup(NULL, name);
}

struct other_uid_arg {
    const char *name;
    int is_group_store;
};

static void other_uid_child(void *p)
{
    struct other_uid_arg *a = p;
    T_CHILD_CHECK(setgroups(0, NULL) == 0);
    T_CHILD_CHECK(setgid(65534) == 0);
    T_CHILD_CHECK(setuid(65534) == 0);
    shmstore_t *s = NULL;
    int rc = shmstore_open(a->name, 0, NULL, &s);
    if (a->is_group_store) {
        /* The creator named our group: we may attach and read. */
        T_CHILD_RC(rc, 0);
        char buf[16];
        size_t len = 0;
        T_CHILD_RC(shmstore_get(s, "k", NULL, buf, sizeof(buf), &len, NULL), 0);
        T_CHILD_CHECK(len == 1 && buf[0] == 'v');
        shmstore_close(s);
    } else {
        if (rc != -EACCES && rc != SHMSTORE_EOWNER) {
            fprintf(stderr, "open of another user's 0600 store: %d %s (want -EACCES or "
                            "SHMSTORE_EOWNER)\n", rc, shmstore_err_name(rc));
            _exit(T_CHILD_FAILED);
        }
        T_CHILD_CHECK(s == NULL);
    }
}

static void test_store_other_uid(void **state)
{
    (void)state;
    if (!t_is_root())
        T_SKIP("needs root to switch to uid 65534");
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 4 * MiB);
    put_str(s, "k", "v");
    struct other_uid_arg a = {name, 0};
    pid_t pid = t_fork(other_uid_child, &a);
    assert_int_equal(t_wait_child(pid, 30000), 0);
    t_cleanup(s, name);

    /* Same user 65534, but now the store names its group. */
    t_store_name(name, sizeof(name));
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 4 * MiB;
    opt.group = 65534;
    s = NULL;
    T_OK(shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s));
    put_str(s, "k", "v");
    a.name = name;
    a.is_group_store = 1;
    pid = t_fork(other_uid_child, &a);
    assert_int_equal(t_wait_child(pid, 30000), 0);
    t_cleanup(s, name);
}

/* ---- figures, listing, two handles ------------------------------------------------- */

static void test_store_stat_figures(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    uint64_t before = now_real_ns();
    shmstore_t *s = t_open_new(name, 16 * MiB);
    uint64_t after = now_real_ns();

    shmstore_stat_t st0, st1, st2;
    T_OK(shmstore_stat(s, &st0));
    assert_int_equal(st0.capacity, 16 * MiB);
    assert_int_equal(st0.n_objects, 0);
    assert_int_equal(st0.n_procs, 1);
    assert_int_equal(st0.n_slots, 64);
    assert_int_equal(st0.layout_version, LAYOUT_VERSION);
    assert_int_equal(st0.uid, geteuid());
    assert_true(st0.ctime_ns >= before && st0.ctime_ns <= after);
    assert_true(st0.used <= st0.committed);
    assert_true(st0.committed <= st0.capacity);

    char data[10000];
    memset(data, 7, sizeof(data));
    T_OK(shmstore_put(s, "a", NULL, data, sizeof(data), 0));
    T_OK(shmstore_stat(s, &st1));
    assert_int_equal(st1.n_objects, 1);
    assert_true(st1.n_blocks > st0.n_blocks);
    assert_true(st1.used >= st0.used + sizeof(data));
    assert_true(st1.used <= st1.committed);
    assert_int_equal(st1.ctime_ns, st0.ctime_ns);

    T_OK(shmstore_put(s, "b", NULL, data, 10, 0));
    T_OK(shmstore_stat(s, &st2));
    assert_int_equal(st2.n_objects, 2);
    T_OK(shmstore_delete(s, "a"));
    T_OK(shmstore_delete(s, "b"));
    T_OK(shmstore_stat(s, &st2));
    assert_int_equal(st2.n_objects, 0);
    assert_true(st2.used < st1.used);

    /* A second attachment (same process) is counted as a process. */
    shmstore_t *s2 = NULL;
    T_OK(shmstore_open(name, 0, NULL, &s2));
    T_OK(shmstore_stat(s, &st2));
    assert_int_equal(st2.n_procs, 2);
    shmstore_close(s2);
    T_OK(shmstore_stat(s, &st2));
    assert_int_equal(st2.n_procs, 1);
    t_cleanup(s, name);
}

static int count_self_procs(const shmstore_proc_info_t *info, void *arg)
{
    int *counts = arg;
    counts[0]++;
    if (info->is_self) {
        counts[1]++;
        if (info->pid != getpid() || !info->is_alive)
            counts[2]++;
    }
    return 0;
}

static int stop_procs(const shmstore_proc_info_t *info, void *arg)
{
    (void)info;
    (void)arg;
    return 42;
}

static void test_store_procs(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 4 * MiB);
    int counts[3] = {0, 0, 0};
    T_OK(shmstore_procs(s, count_self_procs, counts));
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(counts[2], 0);
    T_ASSERT_RC(shmstore_procs(s, stop_procs, NULL), 42);
    t_cleanup(s, name);
}

struct names_seen {
    char names[8][SHMSTORE_STORE_NAME_MAX + 1];
    int n;
    int stop_after;
};

static int collect_store(const char *name, void *arg)
{
    struct names_seen *ns = arg;
    if (ns->n < 8)
        snprintf(ns->names[ns->n], sizeof(ns->names[0]), "%s", name);
    ns->n++;
    if (ns->stop_after && ns->n == ns->stop_after)
        return 17;
    return 0;
}

static bool seen(const struct names_seen *ns, const char *name)
{
    for (int i = 0; i < ns->n && i < 8; i++)
        if (strcmp(ns->names[i], name) == 0)
            return true;
    return false;
}

struct find_arg {
    const char *want;
    int found;
};

static int find_store(const char *name, void *arg)
{
    struct find_arg *fa = arg;
    if (strcmp(name, fa->want) == 0)
        fa->found++;
    return 0;
}

static void test_store_list_stores(void **state)
{
    (void)state;
    char dir[256], names[3][128], path[512];
    t_mkdtemp(dir, sizeof(dir));
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.dir = dir;
    opt.capacity = 4 * MiB;
    for (int i = 0; i < 3; i++) {
        t_store_name(names[i], sizeof(names[i]));
        t_track(names[i], dir);
        shmstore_t *s = NULL;
        T_OK(shmstore_open(names[i], SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s));
        shmstore_close(s);
    }
    /* Files that are not stores are not listed. */
    snprintf(path, sizeof(path), "%s/not_a_store", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);

    struct names_seen ns;
    memset(&ns, 0, sizeof(ns));
    T_OK(shmstore_list_stores(dir, collect_store, &ns));
    assert_int_equal(ns.n, 3);
    for (int i = 0; i < 3; i++)
        assert_true(seen(&ns, names[i]));

    memset(&ns, 0, sizeof(ns));
    ns.stop_after = 2;
    T_ASSERT_RC(shmstore_list_stores(dir, collect_store, &ns), 17);
    assert_int_equal(ns.n, 2);

    /* The default directory lists stores made there too. */
    char dname[128];
    t_store_name(dname, sizeof(dname));
    shmstore_t *ds = t_open_new(dname, 4 * MiB);
    struct find_arg fa = {dname, 0};
    T_OK(shmstore_list_stores(NULL, find_store, &fa));
    assert_int_equal(fa.found, 1);

    unlink(path);
    for (int i = 0; i < 3; i++)
        T_OK(shmstore_unlink(names[i], dir));
    memset(&ns, 0, sizeof(ns));
    T_OK(shmstore_list_stores(dir, collect_store, &ns));
    assert_int_equal(ns.n, 0);

    char missing[300];
    snprintf(missing, sizeof(missing), "%s/does_not_exist", dir);
    T_ASSERT_RC(shmstore_list_stores(missing, collect_store, &ns), -ENOENT);
    t_cleanup(ds, dname);
}

static void test_store_two_handles(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    shmstore_t *a = t_open_new(name, 8 * MiB);
    shmstore_t *b = NULL;
    T_OK(shmstore_open(name, 0, NULL, &b));
    put_str(a, "x", "from a");
    expect_str(b, "x", "from a", 1);
    put_str(b, "x", "from b");
    expect_str(a, "x", "from b", 2);
    shmstore_close(b);
    expect_str(a, "x", "from b", 2);
    t_cleanup(a, name);
}

static void test_store_fds_and_maps(void **state)
{
    (void)state;
    char name[128];
    t_store_name(name, sizeof(name));
    long fds0 = t_count_fds(), maps0 = t_count_maps(), smaps0 = t_count_shared_maps();
    shmstore_t *s = t_open_new(name, 8 * MiB);
    long fds1 = t_count_fds(), maps1 = t_count_maps(), smaps1 = t_count_shared_maps();
    assert_int_equal(fds1, fds0 + 1);     /* one descriptor per store */
    assert_int_equal(smaps1, smaps0 + 1); /* one mapping per store */
    if (!T_SANITIZED)
        assert_true(maps1 <= maps0 + 1);
    for (int i = 0; i < 50; i++) {
        char obj[32];
        snprintf(obj, sizeof(obj), "o%d", i);
        put_str(s, obj, "data");
    }
    assert_int_equal(t_count_fds(), fds1);
    T_ASSERT_MAPS(maps1, smaps1);
    t_assert_clean(s);
    shmstore_close(s);
    assert_int_equal(t_count_fds(), fds0);
    T_ASSERT_MAPS(maps0, smaps0);
    t_cleanup(NULL, name);
}

/* ---- header validation ------------------------------------------------------------- */

/* How a case corrupts the file. */
enum corrupt_expect {
    EXPECT_CORRUPT,     /* open must return SHMSTORE_ECORRUPT */
    EXPECT_VERSION,     /* open must return SHMSTORE_EVERSION */
    EXPECT_CORRUPT_OR_VERSION,
    EXPECT_FAIL_OR_CHECK, /* open fails with ECORRUPT, or opens and check() reports it */
    EXPECT_ANY_ERROR,   /* open returns some negative code (without hanging or crashing) */
};

struct corrupt_case {
    const char *what;
    size_t off;
    size_t len;
    uint64_t value;
    enum corrupt_expect expect;
};

#define HDR(field) offsetof(struct store_hdr, field), sizeof(((struct store_hdr *)0)->field)

static const struct corrupt_case corrupt_cases[] = {
    {"magic", HDR(magic), 0x0123456789abcdefull, EXPECT_CORRUPT},
    {"magic one bit", HDR(magic), STORE_MAGIC ^ 0x100, EXPECT_CORRUPT},
    {"magic zero (never initialised)", HDR(magic), 0, EXPECT_ANY_ERROR},
    {"layout_version + 1", HDR(layout_version), LAYOUT_VERSION + 1, EXPECT_VERSION},
    {"layout_version 0", HDR(layout_version), 0, EXPECT_CORRUPT_OR_VERSION},
    {"layout_version huge", HDR(layout_version), 0xffffffffu, EXPECT_VERSION},
    {"hdr_size", HDR(hdr_size), STORE_HDR_SIZE * 2, EXPECT_CORRUPT_OR_VERSION},
    {"hdr_size 0", HDR(hdr_size), 0, EXPECT_CORRUPT_OR_VERSION},
    {"blk_hdr_size", HDR(blk_hdr_size), 64, EXPECT_CORRUPT_OR_VERSION},
    {"slot_size", HDR(slot_size), 1, EXPECT_CORRUPT_OR_VERSION},
    {"slot_size huge", HDR(slot_size), 0xfffffff0u, EXPECT_CORRUPT_OR_VERSION},
    {"n_slots 0", HDR(n_slots), 0, EXPECT_CORRUPT},
    {"n_slots huge", HDR(n_slots), 0x7fffffffu, EXPECT_CORRUPT},
    {"n_slots > max", HDR(n_slots), SHMSTORE_PROCS_MAX + 1, EXPECT_CORRUPT},
    {"n_leases 0", HDR(n_leases), 0, EXPECT_CORRUPT},
    {"n_leases huge", HDR(n_leases), 0xffffffffu, EXPECT_CORRUPT},
    {"capacity 0", HDR(capacity), 0, EXPECT_CORRUPT},
    {"capacity > file", HDR(capacity), 1ull << 40, EXPECT_CORRUPT},
    {"capacity < file", HDR(capacity), 1 * MiB, EXPECT_CORRUPT},
    {"capacity UINT64_MAX", HDR(capacity), UINT64_MAX, EXPECT_CORRUPT},
    {"slots_off 0", HDR(slots_off), 0, EXPECT_CORRUPT},
    {"slots_off beyond", HDR(slots_off), 1ull << 40, EXPECT_CORRUPT},
    {"slots_off unaligned", HDR(slots_off), 4097, EXPECT_CORRUPT},
    {"heap_off 0", HDR(heap_off), 0, EXPECT_CORRUPT},
    {"heap_off beyond", HDR(heap_off), 1ull << 40, EXPECT_CORRUPT},
    {"heap_off inside slots", HDR(heap_off), STORE_HDR_SIZE, EXPECT_CORRUPT},
    {"heap_top beyond capacity", HDR(heap_top), 1ull << 40, EXPECT_FAIL_OR_CHECK},
    {"heap_top below heap", HDR(heap_top), 8, EXPECT_FAIL_OR_CHECK},
    {"last_off beyond", HDR(last_off), 1ull << 40, EXPECT_FAIL_OR_CHECK},
    {"index_off beyond", HDR(index_off), 1ull << 40, EXPECT_FAIL_OR_CHECK},
    {"index_off unaligned", HDR(index_off), STORE_HDR_SIZE + 8, EXPECT_FAIL_OR_CHECK},
    {"index_cap not pow2", HDR(index_cap), 1000, EXPECT_FAIL_OR_CHECK},
    {"index_cap huge", HDR(index_cap), 1ull << 60, EXPECT_FAIL_OR_CHECK},
    {"fl_bitmap", HDR(fl_bitmap), UINT64_MAX, EXPECT_FAIL_OR_CHECK},
};

static void write_at(const char *path, size_t off, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_NOFOLLOW);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void make_victim(const char *name)
{
    shmstore_t *s = t_open_new(name, 4 * MiB);
    put_str(s, "a", "alpha");
    put_str(s, "b/c", "gamma");
    T_OK(shmstore_delete(s, "a")); /* leaves a tombstone and a free block */
    put_str(s, "d", "delta");
    t_assert_clean(s);
    shmstore_close(s);
}

static void test_store_header_validation(void **state)
{
    (void)state;
    const size_t n_cases = sizeof(corrupt_cases) / sizeof(corrupt_cases[0]);
    int failures = 0;

    for (size_t i = 0; i < n_cases; i++) {
        const struct corrupt_case *c = &corrupt_cases[i];
        char name[128], path[512];
        t_store_name(name, sizeof(name));
        t_store_path(path, sizeof(path), name, NULL);
        make_victim(name);

        uint8_t bytes[8];
        uint64_t v = c->value;
        memcpy(bytes, &v, sizeof(bytes)); /* little-endian: the low len bytes */
        write_at(path, c->off, bytes, c->len);

        long fds = t_count_fds(), maps = t_count_maps(), smaps = t_count_shared_maps();
        shmstore_t *s = NULL;
        int rc = shmstore_open(name, 0, NULL, &s);
        bool ok;
        switch (c->expect) {
        case EXPECT_CORRUPT:
            ok = rc == SHMSTORE_ECORRUPT;
            break;
        case EXPECT_VERSION:
            ok = rc == SHMSTORE_EVERSION;
            break;
        case EXPECT_CORRUPT_OR_VERSION:
            ok = rc == SHMSTORE_ECORRUPT || rc == SHMSTORE_EVERSION;
            break;
        case EXPECT_ANY_ERROR:
            ok = rc < 0;
            break;
        case EXPECT_FAIL_OR_CHECK:
        default:
            if (rc == 0) {
                /* Opened: every call must fail cleanly or work, and the checker
                 * must see the damage. */
                char report[2048] = "";
                shmstore_stat_t st;
                shmstore_obj_info_t info;
                char buf[64];
                size_t len;
                int r1 = shmstore_stat(s, &st);
                int r2 = shmstore_info(s, "b/c", &info);
                int r3 = shmstore_get(s, "d", NULL, buf, sizeof(buf), &len, NULL);
                int r4 = shmstore_check(s, report, sizeof(report));
                ok = r4 == SHMSTORE_ECORRUPT && r1 <= 0 && r2 <= 0 && r3 <= 0;
                if (!ok)
                    print_message("  %s: opened; stat %d info %d get %d check %d\n", c->what,
                                  r1, r2, r3, r4);
            } else {
                ok = rc == SHMSTORE_ECORRUPT;
            }
            break;
        }
        if (rc == 0) {
            shmstore_close(s);
        } else {
            assert_null(s);
            /* A refused store leaks neither its descriptor nor its mapping. */
            if (t_count_fds() != fds || t_count_shared_maps() != smaps ||
                (!T_SANITIZED && t_count_maps() != maps)) {
                print_message("  %s: open failed but leaked fds %ld->%ld maps %ld->%ld\n",
                              c->what, fds, t_count_fds(), maps, t_count_maps());
                ok = false;
            }
        }
        if (!ok) {
            print_message("  corrupt %s (offset %zu): open returned %d (%s), errmsg \"%s\"\n",
                          c->what, c->off, rc, shmstore_err_name(rc), shmstore_errmsg());
            failures++;
        }
        t_cleanup(NULL, name);
    }
    assert_int_equal(failures, 0);
}

static void test_store_truncated_file(void **state)
{
    (void)state;
    const off_t sizes[] = {0, 8, 100, STORE_HDR_SIZE, STORE_HDR_SIZE + 100, 1 * MiB};
    int failures = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char name[128], path[512];
        t_store_name(name, sizeof(name));
        t_store_path(path, sizeof(path), name, NULL);
        make_victim(name);
        assert_int_equal(truncate(path, sizes[i]), 0);
        shmstore_t *s = NULL;
        int rc = shmstore_open(name, 0, NULL, &s);
        /* A zero-length file may be a store being created: any error is fine, as long
         * as open gives up. Otherwise it is corrupt. */
        bool ok = sizes[i] == 0 ? rc < 0 : rc == SHMSTORE_ECORRUPT;
        if (!ok) {
            print_message("  file truncated to %lld: open returned %d (%s)\n",
                          (long long)sizes[i], rc, shmstore_err_name(rc));
            failures++;
        }
        if (rc == 0)
            shmstore_close(s);
        t_cleanup(NULL, name);
    }
    assert_int_equal(failures, 0);
}

/* A file that is not a store at all, of a plausible size. */
static void test_store_garbage_file(void **state)
{
    (void)state;
    char name[128], path[512];
    t_store_name(name, sizeof(name));
    t_store_path(path, sizeof(path), name, NULL);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 131 + 7);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_int_equal(ftruncate(fd, 4 * MiB), 0);
    close(fd);
    shmstore_t *s = NULL;
    T_ASSERT_RC(shmstore_open(name, 0, NULL, &s), SHMSTORE_ECORRUPT);
    T_ASSERT_RC(shmstore_open(name, SHMSTORE_O_CREATE, NULL, &s), SHMSTORE_ECORRUPT);
    assert_null(s);
    t_cleanup(NULL, name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_create_open_close_unlink),
        cmocka_unit_test(test_store_unlink_while_open),
        cmocka_unit_test(test_store_excl),
        cmocka_unit_test(test_store_missing),
        cmocka_unit_test(test_store_bad_names),
        cmocka_unit_test(test_store_capacity_option),
        cmocka_unit_test(test_store_default_capacity),
        cmocka_unit_test(test_store_bad_options),
        cmocka_unit_test(test_store_n_procs_option),
        cmocka_unit_test(test_store_eprocs),
        cmocka_unit_test(test_store_dead_slot_recovered_on_open),
        cmocka_unit_test(test_store_env_dir),
        cmocka_unit_test(test_store_opt_dir),
        cmocka_unit_test(test_store_file_mode_0600),
        cmocka_unit_test(test_store_group_mode),
        cmocka_unit_test(test_store_symlink_refused),
        cmocka_unit_test(test_store_other_uid),
        cmocka_unit_test(test_store_stat_figures),
        cmocka_unit_test(test_store_procs),
        cmocka_unit_test(test_store_list_stores),
        cmocka_unit_test(test_store_two_handles),
        cmocka_unit_test(test_store_fds_and_maps),
        cmocka_unit_test(test_store_header_validation),
        cmocka_unit_test(test_store_truncated_file),
        cmocka_unit_test(test_store_garbage_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
