/* internal.h - what two or more modules of the library share. Not installed. */
#ifndef SHMSTORE_INTERNAL_H
#define SHMSTORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "os.h"
#include "shmstore.h"

#define SHMSTORE__HIDDEN __attribute__((visibility("hidden")))

/* Marks a function that reads bytes another process may be changing and validates what
 * it read afterwards (seqlock readers re-check the sequence number; offsets that may be
 * stale are re-checked against the block's seq and owner). ThreadSanitizer does not
 * instrument these reads, so it still reports every other race. */
#define SHMSTORE__RACY __attribute__((no_sanitize("thread"), noinline))
#if defined(__SANITIZE_THREAD__)
#define SHMSTORE__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMSTORE__TSAN 1
#endif
#endif

/* A process's attachment to a store (process-local memory). */
struct shmstore {
    struct store_hdr *hdr;   /* the mapping, at offset 0 */
    uint64_t map_len;        /* = capacity */
    /* The header's geometry, copied once validated: later reads never trust the mapping
     * for sizes (another process could rewrite the header). */
    struct {
        uint64_t capacity, heap_off, slots_off;
        uint32_t n_slots, n_leases, slot_size;
    } g;
    int fd;                  /* never mapped (store.c reopen_unmapped): locks, fallocate */
    uint32_t slot;           /* our process-table slot */
    uint64_t attach_ns;      /* our slot's attach_ns: tells our slot from a later owner's */
    uint64_t fork_gen;       /* shmstore__fork_gen at attach: a child sees it differ */
    pthread_mutex_t lease_mu; /* guards our slot's lease set and is_closed */
    pthread_mutex_t wait_mu;  /* guards wait_count and our slot's waits[] */
    uint32_t wait_count[SLOT_WAITS_MAX]; /* threads of ours waiting per waits[] entry */
    bool is_closed;          /* shmstore_close() ran: the mapping is gone */
    uint64_t n_sets_owned;   /* arrayset.c, mutex: our sets being loaded or tied (at least) */
    _Atomic uint64_t refs;   /* the open itself + value handles + views: the last frees */
    char name[SHMSTORE_STORE_NAME_MAX + 1];
    char dir[4096];
};

struct shmstore_value {
    shmstore_t *s;
    uint64_t obj_off;        /* OBJ block offset */
    uint64_t gen;            /* object generation at open */
    struct obj_hdr *obj;
    struct val_body *body;
    /* Writer state between reserve and commit (one reservation per handle). */
    int reserved_rot;        /* rotation index being written, -1 = none */
    _Atomic uintptr_t reserver; /* the reserving thread's token, 0 = none (see value.c) */
    _Atomic uint64_t published; /* the last version published through this handle */
};

/* Incremented in every child after fork (pthread_atfork); handles compare. */
extern _Atomic uint64_t shmstore__fork_gen;

/* errors.c: the per-thread detailed message. Returns err for `return seterr(...)`. */
int shmstore__seterr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void shmstore__clearerr(void);
/* Put back a message saved from shmstore_errmsg() (after a clean-up call overwrote it). */
void shmstore__errmsg_restore(const char *saved);

/* Mapping access: translate an offset to a pointer only after checking that
 * [off, off+len) lies inside the mapping. Returns NULL when it does not. */
static inline void *shmstore__at(const shmstore_t *s, uint64_t off, uint64_t len)
{
    if (off < STORE_HDR_SIZE || off > s->map_len || len > s->map_len - off)
        return NULL;
    return (char *)s->hdr + off;
}
static inline uint64_t shmstore__off(const shmstore_t *s, const void *p)
{
    return (uint64_t)((const char *)p - (const char *)s->hdr);
}

/* store.c */
/* 0, or SHMSTORE_EFORK if `s` was opened by an ancestor of this process. Inline: every
 * call of the API starts with it, and `.version` polls from Python cost ~15 ns in all. */
int shmstore__forked(const shmstore_t *s); /* sets the message, returns SHMSTORE_EFORK */
static inline int shmstore__check_fork(const shmstore_t *s)
{
    if (__builtin_expect(atomic_load_explicit(&shmstore__fork_gen, memory_order_relaxed) !=
                         s->fork_gen, 0))
        return shmstore__forked(s);
    return 0;
}
void shmstore__store_ref(shmstore_t *s);
void shmstore__store_unref(shmstore_t *s); /* frees the handle after close + last ref */
int shmstore__lock(shmstore_t *s);   /* robust metadata mutex; repairs on EOWNERDEAD */
void shmstore__unlock(shmstore_t *s);
int shmstore__repair_locked(shmstore_t *s, shmstore_gc_stats_t *st);

/* proc.c: slots, leases, liveness, recovery */
int shmstore__proc_attach(shmstore_t *s, bool recover);
void shmstore__proc_detach(shmstore_t *s);
struct proc_slot *shmstore__proc_slot(const shmstore_t *s, uint32_t i);
bool shmstore__proc_is_alive(shmstore_t *s, uint32_t i);  /* someone holds its lock */
int shmstore__proc_recover_dead(shmstore_t *s, shmstore_gc_stats_t *st);
int shmstore__proc_recover_slot(shmstore_t *s, uint32_t i, shmstore_gc_stats_t *st);
/* Pin block `blk_off` for this process (lease). `src`, if not NULL, is where the offset
 * was read: the pin is made only if it still holds it after our lease record (the
 * hazard) is visible; returns 1 when it does not (look again). Blocks whose memory is
 * already safe (an object's header, under the metadata mutex) pass NULL.
 * Returns 0, 1, SHMSTORE_ELEASES or SHMSTORE_ECORRUPT. */
int shmstore__pin(shmstore_t *s, uint64_t blk_off, _Atomic uint64_t *src);
int shmstore__pin_inherited(shmstore_t *s, const shmstore_t *parent, uint64_t blk_off);
void shmstore__unpin(shmstore_t *s, uint64_t blk_off);
bool shmstore__blk_pinned(const struct blk_hdr *b);
/* Drop a block its owner no longer references: free now if unpinned, else mark it
 * ORPHAN so the last unpin frees it. Caller holds the metadata mutex. */
void shmstore__blk_release_locked(shmstore_t *s, uint64_t blk_off);
/* An ORPHAN block that this process pins goes back to LIVE: its owner takes it again (a
 * queue entry committed). Not a plain store: a freer may be looking at the block
 * (FREEING) and would then put back ORPHAN over it; this waits its look out. */
void shmstore__blk_unorphan(shmstore_t *s, struct blk_hdr *b);
/* Mutex held; block already ORPHAN: free it unless pinned (see proc.c). */
bool shmstore__blk_free_if_unpinned(shmstore_t *s, uint64_t off, struct blk_hdr *b);
/* After pinning: is the block being freed? Then the pin must be dropped. */
bool shmstore__blk_is_freeing(const struct blk_hdr *b);
/* Record / forget in our slot something we hold in an object: `rec` is the object's
 * offset | a kind tag (REC_TAG_MASK); recovery hands it to the kind's `recover`. */
int shmstore__proc_hold(shmstore_t *s, uint64_t rec);
void shmstore__proc_unhold(shmstore_t *s, uint64_t rec);
/* Register a sleeping thread of ours on wait queue `rec` (object offset | which): the
 * first sets our bit in `mask`. Returns an index for unreg, or -1 when our registrations
 * are all taken (the caller then sleeps in short slices). */
int shmstore__proc_wait_reg(shmstore_t *s, uint64_t rec, _Atomic uint64_t *mask);
void shmstore__proc_wait_unreg(shmstore_t *s, int idx, _Atomic uint64_t *mask);

/* alloc.c: TLSF over boundary-tagged blocks. All calls with the mutex held.
 * alloc returns the block offset (payload at off + BLK_HDR_SIZE) or -ENOSPC. */
int shmstore__alloc(shmstore_t *s, uint64_t payload_len, uint32_t tag, uint64_t owner,
                    uint64_t *off_out);
void shmstore__free(shmstore_t *s, uint64_t blk_off);
/* Without the mutex, best effort, for a large allocation this thread is about to make:
 * commit the memory above heap_top that its growth would commit under the mutex (its
 * next growth then skips that range; fallocate never changes data, and memory the
 * allocation does not use is used by later growth). payload_len 0 forgets it. */
void shmstore__precommit(shmstore_t *s, uint64_t payload_len);
struct blk_hdr *shmstore__blk(const shmstore_t *s, uint64_t blk_off); /* NULL if invalid */
uint64_t shmstore__blk_payload_cap(const struct blk_hdr *b);
void shmstore__alloc_init(shmstore_t *s);
/* Walk and check every block; rebuild free lists and prev_size tags when `repair`. */
int shmstore__alloc_check(shmstore_t *s, bool repair, char *rep, size_t cap, size_t *pos);

/* index.c: name -> object. All calls with the mutex held. */
uint64_t shmstore__hash(const char *name, size_t len);
int shmstore__name_check(const char *name, size_t *len);
bool shmstore__utf8_valid(const unsigned char *p, size_t n);
int shmstore__index_find(shmstore_t *s, const char *name, size_t len, uint64_t *obj_off);
int shmstore__index_insert(shmstore_t *s, uint64_t hash, uint64_t obj_off);
int shmstore__index_remove(shmstore_t *s, uint64_t hash, uint64_t obj_off);
int shmstore__index_check(shmstore_t *s, char *rep, size_t cap, size_t *pos);
/* Drop entries of deleted or invalid objects and recount (repair pass, mutex held). */
int shmstore__index_repair(shmstore_t *s);
int shmstore__index_foreach(shmstore_t *s, int (*fn)(shmstore_t *, uint64_t obj_off, void *),
                            void *arg);
struct obj_hdr *shmstore__obj(const shmstore_t *s, uint64_t obj_off); /* NULL if invalid */

/* copy.c: copy a payload into a block (non-temporal when large); copy out of a block a
 * writer may be reusing (the caller re-checks the block's seq afterwards). */
void shmstore__copy_in(void *dst, const void *src, size_t n);
/* As copy_in, streaming (non-temporal) from 4 KiB on: for a cold destination that is not
 * read back soon, such as a slot of a table much larger than the last-level cache. */
void shmstore__copy_in_cold(void *dst, const void *src, size_t n);
void shmstore__seqlock_copy(void *dst, const void *src, size_t n);

/* datum.c */
/* What a NULL descriptor means: BYTES, no attrs (a constant: no 300-byte init per put). */
extern const shmstore_datum_t shmstore__bytes_datum;
int shmstore__datum_to_ver(const shmstore_datum_t *d, size_t len, struct ver_hdr *vh);
int shmstore__ver_to_datum(const shmstore_t *s, const struct blk_hdr *b,
                           const struct ver_hdr *vh, shmstore_datum_t *d, const void **data);
uint64_t shmstore__ver_block_len(uint32_t attrs_len, uint64_t len);
/* Copy a datum's used fields (not the unused shape entries). */
void shmstore__datum_copy(shmstore_datum_t *dst, const shmstore_datum_t *src);

/* kinds.c: the operations the core (store, proc, check, index) calls on an object of a
 * given kind. The core never names a kind: a new kind adds its table to kinds.c and
 * nothing else. `body_len` is the fixed part of the kind's body after struct obj_hdr
 * (an object whose block cannot hold it is invalid); a kind may use more (its own check
 * validates that). Calls marked "mutex" run with the metadata mutex held. */
struct shmstore__kind_ops {
    const char *name;   /* "value": for messages and tools */
    uint32_t body_len;
    /* mutex: fill the kind's fields of `out` (the core filled name, kind, is_sealed). */
    void (*info)(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out);
    /* mutex: report what is inconsistent in the object's body; 0 or SHMSTORE_ECORRUPT. */
    int (*check)(shmstore_t *s, struct obj_hdr *o, char *rep, size_t cap, size_t *pos);
    /* mutex: call add(arg, off) for every block the object references (reachability);
     * return what add returned if non-zero, else 0. */
    int (*refs)(shmstore_t *s, struct obj_hdr *o, int (*add)(void *arg, uint64_t off), void *arg);
    /* Dead slot `dead` recorded `rec` (the object's offset | a kind-defined tag in the low
     * 6 bits) in its held[] list: release whatever it held there. No mutex held; the
     * caller holds the dead slot's lock, so this never runs twice for one slot. */
    void (*recover)(shmstore_t *s, struct obj_hdr *o, uint64_t rec, uint32_t dead);
    /* The waiter mask `which` of the object (see shmstore__wait), or NULL. */
    _Atomic uint64_t *(*waiters)(struct obj_hdr *o, unsigned which);
    /* Delete the object at `off` of generation `gen`, whose header the caller pinned:
     * mark it deleted, unindex it and release its blocks (under the mutex, taken by the
     * kind after whatever kind lock must come first). */
    int (*del)(shmstore_t *s, uint64_t off, uint64_t gen);
    /* Optional (NULL: the kind owns no names below its own). An object may own the names
     * "<its name>/<rest>" of parts that are values in their own right (an array set's
     * members). Mutex held. sub_info: describe part `rest` of `o` in *out (full name
     * included): 0, -ENOENT (no such part), -EBUSY (one, not visible yet). sub_list: call
     * fn(info, arg) for every visible part whose full name starts with prefix[0..len);
     * return what fn returned if non-zero, else 0. */
    int (*sub_info)(shmstore_t *s, struct obj_hdr *o, const char *rest, shmstore_obj_info_t *out);
    int (*sub_list)(shmstore_t *s, struct obj_hdr *o, const char *prefix, size_t prefix_len,
                    int (*fn)(const shmstore_obj_info_t *, void *), void *arg);
};
/* The operations of kind `kind`, or NULL for a kind this build does not know. */
const struct shmstore__kind_ops *shmstore__kind(uint32_t kind);
extern const struct shmstore__kind_ops shmstore__value_ops;
extern const struct shmstore__kind_ops shmstore__queue_ops;
extern const struct shmstore__kind_ops shmstore__table_ops;
extern const struct shmstore__kind_ops shmstore__set_ops;
extern const struct shmstore__kind_ops shmstore__ring_ops;

/* Low bits of held[] and waits[] records (offsets are 64-aligned): a tag for the kind. */
#define REC_TAG_MASK 0x3full

/* store.c: objects of any kind. */
/* Is the object a handle opened at generation `gen` gone (deleted or reused)? */
static inline bool shmstore__obj_stale(const struct obj_hdr *o, uint64_t gen)
{
    return o->gen != gen || (atomic_load_explicit(&o->flags, memory_order_acquire) & OBJ_F_DELETED);
}
/* Open the object `name` of kind `kind` and pin its header (a handle's lease), creating
 * it when `create` (with `excl`: -EEXIST if it exists). A new object's block holds
 * sizeof(struct obj_hdr) + body_len bytes, zeroed; `init(s, o, arg)` (may be NULL) fills
 * its body before the object is indexed, under the metadata mutex. Returns 0 with the
 * object's offset in *off_out, -ENOENT, -EEXIST, SHMSTORE_EKIND, -ENOSPC, SHMSTORE_ELEASES
 * or what init returned (nothing is created then). `*created` (may be NULL) says
 * whether this call made it. */
int shmstore__obj_open(shmstore_t *s, const char *name, uint32_t kind, bool create, bool excl,
                       uint64_t body_len, int (*init)(shmstore_t *s, struct obj_hdr *o, void *arg),
                       void *arg, uint64_t *off_out, bool *created);
/* Mutex held: -EEXIST (with the message) if an object is called name[0..len) or an
 * object owns that name (kind op sub_info: a member of a set, visible or being loaded),
 * else 0. */
int shmstore__name_free(shmstore_t *s, const char *name, size_t len);
/* Fill `out` for object `o` (the core's fields and the kind's). Mutex not needed for
 * the core's fields; kinds say what they read. */
void shmstore__obj_info(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out);
/* Bytes of store memory block `off` occupies (0 if invalid). */
uint64_t shmstore__blk_footprint(const shmstore_t *s, uint64_t off);

/* wait.c: spin-then-futex waits on a word in the mapping, shared by every kind.
 * A wait queue is a 32-bit futex word that wakers bump, and a mask with a bit per
 * process slot that has a thread asleep (or about to sleep) on it: a waker makes a
 * system call only when some bit is set. Waiters record (object, which) in their slot,
 * so recovery clears a dead process's bit exactly (kind op `waiters`). */
struct shmstore__waitq {
    _Atomic uint32_t *word;
    _Atomic uint64_t *mask; /* PIN_WORDS words */
    uint64_t obj_off;       /* the object, for the record */
    unsigned which;         /* which of the object's queues (< 64), for the record */
};
/* Block until poll(arg) returns non-zero (returned: 1 = ready, < 0 = an error such as
 * -ESTALE) or `timeout_ns` passes (-ETIMEDOUT; 0 = poll once). Spins briefly, then
 * sleeps on the word; -EINTR when a signal interrupts the sleep. poll() must read the
 * state it tests with seq_cst loads: they pair with the waker's seq_cst state store then
 * mask load (a waiter never sleeps through a change). `slice_ns` > 0 bounds each sleep
 * and calls on_slice(arg) after a sleep that timed out (a waiter that must notice a dead
 * peer); 0 = sleep up to the timeout. */
int shmstore__wait(shmstore_t *s, const struct shmstore__waitq *q, int64_t timeout_ns,
                   int (*poll)(void *arg), int64_t slice_ns, int (*on_slice)(void *arg),
                   void *arg);
/* After a seq_cst store of the state waiters test: if any bit of the mask is set, bump
 * the word and wake every sleeper (nobody asleep: no write, no system call). */
void shmstore__wake(_Atomic uint32_t *word, _Atomic uint64_t *mask);
/* Processes with a waiter bit set in `mask` (PIN_WORDS words): for info and tools. */
unsigned shmstore__waiters_count(_Atomic uint64_t *mask);
bool shmstore__has_waiters(_Atomic uint64_t *mask);

/* view.c: leased views of blocks that hold a version descriptor (struct ver_hdr), the
 * format of value versions and queue entries alike. */
/* Describe block `b` (at `off`, which the caller has pinned) in `*out`, with `version`;
 * takes a reference on `s` for the view. Returns 0 or SHMSTORE_ECORRUPT (bad descriptor:
 * the caller unpins). */
int shmstore__view_fill(shmstore_t *s, struct blk_hdr *b, uint64_t off, uint64_t version,
                        shmstore_view_t *out);

/* check.c: report helper */
void shmstore__report(char *rep, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
