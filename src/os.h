/* os.h - the only door to the kernel. Every system call the library makes goes through
 * `shmstore__os`, a table of functions that tests may replace (fault injection: fail
 * the Nth fallocate with -ENOSPC, the Nth futex wait with -EINTR, ...). Each function
 * returns 0 / a non-negative result, or -errno; none sets errno for the caller, and all
 * retry EINTR themselves except futex_wait, whose EINTR the caller must see. */
#ifndef SHMSTORE_OS_H
#define SHMSTORE_OS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct shmstore_os_ops {
    /* open(2) relative to a directory path; returns fd or -errno. */
    int (*open)(const char *path, int flags, unsigned mode);
    int (*close)(int fd);
    int (*fstat_owner)(int fd, uint32_t *uid, uint32_t *gid, uint64_t *size);
    int (*fchown_group)(int fd, uint32_t gid);
    int (*ftruncate)(int fd, uint64_t len);
    /* fallocate(fd, 0, off, len): commits memory for [off, off+len). */
    int (*fallocate)(int fd, uint64_t off, uint64_t len);
    int (*mmap_shared)(int fd, uint64_t len, void **out);
    int (*munmap)(void *addr, uint64_t len);
    /* Populate page tables for reading (MADV_POPULATE_READ); best effort. */
    int (*prefault)(void *addr, uint64_t len);
    int (*unlink)(const char *path);
    /* Open-file-description locks on one byte: setlk returns 0 or -EAGAIN when another
     * description holds it; getlk returns 1 if another description holds it, else 0. */
    int (*ofd_setlk)(int fd, uint64_t byte);
    int (*ofd_unlk)(int fd, uint64_t byte);
    int (*ofd_getlk)(int fd, uint64_t byte);
    /* Shared (not private) futex on a word in the mapping. timeout_ns < 0 = forever.
     * Returns 0 (woken or value differed), -ETIMEDOUT, -EINTR. */
    int (*futex_wait)(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
    int (*futex_wake)(_Atomic uint32_t *word, int n);
    /* Filesystem size of a directory, for capacity defaults and ENOSPC messages. */
    int (*statvfs_size)(const char *dir, uint64_t *total, uint64_t *avail);
};

/* The table in use; starts as the Linux implementation (os_linux.c). */
extern struct shmstore_os_ops shmstore__os;
/* The Linux implementation, for tests that wrap some entries and forward the rest. */
extern const struct shmstore_os_ops shmstore__os_linux;

/* Clocks (vDSO, no syscall): CLOCK_REALTIME and CLOCK_MONOTONIC in ns. */
uint64_t shmstore__os_now_real(void);
uint64_t shmstore__os_now_mono(void);
/* CPU pause for spin loops. */
void shmstore__os_cpu_relax(void);
/* Yield the CPU (sched_yield). */
void shmstore__os_yield(void);
/* Sleep `ns` nanoseconds (nanosleep, resumed after signals). */
void shmstore__os_sleep_ns(uint64_t ns);

#endif
