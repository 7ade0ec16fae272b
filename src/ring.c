/* ring.c - rings: circular buffers of time-series frames, one writer, any readers.
 *
 * Theory of operation
 * - Positions. Frame k of a ring's stream has position k, across generations. A
 *   generation holds its frames in one block of the store (layout.h: a DATA block in the
 *   version format whose payload is struct ring_gen and then `capacity` frames); frame p
 *   lives at index (p - base) % capacity, base being the generation's first position.
 *   Its `total` is the position of the next frame; the write index and wrap count of
 *   other designs are (total - base) % capacity and (total - base) / capacity, derived,
 *   so nothing can tear.
 * - Writing (one writer: the handle holding `wlock`). A write of n frames ending at
 *   position e = total + n first stores `intent` = e, then copies the frames (only the
 *   last `capacity` of them when n is larger), then stores `total` = e. A write overwrites
 *   the frames at positions [e - n - capacity, e - capacity) in place, so after any write
 *   has *started* only positions >= intent - capacity are intact.
 * - Reading is a sequence check, as a seqlock's: a reader loads `total` (acquire: the
 *   frames before it are visible), copies positions it finds in [max(base, intent -
 *   capacity), total), then (acquire fence) loads `intent` again; positions below the new
 *   intent - capacity may have been overwritten during the copy and are dropped from the
 *   front of what it copied, counted as lost. This is exact: the writer's release fence
 *   between its intent store and its frame stores pairs with the reader's acquire fence
 *   between its frame loads and its intent load, so a reader that saw any byte of a
 *   write sees that write's intent. One counter (`total`) would not do: a reader could
 *   not tell a frame being overwritten right now (Aeron's broadcast buffer keeps the same
 *   pair, "tail intent" and "tail"). Readers write nothing shared.
 * - Generations. Reconfiguring (writer only) allocates a new generation block (base =
 *   the old total, intent = total = base), fills it while it is ORPHAN and pinned by the
 *   writer (so that a repair pass never frees it in flight), and publishes it in
 *   `ring_body.cur` (seq_cst). The old block is released: handles and views pin it (a
 *   lease each), so it stays intact and frozen for readers still on it and is freed by
 *   its last unpin. A reader's handle stays on its generation until it calls
 *   shmstore_ring_follow(); reads tell it to (SHMSTORE_EGENERATION) once it has read
 *   everything of a superseded generation, so frames written just before a
 *   reconfiguration are not lost to a reader keeping up.
 * - The writer role is `wlock` = holder slot + 1, recorded in the holder's held[] first
 *   (proc.c): recovery of a dead holder releases it (ring_recover). It is a try-lock held
 *   for the handle's life: a second writer gets -EBUSY (naming the holder), not a wait,
 *   since two writers would interleave their streams. A writer killed mid-write leaves
 *   intent > total: the frames it was overwriting count as lost, those it was writing
 *   were never published, and the next writer carries intent on (it never goes back);
 *   recovery moves total up to intent - capacity when the dead write was longer than
 *   the storage (ring_recover).
 * - Waits go through wait.c on `fseq`/`waiters`: a write makes a system call only when a
 *   reader sleeps. The poll reads `total` and `cur` (seq_cst) after the waiter's bit;
 *   the writer stores them (seq_cst) before reading the bits.
 * - Trust: everything a handle uses to address frames (capacity, frame size, base) is
 *   validated once, when the handle moves to a generation, and kept in the handle; the
 *   counters read afterwards only select positions, and p % capacity is always inside
 *   the storage, so a corrupt ring can give wrong frames, never a wild access.
 * - Lock order: the metadata mutex only (no kind lock is ever waited for).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* held[] tag: this slot holds the ring's writer role. */
#define REC_WRITER 1u
/* A read whose every frame was overwritten while it copied tries again from the new
 * oldest frame this many times, then returns nothing (the writer laps it every time). */
#define READ_TRIES 64
/* Following a generation that keeps moving under us this often means corruption. */
#define FOLLOW_TRIES 1000
#define FRAME_NDIM_MAX (SHMSTORE_NDIM_MAX - 1)

struct shmstore_ring {
    shmstore_t *s;
    uint64_t obj_off;
    uint64_t gen;             /* object generation */
    struct obj_hdr *obj;
    struct ring_body *rb;
    /* The generation this handle is on (leased; 0 = the ring had none), validated. */
    uint64_t g_off;
    struct ring_gen *g;
    char *frames;
    uint64_t cap, frame_len, base, generation;
    shmstore_datum_t frame;   /* attrs point into the generation block */
    int is_writer;
};

static struct ver_hdr *ver_of(struct blk_hdr *b)
{
    return (struct ver_hdr *)((char *)b + BLK_HDR_SIZE);
}

static __attribute__((cold, noinline)) int rcheck_failed(shmstore_ring_t *r)
{
    int rc = shmstore__check_fork(r->s);
    return rc < 0 ? rc : shmstore__seterr(-ESTALE, "ring '%.255s' was deleted", r->obj->name);
}

static inline __attribute__((always_inline)) int rcheck(shmstore_ring_t *r)
{
    if (__builtin_expect(shmstore__check_fork(r->s) < 0 || shmstore__obj_stale(r->obj, r->gen), 0))
        return rcheck_failed(r);
    return 0;
}

/* ---- generation blocks ------------------------------------------------------------- */

/* What a handle keeps of a generation, read and checked once. */
struct gen_info {
    struct ring_gen *g;
    char *frames;
    uint64_t cap, frame_len, base, generation;
    shmstore_datum_t frame;
};

/* Validate generation block `off` of ring object `o`. 0 or SHMSTORE_ECORRUPT. Called
 * with the block leased or under the metadata mutex (it cannot be freed meanwhile). */
static int gen_validate(shmstore_t *s, const struct obj_hdr *o, uint64_t off, struct gen_info *gi)
{
    struct blk_hdr *b = off ? shmstore__blk(s, off) : NULL;
    if (!b || b->tag != BLK_TAG_DATA || b->owner != o->gen ||
        shmstore__blk_payload_cap(b) < sizeof(struct ver_hdr))
        goto bad;
    struct ver_hdr vh;
    memcpy(&vh, ver_of(b), offsetof(struct ver_hdr, shape));
    vh.ndim = 0; /* a generation block's descriptor is BYTES: no shape entries */
    shmstore_datum_t d;
    const void *data;
    if (shmstore__ver_to_datum(s, b, &vh, &d, &data) < 0 || d.type != SHMSTORE_T_BYTES ||
        vh.len < sizeof(struct ring_gen))
        goto bad;
    struct ring_gen *g = (struct ring_gen *)data;
    uint64_t generation = g->generation, cap = g->capacity, fl = g->frame_len;
    uint32_t ndim = g->frame_ndim;
    char dtype[SHMSTORE_DTYPE_MAX];
    memcpy(dtype, g->dtype, sizeof(dtype));
    dtype[SHMSTORE_DTYPE_MAX - 1] = '\0';
    if (generation == 0 || atomic_load_explicit(&b->seq, memory_order_acquire) != 2 * generation ||
        cap == 0 || ndim > FRAME_NDIM_MAX ||
        shmstore_datum_init_array(&gi->frame, dtype, ndim, g->frame_shape) < 0 ||
        shmstore_datum_validate(&gi->frame, fl) < 0 || fl == 0 ||
        cap > (vh.len - sizeof(struct ring_gen)) / fl ||
        cap * fl != vh.len - sizeof(struct ring_gen))
        goto bad;
    gi->frame.attrs = d.attrs;
    gi->frame.attrs_len = d.attrs_len;
    gi->g = g;
    gi->frames = (char *)(g + 1);
    gi->cap = cap;
    gi->frame_len = fl;
    gi->base = g->base;
    gi->generation = generation;
    shmstore__clearerr(); /* datum checks above may have left a message */
    return 0;
bad:
    return shmstore__seterr(SHMSTORE_ECORRUPT, "ring '%.255s': generation block %" PRIu64
                            " is not a valid generation of it", o->name, off);
}

static void set_gen(shmstore_ring_t *r, uint64_t off, const struct gen_info *gi)
{
    r->g_off = off;
    r->g = gi->g;
    r->frames = gi->frames;
    r->cap = gi->cap;
    r->frame_len = gi->frame_len;
    r->base = gi->base;
    r->generation = gi->generation;
    shmstore__datum_copy(&r->frame, &gi->frame);
}

static bool is_current(shmstore_ring_t *r)
{
    /* acquire: pairs with the seq_cst publish of a new generation (make_gen) */
    return atomic_load_explicit(&r->rb->cur, memory_order_acquire) == r->g_off;
}

static int follow(shmstore_ring_t *r)
{
    shmstore_t *s = r->s;
    for (int tries = 0; tries < FOLLOW_TRIES; tries++) {
        uint64_t off = atomic_load_explicit(&r->rb->cur, memory_order_seq_cst);
        if (off == r->g_off)
            return 0;
        if (off == 0) /* only a deletion takes a generation away */
            return shmstore__obj_stale(r->obj, r->gen) ? rcheck_failed(r) : 0;
        /* The hazard protocol (proc.c): pinned only if `cur` still names it afterwards. */
        int rc = shmstore__pin(s, off, &r->rb->cur);
        if (rc < 0)
            return rc;
        if (rc > 0)
            continue;
        struct gen_info gi;
        struct blk_hdr *b = shmstore__blk(s, off);
        if (!b || shmstore__blk_is_freeing(b)) {
            shmstore__unpin(s, off);
            continue;
        }
        if ((rc = gen_validate(s, r->obj, off, &gi)) < 0) {
            shmstore__unpin(s, off);
            return rc;
        }
        uint64_t old = r->g_off;
        set_gen(r, off, &gi);
        if (old)
            shmstore__unpin(s, old);
        return 1;
    }
    return shmstore__seterr(SHMSTORE_ECORRUPT, "ring '%.255s': its generation keeps changing",
                            r->obj->name);
}

SHMSTORE_API int shmstore_ring_follow(shmstore_ring_t *r)
{
    shmstore__clearerr();
    int rc = rcheck(r);
    return rc < 0 ? rc : follow(r);
}

/* ---- the writer role ---------------------------------------------------------------- */

static uint64_t writer_rec(const shmstore_ring_t *r)
{
    return r->obj_off | REC_WRITER;
}

static int32_t holder_pid(shmstore_t *s, struct ring_body *rb)
{
    uint32_t c = atomic_load_explicit(&rb->wlock, memory_order_acquire);
    if (c == 0 || c - 1 >= s->g.n_slots)
        return 0;
    return shmstore__proc_slot(s, c - 1)->pid;
}

/* Take the writer role (a try-lock) and move to the current generation. */
static int take_role(shmstore_ring_t *r)
{
    shmstore_t *s = r->s;
    _Atomic uint32_t *w = &r->rb->wlock;
    if (r->is_writer)
        return 0;
    int rc = shmstore__proc_hold(s, writer_rec(r)); /* recorded first: recovery can undo */
    if (rc < 0)
        return rc;
    for (int tries = 0; tries < 8; tries++) {
        uint32_t c = 0;
        /* acquire: pairs with the release in drop_role(): the last writer's counters */
        if (atomic_compare_exchange_strong_explicit(w, &c, s->slot + 1, memory_order_acquire,
                                                    memory_order_acquire)) {
            r->is_writer = 1;
            if ((rc = follow(r)) < 0) {
                atomic_store_explicit(w, 0, memory_order_release);
                shmstore__proc_unhold(s, writer_rec(r));
                r->is_writer = 0;
                return rc;
            }
            return 0;
        }
        uint32_t owner = c - 1;
        if (owner >= s->g.n_slots) {
            shmstore__proc_unhold(s, writer_rec(r));
            return shmstore__seterr(SHMSTORE_ECORRUPT, "ring '%.255s': writer lock names slot %u "
                                    "of %u", r->obj->name, owner, s->g.n_slots);
        }
        struct proc_slot *ps = shmstore__proc_slot(s, owner);
        if (atomic_load_explicit(&ps->state, memory_order_acquire) != SLOT_LIVE) {
            /* Stale: it names a slot nobody holds. */
            atomic_compare_exchange_strong_explicit(w, &c, 0, memory_order_relaxed,
                                                    memory_order_relaxed);
            continue;
        }
        if (owner != s->slot && !shmstore__proc_is_alive(s, owner)) {
            shmstore__proc_recover_slot(s, owner, NULL); /* releases the role (ring_recover) */
            continue;
        }
        shmstore__proc_unhold(s, writer_rec(r));
        if (owner == s->slot)
            return shmstore__seterr(-EBUSY, "ring '%.255s': another handle of this process "
                                    "is its writer; close it first", r->obj->name);
        return shmstore__seterr(-EBUSY, "ring '%.255s' already has a writer: process %d; a ring "
                                "has one writer at a time", r->obj->name, (int)ps->pid);
    }
    shmstore__proc_unhold(s, writer_rec(r));
    return shmstore__seterr(-EBUSY, "ring '%.255s': its writer lock keeps changing hands",
                            r->obj->name);
}

static void drop_role(shmstore_ring_t *r)
{
    uint32_t me = r->s->slot + 1;
    /* release: our counters and frames before the next writer's acquire */
    atomic_compare_exchange_strong_explicit(&r->rb->wlock, &me, 0, memory_order_release,
                                            memory_order_relaxed);
    shmstore__proc_unhold(r->s, writer_rec(r));
    r->is_writer = 0;
}

/* Kind op `recover`: a dead slot held (or was taking) the writer role. A writer killed
 * mid-write leaves intent > total; if its write overwrote more than the frames it would
 * publish (intent - capacity > total), positions below intent - capacity are lost for
 * good, so total moves up to there: the next writer goes on from a position whose
 * storage slots are its own, and readers count the gap as lost. (With total left where
 * it was, the next writer's first frames would land below intent - capacity, where
 * readers must treat every frame as overwritten.) The dead slot's lease still pins the
 * generation block: its leases are dropped after its held[] records (proc.c). */
static void ring_recover(shmstore_t *s, struct obj_hdr *o, uint64_t rec, uint32_t dead)
{
    (void)rec;
    struct ring_body *rb = (struct ring_body *)(o + 1);
    uint32_t c = atomic_load_explicit(&rb->wlock, memory_order_acquire);
    if (c != dead + 1)
        return; /* it was only taking the role, and failed */
    struct gen_info gi;
    uint64_t off = atomic_load_explicit(&rb->cur, memory_order_acquire);
    if (off && gen_validate(s, o, off, &gi) == 0) {
        uint64_t t = atomic_load_explicit(&gi.g->total, memory_order_relaxed);
        uint64_t i = atomic_load_explicit(&gi.g->intent, memory_order_relaxed);
        if (i > gi.cap && i - gi.cap > t) {
            /* seq_cst: as every store of total (sleeping readers, wait.c) */
            atomic_store_explicit(&gi.g->total, i - gi.cap, memory_order_seq_cst);
            shmstore__wake(&rb->fseq, rb->waiters);
        }
    }
    /* release: the counters above before the next writer's acquire of the role */
    atomic_compare_exchange_strong_explicit(&rb->wlock, &c, 0, memory_order_release,
                                            memory_order_relaxed);
}

/* ---- configuration ------------------------------------------------------------------ */

/* Check a layout; `*len` = the generation payload's bytes. */
static int cfg_check(const char *name, const shmstore_ring_config_t *cfg, uint64_t *len,
                     uint64_t *frame_len)
{
    const shmstore_datum_t *f = &cfg->frame;
    if (f->type != SHMSTORE_T_ARRAY || f->ndim > FRAME_NDIM_MAX || cfg->capacity == 0)
        return shmstore__seterr(-EINVAL, "ring '%.255s': a frame is an array of at most %u "
                                "dimensions and the capacity at least one frame", name,
                                FRAME_NDIM_MAX);
    int64_t item = shmstore_dtype_itemsize(f->dtype);
    if (item < 0)
        return shmstore__seterr(SHMSTORE_EDTYPE, "ring '%.255s': dtype '%.8s' is not supported",
                                name, f->dtype);
    uint64_t fl = (uint64_t)item, n;
    for (uint32_t i = 0; i < f->ndim; i++)
        if (__builtin_mul_overflow(fl, f->shape[i], &fl))
            return shmstore__seterr(-EINVAL, "ring '%.255s': frame shape overflows", name);
    if (fl == 0)
        return shmstore__seterr(-EINVAL, "ring '%.255s': frames of 0 bytes (a 0 in the frame "
                                "shape)", name);
    if (__builtin_mul_overflow(fl, cfg->capacity, &n) || n > UINT64_MAX / 4)
        return shmstore__seterr(-ENOSPC, "ring '%.255s': %" PRIu64 " frames of %" PRIu64 " bytes "
                                "do not fit any store", name, cfg->capacity, fl);
    int rc = shmstore_datum_validate(f, fl); /* attrs too */
    if (rc < 0)
        return rc;
    *len = sizeof(struct ring_gen) + n;
    *frame_len = fl;
    return 0;
}

/* Make and publish a new generation with layout `cfg` (writer role held, handle on the
 * current generation, or on none), first position `at`, or the next (UINT64_MAX). */
static int make_gen(shmstore_ring_t *r, const shmstore_ring_config_t *cfg, uint64_t at)
{
    shmstore_t *s = r->s;
    uint64_t len, fl, off;
    int rc = cfg_check(r->obj->name, cfg, &len, &fl);
    if (rc < 0)
        return rc;
    shmstore_datum_t bytes = {.type = SHMSTORE_T_BYTES, .attrs = cfg->frame.attrs,
                              .attrs_len = cfg->frame.attrs_len};
    struct ver_hdr vh;
    if ((rc = shmstore__datum_to_ver(&bytes, len, &vh)) < 0 || (rc = shmstore__lock(s)) < 0)
        return rc;
    rc = shmstore__alloc(s, shmstore__ver_block_len(vh.attrs_len, len), BLK_TAG_DATA, r->gen, &off);
    struct blk_hdr *b = rc == 0 ? shmstore__blk(s, off) : NULL;
    if (b) {
        /* ORPHAN and pinned by us while we fill it outside the mutex: a repair pass keeps
         * it, and if we die our lease goes and it is freed. */
        atomic_store_explicit(&b->state, BLK_ORPHAN, memory_order_relaxed);
        if ((rc = shmstore__pin(s, off, NULL)) < 0)
            shmstore__free(s, off);
    }
    shmstore__unlock(s);
    if (rc < 0)
        return rc == -ENOSPC ? shmstore__seterr(rc, "ring '%.255s': no room for a generation of "
                                                "%" PRIu64 " bytes in store '%s' (%s)",
                                                r->obj->name, len, s->name, shmstore_errmsg())
                             : rc;
    uint64_t total = r->g ? atomic_load_explicit(&r->g->total, memory_order_relaxed) : 0;
    uint64_t base = at == UINT64_MAX || at < total ? total : at;
    uint64_t generation = r->generation + 1;
    vh.mtime_ns = shmstore__os_now_real();
    memcpy(ver_of(b), &vh, offsetof(struct ver_hdr, shape));
    if (vh.attrs_len)
        memcpy(ver_of(b) + 1, cfg->frame.attrs, vh.attrs_len);
    struct ring_gen *g = (struct ring_gen *)((char *)b + vh.data_off);
    memset(g, 0, sizeof(*g));
    g->generation = generation;
    g->base = base;
    g->capacity = cfg->capacity;
    g->frame_len = fl;
    g->ctime_ns = vh.mtime_ns;
    g->frame_ndim = cfg->frame.ndim;
    memcpy(g->dtype, cfg->frame.dtype, sizeof(g->dtype));
    for (uint32_t i = 0; i < cfg->frame.ndim; i++)
        g->frame_shape[i] = cfg->frame.shape[i];
    atomic_init(&g->intent, base);
    atomic_init(&g->total, base);
    /* Zeroed: a reused block must not show another object's bytes through a view of
     * the storage (and the writer's first laps touch no fresh page). */
    memset(g + 1, 0, len - sizeof(*g));
    atomic_store_explicit(&b->seq, 2 * generation, memory_order_relaxed);
    struct gen_info gi;
    rc = gen_validate(s, r->obj, off, &gi); /* what readers will check; cannot fail */
    if (rc == 0)
        rc = shmstore__lock(s);
    if (rc < 0) {
        shmstore__unpin(s, off); /* ORPHAN: freed */
        return rc;
    }
    shmstore__blk_unorphan(s, b);
    /* seq_cst: the block's bytes before `cur` names it (readers pin through `cur` and
     * acquire); the old block leaves `cur` before its hazards are read (proc.c); and
     * sleeping readers' bits are read after it (wake below). */
    uint64_t old = atomic_exchange_explicit(&r->rb->cur, off, memory_order_seq_cst);
    if (old)
        shmstore__blk_release_locked(s, old); /* ORPHAN while leased: the last lease frees it */
    shmstore__unlock(s);
    set_gen(r, off, &gi);
    if (old)
        shmstore__unpin(s, old);
    shmstore__wake(&r->rb->fseq, r->rb->waiters);
    return 0;
}

/* Reconfigure as the writer, the new generation starting at `at` (UINT64_MAX: next). */
static int reconfigure(shmstore_ring_t *r, const shmstore_ring_config_t *cfg, uint64_t at)
{
    shmstore__clearerr();
    int rc = rcheck(r);
    if (rc < 0)
        return rc;
    if (!cfg)
        return shmstore__seterr(-EINVAL, "ring '%.255s': no configuration given", r->obj->name);
    if ((rc = take_role(r)) < 0)
        return rc;
    /* The writer's handle is on the current generation (take_role follows it). */
    uint64_t total = r->g ? atomic_load_explicit(&r->g->total, memory_order_relaxed) : 0;
    if (at != UINT64_MAX && at < total)
        return shmstore__seterr(-EINVAL, "ring '%.255s': a generation can't start at position "
                                "%" PRIu64 ", below the %" PRIu64 " frames written", r->obj->name,
                                at, total);
    return make_gen(r, cfg, at);
}

SHMSTORE_API int shmstore_ring_reconfigure(shmstore_ring_t *r, const shmstore_ring_config_t *cfg)
{
    return reconfigure(r, cfg, UINT64_MAX);
}

SHMSTORE_API int shmstore_ring_reconfigure_at(shmstore_ring_t *r, const shmstore_ring_config_t *cfg,
                                              uint64_t base)
{
    if (base == UINT64_MAX)
        return shmstore__seterr(-EINVAL, "ring: no generation starts at position 2^64 - 1");
    return reconfigure(r, cfg, base);
}

/* ---- open / close -------------------------------------------------------------------- */

SHMSTORE_API int shmstore_ring_open(shmstore_t *s, const char *name, unsigned flags,
                                    const shmstore_ring_config_t *cfg, shmstore_ring_t **out)
{
    uint64_t off, len, fl;
    bool created = false;
    shmstore__clearerr();
    int rc = shmstore__check_fork(s);
    if (rc < 0)
        return rc;
    if (cfg && (rc = cfg_check(name ? name : "", cfg, &len, &fl)) < 0)
        return rc; /* refused before anything is created */
    shmstore_ring_t *r = calloc(1, sizeof(*r));
    if (!r)
        return shmstore__seterr(-ENOMEM, "out of process memory");
    rc = shmstore__obj_open(s, name, SHMSTORE_KIND_RING, flags & SHMSTORE_R_CREATE,
                            flags & SHMSTORE_R_EXCL, sizeof(struct ring_body), NULL, NULL, &off,
                            &created);
    if (rc < 0) {
        free(r);
        return rc;
    }
    shmstore__store_ref(s);
    r->s = s;
    r->obj_off = off;
    r->obj = shmstore__obj(s, off);
    r->gen = r->obj->gen;
    r->rb = (struct ring_body *)(r->obj + 1);
    rc = follow(r);
    if (rc >= 0 && cfg && !r->g_off && (flags & SHMSTORE_R_CREATE)) {
        /* No generation yet: configure it, unless another writer is about to. */
        rc = take_role(r);
        if (rc == 0 && !r->g_off)
            rc = make_gen(r, cfg, UINT64_MAX);
        else if (rc == -EBUSY && !(flags & SHMSTORE_R_WRITER))
            rc = 0;
        if (rc == 0 && r->is_writer && !(flags & SHMSTORE_R_WRITER))
            drop_role(r);
    }
    if (rc >= 0 && (flags & SHMSTORE_R_WRITER))
        rc = take_role(r);
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
        uint64_t gen = r->gen;
        shmstore_ring_close(r);
        if (created) /* a failed open creates nothing */
            shmstore__ring_ops.del(s, off, gen);
        shmstore__errmsg_restore(msg);
        return rc;
    }
    *out = r;
    return 0;
}

SHMSTORE_API void shmstore_ring_close(shmstore_ring_t *r)
{
    if (!r)
        return;
    shmstore_t *s = r->s;
    pthread_mutex_lock(&s->lease_mu);
    bool is_closed = s->is_closed;
    pthread_mutex_unlock(&s->lease_mu);
    if (!is_closed && shmstore__check_fork(s) == 0) { /* in a fork child all is the parent's */
        if (r->is_writer)
            drop_role(r);
        if (r->g_off)
            shmstore__unpin(s, r->g_off);
        shmstore__unpin(s, r->obj_off);
    }
    free(r);
    shmstore__store_unref(s);
}

/* ---- writing ------------------------------------------------------------------------- */

SHMSTORE_API int shmstore_ring_write(shmstore_ring_t *r, const void *frames, uint64_t n)
{
    int rc = rcheck(r);
    if (__builtin_expect(rc < 0, 0))
        return rc;
    if (__builtin_expect(!r->is_writer, 0)) {
        shmstore__clearerr();
        if ((rc = take_role(r)) < 0)
            return rc;
        if (!r->g)
            drop_role(r); /* nothing to write to: the role stays free */
    }
    struct ring_gen *g = r->g;
    if (!g)
        return shmstore__seterr(SHMSTORE_ENOVALUE, "ring '%.255s' has no generation yet: "
                                "reconfigure it with a frame layout first", r->obj->name);
    if (n == 0)
        return 0;
    if (!frames)
        return shmstore__seterr(-EINVAL, "frames is NULL");
    uint64_t cap = r->cap, fl = r->frame_len;
    /* relaxed: only the writer stores these (the role's acquire ordered the last one's) */
    uint64_t t = atomic_load_explicit(&g->total, memory_order_relaxed);
    uint64_t i = atomic_load_explicit(&g->intent, memory_order_relaxed);
    if (n > (UINT64_MAX >> 2) - t)
        return shmstore__seterr(-EOVERFLOW, "ring '%.255s': 2^62 frames written", r->obj->name);
    const char *src = frames;
    uint64_t m = n, end = t + n;
    if (m > cap) { /* the newest `cap` frames are kept; the rest are overrun at once */
        src += (m - cap) * fl;
        m = cap;
    }
    atomic_store_explicit(&g->intent, end > i ? end : i, memory_order_relaxed);
    /* release fence: the intent store before the frame stores below; pairs with the
     * acquire fence a reader puts between its frame loads and its intent re-check */
    atomic_thread_fence(memory_order_release);
    uint64_t slot = (end - m - r->base) % cap, k = cap - slot < m ? cap - slot : m;
    shmstore__copy_in(r->frames + slot * fl, src, k * fl);
    if (m > k)
        shmstore__copy_in(r->frames, src + k * fl, (m - k) * fl);
    /* seq_cst: publishes the frames (readers acquire total) and pairs with a waiter's bit
     * store then total load (shmstore__wake reads the bits after it) */
    atomic_store_explicit(&g->total, end, memory_order_seq_cst);
    shmstore__wake(&r->rb->fseq, r->rb->waiters);
    return 0;
}

/* ---- reading ------------------------------------------------------------------------- */

/* The oldest position held intact now: below intent - capacity a write may be running. */
static uint64_t oldest_of(const shmstore_ring_t *r, uint64_t t, uint64_t i)
{
    uint64_t o = i > r->cap ? i - r->cap : 0;
    if (o < r->base)
        o = r->base;
    return o > t ? t : o;
}

/* Choose the frames a read from `cursor` gets: at most `max`, from the oldest held.
 * `latest` reads (no cursor of the caller's) never report generation changes. */
static int plan(shmstore_ring_t *r, uint64_t cursor, uint64_t max, bool latest,
                shmstore_ring_span_t *sp)
{
    if (!r->g) {
        if (!latest && atomic_load_explicit(&r->rb->cur, memory_order_acquire))
            return shmstore__seterr(SHMSTORE_EGENERATION, "ring '%.255s' was configured since "
                                    "this handle opened: follow it", r->obj->name);
        if (cursor > 0 && !latest)
            return shmstore__seterr(-EINVAL, "ring '%.255s': cursor %" PRIu64 " is past the %d "
                                    "frames written", r->obj->name, cursor, 0);
        *sp = (shmstore_ring_span_t){.first = cursor, .cursor = cursor};
        return latest ? shmstore__seterr(SHMSTORE_ENOVALUE, "ring '%.255s' has no generation "
                                         "yet", r->obj->name) : 0;
    }
    /* acquire: pairs with the writer's store of total: frames before it are visible */
    uint64_t t = atomic_load_explicit(&r->g->total, memory_order_acquire);
    uint64_t i = atomic_load_explicit(&r->g->intent, memory_order_acquire);
    if (t < r->base)
        return shmstore__seterr(SHMSTORE_ECORRUPT, "ring '%.255s': %" PRIu64 " frames written "
                                "in a generation that starts at %" PRIu64, r->obj->name, t,
                                r->base);
    if (i < t)
        i = t;
    if (latest)
        cursor = t - (max < t - r->base ? max : t - r->base);
    if (cursor >= t && !latest) {
        if (!is_current(r))
            return shmstore__seterr(SHMSTORE_EGENERATION, "ring '%.255s': generation %" PRIu64
                                    " was superseded and read to its end: follow the ring",
                                    r->obj->name, r->generation);
        if (cursor > t)
            return shmstore__seterr(-EINVAL, "ring '%.255s': cursor %" PRIu64 " is past the %"
                                    PRIu64 " frames written (from the future)", r->obj->name,
                                    cursor, t);
    }
    uint64_t o = oldest_of(r, t, i);
    uint64_t first = cursor > o ? cursor : o;
    uint64_t n = t - first < max ? t - first : max;
    *sp = (shmstore_ring_span_t){.n = n, .first = first, .cursor = first + n,
                                 .lost = first - cursor, .is_older_cursor = cursor < r->base};
    return 0;
}

/* After the frames [first, first + n) were read (acquire fence): how many of them, from
 * the first, may have been overwritten meanwhile. */
static uint64_t n_overwritten(const struct ring_gen *g, uint64_t cap, uint64_t first, uint64_t n)
{
    uint64_t i = atomic_load_explicit(&g->intent, memory_order_relaxed);
    uint64_t bad = i > cap ? i - cap : 0;
    return bad <= first ? 0 : bad - first < n ? bad - first : n;
}

/* Drop the first k frames of a span. */
static void span_drop(shmstore_ring_span_t *sp, uint64_t k)
{
    sp->first += k;
    sp->n -= k;
    sp->lost += k;
}

static SHMSTORE__RACY void copy_out(const shmstore_ring_t *r, uint64_t first, uint64_t n, char *dst)
{
    uint64_t cap = r->cap, fl = r->frame_len;
    uint64_t slot = (first - r->base) % cap, k = cap - slot < n ? cap - slot : n;
    shmstore__seqlock_copy(dst, r->frames + slot * fl, k * fl);
    if (n > k)
        shmstore__seqlock_copy(dst + k * fl, r->frames, (n - k) * fl);
}

static int read_frames(shmstore_ring_t *r, uint64_t cursor, void *buf, uint64_t max, bool latest,
                       shmstore_ring_span_t *out)
{
    shmstore_ring_span_t sp;
    int rc = rcheck(r);
    if (rc < 0)
        return rc;
    if (max && !buf)
        return shmstore__seterr(-EINVAL, "buf is NULL");
    for (int tries = 0;; tries++) {
        if ((rc = plan(r, cursor, max, latest, &sp)) < 0)
            return rc;
        if (sp.n == 0)
            break;
        copy_out(r, sp.first, sp.n, buf);
        /* acquire fence: the frame loads above before the intent load (see the top) */
        atomic_thread_fence(memory_order_acquire);
        uint64_t k = n_overwritten(r->g, r->cap, sp.first, sp.n);
        if (k == 0)
            break;
        if (k < sp.n) {
            memmove(buf, (char *)buf + k * r->frame_len, (sp.n - k) * r->frame_len);
            span_drop(&sp, k);
            break;
        }
        if (tries + 1 == READ_TRIES) { /* lapped every time: report it all lost */
            span_drop(&sp, sp.n);
            sp.cursor = sp.first;
            break;
        }
    }
    *out = sp;
    return 0;
}

SHMSTORE_API int shmstore_ring_read_since(shmstore_ring_t *r, uint64_t cursor, void *buf,
                                          uint64_t max, shmstore_ring_span_t *out)
{
    return read_frames(r, cursor, buf, max, false, out);
}

SHMSTORE_API int shmstore_ring_latest(shmstore_ring_t *r, uint64_t k, void *buf,
                                      shmstore_ring_span_t *out)
{
    int rc = read_frames(r, 0, buf, k, true, out);
    if (rc == 0)
        out->lost = 0; /* no cursor was given: nothing was owed */
    return rc;
}

/* ---- views --------------------------------------------------------------------------- */

static int view_of(shmstore_ring_t *r, uint64_t first, uint64_t n, shmstore_ring_view_t *out)
{
    shmstore_t *s = r->s;
    int rc = shmstore__pin(s, r->g_off, NULL); /* the handle's lease keeps it: no hazard */
    if (rc < 0)
        return rc;
    struct blk_hdr *b = shmstore__blk(s, r->g_off);
    if ((rc = shmstore__view_fill(s, b, r->g_off, r->generation, &out->lease)) < 0) {
        shmstore__unpin(s, r->g_off);
        return rc;
    }
    uint64_t cap = r->cap, fl = r->frame_len;
    uint64_t slot = (first - r->base) % cap, k = cap - slot < n ? cap - slot : n;
    out->data[0] = r->frames + slot * fl;
    out->n[0] = k;
    out->data[1] = n > k ? r->frames : NULL;
    out->n[1] = n - k;
    out->frame_len = fl;
    out->generation = r->generation;
    return 0;
}

SHMSTORE_API int shmstore_ring_view_since(shmstore_ring_t *r, uint64_t cursor, uint64_t max,
                                          shmstore_ring_view_t *out)
{
    shmstore_ring_span_t sp;
    int rc = shmstore_ring_since(r, cursor, max, &sp);
    if (rc < 0)
        return rc;
    if (!r->g) { /* nothing to lease: an empty view */
        memset(out, 0, sizeof(*out));
        out->span = sp;
        return 0;
    }
    if ((rc = view_of(r, sp.first, sp.n, out)) < 0)
        return rc;
    out->span = sp;
    return 0;
}

SHMSTORE_API int shmstore_ring_since(shmstore_ring_t *r, uint64_t cursor, uint64_t max,
                                     shmstore_ring_span_t *out)
{
    int rc = rcheck(r);
    if (rc < 0 || (rc = plan(r, cursor, max, false, out)) < 0)
        return rc;
    if (r->g) {
        /* as in view_since: frames already being overwritten are left out */
        atomic_thread_fence(memory_order_acquire);
        span_drop(out, n_overwritten(r->g, r->cap, out->first, out->n));
        out->cursor = out->first + out->n;
    }
    return 0;
}

SHMSTORE_API int shmstore_ring_view_storage(shmstore_ring_t *r, shmstore_ring_view_t *out)
{
    int rc = rcheck(r);
    if (rc < 0)
        return rc;
    if (!r->g)
        return shmstore__seterr(SHMSTORE_ENOVALUE, "ring '%.255s' has no generation yet",
                                r->obj->name);
    if ((rc = view_of(r, r->base, r->cap, out)) < 0)
        return rc;
    out->span = (shmstore_ring_span_t){.n = r->cap, .first = r->base, .cursor = r->base + r->cap};
    return 0;
}

SHMSTORE_API int shmstore_ring_view_check(const shmstore_ring_view_t *v, uint64_t *n_overwritten_out)
{
    if (!v || !v->lease.store || !v->lease.block_off)
        return -EINVAL;
    /* The view's generation block is leased: its header was validated when the view was
     * made, and the block cannot be freed or reused while the lease lasts. */
    const struct ring_gen *g = (const struct ring_gen *)v->lease.data;
    uint64_t cap = g->capacity;
    /* acquire fence: the caller's reads of the frames before the intent load */
    atomic_thread_fence(memory_order_acquire);
    *n_overwritten_out = n_overwritten(g, cap, v->span.first, v->span.n);
    return 0;
}

SHMSTORE_API void shmstore_ring_view_release(shmstore_ring_view_t *v)
{
    if (!v)
        return;
    shmstore_view_release(&v->lease);
    v->data[0] = v->data[1] = NULL;
    v->n[0] = v->n[1] = 0;
}

/* ---- waiting and state --------------------------------------------------------------- */

struct wait_arg {
    shmstore_ring_t *r;
    uint64_t cursor, total;
};

static int wait_poll(void *arg)
{
    struct wait_arg *w = arg;
    shmstore_ring_t *r = w->r;
    /* seq_cst: after our waiter bit; pairs with the writer's seq_cst stores of total and
     * cur, which come before its reads of the bits (wait.c) */
    if (r->g &&
        (w->total = atomic_load_explicit(&r->g->total, memory_order_seq_cst)) > w->cursor)
        return 1;
    if (atomic_load_explicit(&r->rb->cur, memory_order_seq_cst) != r->g_off)
        return 1;
    return rcheck(r);
}

SHMSTORE_API int shmstore_ring_wait(shmstore_ring_t *r, uint64_t cursor, int64_t timeout_ns,
                                    uint64_t *total)
{
    struct wait_arg w = {r, cursor, 0};
    int rc = rcheck(r);
    if (rc < 0)
        return rc;
    struct shmstore__waitq q = {&r->rb->fseq, r->rb->waiters, r->obj_off, 0};
    rc = shmstore__wait(r->s, &q, timeout_ns, wait_poll, 0, NULL, &w);
    if (rc == -ETIMEDOUT)
        return shmstore__seterr(rc, "ring '%.255s': no frame past %" PRIu64 " within the timeout",
                                r->obj->name, cursor);
    if (rc < 0)
        return rc;
    if (r->g && w.total > cursor) {
        if (total)
            *total = w.total;
        return 0;
    }
    return shmstore__seterr(SHMSTORE_EGENERATION, "ring '%.255s' has a new generation: follow it",
                            r->obj->name);
}

SHMSTORE_API int shmstore_ring_total(shmstore_ring_t *r, uint64_t *total)
{
    int rc = rcheck(r);
    if (rc < 0)
        return rc;
    *total = r->g ? atomic_load_explicit(&r->g->total, memory_order_acquire) : 0;
    return 0;
}

SHMSTORE_API int shmstore_ring_state(shmstore_ring_t *r, shmstore_ring_state_t *out)
{
    int rc = rcheck(r);
    if (rc < 0)
        return rc;
    memset(out, 0, sizeof(*out));
    out->is_current = is_current(r);
    out->is_writer = r->is_writer;
    out->writer_pid = holder_pid(r->s, r->rb);
    if (!r->g)
        return 0;
    shmstore__datum_copy(&out->cfg.frame, &r->frame);
    out->cfg.capacity = r->cap;
    out->frame_len = r->frame_len;
    out->generation = r->generation;
    out->base = r->base;
    uint64_t t = atomic_load_explicit(&r->g->total, memory_order_acquire);
    uint64_t i = atomic_load_explicit(&r->g->intent, memory_order_acquire);
    out->total = t;
    out->oldest = oldest_of(r, t, i < t ? t : i);
    return 0;
}

SHMSTORE_API int shmstore_ring_info(shmstore_ring_t *r, shmstore_obj_info_t *out)
{
    int rc = rcheck(r);
    if (rc < 0)
        return rc;
    shmstore__obj_info(r->s, r->obj, out);
    return 0;
}

/* ---- kind operations ---------------------------------------------------------------- */

static void ring_info(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out)
{
    struct ring_body *rb = (struct ring_body *)(o + 1);
    uint64_t off = atomic_load_explicit(&rb->cur, memory_order_acquire);
    struct gen_info gi;
    out->producers_waiting = atomic_load_explicit(&rb->wlock, memory_order_relaxed) != 0;
    out->consumers_waiting = shmstore__waiters_count(rb->waiters);
    if (!off || gen_validate(s, o, off, &gi) < 0)
        return;
    shmstore_ring_t r = {.cap = gi.cap, .base = gi.base};
    uint64_t t = atomic_load_explicit(&gi.g->total, memory_order_acquire);
    uint64_t i = atomic_load_explicit(&gi.g->intent, memory_order_acquire);
    out->version = gi.generation;
    out->next_index = t;
    out->first_index = oldest_of(&r, t < gi.base ? gi.base : t, i < t ? t : i);
    out->count = t - out->first_index;
    out->capacity = gi.cap;
    out->size = gi.frame_len;
    out->mtime_ns = gi.g->ctime_ns;
    out->desc = gi.frame;
    out->desc.attrs = NULL;
    out->desc.attrs_len = 0;
    out->footprint += shmstore__blk_footprint(s, off);
}

static int ring_check(shmstore_t *s, struct obj_hdr *o, char *rep, size_t cap, size_t *pos)
{
    struct ring_body *rb = (struct ring_body *)(o + 1);
    uint64_t off = atomic_load_explicit(&rb->cur, memory_order_acquire);
    uint32_t w = atomic_load_explicit(&rb->wlock, memory_order_acquire);
    struct gen_info gi;
    int bad = 0;
    if (off && gen_validate(s, o, off, &gi) < 0) {
        shmstore__report(rep, cap, pos, "ring '%.*s': generation block %" PRIu64 " is invalid\n",
                         (int)o->name_len, o->name, off);
        bad = 1;
    } else if (off) {
        uint64_t t = atomic_load_explicit(&gi.g->total, memory_order_acquire);
        uint64_t i = atomic_load_explicit(&gi.g->intent, memory_order_acquire);
        if (t < gi.base || i < t) {
            shmstore__report(rep, cap, pos, "ring '%.*s': counters base %" PRIu64 ", total %" PRIu64
                             ", intent %" PRIu64 " are out of order\n", (int)o->name_len, o->name,
                             gi.base, t, i);
            bad = 1;
        }
    }
    if (w && (w - 1 >= s->g.n_slots ||
              atomic_load_explicit(&shmstore__proc_slot(s, w - 1)->state, memory_order_acquire) !=
                  SLOT_LIVE)) {
        shmstore__report(rep, cap, pos, "ring '%.*s': writer role held by slot %u, which is free\n",
                         (int)o->name_len, o->name, w - 1);
        bad = 1;
    }
    return bad ? SHMSTORE_ECORRUPT : 0;
}

static int ring_refs(shmstore_t *s, struct obj_hdr *o, int (*add)(void *, uint64_t), void *arg)
{
    (void)s;
    return add(arg, atomic_load_explicit(&((struct ring_body *)(o + 1))->cur, memory_order_relaxed));
}

static _Atomic uint64_t *ring_waiters(struct obj_hdr *o, unsigned which)
{
    return which == 0 ? ((struct ring_body *)(o + 1))->waiters : NULL;
}

/* Kind op `del`: no lock to wait for (the writer is never waited for; its handle leases
 * the generation it writes to, which deletion only orphans). */
static int ring_delete(shmstore_t *s, uint64_t off, uint64_t gen)
{
    int rc = shmstore__lock(s);
    if (rc < 0)
        return rc;
    struct obj_hdr *o = shmstore__obj(s, off);
    if (o && o->gen == gen && !(atomic_load_explicit(&o->flags, memory_order_acquire) & OBJ_F_DELETED)) {
        struct ring_body *rb = (struct ring_body *)(o + 1);
        atomic_fetch_or_explicit(&o->flags, OBJ_F_DELETED, memory_order_seq_cst);
        shmstore__index_remove(s, o->hash, off);
        s->hdr->n_objects--;
        /* seq_cst: the block leaves `cur` before its hazards are read (proc.c) */
        uint64_t g = atomic_exchange_explicit(&rb->cur, 0, memory_order_seq_cst);
        if (g)
            shmstore__blk_release_locked(s, g);
        shmstore__blk_release_locked(s, off); /* ORPHAN: handles keep it until they close */
        shmstore__wake(&rb->fseq, rb->waiters); /* sleepers see the deletion (-ESTALE) */
    } else {
        rc = shmstore__seterr(-ENOENT, "ring at %" PRIu64 " was deleted meanwhile", off);
    }
    shmstore__unlock(s);
    return rc;
}

const struct shmstore__kind_ops shmstore__ring_ops = {
    .name = "ring",
    .body_len = sizeof(struct ring_body),
    .info = ring_info,
    .check = ring_check,
    .refs = ring_refs,
    .recover = ring_recover,
    .waiters = ring_waiters,
    .del = ring_delete,
};
