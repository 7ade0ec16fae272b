/* stats.c - clocks, sample sets, and the counters of the steady-state case.
 *
 * Timing: CLOCK_MONOTONIC through the vDSO (the clocksource is the TSC on the machines we
 * run on: ~20 ns a call, no system call). Operations shorter than a microsecond are
 * either timed in batches (the batch time divided by the batch size is one sample) or
 * timed one by one with the timer's own cost subtracted; each case says which.
 *
 * System calls: every system call of the library goes through the table shmstore__os
 * (src/os.h). bench__syscalls_start() saves the table and replaces each entry with a
 * forwarder that counts and calls the saved entry, so the count is exactly the number
 * of system calls the library made, with no tracer attached. Clock reads and
 * sched_yield are not in the table: the clocks are vDSO calls, and a yield only
 * happens in a contended spin, which the steady-state case (one process) never has.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_internal.h"
#include "os.h"

uint64_t bench__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t bench__now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t bench__timer_overhead(void)
{
    static uint64_t cached;
    if (cached)
        return cached;
    struct samples s;
    if (bench__samples_init(&s, 2001) != 0)
        return 0;
    for (int i = 0; i < 2001; i++) {
        uint64_t t0 = bench__now();
        uint64_t t1 = bench__now();
        bench__samples_add(&s, t1 - t0);
    }
    cached = (uint64_t)bench__pct(&s, 50);
    bench__samples_free(&s);
    return cached;
}

int bench__samples_init(struct samples *s, size_t cap)
{
    s->v = malloc((cap ? cap : 1) * sizeof *s->v);
    s->n = 0;
    s->cap = s->v ? cap : 0;
    s->is_sorted = false;
    return s->v ? 0 : -ENOMEM;
}

void bench__samples_free(struct samples *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

void bench__samples_add(struct samples *s, uint64_t x)
{
    if (s->n < s->cap) {
        s->v[s->n++] = x;
        s->is_sorted = false;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

double bench__pct(struct samples *s, double p)
{
    if (s->n == 0)
        return 0;
    if (!s->is_sorted) {
        qsort(s->v, s->n, sizeof *s->v, cmp_u64);
        s->is_sorted = true;
    }
    /* Nearest rank: the smallest sample with at least p% of the set at or below it. */
    size_t rank = (size_t)((p / 100.0) * (double)s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return (double)s->v[rank - 1];
}

double bench__mean(const struct samples *s)
{
    if (s->n == 0)
        return 0;
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += (double)s->v[i];
    return sum / (double)s->n;
}

uint64_t bench__faults(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

/* ---- system-call counting through the library's ops table ------------------------- */

static struct shmstore_os_ops saved_os;
static uint64_t n_syscalls;
static bool is_counting;

static int c_open(const char *path, int flags, unsigned mode)
{
    n_syscalls++;
    return saved_os.open(path, flags, mode);
}
static int c_close(int fd)
{
    n_syscalls++;
    return saved_os.close(fd);
}
static int c_fstat_owner(int fd, uint32_t *uid, uint32_t *gid, uint64_t *size)
{
    n_syscalls++;
    return saved_os.fstat_owner(fd, uid, gid, size);
}
static int c_fchown_group(int fd, uint32_t gid)
{
    n_syscalls++;
    return saved_os.fchown_group(fd, gid);
}
static int c_ftruncate(int fd, uint64_t len)
{
    n_syscalls++;
    return saved_os.ftruncate(fd, len);
}
static int c_fallocate(int fd, uint64_t off, uint64_t len)
{
    n_syscalls++;
    return saved_os.fallocate(fd, off, len);
}
static int c_mmap_shared(int fd, uint64_t len, void **out)
{
    n_syscalls++;
    return saved_os.mmap_shared(fd, len, out);
}
static int c_munmap(void *addr, uint64_t len)
{
    n_syscalls++;
    return saved_os.munmap(addr, len);
}
static int c_prefault(void *addr, uint64_t len)
{
    n_syscalls++;
    return saved_os.prefault(addr, len);
}
static int c_unlink(const char *path)
{
    n_syscalls++;
    return saved_os.unlink(path);
}
static int c_ofd_setlk(int fd, uint64_t byte)
{
    n_syscalls++;
    return saved_os.ofd_setlk(fd, byte);
}
static int c_ofd_unlk(int fd, uint64_t byte)
{
    n_syscalls++;
    return saved_os.ofd_unlk(fd, byte);
}
static int c_ofd_getlk(int fd, uint64_t byte)
{
    n_syscalls++;
    return saved_os.ofd_getlk(fd, byte);
}
static int c_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    n_syscalls++;
    return saved_os.futex_wait(word, expected, timeout_ns);
}
static int c_futex_wake(_Atomic uint32_t *word, int n)
{
    n_syscalls++;
    return saved_os.futex_wake(word, n);
}
static int c_statvfs_size(const char *dir, uint64_t *total, uint64_t *avail)
{
    n_syscalls++;
    return saved_os.statvfs_size(dir, total, avail);
}

void bench__syscalls_start(void)
{
    if (is_counting)
        return;
    saved_os = shmstore__os;
    shmstore__os = (struct shmstore_os_ops){
        .open = c_open,
        .close = c_close,
        .fstat_owner = c_fstat_owner,
        .fchown_group = c_fchown_group,
        .ftruncate = c_ftruncate,
        .fallocate = c_fallocate,
        .mmap_shared = c_mmap_shared,
        .munmap = c_munmap,
        .prefault = c_prefault,
        .unlink = c_unlink,
        .ofd_setlk = c_ofd_setlk,
        .ofd_unlk = c_ofd_unlk,
        .ofd_getlk = c_ofd_getlk,
        .futex_wait = c_futex_wait,
        .futex_wake = c_futex_wake,
        .statvfs_size = c_statvfs_size,
    };
    n_syscalls = 0;
    is_counting = true;
}

uint64_t bench__syscalls_stop(void)
{
    if (!is_counting)
        return 0;
    shmstore__os = saved_os;
    is_counting = false;
    return n_syscalls;
}

/* ---- data ------------------------------------------------------------------------- */

void bench__fill(void *buf, size_t len, uint64_t seed)
{
    uint64_t *w = buf;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len / 8; i++) {
        x ^= x << 13; /* xorshift64: cheap, every word differs between seeds */
        x ^= x >> 7;
        x ^= x << 17;
        w[i] = x;
    }
}
