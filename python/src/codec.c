/* codec.c - Python objects <-> datums.
 *
 * Scalars, str and bytes map to the datum types of the same name; numpy arrays of a
 * dtype the library describes map to ARRAY (C order: other layouts are copied first);
 * dict / list / tuple / set / frozenset / bytearray trees map to RECORD; anything else,
 * including ints beyond int64 and arrays of dtypes the library cannot describe
 * (datetime64, structured, ...), is pickled. Arrays of dtype object are refused.
 *
 * RECORD encoding (little-endian, all offsets from the start of the payload, which the
 * library aligns to 64 bytes):
 *
 *     rec_hdr   magic "SRC1", n_nodes, n_dims, flags, data_off, total      32 bytes
 *     rec_node  n_nodes x 40 bytes, the tree in pre-order                 (see below)
 *     u64       n_dims array extents, shared by the array nodes
 *     payloads  from data_off, each at a 64-byte aligned offset
 *
 * A node: kind (u8: a shmstore_type_t for leaves, REC_* for containers), ndim (u8),
 * count (u32: items of a container; a dict's 2*count children alternate key, value),
 * a and b (u64: payload offset and length, or the bits of an inline scalar), dtype
 * (8 bytes, arrays), dim_idx (u32: first extent in the u64 array). Decoding validates
 * every field against the payload length: a hostile record raises CorruptError, it
 * never reads outside the leased block. Arrays decoded by view() are numpy arrays over
 * the one leased block.
 */
#include <string.h>

#include "ext.h"

#define REC_MAGIC 0x31435253u /* "SRC1" */
#define REC_DICT 16
#define REC_LIST 17
#define REC_TUPLE 18
#define REC_SET 19
#define REC_FROZENSET 20
#define REC_BYTEARRAY 21
#define REC_DEPTH_MAX 100
#define ALIGN 64

struct rec_hdr {
    uint32_t magic;
    uint32_t n_nodes;
    uint32_t n_dims;
    uint32_t flags;
    uint64_t data_off;
    uint64_t total;
};

struct rec_node {
    uint8_t kind;
    uint8_t ndim;
    uint16_t rsv;
    uint32_t count;
    uint64_t a;
    uint64_t b;
    char dtype[8];
    uint32_t dim_idx;
    uint32_t rsv2;
};

_Static_assert(sizeof(struct rec_hdr) == 32, "rec_hdr layout");
_Static_assert(sizeof(struct rec_node) == 40, "rec_node layout");

struct src {
    const void *p;
    size_t len;
    uint64_t off;
};

struct rec {
    struct rec_node *nodes;
    size_t n_nodes, cap_nodes;
    uint64_t *dims;
    size_t n_dims, cap_dims;
    struct src *srcs;
    size_t n_srcs, cap_srcs;
    Py_buffer *bufs;
    size_t n_bufs, cap_bufs;
    uint64_t payload; /* bytes of payloads (aligned) */
    uint64_t data_off;
};

static uint64_t align_up(uint64_t x)
{
    return (x + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *q = PyMem_Realloc(*p, n * elem);
    if (!q) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* ---- dtypes ---------------------------------------------------------------------------- */

/* The library dtype string of numpy array `arr`: 0 = written to `out`; 1 = not
 * describable (pickle it); -1 = error (object dtype: TypeError). Big-endian arrays are
 * converted: *contig receives the native copy. */
int dtype_str_of(modstate *st, PyObject *arr, char out[SHMSTORE_DTYPE_MAX], PyObject **contig)
{
    PyObject *dt = PyObject_GetAttrString(arr, "dtype");
    if (!dt)
        return -1;
    PyObject *c = PyDict_GetItemWithError(st->dtype_of, dt);
    if (!c) {
        if (PyErr_Occurred()) {
            Py_DECREF(dt);
            return -1;
        }
        PyObject *kind = PyObject_GetAttrString(dt, "kind");
        PyObject *s = kind ? PyObject_GetAttrString(dt, "str") : NULL;
        const char *ks = kind ? PyUnicode_AsUTF8(kind) : NULL;
        const char *ss = s ? PyUnicode_AsUTF8(s) : NULL;
        if (!ks || !ss) {
            Py_XDECREF(kind);
            Py_XDECREF(s);
            Py_DECREF(dt);
            return -1;
        }
        if (ks[0] == 'O') {
            Py_DECREF(kind);
            Py_DECREF(s);
            Py_DECREF(dt);
            PyErr_SetString(PyExc_TypeError,
                            "shmstore cannot store numpy arrays of dtype object (they hold "
                            "pointers to Python objects); convert them to a fixed-size dtype, "
                            "a list, or pickle them yourself");
            return -1;
        }
        if (ss[0] == '>' && strlen(ss) < SHMSTORE_DTYPE_MAX) {
            c = s; /* ">f4": convert on every put */
            Py_INCREF(c);
        } else if (strlen(ss) < SHMSTORE_DTYPE_MAX && shmstore_dtype_itemsize(ss) >= 0) {
            c = s;
            Py_INCREF(c);
        } else {
            c = Py_None;
            Py_INCREF(c);
        }
        Py_DECREF(kind);
        Py_DECREF(s);
        if (PyDict_SetItem(st->dtype_of, dt, c) < 0) {
            Py_DECREF(c);
            Py_DECREF(dt);
            return -1;
        }
        Py_DECREF(c); /* the dict holds it */
    }
    if (c == Py_None) {
        Py_DECREF(dt);
        return 1;
    }
    const char *cs = PyUnicode_AsUTF8(c);
    if (!cs) {
        Py_DECREF(dt);
        return -1;
    }
    if (cs[0] == '>') {
        PyObject *le = PyObject_CallMethod(dt, "newbyteorder", "s", "<");
        PyObject *conv = le ? PyObject_CallMethod(arr, "astype", "O", le) : NULL;
        Py_XDECREF(le);
        Py_DECREF(dt);
        if (!conv)
            return -1;
        int r = dtype_str_of(st, conv, out, contig);
        if (r == 0 && !*contig)
            *contig = conv;
        else
            Py_DECREF(conv);
        return r;
    }
    snprintf(out, SHMSTORE_DTYPE_MAX, "%s", cs);
    Py_DECREF(dt);
    return 0;
}

PyObject *np_dtype_of(modstate *st, const char *dtype)
{
    PyObject *key = PyUnicode_FromString(dtype);
    if (!key)
        return NULL;
    PyObject *dt = PyDict_GetItemWithError(st->np_dtype, key);
    if (dt) {
        Py_DECREF(key);
        return Py_NewRef(dt);
    }
    if (PyErr_Occurred() || shm_numpy(st) < 0) {
        Py_DECREF(key);
        return NULL;
    }
    dt = PyObject_CallMethod(st->np, "dtype", "O", key);
    if (dt && PyDict_SetItem(st->np_dtype, key, dt) < 0)
        Py_CLEAR(dt);
    Py_DECREF(key);
    return dt;
}

static int is_ndarray(modstate *st, PyObject *o)
{
    /* Compare the name first so that storing non-arrays never imports numpy. */
    if (strcmp(Py_TYPE(o)->tp_name, "numpy.ndarray") != 0)
        return 0;
    if (shm_numpy(st) < 0)
        return -1;
    return (PyObject *)Py_TYPE(o) == st->ndarray;
}

/* C-contiguous buffer of numpy array `arr` (copied to C order if needed) and its
 * dtype string. 0 ok, 1 pickle it, -1 error. On 0 the caller releases `pb` and `*keep`. */
static int array_buffer(modstate *st, PyObject *arr, Py_buffer *pb, char dtype[SHMSTORE_DTYPE_MAX],
                        PyObject **keep)
{
    PyObject *conv = NULL;
    int r = dtype_str_of(st, arr, dtype, &conv);
    if (r != 0)
        return r;
    PyObject *src = conv ? conv : arr;
    if (PyObject_GetBuffer(src, pb, PyBUF_RECORDS_RO) < 0) {
        Py_XDECREF(conv);
        return -1;
    }
    if (pb->ndim > SHMSTORE_NDIM_MAX) {
        PyBuffer_Release(pb);
        Py_XDECREF(conv);
        return 1;
    }
    if (!PyBuffer_IsContiguous(pb, 'C')) {
        PyBuffer_Release(pb);
        PyObject *c = PyObject_CallOneArg(st->np_ascontig, src);
        Py_XDECREF(conv);
        if (!c)
            return -1;
        conv = c;
        if (PyObject_GetBuffer(conv, pb, PyBUF_RECORDS_RO) < 0) {
            Py_DECREF(conv);
            return -1;
        }
    }
    *keep = conv;
    return 0;
}

/* ---- encoding: scalars, strings, arrays, pickle ----------------------------------------- */

static int enc_pickle(modstate *st, PyObject *obj, PyObject **out)
{
    if (shm_pickle(st) < 0)
        return -1;
    PyObject *b = PyObject_CallFunctionObjArgs(st->pk_dumps, obj, st->pk_proto, NULL);
    if (!b)
        return -1;
    if (!PyBytes_Check(b)) {
        Py_DECREF(b);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        return -1;
    }
    *out = b;
    return 0;
}

static int rec_build(modstate *st, struct rec *rc, PyObject *obj, PyObject *keep, int depth);
static void rec_free(struct rec *rc);

void enc_free(enc_t *e)
{
    if (e->has_pybuf) {
        PyBuffer_Release(&e->pybuf);
        e->has_pybuf = 0;
    }
    Py_CLEAR(e->keep);
    if (e->rec) {
        rec_free(e->rec);
        PyMem_Free(e->rec);
        e->rec = NULL;
    }
}

static int is_record_type(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    return t == &PyDict_Type || t == &PyList_Type || t == &PyTuple_Type || t == &PySet_Type ||
           t == &PyFrozenSet_Type || t == &PyByteArray_Type;
}

/* The scalar types (None, bool, int, float, complex, bytes, str) of `obj`: sets *type and
 * the payload (*data, *len: in `inl` for fixed-size ones, else the bytes of obj itself,
 * which the caller keeps alive). Returns 1 for a scalar, 0 for anything else (also an
 * int beyond 64 bits and a str with lone surrogates: pickled), -1 with an exception.
 * Record leaves use it directly: no descriptor to fill per leaf. */
static int enc_scalar(PyObject *obj, uint32_t *type, char inl[16], const void **data, size_t *len)
{
    PyTypeObject *t = Py_TYPE(obj);
    *data = inl;
    if (obj == Py_None) {
        *type = SHMSTORE_T_NONE;
        *len = 0;
    } else if (t == &PyBool_Type) {
        *type = SHMSTORE_T_BOOL;
        inl[0] = obj == Py_True;
        *len = 1;
    } else if (t == &PyLong_Type) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (overflow)
            return 0;
        int64_t v = x;
        *type = SHMSTORE_T_INT64;
        memcpy(inl, &v, 8);
        *len = 8;
    } else if (t == &PyFloat_Type) {
        double v = PyFloat_AS_DOUBLE(obj);
        *type = SHMSTORE_T_FLOAT64;
        memcpy(inl, &v, 8);
        *len = 8;
    } else if (t == &PyComplex_Type) {
        Py_complex c = PyComplex_AsCComplex(obj);
        *type = SHMSTORE_T_COMPLEX128;
        memcpy(inl, &c.real, 8);
        memcpy(inl + 8, &c.imag, 8);
        *len = 16;
    } else if (t == &PyBytes_Type) {
        *type = SHMSTORE_T_BYTES;
        *data = PyBytes_AS_STRING(obj);
        *len = (size_t)PyBytes_GET_SIZE(obj);
    } else if (t == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(obj, &n);
        if (!u) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear(); /* lone surrogates: pickle keeps them */
            return 0;
        }
        *type = SHMSTORE_T_STR;
        *data = u;
        *len = (size_t)n;
    } else {
        return 0;
    }
    return 1;
}

int enc_value(modstate *st, PyObject *obj, enc_t *e)
{
    memset(e, 0, sizeof(*e));
    uint32_t type;
    int sc = enc_scalar(obj, &type, e->inline_buf, &e->data, &e->len);
    if (sc < 0)
        return -1;
    if (sc > 0) {
        shmstore_datum_init(&e->d, (shmstore_type_t)type);
        if (type == SHMSTORE_T_BYTES || type == SHMSTORE_T_STR)
            e->keep = Py_NewRef(obj);
        return 0;
    }
    int isarr = is_ndarray(st, obj);
    if (isarr < 0)
        return -1;
    if (isarr) {
        char dtype[SHMSTORE_DTYPE_MAX];
        int r = array_buffer(st, obj, &e->pybuf, dtype, &e->keep);
        if (r < 0)
            return -1;
        if (r > 0)
            goto pickle;
        e->has_pybuf = 1;
        uint64_t shape[SHMSTORE_NDIM_MAX];
        for (int i = 0; i < e->pybuf.ndim; i++)
            shape[i] = (uint64_t)e->pybuf.shape[i];
        if (shmstore_datum_init_array(&e->d, dtype, (uint32_t)e->pybuf.ndim, shape) < 0) {
            enc_free(e);
            goto pickle;
        }
        e->data = e->pybuf.buf;
        e->len = (size_t)e->pybuf.len;
        return 0;
    }
    if (is_record_type(obj)) {
        struct rec *rc = PyMem_Calloc(1, sizeof(*rc));
        PyObject *keep = PyList_New(0);
        if (!rc || !keep) {
            PyMem_Free(rc);
            Py_XDECREF(keep);
            PyErr_NoMemory();
            return -1;
        }
        e->rec = rc;
        e->keep = keep;
        int r = rec_build(st, rc, obj, keep, 0);
        if (r < 0) {
            enc_free(e);
            return -1;
        }
        if (r > 0) { /* too deep or cyclic: pickle the whole tree */
            enc_free(e);
            goto pickle;
        }
        uint64_t head = sizeof(struct rec_hdr) + rc->n_nodes * sizeof(struct rec_node) +
                        rc->n_dims * sizeof(uint64_t);
        rc->data_off = align_up(head);
        shmstore_datum_init(&e->d, SHMSTORE_T_RECORD);
        e->len = (size_t)(rc->data_off + rc->payload);
        return 0;
    }
pickle:
    memset(e, 0, sizeof(*e));
    if (enc_pickle(st, obj, &e->keep) < 0)
        return -1;
    shmstore_datum_init(&e->d, SHMSTORE_T_PICKLE);
    e->data = PyBytes_AS_STRING(e->keep);
    e->len = (size_t)PyBytes_GET_SIZE(e->keep);
    return 0;
}

/* ---- encoding: records ------------------------------------------------------------------ */

static void rec_free(struct rec *rc)
{
    for (size_t i = 0; i < rc->n_bufs; i++)
        PyBuffer_Release(&rc->bufs[i]);
    PyMem_Free(rc->bufs);
    PyMem_Free(rc->nodes);
    PyMem_Free(rc->dims);
    PyMem_Free(rc->srcs);
    memset(rc, 0, sizeof(*rc));
}

static struct rec_node *rec_node_new(struct rec *rc, int kind)
{
    if (grow((void **)&rc->nodes, &rc->cap_nodes, rc->n_nodes + 1, sizeof(struct rec_node)) < 0)
        return NULL;
    struct rec_node *n = &rc->nodes[rc->n_nodes++];
    memset(n, 0, sizeof(*n));
    n->kind = (uint8_t)kind;
    return n;
}

/* Register a payload; returns its offset relative to the payload area. */
static int rec_payload(struct rec *rc, size_t node_i, const void *p, size_t len)
{
    if (grow((void **)&rc->srcs, &rc->cap_srcs, rc->n_srcs + 1, sizeof(struct src)) < 0)
        return -1;
    struct src *s = &rc->srcs[rc->n_srcs++];
    s->p = p;
    s->len = len;
    s->off = rc->payload;
    rc->nodes[node_i].a = rc->payload; /* made absolute (data_off added) when filled */
    rc->nodes[node_i].b = len;
    rc->payload += align_up(len);
    return 0;
}

static int rec_keep(PyObject *keep, PyObject *o)
{
    return PyList_Append(keep, o);
}

/* Append obj's nodes. 0 ok, 1 give up (too deep: pickle the whole value), -1 error. */
static int rec_build(modstate *st, struct rec *rc, PyObject *obj, PyObject *keep, int depth)
{
    if (depth > REC_DEPTH_MAX)
        return 1;
    PyTypeObject *t = Py_TYPE(obj);
    size_t me = rc->n_nodes;
    struct rec_node *n;
    if (t == &PyDict_Type || t == &PyList_Type || t == &PyTuple_Type || t == &PySet_Type ||
        t == &PyFrozenSet_Type) {
        int kind = t == &PyDict_Type ? REC_DICT
                   : t == &PyList_Type ? REC_LIST
                   : t == &PyTuple_Type ? REC_TUPLE
                   : t == &PySet_Type ? REC_SET : REC_FROZENSET;
        if (!(n = rec_node_new(rc, kind)))
            return -1;
        /* Hold the container: a list could be mutated by another thread while copies run
         * without the GIL; the items we point at are kept below. */
        if (rec_keep(keep, obj) < 0)
            return -1;
        if (kind == REC_DICT) {
            PyObject *k, *v;
            Py_ssize_t pos = 0, cnt = 0;
            Py_ssize_t sz = PyDict_GET_SIZE(obj);
            while (PyDict_Next(obj, &pos, &k, &v)) {
                int r;
                Py_INCREF(k);
                Py_INCREF(v);
                r = rec_build(st, rc, k, keep, depth + 1);
                if (r == 0)
                    r = rec_build(st, rc, v, keep, depth + 1);
                Py_DECREF(k);
                Py_DECREF(v);
                if (r)
                    return r;
                cnt++;
                if (PyDict_GET_SIZE(obj) != sz) {
                    PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during put");
                    return -1;
                }
            }
            rc->nodes[me].count = (uint32_t)cnt;
            return 0;
        }
        PyObject *seq = (kind == REC_LIST || kind == REC_TUPLE) ? Py_NewRef(obj)
                                                                 : PySequence_Tuple(obj);
        if (!seq)
            return -1;
        PyObject *fast = PySequence_Fast(seq, "");
        Py_DECREF(seq);
        if (!fast)
            return -1;
        /* A list may change while we recurse: snapshot it. */
        PyObject *snap = PySequence_Tuple(fast);
        Py_DECREF(fast);
        if (!snap)
            return -1;
        int r = rec_keep(keep, snap);
        Py_ssize_t len = PyTuple_GET_SIZE(snap);
        for (Py_ssize_t i = 0; r == 0 && i < len; i++)
            r = rec_build(st, rc, PyTuple_GET_ITEM(snap, i), keep, depth + 1);
        Py_DECREF(snap);
        if (r)
            return r;
        if ((uint64_t)len > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "container too large for a record");
            return -1;
        }
        rc->nodes[me].count = (uint32_t)len;
        return 0;
    }
    if (t == &PyByteArray_Type) {
        if (!(n = rec_node_new(rc, REC_BYTEARRAY)))
            return -1;
        if (grow((void **)&rc->bufs, &rc->cap_bufs, rc->n_bufs + 1, sizeof(Py_buffer)) < 0)
            return -1;
        Py_buffer *pb = &rc->bufs[rc->n_bufs];
        if (PyObject_GetBuffer(obj, pb, PyBUF_SIMPLE) < 0)
            return -1;
        rc->n_bufs++;
        return rec_payload(rc, me, pb->buf, (size_t)pb->len);
    }
    /* Scalar leaves straight into their node; arrays and pickles through the top-level
     * encoder. */
    uint32_t type;
    char inl[16];
    const void *data;
    size_t len;
    int sc = enc_scalar(obj, &type, inl, &data, &len);
    if (sc < 0)
        return -1;
    if (sc > 0) {
        if (!(n = rec_node_new(rc, (int)type)))
            return -1;
        switch (type) {
        case SHMSTORE_T_NONE:
            return 0;
        case SHMSTORE_T_BOOL:
            n->a = (uint8_t)inl[0];
            return 0;
        case SHMSTORE_T_INT64:
        case SHMSTORE_T_FLOAT64:
            memcpy(&n->a, inl, 8);
            return 0;
        case SHMSTORE_T_COMPLEX128:
            memcpy(&n->a, inl, 8);
            memcpy(&n->b, inl + 8, 8);
            return 0;
        default: /* BYTES, STR: the record holds obj while its bytes are copied */
            return rec_payload(rc, me, data, len) < 0 || rec_keep(keep, obj) < 0 ? -1 : 0;
        }
    }
    enc_t e;
    if (enc_value(st, obj, &e) < 0)
        return -1;
    if (e.d.type != SHMSTORE_T_ARRAY && e.d.type != SHMSTORE_T_PICKLE) {
        enc_free(&e); /* cannot happen: scalars and containers are handled above */
        PyErr_SetString(PyExc_SystemError, "unexpected record leaf");
        return -1;
    }
    if (!(n = rec_node_new(rc, (int)e.d.type))) {
        enc_free(&e);
        return -1;
    }
    int r = 0;
    if (e.d.type == SHMSTORE_T_ARRAY) {
        n->ndim = (uint8_t)e.d.ndim;
        memcpy(n->dtype, e.d.dtype, sizeof(n->dtype));
        if (grow((void **)&rc->dims, &rc->cap_dims, rc->n_dims + e.d.ndim, sizeof(uint64_t)) < 0 ||
            grow((void **)&rc->bufs, &rc->cap_bufs, rc->n_bufs + 1, sizeof(Py_buffer)) < 0) {
            r = -1;
        } else {
            n->dim_idx = (uint32_t)rc->n_dims;
            memcpy(rc->dims + rc->n_dims, e.d.shape, e.d.ndim * sizeof(uint64_t));
            rc->n_dims += e.d.ndim;
            /* Move the held buffer into the record so the data stays put until filled. */
            rc->bufs[rc->n_bufs++] = e.pybuf;
            e.has_pybuf = 0;
            r = rec_payload(rc, me, e.data, e.len);
        }
    } else { /* PICKLE: e.keep owns the bytes */
        r = rec_payload(rc, me, e.data, e.len);
    }
    if (r == 0 && e.keep && rec_keep(keep, e.keep) < 0)
        r = -1;
    enc_free(&e);
    return r;
}

void enc_record_fill(enc_t *e, char *dst)
{
    struct rec *rc = e->rec;
    struct rec_hdr h = {REC_MAGIC, (uint32_t)rc->n_nodes, (uint32_t)rc->n_dims, 0, rc->data_off,
                        rc->data_off + rc->payload};
    char *p = dst;
    memcpy(p, &h, sizeof(h));
    p += sizeof(h);
    for (size_t i = 0; i < rc->n_nodes; i++) {
        struct rec_node n = rc->nodes[i];
        switch (n.kind) {
        case SHMSTORE_T_BYTES:
        case SHMSTORE_T_STR:
        case SHMSTORE_T_ARRAY:
        case SHMSTORE_T_PICKLE:
        case REC_BYTEARRAY:
            n.a += rc->data_off;
            break;
        default:
            break;
        }
        memcpy(p, &n, sizeof(n));
        p += sizeof(n);
    }
    memcpy(p, rc->dims, rc->n_dims * sizeof(uint64_t));
    p += rc->n_dims * sizeof(uint64_t);
    memset(p, 0, (size_t)(dst + rc->data_off - p));
    int nogil = rc->payload >= GIL_COPY_MIN;
    PyThreadState *ts = nogil ? PyEval_SaveThread() : NULL;
    for (size_t i = 0; i < rc->n_srcs; i++) {
        struct src *s = &rc->srcs[i];
        char *d = dst + rc->data_off + s->off;
        if (s->len)
            memcpy(d, s->p, s->len);
        memset(d + s->len, 0, (size_t)(align_up(s->len) - s->len));
    }
    if (ts)
        PyEval_RestoreThread(ts);
}

/* ---- decoding ---------------------------------------------------------------------------- */

static PyObject *corrupt(modstate *st, const char *what)
{
    PyErr_Format(st->CorruptError, "shmstore: record is corrupt: %s", what);
    return NULL;
}

/* Whether an array of `ndim` extents `shape` of `item`-byte items can be described to
 * Python: every extent and the product of the non-zero extents times the item size fit
 * in a Py_ssize_t (strides are computed from them; numpy applies the same rule). A
 * descriptor with a zero extent describes 0 bytes whatever the other extents are, so
 * validating the length alone does not bound them. */
int extents_ok(int64_t item, int ndim, const uint64_t *shape)
{
    uint64_t n = item > 0 ? (uint64_t)item : 1;
    if (ndim < 0 || ndim > SHMSTORE_NDIM_MAX)
        return 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > (uint64_t)PY_SSIZE_T_MAX)
            return 0;
        if (shape[i] == 0)
            continue;
        if (n > (uint64_t)PY_SSIZE_T_MAX / shape[i])
            return 0;
        n *= shape[i];
    }
    return 1;
}

/* Copy `len` bytes, without the GIL when large. */
static void copy_maybe_nogil(void *dst, const void *src, size_t len)
{
    if (len >= GIL_COPY_MIN) {
        Py_BEGIN_ALLOW_THREADS
        memcpy(dst, src, len);
        Py_END_ALLOW_THREADS
    } else if (len) {
        memcpy(dst, src, len);
    }
}

PyObject *shape_tuple(int ndim, const uint64_t *shape)
{
    PyObject *t = PyTuple_New(ndim);
    if (!t)
        return NULL;
    for (int i = 0; i < ndim; i++) {
        PyObject *x = PyLong_FromUnsignedLongLong(shape[i]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

/* A numpy array: a copy, or a read-only view over `root` when root != NULL. */
static PyObject *dec_array(modstate *st, const char *dtype, int ndim, const uint64_t *shape,
                           const char *data, size_t len, BufferObject *root)
{
    if (shm_numpy(st) < 0)
        return NULL;
    if (root) {
        BufferObject *b = buffer_child(st, root, (char *)data, (Py_ssize_t)len, dtype, ndim, shape, 1);
        if (!b)
            return NULL;
        PyObject *a = np_view(st, b, dtype, ndim, shape);
        Py_DECREF(b);
        return a;
    }
    PyObject *dt = np_dtype_of(st, dtype);
    PyObject *sh = dt ? shape_tuple(ndim, shape) : NULL;
    PyObject *a = sh ? PyObject_CallFunctionObjArgs(st->np_empty, sh, dt, NULL) : NULL;
    Py_XDECREF(dt);
    Py_XDECREF(sh);
    if (!a)
        return NULL;
    Py_buffer pb;
    if (PyObject_GetBuffer(a, &pb, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    if ((size_t)pb.len != len) {
        PyBuffer_Release(&pb);
        Py_DECREF(a);
        return corrupt(st, "array length does not match its dtype and shape");
    }
    copy_maybe_nogil(pb.buf, data, len);
    PyBuffer_Release(&pb);
    return a;
}

static PyObject *dec_bytes(const char *data, size_t len)
{
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (b)
        copy_maybe_nogil(PyBytes_AS_STRING(b), data, len);
    return b;
}

static PyObject *dec_pickle(modstate *st, const char *data, size_t len)
{
    if (shm_pickle(st) < 0)
        return NULL;
    PyObject *mv = PyMemoryView_FromMemory((char *)data, (Py_ssize_t)len, PyBUF_READ);
    if (!mv)
        return NULL;
    PyObject *o = PyObject_CallOneArg(st->pk_loads, mv);
    /* The memoryview points into a lease or a temporary: make sure nobody keeps it.
     * pickle.loads() may have failed: keep its exception aside while calling release()
     * (calling into Python with an exception set raises SystemError, and clearing the
     * release error must not clear the loads error). */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *r = PyObject_CallMethod(mv, "release", NULL);
    if (!r)
        PyErr_Clear();
    Py_XDECREF(r);
    PyErr_Restore(et, ev, tb);
    Py_DECREF(mv);
    return o;
}

struct dec {
    modstate *st;
    const char *base;
    size_t len;
    const struct rec_node *nodes;
    uint32_t n_nodes;
    const uint64_t *dims;
    uint32_t n_dims;
    uint64_t data_off;
    uint32_t next;
    BufferObject *root;
};

static PyObject *rec_dec(struct dec *dc, int depth, int as_key)
{
    modstate *st = dc->st;
    if (depth > REC_DEPTH_MAX)
        return corrupt(st, "nesting too deep");
    if (dc->next >= dc->n_nodes)
        return corrupt(st, "node index out of range");
    struct rec_node n;
    memcpy(&n, &dc->nodes[dc->next++], sizeof(n));
    const char *payload = NULL;
    switch (n.kind) {
    case SHMSTORE_T_BYTES:
    case SHMSTORE_T_STR:
    case SHMSTORE_T_ARRAY:
    case SHMSTORE_T_PICKLE:
    case REC_BYTEARRAY:
        if (n.a < dc->data_off || n.a > dc->len || n.b > dc->len - n.a)
            return corrupt(st, "payload outside the record");
        payload = dc->base + n.a;
        break;
    default:
        break;
    }
    switch (n.kind) {
    case SHMSTORE_T_NONE:
        Py_RETURN_NONE;
    case SHMSTORE_T_BOOL:
        return PyBool_FromLong(n.a != 0);
    case SHMSTORE_T_INT64: {
        int64_t v;
        memcpy(&v, &n.a, 8);
        return PyLong_FromLongLong(v);
    }
    case SHMSTORE_T_FLOAT64: {
        double v;
        memcpy(&v, &n.a, 8);
        return PyFloat_FromDouble(v);
    }
    case SHMSTORE_T_COMPLEX128: {
        double re, im;
        memcpy(&re, &n.a, 8);
        memcpy(&im, &n.b, 8);
        return PyComplex_FromDoubles(re, im);
    }
    case SHMSTORE_T_BYTES:
        return dec_bytes(payload, n.b);
    case REC_BYTEARRAY:
        return PyByteArray_FromStringAndSize(payload, (Py_ssize_t)n.b);
    case SHMSTORE_T_STR:
        return PyUnicode_DecodeUTF8(payload, (Py_ssize_t)n.b, "surrogatepass");
    case SHMSTORE_T_PICKLE:
        return dec_pickle(st, payload, n.b);
    case SHMSTORE_T_ARRAY: {
        char dtype[SHMSTORE_DTYPE_MAX];
        memcpy(dtype, n.dtype, sizeof(dtype));
        dtype[SHMSTORE_DTYPE_MAX - 1] = 0;
        if (n.ndim > SHMSTORE_NDIM_MAX || n.dim_idx > dc->n_dims || n.ndim > dc->n_dims - n.dim_idx)
            return corrupt(st, "array extents out of range");
        shmstore_datum_t d;
        if (shmstore_datum_init_array(&d, dtype, n.ndim, dc->dims + n.dim_idx) < 0 ||
            shmstore_datum_validate(&d, n.b) < 0)
            return corrupt(st, "array descriptor does not match its length");
        if (!extents_ok(shmstore_dtype_itemsize(dtype), n.ndim, dc->dims + n.dim_idx))
            return corrupt(st, "array extents too large");
        return dec_array(st, dtype, n.ndim, dc->dims + n.dim_idx, payload, n.b,
                         as_key ? NULL : dc->root);
    }
    case REC_DICT: {
        if (n.count > dc->n_nodes)
            return corrupt(st, "dict too large");
        PyObject *d = PyDict_New();
        for (uint32_t i = 0; d && i < n.count; i++) {
            PyObject *k = rec_dec(dc, depth + 1, 1);
            PyObject *v = k ? rec_dec(dc, depth + 1, 0) : NULL;
            if (!v || PyDict_SetItem(d, k, v) < 0)
                Py_CLEAR(d);
            Py_XDECREF(k);
            Py_XDECREF(v);
        }
        return d;
    }
    case REC_LIST:
    case REC_TUPLE:
    case REC_SET:
    case REC_FROZENSET: {
        if (n.count > dc->n_nodes)
            return corrupt(st, "sequence too large");
        int hashed = n.kind == REC_SET || n.kind == REC_FROZENSET;
        PyObject *l = PyList_New(n.count);
        for (uint32_t i = 0; l && i < n.count; i++) {
            PyObject *x = rec_dec(dc, depth + 1, as_key || hashed);
            if (!x)
                Py_CLEAR(l);
            else
                PyList_SET_ITEM(l, i, x);
        }
        if (!l || n.kind == REC_LIST)
            return l;
        PyObject *o = n.kind == REC_TUPLE ? PyList_AsTuple(l)
                      : n.kind == REC_SET ? PySet_New(l) : PyFrozenSet_New(l);
        Py_DECREF(l);
        return o;
    }
    default:
        return corrupt(st, "unknown node kind");
    }
}

static PyObject *dec_record(modstate *st, const char *data, size_t len, BufferObject *root)
{
    struct rec_hdr h;
    if (len < sizeof(h))
        return corrupt(st, "shorter than its header");
    memcpy(&h, data, sizeof(h));
    uint64_t head = sizeof(h) + (uint64_t)h.n_nodes * sizeof(struct rec_node) +
                    (uint64_t)h.n_dims * sizeof(uint64_t);
    if (h.magic != REC_MAGIC || h.n_nodes == 0 || h.total != len || h.data_off < head ||
        h.data_off > len)
        return corrupt(st, "bad header");
    if (((uintptr_t)data & 7) != 0)
        return corrupt(st, "misaligned");
    struct dec dc = {st, data, len, (const struct rec_node *)(data + sizeof(h)), h.n_nodes,
                     (const uint64_t *)(data + sizeof(h) + (uint64_t)h.n_nodes * sizeof(struct rec_node)),
                     h.n_dims, h.data_off, 0, root};
    if (Py_EnterRecursiveCall(" while decoding a shmstore record"))
        return NULL;
    PyObject *o = rec_dec(&dc, 0, 0);
    Py_LeaveRecursiveCall();
    return o;
}

PyObject *dec_value(modstate *st, const shmstore_datum_t *d, const char *data, size_t len,
                    BufferObject *root)
{
    static const size_t fixed[] = {[SHMSTORE_T_INT64] = 8, [SHMSTORE_T_FLOAT64] = 8,
                                   [SHMSTORE_T_COMPLEX128] = 16};
    if (d->type < sizeof(fixed) / sizeof(fixed[0]) && len < fixed[d->type])
        return PyErr_Format(st->CorruptError, "shmstore: a %s datum of %zu bytes",
                            d->type == SHMSTORE_T_COMPLEX128 ? "complex" : "64-bit", len);
    if (d->type == SHMSTORE_T_ARRAY &&
        (d->ndim > SHMSTORE_NDIM_MAX || !extents_ok(shmstore_dtype_itemsize(d->dtype), (int)d->ndim, d->shape)))
        return PyErr_Format(st->CorruptError, "shmstore: array extents out of range");
    switch (d->type) {
    case SHMSTORE_T_NONE:
        Py_RETURN_NONE;
    case SHMSTORE_T_BOOL:
        return PyBool_FromLong(len >= 1 && data[0]);
    case SHMSTORE_T_INT64: {
        int64_t v;
        memcpy(&v, data, 8);
        return PyLong_FromLongLong(v);
    }
    case SHMSTORE_T_FLOAT64: {
        double v;
        memcpy(&v, data, 8);
        return PyFloat_FromDouble(v);
    }
    case SHMSTORE_T_COMPLEX128: {
        double re, im;
        memcpy(&re, data, 8);
        memcpy(&im, data + 8, 8);
        return PyComplex_FromDoubles(re, im);
    }
    case SHMSTORE_T_BYTES:
        if (root && root->ptr == data) /* zero-copy, read-only */
            return PyMemoryView_FromObject((PyObject *)root);
        return dec_bytes(data, len);
    case SHMSTORE_T_STR:
        return PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, "surrogatepass");
    case SHMSTORE_T_ARRAY:
        if (root && root->ptr == data && !root->root) {
            /* The root itself describes the array: one object, one export. */
            if (buffer_set_array(root, d->dtype, (int)d->ndim, d->shape) < 0)
                return corrupt(st, "bad dtype");
            if (shm_numpy(st) < 0)
                return NULL;
            return np_view(st, root, d->dtype, (int)d->ndim, d->shape);
        }
        return dec_array(st, d->dtype, (int)d->ndim, d->shape, data, len, root);
    case SHMSTORE_T_PICKLE:
        return dec_pickle(st, data, len);
    case SHMSTORE_T_RECORD:
        return dec_record(st, data, len, root);
    default:
        PyErr_Format(st->CorruptError, "shmstore: unknown datum type %u", d->type);
        return NULL;
    }
}

/* ---- attrs -------------------------------------------------------------------------------- */

int attrs_encode(PyObject *dict, char **buf, uint32_t *len)
{
    if (!PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "attrs must be a dict of str -> scalar, str or bytes");
        return -1;
    }
    size_t cap = 256;
    char *b = PyMem_Malloc(cap);
    if (!b) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t n = 0;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &k, &v)) {
        const char *key = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        if (!key) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "attrs keys must be str");
            goto fail;
        }
        char tmp[16];
        const void *val = tmp;
        uint32_t vlen = 0;
        shmstore_type_t type;
        if (v == Py_None) {
            type = SHMSTORE_T_NONE;
        } else if (PyBool_Check(v)) {
            type = SHMSTORE_T_BOOL;
            tmp[0] = v == Py_True;
            vlen = 1;
        } else if (PyLong_Check(v)) {
            int64_t x = PyLong_AsLongLong(v);
            if (x == -1 && PyErr_Occurred())
                goto fail;
            type = SHMSTORE_T_INT64;
            memcpy(tmp, &x, 8);
            vlen = 8;
        } else if (PyFloat_Check(v)) {
            double x = PyFloat_AsDouble(v);
            type = SHMSTORE_T_FLOAT64;
            memcpy(tmp, &x, 8);
            vlen = 8;
        } else if (PyComplex_Check(v)) {
            Py_complex c = PyComplex_AsCComplex(v);
            type = SHMSTORE_T_COMPLEX128;
            memcpy(tmp, &c.real, 8);
            memcpy(tmp + 8, &c.imag, 8);
            vlen = 16;
        } else if (PyUnicode_Check(v)) {
            Py_ssize_t sl;
            val = PyUnicode_AsUTF8AndSize(v, &sl);
            if (!val)
                goto fail;
            type = SHMSTORE_T_STR;
            vlen = (uint32_t)sl;
        } else if (PyBytes_Check(v)) {
            type = SHMSTORE_T_BYTES;
            val = PyBytes_AS_STRING(v);
            vlen = (uint32_t)PyBytes_GET_SIZE(v);
        } else {
            PyErr_Format(PyExc_TypeError, "attrs value for '%s' must be None, bool, int, float, "
                         "complex, str or bytes, not %.100s", key, Py_TYPE(v)->tp_name);
            goto fail;
        }
        for (;;) {
            int r = shmstore_attrs_add(b, cap, &n, key, type, val, vlen);
            if (r == 0)
                break;
            if (r != -ENOSPC || cap >= SHMSTORE_ATTRS_MAX) {
                PyErr_Format(PyExc_ValueError, "attrs: cannot add '%s' (%s)", key,
                             r == -ENOSPC ? "more than 64 KiB of attrs" : shmstore_strerror(r));
                goto fail;
            }
            cap *= 2;
            char *nb = PyMem_Realloc(b, cap);
            if (!nb) {
                PyErr_NoMemory();
                goto fail;
            }
            b = nb;
        }
    }
    *buf = b;
    *len = n;
    return 0;
fail:
    PyMem_Free(b);
    return -1;
}

static int attr_cb(const char *key, shmstore_type_t type, const void *val, uint32_t val_len, void *arg)
{
    PyObject *v = NULL;
    const char *p = val;
    switch (type) {
    case SHMSTORE_T_NONE:
        v = Py_NewRef(Py_None);
        break;
    case SHMSTORE_T_BOOL:
        v = PyBool_FromLong(val_len && p[0]);
        break;
    case SHMSTORE_T_INT64: {
        int64_t x = 0;
        if (val_len == 8)
            memcpy(&x, p, 8);
        v = PyLong_FromLongLong(x);
        break;
    }
    case SHMSTORE_T_FLOAT64: {
        double x = 0;
        if (val_len == 8)
            memcpy(&x, p, 8);
        v = PyFloat_FromDouble(x);
        break;
    }
    case SHMSTORE_T_COMPLEX128: {
        double re = 0, im = 0;
        if (val_len == 16) {
            memcpy(&re, p, 8);
            memcpy(&im, p + 8, 8);
        }
        v = PyComplex_FromDoubles(re, im);
        break;
    }
    case SHMSTORE_T_STR:
        v = PyUnicode_DecodeUTF8(p, val_len, "replace");
        break;
    default:
        v = PyBytes_FromStringAndSize(p, val_len);
        break;
    }
    if (!v)
        return PYERR_SET;
    int r = PyDict_SetItemString((PyObject *)arg, key, v);
    Py_DECREF(v);
    return r < 0 ? PYERR_SET : 0;
}

PyObject *attrs_decode(const void *attrs, uint32_t len)
{
    PyObject *d = PyDict_New();
    if (!d || !attrs || !len)
        return d;
    int r = shmstore_attrs_foreach(attrs, len, attr_cb, d);
    if (r < 0) {
        Py_DECREF(d);
        if (r != PYERR_SET)
            PyErr_SetString(PyExc_OSError, "shmstore: attrs are corrupt");
        return NULL;
    }
    return d;
}
