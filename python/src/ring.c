/* ring.c - Ring handles: circular buffers of time-series frames (shmstore_ring_*).
 *
 * A Ring wraps one shmstore_ring_t and holds its Store. It caches what it knows of the
 * generation its handle is on (numpy dtype, frame shape, the storage as a read-only
 * array over a leased Buffer) and refreshes the cache whenever the handle moves to
 * another generation. Reads follow the ring on their own: once the handle's generation
 * was superseded and read to its end (the C call says SHMSTORE_EGENERATION), the handle
 * follows and the read is made again, so a reader's frames change dtype or shape exactly
 * where the stream did (r.generation tells).
 *
 * Zero-copy: view_since() returns slices of the storage array; each keeps the Buffer
 * root and with it the generation's lease, so a view never points at freed memory, even
 * after a reconfiguration or deletion. The writer does not wait for views: check
 * overwritten(first) after using one.
 *
 * GIL: waits release it in WAIT_SLICE_NS slices (Ctrl-C works), copies of at least
 * GIL_COPY_MIN bytes run without it. Only calls that run with the GIL and `busy` == 0
 * move the handle to another generation (the C handle allows no follow concurrently
 * with its other calls).
 *
 * fork(): like Queues, a Ring re-opens itself on the Store's new attachment on first use
 * in a child; its storage arrays were leased again by the fork hook (buffer.c).
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ext.h"

#define RSELF ((RingObject *)self)
#define CAPACITY_DEFAULT 1024

/* ---- the generation cache ------------------------------------------------------------ */

static void cache_clear(RingObject *h)
{
    Py_CLEAR(h->np_dtype);
    Py_CLEAR(h->frame_shape);
    Py_CLEAR(h->storage);
    h->cached_gen = (uint64_t)-1;
}

/* Make the cache describe the handle's generation (after any follow). */
static int cache_fill(RingObject *h)
{
    shmstore_ring_state_t st;
    int r = shmstore_ring_state(h->r, &st);
    if (r < 0)
        return shm_raise(h->st, r);
    if (st.generation == h->cached_gen)
        return 0;
    cache_clear(h);
    h->cached_gen = st.generation;
    h->cap = st.cfg.capacity;
    h->frame_len = st.frame_len;
    h->base = st.base;
    h->frame_ndim = st.cfg.frame.ndim;
    memcpy(h->frame_dims, st.cfg.frame.shape, sizeof(uint64_t) * st.cfg.frame.ndim);
    snprintf(h->dtype_str, sizeof(h->dtype_str), "%s", st.generation ? st.cfg.frame.dtype : "<f8");
    if (!(h->frame_shape = PyTuple_New(h->frame_ndim)))
        return -1;
    for (uint32_t i = 0; i < h->frame_ndim; i++) {
        PyObject *x = PyLong_FromUnsignedLongLong(h->frame_dims[i]);
        if (!x)
            return -1;
        PyTuple_SET_ITEM(h->frame_shape, i, x);
    }
    if (!(h->np_dtype = np_dtype_of(h->st, h->dtype_str)))
        return -1;
    return 0;
}

/* The storage of the handle's generation as a read-only array (capacity, *frame_shape),
 * over a root Buffer that owns one lease of the generation. */
PyObject *ring_storage_of(RingObject *h)
{
    if (h->storage)
        return h->storage;
    if (!h->cached_gen) {
        PyErr_Format(h->st->NoValueError, "ring '%U' has no generation yet: a writer must "
                     "configure it (dtype, frame_shape, capacity)", h->name);
        return NULL;
    }
    shmstore_ring_view_t v;
    int r = shmstore_ring_view_storage(h->r, &v);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    BufferObject *root = buffer_root(h->st, h->core, &v.lease); /* owns the lease now */
    if (!root) {
        shmstore_ring_view_release(&v);
        return NULL;
    }
    uint64_t shape[SHMSTORE_NDIM_MAX];
    shape[0] = h->cap;
    memcpy(shape + 1, h->frame_dims, sizeof(uint64_t) * h->frame_ndim);
    BufferObject *b = buffer_child(h->st, root, (char *)v.data[0], (Py_ssize_t)(h->cap * h->frame_len),
                                   h->dtype_str, (int)h->frame_ndim + 1, shape, 1);
    Py_DECREF(root);
    if (!b)
        return NULL;
    h->storage = PyObject_CallOneArg(h->st->np_asarray, (PyObject *)b);
    Py_DECREF(b);
    if (h->storage)
        h->sview = v; /* for overwritten(): its lease fields, owned by the root */
    return h->storage;
}

/* ---- open / ready ---------------------------------------------------------------------- */

static int ring_reopen(RingObject *h)
{
    if (store_check_open(h->store) < 0)
        return -1;
    const char *cname = name_utf8(h->name);
    shmstore_ring_t *r = NULL;
    int rc = cname ? shmstore_ring_open(h->store->core->s, cname, 0, NULL, &r) : PYERR_SET;
    if (rc < 0)
        return shm_raise(h->st, rc);
    shmstore_ring_close(h->r); /* the inherited handle: only its memory is freed */
    h->r = r;
    h->is_writer = 0; /* the role is the parent's */
    Py_SETREF(h->core, (CoreObject *)Py_NewRef(h->store->core));
    cache_clear(h);
    return cache_fill(h);
}

int ring_ready(RingObject *h)
{
    if (!h->r) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed shmstore.Ring");
        return -1;
    }
    return h->core->gen == shm_fork_gen ? 0 : ring_reopen(h);
}

/* Move to the current generation if the handle may (no other thread inside it). 1 if it
 * moved, 0 if not, -1 with an exception. */
int ring_follow(RingObject *h)
{
    if (h->busy)
        return 0;
    int r = shmstore_ring_follow(h->r);
    if (r < 0)
        return shm_raise(h->st, r);
    if (r > 0 && cache_fill(h) < 0)
        return -1;
    return r;
}

/* A dtype argument as a shmstore dtype string ("<f4"). */
static int dtype_arg(modstate *st, PyObject *o, char out[SHMSTORE_DTYPE_MAX])
{
    if (shm_numpy(st) < 0)
        return -1;
    PyObject *dt = PyObject_CallMethod(st->np, "dtype", "O", o);
    PyObject *zero = dt ? PyLong_FromLong(0) : NULL;
    PyObject *probe = zero ? PyObject_CallFunctionObjArgs(st->np_empty, zero, dt, NULL) : NULL;
    Py_XDECREF(zero);
    Py_XDECREF(dt);
    if (!probe)
        return -1;
    PyObject *contig = NULL;
    int r = dtype_str_of(st, probe, out, &contig);
    Py_XDECREF(contig);
    Py_DECREF(probe);
    if (r > 0)
        PyErr_Format(PyExc_ValueError, "a ring cannot hold frames of dtype %R", o);
    return r ? -1 : 0;
}

static int shape_arg(PyObject *o, uint32_t *ndim, uint64_t *shape)
{
    if (PyLong_Check(o)) {
        long long v = PyLong_AsLongLong(o);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v <= 0)
            goto bad;
        *ndim = 1;
        shape[0] = (uint64_t)v;
        return 0;
    }
    PyObject *t = PySequence_Tuple(o);
    if (!t)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    if (n > SHMSTORE_NDIM_MAX - 1) {
        Py_DECREF(t);
        PyErr_Format(PyExc_ValueError, "a frame has at most %d dimensions", SHMSTORE_NDIM_MAX - 1);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(t);
            return -1;
        }
        if (v <= 0) {
            Py_DECREF(t);
            goto bad;
        }
        shape[i] = (uint64_t)v;
    }
    *ndim = (uint32_t)n;
    Py_DECREF(t);
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "frame_shape must be a tuple of positive ints");
    return -1;
}

static int cap_arg(PyObject *o, uint64_t *out)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v <= 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be a positive number of frames");
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* A layout from Python arguments; `cur` (may be NULL) supplies what is not given. The
 * attrs buffer (*abuf, PyMem) belongs to the caller. */
static int layout_args(RingObject *cur, modstate *st, PyObject *dtype, PyObject *shape,
                       PyObject *cap, PyObject *attrs, shmstore_ring_config_t *c, char **abuf)
{
    memset(c, 0, sizeof(*c));
    *abuf = NULL;
    char ds[SHMSTORE_DTYPE_MAX];
    uint32_t ndim = 0;
    uint64_t dims[SHMSTORE_NDIM_MAX];
    if (dtype && dtype != Py_None) {
        if (dtype_arg(st, dtype, ds) < 0)
            return -1;
    } else {
        snprintf(ds, sizeof(ds), "%s", cur && cur->cached_gen ? cur->dtype_str : "<f8");
    }
    if (shape && shape != Py_None) {
        if (shape_arg(shape, &ndim, dims) < 0)
            return -1;
    } else if (cur && cur->cached_gen) {
        ndim = cur->frame_ndim;
        memcpy(dims, cur->frame_dims, sizeof(uint64_t) * ndim);
    }
    if (shmstore_datum_init_array(&c->frame, ds, ndim, dims) < 0)
        return shm_raise(st, SHMSTORE_EDTYPE);
    if (cap && cap != Py_None) {
        if (cap_arg(cap, &c->capacity) < 0)
            return -1;
    } else {
        c->capacity = cur && cur->cached_gen ? cur->cap : CAPACITY_DEFAULT;
    }
    if (attrs && attrs != Py_None) {
        if (attrs_encode(attrs, abuf, &c->frame.attrs_len) < 0)
            return -1;
        c->frame.attrs = *abuf;
    } else if (cur && cur->cached_gen) {
        shmstore_ring_state_t rs;
        int r = shmstore_ring_state(cur->r, &rs);
        if (r < 0)
            return shm_raise(st, r);
        c->frame.attrs = rs.cfg.frame.attrs;
        c->frame.attrs_len = rs.cfg.frame.attrs_len;
    }
    return 0;
}

/* The handle's layout differs from what the caller asked for: say how. */
static int check_layout(RingObject *h, PyObject *dtype, PyObject *shape, PyObject *cap)
{
    if (!h->cached_gen)
        return 0;
    shmstore_ring_config_t c;
    char *abuf;
    if (layout_args(h, h->st, dtype, shape, cap, NULL, &c, &abuf) < 0)
        return -1;
    int same = strcmp(c.frame.dtype, h->dtype_str) == 0 && c.frame.ndim == h->frame_ndim &&
               memcmp(c.frame.shape, h->frame_dims, sizeof(uint64_t) * h->frame_ndim) == 0 &&
               c.capacity == h->cap;
    if (same)
        return 0;
    PyErr_Format(h->st->LayoutError, "ring '%U' exists with frames of dtype %s and shape %R, "
                 "capacity %llu; call r.reconfigure(...) to change its layout (a new generation)",
                 h->name, h->dtype_str, h->frame_shape, (unsigned long long)h->cap);
    return -1;
}

PyObject *ring_open_args(StoreObject *store, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "dtype", "frame_shape", "capacity", "attrs", "create",
                             "exclusive", "writer", NULL};
    PyObject *name, *dtype = Py_None, *shape = Py_None, *cap = Py_None, *attrs = Py_None;
    int create = 1, excl = 0, writer = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|$OOOOppp:ring", kwlist, &name, &dtype, &shape,
                                     &cap, &attrs, &create, &excl, &writer))
        return NULL;
    if (excl && !create) {
        PyErr_SetString(PyExc_ValueError, "exclusive=True needs create=True");
        return NULL;
    }
    const char *cname = name_utf8(name);
    if (!cname || store_check_open(store) < 0)
        return NULL;
    modstate *st = store->st;
    /* A layout is given when the dtype is (or a shape or capacity): it configures a ring
     * that has none, and must match one that has. */
    int has_layout = dtype != Py_None || shape != Py_None || cap != Py_None;
    shmstore_ring_config_t c;
    char *abuf = NULL;
    if (has_layout && layout_args(NULL, st, dtype, shape, cap, attrs, &c, &abuf) < 0)
        return NULL;
    unsigned flags = (create ? SHMSTORE_R_CREATE : 0) | (excl ? SHMSTORE_R_EXCL : 0) |
                     (writer ? SHMSTORE_R_WRITER : 0);
    shmstore_ring_t *r = NULL;
    int rc = shmstore_ring_open(store->core->s, cname, flags, has_layout ? &c : NULL, &r);
    PyMem_Free(abuf);
    if (rc < 0)
        return shm_raise(st, rc), NULL;
    RingObject *h = (RingObject *)st->Ring_type->tp_alloc(st->Ring_type, 0);
    if (!h) {
        shmstore_ring_close(r);
        return NULL;
    }
    h->r = r;
    h->core = (CoreObject *)Py_NewRef(store->core);
    h->store = (StoreObject *)Py_NewRef(store);
    h->name = Py_NewRef(name);
    h->st = st;
    h->cached_gen = (uint64_t)-1;
    h->is_writer = writer;
    if (cache_fill(h) < 0 || (has_layout && check_layout(h, dtype, shape, cap) < 0)) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *r_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    modstate *st = shm_state_of(shm_module_of_type(type));
    if (PyTuple_GET_SIZE(args) < 1 || !PyObject_TypeCheck(PyTuple_GET_ITEM(args, 0), st->Store_type)) {
        PyErr_SetString(PyExc_TypeError, "Ring(store, name, ...): the first argument must be a "
                        "shmstore.Store (or use store.ring(name, ...))");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (!rest)
        return NULL;
    PyObject *h = ring_open_args((StoreObject *)PyTuple_GET_ITEM(args, 0), rest, kw);
    Py_DECREF(rest);
    return h;
}

/* ---- writing ---------------------------------------------------------------------------- */

/* `obj` as C-contiguous frames of the ring's layout in `pb`: 0 with *n frames, or -1. */
static int frames_of(RingObject *h, PyObject *obj, Py_buffer *pb, PyObject **keep, uint64_t *n)
{
    modstate *st = h->st;
    *keep = NULL;
    if (shm_numpy(st) < 0)
        return -1;
    PyObject *arr;
    if (Py_TYPE(obj) == (PyTypeObject *)st->ndarray) {
        PyObject *dt = PyObject_GetAttrString(obj, "dtype");
        int eq = dt ? PyObject_RichCompareBool(dt, h->np_dtype, Py_EQ) : -1;
        if (eq == 0)
            PyErr_Format(PyExc_ValueError, "ring '%U' holds frames of dtype %s; got an array of "
                         "dtype %R (convert it with .astype)", h->name, h->dtype_str, dt);
        Py_XDECREF(dt);
        if (eq <= 0)
            return -1;
        arr = Py_NewRef(obj);
    } else {
        arr = PyObject_CallFunctionObjArgs(st->np_asarray, obj, h->np_dtype, NULL);
        if (!arr)
            return -1;
    }
    if (PyObject_GetBuffer(arr, pb, PyBUF_C_CONTIGUOUS | PyBUF_ND) < 0) {
        PyErr_Clear();
        PyObject *c = PyObject_CallOneArg(st->np_ascontig, arr);
        Py_DECREF(arr);
        if (!c || PyObject_GetBuffer(c, pb, PyBUF_C_CONTIGUOUS | PyBUF_ND) < 0) {
            Py_XDECREF(c);
            return -1;
        }
        arr = c;
    }
    *keep = arr;
    uint32_t fn = h->frame_ndim;
    int nd = pb->ndim;
    int ok = 0;
    if ((uint32_t)nd == fn || (uint32_t)nd == fn + 1) {
        int off = nd - (int)fn;
        ok = 1;
        for (uint32_t i = 0; i < fn; i++)
            ok &= (uint64_t)pb->shape[off + (int)i] == h->frame_dims[i];
        *n = off ? (uint64_t)pb->shape[0] : 1;
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "ring '%U' holds frames of shape %R: write an array of "
                     "shape (n, *frame_shape) or one frame", h->name, h->frame_shape);
        PyBuffer_Release(pb);
        Py_CLEAR(*keep);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(r_write_doc,
"write(frames) -> int\n--\n\n"
"Append frames: an array of shape (n, *frame_shape), or one frame of frame_shape, of the\n"
"ring's dtype (an ndarray of another dtype raises ValueError; lists are converted). Any n:\n"
"past the capacity the newest frames are kept. Returns the frames written so far. The\n"
"first write takes the ring's writer role for this handle (one writer at a time: another\n"
"live writer raises OSError(EBUSY); a dead one's role is taken over).");

int ring_write_frames(RingObject *h, PyObject *frames, int soft, uint64_t *total)
{
    if (ring_ready(h) < 0)
        return -1;
    if (!h->cached_gen) { /* another writer may have configured it since */
        if (ring_follow(h) < 0)
            return -1;
        if (!h->cached_gen)
            return shm_raise(h->st, shmstore_ring_write(h->r, NULL, 1));
    }
    if (!h->is_writer) {
        /* Take the role first: it moves the handle to the current generation, whose
         * layout the frames are then checked against (a write sized for another
         * generation's frames would read past them). */
        int rc0 = shmstore_ring_write(h->r, NULL, 0);
        if (rc0 < 0)
            return shm_raise(h->st, rc0);
        h->is_writer = 1;
        if (cache_fill(h) < 0)
            return -1;
    }
    Py_buffer pb;
    PyObject *keep;
    uint64_t n;
    if (frames_of(h, frames, &pb, &keep, &n) < 0) {
        if (soft && PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    int rc;
    if ((size_t)pb.len >= GIL_COPY_MIN) {
        shmstore_ring_t *r = h->r;
        h->busy++;
        Py_BEGIN_ALLOW_THREADS
        rc = shmstore_ring_write(r, pb.buf, n);
        Py_END_ALLOW_THREADS
        h->busy--;
    } else {
        rc = shmstore_ring_write(h->r, pb.buf, n);
    }
    PyBuffer_Release(&pb);
    Py_DECREF(keep);
    if (rc < 0)
        return shm_raise(h->st, rc);
    *total = 0;
    shmstore_ring_total(h->r, total);
    return 0;
}

static PyObject *r_write(PyObject *self, PyObject *frames)
{
    uint64_t t;
    if (ring_write_frames(RSELF, frames, 0, &t) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(t);
}

PyDoc_STRVAR(r_reconfigure_doc,
"reconfigure(*, dtype=None, frame_shape=None, capacity=None, attrs=None)\n--\n\n"
"Give the ring a new layout as its writer: a new generation (what is not given stays as\n"
"it is). Positions go on counting; readers follow; the old generation's memory is freed\n"
"when its last reader lets go.");

static PyObject *r_reconfigure(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"dtype", "frame_shape", "capacity", "attrs", NULL};
    PyObject *dtype = Py_None, *shape = Py_None, *cap = Py_None, *attrs = Py_None;
    RingObject *h = RSELF;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOOO:reconfigure", kwlist, &dtype, &shape, &cap,
                                     &attrs) ||
        ring_ready(h) < 0)
        return NULL;
    if (h->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reconfigure a Ring while another thread uses it");
        return NULL;
    }
    if (ring_follow(h) < 0)
        return NULL;
    shmstore_ring_config_t c;
    char *abuf;
    if (layout_args(h, h->st, dtype, shape, cap, attrs, &c, &abuf) < 0)
        return NULL;
    int rc = shmstore_ring_reconfigure(h->r, &c);
    PyMem_Free(abuf);
    if (rc < 0)
        return shm_raise(h->st, rc), NULL;
    h->is_writer = 1;
    if (cache_fill(h) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- reading ---------------------------------------------------------------------------- */

static int u64_arg(PyObject *o, uint64_t *out, const char *what)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", what);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative int", what);
        return -1;
    }
    *out = v;
    return 0;
}

static int max_arg(RingObject *h, PyObject *o, uint64_t *out)
{
    if (!o || o == Py_None) {
        *out = h->cap ? h->cap : 0;
        return 0;
    }
    if (u64_arg(o, out, "max") < 0)
        return -1;
    if (*out > h->cap)
        *out = h->cap;
    return 0;
}

/* An empty array (0, *frame_shape) of the handle's layout. */
static PyObject *empty_frames(RingObject *h, uint64_t n)
{
    PyObject *shape = PyTuple_New(1 + h->frame_ndim);
    if (!shape)
        return NULL;
    PyTuple_SET_ITEM(shape, 0, PyLong_FromUnsignedLongLong(n));
    for (uint32_t i = 0; i < h->frame_ndim; i++)
        PyTuple_SET_ITEM(shape, i + 1, Py_NewRef(PyTuple_GET_ITEM(h->frame_shape, i)));
    PyObject *a = PyObject_CallFunctionObjArgs(h->st->np_empty, shape, h->np_dtype, NULL);
    Py_DECREF(shape);
    return a;
}

/* Copy what read_since (latest: latest) returns into a new array. */
static PyObject *read_copy(RingObject *h, uint64_t cursor, uint64_t max, int latest,
                           shmstore_ring_span_t *sp)
{
    for (int tries = 0;; tries++) {
        if (ring_ready(h) < 0)
            return NULL;
        uint64_t m = max, total = 0;
        if (m > h->cap)
            m = h->cap;
        /* Size the array for what there is (at most `m`). */
        if (h->cached_gen && shmstore_ring_total(h->r, &total) == 0) {
            uint64_t avail = latest ? total - h->base : total > cursor ? total - cursor : 0;
            if (avail < m)
                m = avail;
        }
        PyObject *a = empty_frames(h, m);
        if (!a)
            return NULL;
        Py_buffer pb;
        if (PyObject_GetBuffer(a, &pb, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
            Py_DECREF(a);
            return NULL;
        }
        int rc;
        if ((size_t)pb.len >= GIL_COPY_MIN) {
            shmstore_ring_t *r = h->r;
            h->busy++;
            Py_BEGIN_ALLOW_THREADS
            rc = latest ? shmstore_ring_latest(r, m, pb.buf, sp)
                        : shmstore_ring_read_since(r, cursor, pb.buf, m, sp);
            Py_END_ALLOW_THREADS
            h->busy--;
        } else {
            rc = latest ? shmstore_ring_latest(h->r, m, pb.buf, sp)
                        : shmstore_ring_read_since(h->r, cursor, pb.buf, m, sp);
        }
        PyBuffer_Release(&pb);
        if (rc == SHMSTORE_EGENERATION && tries < 8) {
            Py_DECREF(a);
            int f = ring_follow(h);
            if (f < 0)
                return NULL;
            if (f == 0) { /* another thread is inside the handle: nothing for now */
                *sp = (shmstore_ring_span_t){.first = cursor, .cursor = cursor};
                return empty_frames(h, 0);
            }
            continue;
        }
        if (rc == SHMSTORE_ENOVALUE && latest) {
            Py_DECREF(a);
            *sp = (shmstore_ring_span_t){0};
            return empty_frames(h, 0);
        }
        if (rc < 0) {
            Py_DECREF(a);
            return shm_raise(h->st, rc), NULL;
        }
        if (sp->n == m)
            return a;
        PyObject *cut = PySequence_GetSlice(a, 0, (Py_ssize_t)sp->n);
        Py_DECREF(a);
        return cut;
    }
}

PyDoc_STRVAR(r_read_since_doc,
"read_since(cursor, max=None) -> (frames, cursor, lost)\n--\n\n"
"Copy the frames written since position `cursor` (at most `max`, oldest first) into a\n"
"new array of shape (n, *frame_shape). Returns it, the cursor for the next read, and how\n"
"many frames since `cursor` this reader lost for good (overrun by the writer, or in a\n"
"generation it skipped). Never blocks. A cursor past the frames written raises\n"
"ValueError. Follows the ring to a new generation once the old one is read to its end.");

static PyObject *r_read_since(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"cursor", "max", NULL};
    PyObject *cur, *mx = Py_None;
    RingObject *h = RSELF;
    uint64_t cursor, max;
    shmstore_ring_span_t sp;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:read_since", kwlist, &cur, &mx) ||
        ring_ready(h) < 0 || u64_arg(cur, &cursor, "cursor") < 0)
        return NULL;
    if (!h->cached_gen && ring_follow(h) < 0)
        return NULL;
    if (max_arg(h, mx, &max) < 0)
        return NULL;
    if (mx == Py_None)
        max = UINT64_MAX; /* the whole generation's capacity, whatever it becomes */
    PyObject *a = read_copy(h, cursor, max, 0, &sp);
    if (!a)
        return NULL;
    return Py_BuildValue("(NKK)", a, (unsigned long long)sp.cursor, (unsigned long long)sp.lost);
}

PyDoc_STRVAR(r_latest_doc,
"latest(n) -> frames\n--\n\n"
"A copy of the newest `n` frames (fewer if fewer are held), oldest first, of the ring's\n"
"current generation.");

static PyObject *r_latest(PyObject *self, PyObject *arg)
{
    RingObject *h = RSELF;
    uint64_t n;
    shmstore_ring_span_t sp;
    if (ring_ready(h) < 0 || u64_arg(arg, &n, "n") < 0 || ring_follow(h) < 0)
        return NULL;
    return read_copy(h, 0, n, 1, &sp);
}

PyDoc_STRVAR(r_view_since_doc,
"view_since(cursor, max=None) -> (pieces, cursor, lost)\n--\n\n"
"As read_since() without copying: `pieces` is a tuple of one read-only array over the\n"
"ring's storage, or two when the frames wrap around its end. The arrays keep the\n"
"generation's memory leased; the writer may still overwrite the frames: after using\n"
"them, overwritten(first) says how many (first = cursor - len of the frames).");

static PyObject *r_view_since(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"cursor", "max", NULL};
    PyObject *cur, *mx = Py_None;
    RingObject *h = RSELF;
    uint64_t cursor, max;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:view_since", kwlist, &cur, &mx) ||
        ring_ready(h) < 0 || u64_arg(cur, &cursor, "cursor") < 0)
        return NULL;
    if (!h->cached_gen && ring_follow(h) < 0)
        return NULL;
    for (int tries = 0;; tries++) {
        if (max_arg(h, mx, &max) < 0)
            return NULL;
        shmstore_ring_view_t v;
        int rc = shmstore_ring_view_since(h->r, cursor, max, &v);
        if (rc == SHMSTORE_EGENERATION && tries < 8) {
            int f = ring_follow(h);
            if (f < 0)
                return NULL;
            if (f > 0)
                continue;
            return Py_BuildValue("(()KK)", (unsigned long long)cursor, 0ull);
        }
        if (rc < 0)
            return shm_raise(h->st, rc), NULL;
        uint64_t n0 = v.n[0], n1 = v.n[1];
        shmstore_ring_view_release(&v); /* the storage array holds a lease of its own */
        if (!v.span.n)
            return Py_BuildValue("(()KK)", (unsigned long long)v.span.cursor,
                                 (unsigned long long)v.span.lost);
        PyObject *stor = ring_storage_of(h);
        if (!stor)
            return NULL;
        Py_ssize_t i0 = (Py_ssize_t)((v.span.first - h->base) % h->cap);
        PyObject *p0 = np_rows(stor, i0, (Py_ssize_t)n0);
        PyObject *p1 = p0 && n1 ? np_rows(stor, 0, (Py_ssize_t)n1) : NULL;
        if (!p0 || (n1 && !p1)) {
            Py_XDECREF(p0);
            return NULL;
        }
        PyObject *pieces = p1 ? PyTuple_Pack(2, p0, p1) : PyTuple_Pack(1, p0);
        Py_DECREF(p0);
        Py_XDECREF(p1);
        if (!pieces)
            return NULL;
        return Py_BuildValue("(NKK)", pieces, (unsigned long long)v.span.cursor,
                             (unsigned long long)v.span.lost);
    }
}

PyDoc_STRVAR(r_overwritten_doc,
"overwritten(first, n=None) -> int\n--\n\n"
"How many of the frames from position `first` on (at most `n`) the writer has overwritten\n"
"or is overwriting now, in the handle's generation: after using a view that starts at\n"
"`first`, 0 means everything read through it was intact. Call it before the next read\n"
"or wait, which may move the handle to a newer generation.");

static PyObject *r_overwritten(PyObject *self, PyObject *args)
{
    RingObject *h = RSELF;
    unsigned long long first, n = (unsigned long long)-1 >> 1;
    if (!PyArg_ParseTuple(args, "K|K:overwritten", &first, &n) || ring_ready(h) < 0)
        return NULL;
    if (!h->cached_gen)
        return PyLong_FromLong(0);
    if (!ring_storage_of(h))
        return NULL;
    if (first < h->base) {
        PyErr_Format(PyExc_ValueError, "position %llu is from a generation before this handle's "
                     "(which starts at %llu)", first, (unsigned long long)h->base);
        return NULL;
    }
    shmstore_ring_view_t v = h->sview;
    v.span.first = first;
    v.span.n = n;
    uint64_t over = 0;
    int rc = shmstore_ring_view_check(&v, &over);
    if (rc < 0)
        return shm_raise(h->st, rc), NULL;
    return PyLong_FromUnsignedLongLong(over);
}

PyDoc_STRVAR(r_wait_doc,
"wait(cursor, timeout=None) -> int\n--\n\n"
"Block until frames past position `cursor` exist, and return the frames written. Spins\n"
"briefly, then sleeps on a futex without the GIL. On a reconfiguration the handle\n"
"follows the ring and the new generation's count is returned (it may equal `cursor`:\n"
"see r.generation). Raises TimeoutError after `timeout` seconds (None: never).");

/* Wait until frames past `cursor` exist (or the handle followed a reconfiguration), at
 * most `tmo` ns (-1: no limit), without the GIL in WAIT_SLICE_NS slices. 0 with the
 * frames written in *total, -ETIMEDOUT (the time is up), PYERR_SET (an exception: a
 * signal handler raised, or the handle was closed meanwhile), or another library code
 * (not raised). */
int ring_wait_total(RingObject *h, uint64_t cursor, int64_t tmo, uint64_t *total)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc, first = 1;
    Py_INCREF(h);
    for (;;) {
        if (ring_ready(h) < 0) { /* other threads ran between slices: h may be closed */
            rc = PYERR_SET;
            break;
        }
        int64_t slice = first ? 0 : shm_next_slice(&t0, tmo);
        shmstore_ring_t *r = h->r;
        if (slice == 0) {
            rc = shmstore_ring_wait(r, cursor, 0, total);
        } else {
            h->busy++;
            Py_BEGIN_ALLOW_THREADS
            rc = shmstore_ring_wait(r, cursor, slice, total);
            Py_END_ALLOW_THREADS
            h->busy--;
        }
        if (rc == SHMSTORE_EGENERATION) {
            int f = ring_follow(h);
            if (f < 0) {
                rc = PYERR_SET;
                break;
            }
            if (f > 0) {
                rc = shmstore_ring_total(h->r, total);
                break;
            }
            rc = -ETIMEDOUT; /* another thread is inside the handle: go on waiting */
        }
        if (rc != -ETIMEDOUT && rc != -EINTR)
            break;
        if ((!first && slice == 0) || tmo == 0) {
            rc = -ETIMEDOUT; /* the time is up */
            break;
        }
        first = 0;
        if (PyErr_CheckSignals() < 0) {
            rc = PYERR_SET;
            break;
        }
    }
    Py_DECREF(h);
    return rc;
}

static PyObject *r_wait(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"cursor", "timeout", NULL};
    PyObject *cur, *timeout = Py_None;
    RingObject *h = RSELF;
    uint64_t cursor, total = 0;
    int64_t tmo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:wait", kwlist, &cur, &timeout) ||
        ring_ready(h) < 0 || u64_arg(cur, &cursor, "cursor") < 0 || shm_timeout_ns(timeout, &tmo) < 0)
        return NULL;
    int rc = ring_wait_total(h, cursor, tmo, &total);
    if (rc == PYERR_SET)
        return NULL;
    if (rc == -ETIMEDOUT) {
        PyErr_Format(PyExc_TimeoutError, "shmstore: ring '%U' had no frame past %llu in time",
                     h->name, (unsigned long long)cursor);
        return NULL;
    }
    if (rc < 0)
        return shm_raise(h->st, rc), NULL;
    return PyLong_FromUnsignedLongLong(total);
}

PyDoc_STRVAR(r_follow_doc,
"follow() -> bool\n--\n\n"
"Move the handle to the ring's current generation (reads do it by themselves once the\n"
"old generation is read to its end). True if it moved.");

static PyObject *r_follow_m(PyObject *self, PyObject *unused)
{
    (void)unused;
    RingObject *h = RSELF;
    if (ring_ready(h) < 0)
        return NULL;
    if (h->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot follow while another thread uses this Ring");
        return NULL;
    }
    int f = ring_follow(h);
    return f < 0 ? NULL : PyBool_FromLong(f);
}

/* ---- properties ------------------------------------------------------------------------- */

static PyObject *r_get_total(PyObject *self, void *c)
{
    (void)c;
    uint64_t t;
    if (ring_ready(RSELF) < 0)
        return NULL;
    int rc = shmstore_ring_total(RSELF->r, &t);
    return rc < 0 ? (shm_raise(RSELF->st, rc), NULL) : PyLong_FromUnsignedLongLong(t);
}

static PyObject *r_get_capacity(PyObject *self, void *c)
{
    (void)c;
    return ring_ready(RSELF) < 0 ? NULL : PyLong_FromUnsignedLongLong(RSELF->cached_gen ? RSELF->cap : 0);
}

static PyObject *r_get_dtype(PyObject *self, void *c)
{
    (void)c;
    if (ring_ready(RSELF) < 0)
        return NULL;
    return RSELF->cached_gen ? Py_NewRef(RSELF->np_dtype) : Py_NewRef(Py_None);
}

static PyObject *r_get_frame_shape(PyObject *self, void *c)
{
    (void)c;
    if (ring_ready(RSELF) < 0)
        return NULL;
    return RSELF->cached_gen ? Py_NewRef(RSELF->frame_shape) : Py_NewRef(Py_None);
}

static PyObject *r_get_generation(PyObject *self, void *c)
{
    (void)c;
    return ring_ready(RSELF) < 0 ? NULL : PyLong_FromUnsignedLongLong(RSELF->cached_gen);
}

static PyObject *r_get_base(PyObject *self, void *c)
{
    (void)c;
    return ring_ready(RSELF) < 0 ? NULL : PyLong_FromUnsignedLongLong(RSELF->cached_gen ? RSELF->base : 0);
}

static PyObject *r_get_frame_nbytes(PyObject *self, void *c)
{
    (void)c;
    return ring_ready(RSELF) < 0 ? NULL : PyLong_FromUnsignedLongLong(RSELF->cached_gen ? RSELF->frame_len : 0);
}

static PyObject *r_get_attrs(PyObject *self, void *c)
{
    (void)c;
    shmstore_ring_state_t rs;
    if (ring_ready(RSELF) < 0)
        return NULL;
    int rc = shmstore_ring_state(RSELF->r, &rs);
    if (rc < 0)
        return shm_raise(RSELF->st, rc), NULL;
    return attrs_decode(rs.cfg.frame.attrs, rs.cfg.frame.attrs_len);
}

static PyObject *r_get_state(PyObject *self, void *which)
{
    shmstore_ring_state_t rs;
    if (ring_ready(RSELF) < 0)
        return NULL;
    int rc = shmstore_ring_state(RSELF->r, &rs);
    if (rc < 0)
        return shm_raise(RSELF->st, rc), NULL;
    switch ((int)(intptr_t)which) {
    case 0:
        return PyBool_FromLong(rs.is_writer);
    case 1:
        return rs.writer_pid ? PyLong_FromLong(rs.writer_pid) : Py_NewRef(Py_None);
    case 2:
        return PyLong_FromUnsignedLongLong(rs.oldest);
    default:
        return PyBool_FromLong(rs.is_current);
    }
}

static PyObject *r_get_buffer(PyObject *self, void *c)
{
    (void)c;
    if (ring_ready(RSELF) < 0)
        return NULL;
    PyObject *s = ring_storage_of(RSELF);
    return s ? Py_NewRef(s) : NULL;
}

static PyObject *r_get_name(PyObject *self, void *c)
{
    (void)c;
    return Py_NewRef(RSELF->name);
}

static PyObject *r_get_closed(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(RSELF->r == NULL);
}

static PyObject *r_info(PyObject *self, PyObject *unused)
{
    (void)unused;
    shmstore_obj_info_t info;
    if (ring_ready(RSELF) < 0)
        return NULL;
    int rc = shmstore_ring_info(RSELF->r, &info);
    return rc < 0 ? (shm_raise(RSELF->st, rc), NULL) : obj_info_dict(&info);
}

/* ---- the Ring type ------------------------------------------------------------------------ */

static void ring_close_now(RingObject *h)
{
    cache_clear(h); /* the storage array's Buffer keeps its own lease while used */
    if (h->r) {
        shmstore_ring_close(h->r);
        h->r = NULL;
    }
}

static PyObject *r_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (RSELF->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot close a Ring while another thread uses it");
        return NULL;
    }
    ring_close_now(RSELF);
    Py_RETURN_NONE;
}

static PyObject *r_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *r_exit(PyObject *self, PyObject *args)
{
    (void)args;
    if (!RSELF->busy)
        ring_close_now(RSELF);
    Py_RETURN_FALSE;
}

static PyObject *r_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *meth = PyObject_GetAttrString((PyObject *)RSELF->store, "ring");
    if (!meth)
        return NULL;
    return Py_BuildValue("(N(O))", meth, RSELF->name);
}

static PyObject *r_repr(PyObject *self)
{
    RingObject *h = RSELF;
    if (!h->r)
        return PyUnicode_FromFormat("<shmstore.Ring %R closed>", h->name);
    if (!h->cached_gen || h->cached_gen == (uint64_t)-1)
        return PyUnicode_FromFormat("<shmstore.Ring %R not configured>", h->name);
    return PyUnicode_FromFormat("<shmstore.Ring %R %s %R x %llu, generation %llu>", h->name,
                                h->dtype_str, h->frame_shape, (unsigned long long)h->cap,
                                (unsigned long long)h->cached_gen);
}

static int r_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(RSELF->core);
    Py_VISIT(RSELF->store);
    Py_VISIT(RSELF->storage);
    return 0;
}

static int r_clear(PyObject *self)
{
    if (RSELF->busy)
        return 0;
    ring_close_now(RSELF);
    Py_CLEAR(RSELF->store);
    Py_CLEAR(RSELF->core);
    return 0;
}

static void r_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ring_close_now(RSELF);
    Py_CLEAR(RSELF->core);
    Py_CLEAR(RSELF->store);
    Py_CLEAR(RSELF->name);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef r_methods[] = {
    {"write", r_write, METH_O, r_write_doc},
    {"read_since", METH(r_read_since), METH_VARARGS | METH_KEYWORDS, r_read_since_doc},
    {"latest", r_latest, METH_O, r_latest_doc},
    {"view_since", METH(r_view_since), METH_VARARGS | METH_KEYWORDS, r_view_since_doc},
    {"overwritten", r_overwritten, METH_VARARGS, r_overwritten_doc},
    {"wait", METH(r_wait), METH_VARARGS | METH_KEYWORDS, r_wait_doc},
    {"reconfigure", METH(r_reconfigure), METH_VARARGS | METH_KEYWORDS, r_reconfigure_doc},
    {"follow", r_follow_m, METH_NOARGS, r_follow_doc},
    {"info", r_info, METH_NOARGS, "info() -> dict\n--\n\nAs Store.info(name)."},
    {"close", r_close, METH_NOARGS, "close()\n--\n\nClose the handle (gives up the writer role). Idempotent."},
    {"__enter__", r_enter, METH_NOARGS, NULL},
    {"__exit__", r_exit, METH_VARARGS, NULL},
    {"__reduce__", r_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef r_getset[] = {
    {"name", r_get_name, NULL, "The ring's name.", NULL},
    {"total", r_get_total, NULL, "Frames written so far (the position of the next frame).", NULL},
    {"capacity", r_get_capacity, NULL, "Frames the handle's generation holds (0: not configured).", NULL},
    {"dtype", r_get_dtype, NULL, "numpy dtype of the frames (None: not configured).", NULL},
    {"frame_shape", r_get_frame_shape, NULL, "Shape of one frame; () for a 1-D stream.", NULL},
    {"frame_nbytes", r_get_frame_nbytes, NULL, "Bytes per frame.", NULL},
    {"generation", r_get_generation, NULL, "The handle's generation (0: not configured).", NULL},
    {"base", r_get_base, NULL, "Position of the generation's first frame.", NULL},
    {"oldest", r_get_state, NULL, "Position of the oldest frame held intact.", (void *)2},
    {"attrs", r_get_attrs, NULL, "The generation's attrs (srate, axis names...) as a dict.", NULL},
    {"writer", r_get_state, NULL, "True while this handle holds the writer role.", (void *)0},
    {"writer_pid", r_get_state, NULL, "The process holding the writer role, or None.", (void *)1},
    {"is_current", r_get_state, NULL, "False once a newer generation exists.", (void *)3},
    {"buffer", r_get_buffer, NULL, "The generation's storage: a read-only array (capacity, "
     "*frame_shape), frame p at index (p - base) % capacity (leased).", NULL},
    {"closed", r_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(r_doc,
"Ring(store, name, *, dtype=None, frame_shape=(), capacity=None, attrs=None, create=True,\n"
"     exclusive=False, writer=False)\n--\n\n"
"A circular buffer of time-series frames in a store: one writer appends frames, any\n"
"number of readers in any processes follow it with a cursor (a frame count) and are told\n"
"exactly how many frames they lost when the writer laps them. The same as\n"
"store.ring(name, ...). A layout (dtype, frame_shape, capacity in frames, attrs such as\n"
"srate) configures a ring that has none and must match one that has (LayoutError: use\n"
"reconfigure()). writer=True takes the writer role at once (OSError EBUSY if another live\n"
"process or handle has it).");

static PyType_Slot r_slots[] = {
    {Py_tp_new, r_new},
    {Py_tp_dealloc, r_dealloc},
    {Py_tp_traverse, r_traverse},
    {Py_tp_clear, r_clear},
    {Py_tp_repr, r_repr},
    {Py_tp_methods, r_methods},
    {Py_tp_getset, r_getset},
    {Py_tp_doc, (void *)r_doc},
    {0, NULL},
};

PyType_Spec Ring_spec = {
    .name = "shmstore.Ring",
    .basicsize = sizeof(RingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_HAVE_GC,
    .slots = r_slots,
};
