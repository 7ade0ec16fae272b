/* test_fault.c - SQLite-faultsim-style fault injection through the syscall table.
 *
 * The library makes every system call through `shmstore__os` (os.h). This test replaces
 * entries of that table with wrappers that forward to `shmstore__os_linux` but fail the
 * Nth call of one chosen operation with a chosen error (once, or from the Nth call on:
 * "persistent"), and runs a scripted workload for N = 1, 2, 3, ... until a run completes
 * without reaching the Nth call. Each run happens in a forked child (a crash or a hang
 * then fails that run with a clear message, instead of killing the test runner).
 *
 * The workload keeps a model of what every value must hold. After every call:
 * - the call returned 0 or a negative code (and for an injected ENOSPC, exactly -ENOSPC;
 *   for calls not allowed to fail on that fault, 0);
 * - after a failed put / reserve / lock / trigger, the value still holds exactly what the
 *   model says (version, length, every byte): a failure changes nothing.
 * After every run, with the real table restored:
 * - no file descriptor leaked; a failed store creation left no file behind;
 * - the store passes shmstore_check(), every value matches the model, no writer lock is
 *   left taken and no waiter left registered;
 * - after deleting every object and gc, stat().used is back to the baseline of an empty
 *   store (only the name index block remains) - nothing leaked.
 */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../mp/payload.h"
#include "internal.h"

#define MIB (1ull << 20)
#define RUN_TIMEOUT_MS 60000
#define N_MAX 2000

/* ---- the faulty table --------------------------------------------------------------- */

enum op {
    OP_OPEN,
    OP_CLOSE,
    OP_FSTAT,
    OP_FTRUNCATE,
    OP_FALLOCATE,
    OP_MMAP,
    OP_PREFAULT,
    OP_OFD_SETLK,
    OP_FUTEX_WAIT,
    OP_STATVFS,
    OP_OFD_GETLK,
    OP__COUNT,
    OP_ANY = OP__COUNT /* the Nth call of any of the above, with its own error */
};

static const char *const op_names[OP__COUNT] = {
    "open", "close", "fstat_owner", "ftruncate", "fallocate", "mmap_shared", "prefault",
    "ofd_setlk", "futex_wait", "statvfs_size", "ofd_getlk",
};

/* The error each operation fails with in OP_ANY mode. */
static const int any_err[OP__COUNT] = {
    -EMFILE, -EIO, -EIO, -ENOSPC, -ENOSPC, -ENOMEM, -EINVAL, -ENOLCK, -EINTR, -EIO, -EIO,
};

static const char *op_name(enum op op)
{
    return op == OP_ANY ? "any syscall" : op_names[op];
}

/* What a fault of this kind may do to the API calls of the workload. */
enum expect {
    EXP_ANY_NEG, /* a failing call returns some negative code */
    EXP_ENOSPC,  /* a failing call returns -ENOSPC */
    EXP_NONE,    /* nothing may fail (best-effort syscalls, retried EINTR), except a
                    value wait, which reports -EINTR to its caller */
};

struct fault_spec {
    enum op op;
    int err;
    int persistent;
    enum expect expect;
};

/* Shared by all threads of the child. */
static struct {
    enum op op;
    long nth;        /* fail the nth call (1-based); 0 = never */
    int err;
    int persistent;
    _Atomic long calls[OP__COUNT];
    _Atomic long injected;
    int enabled;
} g_f;

static _Atomic long g_any_calls;

/* 0 = forward the call; otherwise the error to return. */
static int inject(enum op op)
{
    long n = atomic_fetch_add(&g_f.calls[op], 1) + 1;
    if (!g_f.enabled || g_f.nth == 0)
        return 0;
    if (g_f.op == OP_ANY) {
        n = atomic_fetch_add(&g_any_calls, 1) + 1;
    } else if (op != g_f.op) {
        return 0;
    }
    if (n == g_f.nth || (g_f.persistent && n > g_f.nth)) {
        atomic_fetch_add(&g_f.injected, 1);
        return g_f.op == OP_ANY ? any_err[op] : g_f.err;
    }
    return 0;
}

/* Each wrapper: the injected error, or the real call. */
#define FAULTY(op, call)          \
    do {                          \
        int e_ = inject(op);      \
        return e_ ? e_ : (call);  \
    } while (0)

static int f_open(const char *path, int flags, unsigned mode)
{
    FAULTY(OP_OPEN, shmstore__os_linux.open(path, flags, mode));
}
static int f_close(int fd)
{
    /* A failing close still closes (Linux): forward, then report the error. */
    int r = shmstore__os_linux.close(fd);
    int e = inject(OP_CLOSE);
    return e ? e : r;
}
static int f_fstat_owner(int fd, uint32_t *uid, uint32_t *gid, uint64_t *size)
{
    FAULTY(OP_FSTAT, shmstore__os_linux.fstat_owner(fd, uid, gid, size));
}
static int f_ftruncate(int fd, uint64_t len)
{
    FAULTY(OP_FTRUNCATE, shmstore__os_linux.ftruncate(fd, len));
}
static int f_fallocate(int fd, uint64_t off, uint64_t len)
{
    FAULTY(OP_FALLOCATE, shmstore__os_linux.fallocate(fd, off, len));
}
static int f_mmap_shared(int fd, uint64_t len, void **out)
{
    FAULTY(OP_MMAP, shmstore__os_linux.mmap_shared(fd, len, out));
}
static int f_prefault(void *addr, uint64_t len)
{
    FAULTY(OP_PREFAULT, shmstore__os_linux.prefault(addr, len));
}
static int f_ofd_setlk(int fd, uint64_t byte)
{
    FAULTY(OP_OFD_SETLK, shmstore__os_linux.ofd_setlk(fd, byte));
}
static int f_ofd_getlk(int fd, uint64_t byte)
{
    FAULTY(OP_OFD_GETLK, shmstore__os_linux.ofd_getlk(fd, byte));
}
static _Atomic long g_futex_entered; /* for the contention handshake */
static int f_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    atomic_fetch_add(&g_futex_entered, 1);
    FAULTY(OP_FUTEX_WAIT, shmstore__os_linux.futex_wait(word, expected, timeout_ns));
}
static int f_statvfs_size(const char *dir, uint64_t *total, uint64_t *avail)
{
    FAULTY(OP_STATVFS, shmstore__os_linux.statvfs_size(dir, total, avail));
}

static void faults_install(enum op op, long nth, int err, int persistent)
{
    g_f.op = op;
    g_f.nth = nth;
    g_f.err = err;
    g_f.persistent = persistent;
    for (int i = 0; i < OP__COUNT; i++)
        atomic_store(&g_f.calls[i], 0);
    atomic_store(&g_any_calls, 0);
    atomic_store(&g_f.injected, 0);
    g_f.enabled = 1;
    struct shmstore_os_ops t = shmstore__os_linux;
    t.open = f_open;
    t.close = f_close;
    t.fstat_owner = f_fstat_owner;
    t.ftruncate = f_ftruncate;
    t.fallocate = f_fallocate;
    t.mmap_shared = f_mmap_shared;
    t.prefault = f_prefault;
    t.ofd_setlk = f_ofd_setlk;
    t.futex_wait = f_futex_wait;
    t.statvfs_size = f_statvfs_size;
    t.ofd_getlk = f_ofd_getlk;
    shmstore__os = t;
}

static void faults_restore(void)
{
    g_f.enabled = 0;
    shmstore__os = shmstore__os_linux;
}

/* ---- the model ---------------------------------------------------------------------- */

struct mval {
    const char *name;
    shmstore_value_t *h; /* NULL: not open */
    int exists;          /* in the store (as far as the workload knows) */
    uint64_t ver;        /* 0 = no version */
    uint32_t wid;
    uint64_t seq;
    size_t len;
    int is_none;         /* the current version is a trigger on an empty value */
};

enum { VA, VB, VC, VD, N_VALS };
#define N_GROW 12

struct run {
    const struct fault_spec *spec;
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    struct mval m[N_VALS];
    int created;
    uint64_t next_seq;
    int64_t grow_seq[N_GROW]; /* grow/<i>: seq it holds; 0 = no version; -1 = deleted */
    size_t grow_len[N_GROW];
    unsigned char *buf;
    unsigned char *rbuf;
};

#define RBUF_CAP (4 * MIB)

/* Check a return code against what the fault allows. `may_eintr`: a value wait. */
#define CK(run, expr, may_eintr) ck_rc((run), (int)(expr), #expr, __LINE__, (may_eintr))
static int ck_rc(struct run *r, int rc, const char *what, int line, int may_eintr)
{
    if (rc == 0)
        return 0;
    int ok = rc < 0;
    switch (r->spec->expect) {
    case EXP_ANY_NEG:
        break;
    case EXP_ENOSPC:
        ok = ok && rc == -ENOSPC;
        break;
    case EXP_NONE:
        ok = ok && may_eintr && rc == -EINTR;
        break;
    }
    if (!ok) {
        fprintf(stderr,
                "fault %s=%d%s at call %ld: line %d: %s returned %d (%s) (errmsg: %s)\n",
                op_name(r->spec->op), r->spec->err, r->spec->persistent ? " (persistent)" : "",
                g_f.nth, line, what, rc, shmstore_err_name(rc), shmstore_errmsg());
        T_CHILD_CHECK(!"unexpected return code under fault injection");
    }
    return rc;
}

/* The value holds exactly what the model says. */
static void check_model(struct run *r, struct mval *mv, const char *when)
{
    if (mv->h == NULL)
        return;
    size_t len = 0;
    uint64_t ver = 0, seq = 0;
    uint32_t wid = 0;
    shmstore_datum_t d;
    int rc = shmstore_value_get(mv->h, &d, r->rbuf, RBUF_CAP, &len, &ver);
    if (mv->ver == 0) {
        if (rc != SHMSTORE_ENOVALUE)
            fprintf(stderr, "%s: %s: get returned %d, expected ENOVALUE\n", when, mv->name, rc);
        T_CHILD_CHECK(rc == SHMSTORE_ENOVALUE);
        return;
    }
    if (rc != 0 || ver != mv->ver || len != mv->len ||
        (!mv->is_none && (!pl_check(r->rbuf, len, &wid, &seq) || wid != mv->wid ||
                          seq != mv->seq))) {
        fprintf(stderr,
                "fault %s=%d at call %ld: %s: value %s holds rc %d version %llu len %zu "
                "writer %u seq %llu; model: version %llu len %zu writer %u seq %llu\n",
                op_name(r->spec->op), r->spec->err, g_f.nth, when, mv->name, rc,
                (unsigned long long)ver, len, wid, (unsigned long long)seq,
                (unsigned long long)mv->ver, mv->len, mv->wid, (unsigned long long)mv->seq);
        T_CHILD_CHECK(!"value does not match the model");
    }
}

static void do_put(struct run *r, struct mval *mv, size_t len)
{
    if (mv->h == NULL)
        return;
    uint64_t seq = ++r->next_seq;
    pl_fill(r->buf, len, 1, seq);
    if (CK(r, shmstore_value_put(mv->h, NULL, r->buf, len, 0), 0) == 0) {
        mv->ver++;
        mv->wid = 1;
        mv->seq = seq;
        mv->len = len;
        mv->is_none = 0;
    }
    check_model(r, mv, "after put");
}

/* ---- writer-lock contention: futex waits inside put ---------------------------------- */

struct contend {
    struct run *r;
    struct mval *mv;
    _Atomic int locked;
    int lock_rc;
};

static void *lock_holder(void *arg)
{
    struct contend *c = arg;
    void *data = NULL;
    size_t len = 0;
    shmstore_datum_t d;
    long entered = atomic_load(&g_futex_entered);
    c->lock_rc = shmstore_value_lock(c->mv->h, -1, &data, &len, &d);
    if (c->lock_rc != 0) {
        atomic_store(&c->locked, -1);
        return NULL;
    }
    atomic_store(&c->locked, 1);
    /* Hold the lock until the other thread sleeps on it (its futex wait is what this
     * part injects faults into); give up after 2 s in case the library never sleeps. */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (atomic_load(&g_futex_entered) > entered)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= 2) {
            fprintf(stderr, "contention: the blocked put never slept on the futex\n");
            break;
        }
        sched_yield();
    }
    /* Publish the in-place change: writer 2, a new sequence number. */
    uint64_t seq = 0;
    T_CHILD_CHECK(pl_check(data, len, NULL, &seq));
    pl_fill(data, len, 2, 777777);
    T_CHILD_RC(shmstore_value_unlock(c->mv->h), 0);
    return NULL;
}

static void contention(struct run *r, struct mval *mv)
{
    if (mv->h == NULL || mv->ver == 0 || mv->is_none)
        return;
    struct contend c = {r, mv, 0, 0};
    pthread_t th;
    T_CHILD_CHECK(pthread_create(&th, NULL, lock_holder, &c) == 0);
    while (atomic_load(&c.locked) == 0)
        sched_yield();
    int locked = atomic_load(&c.locked) == 1;
    if (!locked)
        CK(r, c.lock_rc, 0);
    /* Blocks on the writer lock until the holder unlocks. */
    uint64_t seq = ++r->next_seq;
    size_t len = 300;
    pl_fill(r->buf, len, 1, seq);
    int rc = CK(r, shmstore_value_put(mv->h, NULL, r->buf, len, 0), 0);
    T_CHILD_CHECK(pthread_join(th, NULL) == 0);
    if (locked) {
        mv->ver++;
        mv->wid = 2;
        mv->seq = 777777;
    }
    if (rc == 0) {
        mv->ver++;
        mv->wid = 1;
        mv->seq = seq;
        mv->len = len;
    }
    check_model(r, mv, "after contended put");
}

/* ---- the workload ------------------------------------------------------------------- */

static int count_alive(const shmstore_proc_info_t *info, void *arg)
{
    if (info->is_alive)
        (*(int *)arg)++;
    return 0;
}

/* grow/<i> holds what the workload last put there (or is gone). */
static void check_grow(struct run *r, shmstore_t *s)
{
    char gname[32];
    for (int i = 0; i < N_GROW; i++) {
        size_t len = 0;
        uint64_t ver = 0, seq = 0;
        uint32_t wid = 0;
        snprintf(gname, sizeof(gname), "grow/%d", i);
        int rc = shmstore_get(s, gname, NULL, r->rbuf, RBUF_CAP, &len, &ver);
        if (r->grow_seq[i] <= 0) {
            /* Never written (creation or put failed) or deleted. */
            T_CHILD_CHECK(rc == -ENOENT || rc == SHMSTORE_ENOVALUE);
            if (r->grow_seq[i] < 0)
                T_CHILD_CHECK(rc == -ENOENT);
            continue;
        }
        uint64_t want = (uint64_t)r->grow_seq[i];
        if (rc != 0 || len != r->grow_len[i] || !pl_check(r->rbuf, len, &wid, &seq) ||
            seq != want) {
            fprintf(stderr, "fault %s at call %ld: %s: rc %d len %zu seq %llu, want len %zu "
                            "seq %llu\n",
                    op_name(r->spec->op), g_f.nth, gname, rc, len, (unsigned long long)seq,
                    r->grow_len[i], (unsigned long long)want);
            T_CHILD_CHECK(!"grow value does not match the model");
        }
    }
}

static void workload(struct run *r)
{
    shmstore_t *s = NULL, *s2 = NULL;
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.capacity = 64 * MIB;
    opt.n_procs = 8;
    opt.n_leases = 64;

    if (CK(r, shmstore_open(r->store, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, &opt, &s), 0) != 0)
        return;
    r->created = 1;
    /* A second attachment of this process, used for reading. */
    if (CK(r, shmstore_open(r->store, 0, NULL, &s2), 0) != 0)
        s2 = NULL;

    for (int i = 0; i < N_VALS - 1; i++) {
        struct mval *mv = &r->m[i];
        if (CK(r, shmstore_value_open(s, mv->name, SHMSTORE_V_CREATE, &mv->h), 0) != 0)
            mv->h = NULL;
        /* The value may exist even if opening failed after creating it: look. */
        shmstore_obj_info_t info;
        int rc = shmstore_info(s, mv->name, &info);
        mv->exists = rc == 0;
    }
    struct mval *a = &r->m[VA], *b = &r->m[VB], *c = &r->m[VC];

    /* Puts of growing sizes: the heap grows, so fallocate runs. */
    static const size_t sizes[] = {8, 100, 4096, 65536, MIB, 3 * MIB};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        do_put(r, a, sizes[i]);
        do_put(r, b, sizes[i] / 2 + 8);
    }

    /* Growth: values of growing sizes make the heap grow step by step; then every other
     * one is deleted and the odd ones are written again into the freed space. */
    size_t gl = 32u << 10;
    char gname[32];
    for (int i = 0; i < N_GROW; i++, gl = gl * 3 / 2) {
        snprintf(gname, sizeof(gname), "grow/%d", i);
        pl_fill(r->buf, gl, 4, (uint64_t)i + 1);
        r->grow_len[i] = gl;
        if (CK(r, shmstore_put(s, gname, NULL, r->buf, gl, 0), 0) == 0)
            r->grow_seq[i] = i + 1;
    }
    for (int i = 0; i < N_GROW; i += 2) {
        snprintf(gname, sizeof(gname), "grow/%d", i);
        int rc = shmstore_delete(s, gname);
        if (rc == -ENOENT)
            continue; /* its creation failed */
        if (CK(r, rc, 0) == 0)
            r->grow_seq[i] = -1; /* deleted */
    }
    for (int i = 1; i < N_GROW; i += 2) {
        snprintf(gname, sizeof(gname), "grow/%d", i);
        pl_fill(r->buf, r->grow_len[i], 4, (uint64_t)i + 100);
        if (CK(r, shmstore_put(s, gname, NULL, r->buf, r->grow_len[i], 0), 0) == 0)
            r->grow_seq[i] = i + 100;
    }
    if (CK(r, shmstore_gc(s, NULL), 0) == 0) {
        int n_alive = 0;
        T_CHILD_RC(shmstore_procs(s, count_alive, &n_alive), 0);
        T_CHILD_CHECK(n_alive == (s2 ? 2 : 1)); /* gc never reclaims a live process */
    }

    /* A view pinned while newer versions are published through the other handle. */
    shmstore_value_t *a2 = NULL;
    if (s2 && a->h && a->ver > 0 &&
        CK(r, shmstore_value_open(s2, a->name, 0, &a2), 0) == 0) {
        shmstore_view_t vw;
        if (CK(r, shmstore_value_view(a2, &vw), 0) == 0) {
            uint64_t seq = 0, seq_after = 0;
            T_CHILD_CHECK(vw.version == a->ver && pl_check(vw.data, vw.len, NULL, &seq) &&
                          seq == a->seq);
            for (int i = 0; i < 5; i++)
                do_put(r, a, 2 * MIB - 1000 * (size_t)i);
            /* The pinned bytes did not change. */
            T_CHILD_CHECK(pl_check(vw.data, vw.len, NULL, &seq_after) && seq_after == seq);
            shmstore_view_release(&vw);
        }
        shmstore_value_close(a2);
    }

    /* Zero-copy put, an abandoned reservation, an in-place update. */
    if (c->h) {
        void *data = NULL;
        uint64_t seq = ++r->next_seq;
        if (CK(r, shmstore_value_reserve(c->h, NULL, 200000, 0, &data), 0) == 0) {
            pl_fill(data, 200000, 1, seq);
            T_CHILD_RC(shmstore_value_commit(c->h), 0);
            c->ver++;
            c->wid = 1;
            c->seq = seq;
            c->len = 200000;
        }
        check_model(r, c, "after reserve/commit");
        if (CK(r, shmstore_value_reserve(c->h, NULL, 5000, 0, &data), 0) == 0) {
            memset(data, 0xab, 5000);
            shmstore_value_abort(c->h);
        }
        check_model(r, c, "after reserve/abort");
        if (c->ver > 0) {
            size_t len = 0;
            shmstore_datum_t d;
            seq = ++r->next_seq;
            if (CK(r, shmstore_value_lock(c->h, 1000000000, &data, &len, &d), 0) == 0) {
                T_CHILD_CHECK(len == c->len);
                pl_fill(data, len, 3, seq);
                T_CHILD_RC(shmstore_value_unlock(c->h), 0);
                c->ver++;
                c->wid = 3;
                c->seq = seq;
            }
            check_model(r, c, "after lock/unlock");
        }
        contention(r, c);
    }

    /* Waits: a bounded wait with nothing new times out (or reports an injected EINTR);
     * an older version returns at once. */
    if (a->h && a->ver > 0) {
        uint64_t ver = 0;
        int eintr_ok = r->spec->op == OP_FUTEX_WAIT || r->spec->op == OP_ANY;
        int rc = shmstore_value_wait(a->h, a->ver, 2000000, &ver);
        if (!(rc == -ETIMEDOUT || (eintr_ok && rc == -EINTR)))
            fprintf(stderr, "fault %s at call %ld: wait returned %d (%s)\n",
                    op_name(r->spec->op), g_f.nth, rc, shmstore_err_name(rc));
        T_CHILD_CHECK(rc == -ETIMEDOUT || (eintr_ok && rc == -EINTR));
        T_CHILD_RC(shmstore_value_wait(a->h, a->ver - 1, 0, &ver), 0);
        T_CHILD_CHECK(ver == a->ver);
        rc = shmstore_value_wait(a->h, a->ver, 1000000, &ver);
        T_CHILD_CHECK(rc == -ETIMEDOUT || (eintr_ok && rc == -EINTR));
    }

    /* Trigger: same data, next version. */
    if (b->h && CK(r, shmstore_value_trigger(b->h), 0) == 0) {
        b->ver++;
        if (b->ver == 1)
            b->is_none = 1;
    }
    check_model(r, b, "after trigger");

    /* Delete and create by name. */
    if (b->exists) {
        int rc = CK(r, shmstore_delete(s, b->name), 0);
        if (rc == 0) {
            b->exists = 0;
            if (b->h)
                T_CHILD_RC(shmstore_value_get(b->h, NULL, r->rbuf, RBUF_CAP, NULL, NULL),
                           -ESTALE);
        }
        shmstore_value_close(b->h);
        b->h = NULL;
    }
    struct mval *dv = &r->m[VD];
    uint64_t seq = ++r->next_seq;
    pl_fill(r->buf, 8192, 1, seq);
    int rc = CK(r, shmstore_put(s, dv->name, NULL, r->buf, 8192, 0), 0);
    int orc = shmstore_value_open(s, dv->name, 0, &dv->h);
    if (orc != -ENOENT)
        CK(r, orc, 0);
    if (orc == 0) {
        dv->exists = 1;
        if (rc == 0) {
            dv->ver = 1;
            dv->wid = 1;
            dv->seq = seq;
            dv->len = 8192;
        }
        check_model(r, dv, "after put by name");
    } else {
        T_CHILD_CHECK(rc != 0); /* a successful put by name leaves the value there */
        dv->h = NULL;
    }
    pl_fill(r->buf, 64, 1, ++r->next_seq);
    if (CK(r, shmstore_put(s, "tmp/e", NULL, r->buf, 64, 0), 0) == 0)
        T_CHILD_RC(shmstore_delete(s, "tmp/e"), 0);

    check_grow(r, s);

    /* Reads through the second attachment agree with the model. */
    for (int i = 0; i < N_VALS; i++) {
        struct mval *mv = &r->m[i];
        if (!s2 || !mv->h)
            continue;
        shmstore_value_t *h2 = NULL;
        if (CK(r, shmstore_value_open(s2, mv->name, 0, &h2), 0) == 0) {
            shmstore_value_t *save = mv->h;
            mv->h = h2;
            check_model(r, mv, "through the second attachment");
            mv->h = save;
            shmstore_value_close(h2);
        }
    }

    for (int i = 0; i < N_VALS; i++) {
        shmstore_value_close(r->m[i].h);
        r->m[i].h = NULL;
    }
    shmstore_close(s2);
    shmstore_close(s);
}

/* ---- one run: fault, workload, then the checks with the real table ------------------ */

struct shared_out {
    long calls[OP__COUNT];
    long injected;
};

static const char *const val_names[N_VALS] = {"a", "dir/b", "c", "d"};

static uint64_t index_blk_size(shmstore_t *s)
{
    uint64_t off = s->hdr->index_off;
    if (!off)
        return 0;
    struct blk_hdr *b = shmstore__blk(s, off);
    T_CHILD_CHECK(b != NULL);
    return b->size & BLK_SIZE_MASK;
}

static int collect(const shmstore_obj_info_t *info, void *arg)
{
    char (*names)[SHMSTORE_NAME_MAX + 1] = arg;
    for (int i = 0; i < 32; i++) {
        if (!names[i][0]) {
            snprintf(names[i], SHMSTORE_NAME_MAX + 1, "%s", info->name);
            return 0;
        }
    }
    return 0;
}

static void *noop_thread(void *arg)
{
    return arg;
}

struct child_args {
    const struct fault_spec *spec;
    long nth;
    char store[SHMSTORE_STORE_NAME_MAX + 1];
    struct shared_out *out;
};

static void run_child(void *arg)
{
    struct child_args *ca = arg;
    struct run r;
    memset(&r, 0, sizeof(r));
    r.spec = ca->spec;
    snprintf(r.store, sizeof(r.store), "%s", ca->store);
    for (int i = 0; i < N_VALS; i++)
        r.m[i].name = val_names[i];
    r.buf = malloc(4 * MIB);
    r.rbuf = malloc(RBUF_CAP);
    T_CHILD_CHECK(r.buf && r.rbuf);

    /* Warm up what the workload's thread allocates once (stack cache), then count. */
    pthread_t th;
    T_CHILD_CHECK(pthread_create(&th, NULL, noop_thread, NULL) == 0);
    pthread_join(th, NULL);
    long fds0 = t_count_fds();

    faults_install(ca->spec->op, ca->nth, ca->spec->err, ca->spec->persistent);
    workload(&r);
    faults_restore();
    for (int i = 0; i < OP__COUNT; i++)
        ca->out->calls[i] = atomic_load(&g_f.calls[i]);
    ca->out->injected = atomic_load(&g_f.injected);

    long fds1 = t_count_fds();
    if (fds1 != fds0)
        fprintf(stderr, "fault %s=%d at call %ld: %ld file descriptors before, %ld after\n",
                op_name(ca->spec->op), ca->spec->err, ca->nth, fds0, fds1);
    T_CHILD_CHECK(fds1 == fds0);

    char path[512];
    struct stat st;
    int exists = stat(t_store_path(path, sizeof(path), r.store, NULL), &st) == 0;
    if (!r.created) {
        if (exists)
            fprintf(stderr, "fault %s=%d at call %ld: failed creation left %s behind\n",
                    op_name(ca->spec->op), ca->spec->err, ca->nth, path);
        T_CHILD_CHECK(!exists);
        return;
    }
    T_CHILD_CHECK(exists);

    /* The store as left by the workload: clean, matching the model, nothing held. */
    shmstore_t *s = NULL;
    T_CHILD_RC(shmstore_open(r.store, 0, NULL, &s), 0);
    char rep[4096];
    rep[0] = '\0';
    int rc = shmstore_check(s, rep, sizeof(rep));
    if (rc != 0)
        fprintf(stderr, "fault %s=%d at call %ld: check: %s\n", op_name(ca->spec->op),
                ca->spec->err, ca->nth, rep);
    T_CHILD_RC(rc, 0);
    for (int i = 0; i < N_VALS; i++) {
        struct mval *mv = &r.m[i];
        shmstore_value_t *h = NULL;
        rc = shmstore_value_open(s, mv->name, 0, &h);
        if (!mv->exists && i != VD) {
            /* b was deleted, or a value never got created. */
            T_CHILD_CHECK(rc == -ENOENT || (rc == 0 && mv->ver == 0));
        }
        if (rc != 0) {
            T_CHILD_CHECK(rc == -ENOENT);
            T_CHILD_CHECK(mv->ver == 0 || !mv->exists);
            continue;
        }
        if (mv->exists) {
            mv->h = h;
            check_model(&r, mv, "after the run");
        }
        uint64_t waiter_bits = 0;
        for (unsigned w = 0; w < 4; w++)
            waiter_bits |= atomic_load(&h->body->waiters[w]);
        if (atomic_load(&h->body->wlock) != 0 || waiter_bits != 0)
            fprintf(stderr, "fault %s=%d at call %ld: value %s left wlock %#x waiter bits %#llx\n",
                    op_name(ca->spec->op), ca->spec->err, ca->nth, mv->name,
                    atomic_load(&h->body->wlock), (unsigned long long)waiter_bits);
        T_CHILD_CHECK(atomic_load(&h->body->wlock) == 0);
        T_CHILD_CHECK(waiter_bits == 0);
        shmstore_value_close(h);
        mv->h = NULL;
    }

    check_grow(&r, s);

    /* Delete everything: only the index block may remain. */
    static char names[32][SHMSTORE_NAME_MAX + 1];
    memset(names, 0, sizeof(names));
    T_CHILD_RC(shmstore_list(s, NULL, collect, names), 0);
    for (int i = 0; i < 32 && names[i][0]; i++)
        T_CHILD_RC(shmstore_delete(s, names[i]), 0);
    T_CHILD_RC(shmstore_gc(s, NULL), 0);
    shmstore_stat_t sst;
    T_CHILD_RC(shmstore_stat(s, &sst), 0);
    uint64_t idx = index_blk_size(s);
    if (sst.used != idx || sst.n_objects != 0)
        fprintf(stderr,
                "fault %s=%d%s at call %ld: after deleting everything: used %llu (index "
                "block %llu), %llu blocks, %llu objects: leaked\n",
                op_name(ca->spec->op), ca->spec->err, ca->spec->persistent ? " persistent" : "",
                ca->nth, (unsigned long long)sst.used, (unsigned long long)idx,
                (unsigned long long)sst.n_blocks, (unsigned long long)sst.n_objects);
    T_CHILD_CHECK(sst.n_objects == 0);
    T_CHILD_CHECK(sst.used == idx);
    rc = shmstore_check(s, rep, sizeof(rep));
    if (rc != 0)
        fprintf(stderr, "check after cleanup: %s\n", rep);
    T_CHILD_RC(rc, 0);
    shmstore_close(s);
    free(r.buf);
    free(r.rbuf);
}

static void fault_loop(const struct fault_spec *spec)
{
    struct shared_out *out = t_shared_alloc(sizeof(*out));
    long n, n_runs = 0, n_injected_runs = 0;
    for (n = 1; n <= N_MAX; n++) {
        struct child_args ca;
        memset(&ca, 0, sizeof(ca));
        ca.spec = spec;
        ca.nth = n;
        ca.out = out;
        t_store_name(ca.store, sizeof(ca.store));
        memset(out, 0, sizeof(*out));
        int st = t_wait_child(t_fork(run_child, &ca), RUN_TIMEOUT_MS);
        (void)shmstore_unlink(ca.store, NULL);
        n_runs++;
        if (st != 0) {
            print_message("fault %s=%d%s at call %ld: run %s (status %d)\n",
                          op_name(spec->op), spec->err, spec->persistent ? " (persistent)" : "",
                          n, st < 0 ? "hung (timeout)" : st > 128 ? "crashed" : "failed", st);
            fail();
        }
        if (out->injected == 0)
            break; /* the workload no longer reaches call n: every call was covered */
        n_injected_runs++;
    }
    assert_true(n <= N_MAX);
    print_message("[ fault    ] %-12s %-10s %s: %ld runs, faults injected in %ld\n",
                  op_name(spec->op), spec->op == OP_ANY ? "(per op)" : strerrorname_np(-spec->err),
                  spec->persistent ? "persistent" : "once", n_runs, n_injected_runs);
    t_shared_free(out, sizeof(*out));
}

/* ---- the tests ---------------------------------------------------------------------- */

static void test_fault_fallocate_enospc(void **state)
{
    (void)state;
    static const struct fault_spec once = {OP_FALLOCATE, -ENOSPC, 0, EXP_ENOSPC};
    static const struct fault_spec always = {OP_FALLOCATE, -ENOSPC, 1, EXP_ENOSPC};
    fault_loop(&once);
    fault_loop(&always);
}

static void test_fault_futex_wait_eintr(void **state)
{
    (void)state;
    static const struct fault_spec once = {OP_FUTEX_WAIT, -EINTR, 0, EXP_NONE};
    static const struct fault_spec always = {OP_FUTEX_WAIT, -EINTR, 1, EXP_NONE};
    fault_loop(&once);
    fault_loop(&always);
}

static void test_fault_open_and_mmap(void **state)
{
    (void)state;
    static const struct fault_spec specs[] = {
        {OP_OPEN, -EMFILE, 0, EXP_ANY_NEG},      {OP_OPEN, -ENOMEM, 0, EXP_ANY_NEG},
        {OP_MMAP, -ENOMEM, 0, EXP_ANY_NEG},      {OP_MMAP, -ENOMEM, 1, EXP_ANY_NEG},
        {OP_FTRUNCATE, -ENOSPC, 0, EXP_ANY_NEG}, {OP_FSTAT, -EIO, 0, EXP_ANY_NEG},
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        fault_loop(&specs[i]);
}

static void test_fault_any_syscall(void **state)
{
    (void)state;
    /* SQLite's "fail the Nth I/O of any kind": every syscall the workload makes, in
     * order, each failing with an error typical of it (see any_err). */
    static const struct fault_spec once = {OP_ANY, 0, 0, EXP_ANY_NEG};
    static const struct fault_spec always = {OP_ANY, 0, 1, EXP_ANY_NEG};
    fault_loop(&once);
    fault_loop(&always);
}

static void test_fault_locks_and_best_effort(void **state)
{
    (void)state;
    static const struct fault_spec specs[] = {
        /* OFD locks: attaching may fail; nothing else may break. */
        {OP_OFD_SETLK, -ENOLCK, 0, EXP_ANY_NEG},
        /* Prefaulting and statvfs are best effort / informational: nothing may fail. */
        {OP_PREFAULT, -EINVAL, 1, EXP_NONE},
        {OP_STATVFS, -EIO, 1, EXP_ANY_NEG},
        /* Reading another slot's lock fails: treated as alive, nothing may fail. */
        {OP_OFD_GETLK, -EIO, 0, EXP_NONE},
        {OP_OFD_GETLK, -EIO, 1, EXP_NONE},
        /* close() failing must not leak anything either. */
        {OP_CLOSE, -EIO, 0, EXP_NONE},
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        fault_loop(&specs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_fallocate_enospc),
        cmocka_unit_test(test_fault_futex_wait_eintr),
        cmocka_unit_test(test_fault_open_and_mmap),
        cmocka_unit_test(test_fault_locks_and_best_effort),
        cmocka_unit_test(test_fault_any_syscall),
    };
    /* SHMSTORE_TEST_FILTER=<glob> runs only the matching tests (for replaying one). */
    if (getenv("SHMSTORE_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHMSTORE_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
