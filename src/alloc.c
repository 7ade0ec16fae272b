/* alloc.c - the store's one allocator: TLSF bins over boundary-tagged blocks.
 *
 * Theory of operation
 * - The heap is [heap_off, heap_top): a gap-free sequence of blocks. Each block starts
 *   with struct blk_hdr whose `size` covers header and payload (a multiple of 64, low bit
 *   BLK_USED) and whose `prev_size` is the size of the block before it. Walking forward
 *   by `size` visits every block; that walk is what the checker and repair use.
 * - Free blocks sit in TLSF bins (first level = floor(log2 size), 4 sub-bins each) as
 *   doubly linked lists through free_next/free_prev; two bitmaps find the smallest
 *   non-empty bin that is large enough in O(1). Adjacent free blocks are always merged.
 * - Every byte below heap_top has been committed with fallocate(). The heap grows only
 *   by fallocate'ing more of the sparse file first, so running out of memory is -ENOSPC
 *   here, at allocation time, and never SIGBUS when the memory is touched later. Freed
 *   blocks keep their pages: steady-state reuse causes no page faults.
 * - All functions run with the store's metadata mutex held. A process that dies inside
 *   leaves the lists possibly half-updated; the next locker sees EOWNERDEAD and calls
 *   shmstore__alloc_check(repair=true), which rebuilds every list and tag from the walk.
 *   Splits write the new tail header before shrinking the head, so a walk never steps
 *   into a header that was not written.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "internal.h"

/* Growth step of the heap: large enough that fallocate is rare, small enough that a
 * store of a few MiB is not committed at once. */
#define GROW_MIN (256u * 1024u)

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

static struct blk_hdr *hdr_at(const shmstore_t *s, uint64_t off)
{
    return (struct blk_hdr *)((char *)s->hdr + off);
}

static uint64_t bsize(const struct blk_hdr *b)
{
    return b->size & BLK_SIZE_MASK;
}

static unsigned fls64(uint64_t x)
{
    return 63u - (unsigned)__builtin_clzll(x);
}

/* Bin of a block of `size` bytes (size >= BLK_MIN). */
static void bin_of(uint64_t size, unsigned *fl, unsigned *sl)
{
    unsigned f = fls64(size);
    *fl = f;
    *sl = (unsigned)(size >> (f - SL_BITS)) & (SL_COUNT - 1);
}

/* Racy by design: readers validate offsets that the allocator may be reusing. */
SHMSTORE__RACY struct blk_hdr *shmstore__blk(const shmstore_t *s, uint64_t off)
{
    const struct store_hdr *h = s->hdr;
    uint64_t top = atomic_load_explicit(&h->heap_top, memory_order_acquire);
    if (off < s->g.heap_off || off % BLK_ALIGN || top > s->map_len || off > top ||
        top - off < BLK_HDR_SIZE)
        return NULL;
    struct blk_hdr *b = hdr_at(s, off);
    uint64_t size = b->size & BLK_SIZE_MASK; /* not bsize(): no instrumented call */
    if (size < BLK_MIN || size > top - off || (b->tag & 0xffff0000u) != BLK_TAG_MAGIC)
        return NULL;
    return b;
}

/* Racy by design like shmstore__blk(): a seqlock reader may ask about a stale block. */
SHMSTORE__RACY uint64_t shmstore__blk_payload_cap(const struct blk_hdr *b)
{
    return (b->size & BLK_SIZE_MASK) - BLK_HDR_SIZE;
}

/* A free-list link read from the mapping is followed only if it names a valid block. */
static bool link_ok(const shmstore_t *s, uint64_t off)
{
    return off == 0 || shmstore__blk(s, off) != NULL;
}

static int corrupt(shmstore_t *s, uint64_t off)
{
    return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': allocator lists are corrupt near "
                            "offset %" PRIu64 "; run `shmstore check`", s->name, off);
}

static int bin_insert(shmstore_t *s, uint64_t off)
{
    struct store_hdr *h = s->hdr;
    struct blk_hdr *b = hdr_at(s, off);
    unsigned fl, sl;
    bin_of(bsize(b), &fl, &sl);
    uint64_t head = h->free_heads[fl][sl];
    if (!link_ok(s, head))
        return corrupt(s, head);
    b->size &= ~BLK_USED;
    b->tag = BLK_TAG_FREE;
    b->owner = 0;
    b->free_prev = 0;
    b->free_next = head;
    if (head)
        hdr_at(s, head)->free_prev = off;
    h->free_heads[fl][sl] = off;
    h->sl_bitmap[fl] |= 1u << sl;
    h->fl_bitmap |= 1ull << fl;
    return 0;
}

static int bin_remove(shmstore_t *s, uint64_t off)
{
    struct store_hdr *h = s->hdr;
    struct blk_hdr *b = hdr_at(s, off);
    unsigned fl, sl;
    bin_of(bsize(b), &fl, &sl);
    if (!link_ok(s, b->free_prev) || !link_ok(s, b->free_next) ||
        (!b->free_prev && h->free_heads[fl][sl] != off))
        return corrupt(s, off);
    if (b->free_prev)
        hdr_at(s, b->free_prev)->free_next = b->free_next;
    else
        h->free_heads[fl][sl] = b->free_next;
    if (b->free_next)
        hdr_at(s, b->free_next)->free_prev = b->free_prev;
    if (!h->free_heads[fl][sl]) {
        h->sl_bitmap[fl] &= ~(1u << sl);
        if (!h->sl_bitmap[fl])
            h->fl_bitmap &= ~(1ull << fl);
    }
    b->free_next = b->free_prev = 0;
    return 0;
}

/* The smallest non-empty bin whose every block has at least `size` bytes. */
static uint64_t bin_find(shmstore_t *s, uint64_t size)
{
    struct store_hdr *h = s->hdr;
    unsigned fl, sl;
    /* Round up to the next bin boundary so that any block of the found bin fits. */
    uint64_t rounded = size + (1ull << (fls64(size) - SL_BITS)) - 1;
    bin_of(rounded, &fl, &sl);
    if (fl >= FL_COUNT)
        return 0;
    /* Bitmaps come from the mapping: mask them to the bins that exist. */
    const uint32_t sl_all = (1u << SL_COUNT) - 1;
    uint32_t sl_map = h->sl_bitmap[fl] & (~0u << sl) & sl_all;
    if (!sl_map) {
        uint64_t fl_map = h->fl_bitmap & (~0ull << (fl + 1)) & ((1ull << FL_COUNT) - 1);
        if (!fl_map)
            return 0;
        fl = (unsigned)__builtin_ctzll(fl_map);
        sl_map = h->sl_bitmap[fl] & sl_all;
        if (!sl_map)
            return 0;
    }
    sl = (unsigned)__builtin_ctz(sl_map);
    return h->free_heads[fl][sl];
}

/* Point the block after `off` (if any) back at `off`'s size. */
static void fix_next_prev(shmstore_t *s, uint64_t off)
{
    uint64_t next = off + bsize(hdr_at(s, off));
    if (next < atomic_load_explicit(&s->hdr->heap_top, memory_order_relaxed)) {
        if (shmstore__blk(s, next))
            hdr_at(s, next)->prev_size = bsize(hdr_at(s, off));
    } else {
        s->hdr->last_off = off;
    }
}

/* The file range this thread committed with shmstore__precommit() for the allocation it
 * is about to make: grow() does not commit it again (a fallocate of committed pages still
 * walks them, ~0.3 us per page, under the mutex). Pages of a store file are never given
 * back (no hole punching), so the range stays committed. */
static _Thread_local struct {
    const shmstore_t *s;
    uint64_t off, len;
} precommitted;

void shmstore__precommit(shmstore_t *s, uint64_t payload_len)
{
    precommitted.s = NULL;
    uint64_t top = atomic_load_explicit(&s->hdr->heap_top, memory_order_acquire);
    uint64_t len = align_up(payload_len + BLK_HDR_SIZE, BLK_ALIGN);
    if (!payload_len || top >= s->g.capacity)
        return;
    if (len > s->g.capacity - top)
        len = s->g.capacity - top;
    /* Best effort: a failure (-ENOSPC) is the allocation's to report, under the mutex. */
    if (shmstore__os.fallocate(s->fd, top, len) == 0) {
        precommitted.s = s;
        precommitted.off = top;
        precommitted.len = len;
    }
}

/* fallocate [off, off + len) less what this thread precommitted (consumed here). */
static int commit(shmstore_t *s, uint64_t off, uint64_t len)
{
    uint64_t end = off + len, pend = precommitted.off + precommitted.len;
    if (precommitted.s == s && precommitted.off <= off && pend > off)
        off = pend < end ? pend : end;
    precommitted.s = NULL;
    return off < end ? shmstore__os.fallocate(s->fd, off, end - off) : 0;
}

static int grow(shmstore_t *s, uint64_t need)
{
    struct store_hdr *h = s->hdr;
    uint64_t top = atomic_load_explicit(&h->heap_top, memory_order_relaxed);
    uint64_t avail = s->g.capacity - top;
    /* A free last block merges with the new space, so only the difference is needed. */
    if (h->last_off && !shmstore__blk(s, h->last_off))
        return corrupt(s, h->last_off);
    if (h->last_off && !(hdr_at(s, h->last_off)->size & BLK_USED)) {
        uint64_t have = bsize(hdr_at(s, h->last_off));
        if (have >= need)
            return 0; /* large enough already; bin_find() missed it only by rounding */
        need -= have;
    }
    uint64_t step = need > GROW_MIN ? need : GROW_MIN;
    if (step > avail)
        step = avail;
    step &= ~(uint64_t)(BLK_ALIGN - 1);
    if (step < need || step < BLK_MIN) {
        return shmstore__seterr(-ENOSPC,
                                "store '%s' is full: %" PRIu64 " more bytes needed, %" PRIu64
                                " left of its capacity %" PRIu64
                                "; create it with a larger capacity or delete objects",
                                s->name, need, avail, s->g.capacity);
    }
    int r = commit(s, top, step);
    if (r < 0) {
        uint64_t total = 0, free_b = 0;
        shmstore__os.statvfs_size(s->dir, &total, &free_b);
        const char *hint = total == 64ull << 20
                               ? "; 64 MB is Docker's default /dev/shm: run the container with "
                                 "--shm-size=8g, or remount it larger"
                               : "; free memory there, or make that filesystem larger "
                                 "(e.g. mount -o remount,size=8G DIR)";
        return shmstore__seterr(r,
                                "store '%s': cannot commit %" PRIu64 " bytes of memory in %s "
                                "(%" PRIu64 " of %" PRIu64 " bytes free)%s",
                                s->name, step, s->dir, free_b, total, r == -ENOSPC ? hint : "");
    }
    /* The new space becomes one free block, merged with a free last block. */
    struct blk_hdr *nb = hdr_at(s, top);
    memset(nb, 0, BLK_HDR_SIZE);
    nb->size = step;
    nb->prev_size = h->last_off ? bsize(hdr_at(s, h->last_off)) : 0;
    nb->tag = BLK_TAG_FREE;
    atomic_store_explicit(&h->heap_top, top + step, memory_order_release);
    uint64_t off = top;
    if (h->last_off && !(hdr_at(s, h->last_off)->size & BLK_USED)) {
        off = h->last_off;
        if (bin_remove(s, off) < 0)
            return SHMSTORE_ECORRUPT;
        hdr_at(s, off)->size += step;
    }
    h->last_off = off;
    return bin_insert(s, off);
}


int shmstore__alloc(shmstore_t *s, uint64_t payload_len, uint32_t tag, uint64_t owner,
                    uint64_t *off_out)
{
    struct store_hdr *h = s->hdr;
    if (payload_len > s->g.capacity)
        return shmstore__seterr(-ENOSPC,
                                "store '%s': %" PRIu64 " bytes requested, more than its capacity %" PRIu64,
                                s->name, payload_len, s->g.capacity);
    uint64_t need = align_up(payload_len + BLK_HDR_SIZE, BLK_ALIGN);
    if (need < BLK_MIN)
        need = BLK_MIN;
    uint64_t off = bin_find(s, need);
    if (!off) {
        int r = grow(s, need);
        if (r < 0)
            return r;
        /* The grown space is the free last block, at least `need` long. (bin_find
         * would round `need` up to the next bin and could miss it.) */
        off = h->last_off;
        if (!off || (hdr_at(s, off)->size & BLK_USED) || bsize(hdr_at(s, off)) < need)
            return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': allocator lost a grown block",
                                    s->name);
    }
    struct blk_hdr *b = shmstore__blk(s, off);
    if (!b || (b->size & BLK_USED) || bsize(b) < need || bin_remove(s, off) < 0)
        return corrupt(s, off);
    uint64_t size = bsize(b);
    if (size - need >= BLK_MIN) {
        /* Split: the tail header first, then shrink the head (see the theory above). */
        struct blk_hdr *t = hdr_at(s, off + need);
        memset(t, 0, BLK_HDR_SIZE);
        t->size = size - need;
        t->prev_size = need;
        t->tag = BLK_TAG_FREE;
        b->size = need;
        fix_next_prev(s, off + need);
        if (bin_insert(s, off + need) < 0) {
            b->size = size; /* undo the split: keep the whole block */
            return corrupt(s, off);
        }
        size = need;
    }
    b->size = size | BLK_USED;
    b->tag = tag;
    b->owner = owner;
    atomic_store_explicit(&b->state, BLK_LIVE, memory_order_relaxed);
    atomic_store_explicit(&b->seq, 0, memory_order_relaxed);
    for (unsigned i = 0; i < PIN_WORDS; i++)
        atomic_store_explicit(&b->pins[i], 0, memory_order_relaxed);
    h->used_bytes += size;
    h->n_blocks++;
    *off_out = off;
    return 0;
}

void shmstore__free(shmstore_t *s, uint64_t off)
{
    struct store_hdr *h = s->hdr;
    struct blk_hdr *b = hdr_at(s, off);
    uint64_t top = atomic_load_explicit(&h->heap_top, memory_order_relaxed);
    h->used_bytes -= bsize(b);
    h->n_blocks--;
    b->size &= ~BLK_USED;
    b->tag = BLK_TAG_FREE;
    /* A reader that still holds this block's old offset must see its seq change. */
    atomic_store_explicit(&b->seq, 1, memory_order_release);
    /* Merge with free neighbours. On corrupt links the block stays unlisted (a leak the
     * checker reports) rather than following a bad offset. */
    uint64_t next = off + bsize(b);
    struct blk_hdr *nb = next < top ? shmstore__blk(s, next) : NULL;
    if (nb && !(nb->size & BLK_USED)) {
        if (bin_remove(s, next) < 0)
            return;
        b->size += bsize(nb);
    }
    struct blk_hdr *pb = b->prev_size && b->prev_size <= off - s->g.heap_off
                             ? shmstore__blk(s, off - b->prev_size)
                             : NULL;
    if (pb && !(pb->size & BLK_USED) && bsize(pb) == b->prev_size) {
        uint64_t prev = off - b->prev_size;
        if (bin_remove(s, prev) < 0)
            return;
        pb->size += bsize(b);
        off = prev;
    }
    fix_next_prev(s, off);
    bin_insert(s, off);
}

void shmstore__alloc_init(shmstore_t *s)
{
    struct store_hdr *h = s->hdr;
    atomic_store_explicit(&h->heap_top, s->g.heap_off, memory_order_relaxed);
    h->last_off = 0;
    h->used_bytes = h->n_blocks = 0;
    h->fl_bitmap = 0;
    memset(h->sl_bitmap, 0, sizeof(h->sl_bitmap));
    memset(h->free_heads, 0, sizeof(h->free_heads));
}

/* Walk every block. Checks sizes, tags and prev_size; counts used bytes; compares the
 * free lists with the walk. With `repair`, rebuilds prev_size, merges adjacent free
 * blocks, recounts and rebuilds every free list from the walk. */
int shmstore__alloc_check(shmstore_t *s, bool repair, char *rep, size_t cap, size_t *pos)
{
    struct store_hdr *h = s->hdr;
    uint64_t top = atomic_load_explicit(&h->heap_top, memory_order_relaxed);
    int bad = 0;
    if (top < s->g.heap_off || top > s->g.capacity || top % BLK_ALIGN) {
        shmstore__report(rep, cap, pos, "heap_top %" PRIu64 " outside [%" PRIu64 ", %" PRIu64 "]\n",
                         top, s->g.heap_off, s->g.capacity);
        return SHMSTORE_ECORRUPT;
    }
    if (repair) {
        h->fl_bitmap = 0;
        memset(h->sl_bitmap, 0, sizeof(h->sl_bitmap));
        memset(h->free_heads, 0, sizeof(h->free_heads));
    }
    uint64_t used = 0, n_used = 0, n_free = 0, prev = 0, last = 0;
    for (uint64_t off = s->g.heap_off; off < top;) {
        struct blk_hdr *b = hdr_at(s, off);
        uint64_t size = bsize(b);
        if (size < BLK_MIN || size > top - off || (b->tag & 0xffff0000u) != BLK_TAG_MAGIC) {
            shmstore__report(rep, cap, pos, "block at %" PRIu64 ": bad size %" PRIu64 " or tag %#x\n",
                             off, size, b->tag);
            return SHMSTORE_ECORRUPT;
        }
        uint64_t want_prev = prev ? bsize(hdr_at(s, prev)) : 0;
        if (b->prev_size != want_prev) {
            if (!repair) {
                shmstore__report(rep, cap, pos, "block at %" PRIu64 ": prev_size %" PRIu64
                                 " but previous block has %" PRIu64 "\n", off, b->prev_size, want_prev);
                bad = 1;
            }
            b->prev_size = want_prev;
        }
        /* alloc sets USED then the tag; free clears USED then the tag. A crash between
         * the two leaves them disagreeing, and in both cases the block was not (or no
         * longer) attached to anything: it is free. */
        bool is_used = (b->size & BLK_USED) && b->tag != BLK_TAG_FREE;
        if (is_used != !!(b->size & BLK_USED) || is_used != (b->tag != BLK_TAG_FREE)) {
            if (!repair) {
                shmstore__report(rep, cap, pos, "block at %" PRIu64 ": used bit and tag disagree\n", off);
                bad = 1;
            } else {
                b->size &= ~BLK_USED;
                b->tag = BLK_TAG_FREE;
            }
        }
        if (is_used) {
            used += size;
            n_used++;
        } else if (prev && !(hdr_at(s, prev)->size & BLK_USED)) {
            if (!repair) {
                shmstore__report(rep, cap, pos, "blocks at %" PRIu64 " and %" PRIu64
                                 " are both free and adjacent\n", prev, off);
                bad = 1;
            } else {
                /* Merge into the previous free block, already in its bin. */
                if (bin_remove(s, prev) < 0)
                    return SHMSTORE_ECORRUPT;
                hdr_at(s, prev)->size += size;
                if (bin_insert(s, prev) < 0)
                    return SHMSTORE_ECORRUPT;
                off = prev + bsize(hdr_at(s, prev));
                last = prev;
                continue;
            }
        } else {
            n_free++;
            if (repair && bin_insert(s, off) < 0)
                return SHMSTORE_ECORRUPT;
        }
        prev = off;
        last = off;
        off += size;
    }
    if (repair) {
        h->used_bytes = used;
        h->n_blocks = n_used;
        h->last_off = last;
        return 0;
    }
    if (used != h->used_bytes || n_used != h->n_blocks || last != h->last_off) {
        shmstore__report(rep, cap, pos, "allocator counters: used %" PRIu64 "/%" PRIu64
                         " blocks %" PRIu64 "/%" PRIu64 " last %" PRIu64 "/%" PRIu64 "\n",
                         h->used_bytes, used, h->n_blocks, n_used, h->last_off, last);
        bad = 1;
    }
    /* Every free list: well linked, in the right bin, and together exactly the free walk. */
    uint64_t listed = 0;
    for (unsigned fl = 0; fl < FL_COUNT; fl++)
        for (unsigned sl = 0; sl < SL_COUNT; sl++) {
            uint64_t pv = 0;
            for (uint64_t off = h->free_heads[fl][sl]; off; off = hdr_at(s, off)->free_next) {
                struct blk_hdr *b = shmstore__blk(s, off);
                unsigned f2, s2;
                if (!b || (b->size & BLK_USED) || b->free_prev != pv || listed > n_free) {
                    shmstore__report(rep, cap, pos, "free list %u/%u broken at %" PRIu64 "\n", fl,
                                     sl, off);
                    return SHMSTORE_ECORRUPT;
                }
                bin_of(bsize(b), &f2, &s2);
                if (f2 != fl || s2 != sl) {
                    shmstore__report(rep, cap, pos, "free block %" PRIu64 " in wrong bin\n", off);
                    bad = 1;
                }
                listed++;
                pv = off;
            }
            bool has = h->free_heads[fl][sl] != 0;
            if (has != !!(h->sl_bitmap[fl] & (1u << sl)) ||
                (h->sl_bitmap[fl] != 0) != !!(h->fl_bitmap & (1ull << fl))) {
                shmstore__report(rep, cap, pos, "bin bitmaps disagree at %u/%u\n", fl, sl);
                bad = 1;
            }
        }
    if (listed != n_free) {
        shmstore__report(rep, cap, pos, "%" PRIu64 " free blocks listed, %" PRIu64 " walked\n",
                         listed, n_free);
        bad = 1;
    }
    return bad ? SHMSTORE_ECORRUPT : 0;
}
