/* test_enospc.c - running out of memory is an error code, never SIGBUS.
 *
 * 1. A store filled to its own capacity: puts fail with -ENOSPC and change nothing, every
 *    earlier value reads back intact, freeing space makes puts work again.
 * 2. As root, a store whose capacity (64 MiB) is larger than the filesystem it lives on
 *    (an 8 MiB tmpfs mounted in a private mount namespace of a forked child, so nothing
 *    outside the test sees it): filling it gives -ENOSPC with a message that gives sizes,
 *    never SIGBUS; reads of existing values keep working, also from another process; a
 *    value updated in steady state keeps working when another file has filled the
 *    filesystem (its blocks are reused, no new pages); a store that cannot even be
 *    created fails with -ENOSPC and leaves no file. Skipped when not root or when the
 *    mount is not allowed (a container without CAP_SYS_ADMIN).
 *
 * All filling happens in forked children: a SIGBUS kills the child, and the parent
 * reports it as such instead of dying itself.
 */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../mp/payload.h"

#define MIB (1ull << 20)
#define CHILD_TIMEOUT_MS 120000
#define EXIT_SKIP 77

static int has_digit(const char *s)
{
    for (; *s; s++)
        if (*s >= '0' && *s <= '9')
            return 1;
    return 0;
}

/* The -ENOSPC message must be actionable: non-empty and giving sizes. */
static void check_enospc_msg(const char *where)
{
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
    fprintf(stderr, "%s: -ENOSPC errmsg: \"%s\"\n", where, msg);
    T_CHILD_CHECK(msg[0] != '\0');
    T_CHILD_CHECK(has_digit(msg)); /* names the sizes involved */
}

/* Puts `len`-byte payloads into "<prefix>/<i>" until one fails; returns how many
 * succeeded; the failure must be -ENOSPC. */
static unsigned fill(shmstore_t *s, const char *prefix, size_t len, unsigned max,
                     const char *where)
{
    unsigned char *buf = malloc(len);
    T_CHILD_CHECK(buf != NULL);
    char name[64];
    unsigned i;
    for (i = 0; i < max; i++) {
        snprintf(name, sizeof(name), "%s/%u", prefix, i);
        pl_fill(buf, len, 1, i);
        int rc = shmstore_put(s, name, NULL, buf, len, 0);
        if (rc == 0)
            continue;
        if (rc != -ENOSPC) {
            fprintf(stderr, "%s: put #%u of %zu bytes returned %d (%s), expected -ENOSPC\n",
                    where, i, len, rc, shmstore_err_name(rc));
            T_CHILD_CHECK(rc == -ENOSPC);
        }
        check_enospc_msg(where);
        /* A failed put by name must not leave an object behind... */
        shmstore_obj_info_t info;
        rc = shmstore_info(s, name, &info);
        /* ...or, if the library creates the value first, one with no version. */
        T_CHILD_CHECK(rc == -ENOENT || (rc == 0 && info.version == 0));
        if (rc == 0)
            T_CHILD_RC(shmstore_delete(s, name), 0);
        break;
    }
    free(buf);
    T_CHILD_CHECK(i < max); /* it did fill up */
    return i;
}

/* Every value "<prefix>/<i>", from <= i < n, holds its payload, version 1. */
static void verify_from(shmstore_t *s, const char *prefix, size_t len, unsigned from,
                        unsigned n)
{
    unsigned char *buf = malloc(len);
    T_CHILD_CHECK(buf != NULL);
    char name[64];
    for (unsigned i = from; i < n; i++) {
        size_t got = 0;
        uint64_t ver = 0, seq = 0;
        snprintf(name, sizeof(name), "%s/%u", prefix, i);
        T_CHILD_RC(shmstore_get(s, name, NULL, buf, len, &got, &ver), 0);
        T_CHILD_CHECK(got == len && ver == 1);
        T_CHILD_CHECK(pl_check(buf, got, NULL, &seq) && seq == i);
    }
    free(buf);
}

static void verify(shmstore_t *s, const char *prefix, size_t len, unsigned n)
{
    verify_from(s, prefix, len, 0, n);
}

static void check_clean_child(shmstore_t *s)
{
    char rep[4096];
    rep[0] = '\0';
    int rc = shmstore_check(s, rep, sizeof(rep));
    if (rc != 0)
        fprintf(stderr, "shmstore_check: %d\n%s\n", rc, rep);
    T_CHILD_RC(rc, 0);
}

static void expect_child_ok(pid_t pid, const char *what)
{
    int st = t_wait_child(pid, CHILD_TIMEOUT_MS);
    if (st == 128 + SIGBUS)
        print_message("%s: child died of SIGBUS\n", what);
    else if (st != 0)
        print_message("%s: child ended with status %d\n", what, st);
    assert_int_equal(st, 0);
}

/* ---- 1. a store filled to its own capacity ------------------------------------------ */

struct full_args {
    char name[SHMSTORE_STORE_NAME_MAX + 1];
};

static void full_child(void *arg)
{
    struct full_args *a = arg;
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(a->name, 0, NULL, &s), 0);

    unsigned n = fill(s, "big", MIB, 1000, "store capacity, 1 MiB puts");
    T_CHILD_CHECK(n >= 4);
    verify(s, "big", MIB, n);
    /* Fill the remaining corners with small values, then with tiny ones. */
    unsigned n_small = fill(s, "small", 16u << 10, 100000, "store capacity, 16 KiB puts");
    unsigned n_tiny = fill(s, "tiny", 8, 1000000, "store capacity, 8 B puts");

    /* An existing value: a too-large put fails and changes nothing. */
    uint64_t ver = 0;
    shmstore_value_t *v = NULL;
    T_CHILD_RC(shmstore_value_open(s, "big/0", 0, &v), 0);
    unsigned char *buf = malloc(8 * MIB);
    T_CHILD_CHECK(buf != NULL);
    pl_fill(buf, 8 * MIB, 2, 99);
    T_CHILD_RC(shmstore_value_put(v, NULL, buf, 8 * MIB, 0), -ENOSPC);
    check_enospc_msg("store capacity, 8 MiB put to an existing value");
    void *data = NULL;
    T_CHILD_RC(shmstore_value_reserve(v, NULL, 8 * MIB, 0, &data), -ENOSPC);
    T_CHILD_RC(shmstore_value_version(v, &ver), 0);
    T_CHILD_CHECK(ver == 1);
    /* The writer lock was not left taken by the failures: a small put still works if a
     * block of the value can be found, otherwise it is -ENOSPC, never a hang. */
    pl_fill(buf, 64, 2, 100);
    int rc = shmstore_value_put(v, NULL, buf, 64, 0);
    T_CHILD_CHECK(rc == 0 || rc == -ENOSPC);
    if (rc == -ENOSPC) {
        T_CHILD_RC(shmstore_value_version(v, &ver), 0);
        T_CHILD_CHECK(ver == 1);
    }
    shmstore_value_close(v);
    /* If the small put succeeded, big/0 now holds it (version 2). */
    verify_from(s, "big", MIB, rc == 0 ? 1 : 0, n);
    verify(s, "small", 16u << 10, n_small);
    verify(s, "tiny", 8, n_tiny);

    /* Freeing space makes room again. */
    T_CHILD_RC(shmstore_delete(s, "big/1"), 0);
    T_CHILD_RC(shmstore_delete(s, "big/2"), 0);
    pl_fill(buf, MIB, 3, 1);
    T_CHILD_RC(shmstore_put(s, "again", NULL, buf, MIB, 0), 0);
    free(buf);
    check_clean_child(s);
    shmstore_close(s);
}

static void test_enospc_store_capacity(void **state)
{
    (void)state;
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    t_store_name(name, sizeof(name));
    shmstore_t *s = t_open_new(name, 16 * MIB);
    struct full_args a;
    snprintf(a.name, sizeof(a.name), "%s", name);
    expect_child_ok(t_fork(full_child, &a), "store filled to capacity");
    t_cleanup(s, name);
}

/* ---- 2. a store larger than its filesystem ------------------------------------------ */

struct fs_args {
    char dir[256];
};

static void open_in(const char *dir, const char *name, unsigned flags, uint64_t cap,
                    shmstore_t **out, int expect)
{
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = cap;
    opt.dir = dir;
    T_CHILD_RC(shmstore_open(name, flags, &opt, out), expect);
}

static void fs_reader(void *arg)
{
    struct fs_args *a = arg;
    shmstore_t *s = NULL;
    open_in(a->dir, "tiny_fs", 0, 0, &s, 0);
    /* Reads from another process see every value, whole. */
    unsigned char *buf = malloc(MIB);
    T_CHILD_CHECK(buf != NULL);
    char name[64];
    for (unsigned i = 0;; i++) {
        size_t len = 0;
        snprintf(name, sizeof(name), "fill/%u", i);
        int rc = shmstore_get(s, name, NULL, buf, MIB, &len, NULL);
        if (rc == -ENOENT)
            break;
        T_CHILD_RC(rc, 0);
        T_CHILD_CHECK(len == MIB && pl_check(buf, len, NULL, NULL));
    }
    free(buf);
    shmstore_close(s);
}

static int file_exists(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/shmstore.%s", dir, name);
    return stat(path, &st) == 0;
}

static void fs_child(void *arg)
{
    struct fs_args *a = arg;

    if (unshare(CLONE_NEWNS) != 0) {
        fprintf(stderr, "unshare(CLONE_NEWNS): %s\n", strerror(errno));
        _exit(EXIT_SKIP);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        fprintf(stderr, "mount --make-rprivate /: %s\n", strerror(errno));
        _exit(EXIT_SKIP);
    }
    if (mount("shmstore_test", a->dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0700") != 0) {
        fprintf(stderr, "mount tmpfs on %s: %s\n", a->dir, strerror(errno));
        _exit(EXIT_SKIP);
    }

    /* A 64 MiB store on an 8 MiB filesystem: creation succeeds (the file is sparse). */
    shmstore_t *s = NULL;
    open_in(a->dir, "tiny_fs", SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, 64 * MIB, &s, 0);
    shmstore_stat_t st;
    T_CHILD_RC(shmstore_stat(s, &st), 0);
    T_CHILD_CHECK(st.capacity == 64 * MIB);

    /* A steady-state value: written enough times that it owns its rotation blocks. */
    unsigned char *buf = malloc(MIB);
    T_CHILD_CHECK(buf != NULL);
    shmstore_value_t *v = NULL;
    T_CHILD_RC(shmstore_value_open(s, "steady", SHMSTORE_V_CREATE, &v), 0);
    for (unsigned i = 1; i <= 8; i++) {
        pl_fill(buf, 256u << 10, 5, i);
        T_CHILD_RC(shmstore_value_put(v, NULL, buf, 256u << 10, 0), 0);
    }

    /* Fill: the filesystem runs out long before the store's capacity. */
    unsigned n = fill(s, "fill", MIB, 64, "8 MiB tmpfs, 1 MiB puts");
    T_CHILD_CHECK(n >= 1 && n < 8);
    verify(s, "fill", MIB, n);
    pl_fill(buf, MIB, 2, 1);
    T_CHILD_RC(shmstore_value_put(v, NULL, buf, MIB, 0), -ENOSPC);
    check_enospc_msg("8 MiB tmpfs, 1 MiB put to an existing value");

    /* The steady value keeps updating in place of its own blocks. */
    for (unsigned i = 9; i <= 40; i++) {
        pl_fill(buf, 256u << 10, 5, i);
        T_CHILD_RC(shmstore_value_put(v, NULL, buf, 256u << 10, 0), 0);
    }
    size_t len = 0;
    uint64_t seq = 0;
    T_CHILD_RC(shmstore_value_get(v, NULL, buf, MIB, &len, NULL), 0);
    T_CHILD_CHECK(len == (256u << 10) && pl_check(buf, len, NULL, &seq) && seq == 40);
    shmstore_value_close(v);

    /* Another process reads everything. */
    pid_t r = t_fork(fs_reader, a);
    int rst = t_wait_child(r, CHILD_TIMEOUT_MS);
    if (rst != 0)
        fprintf(stderr, "reader in the full filesystem ended with status %d\n", rst);
    T_CHILD_CHECK(rst == 0);

    /* Someone else's file fills what is left; deleting values frees store blocks (not
     * filesystem pages), so a put of the freed size fits again without new pages. */
    T_CHILD_RC(shmstore_delete(s, "fill/0"), 0);
    pl_fill(buf, MIB / 2, 3, 1);
    T_CHILD_RC(shmstore_put(s, "refill", NULL, buf, MIB / 2, 0), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/other_file", a->dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    T_CHILD_CHECK(fd >= 0);
    memset(buf, 0x77, MIB);
    while (write(fd, buf, 64u << 10) > 0)
        ;
    close(fd);
    /* New heap pages are needed for a fresh 2 MiB value: none are left. */
    unsigned char *big = malloc(2 * MIB);
    T_CHILD_CHECK(big != NULL);
    pl_fill(big, 2 * MIB, 4, 1);
    T_CHILD_RC(shmstore_put(s, "too_big", NULL, big, 2 * MIB, 0), -ENOSPC);
    check_enospc_msg("8 MiB tmpfs filled by another file, 2 MiB put");
    free(big);
    /* Creating another store now that the filesystem is full: -ENOSPC, no file left behind. */
    shmstore_t *s2 = NULL;
    open_in(a->dir, "no_room", SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, 32 * MIB, &s2, -ENOSPC);
    check_enospc_msg("8 MiB tmpfs, creating a second store");
    T_CHILD_CHECK(!file_exists(a->dir, "no_room"));

    for (unsigned i = 1; i < n; i++) {
        char name[64];
        snprintf(name, sizeof(name), "fill/%u", i);
        T_CHILD_RC(shmstore_get(s, name, NULL, buf, MIB, &len, NULL), 0);
        T_CHILD_CHECK(len == MIB && pl_check(buf, len, NULL, &seq) && seq == i);
    }
    T_CHILD_RC(shmstore_get(s, "refill", NULL, buf, MIB, &len, NULL), 0);
    T_CHILD_CHECK(len == MIB / 2 && pl_check(buf, len, NULL, NULL));
    unlink(path);

    check_clean_child(s);
    shmstore_close(s);
    T_CHILD_RC(shmstore_unlink("tiny_fs", a->dir), 0);
    free(buf);
    if (umount(a->dir) != 0)
        fprintf(stderr, "umount %s: %s\n", a->dir, strerror(errno));
}

static void test_enospc_filesystem_smaller_than_store(void **state)
{
    (void)state;
    if (!t_is_root())
        T_SKIP("mounting a small tmpfs needs root");
    struct fs_args a;
    snprintf(a.dir, sizeof(a.dir), "/tmp/shmstore-tmpfs-XXXXXX");
    if (mkdtemp(a.dir) == NULL)
        T_SKIP("mkdtemp in /tmp: %s", strerror(errno));
    int st = t_wait_child(t_fork(fs_child, &a), CHILD_TIMEOUT_MS);
    (void)rmdir(a.dir);
    if (st == EXIT_SKIP)
        T_SKIP("cannot mount a tmpfs here (no CAP_SYS_ADMIN in this namespace?)");
    if (st == 128 + SIGBUS)
        print_message("store on a full tmpfs: child died of SIGBUS\n");
    else if (st != 0)
        print_message("store on a full tmpfs: child ended with status %d\n", st);
    assert_int_equal(st, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enospc_store_capacity),
        cmocka_unit_test(test_enospc_filesystem_smaller_than_store),
    };
    /* SHMSTORE_TEST_FILTER=<glob> runs only the matching tests (for replaying one). */
    if (getenv("SHMSTORE_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHMSTORE_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
