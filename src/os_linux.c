/* os_linux.c - the Linux implementation of the system-call table (os.h).
 *
 * This is the only file that calls into the kernel. Wrappers return -errno instead of
 * setting errno, and retry EINTR except where the caller must see it (futex waits, so
 * that a signal handler's work is not delayed by a long wait). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define RETRY(expr)                                \
    ({                                             \
        long r_;                                   \
        do {                                       \
            r_ = (long)(expr);                     \
        } while (r_ == -1 && errno == EINTR);      \
        r_ == -1 ? -errno : (int)(r_ > INT_MAX ? INT_MAX : r_); \
    })

static int l_open(const char *path, int flags, unsigned mode)
{
    return RETRY(open(path, flags | O_CLOEXEC, (mode_t)mode));
}

static int l_close(int fd)
{
    /* close() must not be retried on EINTR on Linux: the fd is gone either way. */
    return close(fd) == 0 ? 0 : (errno == EINTR ? 0 : -errno);
}

static int l_fstat_owner(int fd, uint32_t *uid, uint32_t *gid, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    *uid = st.st_uid;
    *gid = st.st_gid;
    *size = (uint64_t)st.st_size;
    return 0;
}

static int l_fchown_group(int fd, uint32_t gid)
{
    if (fchown(fd, (uid_t)-1, (gid_t)gid) != 0)
        return -errno;
    return fchmod(fd, 0660) == 0 ? 0 : -errno;
}

static int l_ftruncate(int fd, uint64_t len)
{
    return RETRY(ftruncate(fd, (off_t)len));
}

static int l_fallocate(int fd, uint64_t off, uint64_t len)
{
    return RETRY(fallocate(fd, 0, (off_t)off, (off_t)len));
}

static int l_mmap_shared(int fd, uint64_t len, void **out)
{
    void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *out = p;
    return 0;
}

static int l_munmap(void *addr, uint64_t len)
{
    return munmap(addr, (size_t)len) == 0 ? 0 : -errno;
}

static int l_prefault(void *addr, uint64_t len)
{
    /* Older kernels lack MADV_POPULATE_READ (EINVAL): prefaulting is an optimisation. */
    return madvise(addr, (size_t)len, MADV_POPULATE_READ) == 0 ? 0 : -errno;
}

static int l_unlink(const char *path)
{
    return unlink(path) == 0 ? 0 : -errno;
}

static int ofd_lock(int fd, int cmd, short type, uint64_t byte, struct flock *fl)
{
    *fl = (struct flock){.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)byte, .l_len = 1};
    return RETRY(fcntl(fd, cmd, fl));
}

static int l_ofd_setlk(int fd, uint64_t byte)
{
    struct flock fl;
    int r = ofd_lock(fd, F_OFD_SETLK, F_WRLCK, byte, &fl);
    return r == -EACCES ? -EAGAIN : r;
}

static int l_ofd_unlk(int fd, uint64_t byte)
{
    struct flock fl;
    return ofd_lock(fd, F_OFD_SETLK, F_UNLCK, byte, &fl);
}

static int l_ofd_getlk(int fd, uint64_t byte)
{
    struct flock fl;
    int r = ofd_lock(fd, F_OFD_GETLK, F_WRLCK, byte, &fl);
    if (r < 0)
        return r;
    return fl.l_type != F_UNLCK;
}

static int l_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tp = &ts;
    }
    /* Shared futex (no FUTEX_PRIVATE_FLAG): waiters and wakers are different processes. */
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tp, NULL, 0);
    if (r == 0 || errno == EAGAIN)
        return 0;
    return -errno;
}

static int l_futex_wake(_Atomic uint32_t *word, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

static int l_statvfs_size(const char *dir, uint64_t *total, uint64_t *avail)
{
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0)
        return -errno;
    *total = (uint64_t)sv.f_blocks * sv.f_frsize;
    *avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    return 0;
}

/* One initializer for both tables: the constant reference and the live, replaceable one. */
#define LINUX_OPS { \
    .open = l_open, \
    .close = l_close, \
    .fstat_owner = l_fstat_owner, \
    .fchown_group = l_fchown_group, \
    .ftruncate = l_ftruncate, \
    .fallocate = l_fallocate, \
    .mmap_shared = l_mmap_shared, \
    .munmap = l_munmap, \
    .prefault = l_prefault, \
    .unlink = l_unlink, \
    .ofd_setlk = l_ofd_setlk, \
    .ofd_unlk = l_ofd_unlk, \
    .ofd_getlk = l_ofd_getlk, \
    .futex_wait = l_futex_wait, \
    .futex_wake = l_futex_wake, \
    .statvfs_size = l_statvfs_size, \
}

const struct shmstore_os_ops shmstore__os_linux = LINUX_OPS;
struct shmstore_os_ops shmstore__os = LINUX_OPS;

uint64_t shmstore__os_now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t shmstore__os_now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void shmstore__os_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void shmstore__os_yield(void)
{
    sched_yield();
}

void shmstore__os_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}
