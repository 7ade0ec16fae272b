/* queue.c - queues: bounded FIFO rings of entries, multi-producer, multi-consumer.
 *
 * Theory of operation
 * - An entry is a block of the store in the version format (struct ver_hdr, attrs,
 *   payload; datum.c), so views of entries are views like a value's (view.c). Its
 *   blk_hdr.seq is 2 * its index once committed.
 * - The ring is `capacity` cells after the body (layout.h). Cell i % capacity carries
 *   entry i; its `seq` word packs the index, a state and an owner slot, so that every
 *   step is one CAS on one word. A cell goes FREE(i) -> WRITING(i, producer) ->
 *   READY(i) -> TAKING(i, consumer) -> FREE(i + capacity). `tail` is the next index to
 *   commit and `head` the next to pop; both are advanced by CAS, by the thread that made
 *   the step or by any thread that finds the cell past it (helping), so a thread that
 *   stops between its cell step and its counter step stops nobody.
 * - Blocks. Each cell may keep a *spare*: the block of the entry a copying pop took out,
 *   left for the producer of the next lap. push() (a copy) claims the cell, checks that
 *   no reader still pins the spare (its seq made odd, seq_cst, then the pins read, as a
 *   value's writer does), fills it and publishes it: in steady state a push and a pop
 *   allocate nothing, free nothing and take no lock. When the tail's cell has no spare
 *   that fits, push() reserves and commits a block of its own instead.
 * - A reserved entry is a block allocated ORPHAN and pinned by its writer's lease: if the
 *   writer dies, recovery drops the lease and the block is freed (proc.c). Commit claims
 *   cell FREE(t) -> WRITING(t, me), stores the block, takes it back from ORPHAN to LIVE
 *   (the queue owns it now; shmstore__blk_unorphan), and stores READY(t) (seq_cst: it
 *   publishes the block and its bytes, and pairs with a sleeping consumer's waiter bit;
 *   wait.c). Then the lease is dropped. A block is stored in a cell only once its entry
 *   is whole.
 * - Pop claims READY(h) -> TAKING(h, me) (only the taker moves the head past a TAKING
 *   cell: a taker that cannot complete, its buffer too small, gives the cell back
 *   READY). A copying pop copies, makes the block the cell's spare and stores FREE(h +
 *   cap): no pin, since nobody but the cell's owner moves its blocks. A pop that returns
 *   a view pins the block (through the cell, as hazard, against a deletion of the
 *   queue), makes it ORPHAN (the last view frees it) and clears the cell.
 * - read(i) pins the block named by READY(i) through the cell (the hazard protocol of
 *   shmstore__pin) and then checks that the block holds entry i (seq = 2i, this queue's
 *   generation): an entry popped meanwhile is still a valid view; a block freed and
 *   reused is never handed out.
 * - delete(i) makes READY(i) a hole: READY(i) with no block. Pops skip holes. Whether
 *   holes exist between head and tail is known from two counters (made, popped): the
 *   count of entries is tail - head without holes, a scan with them.
 * - Crashes. Every thread moving a cell records the queue in its slot's held[] first, so
 *   recovery (queue_recover) finds the cells a dead slot owned: WRITING with its block
 *   stored -> READY (the entry was complete: data is written before commit), without ->
 *   a hole; TAKING with the block still LIVE -> READY again (the pop did not happen),
 *   otherwise -> a hole (the block was taken: the dead consumer's lease frees it).
 *   Waiters that sleep a whole slice on a cell owned by a dead process recover it.
 * - A block loses its last reference (a cell's blk or spare, a pin) only under the
 *   metadata mutex, or ORPHAN and pinned: after a process dies holding the mutex, the
 *   repair pass frees every block nothing references, and must not free one in flight
 *   (one moving between a cell's blk and spare words: queue_refs).
 * - Deletion flags the queue, then claims every idle cell for good and releases its
 *   blocks; a cell busy meanwhile is claimed back and released by its mover, who checks
 *   the flag after its last store (after_step): a cell is only ever swept by its owner.
 *   Until the last handle closes, the deleted queue's cells still count as references
 *   for the repair pass (check.c), so gc never frees a block a mover is copying.
 * - Lock order: no queue lock exists; the metadata mutex is taken only to allocate and
 *   free blocks, and by deletion.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CAPACITY_DEFAULT 1024u
#define CAPACITY_MAX (1ull << 32)
/* held[] tag: this slot is moving cells of the queue. */
#define REC_CELL 1u
/* The two wait queues of a queue (struct shmstore__waitq.which). */
#define WAIT_ROOM 0u
#define WAIT_ENTRY 1u
/* Sleepers wake this often to check whether the owner of the cell they wait on died. */
#define SLICE_NS (20 * 1000 * 1000)
/* A loop that sees the ring move this often without progress has found corruption. */
#define SPINS_MAX 1000000

struct shmstore_queue {
    shmstore_t *s;
    uint64_t obj_off;
    uint64_t gen;
    uint64_t cap; /* validated at open */
    struct obj_hdr *obj;
    struct queue_body *qb;
    struct queue_cell *cells;
};

/* ---- cell words ----------------------------------------------------------------------- */

static uint64_t cword(uint64_t i, unsigned state, uint32_t owner)
{
    return (i & CELL_IDX_MASK) << CELL_IDX_SHIFT | (uint64_t)state << 8 | (owner & 0xffu);
}

static bool cis(uint64_t w, uint64_t i, unsigned state)
{
    return (w >> CELL_IDX_SHIFT) == (i & CELL_IDX_MASK) && ((w >> 8) & 3u) == state;
}

static bool cidx_is(uint64_t w, uint64_t i)
{
    return (w >> CELL_IDX_SHIFT) == (i & CELL_IDX_MASK);
}

static unsigned cstate(uint64_t w)
{
    return (w >> 8) & 3u;
}

static uint32_t cowner(uint64_t w)
{
    return (uint32_t)(w & 0xffu);
}

static struct queue_cell *cells_of(struct obj_hdr *o)
{
    return (struct queue_cell *)((char *)(o + 1) + sizeof(struct queue_body));
}

/* Capacity of a queue object if its cells fit its block, else 0. */
static uint64_t valid_cap(const shmstore_t *s, struct obj_hdr *o)
{
    struct queue_body *qb = (struct queue_body *)(o + 1);
    struct blk_hdr *b = (struct blk_hdr *)((char *)o - BLK_HDR_SIZE);
    uint64_t cap = qb->capacity;
    (void)s;
    if (cap == 0 || cap > CAPACITY_MAX ||
        shmstore__blk_payload_cap(b) < sizeof(struct obj_hdr) + sizeof(struct queue_body) +
                                           cap * sizeof(struct queue_cell))
        return 0;
    return cap;
}

static struct queue_cell *cell(const shmstore_queue_t *q, uint64_t i)
{
    return &q->cells[i % q->cap];
}

static __attribute__((cold, noinline)) int qcheck_failed(shmstore_queue_t *q)
{
    int r = shmstore__check_fork(q->s);
    return r < 0 ? r : shmstore__seterr(-ESTALE, "queue '%.255s' was deleted", q->obj->name);
}

static inline __attribute__((always_inline)) int qcheck(shmstore_queue_t *q)
{
    if (__builtin_expect(shmstore__check_fork(q->s) < 0 || shmstore__obj_stale(q->obj, q->gen), 0))
        return qcheck_failed(q);
    return 0;
}

static void help_advance(_Atomic uint64_t *ctr, uint64_t from)
{
    /* relaxed: the cell words carry the data; the counters are hints every reader checks
     * against the cells */
    atomic_compare_exchange_strong_explicit(ctr, &from, from + 1, memory_order_relaxed,
                                            memory_order_relaxed);
}

static struct shmstore__waitq waitq(shmstore_queue_t *q, unsigned which)
{
    struct queue_body *qb = q->qb;
    return which == WAIT_ROOM
               ? (struct shmstore__waitq){&qb->not_full, qb->room_waiters, q->obj_off, WAIT_ROOM}
               : (struct shmstore__waitq){&qb->not_empty, qb->entry_waiters, q->obj_off, WAIT_ENTRY};
}

/* ---- open / close --------------------------------------------------------------------- */

static int init_body(shmstore_t *s, struct obj_hdr *o, void *arg)
{
    (void)s;
    const shmstore_queue_options_t *opt = arg;
    struct queue_body *qb = (struct queue_body *)(o + 1);
    struct queue_cell *c = cells_of(o);
    qb->capacity = opt->capacity;
    qb->slot_size = opt->slot_size;
    qb->full = opt->full;
    for (uint64_t i = 0; i < opt->capacity; i++)
        atomic_init(&c[i].seq, cword(i, CELL_FREE, 0));
    return 0;
}

SHMSTORE_API int shmstore_queue_open(shmstore_t *s, const char *name, unsigned flags,
                                     const shmstore_queue_options_t *opt, shmstore_queue_t **out)
{
    shmstore_queue_options_t o = opt ? *opt : (shmstore_queue_options_t){0};
    uint64_t off;
    shmstore__clearerr();
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    if (o.capacity == 0)
        o.capacity = CAPACITY_DEFAULT;
    if (o.capacity > CAPACITY_MAX || o.full > SHMSTORE_QUEUE_ERROR)
        return shmstore__seterr(-EINVAL, "queue '%s': capacity must be 1..2^32 entries and full "
                                "one of BLOCK, DROP_OLDEST, ERROR", name);
    shmstore_queue_t *q = calloc(1, sizeof(*q));
    if (!q)
        return shmstore__seterr(-ENOMEM, "out of process memory");
    uint64_t body_len = sizeof(struct queue_body) + o.capacity * sizeof(struct queue_cell);
    r = shmstore__obj_open(s, name, SHMSTORE_KIND_QUEUE, flags & SHMSTORE_Q_CREATE,
                           flags & SHMSTORE_Q_EXCL, body_len, init_body, &o, &off, NULL);
    if (r < 0) {
        free(q);
        return r;
    }
    q->s = s;
    q->obj_off = off;
    q->obj = shmstore__obj(s, off);
    q->gen = q->obj->gen;
    q->qb = (struct queue_body *)(q->obj + 1);
    q->cells = cells_of(q->obj);
    q->cap = valid_cap(s, q->obj);
    if (!q->cap) {
        shmstore__unpin(s, off);
        free(q);
        return shmstore__seterr(SHMSTORE_ECORRUPT, "queue '%s': capacity does not fit its "
                                "block", name);
    }
    shmstore__store_ref(s);
    *out = q;
    return 0;
}

SHMSTORE_API void shmstore_queue_close(shmstore_queue_t *q)
{
    if (!q)
        return;
    shmstore_t *s = q->s;
    if (shmstore__check_fork(s) == 0) /* in a fork child the lease is the parent's */
        shmstore__unpin(s, q->obj_off); /* a no-op once the store is closed */
    free(q);
    shmstore__store_unref(s);
}

/* ---- recovery of cells a dead (or vanished) owner left mid-step ------------------------- */

/* Finish or undo the step the owner of cell `c` (word `w`) was making. The caller made
 * sure the owner is dead and that nobody else repairs the same slot. */
static void after_step(shmstore_t *s, struct obj_hdr *o, struct queue_cell *c, uint64_t w);

static void fix_cell(shmstore_t *s, struct obj_hdr *o, struct queue_cell *c, uint64_t w)
{
    struct queue_body *qb = (struct queue_body *)(o + 1);
    uint64_t gen = o->gen;
    uint64_t i = w >> CELL_IDX_SHIFT;
    uint64_t off = atomic_load_explicit(&c->blk, memory_order_acquire);
    struct blk_hdr *b = off ? shmstore__blk(s, off) : NULL;
    if (b && (b->tag != BLK_TAG_DATA || b->owner != gen))
        b = NULL; /* not an entry of ours: never touch it */
    bool keep = false;
    if (cstate(w) == CELL_WRITING && b) {
        /* The block is stored only once its entry is whole: publish it. A reserved block
         * is still pinned by the dead slot, so nobody frees it meanwhile. */
        shmstore__blk_unorphan(s, b);
        keep = true;
    } else if (cstate(w) == CELL_TAKING && b &&
               atomic_load_explicit(&b->state, memory_order_acquire) == BLK_LIVE) {
        keep = true; /* the pop did not happen (or did not finish): ready again */
    }
    if (keep && atomic_load_explicit(&c->spare, memory_order_relaxed) == off)
        atomic_store_explicit(&c->spare, 0, memory_order_relaxed); /* died moving it */
    if (!keep) {
        /* A hole: the producer died before storing a block, or the consumer had taken it
         * (its block is ORPHAN: freed here, or by the dead consumer's lease). The cell
         * lets go of it under the mutex (see move_out). */
        bool locked = b && shmstore__lock(s) == 0;
        atomic_store_explicit(&c->blk, 0, memory_order_seq_cst);
        if (locked) {
            shmstore__blk_free_if_unpinned(s, off, b);
            shmstore__unlock(s);
        }
        /* Counted before the cell turns READY: a recoverer that dies in between leaves
         * one hole counted twice (made > popped for good), which costs count() a scan;
         * counted after, a hole could go uncounted and count() would include it. */
        atomic_fetch_add_explicit(&qb->holes_made, 1, memory_order_relaxed);
    }
    if (atomic_compare_exchange_strong_explicit(&c->seq, &w, cword(i, CELL_READY, 0),
                                                memory_order_seq_cst, memory_order_relaxed))
        after_step(s, o, c, cword(i, CELL_READY, 0)); /* we finished the dead one's step */
}

/* Kind op `recover`: slot `dead` was moving cells of this queue. */
static void queue_recover(shmstore_t *s, struct obj_hdr *o, uint64_t rec, uint32_t dead)
{
    (void)rec;
    uint64_t cap = valid_cap(s, o);
    struct queue_body *qb = (struct queue_body *)(o + 1);
    struct queue_cell *cells = cells_of(o);
    for (uint64_t k = 0; k < cap; k++) {
        uint64_t w = atomic_load_explicit(&cells[k].seq, memory_order_acquire);
        unsigned st = cstate(w);
        if ((st == CELL_WRITING || st == CELL_TAKING) && cowner(w) == dead)
            fix_cell(s, o, &cells[k], w);
    }
    shmstore__wake(&qb->not_empty, qb->entry_waiters);
    shmstore__wake(&qb->not_full, qb->room_waiters);
}

/* A waiter slept a whole slice on cell word `w`: if a dead process owns the cell,
 * recover it (which repairs the cell). */
static void check_owner(shmstore_queue_t *q, uint64_t w)
{
    unsigned st = cstate(w);
    uint32_t owner = cowner(w);
    if ((st == CELL_WRITING || st == CELL_TAKING) && owner != q->s->slot &&
        owner < q->s->g.n_slots && !shmstore__proc_is_alive(q->s, owner))
        shmstore__proc_recover_slot(q->s, owner, NULL);
}

/* ---- writing -------------------------------------------------------------------------- */

static struct ver_hdr *ver_of(struct blk_hdr *b)
{
    return (struct ver_hdr *)((char *)b + BLK_HDR_SIZE);
}

/* Block `off` as an entry block of ours: DATA, our generation, a descriptor that fits. */
static struct blk_hdr *entry_blk(shmstore_queue_t *q, uint64_t off)
{
    struct blk_hdr *b = off ? shmstore__blk(q->s, off) : NULL;
    if (!b || b->tag != BLK_TAG_DATA || b->owner != q->gen ||
        shmstore__blk_payload_cap(b) < sizeof(struct ver_hdr))
        return NULL;
    return b;
}

/* The entry `d`/`len` as a descriptor, checked against the queue (nothing allocated). */
static int describe(shmstore_queue_t *q, const shmstore_datum_t *d, size_t len,
                    struct ver_hdr *vh)
{
    int r = shmstore__datum_to_ver(d ? d : &shmstore__bytes_datum, len, vh);
    if (r < 0)
        return r;
    if (q->qb->slot_size && len > q->qb->slot_size)
        return shmstore__seterr(-EMSGSIZE, "queue '%.255s': an entry of %zu bytes is larger than "
                                "its slot size (%" PRIu64 " bytes)", q->obj->name, len,
                                q->qb->slot_size);
    return 0;
}

/* Payload bytes to allocate for an entry block: a slot-size queue allocates whole slots,
 * so that any later entry fits the block when it is reused as a spare. */
static uint64_t block_len(shmstore_queue_t *q, const struct ver_hdr *vh)
{
    uint64_t n = shmstore__ver_block_len(vh->attrs_len, vh->len);
    uint64_t slot = q->qb->slot_size ? shmstore__ver_block_len(0, q->qb->slot_size) : 0;
    return n > slot ? n : slot;
}

/* Write descriptor, attrs and `len` bytes of `data` (may be NULL) into block `b`. */
static void *fill_block(struct blk_hdr *b, const struct ver_hdr *vh, const void *attrs,
                        const void *data, size_t len)
{
    /* Only the fixed part and the shape entries in use: each line written here moves to
     * the consumer's core. */
    memcpy(ver_of(b), vh, offsetof(struct ver_hdr, shape) + vh->ndim * sizeof(vh->shape[0]));
    if (vh->attrs_len)
        memcpy(ver_of(b) + 1, attrs, vh->attrs_len);
    void *dst = (char *)b + vh->data_off;
    if (len)
        shmstore__copy_in(dst, data, len);
    return dst;
}

SHMSTORE_API int shmstore_queue_reserve(shmstore_queue_t *q, const shmstore_datum_t *d,
                                        size_t len, shmstore_queue_res_t *res)
{
    struct ver_hdr vh;
    uint64_t off;
    shmstore__clearerr();
    int r = qcheck(q);
    if (r < 0 || (r = describe(q, d, len, &vh)) < 0 || (r = shmstore__lock(q->s)) < 0)
        return r;
    r = shmstore__alloc(q->s, block_len(q, &vh), BLK_TAG_DATA, q->gen, &off);
    struct blk_hdr *b = r == 0 ? shmstore__blk(q->s, off) : NULL;
    if (b) {
        /* ORPHAN and pinned by us, before the mutex goes: if we die, dropping our lease
         * frees it; nobody else can (repair keeps pinned orphans). */
        atomic_store_explicit(&b->seq, 1, memory_order_relaxed);
        atomic_store_explicit(&b->state, BLK_ORPHAN, memory_order_relaxed);
        if ((r = shmstore__pin(q->s, off, NULL)) < 0)
            shmstore__free(q->s, off);
    }
    shmstore__unlock(q->s);
    if (r < 0)
        return r;
    res->data = fill_block(b, &vh, d ? d->attrs : NULL, NULL, 0);
    res->len = len;
    res->block_off = off;
    return 0;
}

SHMSTORE_API void shmstore_queue_abort(shmstore_queue_t *q, shmstore_queue_res_t *res)
{
    if (!q || !res || !res->block_off)
        return;
    if (shmstore__check_fork(q->s) == 0)
        shmstore__unpin(q->s, res->block_off); /* ORPHAN: the last unpin frees it */
    res->block_off = 0;
    res->data = NULL;
}

/* With the metadata mutex held: take the cell's blocks out of a deleted queue. */
static void sweep_locked(shmstore_t *s, struct queue_cell *c)
{
    /* seq_cst: a block leaves the cell before its hazards are read (proc.c) */
    uint64_t b = atomic_exchange_explicit(&c->blk, 0, memory_order_seq_cst);
    uint64_t sp = atomic_exchange_explicit(&c->spare, 0, memory_order_seq_cst);
    if (b)
        shmstore__blk_release_locked(s, b);
    if (sp)
        shmstore__blk_release_locked(s, sp);
}

/* After a thread's last store `w` to a cell it moved (the cell is FREE or READY again):
 * a deletion skips busy cells, so if the queue was deleted meanwhile the mover claims the
 * cell back for good, as the deleter does idle ones, and takes its blocks out. Only a
 * cell's owner sweeps it, so nobody copies from or fills a block being released. The
 * mover's seq_cst cell store, then this seq_cst load, pair with the deleter's flag store
 * then cell CAS: at least one of the two sees the other, and one CAS wins. When ours
 * fails, whoever took the cell after our store owns it and makes this check after its
 * own step (it loads the flag later than we did). */
static void after_step(shmstore_t *s, struct obj_hdr *o, struct queue_cell *c, uint64_t w)
{
    if (__builtin_expect(!(atomic_load_explicit(&o->flags, memory_order_seq_cst) & OBJ_F_DELETED), 1))
        return;
    if (atomic_compare_exchange_strong_explicit(&c->seq, &w,
                                                cword(w >> CELL_IDX_SHIFT, CELL_TAKING, s->slot),
                                                memory_order_seq_cst, memory_order_relaxed) &&
        shmstore__lock(s) == 0) {
        sweep_locked(s, c);
        shmstore__unlock(s);
    }
}

/* Pop the oldest entry into a view, or (discard) drop it. Returns 0, 1 (empty; `*wait_w`
 * is the word of the cell at head) or an error. */
struct take_req;
static int take(shmstore_queue_t *q, struct take_req *rq);
static void finish_take(shmstore_queue_t *q, struct queue_cell *c, uint64_t h);

/* Poll for room at the tail (wait.c: seq_cst loads). */
struct room_arg {
    shmstore_queue_t *q;
    uint64_t w;
};

static int room_poll(void *arg)
{
    struct room_arg *a = arg;
    shmstore_queue_t *q = a->q;
    uint64_t t = atomic_load_explicit(&q->qb->tail, memory_order_seq_cst);
    struct queue_cell *c = cell(q, t);
    a->w = atomic_load_explicit(&c->seq, memory_order_seq_cst);
    if (!cidx_is(a->w, t - q->cap) || cstate(a->w) == CELL_FREE)
        return 1; /* room, or the ring moved: look again */
    if (cstate(a->w) == CELL_READY && !atomic_load_explicit(&c->blk, memory_order_acquire))
        return 1; /* the oldest was deleted: a hole that put() pops to make room */
    return qcheck(q);
}

static int room_slice(void *arg)
{
    struct room_arg *a = arg;
    /* The oldest cell is owned by a producer or consumer that may have died. */
    check_owner(a->q, a->w);
    return 0;
}

/* How a producer fills the cell it claimed. */
struct put_req {
    /* commit: the reserved block (ORPHAN, pinned by us); 0 / NULL for a push */
    uint64_t res_off;
    struct blk_hdr *res_blk;
    /* push: what to write, into the cell's spare block (or a new block) */
    const struct ver_hdr *vh;
    const void *attrs, *data;
    size_t len;
    uint64_t blk_len; /* payload bytes the entry needs */
};

/* A spare `sp` that a push of `need` bytes could use, judged before claiming a cell. */
static bool spare_fits(shmstore_queue_t *q, uint64_t sp, uint64_t need)
{
    struct blk_hdr *b = entry_blk(q, sp);
    return b && shmstore__blk_payload_cap(b) >= need;
}

/* With cell `c` WRITING(t, me): make the cell's spare the entry's block and fill it.
 * Returns the block's offset (and the block in *bout), or 0 with an error in *err (the
 * store is full). */
static uint64_t fill_spare(shmstore_queue_t *q, struct queue_cell *c, const struct put_req *p,
                           struct blk_hdr **bout, int *err)
{
    uint64_t off = atomic_load_explicit(&c->spare, memory_order_relaxed);
    struct blk_hdr *b = entry_blk(q, off);
    uint64_t old = 0;
    if (b && shmstore__blk_payload_cap(b) >= p->blk_len) {
        old = atomic_load_explicit(&b->seq, memory_order_relaxed);
        /* seq_cst store then seq_cst pin loads: pairs with a reader's pin then seq load
         * (read_one): a reader still holding the block's old entry keeps it. */
        atomic_store_explicit(&b->seq, old | 1, memory_order_seq_cst);
        if (shmstore__blk_pinned(b)) {
            atomic_store_explicit(&b->seq, old, memory_order_release);
            b = NULL;
        }
    } else {
        b = NULL;
    }
    if (!b) { /* a new spare, and the old one goes (ORPHAN while a reader holds it) */
        if ((*err = shmstore__lock(q->s)) < 0)
            return 0;
        uint64_t nb;
        *err = shmstore__alloc(q->s, p->blk_len, BLK_TAG_DATA, q->gen, &nb);
        if (*err == 0) {
            b = shmstore__blk(q->s, nb);
            atomic_store_explicit(&b->seq, 1, memory_order_relaxed);
            if ((old = atomic_exchange_explicit(&c->spare, nb, memory_order_seq_cst)))
                shmstore__blk_release_locked(q->s, old);
            off = nb;
        }
        shmstore__unlock(q->s);
        if (*err < 0)
            return 0;
    }
    fill_block(b, p->vh, p->attrs, p->data, p->len);
    *bout = b;
    return off;
}

/* With our held[] record set: claim the tail's cell and put the entry in it. Returns 0,
 * 1 (full, and the policy is to wait: `*wait_w` is the oldest cell's word), 2 (a push
 * found no usable spare at the tail: reserve and commit instead) or an error. */
static int put(shmstore_queue_t *q, const struct put_req *p, bool may_wait, uint64_t *index,
               uint64_t *wait_w)
{
    struct queue_body *qb = q->qb;
    uint32_t me = q->s->slot;
    for (long spins = 0; spins < SPINS_MAX; spins++) {
        uint64_t t = atomic_load_explicit(&qb->tail, memory_order_acquire);
        struct queue_cell *c = cell(q, t);
        uint64_t w = atomic_load_explicit(&c->seq, memory_order_acquire);
        if (w == cword(t, CELL_FREE, 0)) {
            if (!p->res_off &&
                !spare_fits(q, atomic_load_explicit(&c->spare, memory_order_relaxed), p->blk_len))
                return 2;
            if (!atomic_compare_exchange_strong_explicit(&c->seq, &w, cword(t, CELL_WRITING, me),
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed))
                continue;
            int r = 0;
            struct blk_hdr *b = p->res_blk;
            uint64_t off = p->res_off ? p->res_off : fill_spare(q, c, p, &b, &r);
            if (off) {
                ver_of(b)->mtime_ns = shmstore__os_now_real();
                /* release: the bytes before the entry's seq (readers check it) */
                atomic_store_explicit(&b->seq, 2 * t, memory_order_release);
                /* release: after the entry's bytes, even for a crash (fix_cell publishes a
                 * WRITING cell's block) */
                atomic_store_explicit(&c->blk, off, memory_order_release);
                if (p->res_off) /* the queue owns the block from here */
                    shmstore__blk_unorphan(q->s, b);
                else /* release: after blk, for repair (queue_refs) */
                    atomic_store_explicit(&c->spare, 0, memory_order_release);
            } else { /* the store is full: the index becomes a hole */
                atomic_fetch_add_explicit(&qb->holes_made, 1, memory_order_relaxed);
            }
            /* seq_cst: publishes blk and the entry's bytes (readers acquire the word), and
             * pairs with a sleeping consumer's waiter bit (shmstore__wake) */
            atomic_store_explicit(&c->seq, cword(t, CELL_READY, 0), memory_order_seq_cst);
            help_advance(&qb->tail, t);
            shmstore__wake(&qb->not_empty, qb->entry_waiters);
            after_step(q->s, q->obj, c, cword(t, CELL_READY, 0));
            if (r < 0)
                return r;
            *index = t;
            return 0;
        }
        if (cidx_is(w, t) || cidx_is(w, t + q->cap)) {
            /* Entry t is committed (or even popped already): the tail lags. */
            help_advance(&qb->tail, t);
            continue;
        }
        if (!cidx_is(w, t - q->cap))
            continue; /* the tail moved since we read it */
        /* Full: the cell still holds the entry capacity places back. */
        int r = qcheck(q);
        if (r < 0)
            return r;
        if (cis(w, t - q->cap, CELL_READY) && !atomic_load_explicit(&c->blk, memory_order_acquire)) {
            /* ... a deleted one (a hole), at the head then (tail - head <= capacity): pop
             * it, as a consumer would, and the room is ours whatever the policy. A READY
             * cell's block changes only through the cell's owner: still a hole once ours. */
            if (atomic_compare_exchange_strong_explicit(&c->seq, &w,
                                                        cword(t - q->cap, CELL_TAKING, me),
                                                        memory_order_acq_rel, memory_order_relaxed)) {
                atomic_fetch_add_explicit(&qb->holes_popped, 1, memory_order_relaxed);
                finish_take(q, c, t - q->cap);
            }
            continue;
        }
        if (qb->full == SHMSTORE_QUEUE_ERROR || (qb->full == SHMSTORE_QUEUE_BLOCK && !may_wait))
            return shmstore__seterr(-EAGAIN, "queue '%.255s' is full (%" PRIu64 " entries)",
                                    q->obj->name, q->cap);
        if (qb->full == SHMSTORE_QUEUE_BLOCK) {
            *wait_w = w;
            return 1;
        }
        if ((r = take(q, NULL)) < 0) /* DROP_OLDEST */
            return r;
        if (r == 0)
            atomic_fetch_add_explicit(&qb->dropped, 1, memory_order_relaxed);
    }
    int r = qcheck(q);
    return r < 0 ? r : shmstore__seterr(SHMSTORE_ECORRUPT, "queue '%.255s': its cells never "
                                        "settle", q->obj->name);
}

/* put() with the record held around each attempt, and the waits for room between them
 * (sleeping holds nothing). */
static int put_waiting(shmstore_queue_t *q, const struct put_req *p, int64_t timeout_ns,
                       uint64_t *index)
{
    /* The clock is read only once the queue was found full: a push that finds room
     * (the common case) reads no clock. */
    uint64_t rec = q->obj_off | REC_CELL, start = 0;
    for (;;) {
        struct room_arg a = {q, 0};
        int r = shmstore__proc_hold(q->s, rec);
        if (r < 0)
            return r;
        r = put(q, p, timeout_ns != 0, index, &a.w);
        shmstore__proc_unhold(q->s, rec);
        if (r != 1)
            return r;
        int64_t left = -1;
        if (timeout_ns > 0) {
            uint64_t now = shmstore__os_now_mono();
            if (!start)
                start = now;
            uint64_t spent = now - start;
            if (spent >= (uint64_t)timeout_ns)
                return shmstore__seterr(-ETIMEDOUT, "queue '%.255s' stayed full (%" PRIu64
                                        " entries) for the whole timeout", q->obj->name, q->cap);
            left = timeout_ns - (int64_t)spent;
        }
        struct shmstore__waitq wq = waitq(q, WAIT_ROOM);
        r = shmstore__wait(q->s, &wq, left, room_poll, SLICE_NS, room_slice, &a);
        if (r < 0 && r != -ETIMEDOUT)
            return r;
    }
}

static int commit(shmstore_queue_t *q, shmstore_queue_res_t *res, int64_t timeout_ns,
                  uint64_t *index, shmstore_view_t *keep)
{
    shmstore__clearerr();
    if (!res || !res->block_off)
        return shmstore__seterr(-EINVAL, "nothing reserved: reserve an entry first");
    int r = qcheck(q);
    if (r < 0) {
        if (r == -ESTALE)
            shmstore_queue_abort(q, res);
        return r;
    }
    struct put_req p = {.res_off = res->block_off, .res_blk = shmstore__blk(q->s, res->block_off)};
    if (!p.res_blk)
        return shmstore__seterr(-EINVAL, "not a reservation of this store");
    uint64_t t = 0;
    if ((r = put_waiting(q, &p, timeout_ns, &t)) < 0)
        return r;
    /* The reservation's lease: dropped (LIVE now: the queue holds the block), or handed
     * to the caller's view, which keeps the block as long as it is held. */
    if (!keep || shmstore__view_fill(q->s, p.res_blk, res->block_off, t, keep) < 0)
        shmstore__unpin(q->s, res->block_off);
    res->block_off = 0;
    res->data = NULL;
    if (index)
        *index = t;
    return 0;
}

SHMSTORE_API int shmstore_queue_commit(shmstore_queue_t *q, shmstore_queue_res_t *res,
                                       int64_t timeout_ns, uint64_t *index)
{
    return commit(q, res, timeout_ns, index, NULL);
}

SHMSTORE_API int shmstore_queue_commit_keep(shmstore_queue_t *q, shmstore_queue_res_t *res,
                                            int64_t timeout_ns, shmstore_view_t *out)
{
    return commit(q, res, timeout_ns, NULL, out);
}

SHMSTORE_API int shmstore_queue_push(shmstore_queue_t *q, const shmstore_datum_t *d,
                                     const void *data, size_t len, int64_t timeout_ns,
                                     uint64_t *index)
{
    struct ver_hdr vh;
    uint64_t t = 0;
    shmstore__clearerr();
    if (len && !data)
        return shmstore__seterr(-EINVAL, "data is NULL");
    if (d && d->type == SHMSTORE_T_STR && !shmstore__utf8_valid(data, len))
        return shmstore__seterr(-EINVAL, "a str entry must be valid UTF-8; push it as bytes");
    int r = qcheck(q);
    if (r < 0 || (r = describe(q, d, len, &vh)) < 0)
        return r;
    /* Into the spare block a copying pop left in the tail's cell: no allocation, no lock. */
    struct put_req p = {0, NULL, &vh, d ? d->attrs : NULL, data, len, block_len(q, &vh)};
    r = put_waiting(q, &p, timeout_ns, &t);
    if (r == 2) { /* no spare that fits: a block of its own */
        shmstore_queue_res_t res;
        if ((r = shmstore_queue_reserve(q, d, len, &res)) < 0)
            return r;
        if (len)
            shmstore__copy_in(res.data, data, len);
        if ((r = shmstore_queue_commit(q, &res, timeout_ns, &t)) < 0) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", shmstore_errmsg());
            shmstore_queue_abort(q, &res);
            shmstore__errmsg_restore(msg);
        }
    }
    if (r == 0 && index)
        *index = t;
    return r;
}

/* ---- taking --------------------------------------------------------------------------- */

/* What a pop wants: a view (out), a copy (buf), or (NULL request) nothing: a drop. */
struct take_req {
    shmstore_view_t *out;
    void *buf;
    size_t cap;
    shmstore_datum_t *d;
    size_t len;     /* the entry's size (also when it did not fit) */
    uint64_t index;
    uint64_t wait_w; /* with 1: the word of the cell at head */
};

/* With cell `c` TAKING(h, me): finish the pop (store FREE(h + cap)), advance head. */
static void finish_take(shmstore_queue_t *q, struct queue_cell *c, uint64_t h)
{
    /* seq_cst: pairs with a sleeping producer's waiter bit (shmstore__wake) */
    atomic_store_explicit(&c->seq, cword(h + q->cap, CELL_FREE, 0), memory_order_seq_cst);
    help_advance(&q->qb->head, h);
    shmstore__wake(&q->qb->not_full, q->qb->room_waiters);
    /* Consumers that found the cell TAKING wait for the head to move. */
    shmstore__wake(&q->qb->not_empty, q->qb->entry_waiters);
    after_step(q->s, q->obj, c, cword(h + q->cap, CELL_FREE, 0));
}

/* With cell `c` TAKING(h, me) holding block `b` at `off`: move the entry out as `rq`
 * asks. Returns 0, or an error with the cell untouched (the caller gives it back). */
static int move_out(shmstore_queue_t *q, struct queue_cell *c, uint64_t h, uint64_t off,
                    struct blk_hdr *b, struct take_req *rq)
{
    const struct ver_hdr *vh = ver_of(b);
    if (rq && rq->buf) { /* a copy: the block stays in the cell as its spare */
        if (vh->len > rq->cap) {
            rq->len = vh->len;
            return shmstore__seterr(-ENOBUFS, "queue '%.255s': entry %" PRIu64 " has %" PRIu64
                                    " bytes; the buffer holds %zu", q->obj->name, h, vh->len,
                                    rq->cap);
        }
        shmstore_datum_t dd;
        const void *src;
        int r = shmstore__ver_to_datum(q->s, b, vh, &dd, &src);
        if (r < 0)
            return r;
        if (vh->len)
            memcpy(rq->buf, src, vh->len);
        if (rq->d) {
            dd.attrs = NULL;
            dd.attrs_len = 0;
            shmstore__datum_copy(rq->d, &dd);
        }
        rq->len = vh->len;
        rq->index = h;
        /* Spare first, then the entry goes: a crash between leaves both naming the block,
         * which recovery reads as "not popped" (and clears the spare). */
        if (!atomic_load_explicit(&c->spare, memory_order_relaxed)) {
            atomic_store_explicit(&c->spare, off, memory_order_relaxed);
            atomic_store_explicit(&c->blk, 0, memory_order_seq_cst);
        } else {
            /* The cell has a spare already: the block goes. Under the mutex, as every
             * block that loses its last reference: repair (after a process died holding
             * the mutex) frees what nothing references. Without the mutex the pop fails
             * and the entry stays (the caller gives the cell back READY). */
            if ((r = shmstore__lock(q->s)) < 0)
                return r;
            atomic_store_explicit(&c->blk, 0, memory_order_seq_cst);
            shmstore__blk_release_locked(q->s, off);
            shmstore__unlock(q->s);
        }
        return 0;
    }
    shmstore_view_t v, *out = rq ? rq->out : &v;
    /* A view: pinned through the cell, as a deletion of the queue may sweep it. */
    int r = shmstore__pin(q->s, off, &c->blk);
    if (r == 1)
        r = qcheck(q) < 0 ? -ESTALE : SHMSTORE_ECORRUPT;
    if (r == 0 && (r = shmstore__view_fill(q->s, b, off, h, out)) < 0)
        shmstore__unpin(q->s, off);
    if (r < 0)
        return r;
    /* The queue lets go: ORPHAN before the cell forgets it, so that recovery can tell a
     * finished take from one that did not happen. The last view frees the block. */
    atomic_store_explicit(&b->state, BLK_ORPHAN, memory_order_seq_cst);
    atomic_store_explicit(&c->blk, 0, memory_order_seq_cst);
    if (!rq)
        shmstore_view_release(&v); /* a drop */
    return 0;
}

static int take(shmstore_queue_t *q, struct take_req *rq)
{
    struct queue_body *qb = q->qb;
    uint32_t me = q->s->slot;
    for (long spins = 0; spins < SPINS_MAX; spins++) {
        uint64_t h = atomic_load_explicit(&qb->head, memory_order_acquire);
        struct queue_cell *c = cell(q, h);
        /* seq_cst: pairs with put()'s READY store against our waiter bit (wait.c) */
        uint64_t w = atomic_load_explicit(&c->seq, memory_order_seq_cst);
        if (w == cword(h, CELL_READY, 0)) {
            if (!atomic_compare_exchange_strong_explicit(&c->seq, &w, cword(h, CELL_TAKING, me),
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed))
                continue;
            /* The block is fixed while the cell is ours: it leaves only through us. */
            uint64_t off = atomic_load_explicit(&c->blk, memory_order_acquire);
            if (off == 0) { /* a hole */
                atomic_fetch_add_explicit(&qb->holes_popped, 1, memory_order_relaxed);
                finish_take(q, c, h);
                continue;
            }
            struct blk_hdr *b = entry_blk(q, off);
            int r = b ? move_out(q, c, h, off, b, rq)
                      : shmstore__seterr(SHMSTORE_ECORRUPT, "queue '%.255s': entry %" PRIu64
                                         " names an invalid block", q->obj->name, h);
            if (r < 0) { /* the entry stays: back to READY (the head never left it) */
                atomic_store_explicit(&c->seq, cword(h, CELL_READY, 0), memory_order_seq_cst);
                shmstore__wake(&qb->not_empty, qb->entry_waiters);
                after_step(q->s, q->obj, c, cword(h, CELL_READY, 0));
                return r;
            }
            finish_take(q, c, h);
            return 0;
        }
        if (cidx_is(w, h + q->cap)) {
            /* Entry h was taken and its cell has moved on (maybe refilled already): the
             * head lags, e.g. behind a taker that stopped before advancing it. */
            help_advance(&qb->head, h);
            continue;
        }
        /* Empty, or the entry at head is being committed or taken (a taker may give it
         * back, so nobody moves the head past a TAKING cell but its taker). */
        if (cidx_is(w, h) && cstate(w) != CELL_READY) {
            if (rq)
                rq->wait_w = w;
            return 1;
        }
    }
    int r = qcheck(q);
    return r < 0 ? r : shmstore__seterr(SHMSTORE_ECORRUPT, "queue '%.255s': its cells never "
                                        "settle", q->obj->name);
}

struct take_arg {
    shmstore_queue_t *q;
    struct take_req *rq;
};

static int take_poll(void *arg)
{
    struct take_arg *a = arg;
    int r;
    /* The record only around the attempt: a sleeping consumer holds nothing. */
    uint64_t rec = a->q->obj_off | REC_CELL;
    if ((r = shmstore__proc_hold(a->q->s, rec)) < 0)
        return r;
    r = take(a->q, a->rq);
    shmstore__proc_unhold(a->q->s, rec);
    return r == 0 ? 1 : r == 1 ? qcheck(a->q) : r; /* empty: deleted meanwhile? */
}

static int take_slice(void *arg)
{
    struct take_arg *a = arg;
    check_owner(a->q, a->rq->wait_w);
    return 0;
}

static int pop(shmstore_queue_t *q, int64_t timeout_ns, struct take_req *rq)
{
    struct take_arg a = {q, rq};
    shmstore__clearerr();
    int r = qcheck(q);
    if (r < 0)
        return r;
    struct shmstore__waitq wq = waitq(q, WAIT_ENTRY);
    r = shmstore__wait(q->s, &wq, timeout_ns, take_poll, SLICE_NS, take_slice, &a);
    if (r == -ETIMEDOUT)
        return shmstore__seterr(r, "queue '%.255s' is empty", q->obj->name);
    return r < 0 ? r : 0;
}

struct committed_arg {
    shmstore_queue_t *q;
    uint64_t index, next;
};

static int committed_poll(void *arg)
{
    struct committed_arg *a = arg;
    /* The cell says (tail is only a hint that may lag): entry i was committed once its
     * cell shows i READY or TAKING, or a later lap. seq_cst: pairs with the commit's
     * store of the cell before its wake (shmstore__wake). */
    uint64_t w = atomic_load_explicit(&cell(a->q, a->index)->seq, memory_order_seq_cst);
    uint64_t i = w >> CELL_IDX_SHIFT, want = a->index & CELL_IDX_MASK;
    if (i > want || (i == want && cstate(w) >= CELL_READY)) {
        uint64_t t = atomic_load_explicit(&a->q->qb->tail, memory_order_relaxed);
        a->next = t > a->index ? t : a->index + 1;
        return 1;
    }
    return qcheck(a->q);
}

SHMSTORE_API int shmstore_queue_wait(shmstore_queue_t *q, uint64_t index, int64_t timeout_ns,
                                     uint64_t *next_index)
{
    struct committed_arg a = {q, index, 0};
    shmstore__clearerr();
    int r = qcheck(q);
    if (r < 0)
        return r;
    struct shmstore__waitq wq = waitq(q, WAIT_ENTRY);
    r = shmstore__wait(q->s, &wq, timeout_ns, committed_poll, 0, NULL, &a);
    if (r == -ETIMEDOUT)
        return shmstore__seterr(r, "queue '%.255s': entry %" PRIu64 " not committed in time",
                                q->obj->name, index);
    if (r < 0)
        return r;
    if (next_index)
        *next_index = a.next;
    return 0;
}

SHMSTORE_API int shmstore_queue_pop(shmstore_queue_t *q, int64_t timeout_ns, shmstore_view_t *out)
{
    struct take_req rq = {.out = out};
    return pop(q, timeout_ns, &rq);
}

SHMSTORE_API int shmstore_queue_pop_copy(shmstore_queue_t *q, int64_t timeout_ns,
                                         shmstore_datum_t *d, void *buf, size_t cap,
                                         size_t *len, uint64_t *index)
{
    char none;
    struct take_req rq = {.buf = buf ? buf : &none, .cap = buf ? cap : 0, .d = d};
    int r = pop(q, timeout_ns, &rq);
    if ((r == 0 || r == -ENOBUFS) && len)
        *len = rq.len;
    if (r == 0 && index)
        *index = rq.index;
    return r;
}

/* A view of entry i if the queue holds it: 0, 1 (not there) or an error. */
static int read_one(shmstore_queue_t *q, uint64_t i, shmstore_view_t *out)
{
    if (i > CELL_IDX_MASK)
        return 1; /* never an index of ours (cells keep 54 bits of it) */
    struct queue_cell *c = cell(q, i);
    for (long spins = 0; spins < SPINS_MAX; spins++) {
        uint64_t w = atomic_load_explicit(&c->seq, memory_order_acquire);
        uint64_t off = atomic_load_explicit(&c->blk, memory_order_acquire);
        if (!cis(w, i, CELL_READY) || !off)
            return 1;
        int r = shmstore__pin(q->s, off, &c->blk);
        if (r == 1)
            continue; /* the block left the cell before our hazard was up: look again */
        if (r < 0)
            return r;
        /* seq_cst: after our pin (see shmstore__blk_free_if_unpinned): the block is ours
         * to read only if it holds entry i of this queue */
        struct blk_hdr *b = entry_blk(q, off);
        if (!b || atomic_load_explicit(&b->seq, memory_order_seq_cst) != 2 * i ||
            shmstore__blk_is_freeing(b)) {
            shmstore__unpin(q->s, off);
            continue;
        }
        if ((r = shmstore__view_fill(q->s, b, off, i, out)) < 0)
            shmstore__unpin(q->s, off);
        return r;
    }
    return shmstore__seterr(SHMSTORE_ECORRUPT, "queue '%.255s': entry %" PRIu64 " never settles",
                            q->obj->name, i);
}

static int not_there(shmstore_queue_t *q, uint64_t i)
{
    return shmstore__seterr(-ENOENT, "queue '%.255s' holds no entry %" PRIu64 " (entries %" PRIu64
                            "..%" PRIu64 " may be there)", q->obj->name, i,
                            atomic_load_explicit(&q->qb->head, memory_order_relaxed),
                            atomic_load_explicit(&q->qb->tail, memory_order_relaxed));
}

SHMSTORE_API int shmstore_queue_read(shmstore_queue_t *q, uint64_t index, shmstore_view_t *out)
{
    shmstore__clearerr();
    int r = qcheck(q);
    if (r < 0 || (r = read_one(q, index, out)) <= 0)
        return r;
    return not_there(q, index);
}

SHMSTORE_API int shmstore_queue_contains(shmstore_queue_t *q, uint64_t index)
{
    int r = qcheck(q);
    if (r < 0 || index > CELL_IDX_MASK)
        return r < 0 ? r : 0;
    struct queue_cell *c = cell(q, index);
    return cis(atomic_load_explicit(&c->seq, memory_order_acquire), index, CELL_READY) &&
           atomic_load_explicit(&c->blk, memory_order_relaxed) != 0;
}

SHMSTORE_API int shmstore_queue_read_latest(shmstore_queue_t *q, shmstore_view_t *out)
{
    shmstore__clearerr();
    int r = qcheck(q);
    if (r < 0)
        return r;
    uint64_t t = atomic_load_explicit(&q->qb->tail, memory_order_acquire);
    uint64_t h = atomic_load_explicit(&q->qb->head, memory_order_acquire);
    /* Newest first; holes and entries popped meanwhile are skipped. */
    for (uint64_t i = t; i-- > h && t - i <= q->cap;)
        if ((r = read_one(q, i, out)) <= 0)
            return r;
    return shmstore__seterr(-ENOENT, "queue '%.255s' is empty", q->obj->name);
}

SHMSTORE_API int shmstore_queue_read_batch(shmstore_queue_t *q, const uint64_t *indices, size_t n,
                                           shmstore_view_t *out)
{
    shmstore__clearerr();
    int r = qcheck(q);
    if (r < 0)
        return r;
    for (size_t k = 0; k < n; k++) {
        if ((r = read_one(q, indices[k], &out[k])) != 0) {
            if (r > 0)
                r = not_there(q, indices[k]);
            while (k-- > 0)
                shmstore_view_release(&out[k]);
            return r;
        }
    }
    return 0;
}

SHMSTORE_API int shmstore_queue_delete(shmstore_queue_t *q, uint64_t index, int force)
{
    shmstore__clearerr();
    uint64_t rec = q->obj_off | REC_CELL;
    int r = qcheck(q);
    if (r < 0)
        return r;
    if (index > CELL_IDX_MASK)
        return not_there(q, index);
    if ((r = shmstore__proc_hold(q->s, rec)) < 0)
        return r;
    struct queue_cell *c = cell(q, index);
    uint64_t w = cword(index, CELL_READY, 0), taking = cword(index, CELL_TAKING, q->s->slot);
    uint64_t off = atomic_load_explicit(&c->blk, memory_order_acquire);
    struct blk_hdr *b = NULL;
    bool took = off && atomic_compare_exchange_strong_explicit(&c->seq, &w, taking,
                                                               memory_order_acq_rel,
                                                               memory_order_relaxed);
    if (!took) {
        r = 1;
    } else if (!(off = atomic_load_explicit(&c->blk, memory_order_acquire)) ||
               !(b = entry_blk(q, off))) {
        r = 1; /* a hole (or not ours): nothing to delete */
    } else if (!force && shmstore__blk_pinned(b)) {
        r = shmstore__seterr(-EBUSY, "queue '%.255s': entry %" PRIu64 " is held by a reader's "
                             "view; release it first, or delete with force", q->obj->name, index);
    } else if ((r = shmstore__lock(q->s)) == 0) {
        /* The cell lets go of the block under the mutex (see move_out); views keep it. */
        atomic_store_explicit(&c->blk, 0, memory_order_seq_cst);
        shmstore__blk_release_locked(q->s, off);
        shmstore__unlock(q->s);
        atomic_fetch_add_explicit(&q->qb->holes_made, 1, memory_order_relaxed);
    }
    if (took) { /* give the cell back READY: the entry, or now a hole */
        atomic_store_explicit(&c->seq, cword(index, CELL_READY, 0), memory_order_seq_cst);
        /* Consumers may wait on the cell we held; a full queue's producers may now pop
         * the hole. */
        shmstore__wake(&q->qb->not_empty, q->qb->entry_waiters);
        shmstore__wake(&q->qb->not_full, q->qb->room_waiters);
        after_step(q->s, q->obj, c, cword(index, CELL_READY, 0));
    }
    shmstore__proc_unhold(q->s, rec);
    return r > 0 ? not_there(q, index) : r;
}

/* Entries between head and tail that are not holes, counting by scan. */
static uint64_t scan(shmstore_queue_t *q, uint64_t h, uint64_t t, uint64_t *buf, size_t cap,
                     size_t *n)
{
    uint64_t k = 0;
    for (uint64_t i = h; i != t; i++) {
        struct queue_cell *c = cell(q, i);
        if (cis(atomic_load_explicit(&c->seq, memory_order_acquire), i, CELL_READY) &&
            atomic_load_explicit(&c->blk, memory_order_relaxed)) {
            if (buf && k < cap)
                buf[k] = i;
            k++;
        }
    }
    if (n)
        *n = (size_t)k;
    return k;
}

/* head and tail read so that head <= tail <= head + cap. */
static void bounds(shmstore_queue_t *q, uint64_t *h, uint64_t *t)
{
    *t = atomic_load_explicit(&q->qb->tail, memory_order_acquire);
    *h = atomic_load_explicit(&q->qb->head, memory_order_acquire);
    if (*h > *t)
        *h = *t;
    if (*t - *h > q->cap)
        *h = *t - q->cap;
}

SHMSTORE_API int shmstore_queue_count(shmstore_queue_t *q, uint64_t *count)
{
    int r = qcheck(q);
    if (r < 0)
        return r;
    uint64_t made = atomic_load_explicit(&q->qb->holes_made, memory_order_acquire);
    uint64_t popped = atomic_load_explicit(&q->qb->holes_popped, memory_order_acquire);
    uint64_t h, t;
    bounds(q, &h, &t);
    *count = made == popped ? t - h : scan(q, h, t, NULL, 0, NULL);
    return 0;
}

SHMSTORE_API int shmstore_queue_indices(shmstore_queue_t *q, uint64_t *buf, size_t cap, size_t *n)
{
    uint64_t h, t;
    int r = qcheck(q);
    if (r < 0)
        return r;
    bounds(q, &h, &t);
    size_t k;
    scan(q, h, t, buf, cap, &k);
    if (n)
        *n = k;
    if (k > cap)
        return shmstore__seterr(-ENOBUFS, "queue '%.255s' holds %zu entries; the buffer %zu",
                                q->obj->name, k, cap);
    return 0;
}

/* ---- kind operations ------------------------------------------------------------------ */

static void queue_info(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out)
{
    struct queue_body *qb = (struct queue_body *)(o + 1);
    shmstore_queue_t q = {.s = s, .gen = o->gen, .cap = valid_cap(s, o), .obj = o, .qb = qb,
                          .cells = cells_of(o)};
    if (!q.cap)
        return;
    uint64_t h, t;
    bounds(&q, &h, &t);
    out->capacity = q.cap;
    out->slot_size = qb->slot_size;
    out->full = qb->full;
    out->first_index = h;
    out->next_index = t;
    out->version = t;
    out->dropped = atomic_load_explicit(&qb->dropped, memory_order_relaxed);
    for (uint64_t k = 0; k < q.cap; k++)
        out->footprint += shmstore__blk_footprint(s, atomic_load_explicit(&q.cells[k].spare,
                                                                          memory_order_relaxed));
    for (uint64_t i = h; i != t; i++) {
        struct queue_cell *c = cell(&q, i);
        uint64_t off = atomic_load_explicit(&c->blk, memory_order_relaxed);
        struct blk_hdr *b = off ? entry_blk(&q, off) : NULL;
        if (!cis(atomic_load_explicit(&c->seq, memory_order_acquire), i, CELL_READY) || !b)
            continue;
        out->count++;
        out->size += ver_of(b)->len;
        out->footprint += shmstore__blk_footprint(s, off);
        out->n_pinned += shmstore__blk_pinned(b);
        if (out->mtime_ns < ver_of(b)->mtime_ns)
            out->mtime_ns = ver_of(b)->mtime_ns;
        if (!out->oldest_mtime_ns || out->oldest_mtime_ns > ver_of(b)->mtime_ns)
            out->oldest_mtime_ns = ver_of(b)->mtime_ns;
    }
    out->producers_waiting = shmstore__waiters_count(qb->room_waiters);
    out->consumers_waiting = shmstore__waiters_count(qb->entry_waiters);
}

SHMSTORE_API int shmstore_queue_info(shmstore_queue_t *q, shmstore_obj_info_t *out)
{
    int r = qcheck(q);
    if (r < 0)
        return r;
    shmstore__obj_info(q->s, q->obj, out);
    return 0;
}

static bool spare_bad(shmstore_t *s, struct obj_hdr *o, struct queue_cell *c, uint64_t blk)
{
    uint64_t sp = atomic_load_explicit(&c->spare, memory_order_relaxed);
    struct blk_hdr *b = sp ? shmstore__blk(s, sp) : NULL;
    return sp && (sp == blk || !b || b->tag != BLK_TAG_DATA || b->owner != o->gen);
}

static int queue_check(shmstore_t *s, struct obj_hdr *o, char *rep, size_t cap, size_t *pos)
{
    struct queue_body *qb = (struct queue_body *)(o + 1);
    uint64_t n = valid_cap(s, o);
    int bad = 0;
    if (!n || qb->full > SHMSTORE_QUEUE_ERROR) {
        shmstore__report(rep, cap, pos, "queue '%.*s': capacity %" PRIu64 " or policy %u is "
                         "invalid\n", (int)o->name_len, o->name, qb->capacity, qb->full);
        return SHMSTORE_ECORRUPT;
    }
    struct queue_cell *cells = cells_of(o);
    for (uint64_t k = 0; k < n && !bad; k++) {
        uint64_t w = atomic_load_explicit(&cells[k].seq, memory_order_acquire);
        uint64_t off = atomic_load_explicit(&cells[k].blk, memory_order_relaxed);
        struct blk_hdr *b = off ? shmstore__blk(s, off) : NULL;
        unsigned st = cstate(w);
        uint64_t i = w >> CELL_IDX_SHIFT;
        if (i % n != k && atomic_load_explicit(&qb->tail, memory_order_relaxed) <= CELL_IDX_MASK) {
            shmstore__report(rep, cap, pos, "queue '%.*s': cell %" PRIu64 " carries entry %" PRIu64
                             "\n", (int)o->name_len, o->name, k, i);
            bad = 1;
        } else if (off && (!b || b->tag != BLK_TAG_DATA || b->owner != o->gen ||
                           (st == CELL_READY &&
                            atomic_load_explicit(&b->seq, memory_order_relaxed) != 2 * i))) {
            shmstore__report(rep, cap, pos, "queue '%.*s': entry %" PRIu64 " names block %" PRIu64
                             ", not its entry block\n", (int)o->name_len, o->name, i, off);
            bad = 1;
        } else if ((st == CELL_WRITING || st == CELL_TAKING) &&
                   (cowner(w) >= s->g.n_slots ||
                    atomic_load_explicit(&shmstore__proc_slot(s, cowner(w))->state,
                                         memory_order_acquire) != SLOT_LIVE)) {
            shmstore__report(rep, cap, pos, "queue '%.*s': entry %" PRIu64 " is held by slot %u, "
                             "which is free\n", (int)o->name_len, o->name, i, cowner(w));
            bad = 1;
        } else if (spare_bad(s, o, &cells[k], off)) {
            shmstore__report(rep, cap, pos, "queue '%.*s': cell %" PRIu64 " has a spare that is "
                             "not its block\n", (int)o->name_len, o->name, k);
            bad = 1;
        } else if (st == CELL_FREE && off) {
            shmstore__report(rep, cap, pos, "queue '%.*s': free cell %" PRIu64 " names a block\n",
                             (int)o->name_len, o->name, k);
            bad = 1;
        }
    }
    return bad ? SHMSTORE_ECORRUPT : 0;
}

static int queue_refs(shmstore_t *s, struct obj_hdr *o, int (*add)(void *, uint64_t), void *arg)
{
    uint64_t n = valid_cap(s, o);
    struct queue_cell *cells = cells_of(o);
    int r = 0;
    /* A block moves between a cell's two words without the mutex while repair runs: a
     * push stores blk then clears spare, a copying pop stores spare then clears blk (both
     * release). Reading blk, spare, blk (acquire) sees it in one of them either way; read
     * once each, in either order, one of the two moves slips past and repair would free a
     * block the queue still uses. */
    for (uint64_t k = 0; k < n && r == 0; k++) {
        uint64_t b0 = atomic_load_explicit(&cells[k].blk, memory_order_acquire);
        uint64_t sp = atomic_load_explicit(&cells[k].spare, memory_order_acquire);
        uint64_t b1 = atomic_load_explicit(&cells[k].blk, memory_order_acquire);
        if ((r = add(arg, b0)) == 0 && (r = add(arg, sp)) == 0 && b1 != b0)
            r = add(arg, b1);
    }
    return r;
}

static _Atomic uint64_t *queue_waiters(struct obj_hdr *o, unsigned which)
{
    struct queue_body *qb = (struct queue_body *)(o + 1);
    return which == WAIT_ROOM ? qb->room_waiters : which == WAIT_ENTRY ? qb->entry_waiters : NULL;
}

/* Kind op `del`: no lock to take first (producers and consumers never block deletion).
 * Under the mutex, the queue is flagged deleted, then every idle cell (FREE or READY) is
 * claimed for good (TAKING by us) and its blocks released; a busy cell's mover releases
 * them itself once it sees the flag (after_step). */
static int queue_delete(shmstore_t *s, uint64_t off, uint64_t gen)
{
    int r = shmstore__lock(s);
    if (r < 0)
        return r;
    struct obj_hdr *o = shmstore__obj(s, off);
    if (o && o->gen == gen && !(atomic_load_explicit(&o->flags, memory_order_acquire) & OBJ_F_DELETED)) {
        struct queue_body *qb = (struct queue_body *)(o + 1);
        uint64_t n = valid_cap(s, o);
        struct queue_cell *cells = cells_of(o);
        atomic_fetch_or_explicit(&o->flags, OBJ_F_DELETED, memory_order_seq_cst);
        shmstore__index_remove(s, o->hash, off);
        s->hdr->n_objects--;
        for (uint64_t k = 0; k < n; k++) {
            uint64_t w = atomic_load_explicit(&cells[k].seq, memory_order_seq_cst);
            while ((cstate(w) == CELL_FREE || cstate(w) == CELL_READY) &&
                   !atomic_compare_exchange_weak_explicit(
                       &cells[k].seq, &w, cword(w >> CELL_IDX_SHIFT, CELL_TAKING, s->slot),
                       memory_order_seq_cst, memory_order_seq_cst))
                ;
            if (cstate(w) == CELL_FREE || cstate(w) == CELL_READY)
                sweep_locked(s, &cells[k]);
        }
        shmstore__blk_release_locked(s, off); /* ORPHAN: handles keep it until they close */
        shmstore__wake(&qb->not_empty, qb->entry_waiters);
        shmstore__wake(&qb->not_full, qb->room_waiters);
    } else {
        r = shmstore__seterr(-ENOENT, "queue at %" PRIu64 " was deleted meanwhile", off);
    }
    shmstore__unlock(s);
    return r;
}

const struct shmstore__kind_ops shmstore__queue_ops = {
    .name = "queue",
    .body_len = sizeof(struct queue_body),
    .info = queue_info,
    .check = queue_check,
    .refs = queue_refs,
    .recover = queue_recover,
    .waiters = queue_waiters,
    .del = queue_delete,
};
