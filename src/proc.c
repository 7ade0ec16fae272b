/* proc.c - the process table: slots, liveness, leases and recovery of dead processes.
 *
 * Theory of operation
 * - Slot i of the process table belongs to whoever holds the open-file-description lock
 *   (F_OFD_SETLK) on byte i of the store file. The kernel drops that lock when the last
 *   reference to the description goes, i.e. when the process dies: "lock free but slot
 *   LIVE" means "owner dead", with no PID-reuse race and no heartbeat. Whoever takes the
 *   lock of a dead slot recovers it, so recovery of one slot is never concurrent.
 * - The locks are taken on a description that was never mapped: a mapping holds a
 *   reference to the description it was made from, and a forked child inherits the
 *   mapping, so a lock on the mapped description would outlive a parent whose child lives
 *   on. The atfork handler (store.c) closes the child's copy of the descriptor.
 * - Leases. A process pins block B by (1) recording B in its own slot's lease set, then
 *   (2) setting its bit in B's pin mask (fetch_or). Unpinning clears the bit, then the
 *   record. Only the owner writes its slot. Because the pin is one bit per slot, not a
 *   count, recovery is exact whatever instruction the owner died at: it clears the dead
 *   slot's bit in every recorded block, and clearing a bit that was never set is
 *   harmless. Threads of one process share the bit; the slot records how many pins the
 *   process holds per block, under a process-local mutex.
 * - A block whose owner let go of it while it was pinned is ORPHAN: the last unpin frees
 *   it. Both sides write then read with seq_cst (the releaser: state ORPHAN, then pins;
 *   an unpinner: pins, then state), so at least one of them sees the block free and
 *   unowned; a CAS ORPHAN -> FREEING picks exactly one to free it.
 * - Writer locks and waits held by a dead slot are recorded in `held[]` / `waits[]` and
 *   undone by recovery, through the kind's operations (kinds.c): the core never needs to
 *   know what a kind's lock looks like.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct proc_slot *shmstore__proc_slot(const shmstore_t *s, uint32_t i)
{
    return (struct proc_slot *)((char *)s->hdr + s->g.slots_off +
                                (uint64_t)i * s->g.slot_size);
}

static uint64_t pin_bit(uint32_t slot)
{
    return 1ull << (slot % 64);
}

static_assert(SHMSTORE_PROCS_MAX <= 64 * sizeof(((struct store_hdr *)0)->live_hint) / 8,
              "live_hint has a bit per slot");

/* live_hint (layout.h) changes only under slot i's OFD lock. */
static void hint_set(shmstore_t *s, uint32_t i)
{
    atomic_fetch_or_explicit(&s->hdr->live_hint[i / 64], pin_bit(i), memory_order_seq_cst);
}

static void hint_clear(shmstore_t *s, uint32_t i)
{
    atomic_fetch_and_explicit(&s->hdr->live_hint[i / 64], ~pin_bit(i), memory_order_seq_cst);
}

static bool hinted(shmstore_t *s, uint32_t i)
{
    return atomic_load_explicit(&s->hdr->live_hint[i / 64], memory_order_acquire) & pin_bit(i);
}

bool shmstore__proc_is_alive(shmstore_t *s, uint32_t i)
{
    if (i == s->slot)
        return true;
    /* An error reading the lock is treated as alive: never recover a slot by mistake. */
    return shmstore__os.ofd_getlk(s->fd, i) != 0;
}

bool shmstore__blk_pinned(const struct blk_hdr *b)
{
    for (unsigned i = 0; i < PIN_WORDS; i++)
        if (atomic_load_explicit(&b->pins[i], memory_order_seq_cst))
            return true;
    return false;
}

static uint64_t lease_hash(uint64_t off, uint32_t mask)
{
    return ((off >> 6) * 0x9e3779b97f4a7c15ull >> 20) & mask;
}

/* Index of `off` in slot `ps`'s lease set, or of the empty entry where it would go (-1:
 * full). The owner reads its own set relaxed (under its lease mutex); other processes
 * looking for hazards read seq_cst (see leased_by_anyone). */
static int64_t lease_find(struct proc_slot *ps, uint32_t n, uint64_t off, bool *found,
                          memory_order order)
{
    uint32_t mask = n - 1;
    for (uint64_t i = lease_hash(off, mask), k = 0; k < n; i = (i + 1) & mask, k++) {
        uint64_t e = atomic_load_explicit(&ps->leases[i].off, order);
        if (e == off) {
            *found = true;
            return (int64_t)i;
        }
        if (e == 0) {
            *found = false;
            return (int64_t)i;
        }
    }
    *found = false;
    return -1;
}

/* Does any live process list block `off` in its lease set (a pin, or a reader's hazard
 * between reading an offset and pinning it)? Loads are seq_cst: they pair with the
 * reader's seq_cst hazard store then re-read of the block's slot (shmstore__pin), against
 * our caller's seq_cst removal of the block from that slot. An entry cannot move while
 * its owner is in that window (it holds its lease mutex), and once the window closes the
 * pin bit is set, which the caller reads after this. */
static bool leased_by_anyone(shmstore_t *s, uint64_t off)
{
    for (uint32_t i = 0; i < s->g.n_slots; i++) {
        struct proc_slot *ps = shmstore__proc_slot(s, i);
        bool found;
        if (atomic_load_explicit(&ps->state, memory_order_seq_cst) == SLOT_LIVE &&
            lease_find(ps, s->g.n_leases, off, &found, memory_order_seq_cst) >= 0 && found)
            return true;
    }
    return false;
}

/* How long a freer waits for a reader's hazard (no pin) to resolve: ~a few us. */
#define HAZARD_SPINS 2000

/* With the metadata mutex held: free ORPHAN block `b` unless someone pins it. The block
 * goes ORPHAN -> FREEING (seq_cst), then the pins are read (seq_cst); a view pins, then
 * reads the state (seq_cst; shmstore__pin_check_live). One of the two sees the other: the
 * view backs off from a FREEING block, or we put the block back to ORPHAN and leave it
 * to the last unpin. Returns true when freed. */
bool shmstore__blk_free_if_unpinned(shmstore_t *s, uint64_t off, struct blk_hdr *b)
{
    for (unsigned spins = 0;;) {
        uint32_t want = BLK_ORPHAN;
        if (!(b->size & BLK_USED) ||
            !atomic_compare_exchange_strong_explicit(&b->state, &want, BLK_FREEING,
                                                     memory_order_seq_cst, memory_order_relaxed))
            return false;
        /* Hazards first, then pins: see leased_by_anyone(). */
        if (!leased_by_anyone(s, off) && !shmstore__blk_pinned(b)) {
            shmstore__free(s, off);
            return true;
        }
        atomic_store_explicit(&b->state, BLK_ORPHAN, memory_order_seq_cst);
        /* A pin: its last unpin frees the block (if that pin went away meanwhile, its
         * unpin saw FREEING and left the block to us: look again). */
        if (shmstore__blk_pinned(b))
            return false;
        /* A hazard without a pin is a reader between publishing its hazard and finding
         * the block gone from its slot: a few instructions under its lease mutex, after
         * which it looks elsewhere and never touches this block. Wait it out, or the block
         * would stay ORPHAN until gc; only a reader preempted in that window leaves it so. */
        if (leased_by_anyone(s, off)) {
            if (++spins > HAZARD_SPINS)
                return false;
            shmstore__os_cpu_relax();
        }
    }
}

/* A freer looks at a block for a few hundred ns (under the mutex): spin that long before
 * taking the mutex to wait for it. */
#define UNORPHAN_SPINS 1000

/* A pin was just dropped (bit cleared) while its lease record still stands, held in place
 * by the lease mutex (entries shift only under it). The record is a hazard every freer
 * respects (blk_free_if_unpinned reads hazards, then pins), so the block cannot be freed
 * under us yet: this is the last moment its state may be read.
 * After the record goes, the block may be freed, merged and reused by anyone, and not
 * one of its bytes is ours to read (not even atomically: a new object's memset races
 * with it). seq_cst: the unpinner's half of the Dekker pair with the releaser, which
 * stores ORPHAN and then reads pins and hazards. */
static bool orphaned(struct blk_hdr *b)
{
    return atomic_load_explicit(&b->state, memory_order_seq_cst) == BLK_ORPHAN;
}

void shmstore__blk_unorphan(shmstore_t *s, struct blk_hdr *b)
{
    for (int i = 0;; i++) {
        uint32_t want = BLK_ORPHAN;
        /* seq_cst: as every state change a freer's look pairs with */
        if (atomic_compare_exchange_strong_explicit(&b->state, &want, BLK_LIVE,
                                                    memory_order_seq_cst, memory_order_relaxed) ||
            want != BLK_FREEING)
            return;
        if (i < UNORPHAN_SPINS) {
            shmstore__os_cpu_relax();
            continue;
        }
        /* A freer's look happens under the metadata mutex: holding it, no live freer is
         * mid-look, and a FREEING left by a dead one is ours to undo. */
        if (shmstore__lock(s) == 0) {
            want = BLK_FREEING;
            atomic_compare_exchange_strong_explicit(&b->state, &want, BLK_LIVE,
                                                    memory_order_seq_cst, memory_order_relaxed);
            shmstore__unlock(s);
            if (want == BLK_FREEING)
                return;
        }
    }
}

void shmstore__blk_release_locked(shmstore_t *s, uint64_t off)
{
    struct blk_hdr *b = shmstore__blk(s, off);
    if (!b)
        return;
    atomic_store_explicit(&b->state, BLK_ORPHAN, memory_order_seq_cst);
    shmstore__blk_free_if_unpinned(s, off, b);
}

bool shmstore__blk_is_freeing(const struct blk_hdr *b)
{
    /* seq_cst: after the caller's seq_cst pin; pairs with blk_free_if_unpinned() */
    return atomic_load_explicit(&b->state, memory_order_seq_cst) == BLK_FREEING;
}

/* ---- leases ------------------------------------------------------------------------ */

static void lease_erase(struct proc_slot *ps, uint32_t n, uint64_t i);

int shmstore__pin(shmstore_t *s, uint64_t off, _Atomic uint64_t *src)
{
    struct proc_slot *ps = shmstore__proc_slot(s, s->slot);
    uint32_t n = s->g.n_leases;
    bool found;
    pthread_mutex_lock(&s->lease_mu);
    int64_t i = lease_find(ps, n, off, &found, memory_order_relaxed);
    if (found) {
        ps->leases[i].count++;
        pthread_mutex_unlock(&s->lease_mu);
        return 0;
    }
    /* Keep a quarter of the set empty so that probe sequences stay short. */
    if (i < 0 || atomic_load_explicit(&ps->n_leases, memory_order_relaxed) + 1 > n - n / 4) {
        pthread_mutex_unlock(&s->lease_mu);
        return shmstore__seterr(SHMSTORE_ELEASES,
                                "store '%s': this process holds %u leases (views and open "
                                "handles), the most a store created with n_leases=%u allows; "
                                "release views or close handles",
                                s->name, n - n / 4, n);
    }
    ps->leases[i].count = 1;
    /* seq_cst: the record is our hazard; it must be visible before we re-read `src` (and
     * before the pin bit, for recovery after a crash) */
    atomic_store_explicit(&ps->leases[i].off, off, memory_order_seq_cst);
    if (src && atomic_load_explicit(src, memory_order_seq_cst) != off) {
        /* The block left its slot since we read it: it may be freed and reused by now, so
         * its pin word is not ours to touch. The caller looks again. */
        lease_erase(ps, n, (uint64_t)i);
        pthread_mutex_unlock(&s->lease_mu);
        return 1;
    }
    /* Only now is the block ours to look at: before the hazard was confirmed it could be
     * freed and merged into a neighbour, its header gone (a retry, not corruption). */
    struct blk_hdr *b = shmstore__blk(s, off);
    if (!b) {
        lease_erase(ps, n, (uint64_t)i);
        pthread_mutex_unlock(&s->lease_mu);
        return shmstore__seterr(SHMSTORE_ECORRUPT, "store '%s': lease of invalid block %" PRIu64,
                                s->name, off);
    }
    atomic_fetch_add_explicit(&ps->n_leases, 1, memory_order_relaxed);
    /* seq_cst: pairs with the writer's seq_cst seq store then pins load (value.c) */
    atomic_fetch_or_explicit(&b->pins[s->slot / 64], pin_bit(s->slot), memory_order_seq_cst);
    pthread_mutex_unlock(&s->lease_mu);
    return 0;
}

/* In a fork child: pin block `off`, which the parent leases (`parent`: the parent's
 * handle as the child inherited it), under our own slot. Under the metadata mutex, which
 * every free takes, so nothing is freed while we look. The parent's record may still be
 * a hazard of a failed pin (its block already freed): a block that is not a used version
 * block is "not held", and one reused at the same offset is caught by the caller, which
 * checks that the block still holds the inherited version (a writer may also have
 * refilled it in place, which takes no mutex). A scan can miss an entry the parent's set
 * is shifting: look a few times. Returns 0, 1 if the parent no longer holds it, or an
 * error. */
int shmstore__pin_inherited(shmstore_t *s, const shmstore_t *parent, uint64_t off)
{
    if (parent->slot >= s->g.n_slots)
        return 1;
    struct proc_slot *pps = shmstore__proc_slot(s, parent->slot);
    int r = shmstore__lock(s);
    if (r < 0)
        return r;
    r = 1;
    if (atomic_load_explicit(&pps->state, memory_order_seq_cst) == SLOT_LIVE &&
        pps->attach_ns == parent->attach_ns) {
        for (int scans = 0; scans < 4 && r == 1; scans++) {
            bool found;
            if (lease_find(pps, s->g.n_leases, off, &found, memory_order_seq_cst) < 0 || !found)
                continue;
            /* A freed block keeps a header that shmstore__blk() accepts (merged or not):
             * only a used version block may take our pin bit. */
            struct blk_hdr *b = shmstore__blk(s, off);
            if (!b || !(b->size & BLK_USED) || b->tag != BLK_TAG_DATA)
                break;
            r = shmstore__pin(s, off, NULL);
        }
    }
    shmstore__unlock(s);
    return r;
}

/* Remove entry i from the open-addressed set by backward shift (no tombstones). A crash
 * mid-shift can leave an entry twice; recovery clearing a bit twice is harmless. */
static void lease_erase(struct proc_slot *ps, uint32_t n, uint64_t i)
{
    uint32_t mask = n - 1;
    for (uint64_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        uint64_t e = atomic_load_explicit(&ps->leases[j].off, memory_order_relaxed);
        if (e == 0)
            break;
        uint64_t home = lease_hash(e, mask);
        /* Move e back to i if i lies cyclically in [home, j). */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            ps->leases[i].count = ps->leases[j].count;
            atomic_store_explicit(&ps->leases[i].off, e, memory_order_release);
            i = j;
        }
    }
    atomic_store_explicit(&ps->leases[i].off, 0, memory_order_release);
    ps->leases[i].count = 0;
}

/* Clear our pin bit of block `b` (seq_cst: pairs with blk_release_locked's state store
 * then pins load). With the lease mutex held. */
static void pin_clear(shmstore_t *s, struct blk_hdr *b)
{
    atomic_fetch_and_explicit(&b->pins[s->slot / 64], ~pin_bit(s->slot), memory_order_seq_cst);
}

/* Erase record i of our lease set (its pin already cleared), with the lease mutex held. */
static void record_erase(shmstore_t *s, struct proc_slot *ps, uint64_t i)
{
    lease_erase(ps, s->g.n_leases, i);
    atomic_fetch_sub_explicit(&ps->n_leases, 1, memory_order_relaxed);
}

/* The last unpin of an ORPHAN block frees it. Reading the state is safe only while our
 * record stands (orphaned()), and freeing takes the metadata mutex, which ranks above
 * the lease mutex. So: with the lease mutex, clear the pin and read the state; a block
 * still owned (the common case) just loses its record. An ORPHAN one gets its pin back
 * (another thread may pin it meanwhile, and a count-0 record alone is a weak hazard: a
 * scan can miss it while the set shifts), and is freed with both mutexes taken in order. */
void shmstore__unpin(shmstore_t *s, uint64_t off)
{
    bool found;
    pthread_mutex_lock(&s->lease_mu);
    if (s->is_closed) { /* close dropped every lease with our slot */
        pthread_mutex_unlock(&s->lease_mu);
        return;
    }
    struct proc_slot *ps = shmstore__proc_slot(s, s->slot);
    uint32_t n = s->g.n_leases;
    struct blk_hdr *b = shmstore__blk(s, off);
    int64_t i = lease_find(ps, n, off, &found, memory_order_relaxed);
    if (!found || --ps->leases[i].count > 0) {
        pthread_mutex_unlock(&s->lease_mu);
        return;
    }
    if (b)
        pin_clear(s, b);
    if (!b || !orphaned(b)) { /* still owned: its owner frees it */
        record_erase(s, ps, (uint64_t)i);
        pthread_mutex_unlock(&s->lease_mu);
        return;
    }
    atomic_fetch_or_explicit(&b->pins[s->slot / 64], pin_bit(s->slot), memory_order_seq_cst);
    pthread_mutex_unlock(&s->lease_mu);

    bool locked = shmstore__lock(s) == 0; /* if not, it stays ORPHAN for the repair pass */
    pthread_mutex_lock(&s->lease_mu);
    i = s->is_closed ? -1 : lease_find(ps, n, off, &found, memory_order_relaxed);
    bool last = i >= 0 && found && ps->leases[i].count == 0; /* nobody pinned it again */
    if (last) {
        pin_clear(s, b);
        record_erase(s, ps, (uint64_t)i);
    }
    pthread_mutex_unlock(&s->lease_mu);
    if (locked) { /* the mutex every free takes: the block is still there to look at */
        if (last)
            shmstore__blk_free_if_unpinned(s, off, b);
        shmstore__unlock(s);
    }
}

/* ---- held locks and registered waits ---------------------------------------------- */

static int slot_add(_Atomic uint64_t *arr, unsigned n, uint64_t rec)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t zero = 0;
        if (atomic_compare_exchange_strong_explicit(&arr[i], &zero, rec, memory_order_release,
                                                    memory_order_relaxed))
            return (int)i;
    }
    return -1;
}

int shmstore__proc_hold(shmstore_t *s, uint64_t rec)
{
    struct proc_slot *ps = shmstore__proc_slot(s, s->slot);
    if (slot_add(ps->held, SLOT_HELD_MAX, rec) < 0)
        return shmstore__seterr(SHMSTORE_ELEASES,
                                "this process already holds %u writer locks in store '%s'",
                                SLOT_HELD_MAX, s->name);
    return 0;
}

void shmstore__proc_unhold(shmstore_t *s, uint64_t rec)
{
    struct proc_slot *ps = shmstore__proc_slot(s, s->slot);
    for (unsigned i = 0; i < SLOT_HELD_MAX; i++) {
        uint64_t want = rec;
        if (atomic_compare_exchange_strong_explicit(&ps->held[i], &want, 0, memory_order_release,
                                                    memory_order_relaxed))
            return;
    }
}

int shmstore__proc_wait_reg(shmstore_t *s, uint64_t rec, _Atomic uint64_t *mask)
{
    struct proc_slot *ps = shmstore__proc_slot(s, s->slot);
    int idx = -1;
    pthread_mutex_lock(&s->wait_mu);
    for (unsigned k = 0; k < SLOT_WAITS_MAX && idx < 0; k++)
        if (s->wait_count[k] && atomic_load_explicit(&ps->waits[k], memory_order_relaxed) == rec)
            idx = (int)k;
    if (idx >= 0) {
        s->wait_count[idx]++; /* another thread of ours: the bit is already set */
    } else {
        for (unsigned k = 0; k < SLOT_WAITS_MAX && idx < 0; k++)
            if (!s->wait_count[k])
                idx = (int)k;
        if (idx >= 0) {
            s->wait_count[idx] = 1;
            /* The record before the bit (recovery clears bits of recorded objects). */
            atomic_store_explicit(&ps->waits[idx], rec, memory_order_seq_cst);
            /* seq_cst: before the waiter re-reads head; pairs with publish() */
            atomic_fetch_or_explicit(&mask[s->slot / 64], pin_bit(s->slot), memory_order_seq_cst);
        }
    }
    pthread_mutex_unlock(&s->wait_mu);
    return idx;
}

void shmstore__proc_wait_unreg(shmstore_t *s, int idx, _Atomic uint64_t *mask)
{
    if (idx < 0)
        return;
    pthread_mutex_lock(&s->wait_mu);
    if (--s->wait_count[idx] == 0) {
        atomic_fetch_and_explicit(&mask[s->slot / 64], ~pin_bit(s->slot), memory_order_seq_cst);
        atomic_store_explicit(&shmstore__proc_slot(s, s->slot)->waits[idx], 0, memory_order_release);
    }
    pthread_mutex_unlock(&s->wait_mu);
}

/* ---- attach, detach, recovery ------------------------------------------------------ */

/* Undo everything dead slot i held. The caller holds i's OFD lock. */
static void recover_locked_slot(shmstore_t *s, uint32_t i, shmstore_gc_stats_t *st)
{
    struct proc_slot *ps = shmstore__proc_slot(s, i);
    /* Locks and waits first: they name objects whose headers the leases below may be
     * keeping alive; dropped first, an object could be freed and its offset reused. */
    for (unsigned k = 0; k < SLOT_HELD_MAX; k++) {
        uint64_t rec = atomic_exchange_explicit(&ps->held[k], 0, memory_order_acq_rel);
        struct obj_hdr *o = rec ? shmstore__obj(s, rec & ~REC_TAG_MASK) : NULL;
        if (o) {
            shmstore__kind(o->kind)->recover(s, o, rec, i);
            if (st)
                st->locks_released++;
        }
    }
    for (unsigned k = 0; k < SLOT_WAITS_MAX; k++) {
        uint64_t rec = atomic_exchange_explicit(&ps->waits[k], 0, memory_order_acq_rel);
        struct obj_hdr *o = rec ? shmstore__obj(s, rec & ~REC_TAG_MASK) : NULL;
        _Atomic uint64_t *mask =
            o ? shmstore__kind(o->kind)->waiters(o, (unsigned)(rec & REC_TAG_MASK)) : NULL;
        if (mask) /* exact: clearing a bit is idempotent */
            atomic_fetch_and_explicit(&mask[i / 64], ~pin_bit(i), memory_order_seq_cst);
    }
    /* Leases, under the metadata mutex (taken at the first record): every free takes it,
     * so each block stays put while we clear the dead pin and free it if that was the
     * last. (Records are erased in place, which breaks their probe chains: the later ones
     * are no longer hazards a freer would find, so without the mutex a block could go
     * between its pin being cleared and its state being read.) If the mutex cannot be
     * had, pins and records still go, and ORPHAN blocks wait for the repair pass. */
    uint32_t n = s->g.n_leases;
    int locked = 1; /* 1: not tried yet, 0: held, < 0: failed */
    for (uint32_t k = 0; k < n; k++) {
        uint64_t off = atomic_load_explicit(&ps->leases[k].off, memory_order_acquire);
        if (!off)
            continue;
        if (locked == 1)
            locked = shmstore__lock(s);
        struct blk_hdr *b = shmstore__blk(s, off);
        if (b)
            atomic_fetch_and_explicit(&b->pins[i / 64], ~pin_bit(i), memory_order_seq_cst);
        /* The record goes before the free attempt, which looks for records (hazards). */
        atomic_store_explicit(&ps->leases[k].off, 0, memory_order_seq_cst);
        ps->leases[k].count = 0;
        if (b && locked == 0)
            shmstore__blk_free_if_unpinned(s, off, b);
        if (st)
            st->leases_dropped++;
    }
    if (locked == 0)
        shmstore__unlock(s);
    atomic_store_explicit(&ps->n_leases, 0, memory_order_relaxed);
    ps->pid = 0;
    atomic_store_explicit(&ps->state, SLOT_FREE, memory_order_release);
    hint_clear(s, i);
    if (st)
        st->dead_procs++;
}

int shmstore__proc_recover_slot(shmstore_t *s, uint32_t i, shmstore_gc_stats_t *st)
{
    if (i == s->slot || i >= s->g.n_slots)
        return 0;
    struct proc_slot *ps = shmstore__proc_slot(s, i);
    if (atomic_load_explicit(&ps->state, memory_order_acquire) != SLOT_LIVE)
        return 0;
    if (shmstore__os.ofd_setlk(s->fd, i) < 0)
        return 0; /* alive, or another process is recovering it */
    if (atomic_load_explicit(&ps->state, memory_order_acquire) == SLOT_LIVE)
        recover_locked_slot(s, i, st);
    shmstore__os.ofd_unlk(s->fd, i);
    return 1;
}

int shmstore__proc_recover_dead(shmstore_t *s, shmstore_gc_stats_t *st)
{
    int n = 0;
    for (uint32_t i = 0; i < s->g.n_slots; i++)
        n += shmstore__proc_recover_slot(s, i, st);
    return n;
}

/* Try to make slot i ours: take its lock; a free slot is claimed, a dead one (live state,
 * no lock holder) is recovered first when `take_dead`. Returns true when claimed. */
static bool claim(shmstore_t *s, uint32_t i, bool take_dead)
{
    struct proc_slot *ps = shmstore__proc_slot(s, i);
    if (!take_dead && atomic_load_explicit(&ps->state, memory_order_acquire) == SLOT_LIVE)
        return false;
    if (shmstore__os.ofd_setlk(s->fd, i) < 0)
        return false;
    if (atomic_load_explicit(&ps->state, memory_order_acquire) == SLOT_LIVE) {
        if (!take_dead) { /* its owner attached and died since we looked */
            shmstore__os.ofd_unlk(s->fd, i);
            return false;
        }
        recover_locked_slot(s, i, NULL);
    }
    for (unsigned k = 0; k < SLOT_HELD_MAX; k++)
        atomic_store_explicit(&ps->held[k], 0, memory_order_relaxed);
    for (unsigned k = 0; k < SLOT_WAITS_MAX; k++)
        atomic_store_explicit(&ps->waits[k], 0, memory_order_relaxed);
    ps->pid = (int32_t)getpid();
    ps->attach_ns = shmstore__os_now_real();
    atomic_store_explicit(&ps->n_leases, 0, memory_order_relaxed);
    hint_set(s, i);
    atomic_store_explicit(&ps->state, SLOT_LIVE, memory_order_release);
    s->slot = i;
    s->attach_ns = ps->attach_ns;
    return true;
}

int shmstore__proc_attach(shmstore_t *s, bool recover)
{
    uint32_t n = s->g.n_slots;
    bool ok = false;
    /* A slot the hint calls free is free (the hint is a superset of the live ones): the
     * common case touches one slot. */
    for (uint32_t i = 0; i < n && !ok; i++)
        ok = !hinted(s, i) && claim(s, i, false);
    for (uint32_t i = 0; i < n && !ok; i++)
        ok = claim(s, i, recover);
    /* Without `recover`, dead slots are taken only when no free one is left. */
    for (uint32_t i = 0; i < n && !ok; i++)
        ok = claim(s, i, true);
    if (!ok)
        return shmstore__seterr(SHMSTORE_EPROCS,
                                "store '%s': all %u process slots are taken by live processes; "
                                "close some, or create the store with more (n_procs)",
                                s->name, n);
    /* Recovery on attach: reclaim what dead processes left behind, in the slots the hint
     * says may be live (gc reads them all). */
    for (uint32_t i = 0; recover && i < n; i++)
        if (hinted(s, i))
            shmstore__proc_recover_slot(s, i, NULL);
    return 0;
}

void shmstore__proc_detach(shmstore_t *s)
{
    /* Drop whatever leases are left (views not released before close). */
    recover_locked_slot(s, s->slot, NULL);
    shmstore__os.ofd_unlk(s->fd, s->slot);
}

SHMSTORE_API int shmstore_procs(shmstore_t *s, int (*fn)(const shmstore_proc_info_t *, void *),
                                void *arg)
{
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < s->g.n_slots; i++) {
        struct proc_slot *ps = shmstore__proc_slot(s, i);
        if (atomic_load_explicit(&ps->state, memory_order_acquire) != SLOT_LIVE)
            continue;
        shmstore_proc_info_t info = {
            .slot = i,
            .pid = ps->pid,
            .is_alive = shmstore__proc_is_alive(s, i),
            .is_self = i == s->slot,
            .n_leases = atomic_load_explicit(&ps->n_leases, memory_order_relaxed),
            .attach_ns = ps->attach_ns,
        };
        for (unsigned k = 0; k < SLOT_HELD_MAX; k++) {
            uint64_t rec = atomic_load_explicit(&ps->held[k], memory_order_acquire);
            /* No lock: the object may go meanwhile. Its header is validated, and its name
             * copied bounded; a stale name is the price of never blocking. */
            struct obj_hdr *o = rec ? shmstore__obj(s, rec & ~REC_TAG_MASK) : NULL;
            if (!rec)
                continue;
            if (info.n_held++ == 0 && o) {
                uint32_t n = o->name_len <= SHMSTORE_NAME_MAX ? o->name_len : SHMSTORE_NAME_MAX;
                memcpy(info.holding, o->name, n);
                info.holding[n] = '\0';
            }
        }
        r = fn(&info, arg);
        if (r)
            return r;
    }
    return 0;
}
