/* check.c - the integrity checker, the repair pass and garbage collection.
 *
 * The checker is the oracle of the tests and the fuzzer and the engine of `shmstore
 * check`: it walks every block (allocator), every index entry, every object and every
 * process slot, and reports what is inconsistent without changing anything.
 *
 * The repair pass runs with the metadata mutex held, when a process died holding it
 * (EOWNERDEAD) and on gc. It rebuilds the allocator's lists from the block walk, then
 * computes reachability: blocks referenced by the index (the table, objects, and the
 * blocks each object's kind reports through its `refs` operation) are live; an ORPHAN
 * block is live while pinned, and so is what a deleted object pinned by its handles
 * references (collect_deleted); everything else that is allocated was lost by a process
 * that died between allocating and attaching, or while freeing, and is freed. Reachability is skipped when the index itself is not
 * sound: never free what a damaged index could not vouch for.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void shmstore__report(char *rep, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (!rep || !cap || *pos >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rep + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos = *pos + (size_t)n < cap ? *pos + (size_t)n : cap - 1;
}

/* ---- reachability -------------------------------------------------------------------- */

struct refs {
    uint64_t *off;
    size_t n, cap;
};

static int refs_add(struct refs *r, uint64_t off)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 1024;
        uint64_t *p = realloc(r->off, nc * sizeof(*p));
        if (!p)
            return -ENOMEM;
        r->off = p;
        r->cap = nc;
    }
    r->off[r->n++] = off;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int add_ref(void *arg, uint64_t off)
{
    return off ? refs_add(arg, off) : 0;
}

static int collect_obj(shmstore_t *s, uint64_t off, void *arg)
{
    struct obj_hdr *o = shmstore__obj(s, off);
    if (!o)
        return SHMSTORE_ECORRUPT;
    if (refs_add(arg, off) < 0)
        return -ENOMEM;
    return shmstore__kind(o->kind)->refs(s, o, add_ref, arg);
}

/* Objects deleted while handles were open are out of the index but still in use: their
 * header is ORPHAN and pinned until the last handle closes, and a thread may be midway
 * through a step on it (a queue's copying pop reads an entry block it does not pin).
 * What such an object references is reachable too. */
static int collect_deleted(shmstore_t *s, struct refs *refs)
{
    uint64_t top = atomic_load_explicit(&s->hdr->heap_top, memory_order_relaxed);
    for (uint64_t off = s->g.heap_off; off < top;) {
        struct blk_hdr *b = shmstore__blk(s, off);
        if (!b)
            return SHMSTORE_ECORRUPT;
        struct obj_hdr *o;
        if ((b->size & BLK_USED) && b->tag == BLK_TAG_OBJ &&
            atomic_load_explicit(&b->state, memory_order_acquire) == BLK_ORPHAN &&
            shmstore__blk_pinned(b) && (o = shmstore__obj(s, off))) {
            int r = shmstore__kind(o->kind)->refs(s, o, add_ref, refs);
            if (r < 0)
                return r;
        }
        off += b->size & BLK_SIZE_MASK;
    }
    return 0;
}

/* Blocks that are allocated but unreachable (and not ORPHAN-and-pinned), sorted. With
 * `out` NULL, only counts them. Returns the count or a negative code. */
static int64_t unreachable(shmstore_t *s, struct refs *out)
{
    struct refs refs = {0};
    int r = 0;
    if (s->hdr->index_off)
        r = refs_add(&refs, s->hdr->index_off);
    if (r == 0)
        r = shmstore__index_foreach(s, collect_obj, &refs);
    if (r == 0)
        r = collect_deleted(s, &refs);
    if (r < 0) {
        free(refs.off);
        return r;
    }
    if (refs.n)
        qsort(refs.off, refs.n, sizeof(uint64_t), cmp_u64);
    int64_t n = 0;
    uint64_t top = atomic_load_explicit(&s->hdr->heap_top, memory_order_relaxed);
    for (uint64_t off = s->g.heap_off; off < top;) {
        struct blk_hdr *b = shmstore__blk(s, off);
        if (!b) {
            n = SHMSTORE_ECORRUPT;
            break;
        }
        uint32_t state = atomic_load_explicit(&b->state, memory_order_acquire);
        if ((b->size & BLK_USED) &&
            !(refs.n && bsearch(&off, refs.off, refs.n, sizeof(uint64_t), cmp_u64)) &&
            !(state == BLK_ORPHAN && shmstore__blk_pinned(b))) {
            n++;
            if (out && refs_add(out, off) < 0) {
                n = -ENOMEM;
                break;
            }
        }
        off += b->size & BLK_SIZE_MASK;
    }
    free(refs.off);
    return n;
}

int shmstore__repair_locked(shmstore_t *s, shmstore_gc_stats_t *st)
{
    int r = shmstore__alloc_check(s, true, NULL, 0, NULL);
    if (r < 0)
        return r;
    if (shmstore__index_repair(s) < 0)
        return SHMSTORE_ECORRUPT;
    struct refs lost = {0};
    int64_t n = unreachable(s, &lost);
    if (n < 0) {
        free(lost.off);
        return (int)n;
    }
    /* Free back to front: freeing merges with neighbours, never with a later listed one.
     * A pinned block (an object whose handles are open, a version under a view) is not
     * freed but orphaned: its last unpin frees it; an object is flagged deleted so that
     * its handles fail with -ESTALE. */
    for (size_t i = lost.n; i-- > 0;) {
        struct blk_hdr *b = shmstore__blk(s, lost.off[i]);
        if (!b)
            continue;
        if (b->tag == BLK_TAG_OBJ) {
            struct obj_hdr *o = shmstore__obj(s, lost.off[i]);
            if (o)
                atomic_fetch_or_explicit(&o->flags, OBJ_F_DELETED, memory_order_seq_cst);
        }
        uint64_t size = b->size & BLK_SIZE_MASK;
        atomic_store_explicit(&b->state, BLK_ORPHAN, memory_order_seq_cst);
        if (shmstore__blk_free_if_unpinned(s, lost.off[i], b) && st) {
            st->blocks_freed++;
            st->bytes_freed += size;
        }
    }
    free(lost.off);
    return 0;
}

/* ---- the checker --------------------------------------------------------------------- */

struct obj_check {
    char *rep;
    size_t cap, *pos;
    int bad;
    uint64_t n;
};

static int check_obj(shmstore_t *s, uint64_t off, void *arg)
{
    struct obj_check *c = arg;
    struct obj_hdr *o = shmstore__obj(s, off);
    c->n++;
    if (!o || o->gen == 0 || o->gen >= s->hdr->next_gen ||
        ((struct blk_hdr *)((char *)o - BLK_HDR_SIZE))->owner != o->gen) {
        shmstore__report(c->rep, c->cap, c->pos, "object at %" PRIu64 ": bad header\n", off);
        c->bad = 1;
        return 0;
    }
    if (shmstore__kind(o->kind)->check(s, o, c->rep, c->cap, c->pos) < 0)
        c->bad = 1;
    return 0;
}

/* Leases: every pin bit belongs to a live slot that lists the block. */
static int check_leases(shmstore_t *s, char *rep, size_t cap, size_t *pos)
{
    struct store_hdr *h = s->hdr;
    int bad = 0;
    uint64_t top = atomic_load_explicit(&h->heap_top, memory_order_relaxed);
    for (uint64_t off = s->g.heap_off; off < top;) {
        struct blk_hdr *b = shmstore__blk(s, off);
        if (!b)
            return SHMSTORE_ECORRUPT;
        for (unsigned w = 0; w < PIN_WORDS; w++) {
            uint64_t bits = atomic_load_explicit(&b->pins[w], memory_order_relaxed);
            if (bits && !(b->size & BLK_USED)) {
                shmstore__report(rep, cap, pos, "free block %" PRIu64 " is pinned\n", off);
                bad = 1;
            }
            for (; bits; bits &= bits - 1) {
                uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(bits);
                if (slot >= s->g.n_slots ||
                    atomic_load_explicit(&shmstore__proc_slot(s, slot)->state,
                                         memory_order_acquire) != SLOT_LIVE) {
                    shmstore__report(rep, cap, pos, "block %" PRIu64 " pinned by free slot %u\n",
                                     off, slot);
                    bad = 1;
                }
            }
        }
        off += b->size & BLK_SIZE_MASK;
    }
    for (uint32_t i = 0; i < s->g.n_slots; i++) {
        struct proc_slot *ps = shmstore__proc_slot(s, i);
        if (atomic_load_explicit(&ps->state, memory_order_acquire) != SLOT_LIVE)
            continue;
        for (uint32_t k = 0; k < s->g.n_leases; k++) {
            uint64_t off = atomic_load_explicit(&ps->leases[k].off, memory_order_acquire);
            if (off && !shmstore__blk(s, off)) {
                shmstore__report(rep, cap, pos, "slot %u leases invalid block %" PRIu64 "\n", i, off);
                bad = 1;
            }
        }
    }
    return bad ? SHMSTORE_ECORRUPT : 0;
}

SHMSTORE_API int shmstore_check(shmstore_t *s, char *rep, size_t cap)
{
    size_t pos = 0;
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    if (rep && cap)
        rep[0] = '\0';
    if ((r = shmstore__lock(s)) < 0)
        return r;
    int bad = 0;
    const struct store_hdr *h = s->hdr;
    if (h->capacity != s->g.capacity || h->heap_off != s->g.heap_off ||
        h->slots_off != s->g.slots_off || h->n_slots != s->g.n_slots ||
        h->n_leases != s->g.n_leases || h->slot_size != s->g.slot_size) {
        shmstore__report(rep, cap, &pos, "header geometry changed since this process opened "
                         "the store\n");
        bad = 1;
    }
    if (shmstore__alloc_check(s, false, rep, cap, &pos) < 0) {
        bad = 1;
        goto out; /* the walk is not trustworthy: stop before following offsets */
    }
    if (shmstore__index_check(s, rep, cap, &pos) < 0) {
        bad = 1;
        goto out;
    }
    struct obj_check c = {rep, cap, &pos, 0, 0};
    if (shmstore__index_foreach(s, check_obj, &c) < 0 || c.bad)
        bad = 1;
    if (c.n != s->hdr->n_objects) {
        shmstore__report(rep, cap, &pos, "%" PRIu64 " objects indexed, header says %" PRIu64 "\n",
                         c.n, s->hdr->n_objects);
        bad = 1;
    }
    if (check_leases(s, rep, cap, &pos) < 0)
        bad = 1;
    int64_t lost = unreachable(s, NULL);
    if (lost != 0) {
        shmstore__report(rep, cap, &pos, "%" PRId64 " allocated blocks are unreachable (run gc)\n",
                         lost);
        bad = 1;
    }
out:
    shmstore__unlock(s);
    return bad ? shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s' is inconsistent: %s", s->name,
                                  rep && cap ? rep : "")
               : 0;
}

SHMSTORE_API int shmstore_gc(shmstore_t *s, shmstore_gc_stats_t *st)
{
    shmstore_gc_stats_t local = {0};
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    shmstore__proc_recover_dead(s, &local);
    if ((r = shmstore__lock(s)) < 0)
        return r;
    r = shmstore__repair_locked(s, &local);
    shmstore__unlock(s);
    if (st)
        *st = local;
    return r;
}
