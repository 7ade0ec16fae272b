/* errors.c - error names and messages, and the per-thread detailed message.
 *
 * Codes are negative: -errno, or SHMSTORE_E* from the X-macro in shmstore/errno.h. The
 * detailed message is thread-local so that concurrent threads never see each other's
 * errors; the library writes it on the failing path only (shmstore__seterr). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char errmsg_buf[512];

SHMSTORE_API const char *shmstore_strerror(int err)
{
    switch (err) {
#define SHMSTORE__ERR_MSG(name, val, msg) \
    case SHMSTORE_##name:                 \
        return msg;
        SHMSTORE_ERRNO_MAP(SHMSTORE__ERR_MSG)
#undef SHMSTORE__ERR_MSG
    case 0:
        return "success";
    }
    if (err < 0 && err > -4000)
        return strerror(-err); /* glibc: static strings for known errnos */
    return "unknown error";
}

SHMSTORE_API const char *shmstore_err_name(int err)
{
    switch (err) {
#define SHMSTORE__ERR_NAME(name, val, msg) \
    case SHMSTORE_##name:                  \
        return "SHMSTORE_" #name;
        SHMSTORE_ERRNO_MAP(SHMSTORE__ERR_NAME)
#undef SHMSTORE__ERR_NAME
    case 0:
        return "OK";
    }
    if (err >= 0 || err <= -4000)
        return "UNKNOWN";
    switch (-err) {
#define ERRNO_NAME(e) \
    case e:           \
        return #e;
        ERRNO_NAME(EPERM) ERRNO_NAME(ENOENT) ERRNO_NAME(EINTR) ERRNO_NAME(EIO)
        ERRNO_NAME(EBADF) ERRNO_NAME(EAGAIN) ERRNO_NAME(ENOMEM) ERRNO_NAME(EACCES)
        ERRNO_NAME(EBUSY) ERRNO_NAME(EEXIST) ERRNO_NAME(ENODEV) ERRNO_NAME(EINVAL)
        ERRNO_NAME(ENFILE) ERRNO_NAME(EMFILE) ERRNO_NAME(EFBIG) ERRNO_NAME(ENOSPC)
        ERRNO_NAME(ENAMETOOLONG) ERRNO_NAME(ELOOP) ERRNO_NAME(ENOBUFS)
        ERRNO_NAME(ETIMEDOUT) ERRNO_NAME(ESTALE) ERRNO_NAME(EOWNERDEAD) ERRNO_NAME(ENOTSUP) ERRNO_NAME(EDEADLK) ERRNO_NAME(ENOLCK)
#undef ERRNO_NAME
    }
    return "UNKNOWN";
}

SHMSTORE_API const char *shmstore_errmsg(void)
{
    return errmsg_buf;
}

int shmstore__seterr(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg_buf, sizeof(errmsg_buf), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(errmsg_buf) - 4)
        snprintf(errmsg_buf + n, sizeof(errmsg_buf) - (size_t)n, " (%s)", shmstore_err_name(err));
    return err;
}

void shmstore__errmsg_restore(const char *saved)
{
    snprintf(errmsg_buf, sizeof(errmsg_buf), "%s", saved);
}

void shmstore__clearerr(void)
{
    errmsg_buf[0] = '\0';
}
