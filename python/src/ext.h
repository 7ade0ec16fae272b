/* ext.h - declarations shared by the files of the shmstore._shmstore extension.
 *
 * Objects and who owns what
 * - Core: one attached store (shmstore_t *). Refcounted by Python: the Store object,
 *   every Value handle opened on it and every leased Buffer hold a reference, so the
 *   mapping stays attached while any of them is alive (views outlive their Store).
 *   shmstore_close() runs in Core's tp_dealloc.
 * - Store: the user object. Holds its current Core (replaced after fork(): the C
 *   handles of the parent are invalid in a child, so the Store re-opens the store by
 *   name when it is first used there), and a small cache of Value handles for by-name
 *   operations.
 * - Value: a shmstore_value_t * plus the Core it was opened on.
 * - Buffer: a read-only export of leased bytes (shmstore_view_t) or a writable export of
 *   a locked block (Store.write). The root Buffer owns the lease; child Buffers (arrays
 *   inside a record) hold the root. Exports are counted (CPython mmapmodule.c): the
 *   lease goes when the root is deallocated, i.e. after the last consumer is gone.
 * Everything runs with the GIL held except the marked copy and wait sections; those
 * keep a strong reference to the Core (and Value) they use, so close() from another
 * thread cannot free what they touch.
 */
#ifndef SHMSTORE_PY_EXT_H
#define SHMSTORE_PY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

#include "shmstore.h"

/* A C-API return code meaning "a Python exception is already set". */
#define PYERR_SET (-1000000)
/* Copies at least this large release the GIL (memcpy of 16 KiB is ~1 us). */
#define GIL_COPY_MIN (16 * 1024)
/* Waits sleep in slices of this many ns so that Ctrl-C (PyErr_CheckSignals) works. */
#define WAIT_SLICE_NS (50 * 1000 * 1000)
/* Most by-name handles a Store keeps open (each holds one lease). */
#define HANDLE_CACHE_MAX 128

typedef struct modstate {
    PyTypeObject *Core_type;
    PyTypeObject *Store_type;
    PyTypeObject *Value_type;
    PyTypeObject *Buffer_type;
    PyTypeObject *Write_type;
    PyTypeObject *Queue_type;
    PyTypeObject *Reserve_type;
    PyTypeObject *Ring_type;
    /* exceptions */
    PyObject *Error;         /* shmstore.Error(Exception): base of our own classes below */
    PyObject *NotFoundError; /* (FileNotFoundError, KeyError) */
    PyObject *StaleError;    /* (LookupError): handle to a deleted object */
    PyObject *NoValueError;  /* (LookupError): value has no version yet */
    PyObject *LayoutError;   /* (ValueError): SAME_LAYOUT mismatch */
    PyObject *SealedError;   /* (PermissionError) */
    PyObject *CorruptError;  /* (OSError) */
    PyObject *LimitError;    /* (OSError): lease/process table full */
    PyObject *FullError;     /* (Error, BlockingIOError): a full queue refused a push */
    /* lazily imported */
    PyObject *np;            /* numpy module or NULL */
    PyObject *ndarray;       /* numpy.ndarray */
    PyObject *np_empty, *np_asarray, *np_ascontig;
    PyObject *dtype_of;      /* dict: numpy dtype -> dtype str, or None (pickle it) */
    PyObject *np_dtype;      /* dict: dtype str -> numpy dtype */
    PyObject *pk_dumps, *pk_loads, *pk_proto;
    /* writer locks this process holds across GIL releases (see value.c: put) */
    long n_wlocks;
    /* root Buffers holding a lease, for the fork hook (buffer_adopt_inherited) */
    struct BufferObject *leased;
    PyTypeObject *Table_type;
    PyTypeObject *Bridge_type;
} modstate;

/* ---- objects ---- */
typedef struct {
    PyObject_HEAD
    shmstore_t *s;
    PyObject *module; /* strong: keeps the module state alive */
    modstate *st;
    unsigned long gen; /* shm_fork_gen when attached: s is invalid in a fork child */
} CoreObject;

typedef struct {
    PyObject_HEAD
    CoreObject *core; /* NULL once closed */
    PyObject *name;   /* str */
    PyObject *dir;    /* str or None */
    PyObject *cache;  /* dict: name -> Value (internal handles) */
    shmstore_options_t opt;
    int create;
    modstate *st;
    PyObject *weakrefs;
} StoreObject;

typedef struct {
    PyObject_HEAD
    shmstore_value_t *v; /* NULL once closed */
    CoreObject *core;    /* the Core v belongs to */
    StoreObject *store;  /* strong for user handles; NULL for cached internal ones */
    PyObject *name;      /* str */
    int user;            /* a user handle (owns a Store reference) */
    int busy;            /* >0 while a GIL-released call uses v */
    int reserving;       /* a reserve/lock is open on v */
    modstate *st;
    uint64_t seen;       /* the latest version read, put or waited for through it */
} ValueObject;

typedef struct BufferObject {
    PyObject_HEAD
    struct BufferObject *root; /* NULL: this is the root (owns the lease) */
    CoreObject *core;          /* root only */
    shmstore_view_t view;      /* root only, when has_lease */
    int has_lease;
    /* root only: after fork, the child's attachment the adopted lease is held through
     * (the bytes stay in `core`'s mapping); NULL in the process that took the view */
    CoreObject *lease_core;
    struct BufferObject *lprev, *lnext; /* modstate.leased, while has_lease */
    /* root only: a queue entry reserved and not yet committed; its Queue (strong) aborts
     * it when the Buffer goes (queue.c: Queue.reserve) */
    struct QueueObject *resq;
    shmstore_queue_res_t res;
    modstate *st;
    int readonly;
    int released;
    char *ptr;
    Py_ssize_t len;
    Py_ssize_t itemsize;
    Py_ssize_t exports;        /* buffer exports, children count as one each */
    int ndim;
    char format[24];
    Py_ssize_t shape[SHMSTORE_NDIM_MAX];
    Py_ssize_t strides[SHMSTORE_NDIM_MAX];
    PyObject *weakrefs;
} BufferObject;

/* ---- module.c ---- */
/* Incremented in the child of every fork() (pthread_atfork). A Core attached in an older
 * generation belongs to an ancestor process: store_check_open() and value_ready()
 * re-attach before any library call, so no call site deals with SHMSTORE_EFORK. */
extern unsigned long shm_fork_gen;
int shm_raise(modstate *st, int err);
modstate *shm_state_of(PyObject *module);
PyObject *shm_module_of_type(PyTypeObject *type); /* borrowed */
int shm_numpy(modstate *st); /* import numpy lazily; 0 or -1 */
/* Arguments of a METH_FASTCALL | METH_KEYWORDS method (the hot ones: no tuple or dict is
 * built for the call). names[0..n) are the parameters in order, the first n_pos of them
 * positional-or-keyword, the rest keyword-only; out[i] gets each one given (borrowed) and
 * is left alone otherwise (the caller's default). The first n_req are required (their
 * out[] start NULL). 0, or -1 with a TypeError naming `fname`. */
int shm_fast_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *const *names, int n, int n_pos, int n_req, PyObject **out);
int shm_pickle(modstate *st);

/* ---- store.c ---- */
extern PyType_Spec Core_spec, Store_spec;
CoreObject *core_open(modstate *st, PyObject *module, const char *name, const char *dir,
                      unsigned flags, const shmstore_options_t *opt);
/* 0 if the Store is open and attached in this process (re-attaching it after fork), or
 * -1 with an exception set. */
int store_check_open(StoreObject *self);

/* ---- value.c ---- */
/* The UTF-8 of an object name (owned by `name`), or NULL with TypeError (not a str) or
 * ValueError (a NUL inside) set. */
const char *name_utf8(PyObject *name);
extern PyType_Spec Value_spec, Write_spec;
/* Open the value `name` of `store` as a new `type` instance (NULL: shmstore.Value).
 * create: 0 = must exist, 1 = create if needed, 2 = must not exist. user: a handle the
 * user holds (owns a Store reference) rather than one of the Store's cached ones. */
ValueObject *value_open(PyTypeObject *type, StoreObject *store, PyObject *name, int create,
                        int user);
/* Store.value(name, *, create=True, exclusive=False) and Value(store, name, ...). */
PyObject *value_open_args(PyTypeObject *type, StoreObject *store, PyObject *args, PyObject *kw);
PyObject *value_put_obj(ValueObject *h, PyObject *obj, PyObject *attrs, unsigned flags);
PyObject *value_get_obj(ValueObject *h, int view, uint64_t *version);
/* 0 if the handle is open and usable in this process (re-opening it after fork), or -1
 * with an exception set. Call before every use of h->v with the GIL held. */
int value_ready(ValueObject *h);
PyObject *value_wait_obj(ValueObject *h, PyObject *after, PyObject *timeout);
PyObject *value_attrs_obj(ValueObject *h);
PyObject *write_ctx_new(ValueObject *h, PyObject *timeout);
PyObject *obj_info_dict(const shmstore_obj_info_t *info);
/* A Python timeout (None = forever, seconds >= 0) in ns (-1 = forever). 0 or -1 (set). */
int shm_timeout_ns(PyObject *timeout, int64_t *out);
/* The next sleep of a wait that started at t0 with timeout tmo ns (-1 = none): at most
 * WAIT_SLICE_NS, so that signals are checked between slices; 0 once the time is up. */
struct timespec;
int64_t shm_next_slice(const struct timespec *t0, int64_t tmo);

/* ---- queue.c ---- */
typedef struct QueueObject {
    PyObject_HEAD
    shmstore_queue_t *q; /* NULL once closed */
    CoreObject *core;    /* the Core q belongs to */
    StoreObject *store;  /* strong */
    PyObject *name;      /* str */
    int busy;            /* >0 while a GIL-released call uses q */
    int reserving;       /* open reservations (Buffers that may abort through q) */
    uint32_t full;       /* the queue's policy (shmstore_queue_full_t), fixed at creation */
    modstate *st;
} QueueObject;
extern PyType_Spec Queue_spec, Reserve_spec;
/* Store.queue(name, *, capacity=None, full="block", slot_size=None, create=True,
 * exclusive=False). */
PyObject *queue_open_args(StoreObject *store, PyObject *args, PyObject *kw);

/* ---- table.c ---- */
extern PyType_Spec Table_spec;
/* Store.table(name, *, fields=None, capacity=None, prioritized=False, create=True,
 * exclusive=False). */
PyObject *table_open_args(StoreObject *store, PyObject *args, PyObject *kw);
/* ---- ring.c ---- */
typedef struct RingObject {
    PyObject_HEAD
    shmstore_ring_t *r;  /* NULL once closed */
    CoreObject *core;    /* the Core r belongs to */
    StoreObject *store;  /* strong */
    PyObject *name;      /* str */
    int busy;            /* >0 while a GIL-released call uses r */
    int is_writer;       /* the handle holds the writer role (kept until close) */
    modstate *st;
    /* What the handle's generation is (refreshed when the handle moves). */
    uint64_t cached_gen; /* (uint64_t)-1: nothing cached; 0: the ring has no generation */
    uint64_t cap, frame_len, base;
    uint32_t frame_ndim;
    uint64_t frame_dims[SHMSTORE_NDIM_MAX];
    char dtype_str[SHMSTORE_DTYPE_MAX];
    PyObject *np_dtype;    /* numpy dtype */
    PyObject *frame_shape; /* tuple */
    PyObject *storage;     /* read-only ndarray over the generation's storage, or NULL */
    shmstore_ring_view_t sview; /* the storage's view (its lease is owned by the array's root) */
} RingObject;
extern PyType_Spec Ring_spec;
extern PyType_Spec Bridge_spec; /* bridge.c */
/* Store.ring(name, *, dtype=None, frame_shape=None, capacity=None, attrs=None, create=True,
 * exclusive=False, writer=False). */
PyObject *ring_open_args(StoreObject *store, PyObject *args, PyObject *kw);

/* 0 if the handle is open and usable in this process (re-opened after fork), or -1. */
int ring_ready(RingObject *h);
/* Move the handle to the current generation if no other thread is inside it: 1 if it
 * moved, 0 if not, -1 with an exception. */
int ring_follow(RingObject *h);
/* The storage of the handle's generation as a read-only array (borrowed; leased), or NULL
 * with an exception. */
PyObject *ring_storage_of(RingObject *h);
/* Wait for frames past `cursor`, at most `tmo` ns (-1: no limit), without the GIL: 0 with
 * *total, -ETIMEDOUT, PYERR_SET, or another library code (not raised). */
int ring_wait_total(RingObject *h, uint64_t cursor, int64_t tmo, uint64_t *total);

/* Write `frames` (an array of the handle's layout) as Ring.write does: 0 with the frames
 * written so far in *total, or -1 with an exception; with `soft`, frames of another
 * dtype or shape return 1 and raise nothing. */
int ring_write_frames(RingObject *h, PyObject *frames, int soft, uint64_t *total);

/* ---- ring_compat.c ---- */
/* shmstore._RingMirror, the C half of compat.ezmsg_shmem.EZShmMirror (its auto_view),
 * and shmstore._RingSinkPath, the fast path of its ShMemCircBuff.write_message. */
extern PyType_Spec RingMirror_spec, RingSinkPath_spec;

/* ---- buffer.c ---- */
extern PyType_Spec Buffer_spec;
BufferObject *buffer_root(modstate *st, CoreObject *core, const shmstore_view_t *view);
BufferObject *buffer_child(modstate *st, BufferObject *root, char *ptr, Py_ssize_t len,
                           const char *dtype, int ndim, const uint64_t *shape, int readonly);
/* Describe `b`'s bytes as a C-contiguous array: format, itemsize, shape, strides. 0, or
 * -1 (nothing changed, no exception) for a dtype the buffer protocol cannot spell or
 * extents that overflow. */
int buffer_set_array(BufferObject *b, const char *dtype, int ndim, const uint64_t *shape);
int buffer_release(BufferObject *b);
/* A root Buffer takes over the lease of `view` (its bytes are those it already exports:
 * a committed reservation), and the fork hook knows it. */
void buffer_take_view(BufferObject *root, const shmstore_view_t *view);
/* In a fork child: lease again, through attachments of this process, what views
 * inherited from the parent show (best effort; never raises). */
void buffer_adopt_inherited(modstate *st, PyObject *module);

/* ---- codec.c ---- */
/* An encoded value ready to be copied into a block. */
typedef struct enc {
    shmstore_datum_t d;
    const void *data; /* payload when it is one contiguous piece (not RECORD) */
    size_t len;
    Py_buffer pybuf;  /* held while encoding: bytes / array data */
    int has_pybuf;
    PyObject *keep;   /* owned temporaries (pickled bytes, contiguous copies) */
    struct rec *rec;  /* RECORD layout or NULL */
    char inline_buf[16];
} enc_t;
int enc_value(modstate *st, PyObject *obj, enc_t *e);
void enc_free(enc_t *e);
/* A put in two steps, so that a caller can refuse bad data before it creates anything:
 * value_encode() encodes `obj` and `attrs` (0, or -1 with TypeError/ValueError set: an
 * array of dtype object, bad attrs), value_put_encoded() publishes the encoding through
 * `h` (0, or -1 with the store's error set), value_encoded_free() frees it. */
int value_encode(modstate *st, PyObject *obj, PyObject *attrs, enc_t *e);
int value_put_encoded(ValueObject *h, enc_t *e, unsigned flags);
void value_encoded_free(enc_t *e);
/* Write a RECORD's bytes into `dst` (len e->len); may release the GIL for big arrays. */
void enc_record_fill(enc_t *e, char *dst);
/* Decode a payload. mode 0 = copy; 1 = zero-copy arrays over `root`. */
PyObject *dec_value(modstate *st, const shmstore_datum_t *d, const char *data, size_t len,
                    BufferObject *root);
int dtype_str_of(modstate *st, PyObject *arr, char out[SHMSTORE_DTYPE_MAX], PyObject **contig);
int format_of_dtype(const char *dtype, char *fmt, size_t cap);
int extents_ok(int64_t item, int ndim, const uint64_t *shape);
PyObject *np_dtype_of(modstate *st, const char *dtype);
/* A tuple of the `ndim` extents (new reference), or NULL with an exception set. */
PyObject *shape_tuple(int ndim, const uint64_t *shape);
int attrs_encode(PyObject *dict, char **buf, uint32_t *len);
PyObject *attrs_decode(const void *attrs, uint32_t len);

/* ---- npapi.c ---- */
/* Rows [i0, i0 + k) of numpy array `arr` (first axis): a view sharing arr's flags and
 * base, as arr[i0:i0 + k] (new reference; NULL with an exception set). Through numpy's
 * C API when the extension was built with it, else by slicing. */
PyObject *np_rows(PyObject *arr, Py_ssize_t i0, Py_ssize_t k);
/* numpy.asarray(b) for Buffer `b` that describes an array of `dtype` and `shape`: the
 * same array (base: a memoryview of b, so b keeps an export while it lives; read-only
 * when b is), made through numpy's C API when built with it. numpy must be loaded (new
 * reference; NULL with an exception set). */
PyObject *np_view(modstate *st, BufferObject *b, const char *dtype, int ndim,
                  const uint64_t *shape);
#ifdef SHM_NUMPY_API
#define NP_API_BUILT 1 /* npapi.c makes views with numpy's C API (setup.py) */
#else
#define NP_API_BUILT 0
#endif

/* ---- tree.c: array sets (Store methods) ---- */
PyObject *tree_put(StoreObject *self, PyObject *args, PyObject *kw);
PyObject *tree_get(StoreObject *self, PyObject *args, PyObject *kw);
PyObject *tree_delete(StoreObject *self, PyObject *prefix);
/* Store.get/view of an array set's member by its full name: a copy (view == 0) or what
 * get_tree() gives. NULL with the caller's NotFoundError left set when no set holds it. */
PyObject *tree_member(StoreObject *self, PyObject *name, int view);
PyObject *tree_load_hdf5(StoreObject *self, PyObject *args, PyObject *kw);
PyObject *tree_save_hdf5(StoreObject *self, PyObject *args);

/* Compiler-warning-free cast for PyMethodDef entries. */
#define METH(f) ((PyCFunction)(void (*)(void))(f))

#endif
