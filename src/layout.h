/* layout.h - every structure that lives in the store mapping (mirrored in docs/FORMAT.md).
 *
 * A store file is, from offset 0:
 *
 *   [0, 4096)                    struct store_hdr       magic, format, sizes, allocator, mutex
 *   [4096, slots_end)            n_slots x proc_slot    process table (one OFD-locked byte each)
 *   [heap_off, heap_top)         blocks                 committed (fallocated) heap
 *   [heap_top, capacity)         nothing yet            sparse, never touched
 *
 * Every block starts with a 128-byte struct blk_hdr (boundary tags for the allocator,
 * the lease pin mask, the version sequence number) followed by a 64-byte aligned payload.
 * Objects are blocks tagged OBJ whose payload is struct obj_hdr then the kind's body.
 * Values keep up to VAL_ROT blocks tagged DATA ("version blocks"), each holding one
 * version: struct ver_hdr (the datum descriptor), the attrs bytes, then the payload.
 * Rings keep one DATA block in the same format per generation (struct ring_gen, frames).
 *
 * Rules: only fixed-width fields; offsets from the start of the file, never pointers;
 * every offset read from the mapping is checked against the capacity before use; fields
 * written by different processes sit on separate cache lines. Changing anything here
 * means bumping LAYOUT_VERSION.
 */
#ifndef SHMSTORE_LAYOUT_H
#define SHMSTORE_LAYOUT_H

#include <assert.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#define STORE_MAGIC 0x314d54534d485353ull /* "SSHMSTM1" little-endian */
#define LAYOUT_VERSION 2u /* 2: live_hint */
#define STORE_HDR_SIZE 4096u
#define PAGE_SIZE_MIN 4096u

#define BLK_HDR_SIZE 128u
#define BLK_ALIGN 64u
#define BLK_MIN (BLK_HDR_SIZE + BLK_ALIGN)

/* Allocator bins (TLSF): first level = floor(log2(size)), split in 2^SL_BITS sub-bins. */
#define FL_COUNT 48u
#define SL_BITS 2u
#define SL_COUNT (1u << SL_BITS)

/* ---- block header ------------------------------------------------------------------ */

/* blk_hdr.size low bits (sizes are multiples of 64, so the low 6 bits are free). */
#define BLK_USED 0x1ull
#define BLK_SIZE_MASK (~0x3full)

/* blk_hdr.tag: a magic in the upper 16 bits and what the block holds in the lower. */
#define BLK_TAG_MAGIC 0x5b1c0000u
#define BLK_TAG_FREE (BLK_TAG_MAGIC | 0x0u)
#define BLK_TAG_OBJ (BLK_TAG_MAGIC | 0x1u)   /* struct obj_hdr + kind body */
#define BLK_TAG_DATA (BLK_TAG_MAGIC | 0x2u)  /* a version block of a value, a queue entry */
#define BLK_TAG_INDEX (BLK_TAG_MAGIC | 0x3u) /* the name index table */

/* blk_hdr.state: life cycle of a leased block after its owner let go of it. */
#define BLK_LIVE 0u     /* referenced by its owner */
#define BLK_ORPHAN 1u   /* owner dropped it while pinned: last unpin frees it */
#define BLK_FREEING 2u  /* one process won the right to free it */

#define PIN_WORDS 4u /* 4 x 64 bits = one bit per process slot */

struct blk_hdr {
    uint64_t size;          /* whole block incl. header, multiple of 64 | BLK_USED */
    uint64_t prev_size;     /* size of the block before this one (0 for the first) */
    uint32_t tag;           /* BLK_TAG_* */
    _Atomic uint32_t state; /* BLK_LIVE / BLK_ORPHAN / BLK_FREEING */
    uint64_t owner;         /* generation of the owning object, 0 for none */
    _Atomic uint64_t seq;   /* version blocks: 2*version when stable, odd while written */
    uint64_t free_next;     /* free blocks: next in bin (0 = end) */
    uint64_t free_prev;     /* free blocks: previous in bin (0 = head) */
    uint64_t reserved0;
    /* Written by readers (fetch_or/fetch_and), so on its own cache line. */
    alignas(64) _Atomic uint64_t pins[PIN_WORDS]; /* bit i: slot i holds a lease */
    uint64_t reserved1[4];
};
static_assert(sizeof(struct blk_hdr) == BLK_HDR_SIZE, "blk_hdr is 128 bytes");

/* ---- store header ------------------------------------------------------------------ */

struct store_hdr {
    _Atomic uint64_t magic;      /* STORE_MAGIC, stored last at creation (release) */
    uint32_t layout_version;     /* LAYOUT_VERSION */
    uint32_t hdr_size;           /* STORE_HDR_SIZE */
    uint32_t blk_hdr_size;       /* BLK_HDR_SIZE */
    uint32_t slot_size;          /* bytes per process slot */
    uint32_t n_slots;            /* process-table slots */
    uint32_t n_leases;           /* lease entries per slot */
    uint64_t capacity;           /* file size; nothing lies beyond */
    uint32_t uid;                /* creator; openers must match (or be in gid) */
    uint32_t gid;                /* group allowed (mode 0660), or (uint32_t)-1 */
    uint64_t ctime_ns;
    uint64_t flags;
    uint64_t slots_off;          /* process table */
    uint64_t heap_off;           /* first block */
    /* Bit i: slot i may be LIVE. A superset of the live slots, kept under slot i's OFD
     * lock (set before the slot goes LIVE, cleared after it is FREE), so that attach finds
     * a free slot and the dead ones without reading every slot: slots are ~16 KiB apart,
     * and reading all 64 states cost an attach ~16 page faults (~80 us here). gc and the
     * checker still read the whole table. */
    _Atomic uint64_t live_hint[4];

    /* ---- guarded by `mutex` ---- */
    alignas(64) pthread_mutex_t mutex; /* robust, process-shared */
    alignas(64) _Atomic uint64_t heap_top; /* end of the committed heap (atomic: read
                                              unlocked by stat and the checker) */
    uint64_t last_off;           /* offset of the last block below heap_top (0: none) */
    uint64_t used_bytes;         /* sum of allocated block sizes */
    uint64_t n_blocks;           /* allocated blocks */
    uint64_t index_off;          /* INDEX block (payload = entries), 0 = none yet */
    uint64_t index_cap;          /* entries in the table (power of two) */
    uint64_t index_count;        /* live entries */
    uint64_t index_tombs;        /* tombstones */
    uint64_t n_objects;
    uint64_t next_gen;           /* generation of the next object (starts at 1) */
    uint64_t n_repairs;          /* times the mutex was recovered from a dead owner */
    uint64_t fl_bitmap;          /* bit f: some sl bin of level f is non-empty */
    uint32_t sl_bitmap[FL_COUNT];
    uint64_t free_heads[FL_COUNT][SL_COUNT];
};
static_assert(sizeof(struct store_hdr) <= STORE_HDR_SIZE, "store_hdr fits its page");
static_assert(sizeof(pthread_mutex_t) <= 64, "mutex fits a cache line");

/* ---- process table ----------------------------------------------------------------- */

#define SLOT_FREE 0u
#define SLOT_LIVE 1u

#define SLOT_HELD_MAX 8u   /* writer locks one process may hold at once */
#define SLOT_WAITS_MAX 16u /* futex waits one process may have registered at once */

/* One lease: a pinned block. Written only by the slot's owner; read by recovery after
 * the owner died. `off` is set before the pin bit and cleared after it, so recovery
 * clearing the bit of every listed block is exact (clearing is idempotent). */
struct lease {
    _Atomic uint64_t off; /* block offset, 0 = unused */
    uint64_t count;       /* owner-local: times this process pinned it */
};

struct proc_slot {
    _Atomic uint32_t state;   /* SLOT_FREE / SLOT_LIVE */
    int32_t pid;
    uint64_t attach_ns;
    _Atomic uint32_t n_leases; /* entries in use (informational) */
    uint32_t reserved0;
    /* What this slot holds in objects (a value's writer lock, ...): the object offset |
     * a tag of its kind in the low 6 bits (REC_TAG_MASK). Recovery hands each to the kind. */
    _Atomic uint64_t held[SLOT_HELD_MAX];
    /* Wait queues whose waiter bit this slot set: object offset | which queue (recovery
     * clears the bit). */
    _Atomic uint64_t waits[SLOT_WAITS_MAX];
    uint64_t reserved1[5];
    struct lease leases[]; /* n_leases entries: an open-addressed set keyed by off */
};
static_assert(sizeof(struct proc_slot) % 64 == 0, "slot header is whole cache lines");

/* ---- objects ------------------------------------------------------------------------ */

#define OBJ_MAGIC 0x4a424f53u /* "SOBJ" */
#define OBJ_NAME_MAX 255u

#define OBJ_F_SEALED 0x1u
#define OBJ_F_DELETED 0x2u

struct obj_hdr {
    uint32_t magic;          /* OBJ_MAGIC */
    uint32_t kind;           /* shmstore_kind_t */
    uint64_t gen;            /* unique per store; handles remember it (-ESTALE) */
    _Atomic uint32_t flags;  /* OBJ_F_* */
    uint32_t name_len;
    uint64_t hash;           /* of the name, for the index */
    uint64_t ctime_ns;
    uint64_t reserved0[3];
    char name[OBJ_NAME_MAX + 1]; /* NUL-terminated */
};
static_assert(sizeof(struct obj_hdr) % 64 == 0, "obj_hdr is whole cache lines");

/* Index entries: hash + object block offset. off 0 = empty, INDEX_TOMB = deleted. */
#define INDEX_TOMB 1ull
struct index_ent {
    uint64_t hash;
    uint64_t off;
};

/* ---- values ------------------------------------------------------------------------- */

#define VAL_ROT 4u              /* version blocks a value rotates through */
#define HEAD_SLOT_BITS 8u       /* head = version << 8 | rotation index */
#define WLOCK_WAITERS 0x80000000u

/* Body of a value object (follows struct obj_hdr in the OBJ block). */
struct val_body {
    /* Everything a reader needs, on one line written once per put: a get costs one
     * transfer of this line, not two. */
    alignas(64) _Atomic uint64_t head;   /* version << 8 | rotation index; 0 = none */
    _Atomic uint64_t mtime_ns;           /* of the current version */
    _Atomic uint32_t fseq;               /* futex word: bumped on every publish */
    uint32_t reserved1;
    _Atomic uint64_t rot[VAL_ROT];       /* version block offsets (0 = none) */
    /* Writer side. */
    alignas(64) _Atomic uint32_t wlock;  /* 0 free, else owner slot + 1 | WLOCK_WAITERS */
    uint32_t reserved2;
    uint64_t reserved3;
    /* Bit i: process slot i has a thread asleep (or going to sleep) on fseq; a publish
     * makes a wake syscall only if some bit is set. Bits, not a count, so that recovery
     * clears a dead process's exactly, whatever instruction it died at. */
    _Atomic uint64_t waiters[PIN_WORDS];
    uint64_t reserved0[2];
};
static_assert(sizeof(struct val_body) == 128, "val_body is two cache lines");

/* Fixed-size scalar payloads (at most this many bytes) are stored inline. */
#define VER_INLINE_MAX 16u

/* Start of a version block's payload area: the descriptor of the version it holds. */
struct ver_hdr {
    uint32_t type;
    uint32_t ndim;
    char dtype[8];
    uint64_t len;        /* payload bytes */
    uint64_t data_off;   /* payload offset from the block start (64-aligned) */
    uint32_t attrs_len;  /* attrs bytes right after this struct */
    uint32_t reserved0;
    uint64_t mtime_ns;   /* when this version's data was published */
    uint8_t inline_data[VER_INLINE_MAX]; /* scalar payloads live here, on the descriptor's
                                            line (one line less per get) */
    uint64_t shape[32];
};
static_assert(sizeof(struct ver_hdr) % 64 == 0, "ver_hdr is whole cache lines");

/* ---- queues ------------------------------------------------------------------------ */

/* A queue's cells: a ring of `capacity` cells after struct queue_body in the OBJ block.
 * Cell i % capacity carries entry index i through states, packed with the index in one
 * word so that one CAS moves a cell from one state to the next:
 *   seq = (i & CELL_IDX_MASK) << CELL_IDX_SHIFT | state << 8 | owner slot
 * FREE(i): waiting for entry i; WRITING(i, owner): a producer claimed it; READY(i): holds
 * entry i in block `blk` (0: a hole, the entry was deleted or its producer died);
 * TAKING(i, owner): a consumer is moving it out. FREE(i) follows TAKING(i - capacity). */
#define CELL_IDX_SHIFT 10u
#define CELL_IDX_MASK ((1ull << 54) - 1)
#define CELL_FREE 0u
#define CELL_WRITING 1u
#define CELL_READY 2u
#define CELL_TAKING 3u

struct queue_cell {
    _Atomic uint64_t seq;
    _Atomic uint64_t blk;   /* the entry's block (READY), 0 when none */
    _Atomic uint64_t spare; /* a block a copying pop left for the next push to fill */
    uint64_t reserved0;
};
static_assert(sizeof(struct queue_cell) == 32, "queue_cell is 32 bytes");

/* Body of a queue object; the cells follow it. Fields written by producers, consumers
 * and both sit on separate lines. */
struct queue_body {
    /* Set at creation, then only read. */
    uint64_t capacity;   /* cells (entries the queue holds) */
    uint64_t slot_size;  /* largest entry payload, 0 = any size */
    uint32_t full;       /* shmstore_queue_full_t */
    uint32_t reserved0;
    uint64_t reserved1[5];
    /* Producers (and deleters). */
    alignas(64) _Atomic uint64_t tail;   /* next entry index to commit */
    _Atomic uint32_t not_full;           /* futex word: bumped when a cell is freed */
    uint32_t reserved2;
    _Atomic uint64_t dropped;            /* entries dropped by DROP_OLDEST */
    _Atomic uint64_t holes_made;         /* entries made holes (deleted, dead producer) */
    uint64_t reserved3[4];
    /* Consumers. */
    alignas(64) _Atomic uint64_t head;   /* next entry index to pop */
    _Atomic uint32_t not_empty;          /* futex word: bumped on every commit */
    uint32_t reserved4;
    _Atomic uint64_t holes_popped;       /* holes pops went past */
    uint64_t reserved5[5];
    /* Waiter bits (see wait.c): producers waiting for room, consumers for entries. */
    alignas(64) _Atomic uint64_t room_waiters[PIN_WORDS];
    _Atomic uint64_t entry_waiters[PIN_WORDS];
};
static_assert(sizeof(struct queue_body) == 256, "queue_body is four cache lines");

/* ---- tables ------------------------------------------------------------------------ */
#include <stddef.h>

/* A table's records live in one DATA block (owner = the table's generation) named by
 * table_body.data_off: `capacity` slots of `stride` bytes (a multiple of 64) from the
 * payload start, then, for a prioritized table, the sum tree: 2 * tree_leaves u64
 * (node 1 the root, leaf of slot k at tree_leaves + k; fixed point, TABLE_PRIO_ONE = 1.0).
 * Each slot starts with struct table_rec, its fields follow at their offsets.
 *   seq: the record's seqlock, count << 9 | writer slot << 1 | writing. A writer CASes
 *        an even seq to (count + 1) << 9 | slot << 1 | 1, writes, stores (count + 1) << 9.
 *   id:  index + 1 of the record in the slot (0 = never written), TABLE_ID_INVALID set
 *        when its writer died mid-record. Written only while seq is odd. */
#define TABLE_FIELDS_MAX 32u
#define TABLE_FIELD_NAME_MAX 63u
#define TABLE_NDIM_MAX 8u
#define TABLE_SEQ_WRITING 0x1ull
#define TABLE_SEQ_OWNER_SHIFT 1u
#define TABLE_SEQ_COUNT_SHIFT 9u
#define TABLE_SEQ_LOW_MASK 0x1ffull
#define TABLE_ID_INVALID (1ull << 63)
#define TABLE_PRIO_FRAC_BITS 24u
#define TABLE_F_PRIORITIZED 0x1u

struct table_rec {
    _Atomic uint64_t seq;
    _Atomic uint64_t id;
};
static_assert(sizeof(struct table_rec) == 16, "table_rec is 16 bytes");

struct table_field {
    char name[TABLE_FIELD_NAME_MAX + 1]; /* NUL-terminated */
    char dtype[8];                       /* NUL-terminated numpy dtype string */
    uint32_t ndim;
    uint32_t itemsize;
    uint64_t shape[TABLE_NDIM_MAX];
    uint64_t size;                       /* itemsize * prod(shape) */
    uint64_t offset;                     /* from the slot start (after table_rec) */
};
static_assert(sizeof(struct table_field) == 160, "table_field is 160 bytes");

/* Body of a table object. Set at creation, then only read, except the counters line. */
struct table_body {
    uint64_t capacity;    /* records */
    uint64_t stride;      /* bytes per slot, multiple of 64 */
    uint64_t record_size; /* sum of the fields' sizes */
    uint64_t data_off;    /* the records' DATA block */
    uint64_t tree_leaves; /* sum tree leaves (power of two >= capacity), 0 = none */
    uint32_t n_fields;
    uint32_t flags;       /* TABLE_F_* */
    /* Creation: the creator's process slot + 1 while it initialises the records block
     * outside the metadata mutex (0 = ready), and the slots it has initialised so far. */
    _Atomic uint64_t init_owner;
    _Atomic uint64_t init_done;
    /* Writers. */
    alignas(64) _Atomic uint64_t tail;  /* tickets taken: records ever appended */
    _Atomic uint64_t n_invalid;         /* slots holding an invalid record */
    _Atomic uint64_t max_prio;          /* fixed point: what new records get */
    _Atomic uint64_t n_filled;          /* slots ever written (at most capacity) */
    uint64_t reserved1[4];
    struct table_field fields[TABLE_FIELDS_MAX];
};
static_assert(sizeof(struct table_body) == 128 + 32 * 160, "table_body size");
static_assert(sizeof(struct table_body) % 64 == 0, "table_body is whole cache lines");
static_assert(offsetof(struct table_body, tail) == 64, "FORMAT.md: table tail at 64");
static_assert(offsetof(struct table_body, fields) == 128, "FORMAT.md: table fields at 128");
/* ---- rings ------------------------------------------------------------------------- */

/* Body of a ring object. A ring's frames live in one *generation block* at a time: a
 * DATA block in the version format (datum.c: struct ver_hdr, the ring's attrs, then the
 * payload), whose payload is struct ring_gen followed by `capacity` frames, and whose
 * blk_hdr.seq is 2 * generation. Reconfiguring makes a new generation block and
 * publishes it in `cur`; the old one is released (freed by its last lease). */
struct ring_body {
    /* Read by every reader's "still current?" check; written once per reconfiguration. */
    alignas(64) _Atomic uint64_t cur;    /* the current generation block, 0 = not configured */
    uint64_t reserved0[7];
    /* The writer role: taken by the writing handle, held until it closes. */
    alignas(64) _Atomic uint32_t wlock;  /* 0 free, else holder slot + 1 */
    uint32_t reserved1;
    uint64_t reserved2[7];
    /* Waits: written only when a reader registers or a waker finds one (wait.c); read by
     * every write. */
    alignas(64) _Atomic uint32_t fseq;   /* futex word */
    uint32_t reserved3;
    uint64_t reserved4[3];
    _Atomic uint64_t waiters[PIN_WORDS]; /* bit i: slot i has a reader asleep */
};
static_assert(sizeof(struct ring_body) == 192, "ring_body is three cache lines");

/* The head of a generation block's payload; the frames follow (64-byte aligned). */
struct ring_gen {
    /* Set when the generation is made, then only read. */
    uint64_t generation;  /* 1, 2, ... within the ring */
    uint64_t base;        /* frames written before this generation: its first frame's position */
    uint64_t capacity;    /* frames the storage holds */
    uint64_t frame_len;   /* bytes per frame: itemsize * prod(frame_shape) */
    uint64_t ctime_ns;
    uint32_t frame_ndim;  /* 0 (scalar frames) .. SHMSTORE_NDIM_MAX - 1 */
    uint32_t reserved0;
    char dtype[8];        /* numpy dtype string of the frame's items */
    uint64_t reserved1;
    /* Written by every write, read by every read: the only line that moves. */
    alignas(64) _Atomic uint64_t intent; /* frames written once the write in progress ends */
    _Atomic uint64_t total;              /* frames written and complete (position of the next) */
    uint64_t reserved2[6];
    uint64_t frame_shape[32];
};
static_assert(sizeof(struct ring_gen) == 384, "ring_gen is six cache lines");

/* The offsets docs/FORMAT.md documents. */
#include <stddef.h>
static_assert(offsetof(struct store_hdr, mutex) == 128, "FORMAT.md: mutex at 128");
static_assert(offsetof(struct store_hdr, heap_top) == 192, "FORMAT.md: heap_top at 192");
static_assert(offsetof(struct proc_slot, held) == 24, "FORMAT.md: held at 24");
static_assert(offsetof(struct proc_slot, waits) == 88, "FORMAT.md: waits at 88");
static_assert(sizeof(struct proc_slot) == 256, "FORMAT.md: slot header is 256 bytes");
static_assert(offsetof(struct blk_hdr, pins) == 64, "FORMAT.md: pins at 64");
static_assert(sizeof(struct obj_hdr) == 320, "FORMAT.md: obj_hdr is 320 bytes");
static_assert(offsetof(struct obj_hdr, name) == 64, "FORMAT.md: name at 64");
static_assert(offsetof(struct val_body, rot) == 24, "FORMAT.md: rot at 24");
static_assert(offsetof(struct val_body, wlock) == 64, "FORMAT.md: wlock at 64");
static_assert(offsetof(struct val_body, waiters) == 80, "FORMAT.md: waiters at 80");
static_assert(offsetof(struct ver_hdr, shape) == 64, "FORMAT.md: shape at 64");
static_assert(offsetof(struct ver_hdr, inline_data) == 48, "FORMAT.md: inline data at 48");
static_assert(sizeof(struct ver_hdr) == 320, "FORMAT.md: ver_hdr is 320 bytes");
static_assert(offsetof(struct ring_body, wlock) == 64, "FORMAT.md: ring wlock at 64");
static_assert(offsetof(struct ring_body, waiters) == 160, "FORMAT.md: ring waiters at 160");
static_assert(offsetof(struct ring_gen, intent) == 64, "FORMAT.md: ring intent at 64");
static_assert(offsetof(struct ring_gen, frame_shape) == 128, "FORMAT.md: ring frame_shape at 128");


/* ---- array sets --------------------------------------------------------------------- */

/* A set is an OBJ (struct obj_hdr + struct set_body) named by its prefix, and one DATA
 * block (owner = the set's generation) that holds, from its payload start: struct
 * set_dir, n_members x struct set_member sorted by name, the names, the attrs (each
 * 8-aligned), then the payloads, each 64-byte aligned. Offsets in set_member are from
 * the start of the DATA block (its blk_hdr). */
#define SET_LOADING 1u   /* being written by its owner: invisible to readers */
#define SET_READY 2u     /* complete, published */
#define SET_F_TIED 0x1u      /* removed when the owner process exits or dies */
#define SET_F_WRITABLE 0x2u  /* members are shared-writable (no versions) */
#define SET_DIR_MAGIC 0x31544553u /* "SET1" */

struct set_body {
    _Atomic uint32_t state;  /* SET_LOADING / SET_READY (release: pairs with open) */
    uint32_t flags;          /* SET_F_* */
    uint32_t owner_slot;     /* process slot of the creator */
    int32_t owner_pid;
    uint64_t owner_attach_ns; /* the creator slot's attach_ns: tells it from a later owner */
    uint64_t data_off;       /* the DATA block, 0 until allocated */
    uint64_t n_members;
    uint64_t payload_len;    /* sum of the members' payload bytes */
    uint64_t reserved0[2];
};
static_assert(sizeof(struct set_body) == 64, "set_body is one cache line");

struct set_dir {
    uint32_t magic;          /* SET_DIR_MAGIC */
    uint32_t reserved0;
    uint64_t n_members;
    uint64_t names_off;      /* from the block start */
    uint64_t names_len;
    uint64_t end_off;        /* end of the last payload, from the block start */
    uint64_t reserved1[3];
};
static_assert(sizeof(struct set_dir) == 64, "set_dir is one cache line");

struct set_member {
    uint64_t data_off;       /* payload, from the block start, 64-aligned */
    uint64_t len;            /* payload bytes */
    uint32_t type;           /* shmstore_type_t */
    uint32_t ndim;
    char dtype[8];
    uint64_t attrs_off;      /* from the block start, 0 = none */
    uint32_t attrs_len;
    uint32_t name_len;       /* name relative to the set's prefix, no NUL */
    uint64_t name_off;       /* from the block start */
    uint64_t reserved0;
    uint64_t shape[32];
};
static_assert(sizeof(struct set_member) == 320, "set_member is 320 bytes");
static_assert(offsetof(struct set_member, shape) == 64, "FORMAT.md: shape at 64");

#endif
