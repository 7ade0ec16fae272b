/* ring_compat.c - the per-call halves of compat.ezmsg_shmem, in C: shmstore._RingMirror
 * (the mirror's auto_view) and shmstore._RingSinkPath (the sink's write of a message).
 *
 * _RingMirror.
 * EZShmMirror.auto_view() is called once per chunk by a live plot or a decoder, with a
 * few frames new each time. Written in Python it spent most of its time in the
 * interpreter (attribute loads, the cursor arithmetic, a tuple from view_since and
 * another to return), and on a lease taken and dropped in the ring per call. This type
 * holds the state the call needs in C fields (exposed to the Python subclass under the
 * names it already used: _ring, _cursor, _gen, _valid, _empty), and its auto_view() does
 * the common case in C: the mirror's ring handle is on the generation the mirror knows,
 * that generation is valid, and frames came since the cursor. Then it asks the ring where
 * those frames are (shmstore_ring_since: no lease; the storage array the Ring caches
 * holds the generation's lease) and returns a slice of the storage array, or a
 * concatenation when the frames wrap around its end.
 *
 * Everything else (not connected, a reconfiguration to follow, a buffer marked invalid,
 * a deleted ring, odd arguments) goes to the subclass's _auto_view_slow(n, timeout),
 * which holds the seed's full semantics. With a timeout the wait is made here (without
 * the GIL, ring.c's ring_wait_total), and the slow path is then called with no timeout,
 * so nothing waits twice.
 *
 * _RingSinkPath. A sink in an acquisition pipeline is woken once per chunk, so its
 * write_message runs cold: each Python step of it costs several times its warm time,
 * and all of them come between the sample's acquisition and the reader's wake. The sink
 * makes one of these objects whenever it sets up a buffer layout (the ring, the axis,
 * the dtype, the axis gain and message key of that layout, its ctypes header copy), and
 * write(msg) checks a message against it and writes it: True. A message it does not
 * describe (another key, gain, dtype or frame shape, the axis not first, a coordinate
 * axis, not an ndarray) is left alone: False, and the sink's Python path takes it.
 */
#include <errno.h>
#include <string.h>

#include "ext.h"

typedef struct {
    PyObject_HEAD
    PyObject *ring;            /* _ring: the reading Ring handle, or NULL (None) */
    PyObject *empty;           /* _empty: a (0, *frame_shape) view, or NULL */
    unsigned long long cursor; /* _cursor: position of the next frame to return */
    long long gen;             /* _gen: the generation the mirror took note of, -1 none */
    char valid;                /* _valid: that generation holds frames (bvalid) */
    modstate *st;
} MirrorObject;

#define MSELF ((MirrorObject *)self)

static PyObject *slow(PyObject *self, PyObject *n, PyObject *timeout)
{
    return PyObject_CallMethod(self, "_auto_view_slow", "OO", n, timeout);
}

/* The ring handle when the fast path applies to it, else NULL (no exception). */
static RingObject *fast_ring(MirrorObject *m, modstate *st)
{
    RingObject *h = (RingObject *)m->ring;
    if (!h || !m->valid || Py_TYPE(h) != st->Ring_type || !h->r || h->busy ||
        h->core->gen != shm_fork_gen || !h->cached_gen || h->cached_gen == (uint64_t)-1 ||
        (long long)h->cached_gen != m->gen || !m->empty || m->empty == Py_None)
        return NULL;
    return h;
}

/* Frames [first, first + n) of the handle's generation: a slice of its storage, or a
 * copy in one array when they wrap around its end. */
static PyObject *frames_at(RingObject *h, uint64_t first, uint64_t n)
{
    PyObject *stor = ring_storage_of(h);
    if (!stor)
        return NULL;
    Py_ssize_t i0 = (Py_ssize_t)((first - h->base) % h->cap);
    Py_ssize_t k = (Py_ssize_t)(h->cap - (uint64_t)i0 < n ? h->cap - (uint64_t)i0 : n);
    if ((uint64_t)k == n)
        return np_rows(stor, i0, k);
    PyObject *a = np_rows(stor, i0, k);
    PyObject *b = a ? np_rows(stor, 0, (Py_ssize_t)n - k) : NULL;
    PyObject *c = b ? PyObject_CallMethod(h->st->np, "concatenate", "((OO))", a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return c;
}

PyDoc_STRVAR(m_auto_view_doc,
"auto_view(n=None, timeout=None) -> (frames, overflow)\n--\n\n"
"The frames written since the last call (all of them, or exactly n once n are there)\n"
"and whether some were lost to overflow since: a read-only view of the buffer when they\n"
"are contiguous in it, a copy when they wrap around its end. timeout (seconds) waits for\n"
"them. See shmstore.compat.ezmsg_shmem.EZShmMirror.");

static PyObject *m_auto_view(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    MirrorObject *m = MSELF;
    static const char *const names[] = {"n", "timeout"};
    PyObject *a[2] = {Py_None, Py_None};
    if (shm_fast_args("auto_view", args, nargs, kwnames, names, 2, 2, 0, a) < 0)
        return NULL;
    PyObject *n_o = a[0], *timeout = a[1];
    modstate *st = m->st;
    RingObject *h = fast_ring(m, st);
    uint64_t n = 0;
    if (h && n_o != Py_None) {
        n = PyLong_Check(n_o) ? PyLong_AsUnsignedLongLong(n_o) : 0;
        if (n == (uint64_t)-1 && PyErr_Occurred())
            PyErr_Clear();
        if (n == 0 || n == (uint64_t)-1 || n > h->cap)
            h = NULL; /* the slow path says what is wrong, or returns nothing */
    }
    if (!h)
        return slow(self, n_o, timeout);
    Py_INCREF(h);
    PyObject *res = NULL;
    if (timeout != Py_None) {
        int64_t tmo;
        uint64_t total;
        if (shm_timeout_ns(timeout, &tmo) < 0)
            goto out;
        int rc = ring_wait_total(h, m->cursor + (n ? n - 1 : 0), tmo, &total);
        if (rc == PYERR_SET)
            goto out;
        /* Other threads ran meanwhile, or the handle followed a reconfiguration. */
        if ((rc < 0 && rc != -ETIMEDOUT) || fast_ring(m, st) != h) {
            res = slow(self, n_o, Py_None);
            goto out;
        }
    }
    shmstore_ring_span_t sp;
    if (shmstore_ring_since(h->r, m->cursor, n ? n : h->cap, &sp) < 0) {
        res = slow(self, n_o, Py_None); /* a generation to follow, a deleted ring... */
        goto out;
    }
    PyObject *overflow = sp.lost ? Py_True : Py_False;
    if (sp.n == 0 || (n && sp.n < n)) {
        /* Not enough yet: keep the frames for later (after an overflow, from the
         * oldest frame held). */
        m->cursor = sp.first;
        res = PyTuple_Pack(2, m->empty, overflow);
        goto out;
    }
    PyObject *arr = frames_at(h, sp.first, sp.n);
    if (arr) {
        m->cursor = sp.cursor;
        res = PyTuple_Pack(2, arr, overflow);
        Py_DECREF(arr);
    }
out:
    Py_DECREF(h);
    return res;
}

static PyMethodDef m_methods[] = {
    {"auto_view", (PyCFunction)(void (*)(void))m_auto_view, METH_FASTCALL | METH_KEYWORDS,
     m_auto_view_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef m_members[] = {
    {"_ring", T_OBJECT, offsetof(MirrorObject, ring), 0, "The reading Ring handle, or None."},
    {"_empty", T_OBJECT, offsetof(MirrorObject, empty), 0, "An empty view of the buffer."},
    {"_cursor", T_ULONGLONG, offsetof(MirrorObject, cursor), 0, "Position of the next frame."},
    {"_gen", T_LONGLONG, offsetof(MirrorObject, gen), 0, "The generation taken note of (-1: none)."},
    {"_valid", T_BOOL, offsetof(MirrorObject, valid), 0, "That generation holds frames."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *m_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args;
    (void)kw;
    PyObject *mod = shm_module_of_type(type);
    if (!mod)
        return NULL;
    MirrorObject *m = (MirrorObject *)type->tp_alloc(type, 0);
    if (m) {
        m->gen = -1;
        m->st = shm_state_of(mod);
    }
    return (PyObject *)m;
}

static int m_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(MSELF->ring);
    Py_VISIT(MSELF->empty);
    return 0;
}

static int m_clear(PyObject *self)
{
    Py_CLEAR(MSELF->ring);
    Py_CLEAR(MSELF->empty);
    return 0;
}

static void m_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    m_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot m_slots[] = {
    {Py_tp_new, m_new},
    {Py_tp_dealloc, m_dealloc},
    {Py_tp_traverse, m_traverse},
    {Py_tp_clear, m_clear},
    {Py_tp_methods, m_methods},
    {Py_tp_members, m_members},
    {Py_tp_doc, (void *)"The C half of shmstore.compat.ezmsg_shmem.EZShmMirror (subclass it)."},
    {0, NULL},
};

PyType_Spec RingMirror_spec = {
    .name = "shmstore._RingMirror",
    .basicsize = sizeof(MirrorObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = m_slots,
};

/* ---- _RingSinkPath -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    RingObject *ring;
    PyObject *axis, *dtype, *key, *meta; /* str, numpy dtype, str, ctypes header */
    double gain;
    Py_buffer mbuf;                     /* the header's bytes (writable) */
    Py_ssize_t off_index, off_wrap;     /* of write_index and wrap_counter in them */
    PyObject *s_dims, *s_data, *s_axes, *s_gain, *s_key, *s_dtype; /* interned names */
    modstate *st;
} SinkObject;

#define SSELF ((SinkObject *)self)

static PyObject *s_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"ring", "axis", "dtype", "gain", "key", "meta", "index_offset",
                             "wrap_offset", NULL};
    PyObject *mod = shm_module_of_type(type);
    if (!mod)
        return NULL;
    modstate *st = shm_state_of(mod);
    PyObject *ring, *axis, *dtype, *key, *meta;
    double gain;
    Py_ssize_t oi, ow;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!UOdUOnn:_RingSinkPath", kwlist, st->Ring_type,
                                     &ring, &axis, &dtype, &gain, &key, &meta, &oi, &ow))
        return NULL;
    SinkObject *o = (SinkObject *)type->tp_alloc(type, 0);
    if (!o)
        return NULL;
    o->st = st;
    o->ring = (RingObject *)Py_NewRef(ring);
    o->axis = Py_NewRef(axis);
    o->dtype = Py_NewRef(dtype);
    o->key = Py_NewRef(key);
    o->meta = Py_NewRef(meta);
    o->gain = gain;
    if (PyObject_GetBuffer(meta, &o->mbuf, PyBUF_WRITABLE | PyBUF_SIMPLE) < 0)
        goto fail;
    if (oi < 0 || ow < 0 || oi + 8 > o->mbuf.len || ow + 8 > o->mbuf.len) {
        PyErr_SetString(PyExc_ValueError, "_RingSinkPath: field offsets outside the header");
        goto fail;
    }
    o->off_index = oi;
    o->off_wrap = ow;
    if (!(o->s_dims = PyUnicode_InternFromString("dims")) ||
        !(o->s_data = PyUnicode_InternFromString("data")) ||
        !(o->s_axes = PyUnicode_InternFromString("axes")) ||
        !(o->s_gain = PyUnicode_InternFromString("gain")) ||
        !(o->s_key = PyUnicode_InternFromString("key")) ||
        !(o->s_dtype = PyUnicode_InternFromString("dtype")))
        goto fail;
    return (PyObject *)o;
fail:
    Py_DECREF(o);
    return NULL;
}

/* getattr(o, name), or NULL with no exception when it has none. */
static PyObject *attr_or_null(PyObject *o, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v)
        PyErr_Clear();
    return v;
}

/* 1: `msg` is a message of this layout, its data in *data (a new reference); 0: not. */
static int msg_matches(SinkObject *o, PyObject *msg, PyObject **data)
{
    int ok = 0;
    PyObject *dims = NULL, *first = NULL, *axes = NULL, *ax = NULL, *g = NULL, *key = NULL,
             *dt = NULL;
    *data = NULL;
    if (!(dims = attr_or_null(msg, o->s_dims)) || !(first = PySequence_GetItem(dims, 0)) ||
        !PyUnicode_Check(first) || PyUnicode_Compare(first, o->axis) != 0)
        goto out;
    if (!(*data = attr_or_null(msg, o->s_data)) ||
        Py_TYPE(*data) != (PyTypeObject *)o->st->ndarray)
        goto out;
    if (!(axes = attr_or_null(msg, o->s_axes)) || !(ax = PyObject_GetItem(axes, o->axis)) ||
        !(g = attr_or_null(ax, o->s_gain)) || !PyFloat_Check(g) ||
        PyFloat_AS_DOUBLE(g) != o->gain)
        goto out;
    key = attr_or_null(msg, o->s_key);
    if (key ? (!PyUnicode_Check(key) || PyUnicode_Compare(key, o->key) != 0)
            : PyUnicode_GET_LENGTH(o->key) != 0)
        goto out;
    if (!(dt = attr_or_null(*data, o->s_dtype)))
        goto out;
    ok = dt == o->dtype || PyObject_RichCompareBool(dt, o->dtype, Py_EQ) == 1;
out:
    if (PyErr_Occurred())
        PyErr_Clear(); /* whatever it was, the Python path will say it */
    Py_XDECREF(dims);
    Py_XDECREF(first);
    Py_XDECREF(axes);
    Py_XDECREF(ax);
    Py_XDECREF(g);
    Py_XDECREF(key);
    Py_XDECREF(dt);
    if (!ok)
        Py_CLEAR(*data);
    return ok;
}

PyDoc_STRVAR(s_write_doc,
"write(msg) -> bool\n--\n\n"
"Write the message's frames if it is of this layout (the axis first and linear with the\n"
"same gain, the same key, dtype and frame shape) and update the header copy: True.\n"
"False (nothing written) for any other message.");

static PyObject *s_write(PyObject *self, PyObject *msg)
{
    SinkObject *o = SSELF;
    PyObject *data;
    if (!o->ring->r || !msg_matches(o, msg, &data))
        Py_RETURN_FALSE;
    uint64_t total;
    int rc = ring_write_frames(o->ring, data, 1, &total);
    Py_DECREF(data);
    if (rc < 0)
        return NULL;
    if (rc > 0)
        Py_RETURN_FALSE;
    RingObject *h = o->ring;
    uint64_t n = total - h->base, idx = n % h->cap, wrap = n / h->cap;
    memcpy((char *)o->mbuf.buf + o->off_index, &idx, 8); /* the header is little-endian */
    memcpy((char *)o->mbuf.buf + o->off_wrap, &wrap, 8);
    Py_RETURN_TRUE;
}

static PyMethodDef s_methods[] = {
    {"write", s_write, METH_O, s_write_doc},
    {NULL, NULL, 0, NULL},
};

static int s_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(SSELF->ring);
    Py_VISIT(SSELF->dtype);
    Py_VISIT(SSELF->meta);
    return 0;
}

static int s_clear(PyObject *self)
{
    SinkObject *o = SSELF;
    if (o->mbuf.obj)
        PyBuffer_Release(&o->mbuf);
    Py_CLEAR(o->ring);
    Py_CLEAR(o->dtype);
    Py_CLEAR(o->meta);
    return 0;
}

static void s_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    SinkObject *o = SSELF;
    PyObject_GC_UnTrack(self);
    s_clear(self);
    Py_CLEAR(o->axis);
    Py_CLEAR(o->key);
    Py_CLEAR(o->s_dims);
    Py_CLEAR(o->s_data);
    Py_CLEAR(o->s_axes);
    Py_CLEAR(o->s_gain);
    Py_CLEAR(o->s_key);
    Py_CLEAR(o->s_dtype);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot s_slots[] = {
    {Py_tp_new, s_new},
    {Py_tp_dealloc, s_dealloc},
    {Py_tp_traverse, s_traverse},
    {Py_tp_clear, s_clear},
    {Py_tp_methods, s_methods},
    {Py_tp_doc, (void *)"_RingSinkPath(ring, axis, dtype, gain, key, meta, index_offset, "
                        "wrap_offset): compat.ezmsg_shmem's sink fast path."},
    {0, NULL},
};

PyType_Spec RingSinkPath_spec = {
    .name = "shmstore._RingSinkPath",
    .basicsize = sizeof(SinkObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = s_slots,
};
