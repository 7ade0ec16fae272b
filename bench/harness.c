/* harness.c - the machinery of multi-process measurements.
 *
 * Processes meet in a MAP_SHARED|MAP_ANONYMOUS region the parent maps before fork().
 * Synchronisation is spin-then-futex on 32-bit words there: a waiter spins (pause) for
 * SPIN_NS, which covers a hand-off between two running processes, then sleeps on a
 * futex so that a waiting process does not steal one of the two CPUs from the process
 * being measured. Every wait has a deadline: a child that dies makes the parent fail
 * the case, never hang.
 *
 * Children set PR_SET_PDEATHSIG so that an interrupted bench leaves no process behind;
 * the parent reaps every child it forked (bench__kids_reap), killing late ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_internal.h"

/* Spin this long before sleeping: a cross-core hand-off takes well under 1 µs, a put
 * of a frame ~100 µs; 50 µs of spinning keeps hand-offs off the futex path. */
#define SPIN_NS 50000u

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void *bench__shared_alloc(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, len); /* fault it in now, outside any timed region */
    return p;
}

void bench__shared_free(void *p, size_t len)
{
    if (p)
        munmap(p, len);
}

int bench__futex_wait(_Atomic uint32_t *w, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / (int64_t)NS_PER_S;
        ts.tv_nsec = timeout_ns % (int64_t)NS_PER_S;
        tsp = &ts;
    }
    long r = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, expected, tsp, NULL, 0);
    return r == 0 ? 0 : -errno;
}

int bench__futex_wake(_Atomic uint32_t *w, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
    return r >= 0 ? (int)r : -errno;
}

int bench__wait_eq(_Atomic uint32_t *w, uint32_t val, uint64_t deadline)
{
    uint64_t t_start = bench__now();
    for (uint32_t i = 0;; i++) {
        uint32_t cur = atomic_load_explicit(w, memory_order_acquire);
        if (cur == val)
            return 0;
        cpu_relax();
        if ((i & 255) != 255)
            continue;
        uint64_t now = bench__now();
        if (now >= deadline)
            return -ETIMEDOUT;
        if (now - t_start > SPIN_NS) {
            /* Sleep until the word changes; a 10 ms cap re-checks the deadline. */
            uint64_t left = deadline - now;
            bench__futex_wait(w, cur, left < 10000000u ? (int64_t)left : 10000000);
        }
    }
}

int bench__spin_eq(_Atomic uint32_t *w, uint32_t val, uint64_t deadline)
{
    uint64_t t_start = 0;
    for (uint32_t i = 0;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) == val)
            return 0;
        cpu_relax();
        if ((i & 1023) != 1023)
            continue;
        uint64_t now = bench__now();
        if (now >= deadline)
            return -ETIMEDOUT;
        if (!t_start)
            t_start = now;
        else if (now - t_start > 10000000u)
            sched_yield(); /* 10 ms: the other side may share our CPU after all */
    }
}

void bench__set_wake(_Atomic uint32_t *w, uint32_t val)
{
    /* release: publishes what the setter wrote before; pairs with the acquire load in
     * bench__wait_eq(). The wake is a system call only worth making if someone may
     * sleep; waiters sleep only after SPIN_NS, and a spare wake costs ~1 µs, outside
     * timed regions. */
    atomic_store_explicit(w, val, memory_order_release);
    bench__futex_wake(w, INT_MAX);
}

void bench__barrier_init(struct barrier *b, uint32_t n)
{
    atomic_store(&b->arrived, 0);
    atomic_store(&b->gen, 0);
    atomic_store(&b->is_broken, 0);
    b->n = n;
}

int bench__barrier_wait(struct barrier *b, int64_t timeout_ns)
{
    if (atomic_load(&b->is_broken))
        return -EPIPE;
    uint32_t gen = atomic_load_explicit(&b->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) + 1 == b->n) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        bench__set_wake(&b->gen, gen + 1);
        return 0;
    }
    uint64_t deadline = bench__now() + (uint64_t)timeout_ns;
    if (bench__wait_eq(&b->gen, gen + 1, deadline) != 0) {
        atomic_store(&b->is_broken, 1);
        bench__futex_wake(&b->gen, INT_MAX);
        return -ETIMEDOUT;
    }
    return atomic_load(&b->is_broken) ? -EPIPE : 0;
}

/* ---- children ----------------------------------------------------------------------- */

pid_t bench__kid_spawn(struct kids *k, int (*fn)(void *arg), void *arg)
{
    if (k->n >= (int)(sizeof k->pid / sizeof k->pid[0]))
        return -EMFILE;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(70);
        int rc = fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(rc == 0 ? 0 : 1);
    }
    k->pid[k->n++] = pid;
    return pid;
}

static int reap_one(pid_t pid, bool is_blocking)
{
    int st;
    pid_t r = waitpid(pid, &st, is_blocking ? 0 : WNOHANG);
    if (r == 0)
        return -EAGAIN;
    if (r < 0)
        return 1;
    return (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 0 : 1;
}

int bench__kids_reap(struct kids *k, int64_t timeout_ns)
{
    int n_failed = 0;
    uint64_t deadline = bench__now() + (uint64_t)timeout_ns;
    for (int i = 0; i < k->n; i++) {
        for (;;) {
            int r = reap_one(k->pid[i], false);
            if (r != -EAGAIN) {
                n_failed += r;
                break;
            }
            uint64_t now = bench__now();
            if (now >= deadline) {
                kill(k->pid[i], SIGKILL);
                reap_one(k->pid[i], true);
                n_failed++;
                break;
            }
            /* Block until the child exits: a pidfd becomes readable at its exit. */
            int fd = (int)syscall(SYS_pidfd_open, k->pid[i], 0);
            if (fd >= 0) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                uint64_t left_ms = (deadline - now) / 1000000u + 1;
                poll(&pfd, 1, left_ms > INT_MAX ? INT_MAX : (int)left_ms);
                close(fd);
            } else {
                sched_yield();
            }
        }
    }
    k->n = 0;
    return n_failed;
}

void bench__kids_kill(struct kids *k)
{
    for (int i = 0; i < k->n; i++)
        kill(k->pid[i], SIGKILL);
    for (int i = 0; i < k->n; i++)
        reap_one(k->pid[i], true);
    k->n = 0;
}

/* ---- CPUs --------------------------------------------------------------------------- */

int bench__ncpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
}

static cpu_set_t orig_set;
static bool has_orig_set;

void bench__pin(int cpu)
{
    if (!has_orig_set) {
        if (sched_getaffinity(0, sizeof orig_set, &orig_set) != 0)
            return;
        has_orig_set = true;
    }
    int n = CPU_COUNT(&orig_set);
    if (n < 2)
        return;
    /* The cpu-th CPU of the original mask. */
    int want = cpu % n, seen = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &orig_set))
            continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            sched_setaffinity(0, sizeof one, &one);
            return;
        }
    }
}

void bench__unpin(void)
{
    if (has_orig_set)
        sched_setaffinity(0, sizeof orig_set, &orig_set);
}

/* ---- stores ------------------------------------------------------------------------- */

void bench__store_name(char *buf, size_t cap, const char *prefix)
{
    static unsigned counter;
    snprintf(buf, cap, "%s-%ld-%u", prefix, (long)getpid(), counter++);
}

int bench__fail(const char *cmd, const char *what, int err)
{
    const char *msg = shmstore_errmsg();
    fprintf(stderr, "shmstore %s: %s: %s%s%s%s\n", cmd, what, shmstore_strerror(err),
            msg && *msg ? " (" : "", msg ? msg : "", msg && *msg ? ")" : "");
    return err;
}

int bench__store_create(const char *name, shmstore_t **out)
{
    int rc = shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, out);
    if (rc != 0)
        bench__fail("bench", "create store", rc);
    return rc;
}

int bench__wait_asleep(pid_t pid, uint64_t deadline)
{
    char path[64], buf[512];
    for (;;) {
        bool is_asleep = false;
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -ESRCH;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            const char *rp = strrchr(buf, ')'); /* state follows "(comm) " */
            is_asleep = rp && rp[1] == ' ' && rp[2] == 'S';
        }
        if (is_asleep) {
            /* S could also be a page fault on I/O or a nanosleep; require the futex. */
            snprintf(path, sizeof path, "/proc/%ld/wchan", (long)pid);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                n = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (n > 0) {
                    buf[n] = 0;
                    /* "0" when the kernel hides wchan: trust the state then. */
                    if (strcmp(buf, "0") == 0 || strstr(buf, "futex"))
                        return 0;
                }
            } else {
                return 0;
            }
        }
        if (bench__now() >= deadline)
            return -ETIMEDOUT;
        sched_yield();
    }
}

int bench__fixture_open(struct fixture *f, const char *prefix, const char *value)
{
    f->s = NULL;
    f->v = NULL;
    bench__store_name(f->store, sizeof f->store, prefix);
    int rc = bench__store_create(f->store, &f->s);
    if (rc != 0)
        return rc;
    rc = shmstore_value_open(f->s, value, SHMSTORE_V_CREATE, &f->v);
    if (rc != 0) {
        bench__fail("bench", "create value", rc);
        bench__fixture_close(f);
    }
    return rc;
}

void bench__fixture_close(struct fixture *f)
{
    shmstore_value_close(f->v);
    f->v = NULL;
    if (f->s) {
        shmstore_close(f->s);
        f->s = NULL;
        shmstore_unlink(f->store, NULL);
    }
}

int bench__attach(const char *store, const char *value, shmstore_t **s, shmstore_value_t **v)
{
    int rc = shmstore_open(store, 0, NULL, s);
    if (rc != 0)
        return bench__fail("bench", "open store in child", rc);
    rc = shmstore_value_open(*s, value, 0, v);
    if (rc != 0) {
        bench__fail("bench", "open value in child", rc);
        shmstore_close(*s);
        *s = NULL;
    }
    return rc;
}

void bench__frame_datum(shmstore_datum_t *d)
{
    const uint64_t shape[3] = {FRAME_H, FRAME_W, FRAME_C};
    shmstore_datum_init_array(d, "|u1", 3, shape);
}

void *bench__buf(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, len ? len : 1) != 0)
        return NULL;
    memset(p, 0x5a, len);
    return p;
}
