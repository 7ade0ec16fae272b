/* store.c - creating, opening, validating and closing a store; its metadata mutex; fork.
 *
 * Theory of operation
 * - Creation publishes last: the file is made with O_CREAT|O_EXCL|O_NOFOLLOW (mode 0600,
 *   or 0660 for a group), sized with ftruncate (sparse: nothing is committed yet), its
 *   header and process table committed with fallocate, initialised, and only then is the
 *   magic stored with release. An opener that finds magic 0 waits briefly for the
 *   creator; if the creator died, the store stays unusable (SHMSTORE_ECORRUPT) and
 *   `shmstore rm` removes it.
 * - Opening validates every header field against the file before any other read.
 * - The robust process-shared mutex guards the allocator and the index. When its owner
 *   dies, the next locker gets EOWNERDEAD and repairs (check.c) before marking it
 *   consistent: this is the one place that handles a dead owner.
 * - fork(): an atfork handler bumps shmstore__fork_gen in the child and closes the
 *   child's copies of every store descriptor, so that the parent's slot lock dies with
 *   the parent. Handles opened before the fork return SHMSTORE_EFORK in the child.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_DIR "/dev/shm"
#define FILE_PREFIX "shmstore."
#define DEFAULT_SLOTS 64u
#define DEFAULT_LEASES 1024u
#define MIN_HEAP (256u * 1024u)
#define INIT_WAIT_NS (2ull * 1000 * 1000 * 1000)
#define MUTEX_WAIT_S 10

_Atomic uint64_t shmstore__fork_gen;

/* Every open store, so the fork child can close their descriptors. */
static pthread_mutex_t g_stores_mu = PTHREAD_MUTEX_INITIALIZER;
static struct store_ref {
    shmstore_t *s;
    struct store_ref *next;
} *g_stores;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_stores_mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_stores_mu);
}

static void atfork_child(void)
{
    atomic_fetch_add_explicit(&shmstore__fork_gen, 1, memory_order_relaxed);
    for (struct store_ref *r = g_stores; r; r = r->next) {
        if (r->s->fd >= 0) {
            close(r->s->fd); /* async-signal-safe; the descriptions stay the parent's */
            r->s->fd = -1;
        }
        /* Another thread may have held it at fork: the child has only this thread. */
        pthread_mutex_init(&r->s->lease_mu, NULL);
        pthread_mutex_init(&r->s->wait_mu, NULL);
    }
    pthread_mutex_unlock(&g_stores_mu);
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void stores_add(struct store_ref *ref)
{
    pthread_mutex_lock(&g_stores_mu);
    ref->next = g_stores;
    g_stores = ref;
    pthread_mutex_unlock(&g_stores_mu);
}

static void stores_remove(shmstore_t *s)
{
    pthread_mutex_lock(&g_stores_mu);
    for (struct store_ref **p = &g_stores; *p; p = &(*p)->next) {
        if ((*p)->s == s) {
            struct store_ref *dead = *p;
            *p = dead->next;
            free(dead);
            break;
        }
    }
    pthread_mutex_unlock(&g_stores_mu);
}

int shmstore__forked(const shmstore_t *s)
{
    return shmstore__seterr(SHMSTORE_EFORK,
                            "store '%s' was opened before fork(); open it again in the child",
                            s->name);
}

/* ---- names and paths --------------------------------------------------------------- */

static const char *default_dir(const char *dir)
{
    if (dir && *dir)
        return dir;
    const char *env = getenv("SHMSTORE_DIR");
    return env && *env ? env : DEFAULT_DIR;
}

static int store_path(const char *name, const char *dir, char *buf, size_t cap)
{
    size_t n = name ? strnlen(name, SHMSTORE_STORE_NAME_MAX + 1) : 0;
    if (n == 0 || n > SHMSTORE_STORE_NAME_MAX || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return shmstore__seterr(-EINVAL,
                                "store name '%.40s' is invalid: 1..%u bytes, without '/'",
                                name ? name : "(null)", SHMSTORE_STORE_NAME_MAX);
    int w = snprintf(buf, cap, "%s/" FILE_PREFIX "%s", default_dir(dir), name);
    if (w < 0 || (size_t)w >= cap)
        return shmstore__seterr(-ENAMETOOLONG, "store path for '%s' is too long", name);
    return 0;
}

/* ---- the metadata mutex ------------------------------------------------------------ */

int shmstore__lock(shmstore_t *s)
{
    /* Critical sections are short (allocator, index): a lock held this long has an owner
     * that is stuck, or a forged owner in a corrupt store. Fail instead of hanging. */
    uint64_t until = shmstore__os_now_real() + MUTEX_WAIT_S * 1000000000ull;
    struct timespec deadline = {.tv_sec = (time_t)(until / 1000000000u),
                                .tv_nsec = (long)(until % 1000000000u)};
    int r = pthread_mutex_timedlock(&s->hdr->mutex, &deadline);
    if (r == 0)
        return 0;
    if (r == ETIMEDOUT)
        return shmstore__seterr(-EDEADLK, "store '%s': its metadata lock has been held for %d s; "
                                "a process is stuck inside the library, or the store is corrupt "
                                "(`shmstore check %s`)", s->name, MUTEX_WAIT_S, s->name);
    if (r == EOWNERDEAD) {
        /* The one place a dead owner is handled: check and repair, then consistent (even
         * when repair fails, so that check and gc can still run and say what is wrong). */
        s->hdr->n_repairs++;
        int rr = shmstore__repair_locked(s, NULL);
        pthread_mutex_consistent(&s->hdr->mutex);
        if (rr < 0) {
            pthread_mutex_unlock(&s->hdr->mutex);
            return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': a process died while changing "
                                    "its metadata and the repair failed; run `shmstore check %s`",
                                    s->name, s->name);
        }
        return 0;
    }
    return shmstore__seterr(r == ENOTRECOVERABLE ? SHMSTORE_ECORRUPT : -r,
                            "store '%s': metadata lock unusable; run `shmstore gc`", s->name);
}

void shmstore__unlock(shmstore_t *s)
{
    pthread_mutex_unlock(&s->hdr->mutex);
}

/* ---- create / open ------------------------------------------------------------------ */

static uint64_t round_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static uint32_t slot_size_for(uint32_t n_leases)
{
    return (uint32_t)round_up(sizeof(struct proc_slot) + (uint64_t)n_leases * sizeof(struct lease), 64);
}

static uint64_t heap_off_for(uint32_t n_slots, uint32_t slot_size)
{
    return round_up(STORE_HDR_SIZE + (uint64_t)n_slots * slot_size, PAGE_SIZE_MIN);
}

static void copy_geometry(shmstore_t *s)
{
    const struct store_hdr *h = s->hdr;
    s->g.capacity = h->capacity;
    s->g.heap_off = h->heap_off;
    s->g.slots_off = h->slots_off;
    s->g.n_slots = h->n_slots;
    s->g.n_leases = h->n_leases;
    s->g.slot_size = h->slot_size;
}

static int init_store(shmstore_t *s, const shmstore_options_t *opt, uint64_t cap)
{
    uint32_t n_slots = opt && opt->n_procs ? opt->n_procs : DEFAULT_SLOTS;
    uint32_t n_leases = opt && opt->n_leases ? opt->n_leases : DEFAULT_LEASES;
    if (n_slots > SHMSTORE_PROCS_MAX || n_leases < 16 || n_leases > (1u << 20) ||
        (n_leases & (n_leases - 1)))
        return shmstore__seterr(-EINVAL, "n_procs must be 1..%u and n_leases a power of two "
                                         "in 16..2^20", SHMSTORE_PROCS_MAX);
    uint32_t slot_size = slot_size_for(n_leases);
    uint64_t heap_off = heap_off_for(n_slots, slot_size);
    if (cap < heap_off + MIN_HEAP)
        return shmstore__seterr(-EINVAL, "capacity %" PRIu64 " is too small: at least %" PRIu64
                                " bytes", cap, heap_off + MIN_HEAP);
    int r = shmstore__os.ftruncate(s->fd, cap);
    if (r < 0)
        return shmstore__seterr(r, "store '%s': cannot size the file to %" PRIu64 " bytes",
                                s->name, cap);
    r = shmstore__os.fallocate(s->fd, 0, heap_off);
    if (r < 0)
        return shmstore__seterr(r, "store '%s': cannot commit %" PRIu64 " bytes in %s; "
                                "free memory there or grow it (mount -o remount,size=8G /dev/shm)",
                                s->name, heap_off, s->dir);
    void *p;
    r = shmstore__os.mmap_shared(s->fd, cap, &p);
    if (r < 0)
        return shmstore__seterr(r, "store '%s': cannot map %" PRIu64 " bytes", s->name, cap);
    s->hdr = p;
    s->map_len = cap;
    struct store_hdr *h = s->hdr;
    h->layout_version = LAYOUT_VERSION;
    h->hdr_size = STORE_HDR_SIZE;
    h->blk_hdr_size = BLK_HDR_SIZE;
    h->slot_size = slot_size;
    h->n_slots = n_slots;
    h->n_leases = n_leases;
    h->capacity = cap;
    h->uid = (uint32_t)geteuid();
    h->gid = opt && opt->group > 0 ? (uint32_t)opt->group : UINT32_MAX;
    h->ctime_ns = shmstore__os_now_real();
    h->slots_off = STORE_HDR_SIZE;
    h->heap_off = heap_off;
    h->next_gen = 1;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&h->mutex, &ma);
    pthread_mutexattr_destroy(&ma);
    copy_geometry(s);
    shmstore__alloc_init(s);
    /* release: everything above is visible before an opener sees the magic */
    atomic_store_explicit(&h->magic, STORE_MAGIC, memory_order_release);
    return 0;
}

/* Validate the header of a mapped store before any other read. */
static int validate(shmstore_t *s, uint64_t file_size)
{
    struct store_hdr *h = s->hdr;
    uint64_t deadline = shmstore__os_now_mono() + INIT_WAIT_NS;
    uint64_t magic;
    while ((magic = atomic_load_explicit(&h->magic, memory_order_acquire)) == 0) {
        if (shmstore__os_now_mono() > deadline)
            return shmstore__seterr(SHMSTORE_ECORRUPT,
                                    "store '%s' was never finished by its creator; remove it "
                                    "with `shmstore rm %s`", s->name, s->name);
        shmstore__os_yield();
    }
    if (magic != STORE_MAGIC)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "%s/" FILE_PREFIX "%s is not a shmstore store "
                                "(bad magic)", s->dir, s->name);
    if (h->layout_version != LAYOUT_VERSION)
        return shmstore__seterr(SHMSTORE_EVERSION, "store '%s' has layout version %u; this "
                                "library reads version %u", s->name, h->layout_version,
                                LAYOUT_VERSION);
    uint64_t top = atomic_load_explicit(&h->heap_top, memory_order_relaxed);
    if (h->hdr_size != STORE_HDR_SIZE || h->blk_hdr_size != BLK_HDR_SIZE ||
        h->n_slots == 0 || h->n_slots > SHMSTORE_PROCS_MAX || h->n_leases < 16 ||
        h->n_leases > (1u << 20) || (h->n_leases & (h->n_leases - 1)) ||
        h->slot_size != slot_size_for(h->n_leases) || h->slots_off != STORE_HDR_SIZE ||
        h->heap_off != heap_off_for(h->n_slots, h->slot_size) || h->capacity != file_size ||
        h->heap_off >= h->capacity || top < h->heap_off || top > h->capacity ||
        top % BLK_ALIGN || (h->last_off && (h->last_off < h->heap_off || h->last_off >= top)))
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': header sizes or offsets are "
                                "inconsistent with the file (%" PRIu64 " bytes); run "
                                "`shmstore check %s`", s->name, file_size, s->name);
    return 0;
}

static void unmap_close(shmstore_t *s)
{
    if (s->hdr)
        shmstore__os.munmap(s->hdr, s->map_len);
    s->hdr = NULL;
    if (s->fd >= 0)
        shmstore__os.close(s->fd);
    s->fd = -1;
}

/* Trade the descriptor the store was mapped through for a new description of the same
 * inode, never mapped, reopened through /proc/self/fd so that the path cannot be swapped
 * in between. The slot locks live on it (proc.c says why); the mapping keeps its own
 * reference to the old description. Still one descriptor per store. */
static int reopen_unmapped(shmstore_t *s)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
    int r = shmstore__os.open(path, O_RDWR, 0);
    if (r < 0)
        return shmstore__seterr(r, "store '%s': cannot reopen its descriptor (is /proc "
                                "mounted?)", s->name);
    shmstore__os.close(s->fd);
    s->fd = r;
    return 0;
}

SHMSTORE_API int shmstore_open(const char *name, unsigned flags, const shmstore_options_t *opt,
                               shmstore_t **out)
{
    char path[4096 + 256];
    shmstore__clearerr();
    pthread_once(&g_atfork_once, atfork_register);
    int r = store_path(name, opt ? opt->dir : NULL, path, sizeof(path));
    if (r < 0)
        return r;
    if (!out || (flags & ~(SHMSTORE_O_CREATE | SHMSTORE_O_EXCL | SHMSTORE_O_NORECOVER)))
        return shmstore__seterr(-EINVAL, "shmstore_open: bad flags or NULL out");
    shmstore_t *s = calloc(1, sizeof(*s));
    struct store_ref *ref = malloc(sizeof(*ref));
    if (!s || !ref) {
        free(s);
        free(ref);
        return shmstore__seterr(-ENOMEM, "out of process memory");
    }
    s->fd = -1;
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->dir, sizeof(s->dir), "%s", default_dir(opt ? opt->dir : NULL));
    pthread_mutex_init(&s->lease_mu, NULL);
    pthread_mutex_init(&s->wait_mu, NULL);
    atomic_init(&s->refs, 1);
    s->fork_gen = atomic_load_explicit(&shmstore__fork_gen, memory_order_relaxed);

    /* Known to the fork handler before any lock is taken on its descriptor. */
    ref->s = s;
    stores_add(ref);
    bool created = false;
    if (flags & SHMSTORE_O_CREATE) {
        unsigned mode = opt && opt->group > 0 ? 0660 : 0600;
        r = shmstore__os.open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
        if (r >= 0) {
            s->fd = r;
            created = true;
            if (opt && opt->group > 0) {
                r = shmstore__os.fchown_group(s->fd, (uint32_t)opt->group);
                if (r < 0) {
                    shmstore__seterr(r, "store '%s': cannot give it to group %" PRId64, name,
                                     opt->group);
                    goto fail;
                }
            }
            uint64_t cap = opt ? opt->capacity : 0;
            if (cap == 0) {
                uint64_t total = 0, avail = 0;
                r = shmstore__os.statvfs_size(s->dir, &total, &avail);
                if (r < 0) {
                    shmstore__seterr(r, "cannot read the size of %s", s->dir);
                    goto fail;
                }
                cap = total;
            }
            r = init_store(s, opt, round_up(cap, PAGE_SIZE_MIN));
            if (r < 0)
                goto fail;
        } else if (r != -EEXIST || (flags & SHMSTORE_O_EXCL)) {
            shmstore__seterr(r, "cannot create store '%s' in %s", name, s->dir);
            goto fail;
        }
    }
    if (!created) {
        r = shmstore__os.open(path, O_RDWR | O_NOFOLLOW, 0);
        if (r < 0) {
            shmstore__seterr(r, r == -ENOENT ? "no store '%s' in %s; create it first"
                                             : "cannot open store '%s' in %s", name, s->dir);
            goto fail;
        }
        s->fd = r;
        uint32_t uid, gid;
        uint64_t size = 0;
        r = shmstore__os.fstat_owner(s->fd, &uid, &gid, &size);
        if (r < 0)
            goto fail;
        if (uid != (uint32_t)geteuid() && geteuid() != 0 && uid != 0) {
            /* Another user's store: allowed only if it was created for a group. */
            if (size < STORE_HDR_SIZE) {
                r = shmstore__seterr(SHMSTORE_EOWNER, "store '%s' belongs to uid %u", name, uid);
                goto fail;
            }
        }
        for (uint64_t deadline = shmstore__os_now_mono() + INIT_WAIT_NS; size < STORE_HDR_SIZE;) {
            /* The creator has not sized the file yet. */
            if (shmstore__os_now_mono() > deadline) {
                r = shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s' is empty (its creator died?); "
                                     "remove it with `shmstore rm %s`", name, name);
                goto fail;
            }
            shmstore__os_yield();
            shmstore__os.fstat_owner(s->fd, &uid, &gid, &size);
        }
        void *p;
        r = shmstore__os.mmap_shared(s->fd, size, &p);
        if (r < 0) {
            shmstore__seterr(r, "store '%s': cannot map %" PRIu64 " bytes", name, size);
            goto fail;
        }
        s->hdr = p;
        s->map_len = size;
        r = validate(s, size);
        if (r < 0)
            goto fail;
        copy_geometry(s);
        if (uid != (uint32_t)geteuid() && geteuid() != 0 && s->hdr->gid == UINT32_MAX) {
            r = shmstore__seterr(SHMSTORE_EOWNER, "store '%s' belongs to uid %u and is not shared "
                                 "with a group", name, uid);
            goto fail;
        }
    }
    r = reopen_unmapped(s);
    if (r < 0)
        goto fail;
    r = shmstore__proc_attach(s, !(flags & SHMSTORE_O_NORECOVER));
    if (r < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    stores_remove(s); /* frees ref */
    unmap_close(s);
    if (created)
        shmstore__os.unlink(path);
    pthread_mutex_destroy(&s->lease_mu);
    pthread_mutex_destroy(&s->wait_mu);
    free(s);
    return r;
}

void shmstore__store_ref(shmstore_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void shmstore__store_unref(shmstore_t *s)
{
    /* acq_rel: the last owner sees every other owner's writes before freeing */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    unmap_close(s);
    pthread_mutex_destroy(&s->lease_mu);
    pthread_mutex_destroy(&s->wait_mu);
    free(s);
}

SHMSTORE_API void shmstore_close(shmstore_t *s)
{
    if (!s)
        return;
    stores_remove(s);
    /* Views and value handles may outlive the close: they hold references to `s` and,
     * seeing is_closed, only drop them (their leases go with our slot right here). */
    pthread_mutex_lock(&s->lease_mu);
    s->is_closed = true;
    pthread_mutex_unlock(&s->lease_mu);
    /* In a fork child the slot is the parent's: leave it alone. */
    if (shmstore__check_fork(s) == 0 && s->fd >= 0)
        shmstore__proc_detach(s);
    shmstore__clearerr();
    /* The descriptor goes now; the mapping stays until the last handle or view is gone, so
     * that a thread still inside the library never touches unmapped memory. */
    if (s->fd >= 0)
        shmstore__os.close(s->fd);
    s->fd = -1;
    shmstore__store_unref(s);
}

SHMSTORE_API int shmstore_unlink(const char *name, const char *dir)
{
    char path[4096 + 256];
    int r = store_path(name, dir, path, sizeof(path));
    if (r < 0)
        return r;
    r = shmstore__os.unlink(path);
    if (r < 0)
        return shmstore__seterr(r, "cannot remove store '%s' from %s", name, default_dir(dir));
    return 0;
}

SHMSTORE_API const char *shmstore_name(const shmstore_t *s)
{
    return s->name;
}

SHMSTORE_API const char *shmstore_dir(const shmstore_t *s)
{
    return s->dir;
}

SHMSTORE_API int shmstore_list_stores(const char *dir, int (*fn)(const char *, void *), void *arg)
{
    DIR *d = opendir(default_dir(dir));
    if (!d)
        return shmstore__seterr(-errno, "cannot read %s", default_dir(dir));
    int r = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, FILE_PREFIX, strlen(FILE_PREFIX)) != 0 ||
            !e->d_name[strlen(FILE_PREFIX)])
            continue;
        r = fn(e->d_name + strlen(FILE_PREFIX), arg);
        if (r)
            break;
    }
    closedir(d);
    return r;
}

SHMSTORE_API int shmstore_stat(shmstore_t *s, shmstore_stat_t *out)
{
    int r = shmstore__check_fork(s);
    if (r < 0 || (r = shmstore__lock(s)) < 0)
        return r;
    struct store_hdr *h = s->hdr;
    shmstore_stat_t st = {
        .capacity = s->g.capacity,
        .committed = atomic_load_explicit(&h->heap_top, memory_order_relaxed),
        .used = h->used_bytes,
        .n_blocks = h->n_blocks,
        .n_objects = h->n_objects,
        .n_slots = s->g.n_slots,
        .layout_version = h->layout_version,
        .uid = h->uid,
        .ctime_ns = h->ctime_ns,
    };
    shmstore__unlock(s);
    for (uint32_t i = 0; i < s->g.n_slots; i++)
        if (atomic_load_explicit(&shmstore__proc_slot(s, i)->state, memory_order_relaxed) ==
                SLOT_LIVE &&
            shmstore__proc_is_alive(s, i))
            st.n_procs++;
    *out = st;
    return 0;
}

/* ---- objects: list, info, delete ---------------------------------------------------- */

void shmstore__obj_info(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->name, o->name, o->name_len);
    out->kind = o->kind;
    out->is_sealed = !!(atomic_load_explicit(&o->flags, memory_order_relaxed) & OBJ_F_SEALED);
    out->footprint = shmstore__blk_footprint(s, shmstore__off(s, o) - BLK_HDR_SIZE);
    const struct shmstore__kind_ops *k = shmstore__kind(o->kind);
    k->info(s, o, out);
    /* Sleepers of every wait queue of the object, each process once. */
    uint64_t any[PIN_WORDS] = {0};
    _Atomic uint64_t *m;
    for (unsigned which = 0; k->waiters && (m = k->waiters(o, which)) != NULL; which++)
        for (unsigned i = 0; i < PIN_WORDS; i++)
            any[i] |= atomic_load_explicit(&m[i], memory_order_relaxed);
    for (unsigned i = 0; i < PIN_WORDS; i++)
        out->n_waiting += (uint32_t)__builtin_popcountll(any[i]);
}

uint64_t shmstore__blk_footprint(const shmstore_t *s, uint64_t off)
{
    struct blk_hdr *b = off ? shmstore__blk(s, off) : NULL;
    return b ? shmstore__blk_payload_cap(b) + BLK_HDR_SIZE : 0;
}

/* Mutex held: the object owning name[0..len) as one of its parts (kind op sub_info),
 * the nearest first: 0 with its offset, the part described in *out (may be NULL), or
 * the kind's -EBUSY; -ENOENT when none does. */
static int owner_find(shmstore_t *s, const char *name, size_t len, uint64_t *off,
                      shmstore_obj_info_t *out)
{
    shmstore_obj_info_t scratch;
    for (size_t k = len; k-- > 1;) {
        if (name[k] != '/' || shmstore__index_find(s, name, k, off) < 0)
            continue;
        struct obj_hdr *o = shmstore__obj(s, *off);
        const struct shmstore__kind_ops *ops = o ? shmstore__kind(o->kind) : NULL;
        char rest[SHMSTORE_NAME_MAX + 1];
        if (!ops || !ops->sub_info)
            continue;
        memcpy(rest, name + k + 1, len - k - 1);
        rest[len - k - 1] = '\0';
        int r = ops->sub_info(s, o, rest, out ? out : &scratch);
        if (r != -ENOENT)
            return r;
    }
    return -ENOENT;
}

int shmstore__name_free(shmstore_t *s, const char *name, size_t len)
{
    uint64_t off;
    if (shmstore__index_find(s, name, len, &off) == 0)
        return shmstore__seterr(-EEXIST, "object '%.*s' already exists in store '%s'", (int)len,
                                name, s->name);
    if (owner_find(s, name, len, &off, NULL) != -ENOENT) {
        struct obj_hdr *o = shmstore__obj(s, off);
        return shmstore__seterr(-EEXIST, "'%.*s' is a member of %s '%.*s' in store '%s'", (int)len,
                                name, shmstore__kind(o->kind)->name, (int)o->name_len, o->name,
                                s->name);
    }
    return 0;
}

/* Mutex held: make the object `name` of `kind` (see shmstore__obj_open). */
static int obj_create_locked(shmstore_t *s, const char *name, size_t len, uint32_t kind,
                             uint64_t body_len, int (*init)(shmstore_t *, struct obj_hdr *, void *),
                             void *arg, uint64_t *off_out)
{
    struct store_hdr *h = s->hdr;
    uint64_t off, gen = h->next_gen;
    int r = shmstore__name_free(s, name, len);
    if (r < 0 || (r = shmstore__alloc(s, sizeof(struct obj_hdr) + body_len, BLK_TAG_OBJ, gen, &off)) < 0)
        return r;
    struct obj_hdr *o = (struct obj_hdr *)((char *)h + off + BLK_HDR_SIZE);
    memset(o, 0, sizeof(*o) + body_len);
    o->magic = OBJ_MAGIC;
    o->kind = kind;
    o->gen = gen;
    o->name_len = (uint32_t)len;
    memcpy(o->name, name, len);
    o->hash = shmstore__hash(name, len);
    o->ctime_ns = shmstore__os_now_real();
    /* The generation is taken before the object is reachable: a crash never reuses one.
     * A crash before the insert leaves an unreachable block, which repair frees. */
    h->next_gen++;
    if ((init && (r = init(s, o, arg)) < 0) || (r = shmstore__index_insert(s, o->hash, off)) < 0) {
        shmstore__free(s, off);
        return r;
    }
    h->n_objects++;
    *off_out = off;
    return 0;
}

int shmstore__obj_open(shmstore_t *s, const char *name, uint32_t kind, bool create, bool excl,
                       uint64_t body_len, int (*init)(shmstore_t *, struct obj_hdr *, void *),
                       void *arg, uint64_t *off_out, bool *created)
{
    size_t len;
    uint64_t off;
    const char *kname = shmstore__kind(kind)->name;
    bool made = false;
    int r = shmstore__name_check(name, &len);
    if (r < 0 || (r = shmstore__lock(s)) < 0)
        return r;
    r = shmstore__index_find(s, name, len, &off);
    if (r == -ENOENT && create) {
        r = obj_create_locked(s, name, len, kind, body_len, init, arg, &off);
        made = r == 0;
    } else if (r == 0 && create && excl) {
        r = shmstore__seterr(-EEXIST, "object '%s' already exists in store '%s'", name, s->name);
    } else if (r == -ENOENT) {
        shmstore__seterr(r, "no %s '%s' in store '%s'", kname, name, s->name);
    }
    struct obj_hdr *o = r == 0 ? shmstore__obj(s, off) : NULL;
    if (r == 0 && o->kind != kind)
        r = shmstore__seterr(SHMSTORE_EKIND, "object '%s' is a %s, not a %s", name,
                             shmstore__kind(o->kind)->name, kname);
    if (r == 0)
        r = shmstore__pin(s, off, NULL); /* keeps the header alive while the handle exists */
    shmstore__unlock(s);
    if (r == 0) {
        *off_out = off;
        if (created)
            *created = made;
    }
    return r;
}

struct list_ctx {
    const char *prefix;
    size_t prefix_len;
    int (*fn)(const shmstore_obj_info_t *, void *);
    void *arg;
};

static int list_one(shmstore_t *s, uint64_t off, void *arg)
{
    struct list_ctx *c = arg;
    struct obj_hdr *o = shmstore__obj(s, off);
    if (!o)
        return SHMSTORE_ECORRUPT;
    const struct shmstore__kind_ops *k = shmstore__kind(o->kind);
    bool is_under = o->name_len >= c->prefix_len && memcmp(o->name, c->prefix, c->prefix_len) == 0;
    /* The prefix reaches into the object's parts ("set/b" lists the members "set/b/..."). */
    bool is_inside = !is_under && o->name_len < c->prefix_len &&
                     memcmp(o->name, c->prefix, o->name_len) == 0 && c->prefix[o->name_len] == '/';
    int r = 0;
    if (is_under) {
        shmstore_obj_info_t info;
        shmstore__obj_info(s, o, &info);
        r = c->fn(&info, c->arg);
    }
    if (r == 0 && (is_under || is_inside) && k && k->sub_list)
        r = k->sub_list(s, o, c->prefix, c->prefix_len, c->fn, c->arg);
    return r;
}

SHMSTORE_API int shmstore_list(shmstore_t *s, const char *prefix,
                               int (*fn)(const shmstore_obj_info_t *, void *), void *arg)
{
    int r = shmstore__check_fork(s);
    if (r < 0 || (r = shmstore__lock(s)) < 0)
        return r;
    struct list_ctx c = {prefix ? prefix : "", prefix ? strlen(prefix) : 0, fn, arg};
    r = shmstore__index_foreach(s, list_one, &c);
    shmstore__unlock(s);
    return r;
}

SHMSTORE_API int shmstore_info(shmstore_t *s, const char *name, shmstore_obj_info_t *out)
{
    size_t len;
    uint64_t off;
    int r = shmstore__check_fork(s);
    if (r < 0 || (r = shmstore__name_check(name, &len)) < 0 || (r = shmstore__lock(s)) < 0)
        return r;
    r = shmstore__index_find(s, name, len, &off);
    if (r == 0)
        shmstore__obj_info(s, shmstore__obj(s, off), out);
    else if (r == -ENOENT && (r = owner_find(s, name, len, &off, out)) != 0)
        r = shmstore__seterr(-ENOENT, "no object '%s' in store '%s'", name, s->name);
    shmstore__unlock(s);
    return r;
}

SHMSTORE_API int shmstore_delete(shmstore_t *s, const char *name)
{
    size_t len;
    uint64_t off, gen = 0;
    uint32_t kind = 0;
    int r = shmstore__check_fork(s);
    if (r < 0 || (r = shmstore__name_check(name, &len)) < 0 || (r = shmstore__lock(s)) < 0)
        return r;
    r = shmstore__index_find(s, name, len, &off);
    if (r == 0) {
        gen = shmstore__obj(s, off)->gen;
        kind = shmstore__obj(s, off)->kind;
        r = shmstore__pin(s, off, NULL); /* the header outlives the deletion until we unpin */
    } else if (r == -ENOENT && owner_find(s, name, len, &off, NULL) != -ENOENT) {
        struct obj_hdr *o = shmstore__obj(s, off);
        r = shmstore__seterr(-EPERM, "'%s' is a member of %s '%.*s' in store '%s', which is "
                             "removed whole (delete '%.*s')", name, shmstore__kind(o->kind)->name,
                             (int)o->name_len, o->name, s->name, (int)o->name_len, o->name);
    } else if (r == -ENOENT) {
        shmstore__seterr(r, "no object '%s' in store '%s'", name, s->name);
    }
    shmstore__unlock(s);
    if (r < 0)
        return r;
    /* The kind deletes under its own lock if it has one (lock order: kind lock, then
     * mutex). The kind is the one read under the mutex: a generation names one object. */
    r = shmstore__kind(kind)->del(s, off, gen);
    shmstore__unpin(s, off);
    return r;
}
