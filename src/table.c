/* table.c - tables: fixed-record replay buffers with a seqlock per record.
 *
 * Theory of operation
 * - Geometry. A table object's body (struct table_body, layout.h) holds the schema and
 *   the offset of one DATA block, allocated at creation, that holds every record slot
 *   (rows: a slot is a struct table_rec header then the fields; measured faster to
 *   gather than columns, docs/FORMAT.md) and, for a prioritized table, a sum tree. The
 *   geometry is validated once at open and copied into the handle: later operations
 *   never trust sizes read from the mapping.
 * - Tickets. `tail` is the number of records ever appended; append(n) takes n
 *   consecutive tickets with one fetch_add. Ticket i goes to slot i % capacity. The
 *   slot's `id` says which ticket it holds (+1; 0 = never written), so a reader asking
 *   for index i tells "not yet written" (id < i + 1) from "overwritten" (id > i + 1).
 * - Seqlock. A writer claims a slot by CAS of its even `seq` to the next count with its
 *   process slot and the writing bit (so a slot has at most one writer: a later lap's
 *   writer waits for an earlier one, and a writer that finds a later lap already there
 *   gives up its ticket's slot: the record would be overwritten at once). It then
 *   stores id, copies the fields and stores the even seq (release). A reader loads seq
 *   (acquire), the id, copies, then re-loads seq after an acquire fence: equal and even
 *   means the copy is whole. seq only grows (55 bits of count), so a rewrite in place
 *   between the two loads is always seen. Readers write nothing in the mapping.
 * - Crashes. A writer records (table | REC_WRITE) in its process slot's held[] list for
 *   the length of an append or write. Recovery (table_recover, on attach, gc, or by a
 *   writer that waits on a slot whose writer's process is dead) scans the table for
 *   slots whose seq is odd with the dead slot as writer: it marks their id invalid and
 *   makes seq even again. Readers never wait for a writer: after a bounded number of
 *   tries they report the record busy (gather) or draw another (sample).
 * - Priorities. The sum tree holds 64-bit fixed-point priorities: setting a leaf is an
 *   atomic exchange, and the difference is added to every ancestor with atomic adds, so
 *   concurrent updates commute and no lock exists. A sampler descends the tree with one
 *   uniform draw in [0, root); while updates are in flight a descent may meet sums that
 *   do not add up: it then lands on a leaf of priority 0 or on a slot that is not valid,
 *   and draws again.
 * - Creation. The memory of a big records block is committed (fallocate) before the
 *   metadata mutex is taken, when the table does not exist yet; the mutex then covers
 *   only the allocation of the block and the body. The object is published with
 *   init_owner naming its creator (pid and process slot), which then clears every slot
 *   header and the sum tree without the mutex (a table of 10^7 records touches every
 *   page of its block: the page faults used to block every other process's create and
 *   delete), counting its progress in init_done, and stores init_owner = 0 (release). Nobody reads or writes a slot before
 *   that: an open of the table waits for it (and gives up with -EBUSY after a second
 *   without progress: a stopped creator); an open that finds the creator dead takes the
 *   initialisation over with a CAS of init_owner (one taker; its own death is taken over
 *   the same way). The checker skips the slots of a table still initialising.
 * - Counting. n_filled counts slots ever written (a fresh slot is counted when claimed,
 *   before its id is stored), so len = min(n_filled, capacity) - n_invalid: the records
 *   that are there, not the tickets taken (advance() or an append not yet written). A
 *   record being written into a fresh slot counts during its write; a writer killed
 *   between counting a fresh slot and storing its id (two instructions) leaves the
 *   count one high.
 * - The handle pins the OBJ block and the DATA block (leases): a deleted table's memory
 *   stays until the last handle closes, so a writer or reader mid-call never touches a
 *   block reused by another object.
 * - Lock order: no table lock exists; the metadata mutex is taken at creation (for the
 *   allocation only), open and deletion.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* held[] tag: this slot is writing records of the table. */
#define REC_WRITE 1u
/* Slot headers cleared per progress step of the initialisation (and tree bytes). */
#define INIT_STEP 4096u
#define INIT_TREE_STEP (1u << 20)
/* An open waits this long for a live creator that makes no progress (stopped), in
 * sleeps of INIT_SLEEP_NS. */
#define INIT_WAIT_NS (1000ull * 1000 * 1000)
#define INIT_SLEEP_NS (200ull * 1000)
/* Reader tries on a record that stays odd or keeps changing before it says EBUSY: one
 * try is a copy plus a short pause, so ~64 tries outlast any live write of a record up to
 * a few hundred KiB (a 28 KB record is written in ~2 us here). */
#define READ_TRIES 64
#define PAUSE_SPINS 64
/* Draws one sample pick may make that all hit busy or invalid records before -EAGAIN. */
#define DRAWS_MAX 4096
/* A writer waiting for another writer of the same slot yields after this many spins
 * and checks whether that writer's process died every CHECK_EVERY yields. */
#define WRITER_SPINS 256
#define CHECK_EVERY 64
/* ... and gives up after waiting this long on one writer that is alive (a process
 * stopped mid-record, or a corrupt word naming our own slot). */
#define WRITER_WAIT_NS (1000ull * 1000 * 1000)
#define STRIDE_MAX (1ull << 32)
/* Tables of at least this many bytes of records write big fields with streaming stores
 * (copy.c): a slot written now is read back, by a sampler, long after it left the cache.
 * This VM's last-level cache is 32 MiB; bench table_append_100 measures the choice. */
#define COLD_BYTES (32ull << 20)
#define PRIO_ONE (1ull << TABLE_PRIO_FRAC_BITS)
#define GAMMA 0x9e3779b97f4a7c15ull

/* What a valid table body says, checked against its blocks. */
struct geom {
    uint64_t cap, stride, record_size, leaves, data_off;
    uint32_t n_fields;
    char *recs;             /* slot 0 */
    _Atomic uint64_t *tree; /* node 0 unused, 1 = root; NULL when not prioritized */
};

struct shmstore_table {
    shmstore_t *s;
    uint64_t obj_off, gen;
    struct obj_hdr *obj;
    struct table_body *tb;
    struct geom g;          /* validated at open */
    uint64_t prio_max;      /* largest leaf value */
    bool is_cold;           /* records larger than the cache: stream big fields in */
    _Atomic uint64_t rng;   /* the handle's PRNG counter (splitmix64) */
    shmstore_table_field_t fields[TABLE_FIELDS_MAX];
};


/* ---- helpers ------------------------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline struct table_rec *slot_at(const char *recs, uint64_t stride, uint64_t k)
{
    return (struct table_rec *)(recs + k * stride);
}

static inline uint32_t seq_owner(uint64_t seq)
{
    return (uint32_t)((seq >> TABLE_SEQ_OWNER_SHIFT) & 0xffu);
}

/* splitmix64: one 64-bit state, advanced by GAMMA per draw. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *st)
{
    return mix64(*st += GAMMA);
}

/* Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-32 for n < 2^32). */
static inline uint64_t rng_below(uint64_t *st, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(st) * n) >> 64);
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* Data block payload bytes a table of this geometry needs, or 0 on overflow. */
static uint64_t data_len(uint64_t cap, uint64_t stride, uint64_t leaves)
{
    if (cap > SHMSTORE_TABLE_CAPACITY_MAX || stride > STRIDE_MAX)
        return 0;
    uint64_t n = cap * stride, t = leaves * 2 * sizeof(uint64_t);
    return n + t < n ? 0 : n + t;
}

/* Geometry of table object `o` if its body and DATA block agree, else -1. */
static int geom_of(const shmstore_t *s, struct obj_hdr *o, struct geom *g)
{
    struct table_body *tb = (struct table_body *)(o + 1);
    g->cap = tb->capacity;
    g->stride = tb->stride;
    g->record_size = tb->record_size;
    g->leaves = tb->tree_leaves;
    g->data_off = tb->data_off;
    g->n_fields = tb->n_fields;
    if (g->cap == 0 || g->n_fields == 0 || g->n_fields > TABLE_FIELDS_MAX || g->stride % 64 ||
        g->stride < sizeof(struct table_rec) + g->record_size ||
        (g->leaves && (g->leaves < g->cap || (g->leaves & (g->leaves - 1)))) ||
        !!g->leaves != !!(tb->flags & TABLE_F_PRIORITIZED))
        return -1;
    uint64_t need = data_len(g->cap, g->stride, g->leaves);
    struct blk_hdr *b = g->data_off ? shmstore__blk(s, g->data_off) : NULL;
    if (!need || !b || b->tag != BLK_TAG_DATA || b->owner != o->gen ||
        shmstore__blk_payload_cap(b) < need)
        return -1;
    g->recs = (char *)b + BLK_HDR_SIZE;
    g->tree = g->leaves ? (_Atomic uint64_t *)(g->recs + g->cap * g->stride) : NULL;
    uint64_t sum = 0;
    for (uint32_t f = 0; f < g->n_fields; f++) {
        const struct table_field *fd = &tb->fields[f];
        if (memchr(fd->name, 0, sizeof fd->name) == NULL || !fd->name[0] ||
            memchr(fd->dtype, 0, sizeof fd->dtype) == NULL || fd->ndim > TABLE_NDIM_MAX ||
            fd->offset < sizeof(struct table_rec) || fd->offset > g->stride ||
            fd->size > g->stride - fd->offset)
            return -1;
        sum += fd->size;
    }
    return sum == g->record_size ? 0 : -1;
}

static __attribute__((cold, noinline)) int tcheck_failed(shmstore_table_t *t)
{
    int r = shmstore__check_fork(t->s);
    return r < 0 ? r : shmstore__seterr(-ESTALE, "table '%.255s' was deleted", t->obj->name);
}

static inline __attribute__((always_inline)) int tcheck(shmstore_table_t *t)
{
    if (__builtin_expect(shmstore__check_fork(t->s) < 0 || shmstore__obj_stale(t->obj, t->gen), 0))
        return tcheck_failed(t);
    return 0;
}

/* ---- the sum tree ---------------------------------------------------------------------- */

/* Set leaf k to `v`; ancestors get the difference (mod 2^64: adds commute). */
static void tree_set(_Atomic uint64_t *tree, uint64_t leaves, uint64_t k, uint64_t v)
{
    uint64_t i = leaves + k;
    /* relaxed: the tree is a hint that samplers validate against the record's seqlock */
    uint64_t old = atomic_exchange_explicit(&tree[i], v, memory_order_relaxed);
    uint64_t d = v - old;
    if (!d)
        return;
    for (i >>= 1; i >= 1; i >>= 1)
        atomic_fetch_add_explicit(&tree[i], d, memory_order_relaxed);
}

/* Descend with u in [0, root): the leaf whose prefix range holds u. */
static uint64_t tree_find(_Atomic uint64_t *tree, uint64_t leaves, uint64_t u)
{
    uint64_t i = 1;
    while (i < leaves) {
        uint64_t l = atomic_load_explicit(&tree[2 * i], memory_order_relaxed);
        if (u < l) {
            i = 2 * i;
        } else {
            u -= l;
            i = 2 * i + 1;
        }
    }
    return i - leaves;
}

/* ---- open / close ---------------------------------------------------------------------- */

struct init_arg {
    const shmstore_table_options_t *opt;
    struct table_field fields[TABLE_FIELDS_MAX];
    uint64_t stride, record_size, leaves;
};

/* Check the options and lay out the record (nothing touched in the store). */
static int plan(const char *name, const shmstore_table_options_t *opt, struct init_arg *a)
{
    if (!opt || !opt->fields || opt->n_fields == 0 || opt->n_fields > TABLE_FIELDS_MAX)
        return shmstore__seterr(-EINVAL, "table '%s': give 1..%u fields to create it", name,
                                TABLE_FIELDS_MAX);
    if (opt->capacity == 0 || opt->capacity > SHMSTORE_TABLE_CAPACITY_MAX)
        return shmstore__seterr(-EINVAL, "table '%s': capacity must be 1..2^32 records", name);
    if (opt->flags & ~SHMSTORE_TABLE_PRIORITIZED)
        return shmstore__seterr(-EINVAL, "table '%s': unknown flags 0x%x", name, opt->flags);
    uint64_t off = sizeof(struct table_rec), total = 0;
    for (uint32_t f = 0; f < opt->n_fields; f++) {
        const shmstore_table_field_t *in = &opt->fields[f];
        struct table_field *fd = &a->fields[f];
        size_t nlen = strnlen(in->name, sizeof in->name);
        if (nlen == 0 || nlen > TABLE_FIELD_NAME_MAX || !shmstore__utf8_valid(
                                                           (const unsigned char *)in->name, nlen))
            return shmstore__seterr(-EINVAL, "table '%s': field %u needs a name of 1..%u bytes of "
                                    "UTF-8", name, f, TABLE_FIELD_NAME_MAX);
        for (uint32_t g = 0; g < f; g++)
            if (strcmp(a->fields[g].name, in->name) == 0)
                return shmstore__seterr(-EINVAL, "table '%s': two fields are named '%s'", name,
                                        in->name);
        if (in->ndim > TABLE_NDIM_MAX)
            return shmstore__seterr(-EINVAL, "table '%s': field '%s' has %u dimensions (at most "
                                    "%u)", name, in->name, in->ndim, TABLE_NDIM_MAX);
        if (memchr(in->dtype, 0, sizeof in->dtype) == NULL)
            return shmstore__seterr(SHMSTORE_EDTYPE, "table '%s': field '%s' has an "
                                    "unterminated dtype", name, in->name);
        int64_t item = shmstore_dtype_itemsize(in->dtype);
        if (item <= 0)
            return shmstore__seterr(SHMSTORE_EDTYPE, "table '%s': field '%s' has dtype '%s', "
                                    "which is not a numpy dtype shmstore knows", name, in->name,
                                    in->dtype);
        uint64_t size = (uint64_t)item;
        for (uint32_t d = 0; d < in->ndim; d++) {
            if (in->shape[d] == 0 || in->shape[d] > STRIDE_MAX || size > STRIDE_MAX / in->shape[d])
                return shmstore__seterr(-EINVAL, "table '%s': field '%s' has an empty or too "
                                        "large shape", name, in->name);
            size *= in->shape[d];
        }
        /* Values of 64 bytes or more start on a cache line (aligned gathers); smaller
         * ones at their item's alignment (16 at most). */
        uint64_t align = size >= 64 ? 64 : (uint64_t)(item > 16 ? 16 : item);
        while (align & (align - 1))
            align &= align - 1;
        off = (off + align - 1) & ~(align - 1);
        memcpy(fd->name, in->name, nlen);
        memcpy(fd->dtype, in->dtype, strlen(in->dtype));
        fd->ndim = in->ndim;
        fd->itemsize = (uint32_t)item;
        memcpy(fd->shape, in->shape, in->ndim * sizeof(uint64_t));
        fd->size = size;
        fd->offset = off;
        off += size;
        total += size;
        if (off > STRIDE_MAX)
            return shmstore__seterr(-EINVAL, "table '%s': a record of more than 4 GiB", name);
    }
    a->opt = opt;
    a->stride = (off + 63) & ~63ull;
    a->record_size = total;
    a->leaves = (opt->flags & SHMSTORE_TABLE_PRIORITIZED) ? pow2_at_least(opt->capacity) : 0;
    if (a->leaves && a->leaves > (1ull << 30))
        return shmstore__seterr(-EINVAL, "table '%s': a prioritized table holds at most 2^30 "
                                "records", name);
    if (!data_len(opt->capacity, a->stride, a->leaves))
        return shmstore__seterr(-EINVAL, "table '%s': %" PRIu64 " records of %" PRIu64 " bytes "
                                "overflow", name, opt->capacity, a->stride);
    return 0;
}

/* Who initialises a table: pid << 32 | process slot + 1 (never 0). */
static uint64_t init_tag(const shmstore_t *s)
{
    return (uint64_t)(uint32_t)getpid() << 32 | ((uint64_t)s->slot + 1);
}

/* Is the initialiser named by `tag` alive (its process slot held, by its pid)? */
static bool init_alive(shmstore_t *s, uint64_t tag)
{
    uint32_t slot = (uint32_t)(tag & 0xffffffffu) - 1;
    if (slot >= s->g.n_slots)
        return false;
    struct proc_slot *ps = shmstore__proc_slot(s, slot);
    if (atomic_load_explicit(&ps->state, memory_order_acquire) != SLOT_LIVE ||
        (uint32_t)ps->pid != (uint32_t)(tag >> 32))
        return false;
    return slot == s->slot || shmstore__proc_is_alive(s, slot);
}

/* Clear every slot header and the sum tree of a table whose init_owner we hold, then
 * publish it (init_owner = 0). No lock: nobody touches the slots meanwhile. */
static void init_records(struct table_body *tb, const struct geom *g)
{
    uint64_t done = atomic_load_explicit(&tb->init_done, memory_order_relaxed);
    for (uint64_t k = 0; k < g->cap; k++) {
        struct table_rec *rec = slot_at(g->recs, g->stride, k);
        atomic_store_explicit(&rec->seq, 0, memory_order_relaxed);
        atomic_store_explicit(&rec->id, 0, memory_order_relaxed);
        if (k % INIT_STEP == INIT_STEP - 1)
            atomic_store_explicit(&tb->init_done, ++done, memory_order_relaxed);
    }
    if (g->tree) {
        char *p = (char *)g->tree;
        uint64_t len = g->leaves * 2 * sizeof(uint64_t);
        for (uint64_t o = 0; o < len; o += INIT_TREE_STEP) {
            memset(p + o, 0, len - o < INIT_TREE_STEP ? len - o : INIT_TREE_STEP);
            atomic_store_explicit(&tb->init_done, ++done, memory_order_relaxed);
        }
    }
    /* release: the cleared slots before the table is ready; pairs with wait_ready() */
    atomic_store_explicit(&tb->init_owner, 0, memory_order_release);
}

/* An opened table that is not initialised yet: wait for its creator, or take the work
 * over from a dead one. Returns 0 when ready, or -EBUSY (a live creator made no
 * progress for INIT_WAIT_NS). */
static int wait_ready(shmstore_t *s, struct table_body *tb, const struct geom *g,
                      const char *name)
{
    uint64_t last = ~0ull, since = 0;
    for (;;) {
        /* acquire: pairs with init_records()' release */
        uint64_t tag = atomic_load_explicit(&tb->init_owner, memory_order_acquire);
        if (!tag)
            return 0;
        if (!init_alive(s, tag)) {
            /* acquire: after a dead taker's partial work (redone whole); one winner */
            if (atomic_compare_exchange_strong_explicit(&tb->init_owner, &tag, init_tag(s),
                                                        memory_order_acquire,
                                                        memory_order_acquire))
                init_records(tb, g);
            continue;
        }
        uint64_t done = atomic_load_explicit(&tb->init_done, memory_order_relaxed);
        uint64_t now = shmstore__os_now_mono();
        if (done != last) {
            last = done;
            since = now;
        } else if (now - since > INIT_WAIT_NS) {
            return shmstore__seterr(-EBUSY, "table '%s' is being created by process %u, which "
                                    "has made no progress for a second (stopped?)", name,
                                    (unsigned)(tag >> 32));
        }
        shmstore__os_sleep_ns(INIT_SLEEP_NS);
    }
}

/* Under the mutex: allocate the records; the creator clears them after (init_records). */
static int init_body(shmstore_t *s, struct obj_hdr *o, void *arg)
{
    struct init_arg *a = arg;
    struct table_body *tb = (struct table_body *)(o + 1);
    uint64_t cap = a->opt->capacity, len = data_len(cap, a->stride, a->leaves), off;
    if (len > s->g.capacity)
        return shmstore__seterr(-ENOSPC, "table '%.255s': %" PRIu64 " records of %" PRIu64
                                " bytes need %" PRIu64 " bytes; store '%s' holds %" PRIu64
                                " in all", o->name, cap, a->stride, len, s->name, s->g.capacity);
    int r = shmstore__alloc(s, len, BLK_TAG_DATA, o->gen, &off);
    if (r < 0)
        return r;
    /* The slots are cleared by the creator after the mutex (init_records). */
    atomic_init(&tb->init_owner, init_tag(s));
    atomic_init(&tb->init_done, 0);
    tb->capacity = cap;
    tb->stride = a->stride;
    tb->record_size = a->record_size;
    tb->data_off = off;
    tb->tree_leaves = a->leaves;
    tb->n_fields = a->opt->n_fields;
    tb->flags = a->leaves ? TABLE_F_PRIORITIZED : 0;
    atomic_init(&tb->max_prio, PRIO_ONE);
    memcpy(tb->fields, a->fields, sizeof(tb->fields));
    return 0;
}

static void fill_handle(shmstore_table_t *t, const struct geom *g)
{
    const struct table_body *tb = t->tb;
    t->g = *g;
    t->is_cold = g->cap * g->stride >= COLD_BYTES;
    /* Largest leaf such that leaves * leaf stays below 2^63 (the root never wraps). */
    t->prio_max = g->leaves ? (1ull << 63) / g->leaves : 0;
    for (uint32_t f = 0; f < g->n_fields; f++) {
        shmstore_table_field_t *out = &t->fields[f];
        memcpy(out->name, tb->fields[f].name, sizeof out->name);
        memcpy(out->dtype, tb->fields[f].dtype, sizeof out->dtype);
        out->ndim = tb->fields[f].ndim;
        memcpy(out->shape, tb->fields[f].shape, sizeof out->shape);
        out->size = tb->fields[f].size;
        out->offset = tb->fields[f].offset;
    }
}

SHMSTORE_API int shmstore_table_open(shmstore_t *s, const char *name, unsigned flags,
                                     const shmstore_table_options_t *opt, shmstore_table_t **out)
{
    struct init_arg a;
    uint64_t off;
    struct geom g;
    shmstore__clearerr();
    int r = shmstore__check_fork(s);
    if (r < 0)
        return r;
    memset(&a, 0, sizeof(a));
    if ((flags & SHMSTORE_T_CREATE) && (r = plan(name, opt, &a)) < 0)
        return r;
    if (flags & SHMSTORE_T_CREATE) {
        /* A big block's memory is committed before the mutex, not under it (it takes
         * ~0.6 ms per MiB here), unless the table exists already. */
        uint64_t len = data_len(opt->capacity, a.stride, a.leaves);
        shmstore_obj_info_t info;
        if (len >= COLD_BYTES && shmstore_info(s, name, &info) == -ENOENT)
            shmstore__precommit(s, len);
        shmstore__clearerr();
    }
    shmstore_table_t *t = calloc(1, sizeof(*t));
    if (!t)
        return shmstore__seterr(-ENOMEM, "out of process memory");
    bool created = false;
    r = shmstore__obj_open(s, name, SHMSTORE_KIND_TABLE, flags & SHMSTORE_T_CREATE,
                           flags & SHMSTORE_T_EXCL, sizeof(struct table_body), init_body, &a,
                           &off, &created);
    shmstore__precommit(s, 0); /* used by the allocation, or not needed */
    if (r < 0) {
        free(t);
        return r;
    }
    t->s = s;
    t->obj_off = off;
    t->obj = shmstore__obj(s, off);
    t->gen = t->obj->gen;
    t->tb = (struct table_body *)(t->obj + 1);
    /* The records block is pinned under the mutex, where deletion cannot free it. */
    if ((r = shmstore__lock(s)) == 0) {
        if (shmstore__obj_stale(t->obj, t->gen))
            r = shmstore__seterr(-ENOENT, "table '%s' was deleted meanwhile", name);
        else if (geom_of(s, t->obj, &g) < 0)
            r = shmstore__seterr(SHMSTORE_ECORRUPT, "table '%s': its geometry does not fit its "
                                 "blocks", name);
        else
            r = shmstore__pin(s, g.data_off, NULL);
        shmstore__unlock(s);
    }
    if (r == 0 && created) {
        uint64_t mine = init_tag(s);
        /* A process that opened it meanwhile and found us dead cannot have: we live. */
        if (atomic_load_explicit(&t->tb->init_owner, memory_order_relaxed) == mine)
            init_records(t->tb, &g);
    }
    if (r == 0 && (r = wait_ready(s, t->tb, &g, name)) < 0)
        shmstore__unpin(s, g.data_off);
    if (r < 0) {
        shmstore__unpin(s, off);
        free(t);
        return r;
    }
    fill_handle(t, &g);
    uint64_t seed = shmstore__os_now_real() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)t;
    atomic_init(&t->rng, mix64(seed));
    shmstore__store_ref(s);
    *out = t;
    return 0;
}

SHMSTORE_API void shmstore_table_close(shmstore_table_t *t)
{
    if (!t)
        return;
    shmstore_t *s = t->s;
    if (shmstore__check_fork(s) == 0) { /* in a fork child the leases are the parent's */
        shmstore__unpin(s, t->g.data_off);
        shmstore__unpin(s, t->obj_off);
    }
    free(t);
    shmstore__store_unref(s);
}

SHMSTORE_API void shmstore_table_fields(const shmstore_table_t *t,
                                        const shmstore_table_field_t **fields, uint32_t *n)
{
    *fields = t->fields;
    *n = t->g.n_fields;
}

SHMSTORE_API uint64_t shmstore_table_capacity(const shmstore_table_t *t)
{
    return t->g.cap;
}

SHMSTORE_API double shmstore_table_priority_max(const shmstore_table_t *t)
{
    return (double)t->prio_max / (double)PRIO_ONE;
}

/* ---- recovery -------------------------------------------------------------------------- */

/* Slot `rec` was being written by a process that is dead: mark its record invalid. The
 * caller made sure nobody else repairs the same process slot. */
static void invalidate(struct table_body *tb, _Atomic uint64_t *tree, uint64_t leaves,
                       struct table_rec *rec, uint64_t k, uint64_t seq)
{
    uint64_t id = atomic_load_explicit(&rec->id, memory_order_relaxed);
    if (id && !(id & TABLE_ID_INVALID)) {
        atomic_fetch_add_explicit(&tb->n_invalid, 1, memory_order_relaxed);
        atomic_store_explicit(&rec->id, id | TABLE_ID_INVALID, memory_order_relaxed);
    }
    if (tree)
        tree_set(tree, leaves, k, 0);
    /* release: the invalid id before the even seq; pairs with readers' acquire of seq */
    atomic_compare_exchange_strong_explicit(&rec->seq, &seq, seq & ~TABLE_SEQ_LOW_MASK,
                                            memory_order_release, memory_order_relaxed);
}

/* Kind op `recover`: slot `dead` was writing records of this table. */
static void table_recover(shmstore_t *s, struct obj_hdr *o, uint64_t rec, uint32_t dead)
{
    struct geom g;
    (void)rec;
    if (geom_of(s, o, &g) < 0)
        return;
    struct table_body *tb = (struct table_body *)(o + 1);
    if (atomic_load_explicit(&tb->init_owner, memory_order_acquire))
        return; /* no writer yet: the slots are not cleared */
    for (uint64_t k = 0; k < g.cap; k++) {
        struct table_rec *r = slot_at(g.recs, g.stride, k);
        uint64_t seq = atomic_load_explicit(&r->seq, memory_order_acquire);
        if ((seq & TABLE_SEQ_WRITING) && seq_owner(seq) == dead)
            invalidate(tb, g.tree, g.leaves, r, k, seq);
    }
}

/* A writer has waited long on slot word `seq`: if its writer's process is dead, recover
 * that process (which repairs the slot). A writer slot that no process holds cannot be
 * writing (the word is corrupt, or its recovery was lost): the record is repaired here. */
static void check_writer(shmstore_table_t *t, struct table_rec *rec, uint64_t k, uint64_t seq)
{
    uint32_t owner = seq_owner(seq);
    shmstore_t *s = t->s;
    if (owner == s->slot)
        return; /* another thread of ours */
    if (owner >= s->g.n_slots ||
        atomic_load_explicit(&shmstore__proc_slot(s, owner)->state, memory_order_acquire) != SLOT_LIVE)
        invalidate(t->tb, t->g.tree, t->g.leaves, rec, k, seq);
    else if (!shmstore__proc_is_alive(s, owner))
        shmstore__proc_recover_slot(s, owner, NULL);
}

/* ---- writing --------------------------------------------------------------------------- */

/* Claim slot k for record `ticket` (the slot may hold it, or an earlier one). Returns 0
 * with the odd seq in *claimed and the slot's previous id in *prev, 1 when the slot holds
 * a later record (the record `ticket` is overwritten already), or -EBUSY when a live
 * process has held it for WRITER_WAIT_NS (stopped, say by SIGSTOP). */
static int claim(shmstore_table_t *t, struct table_rec *rec, uint64_t k, uint64_t ticket,
                 uint64_t *claimed, uint64_t *prev)
{
    uint64_t mine = (uint64_t)t->s->slot << TABLE_SEQ_OWNER_SHIFT | TABLE_SEQ_WRITING;
    uint64_t since = 0, waited_on = 0;
    unsigned spins = 0, yields = 0;
    for (;;) {
        uint64_t seq = atomic_load_explicit(&rec->seq, memory_order_acquire);
        if (seq & TABLE_SEQ_WRITING) { /* another writer (a lap behind, or in place) */
            if (++spins < WRITER_SPINS) {
                cpu_relax();
                continue;
            }
            sched_yield();
            if (++yields % CHECK_EVERY)
                continue;
            uint64_t now = shmstore__os_now_mono();
            if (seq != waited_on) {
                waited_on = seq;
                since = now;
            } else if (now - since > WRITER_WAIT_NS) {
                return -EBUSY;
            }
            check_writer(t, rec, k, seq);
            continue;
        }
        /* relaxed: id changes only while seq is odd, and our CAS below fails if it did */
        uint64_t id = atomic_load_explicit(&rec->id, memory_order_relaxed);
        uint64_t held = id & ~TABLE_ID_INVALID; /* ticket + 1, 0 = none */
        if (held > ticket + 1)
            return 1;
        uint64_t next = seq + (1ull << TABLE_SEQ_COUNT_SHIFT);
        /* acquire: our copy starts after the previous writer's release of this seq */
        if (atomic_compare_exchange_weak_explicit(&rec->seq, &seq, next | mine,
                                                  memory_order_acquire, memory_order_relaxed)) {
            /* release fence: the odd seq is visible before any byte we write (the
             * seqlock writer's half of the fence pair; readers fence acquire) */
            atomic_thread_fence(memory_order_release);
            *claimed = next | mine;
            *prev = id;
            return 0;
        }
    }
}

/* Copy row j of the columns into the record at `rec`. */
static void fill(shmstore_table_t *t, struct table_rec *rec, const void *const *cols, size_t j)
{
    char *base = (char *)rec;
    for (uint32_t f = 0; f < t->g.n_fields; f++) {
        size_t sz = t->fields[f].size;
        void *dst = base + t->fields[f].offset;
        const void *src = (const char *)cols[f] + j * sz;
        if (t->is_cold)
            shmstore__copy_in_cold(dst, src, sz);
        else
            shmstore__copy_in(dst, src, sz);
    }
}

static void publish(struct table_rec *rec, uint64_t claimed)
{
    /* release: the record's bytes before the even seq; pairs with readers' acquire */
    atomic_store_explicit(&rec->seq, claimed & ~TABLE_SEQ_LOW_MASK, memory_order_release);
}

/* Write row j of cols as record `ticket` into its slot (replacing an earlier record, or
 * the same one in place). A record new in its slot gets priority `prio`; one written
 * again keeps its own. Returns as claim(). */
static int put_one(shmstore_table_t *t, uint64_t ticket, const void *const *cols, size_t j,
                   uint64_t prio)
{
    uint64_t k = ticket % t->g.cap, claimed, prev;
    struct table_rec *rec = slot_at(t->g.recs, t->g.stride, k);
    int c = claim(t, rec, k, ticket, &claimed, &prev);
    if (c != 0)
        return c;
    if (prev == 0) /* a fresh slot: counted before its id is stored (see Counting) */
        atomic_fetch_add_explicit(&t->tb->n_filled, 1, memory_order_relaxed);
    if (prev != ticket + 1) /* another record, or this one invalid */
        atomic_store_explicit(&rec->id, ticket + 1, memory_order_relaxed);
    if (prev & TABLE_ID_INVALID)
        atomic_fetch_sub_explicit(&t->tb->n_invalid, 1, memory_order_relaxed);
    fill(t, rec, cols, j);
    publish(rec, claimed);
    if (t->g.tree && prev != ticket + 1)
        tree_set(t->g.tree, t->g.leaves, k, prio);
    return 0;
}

static uint64_t new_prio(shmstore_table_t *t)
{
    uint64_t prio = t->g.tree ? atomic_load_explicit(&t->tb->max_prio, memory_order_relaxed) : 0;
    return prio > t->prio_max ? t->prio_max : prio;
}

static int busy(shmstore_table_t *t, int r)
{
    return shmstore__seterr(r, "table '%.255s': a record slot has been being written for over a "
                            "second by a process that is alive (stopped?); that record was not "
                            "written", t->obj->name);
}

static int check_cols(shmstore_table_t *t, const void *const *cols)
{
    if (!cols)
        return shmstore__seterr(-EINVAL, "table '%.255s': no columns given", t->obj->name);
    for (uint32_t f = 0; f < t->g.n_fields; f++)
        if (!cols[f])
            return shmstore__seterr(-EINVAL, "table '%.255s': field '%s' is missing",
                                    t->obj->name, t->fields[f].name);
    return 0;
}

SHMSTORE_API int shmstore_table_append(shmstore_table_t *t, const void *const *cols, size_t n,
                                       uint64_t *first)
{
    uint64_t rec_tag = t->obj_off | REC_WRITE;
    shmstore__clearerr();
    int r = tcheck(t);
    if (r < 0 || (r = check_cols(t, cols)) < 0)
        return r;
    if (n == 0 || n > t->g.cap)
        return shmstore__seterr(-EINVAL, "table '%.255s': append 1..%" PRIu64 " records, not %zu",
                                t->obj->name, t->g.cap, n);
    if ((r = shmstore__proc_hold(t->s, rec_tag)) < 0)
        return r;
    /* relaxed: tickets only need to be distinct; each slot's seq orders its bytes */
    uint64_t t0 = atomic_fetch_add_explicit(&t->tb->tail, n, memory_order_relaxed);
    uint64_t prio = new_prio(t);
    for (size_t j = 0; j < n; j++) {
        /* > 0: a later lap got here first (this record is already overwritten); < 0: this
         * record is lost, the others go in */
        int c = put_one(t, t0 + j, cols, j, prio);
        if (c < 0)
            r = c;
    }
    shmstore__proc_unhold(t->s, rec_tag);
    if (first)
        *first = t0;
    return r < 0 ? busy(t, r) : 0;
}

static int not_there(shmstore_table_t *t, uint64_t index)
{
    uint64_t tail = atomic_load_explicit(&t->tb->tail, memory_order_relaxed);
    const char *why = index >= tail                   ? "not appended yet"
                      : tail - index > t->g.cap          ? "overwritten by a later record"
                                                       : "its writer has not written it yet";
    return shmstore__seterr(-ENOENT, "table '%.255s' holds no record %" PRIu64 " (%s; %" PRIu64
                            " were appended)", t->obj->name, index, why, tail);
}

SHMSTORE_API int shmstore_table_write(shmstore_table_t *t, uint64_t first, size_t n,
                                      const void *const *cols)
{
    uint64_t rec_tag = t->obj_off | REC_WRITE, bad = 0;
    shmstore__clearerr();
    int r = tcheck(t);
    if (r < 0 || (r = check_cols(t, cols)) < 0)
        return r;
    uint64_t tail = atomic_load_explicit(&t->tb->tail, memory_order_relaxed);
    uint64_t oldest = tail > t->g.cap ? tail - t->g.cap : 0;
    if (n == 0 || first < oldest || first >= tail || n > tail - first)
        return n == 0 ? shmstore__seterr(-EINVAL, "table '%.255s': write 1 or more records",
                                         t->obj->name)
                      : not_there(t, first < oldest || first >= tail ? first : tail);
    if ((r = shmstore__proc_hold(t->s, rec_tag)) < 0)
        return r;
    uint64_t prio = new_prio(t);
    int c = 0;
    for (size_t j = 0; j < n; j++) {
        int cj = put_one(t, first + j, cols, j, prio);
        if (cj != 0 && c >= 0) { /* keep the first failure; -EBUSY before -ENOENT */
            c = cj;
            bad = first + j;
        }
    }
    shmstore__proc_unhold(t->s, rec_tag);
    return c < 0 ? busy(t, c) : c > 0 ? not_there(t, bad) : 0;
}

SHMSTORE_API int shmstore_table_advance(shmstore_table_t *t, uint64_t n, uint64_t *first)
{
    shmstore__clearerr();
    int r = tcheck(t);
    if (r < 0)
        return r;
    if (n == 0 || n > SHMSTORE_TABLE_CAPACITY_MAX)
        return shmstore__seterr(-EINVAL, "table '%.255s': advance by 1..2^32 records",
                                t->obj->name);
    /* relaxed: as append's tickets */
    uint64_t t0 = atomic_fetch_add_explicit(&t->tb->tail, n, memory_order_relaxed);
    if (first)
        *first = t0;
    return 0;
}

/* ---- reading --------------------------------------------------------------------------- */

/* Copy the record in slot k into row j of cols if it is valid and (want != 0) is record
 * want - 1. Returns 0 with its index in *index, -ENOENT (empty, or another record),
 * -ENODATA (invalid), -EBUSY (kept being written for READ_TRIES tries). Reads bytes a
 * writer may be changing and validates them after (seqlock). */
static SHMSTORE__RACY int read_slot(const shmstore_table_t *t, uint64_t k, uint64_t want,
                                    void *const *cols, size_t j, uint64_t *index)
{
    const struct table_rec *rec = slot_at(t->g.recs, t->g.stride, k);
    const char *base = (const char *)rec;
    for (int tries = 0; tries < READ_TRIES; tries++) {
        /* acquire: pairs with the writer's release in publish() */
        uint64_t s1 = atomic_load_explicit(&rec->seq, memory_order_acquire);
        if (s1 & TABLE_SEQ_WRITING) {
            for (int i = 0; i < PAUSE_SPINS; i++)
                cpu_relax();
            continue;
        }
        uint64_t id = atomic_load_explicit(&rec->id, memory_order_relaxed);
        bool mine = want ? (id & ~TABLE_ID_INVALID) == want : id != 0;
        if (mine && !(id & TABLE_ID_INVALID))
            for (uint32_t f = 0; f < t->g.n_fields; f++)
                if (cols[f])
                    shmstore__seqlock_copy((char *)cols[f] + j * t->fields[f].size,
                                           base + t->fields[f].offset, t->fields[f].size);
        /* acquire fence: our reads of the record before the re-load of seq; pairs with
         * the writer's release fence after it made seq odd */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&rec->seq, memory_order_relaxed) != s1)
            continue;
        if (!mine)
            return -ENOENT;
        if (id & TABLE_ID_INVALID)
            return -ENODATA;
        *index = (id & ~TABLE_ID_INVALID) - 1;
        return 0;
    }
    return -EBUSY;
}

static int read_failed(shmstore_table_t *t, uint64_t index, int r)
{
    if (r == -ENOENT)
        return not_there(t, index);
    if (r == -ENODATA)
        return shmstore__seterr(r, "table '%.255s': record %" PRIu64 " is invalid (its writer "
                                "died while writing it)", t->obj->name, index);
    return shmstore__seterr(r, "table '%.255s': record %" PRIu64 " is being written; try again",
                            t->obj->name, index);
}

SHMSTORE_API int shmstore_table_gather(shmstore_table_t *t, const uint64_t *indices, size_t n,
                                       void *const *cols, uint64_t *failed)
{
    shmstore__clearerr();
    int r = tcheck(t);
    if (r < 0)
        return r;
    if (!cols || (n && !indices))
        return shmstore__seterr(-EINVAL, "table '%.255s': no columns or indices given",
                                t->obj->name);
    uint64_t tail = atomic_load_explicit(&t->tb->tail, memory_order_acquire), got;
    for (size_t j = 0; j < n; j++) {
        uint64_t i = indices[j];
        r = i < tail || i < (tail = atomic_load_explicit(&t->tb->tail, memory_order_acquire))
                ? read_slot(t, i % t->g.cap, i + 1, cols, j, &got)
                : -ENOENT;
        if (r < 0) {
            if (failed)
                *failed = i;
            return read_failed(t, i, r);
        }
    }
    return 0;
}

SHMSTORE_API int shmstore_table_get_range(shmstore_table_t *t, uint64_t first, size_t n,
                                          void *const *cols)
{
    shmstore__clearerr();
    int r = tcheck(t);
    if (r < 0)
        return r;
    if (!cols)
        return shmstore__seterr(-EINVAL, "table '%.255s': no columns given", t->obj->name);
    if (first + n < first)
        return not_there(t, UINT64_MAX);
    uint64_t got;
    for (size_t j = 0; j < n; j++)
        if ((r = read_slot(t, (first + j) % t->g.cap, first + j + 1, cols, j, &got)) < 0)
            return read_failed(t, first + j, r);
    return 0;
}

SHMSTORE_API int shmstore_table_get(shmstore_table_t *t, uint64_t index, void *const *cols)
{
    return shmstore_table_get_range(t, index, 1, cols);
}

SHMSTORE_API int shmstore_table_sample(shmstore_table_t *t, size_t k, unsigned flags,
                                       uint64_t *rng, void *const *cols, uint64_t *indices,
                                       double *probs)
{
    shmstore__clearerr();
    int r = tcheck(t);
    if (r < 0)
        return r;
    bool by_prio = flags & SHMSTORE_SAMPLE_PRIORITIZED;
    if (!cols || (flags & ~SHMSTORE_SAMPLE_PRIORITIZED))
        return shmstore__seterr(-EINVAL, "table '%.255s': no columns or unknown flags",
                                t->obj->name);
    if (by_prio && !t->g.tree)
        return shmstore__seterr(-EINVAL, "table '%.255s' was created without priorities "
                                "(SHMSTORE_TABLE_PRIORITIZED)", t->obj->name);
    /* One atomic step of the handle's counter seeds this call's own stream. */
    uint64_t st = rng ? *rng
                      : mix64(atomic_fetch_add_explicit(&t->rng, GAMMA, memory_order_relaxed));
    for (size_t j = 0; j < k; j++) {
        int draws = 0;
        for (;;) {
            uint64_t tail = atomic_load_explicit(&t->tb->tail, memory_order_acquire);
            uint64_t n = tail < t->g.cap ? tail : t->g.cap, slot, root = 0, idx;
            if (by_prio) {
                root = atomic_load_explicit(&t->g.tree[1], memory_order_relaxed);
                /* >= 2^63: updates in flight made the sum wrap for a moment */
                r = root ? 0 : -ENOENT;
                slot = root && root < (1ull << 63)
                           ? tree_find(t->g.tree, t->g.leaves, rng_below(&st, root))
                           : t->g.cap;
            } else {
                r = n ? 0 : -ENOENT;
                slot = n ? rng_below(&st, n) : 0;
            }
            if (r == -ENOENT)
                break;
            if (slot < t->g.cap && (r = read_slot(t, slot, 0, cols, j, &idx)) == 0) {
                if (indices)
                    indices[j] = idx;
                if (by_prio && probs) {
                    uint64_t leaf = atomic_load_explicit(&t->g.tree[t->g.leaves + slot],
                                                         memory_order_relaxed);
                    probs[j] = (double)leaf / (double)root;
                } else if (probs) {
                    probs[j] = 1.0 / (double)n;
                }
                break;
            }
            if (++draws >= DRAWS_MAX) {
                r = -EAGAIN;
                break;
            }
        }
        if (r == -ENOENT)
            return shmstore__seterr(r, "table '%.255s' holds no record to sample%s",
                                    t->obj->name, by_prio ? " (or every priority is 0)" : "");
        if (r < 0)
            return shmstore__seterr(r, "table '%.255s': %d draws in a row hit records being "
                                    "written or invalid", t->obj->name, DRAWS_MAX);
    }
    if (rng)
        *rng = st;
    return 0;
}

SHMSTORE_API int shmstore_table_set_priorities(shmstore_table_t *t, const uint64_t *indices,
                                               const double *prios, size_t n)
{
    shmstore__clearerr();
    int r = tcheck(t);
    if (r < 0)
        return r;
    if (!t->g.tree)
        return shmstore__seterr(-EINVAL, "table '%.255s' was created without priorities "
                                "(SHMSTORE_TABLE_PRIORITIZED)", t->obj->name);
    if (n && (!indices || !prios))
        return shmstore__seterr(-EINVAL, "table '%.255s': no indices or priorities given",
                                t->obj->name);
    double max = shmstore_table_priority_max(t);
    for (size_t j = 0; j < n; j++)
        if (!(prios[j] >= 0.0 && prios[j] <= max)) /* also refuses NaN */
            return shmstore__seterr(-EINVAL, "table '%.255s': priority %g (at %zu) is not in "
                                    "[0, %g]", t->obj->name, prios[j], j, max);
    uint64_t top = atomic_load_explicit(&t->tb->max_prio, memory_order_relaxed);
    for (size_t j = 0; j < n; j++) {
        uint64_t i = indices[j], k = i % t->g.cap;
        uint64_t v = (uint64_t)(prios[j] * (double)PRIO_ONE + 0.5); /* no libm */
        if (v == 0 && prios[j] > 0)
            v = 1;
        if (v > t->prio_max)
            v = t->prio_max;
        struct table_rec *rec = slot_at(t->g.recs, t->g.stride, k);
        if (atomic_load_explicit(&rec->id, memory_order_relaxed) != i + 1)
            continue; /* no longer (or not yet) in the table, or invalid */
        tree_set(t->g.tree, t->g.leaves, k, v);
        while (v > top && !atomic_compare_exchange_weak_explicit(&t->tb->max_prio, &top, v,
                                                                 memory_order_relaxed,
                                                                 memory_order_relaxed))
            ;
    }
    return 0;
}

/* Valid records: slots ever written less the invalid ones (see Counting). */
static uint64_t valid_count(struct table_body *tb, uint64_t cap)
{
    uint64_t filled = atomic_load_explicit(&tb->n_filled, memory_order_relaxed);
    uint64_t bad = atomic_load_explicit(&tb->n_invalid, memory_order_relaxed);
    uint64_t n = filled < cap ? filled : cap;
    return n > bad ? n - bad : 0;
}

SHMSTORE_API int shmstore_table_count(shmstore_table_t *t, uint64_t *total, uint64_t *count)
{
    int r = tcheck(t);
    if (r < 0)
        return r;
    uint64_t tail = atomic_load_explicit(&t->tb->tail, memory_order_acquire);
    if (total)
        *total = tail;
    if (count)
        *count = valid_count(t->tb, t->g.cap);
    return 0;
}

/* ---- kind operations ------------------------------------------------------------------- */

static void table_info(shmstore_t *s, struct obj_hdr *o, shmstore_obj_info_t *out)
{
    struct geom g;
    struct table_body *tb = (struct table_body *)(o + 1);
    if (geom_of(s, o, &g) < 0)
        return;
    uint64_t tail = atomic_load_explicit(&tb->tail, memory_order_acquire);
    uint64_t bad = atomic_load_explicit(&tb->n_invalid, memory_order_relaxed);
    out->capacity = g.cap;
    out->count = valid_count(tb, g.cap);
    out->table_initialising = atomic_load_explicit(&tb->init_owner, memory_order_acquire) != 0;
    out->first_index = tail > g.cap ? tail - g.cap : 0;
    out->next_index = tail;
    out->version = tail;
    out->record_size = g.record_size;
    out->size = out->count * g.record_size;
    out->n_invalid = bad;
    out->n_fields = g.n_fields;
    out->is_prioritized = g.leaves != 0;
    out->footprint += shmstore__blk_footprint(s, g.data_off);
}

SHMSTORE_API int shmstore_table_info(shmstore_table_t *t, shmstore_obj_info_t *out)
{
    int r = tcheck(t);
    if (r < 0)
        return r;
    shmstore__obj_info(t->s, t->obj, out);
    return 0;
}

/* One pass over the record slots: report the first inconsistent one, count the invalid. */
static int check_slots(shmstore_t *s, struct obj_hdr *o, const struct geom *g, char *rep,
                       size_t cap, size_t *pos, uint64_t *n_bad)
{
    struct table_body *tb = (struct table_body *)(o + 1);
    *n_bad = 0;
    for (uint64_t k = 0; k < g->cap; k++) {
        struct table_rec *r = slot_at(g->recs, g->stride, k);
        uint64_t seq = atomic_load_explicit(&r->seq, memory_order_acquire);
        uint64_t id = atomic_load_explicit(&r->id, memory_order_relaxed);
        uint64_t i = (id & ~TABLE_ID_INVALID) - 1;
        uint32_t w = seq_owner(seq);
        const char *bad = NULL;
        if ((seq & TABLE_SEQ_WRITING) &&
            (w >= s->g.n_slots || atomic_load_explicit(&shmstore__proc_slot(s, w)->state,
                                                       memory_order_acquire) != SLOT_LIVE))
            bad = "is being written by a process slot that is free";
        else if (!(seq & TABLE_SEQ_WRITING) && (seq & TABLE_SEQ_LOW_MASK))
            bad = "has a stable sequence word that names a writer";
        else if (id && (i % g->cap != k ||
                        i >= atomic_load_explicit(&tb->tail, memory_order_acquire)))
            bad = "holds a record of another slot, or one never appended";
        if (bad) {
            shmstore__report(rep, cap, pos, "table '%.*s': record slot %" PRIu64 " %s (seq %#"
                             PRIx64 ", id %#" PRIx64 ")\n", (int)o->name_len, o->name, k, bad,
                             seq, id);
            return SHMSTORE_ECORRUPT;
        }
        *n_bad += !!(id & TABLE_ID_INVALID);
    }
    return 0;
}

static int table_check(shmstore_t *s, struct obj_hdr *o, char *rep, size_t cap, size_t *pos)
{
    struct geom g;
    struct table_body *tb = (struct table_body *)(o + 1);
    if (geom_of(s, o, &g) < 0) {
        shmstore__report(rep, cap, pos, "table '%.*s': its geometry (capacity %" PRIu64
                         ", stride %" PRIu64 ", %u fields, records block %" PRIu64 ") does not fit "
                         "its blocks\n", (int)o->name_len, o->name, tb->capacity, tb->stride,
                         tb->n_fields, tb->data_off);
        return SHMSTORE_ECORRUPT;
    }
    if (atomic_load_explicit(&tb->n_filled, memory_order_relaxed) > g.cap) {
        shmstore__report(rep, cap, pos, "table '%.*s': %" PRIu64 " slots counted written, "
                         "more than its capacity %" PRIu64 "\n", (int)o->name_len, o->name,
                         atomic_load_explicit(&tb->n_filled, memory_order_relaxed), g.cap);
        return SHMSTORE_ECORRUPT;
    }
    if (atomic_load_explicit(&tb->init_owner, memory_order_acquire))
        return 0; /* its creator is clearing the slots (or the next open will) */
    /* Writers move ids and the invalid count without the mutex: a count that differs in
     * two passes in a row is corrupt, one that differs once may be a writer in flight. */
    uint64_t n_bad = 0, counted = 0;
    for (int pass = 0; pass < 2; pass++) {
        int r = check_slots(s, o, &g, rep, cap, pos, &n_bad);
        if (r < 0)
            return r;
        counted = atomic_load_explicit(&tb->n_invalid, memory_order_relaxed);
        if (n_bad == counted)
            return 0;
    }
    shmstore__report(rep, cap, pos, "table '%.*s': %" PRIu64 " invalid records, counted %" PRIu64
                     "\n", (int)o->name_len, o->name, n_bad, counted);
    return SHMSTORE_ECORRUPT;
}

static int table_refs(shmstore_t *s, struct obj_hdr *o, int (*add)(void *, uint64_t), void *arg)
{
    (void)s;
    struct table_body *tb = (struct table_body *)(o + 1);
    return add(arg, tb->data_off);
}

static _Atomic uint64_t *table_waiters(struct obj_hdr *o, unsigned which)
{
    (void)o;
    (void)which;
    return NULL; /* nobody sleeps on a table */
}

/* Kind op `del`: writers and readers never block deletion; their handles keep both
 * blocks until they close. */
static int table_delete(shmstore_t *s, uint64_t off, uint64_t gen)
{
    int r = shmstore__lock(s);
    if (r < 0)
        return r;
    struct obj_hdr *o = shmstore__obj(s, off);
    if (o && o->gen == gen && !(atomic_load_explicit(&o->flags, memory_order_acquire) & OBJ_F_DELETED)) {
        struct table_body *tb = (struct table_body *)(o + 1);
        struct blk_hdr *b = shmstore__blk(s, tb->data_off);
        atomic_fetch_or_explicit(&o->flags, OBJ_F_DELETED, memory_order_seq_cst);
        shmstore__index_remove(s, o->hash, off);
        s->hdr->n_objects--;
        if (b && b->tag == BLK_TAG_DATA && b->owner == gen)
            shmstore__blk_release_locked(s, tb->data_off);
        shmstore__blk_release_locked(s, off); /* ORPHAN: handles keep it until they close */
    } else {
        r = shmstore__seterr(-ENOENT, "table at %" PRIu64 " was deleted meanwhile", off);
    }
    shmstore__unlock(s);
    return r;
}

const struct shmstore__kind_ops shmstore__table_ops = {
    .name = "table",
    .body_len = sizeof(struct table_body),
    .info = table_info,
    .check = table_check,
    .refs = table_refs,
    .recover = table_recover,
    .waiters = table_waiters,
    .del = table_delete,
};
