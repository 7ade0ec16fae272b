/* shmstore/errno.h - the error codes of shmstore and the version macros.
 *
 * Every fallible shmstore function returns 0 on success or a negative code: either a
 * negated errno value (-ENOENT, -ENOSPC, -ETIMEDOUT, -ESTALE, ...) or one of the
 * shmstore-specific codes below, which live in a reserved range far from any errno.
 * shmstore_strerror() and shmstore_err_name() describe both kinds.
 */
#ifndef SHMSTORE_ERRNO_H
#define SHMSTORE_ERRNO_H

#define SHMSTORE_VERSION_MAJOR 0
#define SHMSTORE_VERSION_MINOR 1
#define SHMSTORE_VERSION_PATCH 0
#define SHMSTORE_VERSION_STRING "0.1.0"

/* X(name, value, message): the one list from which the enum, shmstore_strerror() and
 * shmstore_err_name() are generated. Values are negative and below -4000. */
#define SHMSTORE_ERRNO_MAP(X)                                                             \
    X(ECORRUPT, -4001, "store is corrupt (bad magic, size or offset); run `shmstore check`") \
    X(EVERSION, -4002, "store was made by an incompatible shmstore layout version")        \
    X(ELEASES, -4003, "this process holds too many leases (views/handles); release some")  \
    X(EPROCS, -4004, "process table of the store is full; close other processes or run gc")\
    X(EKIND, -4005, "object exists but is of another kind")                                 \
    X(ELAYOUT, -4006, "data does not match the object's fixed type, dtype or shape")       \
    X(ESEALED, -4007, "object is sealed (immutable)")                                       \
    X(EFORK, -4008, "handle was opened before fork(); the child must open the store again") \
    X(EOWNER, -4009, "store belongs to another user")                                       \
    X(ENOVALUE, -4010, "value has no version yet")                                          \
    X(EDTYPE, -4011, "invalid or unsupported dtype string")                                 \
    X(ENAME, -4012, "invalid name: empty, longer than 255 bytes, or not valid UTF-8")      \
    X(EGENERATION, -4013, "ring was reconfigured: follow it to its new generation")

enum {
#define SHMSTORE__ERR_ENUM(name, val, msg) SHMSTORE_##name = (val),
    SHMSTORE_ERRNO_MAP(SHMSTORE__ERR_ENUM)
#undef SHMSTORE__ERR_ENUM
};

#endif
