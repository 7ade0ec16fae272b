/* value.c - values: latest-value registers with copy, zero-copy views and waits.
 *
 * Theory of operation
 * - A value owns up to VAL_ROT version blocks (rot[]). `head` packs the current version
 *   number and the rotation index holding it: version << 8 | index, published with one
 *   atomic store. Version 0 (head 0) means "never written".
 * - Each version block's `seq` is 2*version while it holds that version, odd while a
 *   writer fills it. The writer never writes the current block: it takes the next
 *   rotation block after the current one (so the block overwritten is the oldest), marks
 *   it odd, checks that no reader pins it, fills it, sets seq = 2*version and publishes
 *   head. A block that is pinned is skipped; if every candidate is pinned, a fresh block
 *   replaces one and the pinned one becomes ORPHAN (freed by its last reader).
 * - Readers never write shared memory to copy (`get`): they read head, the block's seq,
 *   copy, and re-read seq (a seqlock); a changed seq means the writer reused the block
 *   and the copy is retried. Views pin the block (proc.c) and then check that seq is
 *   still 2*version: the writer's "mark odd, then read pins" and the reader's "set pin,
 *   then read seq" are both seq_cst, so one of them always sees the other.
 * - Writers are serialized by `wlock` (0, or owner slot + 1, | WLOCK_WAITERS). A writer
 *   records the lock in its process slot before taking it; if it dies, recovery (or a
 *   waiter whose wait times out on a dead owner) releases it. A half-written block is
 *   odd and not current, so no reader ever sees it; the next writer reuses it.
 * - Notification: `fseq` is the futex word, bumped after every publish; `waiters` has a
 *   bit per process with a thread asleep, so a publish with nobody asleep makes no
 *   system call. The waiter sets its bit and then re-reads head; the writer stores head
 *   and then reads the bits (both seq_cst): a waiter can never sleep through a version.
 * - Lock order: a value's wlock, then the store's metadata mutex.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Writers sleep in slices so that a dead lock owner is noticed and recovered. */
#define WLOCK_SLICE_NS (10 * 1000 * 1000)
#define WLOCK_SPINS 200
/* A reader retrying this often while head does not move has found a corrupt value. */
#define READ_RETRIES_MAX 100000

#define NO_ROT (-1)
/* Values whose blocks are at least this large are prefaulted when opened. */
#define PREFAULT_MIN (256u * 1024u)

static uint64_t head_ver(uint64_t h)
{
    return h >> HEAD_SLOT_BITS;
}

static unsigned head_rot(uint64_t h)
{
    return (unsigned)(h & ((1u << HEAD_SLOT_BITS) - 1));
}

/* The owner of a block a reader found through a possibly stale offset (validated by the
 * caller together with the block's seq). */
static SHMSTORE__RACY uint64_t blk_owner(const struct blk_hdr *b)
{
    return b->owner;
}

/* Bytes of a version descriptor in use: the fixed part and `ndim` shape entries. */
static size_t ver_used(uint32_t ndim)
{
    return offsetof(struct ver_hdr, shape) + ndim * sizeof(uint64_t);
}

static struct ver_hdr *ver_of(struct blk_hdr *b)
{
    return (struct ver_hdr *)((char *)b + BLK_HDR_SIZE);
}

static __attribute__((cold, noinline)) int vcheck_failed(shmstore_value_t *v)
{
    int r = shmstore__check_fork(v->s);
    return r < 0 ? r : shmstore__seterr(-ESTALE, "value '%.255s' was deleted", v->obj->name);
}

/* Every operation on a handle starts here: inline, the error paths out of line (a
 * version poll from Python is ~15 ns in all, and this was a third of it as a call). */
static inline __attribute__((always_inline)) int vcheck(shmstore_value_t *v)
{
    if (__builtin_expect(shmstore__check_fork(v->s) < 0 || shmstore__obj_stale(v->obj, v->gen), 0))
        return vcheck_failed(v);
    return 0;
}

/* ---- open / close ------------------------------------------------------------------- */

/* Map the page tables of a large value's blocks now, so that the first read is not
 * hundreds of page faults (each ~15 us on a fresh tmpfs page in a VM). Best effort. */
static void prefault(shmstore_value_t *v)
{
    for (unsigned k = 0; k < VAL_ROT; k++) {
        struct blk_hdr *b = shmstore__blk(v->s, atomic_load_explicit(&v->body->rot[k],
                                                                     memory_order_acquire));
        if (b && shmstore__blk_payload_cap(b) >= PREFAULT_MIN)
            shmstore__os.prefault(b, shmstore__blk_payload_cap(b) + BLK_HDR_SIZE);
    }
}

SHMSTORE_API int shmstore_value_open(shmstore_t *s, const char *name, unsigned flags,
                                     shmstore_value_t **out)
{
    uint64_t off;
    shmstore__clearerr();
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    shmstore_value_t *v = calloc(1, sizeof(*v));
    if (!v)
        return shmstore__seterr(-ENOMEM, "out of process memory");
    r = shmstore__obj_open(s, name, SHMSTORE_KIND_VALUE, flags & SHMSTORE_V_CREATE,
                           flags & SHMSTORE_V_EXCL, sizeof(struct val_body), NULL, NULL, &off, NULL);
    if (r < 0) {
        free(v);
        return r;
    }
    shmstore__store_ref(s);
    v->s = s;
    v->obj_off = off;
    v->obj = shmstore__obj(s, off);
    v->gen = v->obj->gen;
    v->body = (struct val_body *)(v->obj + 1);
    v->reserved_rot = NO_ROT;
    prefault(v);
    *out = v;
    return 0;
}

SHMSTORE_API void shmstore_value_close(shmstore_value_t *v)
{
    if (!v)
        return;
    shmstore_t *s = v->s;
    pthread_mutex_lock(&s->lease_mu);
    bool is_closed = s->is_closed;
    pthread_mutex_unlock(&s->lease_mu);
    if (!is_closed) {
        if (v->reserved_rot != NO_ROT)
            shmstore_value_abort(v);
        if (shmstore__check_fork(s) == 0)
            shmstore__unpin(s, v->obj_off);
    }
    free(v);
    shmstore__store_unref(s);
}

/* ---- the writer lock ------------------------------------------------------------------ */

/* A writer waited a whole slice on lock word `c`: find out whether its holder is gone.
 * A dead holder's slot is recovered (which releases the lock). A lock naming a free slot,
 * or naming us while no thread of ours holds it, is stale: it is cleared. A lock naming
 * no slot at all is corruption. */
static int suspect_holder(shmstore_value_t *v, uint32_t c)
{
    shmstore_t *s = v->s;
    uint32_t owner = (c & ~WLOCK_WAITERS) - 1;
    if (owner >= s->g.n_slots)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': writer lock names slot %u "
                                "of %u", v->obj->name, owner, s->g.n_slots);
    struct proc_slot *ps = shmstore__proc_slot(s, owner);
    bool stale = atomic_load_explicit(&ps->state, memory_order_acquire) != SLOT_LIVE;
    if (owner == s->slot) {
        unsigned mine = 0; /* our own pending entry counts once */
        for (unsigned k = 0; k < SLOT_HELD_MAX; k++)
            mine += atomic_load_explicit(&ps->held[k], memory_order_acquire) == v->obj_off;
        stale = mine <= 1;
    } else if (!stale && !shmstore__proc_is_alive(s, owner)) {
        shmstore__proc_recover_slot(s, owner, NULL);
        return 0;
    }
    if (stale && atomic_compare_exchange_strong_explicit(&v->body->wlock, &c, 0,
                                                         memory_order_release, memory_order_relaxed))
        shmstore__os.futex_wake(&v->body->wlock, INT_MAX);
    return 0;
}

static int wlock_acquire(shmstore_value_t *v, int64_t timeout_ns)
{
    shmstore_t *s = v->s;
    _Atomic uint32_t *w = &v->body->wlock;
    uint32_t me = s->slot + 1, c = 0;
    int r = shmstore__proc_hold(s, v->obj_off); /* recorded first: recovery can undo */
    if (r < 0)
        return r;
    /* acquire: pairs with the release exchange in wlock_release() */
    if (atomic_compare_exchange_strong_explicit(w, &c, me, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    for (int i = 0; i < WLOCK_SPINS; i++) {
        shmstore__os_cpu_relax();
        c = 0;
        if (atomic_load_explicit(w, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(w, &c, me, memory_order_acquire,
                                                    memory_order_relaxed))
            return 0;
    }
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : shmstore__os_now_mono() + (uint64_t)timeout_ns;
    for (;;) {
        c = atomic_load_explicit(w, memory_order_relaxed);
        if (c == 0) {
            /* We may not be the last sleeper: keep the waiters bit so unlock wakes. */
            if (atomic_compare_exchange_strong_explicit(w, &c, me | WLOCK_WAITERS,
                                                        memory_order_acquire, memory_order_relaxed))
                return 0;
            continue;
        }
        if (!(c & WLOCK_WAITERS) &&
            !atomic_compare_exchange_strong_explicit(w, &c, c | WLOCK_WAITERS, memory_order_relaxed,
                                                     memory_order_relaxed))
            continue;
        uint64_t now = shmstore__os_now_mono();
        if (now >= deadline) {
            shmstore__proc_unhold(s, v->obj_off);
            return shmstore__seterr(-ETIMEDOUT, "value '%.255s': another writer holds it",
                                    v->obj->name);
        }
        uint64_t slice = deadline - now < WLOCK_SLICE_NS ? deadline - now : WLOCK_SLICE_NS;
        r = shmstore__os.futex_wait(w, c | WLOCK_WAITERS, (int64_t)slice);
        if (r == -ETIMEDOUT && (r = suspect_holder(v, c | WLOCK_WAITERS)) < 0) {
            shmstore__proc_unhold(s, v->obj_off);
            return r;
        }
    }
}

static void wlock_release(shmstore_value_t *v)
{
    /* release: the block writes are visible to the next writer */
    uint32_t old = atomic_exchange_explicit(&v->body->wlock, 0, memory_order_release);
    shmstore__proc_unhold(v->s, v->obj_off);
    if (old & WLOCK_WAITERS)
        shmstore__os.futex_wake(&v->body->wlock, INT_MAX);
}

/* Kind op `recover`: a dead slot held (or was taking) the writer lock. */
static void recover_lock(shmstore_t *s, struct obj_hdr *o, uint64_t rec, uint32_t dead_slot)
{
    (void)s;
    (void)rec;
    struct val_body *vb = (struct val_body *)(o + 1);
    uint32_t c = atomic_load_explicit(&vb->wlock, memory_order_acquire);
    do {
        if ((c & ~WLOCK_WAITERS) != dead_slot + 1)
            return; /* it was only waiting for the lock */
        /* A waiter may set WLOCK_WAITERS meanwhile: retry until the CAS wins. */
    } while (!atomic_compare_exchange_weak_explicit(&vb->wlock, &c, 0, memory_order_release,
                                                    memory_order_acquire));
    if (c & WLOCK_WAITERS)
        shmstore__os.futex_wake(&vb->wlock, INT_MAX);
}

/* ---- writing ------------------------------------------------------------------------ */

/* Pick and prepare the block for the next version (writer lock held): a rotation block
 * other than the current one, unpinned and large enough, marked odd. */
static int prepare_block(shmstore_value_t *v, uint64_t blk_len, int *rot_out)
{
    shmstore_t *s = v->s;
    struct val_body *vb = v->body;
    uint64_t h = atomic_load_explicit(&vb->head, memory_order_relaxed);
    int cur = h ? (int)head_rot(h) : NO_ROT;
    /* Candidates: the rotation blocks after the current one, oldest version first. */
    unsigned n_cand = cur == NO_ROT ? VAL_ROT : VAL_ROT - 1;
    int k = NO_ROT;
    for (unsigned i = 0; i < n_cand; i++) {
        int c = (int)((unsigned)(cur + 1 + (int)i) % VAL_ROT);
        uint64_t off = atomic_load_explicit(&vb->rot[c], memory_order_relaxed);
        struct blk_hdr *b = off ? shmstore__blk(s, off) : NULL;
        if (!b || shmstore__blk_payload_cap(b) < blk_len) {
            k = c; /* needs a (new) block: allocate below */
            break;
        }
        uint64_t old = atomic_load_explicit(&b->seq, memory_order_relaxed);
        /* seq_cst store then seq_cst pin loads: pairs with shmstore__pin()'s fetch_or then
         * the view's seq load. */
        atomic_store_explicit(&b->seq, old | 1, memory_order_seq_cst);
        if (!shmstore__blk_pinned(b)) {
            *rot_out = c;
            return 0;
        }
        atomic_store_explicit(&b->seq, old, memory_order_release);
    }
    /* A new block for that candidate or, when every candidate is pinned, for the oldest;
     * the block it replaces is released (ORPHAN while pinned). */
    if (k == NO_ROT)
        k = (cur + 1) % (int)VAL_ROT;
    int r = shmstore__lock(s);
    if (r < 0)
        return r;
    uint64_t nb;
    r = shmstore__alloc(s, blk_len, BLK_TAG_DATA, v->gen, &nb);
    if (r == 0) {
        struct blk_hdr *b = shmstore__blk(s, nb);
        atomic_store_explicit(&b->seq, 1, memory_order_relaxed);
        /* seq_cst: the old block leaves its slot before its hazards are read (proc.c) */
        uint64_t old = atomic_exchange_explicit(&vb->rot[k], nb, memory_order_seq_cst);
        if (old)
            shmstore__blk_release_locked(s, old);
        *rot_out = k;
    }
    shmstore__unlock(s);
    return r;
}

/* Make rotation block k the current version (writer lock held). */
static int publish(shmstore_value_t *v, int k, uint64_t ver, bool is_new_data, uint64_t mtime_ns)
{
    struct val_body *vb = v->body;
    struct blk_hdr *b = shmstore__blk(v->s, atomic_load_explicit(&vb->rot[k], memory_order_relaxed));
    if (!b) /* only in a corrupt store: the block's bytes overlapped the value's own */
        return shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': the block of the version "
                                "being published is gone (corrupt store: run shmstore check)",
                                v->obj->name);
    uint64_t now = mtime_ns ? mtime_ns : shmstore__os_now_real();
    if (is_new_data) /* a trigger re-publishes a block views may hold: leave it alone */
        ver_of(b)->mtime_ns = now;
    /* release: the block's bytes before its stable seq */
    atomic_store_explicit(&b->seq, 2 * ver, memory_order_release);
    atomic_store_explicit(&vb->mtime_ns, now, memory_order_relaxed);
    /* seq_cst: readers acquire head; a waiter's bit (set before it re-reads head) pairs
     * with the mask loads in shmstore__wake() */
    atomic_store_explicit(&vb->head, ver << HEAD_SLOT_BITS | (uint64_t)k, memory_order_seq_cst);
    shmstore__wake(&vb->fseq, vb->waiters);
    atomic_store_explicit(&v->published, ver, memory_order_relaxed);
    return 0;
}

/* The current version's descriptor, for SAME_LAYOUT and lock. NULL if none. */
static struct ver_hdr *current_ver(shmstore_value_t *v, struct blk_hdr **bout)
{
    uint64_t h = atomic_load_explicit(&v->body->head, memory_order_acquire);
    if (!h || head_rot(h) >= VAL_ROT)
        return NULL;
    struct blk_hdr *b =
        shmstore__blk(v->s, atomic_load_explicit(&v->body->rot[head_rot(h)], memory_order_acquire));
    if (!b || shmstore__ver_to_datum(v->s, b, ver_of(b), NULL, NULL) < 0)
        return NULL;
    if (bout)
        *bout = b;
    return ver_of(b);
}

static bool same_layout(const struct ver_hdr *a, const struct ver_hdr *b)
{
    return a->type == b->type && a->ndim == b->ndim && a->len == b->len &&
           memcmp(a->dtype, b->dtype, sizeof(a->dtype)) == 0 &&
           memcmp(a->shape, b->shape, sizeof(a->shape[0]) * a->ndim) == 0;
}

/* With the writer lock held: check the layout, prepare a block and write descriptor `vh`
 * and its attrs into it. */
static int write_ver_locked(shmstore_value_t *v, const struct ver_hdr *vh, const void *attrs,
                            unsigned flags, int *rot_out)
{
    int r = vcheck(v);
    if (r < 0)
        return r;
    if (atomic_load_explicit(&v->obj->flags, memory_order_acquire) & OBJ_F_SEALED)
        return shmstore__seterr(SHMSTORE_ESEALED, "value '%.255s' is sealed", v->obj->name);
    if (flags & SHMSTORE_PUT_SAME_LAYOUT) {
        struct ver_hdr *cur = current_ver(v, NULL);
        if (cur && !same_layout(cur, vh))
            return shmstore__seterr(SHMSTORE_ELAYOUT, "value '%.255s': data differs from the "
                                    "current version's type, dtype, shape or size", v->obj->name);
    }
    r = prepare_block(v, shmstore__ver_block_len(vh->attrs_len, vh->len), rot_out);
    if (r < 0)
        return r;
    struct blk_hdr *b = shmstore__blk(v->s, atomic_load_explicit(&v->body->rot[*rot_out],
                                                                 memory_order_relaxed));
    /* Only the fixed part and the shape entries in use: every line written here moves to
     * each reader's core on its next get. */
    memcpy(ver_of(b), vh, ver_used(vh->ndim));
    if (vh->attrs_len)
        memmove(ver_of(b) + 1, attrs, vh->attrs_len);
    return 0;
}

/* A token unique to each live thread: the address of a thread-local. */
static _Thread_local char thread_token;

static uintptr_t my_token(void)
{
    return (uintptr_t)&thread_token;
}

static void set_reserved(shmstore_value_t *v, int k)
{
    v->reserved_rot = k;
    atomic_store_explicit(&v->reserver, k == NO_ROT ? 0 : my_token(), memory_order_relaxed);
}

/* The thread holding a reservation or an in-place lock owns the value's writer lock: a
 * second write of its own would wait for itself. (Other threads just wait their turn.) */
static int check_not_reserved(shmstore_value_t *v)
{
    if (atomic_load_explicit(&v->reserver, memory_order_relaxed) != my_token())
        return 0;
    return shmstore__seterr(-EBUSY, "value '%.255s': this handle holds a reservation or lock; "
                            "commit, abort or unlock it first", v->obj->name);
}

/* Take the lock and a prepared block holding descriptor `vh` (+ attrs). */
static int begin_write(shmstore_value_t *v, const struct ver_hdr *vh, const void *attrs,
                       unsigned flags, int *rot_out)
{
    /* Before the lock: a fork child must not take it in the parent's slot, and a thread
     * must not wait for a lock it holds. Deletion and sealing are checked under it. */
    int r = vcheck(v);
    if (r < 0 || (r = check_not_reserved(v)) < 0 || (r = wlock_acquire(v, -1)) < 0)
        return r;
    if ((r = write_ver_locked(v, vh, attrs, flags, rot_out)) < 0)
        wlock_release(v);
    return r;
}

/* A NULL descriptor means BYTES (put and reserve). */
static const shmstore_datum_t *or_bytes(const shmstore_datum_t *d)
{
    return d ? d : &shmstore__bytes_datum;
}

/* Where rotation block k's payload goes, or NULL in a corrupt store (see publish). */
static void *block_data(shmstore_value_t *v, int k)
{
    struct blk_hdr *b = shmstore__blk(v->s, atomic_load_explicit(&v->body->rot[k], memory_order_relaxed));
    return b ? (char *)b + ver_of(b)->data_off : NULL;
}

static int end_write(shmstore_value_t *v, int k, uint64_t mtime_ns)
{
    uint64_t ver = head_ver(atomic_load_explicit(&v->body->head, memory_order_relaxed)) + 1;
    int r = publish(v, k, ver, true, mtime_ns);
    wlock_release(v);
    return r;
}

SHMSTORE_API int shmstore_value_put(shmstore_value_t *v, const shmstore_datum_t *d,
                                    const void *data, size_t len, unsigned flags)
{
    return shmstore_value_put_at(v, d, data, len, flags, 0);
}

SHMSTORE_API int shmstore_value_put_at(shmstore_value_t *v, const shmstore_datum_t *d,
                                       const void *data, size_t len, unsigned flags,
                                       uint64_t mtime_ns)
{
    struct ver_hdr vh;
    int k;
    shmstore__clearerr();
    d = or_bytes(d);
    if (len && !data)
        return shmstore__seterr(-EINVAL, "data is NULL");
    if (d->type == SHMSTORE_T_STR && !shmstore__utf8_valid(data, len))
        return shmstore__seterr(-EINVAL, "a str value must be valid UTF-8; store it as bytes");
    int r = shmstore__datum_to_ver(d, len, &vh);
    if (r < 0 || (r = begin_write(v, &vh, d->attrs, flags, &k)) < 0)
        return r;
    void *dst = block_data(v, k);
    if (!dst) {
        wlock_release(v);
        return shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': the block being written is "
                                "gone (corrupt store: run shmstore check)", v->obj->name);
    }
    if (len)
        shmstore__copy_in(dst, data, len);
    return end_write(v, k, mtime_ns);
}

SHMSTORE_API int shmstore_value_reserve(shmstore_value_t *v, const shmstore_datum_t *d,
                                        size_t len, unsigned flags, void **data)
{
    struct ver_hdr vh;
    int k;
    shmstore__clearerr();
    if (v->reserved_rot != NO_ROT)
        return shmstore__seterr(-EINVAL, "value '%.255s': a version is already reserved on this "
                                "handle; commit or abort it first", v->obj->name);
    d = or_bytes(d);
    int r = shmstore__datum_to_ver(d, len, &vh);
    if (r < 0 || (r = begin_write(v, &vh, d->attrs, flags, &k)) < 0)
        return r;
    if (!(*data = block_data(v, k))) {
        wlock_release(v);
        return shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': the block being written is "
                                "gone (corrupt store: run shmstore check)", v->obj->name);
    }
    set_reserved(v, k);
    return 0;
}

SHMSTORE_API int shmstore_value_commit(shmstore_value_t *v)
{
    int r = shmstore__check_fork(v->s);
    if (r < 0)
        return r; /* the reservation and its lock are the parent's */
    if (v->reserved_rot == NO_ROT)
        return shmstore__seterr(-EINVAL, "nothing reserved on this handle");
    int k = v->reserved_rot;
    set_reserved(v, NO_ROT);
    return end_write(v, k, 0);
}

SHMSTORE_API void shmstore_value_abort(shmstore_value_t *v)
{
    if (!v || v->reserved_rot == NO_ROT)
        return;
    if (shmstore__check_fork(v->s) < 0) {
        set_reserved(v, NO_ROT); /* in a fork child: forget it, the lock is the parent's */
        return;
    }
    /* The block stays odd and not current: no reader sees it; the next writer reuses it. */
    set_reserved(v, NO_ROT);
    wlock_release(v);
}

SHMSTORE_API int shmstore_value_lock(shmstore_value_t *v, int64_t timeout_ns, void **data,
                                     size_t *len, shmstore_datum_t *d)
{
    struct blk_hdr *cb;
    int k;
    shmstore__clearerr();
    if (v->reserved_rot != NO_ROT)
        return shmstore__seterr(-EINVAL, "value '%.255s' is already locked or reserved on this "
                                "handle", v->obj->name);
    int r = vcheck(v);
    if (r < 0 || (r = wlock_acquire(v, timeout_ns)) < 0)
        return r;
    struct ver_hdr *cur = current_ver(v, &cb);
    if (!cur) {
        wlock_release(v);
        return shmstore__seterr(SHMSTORE_ENOVALUE, "value '%.255s' has no version to update",
                                v->obj->name);
    }
    /* The current block is stable while we hold the lock: copy descriptor, attrs, data. */
    struct ver_hdr vh = *cur;
    if ((r = write_ver_locked(v, &vh, cur + 1, 0, &k)) < 0) {
        wlock_release(v);
        return r;
    }
    struct blk_hdr *nb = shmstore__blk(v->s, atomic_load_explicit(&v->body->rot[k], memory_order_relaxed));
    memcpy((char *)nb + ver_of(nb)->data_off, (char *)cb + cur->data_off, cur->len);
    set_reserved(v, k);
    *data = (char *)nb + ver_of(nb)->data_off;
    if (len)
        *len = ver_of(nb)->len;
    if (d)
        shmstore__ver_to_datum(v->s, nb, ver_of(nb), d, NULL);
    return 0;
}

SHMSTORE_API int shmstore_value_unlock(shmstore_value_t *v)
{
    return shmstore_value_commit(v);
}

SHMSTORE_API int shmstore_value_trigger(shmstore_value_t *v)
{
    shmstore__clearerr();
    int r = vcheck(v);
    if (r < 0 || (r = check_not_reserved(v)) < 0)
        return r;
    if (!atomic_load_explicit(&v->body->head, memory_order_acquire)) {
        shmstore_datum_t none;
        shmstore_datum_init(&none, SHMSTORE_T_NONE);
        return shmstore_value_put(v, &none, NULL, 0, 0);
    }
    if (atomic_load_explicit(&v->obj->flags, memory_order_acquire) & OBJ_F_SEALED)
        return shmstore__seterr(SHMSTORE_ESEALED, "value '%.255s' is sealed", v->obj->name);
    if ((r = wlock_acquire(v, -1)) < 0)
        return r;
    if ((r = vcheck(v)) == 0) {
        /* Same block, new version: readers mid-copy see seq change and retry. */
        uint64_t h = atomic_load_explicit(&v->body->head, memory_order_relaxed);
        if (current_ver(v, NULL))
            r = publish(v, (int)head_rot(h), head_ver(h) + 1, false, 0);
        else
            r = shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': current version block is "
                                 "invalid", v->obj->name);
    }
    wlock_release(v);
    return r;
}

SHMSTORE_API uint64_t shmstore_value_published(const shmstore_value_t *v)
{
    return v ? atomic_load_explicit(&v->published, memory_order_relaxed) : 0;
}

SHMSTORE_API int shmstore_value_seal(shmstore_value_t *v)
{
    int r = vcheck(v);
    if (r < 0 || (r = check_not_reserved(v)) < 0)
        return r;
    if (!atomic_load_explicit(&v->body->head, memory_order_acquire))
        return shmstore__seterr(SHMSTORE_ENOVALUE, "value '%.255s' has no version to seal",
                                v->obj->name);
    if ((r = wlock_acquire(v, -1)) < 0)
        return r;
    atomic_fetch_or_explicit(&v->obj->flags, OBJ_F_SEALED, memory_order_release);
    wlock_release(v);
    return 0;
}

/* ---- reading ------------------------------------------------------------------------ */

/* Locate the current version: head, its block and the expected seq. 1 = retry. */
static int locate(shmstore_value_t *v, uint64_t *h_out, struct blk_hdr **b_out)
{
    uint64_t h = atomic_load_explicit(&v->body->head, memory_order_acquire);
    if (!h)
        return shmstore__seterr(SHMSTORE_ENOVALUE, "value '%.255s' has no version yet",
                                v->obj->name);
    if (head_rot(h) >= VAL_ROT)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': head is corrupt", v->obj->name);
    uint64_t off = atomic_load_explicit(&v->body->rot[head_rot(h)], memory_order_acquire);
    struct blk_hdr *b = shmstore__blk(v->s, off);
    if (!b || shmstore__blk_payload_cap(b) < sizeof(struct ver_hdr))
        return 1; /* stale (retried) or, if it persists, corrupt (retry limit) */
    *h_out = h;
    *b_out = b;
    return 0;
}

SHMSTORE_API int shmstore_value_get(shmstore_value_t *v, shmstore_datum_t *d, void *buf,
                                    size_t cap, size_t *len, uint64_t *version)
{
    int r = vcheck(v);
    if (r < 0)
        return r;
    for (int tries = 0; tries < READ_RETRIES_MAX; tries++) {
        uint64_t h = 0;
        struct blk_hdr *b = NULL;
        /* A retry may be because the value was deleted meanwhile (its blocks freed). */
        if ((tries && (r = vcheck(v)) < 0) || (r = locate(v, &h, &b)) < 0)
            return r;
        if (r > 0)
            continue;
        /* acquire: pairs with publish()'s release of seq; the bytes below are that version */
        uint64_t s1 = atomic_load_explicit(&b->seq, memory_order_acquire);
        if (s1 != 2 * head_ver(h) || blk_owner(b) != v->gen)
            continue;
        struct ver_hdr vh;
        shmstore__seqlock_copy(&vh, ver_of(b), ver_used(0));
        if (vh.ndim > SHMSTORE_NDIM_MAX)
            vh.ndim = SHMSTORE_NDIM_MAX + 1; /* rejected below, without reading past shape */
        else if (vh.ndim)
            shmstore__seqlock_copy(vh.shape, ver_of(b)->shape, vh.ndim * sizeof(vh.shape[0]));
        shmstore_datum_t dd;
        const void *src;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&b->seq, memory_order_relaxed) != s1)
            continue;
        if ((r = shmstore__ver_to_datum(v->s, b, &vh, &dd, &src)) < 0) {
            if (atomic_load_explicit(&b->seq, memory_order_acquire) != s1)
                continue; /* validated a block being reused: not corruption */
            return r;
        }
        if (vh.len > cap) {
            if (len)
                *len = vh.len;
            return shmstore__seterr(-ENOBUFS, "value '%.255s' has %" PRIu64 " bytes; the buffer "
                                    "holds %zu", v->obj->name, vh.len, cap);
        }
        if (vh.len)
            shmstore__seqlock_copy(buf, src, vh.len);
        /* acquire fence: the copy above is ordered before these re-checks. The owner is
         * re-checked too: a block freed and reused by another value can carry the same
         * seq (its own version numbers). */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&b->seq, memory_order_relaxed) != s1 || blk_owner(b) != v->gen)
            continue;
        if (d) {
            dd.attrs = NULL;
            dd.attrs_len = 0;
            shmstore__datum_copy(d, &dd);
        }
        if (len)
            *len = vh.len;
        if (version)
            *version = head_ver(h);
        return 0;
    }
    return shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': no stable version after %d tries",
                            v->obj->name, READ_RETRIES_MAX);
}

SHMSTORE_API int shmstore_value_view(shmstore_value_t *v, shmstore_view_t *out)
{
    int r = vcheck(v);
    if (r < 0)
        return r;
    for (int tries = 0; tries < READ_RETRIES_MAX; tries++) {
        uint64_t h = 0;
        struct blk_hdr *b = NULL;
        /* A retry may be because the value was deleted meanwhile (its blocks freed). */
        if ((tries && (r = vcheck(v)) < 0) || (r = locate(v, &h, &b)) < 0)
            return r;
        if (r > 0)
            continue;
        uint64_t off = shmstore__off(v->s, b);
        if ((r = shmstore__pin(v->s, off, &v->body->rot[head_rot(h)])) < 0)
            return r;
        if (r > 0)
            continue; /* the block left its slot before we could pin it */
        /* seq_cst: after our pin is visible (see prepare_block and
         * shmstore__blk_free_if_unpinned): a block being refilled or freed is left alone */
        if (atomic_load_explicit(&b->seq, memory_order_seq_cst) != 2 * head_ver(h) ||
            blk_owner(b) != v->gen || shmstore__blk_is_freeing(b)) {
            shmstore__unpin(v->s, off);
            continue;
        }
        if ((r = shmstore__view_fill(v->s, b, off, head_ver(h), out)) < 0)
            shmstore__unpin(v->s, off);
        return r;
    }
    return shmstore__seterr(SHMSTORE_ECORRUPT, "value '%.255s': no stable version after %d tries",
                            v->obj->name, READ_RETRIES_MAX);
}

SHMSTORE_API int shmstore_value_version(shmstore_value_t *v, uint64_t *version)
{
    int r = vcheck(v);
    if (r < 0)
        return r;
    *version = head_ver(atomic_load_explicit(&v->body->head, memory_order_acquire));
    return 0;
}

SHMSTORE_API int shmstore_value_mtime(shmstore_value_t *v, uint64_t *mtime_ns)
{
    int r = vcheck(v);
    if (r < 0)
        return r;
    *mtime_ns = atomic_load_explicit(&v->body->mtime_ns, memory_order_acquire);
    return 0;
}

struct wait_arg {
    shmstore_value_t *v;
    uint64_t after, ver;
};

static int wait_poll(void *arg)
{
    struct wait_arg *w = arg;
    /* seq_cst: pairs with publish()'s head store then the waker's mask loads */
    w->ver = head_ver(atomic_load_explicit(&w->v->body->head, memory_order_seq_cst));
    if (w->ver > w->after)
        return 1;
    return vcheck(w->v);
}

SHMSTORE_API int shmstore_value_wait(shmstore_value_t *v, uint64_t after, int64_t timeout_ns,
                                     uint64_t *version)
{
    struct wait_arg w = {v, after, 0};
    int r = vcheck(v);
    if (r < 0)
        return r;
    struct shmstore__waitq q = {&v->body->fseq, v->body->waiters, v->obj_off, 0};
    r = shmstore__wait(v->s, &q, timeout_ns, wait_poll, 0, NULL, &w);
    if (r == -ETIMEDOUT)
        return shmstore__seterr(r, "value '%.255s': no version after %" PRIu64 " within the "
                                "timeout", v->obj->name, after);
    if (r < 0)
        return r;
    if (version)
        *version = w.ver;
    return 0;
}

/* ---- deletion ------------------------------------------------------------------------- */

/* Delete the value at `off` (generation `gen`), whose header the caller has pinned.
 * Takes the writer lock first, so that no writer is filling a block that deletion frees;
 * waits for a writer mid-put. */
static void free_blocks(shmstore_t *s, struct obj_hdr *o);

static int value_delete(shmstore_t *s, uint64_t off, uint64_t gen)
{
    struct obj_hdr *o = shmstore__obj(s, off);
    if (!o)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': object at %" PRIu64 " is invalid",
                                s->name, off);
    struct shmstore_value v = {.s = s, .obj_off = off, .gen = gen, .obj = o,
                               .body = (struct val_body *)(o + 1), .reserved_rot = NO_ROT};
    int r = wlock_acquire(&v, -1);
    if (r < 0)
        return r;
    if ((r = shmstore__lock(s)) == 0) {
        if (o->gen == gen && !(atomic_load_explicit(&o->flags, memory_order_acquire) & OBJ_F_DELETED)) {
            /* Handles see DELETED (-ESTALE); views keep their version blocks (ORPHAN). */
            atomic_fetch_or_explicit(&o->flags, OBJ_F_DELETED, memory_order_seq_cst);
            shmstore__index_remove(s, o->hash, off);
            s->hdr->n_objects--;
            free_blocks(s, o);
            shmstore__blk_release_locked(s, off); /* ORPHAN: our pin keeps it until unpin */
        } else {
            r = shmstore__seterr(-ENOENT, "value '%.255s' was deleted meanwhile", o->name);
        }
        shmstore__unlock(s);
    }
    wlock_release(&v);
    return r;
}

/* ---- store-level helpers (metadata mutex held) --------------------------------------- */

static void free_blocks(shmstore_t *s, struct obj_hdr *o)
{
    struct val_body *vb = (struct val_body *)(o + 1);
    for (unsigned k = 0; k < VAL_ROT; k++) {
        uint64_t off = atomic_exchange_explicit(&vb->rot[k], 0, memory_order_seq_cst);
        if (off)
            shmstore__blk_release_locked(s, off);
    }
    shmstore__wake(&vb->fseq, vb->waiters); /* sleepers see the deletion (-ESTALE) */
}

static void value_info(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out)
{
    struct val_body *vb = (struct val_body *)(o + 1);
    uint64_t h = atomic_load_explicit(&vb->head, memory_order_acquire);
    out->version = head_ver(h);
    out->mtime_ns = atomic_load_explicit(&vb->mtime_ns, memory_order_relaxed);
    for (unsigned k = 0; k < VAL_ROT; k++)
        out->footprint += shmstore__blk_footprint(s, atomic_load_explicit(&vb->rot[k],
                                                                          memory_order_relaxed));
    if (!h || head_rot(h) >= VAL_ROT)
        return;
    struct blk_hdr *b = shmstore__blk(s, atomic_load_explicit(&vb->rot[head_rot(h)], memory_order_acquire));
    struct ver_hdr vh;
    if (!b)
        return;
    shmstore__seqlock_copy(&vh, ver_of(b), sizeof(vh));
    if (shmstore__ver_to_datum(s, b, &vh, &out->desc, NULL) == 0) {
        out->size = vh.len;
        out->desc.attrs = NULL;
        out->desc.attrs_len = 0;
    }
}

SHMSTORE_API int shmstore_value_info(shmstore_value_t *v, shmstore_obj_info_t *out)
{
    int r = vcheck(v);
    if (r < 0)
        return r;
    shmstore__obj_info(v->s, v->obj, out);
    return 0;
}

static int value_check(shmstore_t *s, struct obj_hdr *o, char *rep, size_t cap, size_t *pos)
{
    struct val_body *vb = (struct val_body *)(o + 1);
    int bad = 0;
    for (unsigned k = 0; k < VAL_ROT; k++) {
        uint64_t off = atomic_load_explicit(&vb->rot[k], memory_order_relaxed);
        struct blk_hdr *b = off ? shmstore__blk(s, off) : NULL;
        if (off && (!b || b->tag != BLK_TAG_DATA || b->owner != o->gen)) {
            shmstore__report(rep, cap, pos, "value '%.*s': rotation block %u at %" PRIu64
                             " is not its data block\n", (int)o->name_len, o->name, k, off);
            bad = 1;
        }
    }
    uint64_t h = atomic_load_explicit(&vb->head, memory_order_acquire);
    if (h) {
        struct blk_hdr *b = head_rot(h) < VAL_ROT
                                ? shmstore__blk(s, atomic_load_explicit(&vb->rot[head_rot(h)],
                                                                        memory_order_relaxed))
                                : NULL;
        if (!b || atomic_load_explicit(&b->seq, memory_order_acquire) != 2 * head_ver(h) ||
            shmstore__ver_to_datum(s, b, ver_of(b), NULL, NULL) < 0) {
            shmstore__report(rep, cap, pos, "value '%.*s': current version %" PRIu64
                             " has no consistent block\n", (int)o->name_len, o->name, head_ver(h));
            bad = 1;
        }
    }
    return bad ? SHMSTORE_ECORRUPT : 0;
}

static int value_refs(shmstore_t *s, struct obj_hdr *o, int (*add)(void *, uint64_t), void *arg)
{
    (void)s;
    struct val_body *vb = (struct val_body *)(o + 1);
    int r = 0;
    for (unsigned k = 0; k < VAL_ROT && r == 0; k++)
        r = add(arg, atomic_load_explicit(&vb->rot[k], memory_order_relaxed));
    return r;
}

static _Atomic uint64_t *value_waiters(struct obj_hdr *o, unsigned which)
{
    return which == 0 ? ((struct val_body *)(o + 1))->waiters : NULL;
}

const struct shmstore__kind_ops shmstore__value_ops = {
    .name = "value",
    .body_len = sizeof(struct val_body),
    .info = value_info,
    .check = value_check,
    .refs = value_refs,
    .recover = recover_lock,
    .waiters = value_waiters,
    .del = value_delete,
};

/* ---- conveniences by name ------------------------------------------------------------ */

SHMSTORE_API int shmstore_put(shmstore_t *s, const char *name, const shmstore_datum_t *d,
                              const void *data, size_t len, unsigned flags)
{
    shmstore_value_t *v;
    bool created = false;
    int r = shmstore_value_open(s, name, 0, &v);
    if (r == -ENOENT) {
        r = shmstore_value_open(s, name, SHMSTORE_V_CREATE | SHMSTORE_V_EXCL, &v);
        created = r == 0;
        if (r == -EEXIST) { /* another process created it meanwhile */
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
            if ((r = shmstore_value_open(s, name, 0, &v)) == -ENOENT) {
                r = -EEXIST; /* no: the name is taken otherwise (an array set's member) */
                shmstore__errmsg_restore(msg);
            }
        }
    }
    if (r < 0)
        return r;
    r = shmstore_value_put(v, d, data, len, flags);
    uint64_t ver = 1;
    if (r < 0 && created)
        shmstore_value_version(v, &ver);
    shmstore_value_close(v);
    if (r < 0 && created && ver == 0) {
        /* Leave no empty value behind a failed put (unless another process has written it
         * meanwhile); keep the put's error message. */
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        shmstore_delete(s, name);
        shmstore__errmsg_restore(msg);
    }
    return r;
}

SHMSTORE_API int shmstore_get(shmstore_t *s, const char *name, shmstore_datum_t *d, void *buf,
                              size_t cap, size_t *len, uint64_t *version)
{
    shmstore_value_t *v;
    int r = shmstore_value_open(s, name, 0, &v);
    if (r < 0)
        return r;
    r = shmstore_value_get(v, d, buf, cap, len, version);
    shmstore_value_close(v);
    return r;
}
