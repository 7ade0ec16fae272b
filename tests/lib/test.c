/* test.c - helpers shared by every C test (see test.h).
 *
 * Cleanup plan: every store name handed out by t_store_name() (and every name given to
 * t_track()) is recorded in a process-local list; an atexit handler registered by the
 * process that recorded it unlinks what is still there. Forked children leave through
 * _exit() and so never run it, which is what we want: the parent owns the files.
 */
#define _GNU_SOURCE
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

/* ---- tracking ---------------------------------------------------------------------- */

#define T_TRACK_MAX 4096

struct tracked {
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    char dir[256]; /* "" = default */
    int is_dir;    /* a directory made by t_mkdtemp (removed last) */
};

static struct tracked tracked[T_TRACK_MAX];
static unsigned n_tracked;
static pid_t tracker_pid;
static unsigned name_counter;

static void cleanup_at_exit(void)
{
    char path[512];

    if (getpid() != tracker_pid)
        return;
    for (unsigned i = 0; i < n_tracked; i++) {
        if (tracked[i].is_dir || tracked[i].name[0] == '\0')
            continue;
        (void)shmstore_unlink(tracked[i].name, tracked[i].dir[0] ? tracked[i].dir : NULL);
    }
    for (unsigned i = n_tracked; i-- > 0;) {
        if (!tracked[i].is_dir)
            continue;
        /* The directory is the test's own (t_mkdtemp): remove every file in it (stores,
         * and the HDF5 files the tests write), then the directory. */
        DIR *d = opendir(tracked[i].dir);
        if (d != NULL) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                snprintf(path, sizeof(path), "%s/%s", tracked[i].dir, e->d_name);
                (void)unlink(path);
            }
            closedir(d);
        }
        (void)rmdir(tracked[i].dir);
    }
    n_tracked = 0;
}

/* Under AddressSanitizer/UBSan a report ends the process without atexit handlers; the
 * sanitizer runtime calls this hook instead (weak: absent in plain builds). */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static void track(const char *name, const char *dir, int is_dir)
{
    if (tracker_pid != getpid()) {
        /* First call in this process (or in a forked child that makes its own stores). */
        n_tracked = 0;
        tracker_pid = getpid();
        atexit(cleanup_at_exit);
        if (__sanitizer_set_death_callback)
            __sanitizer_set_death_callback(cleanup_at_exit);
    }
    if (n_tracked == T_TRACK_MAX)
        return; /* best effort: t_cleanup() still removes it */
    struct tracked *t = &tracked[n_tracked++];
    snprintf(t->name, sizeof(t->name), "%s", name ? name : "");
    snprintf(t->dir, sizeof(t->dir), "%s", dir ? dir : "");
    t->is_dir = is_dir;
}

static void untrack(const char *name)
{
    for (unsigned i = 0; i < n_tracked; i++) {
        if (!tracked[i].is_dir && tracked[i].dir[0] == '\0' && strcmp(tracked[i].name, name) == 0)
            tracked[i].name[0] = '\0';
    }
}

void t_track(const char *name, const char *dir)
{
    track(name, dir, 0);
}

const char *t_store_name(char *buf, size_t n)
{
    const char *bin = program_invocation_short_name;

    snprintf(buf, n, "t_%.60s_%ld_%u", bin, (long)getpid(), name_counter++);
    track(buf, NULL, 0);
    return buf;
}

const char *t_store_path(char *buf, size_t n, const char *name, const char *dir)
{
    if (dir == NULL)
        dir = getenv("SHMSTORE_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/dev/shm";
    snprintf(buf, n, "%s/shmstore.%s", dir, name);
    return buf;
}

const char *t_mkdtemp(char *buf, size_t n)
{
    static unsigned dir_counter;

    snprintf(buf, n, "/dev/shm/t_dir_%ld_%u", (long)getpid(), dir_counter++);
    if (mkdir(buf, 0700) != 0) {
        print_message("mkdir(%s): %s\n", buf, strerror(errno));
        fail();
    }
    track(NULL, buf, 1);
    return buf;
}

/* ---- stores ------------------------------------------------------------------------ */

shmstore_t *t_open_new(const char *name, uint64_t capacity)
{
    shmstore_options_t opt;
    shmstore_t *s = NULL;

    memset(&opt, 0, sizeof(opt));
    opt.capacity = capacity;
    int rc = shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s);
    if (rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        print_message("t_open_new(%s, %llu): %d %s: %s\n", name, (unsigned long long)capacity,
                      rc, shmstore_err_name(rc), msg);
        fail();
    }
    assert_non_null(s);
    return s;
}

void t_assert_clean(shmstore_t *s)
{
    char report[8192];

    report[0] = '\0';
    int rc = shmstore_check(s, report, sizeof(report));
    if (rc != 0) {
        print_message("shmstore_check(%s) = %d %s; report:\n%s\n", shmstore_name(s), rc,
                      shmstore_err_name(rc), report);
    }
    assert_int_equal(rc, 0);
}

void t_cleanup(shmstore_t *s, const char *name)
{
    char report[8192];
    int rc = 0;

    report[0] = '\0';
    if (s != NULL) {
        rc = shmstore_check(s, report, sizeof(report));
        if (rc != 0) {
            print_message("shmstore_check(%s) = %d %s; report:\n%s\n", name, rc,
                          shmstore_err_name(rc), report);
        }
        shmstore_close(s);
    }
    int urc = shmstore_unlink(name, NULL);
    untrack(name);
    assert_int_equal(rc, 0);
    if (urc != 0 && urc != -ENOENT) {
        print_message("shmstore_unlink(%s) = %d %s\n", name, urc, shmstore_err_name(urc));
        fail();
    }
}

/* ---- assertions -------------------------------------------------------------------- */

void t_assert_rc_impl(int got, int expected, const char *expr, const char *file, int line)
{
    char msg[1024];

    if (got == expected)
        return;
    /* Copy the message first: it is valid only until the next shmstore call. */
    snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
    print_message("%s:%d: %s\n    returned %d (%s), expected %d (%s)\n    errmsg: %s\n", file,
                  line, expr, got, shmstore_err_name(got), expected, shmstore_err_name(expected),
                  msg);
    _fail(file, line);
}

void t_assert_rc2_impl(int got, int exp1, int exp2, const char *expr, const char *file,
                       int line)
{
    char msg[1024];

    if (got == exp1 || got == exp2)
        return;
    snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
    print_message("%s:%d: %s\n    returned %d (%s), expected %d (%s) or %d (%s)\n"
                  "    errmsg: %s\n",
                  file, line, expr, got, shmstore_err_name(got), exp1, shmstore_err_name(exp1),
                  exp2, shmstore_err_name(exp2), msg);
    _fail(file, line);
}

/* ---- processes --------------------------------------------------------------------- */

_Noreturn void t_child_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: child %ld: check failed: %s (errmsg: %s)\n", file, line,
            (long)getpid(), what, shmstore_errmsg());
    fflush(stderr);
    _exit(T_CHILD_FAILED);
}

void t_child_rc_impl(int got, int expected, const char *expr, const char *file, int line)
{
    char msg[1024];

    if (got == expected)
        return;
    snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
    fprintf(stderr, "%s:%d: child %ld: %s returned %d (%s), expected %d (%s) (errmsg: %s)\n",
            file, line, (long)getpid(), expr, got, shmstore_err_name(got), expected,
            shmstore_err_name(expected), msg);
    fflush(stderr);
    _exit(T_CHILD_FAILED);
}

pid_t t_fork(void (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        print_message("fork: %s\n", strerror(errno));
        fail();
    }
    if (pid == 0) {
        fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    return pid;
}

static int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int t_wait_child(pid_t pid, int timeout_ms)
{
    int status;

    if (timeout_ms < 0) {
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR)
                return -1;
        }
        return decode_status(status);
    }

    /* A pidfd becomes readable when the child exits: poll it with the timeout. */
    int64_t deadline = now_ms() + timeout_ms;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (pfd >= 0)
                close(pfd);
            return decode_status(status);
        }
        if (r < 0 && errno != EINTR)
            break;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        if (pfd >= 0) {
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            (void)poll(&p, 1, (int)left);
        } else {
            /* No pidfd (old kernel): re-check every millisecond until the deadline. */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (pfd >= 0)
        close(pfd);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    fprintf(stderr, "t_wait_child: child %ld timed out after %d ms; killed\n", (long)pid,
            timeout_ms);
    return -1;
}

/* ---- barrier ----------------------------------------------------------------------- */

/* Spin budget before sleeping: a few microseconds, enough for processes released
 * together on different CPUs to meet without a syscall. */
#define T_BARRIER_SPINS 4096

struct t_barrier {
    _Atomic uint32_t arrived; /* arrivals in the current round */
    _Atomic uint32_t round;   /* futex word: bumped when a round completes */
    uint32_t n;
};

void *t_shared_alloc(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        print_message("mmap(shared anonymous, %zu): %s\n", len, strerror(errno));
        fail();
    }
    return p;
}

void t_shared_free(void *p, size_t len)
{
    if (p != NULL)
        munmap(p, len);
}

t_barrier_t *t_barrier_new(unsigned n)
{
    t_barrier_t *b = t_shared_alloc(4096);
    atomic_init(&b->arrived, 0);
    atomic_init(&b->round, 0);
    b->n = n;
    return b;
}

void t_barrier_free(t_barrier_t *b)
{
    t_shared_free(b, 4096);
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    /* Shared (not FUTEX_PRIVATE_FLAG): the word lives in a MAP_SHARED page. */
    return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

int t_barrier_wait_ms(t_barrier_t *b, int timeout_ms)
{
    /* acquire: pairs with the release increment of `round` by the last arrival. */
    uint32_t round = atomic_load_explicit(&b->round, memory_order_acquire);
    uint32_t prev = atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel);
    if (prev + 1 == b->n) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        /* release: the reset of `arrived` is visible before anyone starts a new round. */
        atomic_fetch_add_explicit(&b->round, 1, memory_order_release);
        futex(&b->round, FUTEX_WAKE, INT32_MAX, NULL);
        return 0;
    }
    int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(&b->round, memory_order_acquire) != round)
            return 0;
        if (i < T_BARRIER_SPINS)
            continue;
        struct timespec ts, *tsp = NULL;
        if (timeout_ms >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return -1;
            ts.tv_sec = left / 1000;
            ts.tv_nsec = (left % 1000) * 1000000;
            tsp = &ts;
        }
        futex(&b->round, FUTEX_WAIT, round, tsp);
    }
}

void t_barrier_wait(t_barrier_t *b)
{
    (void)t_barrier_wait_ms(b, -1);
}

/* ---- resources --------------------------------------------------------------------- */

long t_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* the directory's own fd */
}

long t_count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF) {
        if (c == '\n')
            n++;
    }
    fclose(f);
    return n;
}

long t_count_shared_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return -1;
    long n = 0;
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL) {
        /* "start-end perms offset dev inode path": perms is rwxs / rwxp. */
        const char *perms = strchr(line, ' ');
        if (perms != NULL && strlen(perms) > 4 && perms[4] == 's')
            n++;
        if (strchr(line, '\n') == NULL) {
            int c;
            while ((c = getc(f)) != EOF && c != '\n')
                ;
        }
    }
    fclose(f);
    return n;
}

bool t_is_root(void)
{
    return geteuid() == 0;
}
