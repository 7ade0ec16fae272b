/* shmstore.h - share data between processes on one machine through shared memory.
 *
 * A *store* is one file in /dev/shm (or $SHMSTORE_DIR) that every process maps once. It
 * holds named objects of several kinds: *values*, latest-value registers that a writer
 * updates and readers copy, view without copying, or wait on; *queues*, bounded FIFO
 * rings of entries that producers push and consumers pop; *rings*, circular buffers
 * of time-series frames that one writer appends to and readers follow with a cursor;
 * and *tables*, rings of fixed records (replay buffers) that writers append and
 * readers sample. There is no server:
 * processes coordinate through atomics and futexes inside the mapping, and a process
 * killed at any point is cleaned up by the next process that attaches, by a timed-out
 * wait, or by shmstore_gc().
 *
 * Conventions (they hold for every function below unless it says otherwise):
 * - Fallible functions return 0 or a negative code: -errno or SHMSTORE_E* (see
 *   shmstore/errno.h). Out-parameters are written only on success.
 * - The library never prints, aborts or exits. After a failure, shmstore_errmsg()
 *   returns a longer message for the calling thread (the store, the sizes, what to do).
 * - Handles (shmstore_t, shmstore_value_t) may be used from any thread of the process
 *   that opened them. After fork() the child must open the store again; old handles
 *   return SHMSTORE_EFORK in the child.
 * - Timeouts are in nanoseconds: a negative timeout waits forever, 0 never blocks.
 * - Functions marked "Never blocks" take no lock that another process can hold for
 *   long; "may block" functions say on what.
 */
#ifndef SHMSTORE_H
#define SHMSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmstore/errno.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHMSTORE_BUILDING)
#define SHMSTORE_API __attribute__((visibility("default")))
#else
#define SHMSTORE_API
#endif

/* ------------------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------------- */

/* A static, human-readable message for any code this library returns (never NULL). */
SHMSTORE_API const char *shmstore_strerror(int err);

/* The symbolic name of a code: "ENOENT", "SHMSTORE_ECORRUPT", ... (never NULL). */
SHMSTORE_API const char *shmstore_err_name(int err);

/* The detailed message of the last failure of a shmstore call in this thread (it names
 * the store or object, the sizes involved and what to do), or "" if none. The pointer is
 * valid until the next shmstore call in this thread. */
SHMSTORE_API const char *shmstore_errmsg(void);

/* ------------------------------------------------------------------------------------
 * Stores
 * ---------------------------------------------------------------------------------- */

typedef struct shmstore shmstore_t;

/* Flags of shmstore_open(). */
#define SHMSTORE_O_CREATE 0x1u /* create the store if it does not exist */
#define SHMSTORE_O_EXCL 0x2u   /* with O_CREATE: fail with -EEXIST if it exists */
#define SHMSTORE_O_NORECOVER 0x4u /* attach without reclaiming dead processes' slots
                                     (inspection tools: ls, gc reporting what it frees) */

/* Longest store name (the file is "shmstore.<name>"); names may not contain '/'. */
#define SHMSTORE_STORE_NAME_MAX 200
/* Longest object name in bytes (UTF-8, no NUL). */
#define SHMSTORE_NAME_MAX 255
/* Most processes attached to one store at once. */
#define SHMSTORE_PROCS_MAX 256

/* Options for creating a store; a zeroed struct (or NULL) means all defaults. */
typedef struct shmstore_options {
    uint64_t capacity; /* bytes; 0 = size of the filesystem the store lives on */
    const char *dir;   /* directory; NULL = $SHMSTORE_DIR or /dev/shm */
    int64_t group;     /* gid allowed to open the store (mode 0660); 0 = none (0600) */
    uint32_t n_procs;  /* process-table slots; 0 = 64; at most SHMSTORE_PROCS_MAX */
    uint32_t n_leases; /* lease slots per process; 0 = 1024 */
} shmstore_options_t;

/* Open (and with SHMSTORE_O_CREATE create) the store `name` and attach this process to
 * it: one file descriptor and one mapping, whatever the number of objects. Attaching
 * reclaims the slots of dead processes unless SHMSTORE_O_NORECOVER is given (then only
 * when every slot is taken, to make room). `opt` is used only when creating (its
 * `dir` is also used for opening). May block briefly while another process finishes
 * creating the store. Returns 0, -ENOENT, -EEXIST, -EACCES / SHMSTORE_EOWNER (another
 * user's store), SHMSTORE_EVERSION, SHMSTORE_ECORRUPT, SHMSTORE_EPROCS, -ENOSPC,
 * -EINVAL (bad name or options). The store is closed with shmstore_close(). */
SHMSTORE_API int shmstore_open(const char *name, unsigned flags, const shmstore_options_t *opt,
                               shmstore_t **out);

/* Detach from the store: release this process's slot, all its leases and its file
 * descriptor. Value handles and views may still be closed/released afterwards; the
 * mapping stays until the last of them is gone, but their bytes are no longer protected
 * (a writer may reuse them). Accepts NULL. Never blocks long. */
SHMSTORE_API void shmstore_close(shmstore_t *s);

/* Remove the store's name from `dir` (NULL = default). Processes that have it open keep
 * using it; the memory goes when the last one closes. Returns 0 or -ENOENT. */
SHMSTORE_API int shmstore_unlink(const char *name, const char *dir);

/* The store's name and directory as given at open. */
SHMSTORE_API const char *shmstore_name(const shmstore_t *s);
SHMSTORE_API const char *shmstore_dir(const shmstore_t *s);

/* Figures about a store (shmstore_stat()). */
typedef struct shmstore_stat {
    uint64_t capacity;    /* size of the file: the most the heap can grow to */
    uint64_t committed;   /* bytes of the heap backed by memory (fallocated) */
    uint64_t used;        /* bytes in allocated blocks, headers included */
    uint64_t n_blocks;    /* allocated blocks */
    uint64_t n_objects;   /* named objects */
    uint32_t n_procs;     /* live attached processes, the caller included */
    uint32_t n_slots;     /* process-table size */
    uint32_t layout_version;
    uint32_t uid;
    uint64_t ctime_ns;    /* creation time, CLOCK_REALTIME */
} shmstore_stat_t;

/* Fill `*out` with the store's figures. Takes the store's metadata lock (may block
 * briefly). Returns 0 or SHMSTORE_ECORRUPT. */
SHMSTORE_API int shmstore_stat(shmstore_t *s, shmstore_stat_t *out);

/* What shmstore_gc() reclaimed. */
typedef struct shmstore_gc_stats {
    uint32_t dead_procs;     /* slots of dead processes freed */
    uint32_t leases_dropped; /* leases those processes held */
    uint32_t locks_released; /* writer locks they held */
    uint32_t blocks_freed;   /* blocks freed (orphans and unreachable blocks) */
    uint64_t bytes_freed;
} shmstore_gc_stats_t;

/* Reclaim what dead processes left: their leases, writer locks, half-written versions
 * and blocks nobody can reach. `st` may be NULL. Takes the metadata lock (may block
 * briefly). Safe while other processes work on the store. Returns 0 or
 * SHMSTORE_ECORRUPT. */
SHMSTORE_API int shmstore_gc(shmstore_t *s, shmstore_gc_stats_t *st);

/* Check the whole store: header, allocator (walk of every block and boundary tag, free
 * lists), index, objects and leases. Writes a report of the first problems (one per
 * line) into `report` (may be NULL). Takes the metadata lock. Returns 0 when consistent,
 * SHMSTORE_ECORRUPT otherwise. */
SHMSTORE_API int shmstore_check(shmstore_t *s, char *report, size_t report_cap);

/* A process attached to a store (shmstore_procs()). */
typedef struct shmstore_proc_info {
    uint32_t slot;
    int32_t pid;
    int is_alive;          /* its slot lock is held: the process is running */
    int is_self;
    uint32_t n_leases;
    uint64_t attach_ns;    /* CLOCK_REALTIME */
    uint32_t n_held;       /* objects it is writing to right now (writer locks, queue steps) */
    char holding[SHMSTORE_NAME_MAX + 1]; /* the name of the first of them, or "" */
} shmstore_proc_info_t;

/* Call `fn` for every occupied process slot, alive or dead. Stops early and returns
 * what `fn` returned when it returns non-zero. Never blocks and takes no lock: the
 * figures are a snapshot that may be a step behind a process that is moving (`holding`
 * names an object that was one of those it held while we looked). */
SHMSTORE_API int shmstore_procs(shmstore_t *s,
                                int (*fn)(const shmstore_proc_info_t *info, void *arg),
                                void *arg);

/* Call `fn(name, arg)` for every store in `dir` (NULL = default). Returns 0, what `fn`
 * returned, or -errno from reading the directory. */
SHMSTORE_API int shmstore_list_stores(const char *dir, int (*fn)(const char *name, void *arg),
                                      void *arg);

/* ------------------------------------------------------------------------------------
 * Datums: the descriptor every payload carries
 * ---------------------------------------------------------------------------------- */

typedef enum shmstore_type {
    SHMSTORE_T_NONE = 0,
    SHMSTORE_T_BOOL = 1,       /* 1 byte, 0 or 1 */
    SHMSTORE_T_INT64 = 2,      /* 8 bytes */
    SHMSTORE_T_FLOAT64 = 3,    /* 8 bytes */
    SHMSTORE_T_COMPLEX128 = 4, /* 16 bytes */
    SHMSTORE_T_BYTES = 5,      /* any length */
    SHMSTORE_T_STR = 6,        /* UTF-8, any length, no terminator stored */
    SHMSTORE_T_ARRAY = 7,      /* dtype + shape, C-contiguous */
    SHMSTORE_T_PICKLE = 8,     /* opaque bytes the Python layer understands */
    SHMSTORE_T_RECORD = 9,     /* a tree of datums (Python dict/list/tuple) */
    SHMSTORE_T__COUNT
} shmstore_type_t;

#define SHMSTORE_NDIM_MAX 32
#define SHMSTORE_DTYPE_MAX 8 /* bytes of the dtype string, NUL included */
#define SHMSTORE_ATTRS_MAX 65536

/* A datum descriptor: what the payload bytes mean. Arrays use numpy's dtype strings:
 * "|b1", "<i1".."<i8", "<u1".."<u8", "<f2", "<f4", "<f8", "<f16", "<c8", "<c16", "<c32",
 * and fixed-size strings "|S<n>" / "<U<n>". "<f16" / "<c32" are numpy's float128 /
 * complex256: the platform's long double in 16 bytes (x86-64: 80-bit extended, padded),
 * so their bits mean the same only between processes of one machine, as everything here. `attrs` points at an encoded attribute map (see
 * shmstore_attrs_*) or is NULL; descriptors returned by the library point into the
 * store and live as long as the view or buffer they came with. */
typedef struct shmstore_datum {
    uint32_t type;                      /* shmstore_type_t */
    uint32_t ndim;                      /* arrays: 0..SHMSTORE_NDIM_MAX */
    char dtype[SHMSTORE_DTYPE_MAX];     /* arrays: NUL-terminated dtype string */
    uint64_t shape[SHMSTORE_NDIM_MAX];  /* arrays: ndim extents */
    const void *attrs;                  /* encoded attrs or NULL */
    uint32_t attrs_len;                 /* bytes at attrs; at most SHMSTORE_ATTRS_MAX */
} shmstore_datum_t;

/* Fill `*d` for a scalar or byte-string type (every type but ARRAY). */
SHMSTORE_API void shmstore_datum_init(shmstore_datum_t *d, shmstore_type_t type);

/* Fill `*d` for a C-contiguous array. Returns 0, SHMSTORE_EDTYPE or -EINVAL (ndim). */
SHMSTORE_API int shmstore_datum_init_array(shmstore_datum_t *d, const char *dtype, uint32_t ndim,
                                           const uint64_t *shape);

/* Bytes per item of a dtype string, or a negative code (SHMSTORE_EDTYPE). */
SHMSTORE_API int64_t shmstore_dtype_itemsize(const char *dtype);

/* Check that `d` is well formed and describes exactly `len` payload bytes: fixed sizes
 * for scalars, itemsize * prod(shape) for arrays (no overflow), valid attrs. Returns 0,
 * -EINVAL (with shmstore_errmsg() saying which field is wrong) or SHMSTORE_EDTYPE. */
SHMSTORE_API int shmstore_datum_validate(const shmstore_datum_t *d, size_t len);

/* Attribute maps: a small, typed key -> value encoding kept next to a datum (HDF5
 * attributes, "srate", axis names). The encoding is a sequence of entries in a caller
 * buffer; keys are at most 255 bytes, values are scalars, strings or bytes. */

/* Append the entry `key` = (`type`, `val`, `val_len`) to the map in `buf`, whose current
 * length is `*len` and capacity `cap`; updates `*len`. Returns 0, -ENOSPC (buffer too
 * small) or -EINVAL (bad key or type; ARRAY and RECORD are not allowed). */
SHMSTORE_API int shmstore_attrs_add(void *buf, size_t cap, uint32_t *len, const char *key,
                                    shmstore_type_t type, const void *val, uint32_t val_len);

/* Find `key` in an encoded map. On success points `*val` into the map. Returns 0,
 * -ENOENT, or SHMSTORE_ECORRUPT when the map is malformed. */
SHMSTORE_API int shmstore_attrs_get(const void *attrs, uint32_t attrs_len, const char *key,
                                    shmstore_type_t *type, const void **val, uint32_t *val_len);

/* Visit the entries of an encoded map in order. `fn` returning non-zero stops the walk
 * and is returned. Returns 0, that value, or SHMSTORE_ECORRUPT. */
SHMSTORE_API int shmstore_attrs_foreach(const void *attrs, uint32_t attrs_len,
                                        int (*fn)(const char *key, shmstore_type_t type,
                                                  const void *val, uint32_t val_len, void *arg),
                                        void *arg);

/* ------------------------------------------------------------------------------------
 * Objects (all kinds)
 * ---------------------------------------------------------------------------------- */

typedef enum shmstore_kind {
    SHMSTORE_KIND_VALUE = 1,
    SHMSTORE_KIND_QUEUE = 2,
    SHMSTORE_KIND_RING = 3,
    SHMSTORE_KIND_TABLE = 4,
    SHMSTORE_KIND_SET = 5, /* array sets (3 and 4 are the ring and table kinds) */
} shmstore_kind_t;

/* The name of a kind ("value", ...), or "unknown". Never NULL. */
SHMSTORE_API const char *shmstore_kind_name(uint32_t kind);

/* One object as listed by shmstore_list() and shmstore_info(). */
typedef struct shmstore_obj_info {
    char name[SHMSTORE_NAME_MAX + 1];
    uint32_t kind;         /* shmstore_kind_t */
    uint32_t is_sealed;
    uint64_t version;      /* values: latest version, 0 if never written */
    uint64_t mtime_ns;     /* values: time of the latest version, CLOCK_REALTIME */
    uint64_t size;         /* values: payload bytes of the latest version */
    uint64_t footprint;    /* bytes of store memory the object occupies */
    shmstore_datum_t desc; /* values: descriptor of the latest version (attrs = NULL) */
    /* Queues. */
    uint64_t count;        /* entries in the queue */
    uint64_t capacity;     /* entries it holds at most */
    uint64_t slot_size;    /* largest entry payload in bytes, 0 = any size */
    uint64_t first_index;  /* index the next pop takes (oldest, unless deleted) */
    uint64_t next_index;   /* index the next commit gets (= entries ever committed) */
    uint64_t dropped;      /* entries dropped by a full SHMSTORE_QUEUE_DROP_OLDEST queue */
    uint32_t full;         /* shmstore_queue_full_t */
    uint32_t n_pinned;     /* entries in the queue that a reader's view holds */
    uint32_t producers_waiting; /* processes with a producer asleep for room */
    uint32_t consumers_waiting; /* processes with a consumer asleep for an entry */
    uint64_t oldest_mtime_ns;   /* time the oldest entry in the queue was committed */
    /* Rings reuse the fields above: version = generation (0: not configured yet),
     * next_index = frames ever written, first_index = position of the oldest frame held,
     * count = frames held, capacity = frames the storage holds, size = bytes per frame,
     * desc = the frame's descriptor (dtype and frame shape; attrs = NULL), mtime_ns = when
     * the generation was made, producers_waiting = 1 while a writer holds the ring,
     * consumers_waiting = processes with a reader asleep. */
    /* Tables (also: count = valid records, capacity = records it holds, first_index /
     * next_index = oldest index still held / records ever appended, size = bytes of the
     * valid records, version = next_index). */
    uint64_t record_size;  /* bytes of one record's fields */
    uint64_t n_invalid;    /* records lost to writers that died mid-record */
    uint32_t n_fields;     /* fields of the schema (shmstore_table_fields() lists them) */
    uint32_t is_prioritized; /* created with SHMSTORE_TABLE_PRIORITIZED */
    /* Array sets (also: count = members, size = payload bytes, is_sealed). */
    uint32_t set_flags;    /* SHMSTORE_SET_TIED | SHMSTORE_SET_WRITABLE */
    uint32_t set_loading;  /* 1 while its creator is still loading it (invisible) */
    int32_t set_owner_pid; /* the creating process */
    /* All kinds. */
    uint32_t n_waiting;    /* processes with a thread asleep on the object (any wait) */
    /* Tables (added last): 1 while its creator is still clearing its record slots (opens
     * wait for it; the metadata mutex is not held meanwhile). */
    uint32_t table_initialising;
    /* A member of an array set, listed and described as a value of its own (kind VALUE,
     * version 1, sealed unless the set is shared-writable, footprint 0: the set's counts
     * it): the bytes of `name` that are the set's prefix. 0 for every other object. */
    uint32_t set_prefix_len;
} shmstore_obj_info_t;

/* Call `fn` for every object whose name starts with `prefix` (NULL or "" = all), in no
 * particular order; the members of array sets are listed too, each as a value of its
 * full name (set_prefix_len says which set holds it). Takes the metadata lock for the walk (may block briefly); `fn` must
 * not call back into this store. Returns 0, what `fn` returned, or SHMSTORE_ECORRUPT. */
SHMSTORE_API int shmstore_list(shmstore_t *s, const char *prefix,
                               int (*fn)(const shmstore_obj_info_t *info, void *arg), void *arg);

/* Describe the object `name` (or the member of an array set of that full name). Returns
 * 0, -ENOENT, SHMSTORE_ENAME. */
SHMSTORE_API int shmstore_info(shmstore_t *s, const char *name, shmstore_obj_info_t *out);

/* Remove the object `name` from the index. Open handles then fail with -ESTALE; views
 * stay valid and the memory is freed when the last is released. Waits for a writer of
 * the object that is mid-put (so a thread must not delete a value it has reserved or
 * locked). Returns 0, -ENOENT, SHMSTORE_ENAME, -EPERM (a member of an array set: a set
 * is removed whole). */
SHMSTORE_API int shmstore_delete(shmstore_t *s, const char *name);

/* ------------------------------------------------------------------------------------
 * Values: latest-value registers
 * ---------------------------------------------------------------------------------- */

typedef struct shmstore_value shmstore_value_t;

/* Flags of shmstore_value_open(). */
#define SHMSTORE_V_CREATE 0x1u /* create the value if it does not exist */
#define SHMSTORE_V_EXCL 0x2u   /* with V_CREATE: fail with -EEXIST if it exists */

/* Open the value `name`, optionally creating it with no version. The handle keeps the
 * object's header leased, so its operations never touch freed memory; it is the fast
 * path (no name lookup). Returns 0, -ENOENT, -EEXIST, SHMSTORE_EKIND, SHMSTORE_ENAME,
 * SHMSTORE_ELEASES, -ENOSPC. May block briefly on the metadata lock. */
SHMSTORE_API int shmstore_value_open(shmstore_t *s, const char *name, unsigned flags,
                                     shmstore_value_t **out);

/* Close a handle (views taken through it stay valid). Accepts NULL. */
SHMSTORE_API void shmstore_value_close(shmstore_value_t *v);

/* Flags of shmstore_value_put() and shmstore_value_reserve(). */
#define SHMSTORE_PUT_SAME_LAYOUT 0x1u /* fail with SHMSTORE_ELAYOUT unless type, dtype, shape
                                         and size equal the current version's */

/* Publish a new version: copy `len` bytes described by `d` (NULL = BYTES) into a block
 * of the value no reader is using, then make it current with one atomic store; version
 * and mtime go up and waiters are woken. Size, type and shape may change unless
 * SHMSTORE_PUT_SAME_LAYOUT is given. Blocks only while another writer of this value is
 * mid-put (writers are serialized per value; a dead writer is detected and recovered).
 * Returns 0, -ESTALE (deleted), SHMSTORE_ESEALED, SHMSTORE_ELAYOUT, -EINVAL (descriptor
 * does not match len), -ENOSPC (store or /dev/shm full; nothing changed). */
SHMSTORE_API int shmstore_value_put(shmstore_value_t *v, const shmstore_datum_t *d,
                                    const void *data, size_t len, unsigned flags);

/* As shmstore_value_put(), with the version's mtime set to `mtime_ns` (CLOCK_REALTIME;
 * 0 = now) instead of the time of the put: what a mirror needs that republishes another
 * store's versions with their own times. The mtime may go backwards if the caller says
 * so; versions still only grow. Returns as shmstore_value_put(). */
SHMSTORE_API int shmstore_value_put_at(shmstore_value_t *v, const shmstore_datum_t *d,
                                       const void *data, size_t len, unsigned flags,
                                       uint64_t mtime_ns);

/* Zero-copy put, step 1: take the value's writer lock and return in `*data` a block of
 * `len` writable bytes for a version described by `d`. Nothing is visible to readers
 * until shmstore_value_commit(); shmstore_value_abort() discards it. Exactly one of the
 * two must follow; meanwhile other writes through this handle fail with -EBUSY. If the
 * process dies in between, the block is reclaimed and no reader ever sees it. Returns
 * as shmstore_value_put(). */
SHMSTORE_API int shmstore_value_reserve(shmstore_value_t *v, const shmstore_datum_t *d,
                                        size_t len, unsigned flags, void **data);

/* Publish the reserved block as the new version (never fails on a reserved block);
 * releases the writer lock. Returns 0 or -EINVAL if nothing was reserved. */
SHMSTORE_API int shmstore_value_commit(shmstore_value_t *v);

/* Discard the reserved block and release the writer lock. Accepts a value with nothing
 * reserved. */
SHMSTORE_API void shmstore_value_abort(shmstore_value_t *v);

/* In-place update: like reserve, with the block pre-filled with a copy of the current
 * version and `*d` describing it, so the caller changes only what it needs; unlock
 * publishes the change as a new version. Readers keep reading the previous version
 * meanwhile (they are never blocked and never see a half-made change, even if the
 * writer dies). Waits up to `timeout_ns` for another writer. Returns 0, -ETIMEDOUT,
 * SHMSTORE_ENOVALUE, SHMSTORE_ESEALED, -ESTALE, -ENOSPC. */
SHMSTORE_API int shmstore_value_lock(shmstore_value_t *v, int64_t timeout_ns, void **data,
                                     size_t *len, shmstore_datum_t *d);

/* Publish what was changed under shmstore_value_lock(). Returns 0 or -EINVAL. */
SHMSTORE_API int shmstore_value_unlock(shmstore_value_t *v);

/* Copy the current version: payload into `buf` (capacity `cap`), its descriptor into `d`
 * (may be NULL; d->attrs is set to NULL, use a view for attrs), its byte length into
 * `*len` and its version into `*version` (both may be NULL). Consistent by sequence
 * check: never torn, never blocks the writer. Never blocks. Returns 0,
 * SHMSTORE_ENOVALUE, -ESTALE, -ENOBUFS (cap too small; `*len` says the size needed). */
SHMSTORE_API int shmstore_value_get(shmstore_value_t *v, shmstore_datum_t *d, void *buf,
                                    size_t cap, size_t *len, uint64_t *version);

/* A leased, read-only, zero-copy view of one version. A small value type: the caller
 * owns the struct; the bytes belong to the store. */
typedef struct shmstore_view {
    const void *data;      /* payload, 64-byte aligned (scalar types: 16-byte aligned,
                              kept on the descriptor's cache line) */
    size_t len;            /* payload bytes */
    uint64_t version;
    uint64_t mtime_ns;
    shmstore_datum_t desc; /* attrs point into the store, valid with the view */
    shmstore_t *store;     /* internal: where the lease is held */
    uint64_t block_off;    /* internal: the leased block */
} shmstore_view_t;

/* Pin the current version of `v` and describe it in `*out` without copying. The bytes
 * stay valid and unchanged until shmstore_view_release(), even if newer versions are
 * published or the value is deleted, and even after shmstore_value_close(). Never waits
 * for a writer. Returns 0, SHMSTORE_ENOVALUE, -ESTALE, SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_value_view(shmstore_value_t *v, shmstore_view_t *out);

/* Release the lease of a view. Accepts a zeroed view, a view already released, and a
 * view of a store already closed. Never waits for a writer; when it is the last lease of
 * a version that was replaced or deleted, it frees the block under the metadata lock. */
SHMSTORE_API void shmstore_view_release(shmstore_view_t *view);

/* In a fork child: take over a view inherited from the parent. The parent's lease kept
 * the bytes of an inherited view unchanged only as long as the parent held the view;
 * this leases the same version under `s`, this process's own attachment of the same
 * store (shmstore_open in the child), and describes it in `*out` with pointers into
 * `s`'s mapping. The inherited view is left as it is (release it as usual: in the child
 * that only drops its reference; its bytes, in the inherited mapping, stay readable
 * while it is held and are protected by the new lease too). Release `*out` with
 * shmstore_view_release(). Never waits for a writer. Returns 0, -EINVAL (not an
 * inherited view, or a view of another store), -ESTALE (the parent no longer held the
 * view: its bytes may have been reused), SHMSTORE_ELEASES, SHMSTORE_EFORK (`s` itself
 * was inherited). Open `s` with SHMSTORE_O_NORECOVER: if the parent has already exited,
 * a normal attach may reclaim its slot, and with it the lease to adopt. */
SHMSTORE_API int shmstore_view_adopt(shmstore_t *s, const shmstore_view_t *inherited,
                                     shmstore_view_t *out);

/* The latest version number (0 = never written) and its time. One atomic load each;
 * never block. Return 0 or -ESTALE. */
SHMSTORE_API int shmstore_value_version(shmstore_value_t *v, uint64_t *version);
SHMSTORE_API int shmstore_value_mtime(shmstore_value_t *v, uint64_t *mtime_ns);

/* Block until the value's version is greater than `after`, or `timeout_ns` passes. Spins
 * briefly, then sleeps on a futex: a writer makes a system call only when someone
 * sleeps. A waiter faster than the writer sees every version. Returns 0 with the new
 * version in `*version` (may be NULL), -ETIMEDOUT, -EINTR (a signal arrived; the
 * caller may retry), -ESTALE. */
SHMSTORE_API int shmstore_value_wait(shmstore_value_t *v, uint64_t after, int64_t timeout_ns,
                                     uint64_t *version);

/* Publish a new version with the same data (a start/stop signal between processes):
 * version and mtime go up and waiters wake. Works on a value with no version yet (the
 * new version is NONE). Returns as shmstore_value_put(). */
SHMSTORE_API int shmstore_value_trigger(shmstore_value_t *v);

/* The version that the last successful put, commit, unlock or trigger through this
 * handle published (0 if none has): what a writer needs to tell readers "my data is
 * version N" without racing other writers, whose later versions the value's current
 * version may already be. With several threads writing through one handle, one of
 * theirs. One load; never blocks. */
SHMSTORE_API uint64_t shmstore_value_published(const shmstore_value_t *v);

/* Make the value immutable: later puts fail with SHMSTORE_ESEALED. Returns 0,
 * SHMSTORE_ENOVALUE, -ESTALE. */
SHMSTORE_API int shmstore_value_seal(shmstore_value_t *v);

/* Describe the value (as shmstore_info()). Returns 0 or -ESTALE. */
SHMSTORE_API int shmstore_value_info(shmstore_value_t *v, shmstore_obj_info_t *out);

/* ------------------------------------------------------------------------------------
 * Queues: bounded FIFO rings of entries
 *
 * Every entry is a datum in its own block of the store, with an index that only grows
 * (the first entry is 0). An entry is *writing* while reserved (only its writer sees
 * it), *ready* once committed, *in use* while a view holds it (a pop or a read), and its
 * block is freed when it has left the queue and the last view of it is released.
 * Producers and consumers are lock-free: no metadata lock per push or pop, only atomics
 * on the queue's cells; entry blocks come from the store's allocator (its lock is taken
 * to allocate and free them). A process killed at any instruction leaves no entry
 * half-visible and no block leaked: see shmstore_queue_commit() and shmstore_queue_pop().
 * ---------------------------------------------------------------------------------- */

typedef struct shmstore_queue shmstore_queue_t;

/* What a full queue does with a push or commit (set at creation). */
typedef enum shmstore_queue_full {
    SHMSTORE_QUEUE_BLOCK = 0,       /* the producer waits for room, up to its timeout */
    SHMSTORE_QUEUE_DROP_OLDEST = 1, /* the oldest entry leaves the queue (views of it stay
                                       valid) and the new one goes in */
    SHMSTORE_QUEUE_ERROR = 2,       /* the push fails with -EAGAIN */
} shmstore_queue_full_t;

/* Options for creating a queue; a zeroed struct (or NULL) means all defaults. */
typedef struct shmstore_queue_options {
    uint64_t capacity;  /* entries; 0 = 1024; at most 2^32 */
    uint64_t slot_size; /* largest entry payload in bytes; 0 = any size */
    uint32_t full;      /* shmstore_queue_full_t */
} shmstore_queue_options_t;

/* Flags of shmstore_queue_open(). */
#define SHMSTORE_Q_CREATE 0x1u /* create the queue if it does not exist */
#define SHMSTORE_Q_EXCL 0x2u   /* with Q_CREATE: fail with -EEXIST if it exists */

/* Open the queue `name`, optionally creating it empty with `opt` (ignored when it
 * exists: the creator's options stand). The handle keeps the object leased; close it
 * with shmstore_queue_close(). May block briefly on the metadata lock. Returns 0,
 * -ENOENT, -EEXIST, -EINVAL (bad options), SHMSTORE_EKIND, SHMSTORE_ENAME,
 * SHMSTORE_ELEASES, -ENOSPC. */
SHMSTORE_API int shmstore_queue_open(shmstore_t *s, const char *name, unsigned flags,
                                     const shmstore_queue_options_t *opt,
                                     shmstore_queue_t **out);

/* Close a handle (views and reservations taken through it stay valid; a reservation
 * still open is aborted only by shmstore_queue_abort() or by this process's exit).
 * Accepts NULL. */
SHMSTORE_API void shmstore_queue_close(shmstore_queue_t *q);

/* A reserved entry: `data` is where its `len` payload bytes go. The caller owns the
 * struct; the block belongs to the store. */
typedef struct shmstore_queue_res {
    void *data;
    size_t len;
    uint64_t block_off; /* internal: the reserved block, 0 = none */
} shmstore_queue_res_t;

/* Zero-copy push, step 1: allocate a block for an entry of `len` bytes described by `d`
 * (NULL = BYTES) and point res->data at its payload. The entry is visible to nobody
 * until shmstore_queue_commit(); shmstore_queue_abort() frees it. A handle may hold any
 * number of reservations. If the process dies first, the block is freed by recovery.
 * Takes the metadata lock briefly (the allocator). Returns 0, -EINVAL (descriptor does
 * not match len), -EMSGSIZE (larger than the queue's slot size), -ESTALE, -ENOSPC,
 * SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_queue_reserve(shmstore_queue_t *q, const shmstore_datum_t *d,
                                        size_t len, shmstore_queue_res_t *res);

/* Zero-copy push, step 2: append the reserved entry and return its index in `*index`
 * (may be NULL); consumers waiting are woken. On a full queue, as the queue's policy
 * says: wait up to `timeout_ns` for room (-ETIMEDOUT: the reservation is kept, commit
 * again or abort), drop the oldest entry, or fail with -EAGAIN (reservation kept).
 * A process killed mid-commit leaves either no entry or the whole entry. Returns 0,
 * -ETIMEDOUT, -EAGAIN, -EINTR, -EINVAL (nothing reserved), -ESTALE (queue deleted: the
 * reservation is freed). */
SHMSTORE_API int shmstore_queue_commit(shmstore_queue_t *q, shmstore_queue_res_t *res,
                                       int64_t timeout_ns, uint64_t *index);

/* As shmstore_queue_commit(), and the reservation's lease goes on as `*out`: a view of
 * the committed entry (out->version is its index; release it with
 * shmstore_view_release()). The block stays valid while the view is held, even once the
 * entry is popped: what a writer needs that still has pointers into it (a zero-copy
 * array that may outlive the commit). Writing through them after the commit changes a
 * published entry: don't. Returns as shmstore_queue_commit(). */
SHMSTORE_API int shmstore_queue_commit_keep(shmstore_queue_t *q, shmstore_queue_res_t *res,
                                            int64_t timeout_ns, shmstore_view_t *out);

/* Free a reservation without publishing it. Accepts one already committed or aborted. */
SHMSTORE_API void shmstore_queue_abort(shmstore_queue_t *q, shmstore_queue_res_t *res);

/* Copy `len` bytes described by `d` (NULL = BYTES) into a new entry and append it:
 * reserve + copy + commit (the entry is freed when the commit fails). Returns as those. */
SHMSTORE_API int shmstore_queue_push(shmstore_queue_t *q, const shmstore_datum_t *d,
                                     const void *data, size_t len, int64_t timeout_ns,
                                     uint64_t *index);

/* Block until the queue has committed entry `index` (its next_index, entries ever
 * committed, is past `index`), or `timeout_ns` passes; `*next_index` (may be NULL) gets
 * the next index. Takes nothing out of the queue: what a reader that follows the queue
 * by index needs (a bridge reads entries and deletes them once delivered). Spins
 * briefly, then sleeps on the futex producers bump; no system call for producers when
 * nobody sleeps. Returns 0, -ETIMEDOUT, -EINTR, -ESTALE. */
SHMSTORE_API int shmstore_queue_wait(shmstore_queue_t *q, uint64_t index, int64_t timeout_ns,
                                     uint64_t *next_index);

/* Take the oldest entry out of the queue (each entry goes to exactly one consumer) and
 * return it as a leased view (out->version is its index); release it with
 * shmstore_view_release(), which frees the block unless another view holds it. Waits
 * up to `timeout_ns` for an entry (spin, then futex; 0 = never waits). A consumer killed
 * mid-pop leaves the entry in the queue; one killed after the pop, holding the view,
 * loses it (its block is freed by recovery). Returns 0, -ETIMEDOUT (empty), -EINTR,
 * -ESTALE, SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_queue_pop(shmstore_queue_t *q, int64_t timeout_ns,
                                    shmstore_view_t *out);

/* Pop and copy: the payload into `buf` (capacity `cap`), its descriptor into `d` (may be
 * NULL; attrs = NULL), length and index into `*len` and `*index` (may be NULL). When the
 * oldest entry does not fit, it stays in the queue and -ENOBUFS is returned with `*len`
 * set to its size. Returns as shmstore_queue_pop() and -ENOBUFS. */
SHMSTORE_API int shmstore_queue_pop_copy(shmstore_queue_t *q, int64_t timeout_ns,
                                         shmstore_datum_t *d, void *buf, size_t cap,
                                         size_t *len, uint64_t *index);

/* A leased view of entry `index`, left in the queue (readers may read an entry many
 * times). Never blocks. Returns 0, -ENOENT (not in the queue: popped, deleted, dropped or
 * not yet committed), -ESTALE, SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_queue_read(shmstore_queue_t *q, uint64_t index, shmstore_view_t *out);

/* Whether the queue holds entry `index` now (a snapshot; no lease). Never blocks.
 * Returns 1, 0, or -ESTALE. */
SHMSTORE_API int shmstore_queue_contains(shmstore_queue_t *q, uint64_t index);

/* A leased view of the newest entry in the queue. O(1) unless deleted entries lie at the
 * end. Never blocks. Returns 0, -ENOENT (empty), -ESTALE, SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_queue_read_latest(shmstore_queue_t *q, shmstore_view_t *out);

/* Views of entries indices[0..n): all of them (out[0..n)) or none (on failure every view
 * taken is released). Never blocks. Returns as shmstore_queue_read(). */
SHMSTORE_API int shmstore_queue_read_batch(shmstore_queue_t *q, const uint64_t *indices,
                                           size_t n, shmstore_view_t *out);

/* Remove entry `index` from the queue without popping it (it becomes a hole that pops
 * skip, and that a push into a full queue takes the place of once it is the oldest; a
 * hole between live entries keeps its place until the entries before it are popped). An entry a view holds is removed only with `force` (the views stay valid).
 * Never blocks. Returns 0, -ENOENT, -EBUSY (held by a view, no force), -ESTALE. */
SHMSTORE_API int shmstore_queue_delete(shmstore_queue_t *q, uint64_t index, int force);

/* The number of entries in the queue. One load; never blocks. Returns 0 or -ESTALE. */
SHMSTORE_API int shmstore_queue_count(shmstore_queue_t *q, uint64_t *count);

/* The indices of the entries in the queue, oldest first, into buf[0..cap); `*n` is how
 * many there are (may be NULL; more than cap: -ENOBUFS, with the first cap written). A snapshot:
 * producers and consumers may move meanwhile. Never blocks. Returns 0, -ENOBUFS,
 * -ESTALE. */
SHMSTORE_API int shmstore_queue_indices(shmstore_queue_t *q, uint64_t *buf, size_t cap,
                                        size_t *n);

/* Describe the queue (as shmstore_info()). Returns 0 or -ESTALE. */
SHMSTORE_API int shmstore_queue_info(shmstore_queue_t *q, shmstore_obj_info_t *out);

/* ------------------------------------------------------------------------------------
 * Tables: fixed-record replay buffers
 *
 * A table holds `capacity` records of a fixed schema (named fields, each a dtype and a
 * shape) in one block of the store, laid out in rows. Writers append records through an
 * atomic ticket counter: append(n) takes n consecutive indices, and once the table is
 * full each new record overwrites the oldest (a ring). An index is the record's ticket:
 * a 64-bit count that only grows (the first record is 0; record i lives in slot
 * i % capacity until record i + capacity replaces it). Every record has its own
 * sequence word (a seqlock): readers copy a record and retry if a writer touched it,
 * so readers never block writers and never return a torn record, and no lock, file or
 * mapping exists per record. A writer killed mid-record leaves that record *invalid*
 * (skipped by sampling, -ENODATA from get) and blocks nobody; the slot is reused by the
 * next lap. Buffers are passed per field ("columns"): `cols[f]` points at n values of
 * field f, each fields[f].size bytes, back to back (numpy arrays with a leading batch
 * dimension).
 * ---------------------------------------------------------------------------------- */

typedef struct shmstore_table shmstore_table_t;

#define SHMSTORE_TABLE_FIELDS_MAX 32 /* fields per schema */
#define SHMSTORE_FIELD_NAME_MAX 63   /* bytes of a field name (UTF-8, no NUL) */
#define SHMSTORE_FIELD_NDIM_MAX 8    /* dimensions of one field's value (0 = a scalar) */
#define SHMSTORE_TABLE_CAPACITY_MAX (1ull << 32)

/* One field of a schema: a numpy dtype string (as shmstore_datum_t.dtype) and the shape
 * of one value. `size` and `offset` are filled by the library (ignored on input). */
typedef struct shmstore_table_field {
    char name[SHMSTORE_FIELD_NAME_MAX + 1];
    char dtype[SHMSTORE_DTYPE_MAX];
    uint32_t ndim;
    uint64_t shape[SHMSTORE_FIELD_NDIM_MAX];
    uint64_t size;   /* bytes of one value: itemsize * prod(shape) */
    uint64_t offset; /* where the value lies in a record's slot */
} shmstore_table_field_t;

/* Flags of shmstore_table_options_t.flags. */
#define SHMSTORE_TABLE_PRIORITIZED 0x1u /* keep a priority per record and a sum tree
                                           (sample with SHMSTORE_SAMPLE_PRIORITIZED) */

/* Options for creating a table (required: capacity and fields). */
typedef struct shmstore_table_options {
    uint64_t capacity;                    /* records, 1..SHMSTORE_TABLE_CAPACITY_MAX */
    uint32_t n_fields;                    /* 1..SHMSTORE_TABLE_FIELDS_MAX */
    uint32_t flags;                       /* SHMSTORE_TABLE_* */
    const shmstore_table_field_t *fields; /* n_fields entries, names distinct */
} shmstore_table_options_t;

/* Flags of shmstore_table_open(). */
#define SHMSTORE_T_CREATE 0x1u /* create the table if it does not exist */
#define SHMSTORE_T_EXCL 0x2u   /* with T_CREATE: fail with -EEXIST if it exists */

/* Open the table `name`, optionally creating it with `opt` (ignored when it exists: the
 * creator's schema stands). Creation allocates all the records at once (committing
 * their memory) under the store's metadata lock, then, without the lock, writes every
 * record's sequence word, which takes about as long as touching one page per record; a
 * table that does not fit the store is -ENOSPC and nothing is created. May block: an
 * open of a table that another process is still creating waits until it is ready (and
 * finishes the creation itself if that process died). The handle leases the table;
 * close it with shmstore_table_close(). Returns 0, -ENOENT, -EEXIST, -EINVAL (bad
 * options or schema, with shmstore_errmsg() saying which), SHMSTORE_EDTYPE,
 * SHMSTORE_EKIND, SHMSTORE_ENAME, SHMSTORE_ELEASES, -ENOSPC, SHMSTORE_ECORRUPT, -EBUSY
 * (its creator is alive but made no progress for a second: stopped). */
SHMSTORE_API int shmstore_table_open(shmstore_t *s, const char *name, unsigned flags,
                                     const shmstore_table_options_t *opt,
                                     shmstore_table_t **out);

/* Close a handle. Accepts NULL. */
SHMSTORE_API void shmstore_table_close(shmstore_table_t *t);

/* The table's schema: `*n` fields at `*fields` (sizes and offsets filled), owned by the
 * handle and valid until it is closed. Never fails. */
SHMSTORE_API void shmstore_table_fields(const shmstore_table_t *t,
                                        const shmstore_table_field_t **fields, uint32_t *n);

/* Records the table holds at most. */
SHMSTORE_API uint64_t shmstore_table_capacity(const shmstore_table_t *t);

/* Records ever appended (the next append's first index; those still being written
 * included) into `*total`, and the valid records into `*count` (may be NULL): a
 * snapshot of the slots that hold a record (ever written, at most the capacity) less
 * those lost to dead writers. Indices taken by shmstore_table_advance() or by an append
 * and not written yet do not count (a record being written into a slot never used
 * before counts while it is written). A few loads; never blocks. Returns 0 or -ESTALE
 * (the table was deleted). */
SHMSTORE_API int shmstore_table_count(shmstore_table_t *t, uint64_t *total, uint64_t *count);

/* Append n records, cols[f] holding n values of field f; their indices are *first ..
 * *first + n - 1 (`first` may be NULL). When the table is full the oldest records are
 * overwritten. Lock-free among appenders: waits only for a writer still writing the
 * same slot one lap earlier (a live one; a dead one's record is recovered). A prioritized
 * table gives new records the largest priority set so far (1.0 at first). Returns 0,
 * -EINVAL (n = 0, a NULL column, n more than the capacity), -ESTALE, SHMSTORE_ELEASES
 * (this process's threads hold 8 writes at once), -EBUSY (a slot stayed held for a
 * second by a live writer, a stopped process: that record was not written, the others
 * were). */
SHMSTORE_API int shmstore_table_append(shmstore_table_t *t, const void *const *cols, size_t n,
                                       uint64_t *first);

/* Write records first .. first + n - 1 (rows 0..n-1 of cols) in place: each replaces
 * the record of that index, or fills it if it was appended and not written yet (see
 * shmstore_table_advance()); a record that was invalid becomes valid. Their indices
 * stay; a record that was already there keeps its priority, one filled gets a new
 * record's. Returns 0, -ENOENT (an index not in the table: never appended, or
 * overwritten by a later lap; the others are written), -EINVAL, -ESTALE,
 * SHMSTORE_ELEASES, -EBUSY (as append). */
SHMSTORE_API int shmstore_table_write(shmstore_table_t *t, uint64_t first, size_t n,
                                      const void *const *cols);

/* Take the next n indices without writing their records (into `*first`, may be NULL):
 * they read as not written yet (-ENOENT) and are not sampled until shmstore_table_write()
 * fills them. What a fixed array of records needs (write any index of 0..capacity-1 in
 * any order: advance by the capacity once). The count of shmstore_table_count()
 * does not include them until they are written. Returns 0, -EINVAL (n = 0 or more than 2^32), -ESTALE. */
SHMSTORE_API int shmstore_table_advance(shmstore_table_t *t, uint64_t n, uint64_t *first);

/* Copy records indices[0..n) into row i of every column cols[f] (a NULL column is not
 * copied). Every record copied is whole: torn copies are retried. Never blocks a writer
 * and waits for none beyond a few microseconds. On failure some rows may have been
 * written, and the index that failed is in `*failed` (may be NULL). Returns 0, -ENOENT
 * (an index not in the table: not yet appended, or overwritten), -ENODATA (its record is
 * invalid: its writer died writing it), -EBUSY (it is still being written), -ESTALE. */
SHMSTORE_API int shmstore_table_gather(shmstore_table_t *t, const uint64_t *indices, size_t n,
                                       void *const *cols, uint64_t *failed);

/* Records first .. first + n - 1 (as gather). */
SHMSTORE_API int shmstore_table_get_range(shmstore_table_t *t, uint64_t first, size_t n,
                                          void *const *cols);

/* Record `index` (as gather of one). */
SHMSTORE_API int shmstore_table_get(shmstore_table_t *t, uint64_t index, void *const *cols);

/* Flags of shmstore_table_sample(). */
#define SHMSTORE_SAMPLE_PRIORITIZED 0x1u /* draw by priority (a prioritized table) */

/* Draw k records with replacement (as Python's random.choices: k may exceed the number
 * of records) and copy them into rows 0..k-1 of cols (as gather), their indices into
 * `indices` (may be NULL). Uniform over the valid records, or with
 * SHMSTORE_SAMPLE_PRIORITIZED in proportion to their priorities, each one's probability
 * at the draw going into `probs` (may be NULL). Records being written or invalid are
 * never returned: another is drawn. `rng` is a caller's 64-bit PRNG state (any value
 * seeds it; it is advanced) or NULL for the handle's own (seeded at open, safe from
 * several threads). Never blocks. Returns 0, -ENOENT (no valid record yet, or all
 * priorities 0), -EINVAL (prioritized on a table created without), -EAGAIN (every draw
 * of a pick kept hitting records being written), -ESTALE. */
SHMSTORE_API int shmstore_table_sample(shmstore_table_t *t, size_t k, unsigned flags,
                                       uint64_t *rng, void *const *cols, uint64_t *indices,
                                       double *probs);

/* Set the priorities of records indices[0..n) (finite, >= 0, at most
 * shmstore_table_priority_max(); resolution 2^-24, a positive priority is never 0).
 * Lock-free: concurrent updates and appends commute. Indices no longer in the table
 * are skipped; an index overwritten meanwhile may give its priority to the record that
 * replaced it. Returns 0, -EINVAL (not prioritized, bad value: nothing is set),
 * -ESTALE. */
SHMSTORE_API int shmstore_table_set_priorities(shmstore_table_t *t, const uint64_t *indices,
                                               const double *prios, size_t n);

/* The largest priority the table accepts (its sum tree is 64-bit fixed point). */
SHMSTORE_API double shmstore_table_priority_max(const shmstore_table_t *t);

/* Describe the table (as shmstore_info()). Returns 0 or -ESTALE. */
SHMSTORE_API int shmstore_table_info(shmstore_table_t *t, shmstore_obj_info_t *out);

/* ------------------------------------------------------------------------------------
 * Array sets: a name prefix of arrays (and scalars, strings) loaded all-or-nothing
 *
 * A set is one object named by its prefix ("myproject", "runs/42") whose members have
 * names relative to it ("a", "b/b1": a tree). All members live in one block of the
 * store, described by a directory written with them; the set becomes visible to
 * readers in one atomic step (shmstore_set_commit()) with every member complete. A set
 * being loaded is invisible (opening it gives -ENOENT), and if its creator fails, calls
 * shmstore_set_abort(), or dies at any instruction, nothing of it remains: recovery
 * (on the next attach, shmstore_gc(), or the creator's close) removes the partial set.
 * A committed set is persistent until removed (shmstore_delete(), shmstore_delete_prefix())
 * unless created SHMSTORE_SET_TIED: then it is removed when its creator closes the store,
 * exits or dies; readers never remove anything. Members are read-only for readers and
 * immutable (sealed), unless the set was created SHMSTORE_SET_WRITABLE: then every
 * process may write them in place, with no versioning and no synchronization (the
 * users' own lock orders writers and readers). A view of a member pins the whole
 * set's block with one lease, whatever the number of members.
 * ---------------------------------------------------------------------------------- */

typedef struct shmstore_set shmstore_set_t;

/* Flags of shmstore_set_create(). */
#define SHMSTORE_SET_TIED 0x1u      /* removed when the creating process exits or dies */
#define SHMSTORE_SET_WRITABLE 0x2u  /* shared-writable members (unsynchronized) */
#define SHMSTORE_SET_OVERWRITE 0x4u /* replace an existing object of that name at commit */

/* One member of a set: its name relative to the set's prefix ("b/b1": components
 * separated by '/', none empty; prefix + "/" + name at most SHMSTORE_NAME_MAX bytes),
 * its descriptor (attrs included) and its payload length. In shmstore_set_member()'s
 * answer, `name` (NUL-terminated) and desc.attrs point into the store's mapping and stay
 * valid while the set handle is open. */
typedef struct shmstore_set_member {
    const char *name;
    shmstore_datum_t desc;
    uint64_t len;
    uint64_t offset; /* out (shmstore_set_member()): where the payload starts in the view
                        of shmstore_set_view_all(); ignored by shmstore_set_create() */
} shmstore_set_member_t;

/* Begin loading the set `prefix` with members m[0..n): allocate one block for all of
 * them (committed memory: a full store or /dev/shm is -ENOSPC here, never a SIGBUS
 * later) and write the directory. The set is invisible until shmstore_set_commit(); fill
 * each member through shmstore_set_data() meanwhile. Members are stored sorted by name:
 * use shmstore_set_find() for a member's index. Takes the metadata lock (the allocation
 * commits the memory, so it may take a while for large sets). Returns 0, -EEXIST (an
 * object `prefix` exists, no SHMSTORE_SET_OVERWRITE), -EINVAL (bad descriptor, duplicate
 * member, a member that is also another's group, n == 0 is allowed), SHMSTORE_ENAME (a
 * joined name too long, or invalid; the message names it), -EEXIST also when a member's
 * full name is taken (members are values of their names), -ENOSPC, SHMSTORE_ELEASES
 * (this process holds the most writer locks a process may, or its lease table is full).
 * A process may load and tie any number of sets at once (no fixed limit). */
SHMSTORE_API int shmstore_set_create(shmstore_t *s, const char *prefix, unsigned flags,
                                     const shmstore_set_member_t *m, size_t n,
                                     shmstore_set_t **out);

/* Where member `i`'s payload bytes go: writable while the set is being loaded by this
 * handle, and always for a SHMSTORE_SET_WRITABLE set; NULL otherwise or if i is out of
 * range. The memory belongs to the store. */
SHMSTORE_API void *shmstore_set_data(shmstore_set_t *set, size_t i);

/* Copy `len` bytes from `src` into member `i` at `offset` (as the store's own puts do:
 * non-temporal stores for large copies, which keep the caller's cache). The member must
 * be writable (shmstore_set_data()). Never blocks. Returns 0, -EINVAL, -ERANGE. */
SHMSTORE_API int shmstore_set_write(shmstore_set_t *set, size_t i, uint64_t offset,
                                    const void *src, size_t len);

/* Publish a set being loaded: every member becomes visible at once. With
 * SHMSTORE_SET_OVERWRITE, the object previously of that name is removed first (readers
 * holding views of it keep them). Returns 0, -EINVAL (not a set being loaded),
 * -ESTALE (the set was deleted meanwhile: nothing published). The handle stays open
 * for reading. On failure the set is removed. */
SHMSTORE_API int shmstore_set_commit(shmstore_set_t *set);

/* Remove a set being loaded (nothing of it stays) and close the handle; on a committed
 * set, only closes. Accepts NULL. */
SHMSTORE_API void shmstore_set_abort(shmstore_set_t *set);

/* Open the committed set `prefix` for reading. The handle keeps the set's block leased:
 * its members stay valid even if the set is deleted, until shmstore_set_close().
 * Returns 0, -ENOENT (none, or still being loaded), SHMSTORE_EKIND, SHMSTORE_ENAME,
 * SHMSTORE_ELEASES, SHMSTORE_ECORRUPT (a directory that does not fit its block). */
SHMSTORE_API int shmstore_set_open(shmstore_t *s, const char *prefix, shmstore_set_t **out);

/* Close a handle (views taken through it stay valid). On a set still being loaded this
 * is shmstore_set_abort(). Accepts NULL. */
SHMSTORE_API void shmstore_set_close(shmstore_set_t *set);

/* The number of members. Never fails. */
SHMSTORE_API size_t shmstore_set_count(const shmstore_set_t *set);

/* Describe member `i` (0 <= i < count, in name order). Returns 0 or -ERANGE. */
SHMSTORE_API int shmstore_set_member(const shmstore_set_t *set, size_t i,
                                     shmstore_set_member_t *out);

/* Open the set holding the member whose full name is `name` ("prefix/b/b1": members are
 * values of their own names) and find it: *out is the open set (shmstore_set_close() it)
 * and *i the member's index. Returns 0, -ENOENT (no set holds that name),
 * SHMSTORE_ENAME, SHMSTORE_ELEASES, SHMSTORE_ECORRUPT. */
SHMSTORE_API int shmstore_set_open_member(shmstore_t *s, const char *name, shmstore_set_t **out,
                                          size_t *i);

/* The index of the member called `name` (relative). Returns 0 or -ENOENT. */
SHMSTORE_API int shmstore_set_find(const shmstore_set_t *set, const char *name, size_t *i);

/* A leased, zero-copy view of member `i` (version 1, mtime = commit time). It stays
 * valid after shmstore_set_close() and after the set is deleted, until
 * shmstore_view_release(). For a SHMSTORE_SET_WRITABLE set, view.data may be written
 * (cast away const). Never blocks. Returns 0, -ERANGE, SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_set_view(shmstore_set_t *set, size_t i, shmstore_view_t *out);

/* One leased, zero-copy view of every member's payload at once (type BYTES): member i's
 * payload is at view.data + shmstore_set_member(set, i).offset. One lease for the whole
 * set whatever its size (what a reader building all the members' arrays wants). Same
 * lifetime and writability as shmstore_set_view(). Never blocks. Returns 0,
 * SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_set_view_all(shmstore_set_t *set, shmstore_view_t *out);

/* Describe the set (as shmstore_info()). Returns 0 or -ESTALE. */
SHMSTORE_API int shmstore_set_info(shmstore_set_t *set, shmstore_obj_info_t *out);

/* Remove every object named `prefix` or starting with `prefix` + "/" (sets, values,
 * queues, ... ; NULL or "" is refused: -EINVAL), e.g. a set and the values put beside it.
 * `*n_deleted` (may be NULL) counts them. Views stay valid. Returns 0 (also when nothing
 * matched), -EINVAL, SHMSTORE_ENAME, or the first error of a deletion. */
SHMSTORE_API int shmstore_delete_prefix(shmstore_t *s, const char *prefix, uint64_t *n_deleted);

/* ------------------------------------------------------------------------------------
 * HDF5 import and export (when built with libhdf5)
 * ---------------------------------------------------------------------------------- */

/* Flags of shmstore_hdf5_load(). */
#define SHMSTORE_H5_OVERWRITE 0x1u   /* replace an existing set of that prefix */
#define SHMSTORE_H5_SKIP_UNSUPPORTED 0x2u /* skip datasets and attributes of types that have
                                             no datum (variable-length, references, ...) */
#define SHMSTORE_H5_TIED 0x4u        /* the set is SHMSTORE_SET_TIED */
#define SHMSTORE_H5_WRITABLE 0x8u    /* the set is SHMSTORE_SET_WRITABLE */

/* Progress of a load: called before each dataset is read (done_bytes of total_bytes so
 * far, `path` the dataset's path in the file) and once at the end with path NULL.
 * Returning non-zero cancels the load (-ECANCELED, nothing left behind). */
typedef int (*shmstore_progress_fn)(const char *path, uint64_t done_bytes, uint64_t total_bytes,
                                    void *arg);

/* Whether this build of the library has HDF5 support (1) or not (0). */
SHMSTORE_API int shmstore_hdf5_available(void);

/* Load the HDF5 file `path` as the set `prefix`: groups become name components,
 * datasets members (every integer and float size, bool enums, complex compounds as h5py
 * writes them, fixed-length strings, other compounds as raw bytes with their numpy
 * layout in attr "__dtype__", scalar datasets as scalars, chunked and compressed
 * datasets), attributes of the root, groups and datasets become attrs (scalars and
 * strings; arrays of them as their numpy repr in a string attr). Each dataset is read
 * by libhdf5 straight into its member's memory. All-or-nothing (shmstore_set_create()).
 * `*n_loaded` (may be NULL) counts datasets. May block for as long as the reads take.
 * Returns 0, -ENOSYS (built without HDF5), -ENOENT / -EIO (missing or unreadable file,
 * the message names it), SHMSTORE_EDTYPE (unsupported type: the message names it and
 * its path; SHMSTORE_H5_SKIP_UNSUPPORTED skips it), -EEXIST, -ENOSPC, SHMSTORE_ENAME,
 * -ECANCELED, or what shmstore_set_create() returns. */
SHMSTORE_API int shmstore_hdf5_load(shmstore_t *s, const char *path, const char *prefix,
                                    unsigned flags, shmstore_progress_fn progress, void *arg,
                                    uint64_t *n_loaded);

/* Write the set `prefix` to a new HDF5 file `path` (replaced if it exists): members
 * become datasets under their groups, attrs become attributes. The file is written to
 * "<path>.tmp" and renamed into place, so a failure leaves no partial file. Returns 0,
 * -ENOSYS (built without HDF5), -ENOENT (no such set), -EIO (the message names the
 * file), SHMSTORE_EDTYPE. */
SHMSTORE_API int shmstore_hdf5_save(shmstore_t *s, const char *prefix, const char *path);

/* ------------------------------------------------------------------------------------
 * Rings: circular buffers of time-series frames
 *
 * A ring holds the newest `capacity` frames of a stream (a frame: one sample of every
 * channel, an array of a fixed dtype and frame shape, or a scalar for 1-D streams) and
 * counts every frame ever written: frame k of the stream has *position* k, and `total`
 * (the position of the next frame) is the only thing a write changes, in one 64-bit
 * store, so no index/wrap pair can tear. One writer at a time appends any number of
 * frames; readers keep a cursor (a position) and copy, view or wait for what came since.
 * Readers write nothing shared and never block the writer: a reader that the writer
 * laps is told exactly how many frames it lost, and is never handed a torn frame
 * without knowing. Reconfiguring (another dtype, frame shape, capacity or attrs) makes
 * a new *generation* of the ring under the same name; positions go on counting across
 * generations, readers follow, and an old generation's memory is freed when its last
 * reader lets go.
 *
 * A ring handle may be used from any thread, one call at a time for
 * shmstore_ring_follow(), shmstore_ring_reconfigure() and shmstore_ring_close() (they
 * move the handle to another generation); every other call may run concurrently.
 * ---------------------------------------------------------------------------------- */

typedef struct shmstore_ring shmstore_ring_t;

/* A ring's layout: the frame descriptor (an ARRAY datum: dtype, frame ndim 0..31 and
 * frame shape; its attrs are the ring's attrs: "srate", axis names, channel labels...)
 * and the capacity in frames (> 0). */
typedef struct shmstore_ring_config {
    shmstore_datum_t frame;
    uint64_t capacity;
} shmstore_ring_config_t;

/* Flags of shmstore_ring_open(). */
#define SHMSTORE_R_CREATE 0x1u /* create the ring if it does not exist */
#define SHMSTORE_R_EXCL 0x2u   /* with R_CREATE: fail with -EEXIST if it exists */
#define SHMSTORE_R_WRITER 0x4u /* take the writer role now (see shmstore_ring_write) */

/* Open the ring `name`. With SHMSTORE_R_CREATE a missing ring is created; `cfg` (may be
 * NULL) configures a ring that has no generation yet (a new one, or one a reader created
 * before any writer came), and is ignored otherwise: the current generation stands (see
 * shmstore_ring_reconfigure). The handle is on the ring's current generation and keeps
 * it leased. May block briefly on the metadata lock. Returns 0, -ENOENT, -EEXIST,
 * -EINVAL (bad config), SHMSTORE_EDTYPE, -EBUSY (R_WRITER: another handle holds the
 * writer role), SHMSTORE_EKIND, SHMSTORE_ENAME, SHMSTORE_ELEASES, -ENOSPC. */
SHMSTORE_API int shmstore_ring_open(shmstore_t *s, const char *name, unsigned flags,
                                    const shmstore_ring_config_t *cfg, shmstore_ring_t **out);

/* Close a handle: give up the writer role if it holds it and the lease of its
 * generation (views taken through it stay valid). Accepts NULL. */
SHMSTORE_API void shmstore_ring_close(shmstore_ring_t *r);

/* Append frames[0..n) (n * frame_len bytes, in the current generation's layout). Any n:
 * with n > capacity the newest `capacity` frames are kept and the others count as
 * written and overrun. The frames are copied, then published with one release store of
 * `total`; waiting readers are woken (no system call when nobody sleeps). The first
 * write through a handle takes the ring's writer role, kept until the handle closes:
 * one writer at a time, and a dead writer's role is reclaimed. Never blocks. Returns 0,
 * -EBUSY (another live handle, in this process or another, is the writer), SHMSTORE_ENOVALUE
 * (the ring has no generation yet: reconfigure it first), -ESTALE, SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_ring_write(shmstore_ring_t *r, const void *frames, uint64_t n);

/* Make a new generation with layout `cfg` (as the writer: takes the role as write does)
 * and move this handle to it. Positions go on: the new generation's first frame is the
 * next position. Readers see the change (SHMSTORE_EGENERATION) and follow; the old
 * generation's block is freed when the last handle or view on it lets go. Returns 0,
 * -EINVAL, SHMSTORE_EDTYPE, -EBUSY, -ENOSPC (the old generation stays current), -ESTALE. */
SHMSTORE_API int shmstore_ring_reconfigure(shmstore_ring_t *r, const shmstore_ring_config_t *cfg);

/* As shmstore_ring_reconfigure(), with the new generation's first position `base`
 * instead of the next one (`base` >= the frames written so far): positions from the
 * current total up to `base` are never written, and every reader counts them as lost,
 * exactly like overrun. What a mirror needs whose ring follows another ring's
 * positions (frames lost on the way), or that starts a ring at another's position.
 * Returns as shmstore_ring_reconfigure(), and -EINVAL (base below the total). */
SHMSTORE_API int shmstore_ring_reconfigure_at(shmstore_ring_t *r, const shmstore_ring_config_t *cfg,
                                              uint64_t base);

/* Where a read landed, in positions. Frames [cursor given, first) are lost to this
 * reader for good: overrun by the writer, or written in generations it skipped. */
typedef struct shmstore_ring_span {
    uint64_t n;          /* frames returned */
    uint64_t first;      /* position of the first frame returned */
    uint64_t cursor;     /* first + n: the cursor for the next read */
    uint64_t lost;       /* first - the cursor given */
    int is_older_cursor; /* the cursor given was from an older generation than the
                            handle's: `lost` includes that generation's frames after it */
} shmstore_ring_span_t;

/* Copy the frames written since position `cursor`, at most `max` of them (the oldest
 * first), into `buf` (room for max * frame_len bytes), and say in `*out` where they came
 * from. Frames the writer overwrote before or during the copy are not returned and are
 * counted in out->lost, exactly. With nothing new, out->n is 0. Never blocks. Returns 0,
 * -EINVAL (a cursor past the frames written: from the future), SHMSTORE_EGENERATION
 * (the handle's generation was superseded and the cursor has read all of it: call
 * shmstore_ring_follow()), SHMSTORE_ENOVALUE (not configured), -ESTALE. */
SHMSTORE_API int shmstore_ring_read_since(shmstore_ring_t *r, uint64_t cursor, void *buf,
                                          uint64_t max, shmstore_ring_span_t *out);

/* Copy the newest `k` frames of the handle's generation (fewer if fewer are held) into
 * `buf` (room for k * frame_len bytes), oldest first. Never blocks. Returns 0,
 * SHMSTORE_ENOVALUE, -ESTALE. */
SHMSTORE_API int shmstore_ring_latest(shmstore_ring_t *r, uint64_t k, void *buf,
                                      shmstore_ring_span_t *out);

/* A zero-copy, leased view of frames in a ring's storage: one piece, or two when the
 * range wraps around the end of the storage. */
typedef struct shmstore_ring_view {
    const void *data[2];       /* frames [span.first, +n[0]) then, wrapped, the rest */
    uint64_t n[2];             /* frames in each piece (n[1] = 0: one piece) */
    uint64_t frame_len;
    uint64_t generation;
    shmstore_ring_span_t span;
    shmstore_view_t lease;     /* internal: the generation block's lease */
} shmstore_ring_view_t;

/* As shmstore_ring_read_since(), without copying: `*out` points at the frames in the
 * ring's storage and leases the generation (the memory stays mapped and allocated until
 * shmstore_ring_view_release(), even after a reconfiguration or deletion). The writer is
 * not held back: it may overwrite viewed frames, so check the view after using it
 * (shmstore_ring_view_check). Returns as shmstore_ring_read_since(), and
 * SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_ring_view_since(shmstore_ring_t *r, uint64_t cursor, uint64_t max,
                                          shmstore_ring_view_t *out);

/* Say which frames shmstore_ring_view_since() would view now, without leasing anything:
 * `*out` as it would be in the view's span (frames already being overwritten left out).
 * For readers that hold a view of the whole storage (shmstore_ring_view_storage) and
 * address the frames in it themselves, at index (p - base) % capacity; they check what
 * they used afterwards with shmstore_ring_view_check() on that storage view, with its
 * span set to the frames used. One or two loads; never blocks. Returns as
 * shmstore_ring_read_since(). */
SHMSTORE_API int shmstore_ring_since(shmstore_ring_t *r, uint64_t cursor, uint64_t max,
                                     shmstore_ring_span_t *out);

/* A view of the whole storage of the handle's generation (n[0] = capacity frames, in
 * storage order: frame p is at index (p - base) % capacity, base being the generation's
 * first position; span.first = base), leased as above. Returns 0,
 * SHMSTORE_ENOVALUE, -ESTALE, SHMSTORE_ELEASES. */
SHMSTORE_API int shmstore_ring_view_storage(shmstore_ring_t *r, shmstore_ring_view_t *out);

/* After using a view: how many of its frames, from its first on, the writer has
 * overwritten or is overwriting now (0: everything read through the view so far was
 * intact). One load; never blocks. Returns 0 or -EINVAL (a released view). */
SHMSTORE_API int shmstore_ring_view_check(const shmstore_ring_view_t *v, uint64_t *n_overwritten);

/* Release a view's lease. Accepts a zeroed or released view. */
SHMSTORE_API void shmstore_ring_view_release(shmstore_ring_view_t *v);

/* Block until frames past position `cursor` exist in the handle's generation, or the
 * ring gets a new generation, or `timeout_ns` passes. Spins briefly, then sleeps on a
 * futex. Returns 0 with the frames written (> cursor) in `*total` (may be NULL),
 * SHMSTORE_EGENERATION (a new generation and nothing more in the handle's: follow),
 * -ETIMEDOUT, -EINTR, -ESTALE. */
SHMSTORE_API int shmstore_ring_wait(shmstore_ring_t *r, uint64_t cursor, int64_t timeout_ns,
                                    uint64_t *total);

/* Move the handle to the ring's current generation (its views stay valid). Returns 1 if
 * it moved, 0 if it was on it already, -ESTALE, SHMSTORE_ELEASES, SHMSTORE_ECORRUPT. */
SHMSTORE_API int shmstore_ring_follow(shmstore_ring_t *r);

/* Frames written so far, as the handle's generation counts them (one load). Returns 0
 * or -ESTALE. */
SHMSTORE_API int shmstore_ring_total(shmstore_ring_t *r, uint64_t *total);

/* The handle's generation, as a ring reader sees it. */
typedef struct shmstore_ring_state {
    shmstore_ring_config_t cfg; /* cfg.frame.attrs point into the store: valid while the
                                   handle stays on this generation */
    uint64_t frame_len;
    uint64_t generation;        /* 0: the ring has no generation yet */
    uint64_t base;              /* position of the generation's first frame */
    uint64_t total;             /* frames written */
    uint64_t oldest;            /* position of the oldest frame still held intact */
    int is_current;             /* no newer generation exists */
    int is_writer;              /* this handle holds the writer role */
    int32_t writer_pid;         /* the process holding the role, 0 = none */
} shmstore_ring_state_t;

/* Describe the handle's generation. Never blocks. Returns 0 or -ESTALE. */
SHMSTORE_API int shmstore_ring_state(shmstore_ring_t *r, shmstore_ring_state_t *out);

/* Describe the ring (as shmstore_info()). Returns 0 or -ESTALE. */
SHMSTORE_API int shmstore_ring_info(shmstore_ring_t *r, shmstore_obj_info_t *out);

/* ------------------------------------------------------------------------------------
 * Conveniences by name (each opens, acts and closes; use handles on hot paths)
 * ---------------------------------------------------------------------------------- */

/* Create the value if needed and put. Returns as open + put. */
SHMSTORE_API int shmstore_put(shmstore_t *s, const char *name, const shmstore_datum_t *d,
                              const void *data, size_t len, unsigned flags);

/* Open and get. Returns as open + get. */
SHMSTORE_API int shmstore_get(shmstore_t *s, const char *name, shmstore_datum_t *d, void *buf,
                              size_t cap, size_t *len, uint64_t *version);

#ifdef __cplusplus
}
#endif
#endif
