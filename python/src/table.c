/* table.c - Table handles: fixed-record replay buffers (shmstore_table_*).
 *
 * A Table wraps one shmstore_table_t and holds its Store. Records go in and out as dicts
 * keyed by field name. Writing: every value is turned into a C-contiguous numpy array of
 * its field's dtype (an ndarray of another dtype is refused, not cast; Python scalars and
 * lists are converted), and its shape says whether it is one record (the field's shape)
 * or a batch (a leading batch dimension, the same n for every field). Reading: the
 * library gathers straight into new numpy arrays, one per field, so a sample is one copy
 * of each record; copies of GIL_COPY_MIN bytes or more run without the GIL.
 *
 * Indices are the table's: record i is the i-th ever appended (t.total is the next).
 * Negative indices count from t.total; a slice defaults to the records still held.
 *
 * The row API (write_rows, read_rows, sample_rows) is in table_rows.c; table.h holds what
 * the two files share.
 *
 * fork(): like Queues, a Table re-opens itself on the Store's new attachment on first use
 * in a child; pickling (multiprocessing spawn) re-opens it by name.
 */
#include <errno.h>
#include <string.h>

#include "table.h"


/* ---- scalars ---------------------------------------------------------------------------- */

/* Python ints, floats and bools of scalar fields go in and come out without numpy: a
 * record of small fields costs no array per field. Kinds: i, u (1..8 bytes), f (4, 8),
 * b (bool); any other dtype takes the numpy path. */
static int fast_kind(const char *dt, int *size)
{
    char k = dt[0] ? dt[1] : 0;
    if (!k || dt[2] < '1' || dt[2] > '9' || dt[3]) /* one digit of size: no atoi per value */
        return 0;
    int n = dt[2] - '0';
    if (((k == 'i' || k == 'u') && (n == 1 || n == 2 || n == 4 || n == 8)) ||
        (k == 'f' && (n == 4 || n == 8)) || (k == 'b' && n == 1)) {
        *size = n;
        return k;
    }
    return 0;
}

/* Encode `v` as field dtype `dt` into `out` (16 bytes). 1 done, 0 not a fast case (no
 * exception), -1 error (OverflowError / ValueError set). */
static int scalar_in(const char *dt, PyObject *v, unsigned char *out)
{
    int size, kind = fast_kind(dt, &size);
    if (!kind || !(PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyBool_Check(v)))
        return 0;
    if (kind == 'b') {
        int t = PyObject_IsTrue(v);
        out[0] = (unsigned char)(t > 0);
        return t < 0 ? -1 : 1;
    }
    if (kind == 'f') {
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        if (size == 4) {
            float x = (float)d;
            memcpy(out, &x, 4);
        } else {
            memcpy(out, &d, 8);
        }
        return 1;
    }
    if (!PyLong_Check(v))
        return 0; /* a float into an int field: numpy's rules */
    unsigned long long u;
    if (kind == 'i') {
        long long x = PyLong_AsLongLong(v);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (size < 8 && (x < -(1ll << (8 * size - 1)) || x >= (1ll << (8 * size - 1)))) {
            PyErr_Format(PyExc_OverflowError, "%R does not fit a %s field", v, dt);
            return -1;
        }
        u = (unsigned long long)x;
    } else {
        u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        if (size < 8 && u >> (8 * size)) {
            PyErr_Format(PyExc_OverflowError, "%R does not fit a %s field", v, dt);
            return -1;
        }
    }
    memcpy(out, &u, (size_t)size); /* little-endian: the low bytes */
    return 1;
}

/* A Python object for the scalar at `p` of dtype `dt`, or NULL without an exception when
 * it is not a fast kind. */
PyObject *table_scalar_out(const char *dt, const void *p, int *fast)
{
    int size, kind = fast_kind(dt, &size);
    *fast = kind != 0;
    if (!kind)
        return NULL;
    if (kind == 'b')
        return PyBool_FromLong(*(const unsigned char *)p);
    if (kind == 'f') {
        if (size == 4) {
            float x;
            memcpy(&x, p, 4);
            return PyFloat_FromDouble(x);
        }
        double d;
        memcpy(&d, p, 8);
        return PyFloat_FromDouble(d);
    }
    unsigned long long u = 0;
    memcpy(&u, p, (size_t)size);
    if (kind == 'u')
        return PyLong_FromUnsignedLongLong(u);
    int shift = 64 - 8 * size; /* sign-extend */
    return PyLong_FromLongLong(shift ? (long long)(u << shift) >> shift : (long long)u);
}

/* ---- open / ready --------------------------------------------------------------------- */

static int table_reopen(TableObject *h)
{
    if (store_check_open(h->store) < 0)
        return -1;
    const char *cname = name_utf8(h->name);
    shmstore_table_t *t = NULL;
    int r = cname ? shmstore_table_open(h->store->core->s, cname, 0, NULL, &t) : PYERR_SET;
    if (r < 0)
        return shm_raise(h->st, r);
    shmstore_table_close(h->t); /* the inherited handle: only frees its memory */
    h->t = t;
    Py_SETREF(h->core, (CoreObject *)Py_NewRef(h->store->core));
    return 0;
}

int table_ready(TableObject *h)
{
    if (!h->t) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed shmstore.Table");
        return -1;
    }
    return h->core->gen == shm_fork_gen ? 0 : table_reopen(h);
}

/* Errors of reads and writes by index: IndexError for a record the table does not hold,
 * LookupError for an invalid one, BlockingIOError for one being written. */
PyObject *table_raise(TableObject *h, int r)
{
    const char *msg = shmstore_errmsg();
    if (r == -ENOENT)
        PyErr_SetString(PyExc_IndexError, msg);
    else if (r == -ENODATA)
        PyErr_SetString(PyExc_LookupError, msg);
    else if (r == -EBUSY)
        PyErr_SetString(PyExc_BlockingIOError, msg);
    else
        shm_raise(h->st, r);
    return NULL;
}

/* One field spec of `fields`: dtype, or (dtype, shape) with shape an int or a sequence. */
static int parse_field(modstate *st, PyObject *key, PyObject *spec, shmstore_table_field_t *f)
{
    Py_ssize_t nlen;
    const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &nlen) : NULL;
    if (!name) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "table field names must be str");
        return -1;
    }
    if (nlen == 0 || nlen > SHMSTORE_FIELD_NAME_MAX || strlen(name) != (size_t)nlen) {
        PyErr_Format(PyExc_ValueError, "table field name %R: 1..%d bytes of UTF-8, no NUL", key,
                     SHMSTORE_FIELD_NAME_MAX);
        return -1;
    }
    memcpy(f->name, name, (size_t)nlen + 1);
    PyObject *dspec = spec, *shape = NULL;
    if (PyTuple_Check(spec) && PyTuple_GET_SIZE(spec) == 2) {
        dspec = PyTuple_GET_ITEM(spec, 0);
        shape = PyTuple_GET_ITEM(spec, 1);
    }
    PyObject *dt = PyObject_CallMethod(st->np, "dtype", "O", dspec);
    PyObject *str = dt ? PyObject_GetAttrString(dt, "str") : NULL;
    Py_XDECREF(dt);
    const char *ds = str ? PyUnicode_AsUTF8(str) : NULL;
    if (!ds) {
        Py_XDECREF(str);
        return -1;
    }
    if (strlen(ds) >= sizeof f->dtype) {
        PyErr_Format(PyExc_ValueError, "table field '%s': dtype %s is not supported", name, ds);
        Py_DECREF(str);
        return -1;
    }
    strcpy(f->dtype, ds);
    Py_DECREF(str);
    if (!shape || shape == Py_None)
        return 0;
    PyObject *seq = PyLong_Check(shape) ? PyTuple_Pack(1, shape)
                                        : PySequence_Fast(shape, "a field's shape is an int or a "
                                                                 "sequence of ints");
    if (!seq)
        return -1;
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (nd > SHMSTORE_FIELD_NDIM_MAX) {
        PyErr_Format(PyExc_ValueError, "table field '%s': at most %d dimensions", name,
                     SHMSTORE_FIELD_NDIM_MAX);
        rc = -1;
    }
    for (Py_ssize_t d = 0; d < nd && rc == 0; d++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, d));
        if (v == -1 && PyErr_Occurred()) {
            rc = -1;
        } else if (v <= 0) {
            PyErr_Format(PyExc_ValueError, "table field '%s': extents must be positive", name);
            rc = -1;
        }
        f->shape[d] = (uint64_t)v;
    }
    f->ndim = (uint32_t)nd;
    Py_DECREF(seq);
    return rc;
}

/* `fields` (a mapping, in order) as a schema. Returns the number of fields or -1. */
static int parse_fields(modstate *st, PyObject *fields, shmstore_table_field_t *out)
{
    if (!PyDict_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "fields must be a dict: name -> dtype or (dtype, shape)");
        return -1;
    }
    Py_ssize_t pos = 0, n = 0;
    PyObject *k, *v;
    if (PyDict_GET_SIZE(fields) == 0 || PyDict_GET_SIZE(fields) > SHMSTORE_TABLE_FIELDS_MAX) {
        PyErr_Format(PyExc_ValueError, "a table has 1..%d fields", SHMSTORE_TABLE_FIELDS_MAX);
        return -1;
    }
    memset(out, 0, sizeof(*out) * SHMSTORE_TABLE_FIELDS_MAX);
    while (PyDict_Next(fields, &pos, &k, &v))
        if (parse_field(st, k, v, &out[n++]) < 0)
            return -1;
    return (int)n;
}

static int same_schema(const shmstore_table_field_t *a, uint32_t na,
                       const shmstore_table_field_t *b, uint32_t nb)
{
    if (na != nb)
        return 0;
    for (uint32_t i = 0; i < na; i++)
        if (strcmp(a[i].name, b[i].name) || strcmp(a[i].dtype, b[i].dtype) ||
            a[i].ndim != b[i].ndim || memcmp(a[i].shape, b[i].shape, a[i].ndim * sizeof(uint64_t)))
            return 0;
    return 1;
}

/* The buffer format numpy gives arrays of dtype `dt` into `out` (8 bytes; "" when
 * longer: values of that field always take the slow check). */
static int format_of(TableObject *h, PyObject *dt, char *out)
{
    PyObject *a = PyObject_CallFunction(h->st->np_empty, "(i)O", 0, dt);
    Py_buffer b;
    out[0] = 0;
    if (!a)
        return -1;
    if (PyObject_GetBuffer(a, &b, PyBUF_FORMAT | PyBUF_ND) < 0) {
        PyErr_Clear();
    } else {
        if (b.format && strlen(b.format) < 8)
            strcpy(out, b.format);
        PyBuffer_Release(&b);
    }
    Py_DECREF(a);
    return 0;
}

/* Cache the schema of h->t as Python objects. */
static int load_schema(TableObject *h)
{
    const shmstore_table_field_t *f;
    uint32_t n;
    shmstore_table_fields(h->t, &f, &n);
    h->n_fields = n;
    h->fnames = PyTuple_New(n);
    h->dtypes = PyTuple_New(n);
    h->shapes = PyTuple_New(n);
    if (!h->fnames || !h->dtypes || !h->shapes)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *nm = PyUnicode_FromString(f[i].name), *dt = np_dtype_of(h->st, f[i].dtype);
        PyObject *shp = PyTuple_New(f[i].ndim);
        if (!nm || !dt || !shp) {
            Py_XDECREF(nm);
            Py_XDECREF(dt);
            Py_XDECREF(shp);
            return -1;
        }
        for (uint32_t d = 0; d < f[i].ndim; d++) {
            PyObject *e = PyLong_FromUnsignedLongLong(f[i].shape[d]);
            if (!e) {
                Py_DECREF(nm);
                Py_DECREF(dt);
                Py_DECREF(shp);
                return -1;
            }
            PyTuple_SET_ITEM(shp, d, e);
        }
        PyTuple_SET_ITEM(h->fnames, i, nm);
        PyTuple_SET_ITEM(h->dtypes, i, dt);
        PyTuple_SET_ITEM(h->shapes, i, shp);
        h->sizes[i] = f[i].size;
        memcpy(h->dt[i], f[i].dtype, sizeof h->dt[i]);
        h->ndim[i] = f[i].ndim;
        memcpy(h->shape[i], f[i].shape, sizeof h->shape[i]);
        if (format_of(h, dt, h->fmt[i]) < 0)
            return -1;
    }
    h->np_generic = PyObject_GetAttrString(h->st->np, "generic");
    h->u8 = np_dtype_of(h->st, "<u8");
    h->f8 = np_dtype_of(h->st, "<f8");
    return h->np_generic && h->u8 && h->f8 ? 0 : -1;
}

PyObject *table_open_args(StoreObject *store, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "fields", "capacity", "prioritized", "create", "exclusive",
                             NULL};
    PyObject *name, *fields = Py_None, *cap = Py_None;
    int prio = 0, create = 1, excl = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|$OOppp:table", kwlist, &name, &fields, &cap,
                                     &prio, &create, &excl))
        return NULL;
    modstate *st = store->st;
    shmstore_table_field_t f[SHMSTORE_TABLE_FIELDS_MAX];
    shmstore_table_options_t o = {0};
    int nf = 0;
    if (fields != Py_None) {
        if (shm_numpy(st) < 0 || (nf = parse_fields(st, fields, f)) < 0)
            return NULL;
        if (cap == Py_None) {
            PyErr_SetString(PyExc_ValueError, "a table is created with fields and a capacity");
            return NULL;
        }
        long long c = PyLong_AsLongLong(cap);
        if (c == -1 && PyErr_Occurred())
            return NULL;
        if (c <= 0) {
            PyErr_SetString(PyExc_ValueError, "capacity must be a positive int");
            return NULL;
        }
        o = (shmstore_table_options_t){.capacity = (uint64_t)c, .n_fields = (uint32_t)nf,
                                       .flags = prio ? SHMSTORE_TABLE_PRIORITIZED : 0,
                                       .fields = f};
    } else if (excl) {
        PyErr_SetString(PyExc_ValueError, "exclusive=True needs fields and a capacity");
        return NULL;
    }
    if (excl && !create) {
        PyErr_SetString(PyExc_ValueError, "exclusive=True needs create=True");
        return NULL;
    }
    const char *cname = name_utf8(name);
    if (!cname || store_check_open(store) < 0 || shm_numpy(st) < 0)
        return NULL;
    shmstore_table_t *t = NULL;
    unsigned flags = (create && nf ? SHMSTORE_T_CREATE : 0) | (excl ? SHMSTORE_T_EXCL : 0);
    int r = shmstore_table_open(store->core->s, cname, flags, nf ? &o : NULL, &t);
    if (r < 0)
        return shm_raise(st, r), NULL;
    TableObject *h = (TableObject *)st->Table_type->tp_alloc(st->Table_type, 0);
    if (!h) {
        shmstore_table_close(t);
        return NULL;
    }
    h->t = t;
    h->core = (CoreObject *)Py_NewRef(store->core);
    h->store = (StoreObject *)Py_NewRef(store);
    h->name = Py_NewRef(name);
    h->st = st;
    const shmstore_table_field_t *have;
    uint32_t nh;
    shmstore_table_fields(t, &have, &nh);
    shmstore_obj_info_t info;
    if ((r = shmstore_table_info(t, &info)) < 0) {
        Py_DECREF(h);
        return shm_raise(st, r), NULL;
    }
    h->prioritized = (int)info.is_prioritized;
    if (nf && !same_schema(f, (uint32_t)nf, have, nh)) {
        PyErr_Format(PyExc_ValueError, "table '%U' exists with another schema (open it with "
                     "fields=None to use its own)", name);
        Py_DECREF(h);
        return NULL;
    }
    if (load_schema(h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *t_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    modstate *st = shm_state_of(shm_module_of_type(type));
    if (PyTuple_GET_SIZE(args) < 1 || !PyObject_TypeCheck(PyTuple_GET_ITEM(args, 0), st->Store_type)) {
        PyErr_SetString(PyExc_TypeError, "Table(store, name, ...): the first argument must be a "
                        "shmstore.Store (or use store.table(name, ...))");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (!rest)
        return NULL;
    PyObject *h = table_open_args((StoreObject *)PyTuple_GET_ITEM(args, 0), rest, kw);
    Py_DECREF(rest);
    return h;
}

/* ---- columns in ----------------------------------------------------------------------- */

struct cols_in {
    Py_buffer buf[SHMSTORE_TABLE_FIELDS_MAX];
    const void *ptr[SHMSTORE_TABLE_FIELDS_MAX];
    unsigned char has_buf[SHMSTORE_TABLE_FIELDS_MAX];
    _Alignas(16) unsigned char scratch[SHMSTORE_TABLE_FIELDS_MAX][16]; /* fast scalars */
    size_t n;     /* records */
    size_t bytes; /* in all */
};

static void cols_in_free(struct cols_in *c)
{
    for (uint32_t i = 0; i < SHMSTORE_TABLE_FIELDS_MAX; i++)
        if (c->has_buf[i]) {
            PyBuffer_Release(&c->buf[i]);
            c->has_buf[i] = 0;
        }
}

static PyObject *shape_str(TableObject *h, uint32_t f)
{
    return PyObject_Repr(PyTuple_GET_ITEM(h->shapes, f));
}

static uint64_t shape_elems(TableObject *h, uint32_t f)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < h->ndim[f]; d++)
        n *= h->shape[f][d];
    return n;
}


/* A buffer of `v` whose format is exactly field f's (numpy arrays and scalars of its
 * dtype, C-contiguous): 1 with *b filled, 0 when `v` needs the full check (nothing
 * held, no exception). */
static int value_fast(TableObject *h, uint32_t f, PyObject *v, Py_buffer *b)
{
    modstate *st = h->st;
    if (!h->fmt[f][0] || !(PyObject_TypeCheck(v, (PyTypeObject *)st->ndarray) ||
                           PyObject_TypeCheck(v, (PyTypeObject *)h->np_generic)))
        return 0;
    if (PyObject_GetBuffer(v, b, PyBUF_ND | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (b->format && strcmp(b->format, h->fmt[f]) == 0 &&
        b->itemsize == (Py_ssize_t)(h->sizes[f] / shape_elems(h, f)))
        return 1;
    PyBuffer_Release(b);
    return 0;
}

/* Field f's value `v` of a write: a Python scalar of a scalar field into `scratch` (16
 * bytes), else a buffer held in *buf (*has_buf = 1; release it after). Arrays must have
 * the field's dtype (LayoutError), other values are converted; the shape is the
 * field's, or (allow_batch) a batch of them. 0, or -1 with an exception. */
int table_value_in(TableObject *h, uint32_t f, PyObject *v, int allow_batch,
                    unsigned char *scratch, Py_buffer *buf, unsigned char *has_buf,
                    struct val_in *o)
{
    modstate *st = h->st;
    PyObject *key = PyTuple_GET_ITEM(h->fnames, f), *dt = PyTuple_GET_ITEM(h->dtypes, f);
    int fast = h->ndim[f] == 0 ? scalar_in(h->dt[f], v, scratch) : 0;
    if (fast < 0)
        return -1;
    if (fast) { /* one record's scalar, no array */
        *o = (struct val_in){.ptr = scratch, .n = 1, .is_batch = 0, .bytes = h->sizes[f]};
        return 0;
    }
    int gr = value_fast(h, f, v, buf) ? 0 : -1;
    if (gr < 0) {
        PyObject *arr;
        if (PyObject_TypeCheck(v, (PyTypeObject *)st->ndarray)) {
            PyObject *vdt = PyObject_GetAttrString(v, "dtype");
            int eq = vdt ? PyObject_RichCompareBool(vdt, dt, Py_EQ) : -1;
            if (eq == 0)
                PyErr_Format(st->LayoutError, "field %R of table '%U' is %S, not %S", key, h->name,
                             dt, vdt);
            Py_XDECREF(vdt);
            if (eq <= 0)
                return -1;
            arr = Py_NewRef(v);
        } else {
            arr = PyObject_CallFunctionObjArgs(st->np_asarray, v, dt, NULL);
        }
        if (!arr)
            return -1;
        gr = PyObject_GetBuffer(arr, buf, PyBUF_ND | PyBUF_C_CONTIGUOUS);
        if (gr < 0) {
            /* Not contiguous: a copy that is (never for 0-d arrays, which are, and which
             * ascontiguousarray would make 1-d). */
            PyErr_Clear();
            PyObject *a2 = PyObject_CallOneArg(st->np_ascontig, arr);
            Py_SETREF(arr, a2);
            gr = arr ? PyObject_GetBuffer(arr, buf, PyBUF_ND | PyBUF_C_CONTIGUOUS) : -1;
        }
        Py_XDECREF(arr); /* the buffer holds the array */
        if (gr < 0)
            return -1;
    }
    *has_buf = 1;
    Py_ssize_t nd = (Py_ssize_t)h->ndim[f];
    int is_batch = buf->ndim == nd + 1;
    int ok = buf->ndim == nd || (is_batch && allow_batch);
    for (Py_ssize_t d = 0; ok && d < nd; d++)
        ok = (uint64_t)buf->shape[d + is_batch] == h->shape[f][d];
    if (!ok) {
        PyObject *want = shape_str(h, f), *got = PyTuple_New(buf->ndim);
        for (int d = 0; got && d < buf->ndim; d++)
            PyTuple_SET_ITEM(got, d, PyLong_FromSsize_t(buf->shape[d]));
        if (want && got)
            PyErr_Format(st->LayoutError, "field %R of table '%U' has shape %S (or a batch of "
                         "them%s); got shape %S", key, h->name, want,
                         allow_batch ? "" : ", not here", got);
        Py_XDECREF(want);
        Py_XDECREF(got);
        PyBuffer_Release(buf);
        *has_buf = 0;
        return -1;
    }
    *o = (struct val_in){.ptr = buf->buf, .n = is_batch ? (size_t)buf->shape[0] : 1,
                         .is_batch = is_batch, .bytes = (size_t)buf->len};
    return 0;
}

/* A dict of field values (one record, or a batch with a leading dimension) as columns.
 * `single`: only one record is allowed. 0, or -1 with ValueError/TypeError/LayoutError
 * (nothing is written then). */
static int cols_in_get(TableObject *h, PyObject *rec, int single, struct cols_in *c)
{
    modstate *st = h->st;
    memset(c, 0, sizeof(*c));
    if (!PyDict_Check(rec)) {
        PyErr_Format(PyExc_TypeError, "a record is a dict of field values, not %.100s",
                     Py_TYPE(rec)->tp_name);
        return -1;
    }
    if (PyDict_GET_SIZE(rec) != (Py_ssize_t)h->n_fields) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(rec, &pos, &k, &v)) {
            int has = PySequence_Contains(h->fnames, k);
            if (has <= 0) {
                if (has == 0)
                    PyErr_Format(PyExc_ValueError, "table '%U' has no field %R (fields: %R)",
                                 h->name, k, h->fnames);
                return -1;
            }
        }
    }
    int batch = -1; /* unknown yet */
    for (uint32_t f = 0; f < h->n_fields; f++) {
        PyObject *key = PyTuple_GET_ITEM(h->fnames, f);
        PyObject *v = PyDict_GetItemWithError(rec, key);
        if (!v) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "the record lacks field %R of table '%U'", key,
                             h->name);
            goto fail;
        }
        struct val_in o;
        if (table_value_in(h, f, v, !single && batch != 0, c->scratch[f], &c->buf[f], &c->has_buf[f],
                     &o) < 0)
            goto fail;
        if (batch >= 0 && (batch != o.is_batch || o.n != c->n)) {
            PyErr_Format(st->LayoutError, "field %R of table '%U': a batch of %zu records, "
                         "the other fields %s %zu", key, h->name, o.n,
                         batch ? "a batch of" : "one record, not", c->n);
            goto fail;
        }
        batch = o.is_batch;
        c->n = o.n;
        c->ptr[f] = o.ptr;
        c->bytes += o.bytes;
    }
    if (c->n == 0) {
        PyErr_SetString(PyExc_ValueError, "an empty batch");
        goto fail;
    }
    return 0;
fail:
    cols_in_free(c);
    return -1;
}

/* ---- columns out ---------------------------------------------------------------------- */


void table_cols_out_free(struct cols_out *c)
{
    for (uint32_t i = 0; i < c->n_arr; i++) {
        PyBuffer_Release(&c->buf[i]);
        Py_DECREF(c->arr[i]);
    }
    c->n_arr = 0;
}

/* An array of k rows for column `col` into c: the pooled one when only the pool refers
 * to it (then nobody can see it change: the caller dropped the last result, and no view,
 * memoryview or other consumer of its buffer exists, as each holds a reference) and it
 * has k rows; else a new one, which the pool keeps. Reusing it saves more than the
 * allocation: glibc gives blocks of ~1 MB back to the kernel when they are freed, so a
 * new array of a batch of frames page-faults all over again on every call. */
static int out_array(TableObject *h, struct cols_out *c, uint32_t col, size_t k,
                     PyObject *shape, PyObject *dt)
{
    PyObject *old = h->pool[col];
    if (old && Py_REFCNT(old) == 1 &&
        PyObject_GetBuffer(old, &c->buf[c->n_arr], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) == 0) {
        if (c->buf[c->n_arr].ndim >= 1 && (size_t)c->buf[c->n_arr].shape[0] == k) {
            c->arr[c->n_arr++] = Py_NewRef(old);
            return 0;
        }
        PyBuffer_Release(&c->buf[c->n_arr]);
    }
    PyErr_Clear();
    modstate *st = h->st;
    PyObject *full = PyTuple_New(1 + (shape ? PyTuple_GET_SIZE(shape) : 0));
    if (!full)
        return -1;
    PyTuple_SET_ITEM(full, 0, PyLong_FromSize_t(k));
    for (Py_ssize_t d = 0; shape && d < PyTuple_GET_SIZE(shape); d++)
        PyTuple_SET_ITEM(full, d + 1, Py_NewRef(PyTuple_GET_ITEM(shape, d)));
    PyObject *a = PyObject_CallFunctionObjArgs(st->np_empty, full, dt, NULL);
    Py_DECREF(full);
    if (!a)
        return -1;
    if (PyObject_GetBuffer(a, &c->buf[c->n_arr], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(a);
        return -1;
    }
    Py_XSETREF(h->pool[col], Py_NewRef(a));
    c->arr[c->n_arr++] = a;
    return 0;
}

/* New arrays for k records of every field, and (with_index / with_prob) for their
 * indices and probabilities. */
int table_cols_out_new(TableObject *h, size_t k, int with_index, int with_prob,
                        struct cols_out *c)
{
    memset(c, 0, sizeof(*c));
    for (uint32_t f = 0; f < h->n_fields; f++) {
        if (out_array(h, c, f, k, PyTuple_GET_ITEM(h->shapes, f), PyTuple_GET_ITEM(h->dtypes, f)) < 0)
            goto fail;
        c->ptr[f] = c->buf[f].buf;
        c->bytes += (size_t)c->buf[f].len;
    }
    if ((with_index && out_array(h, c, h->n_fields, k, NULL, h->u8) < 0) ||
        (with_prob && out_array(h, c, h->n_fields + 1, k, NULL, h->f8) < 0))
        goto fail;
    return 0;
fail:
    table_cols_out_free(c);
    return -1;
}

/* The arrays as a dict (the buffers are released; the dict owns the arrays). `row0`:
 * one record: each field's value instead of a batch of one. */
static PyObject *cols_out_dict(TableObject *h, struct cols_out *c, int row0)
{
    static const char *const extra[] = {"index", "probability"};
    PyObject *d = PyDict_New();
    for (uint32_t i = 0; d && i < c->n_arr; i++) {
        PyObject *key = i < h->n_fields ? Py_NewRef(PyTuple_GET_ITEM(h->fnames, i))
                                        : PyUnicode_FromString(extra[i - h->n_fields]);
        int fast = 0;
        PyObject *val = NULL;
        if (row0 && i < h->n_fields && c->buf[i].ndim == 1) /* a scalar field's one value */
            val = table_scalar_out(h->dt[i], c->buf[i].buf, &fast);
        if (!fast)
            val = row0 ? PySequence_GetItem(c->arr[i], 0) : Py_NewRef(c->arr[i]);
        if (!key || !val || PyDict_SetItem(d, key, val) < 0)
            Py_CLEAR(d);
        Py_XDECREF(key);
        Py_XDECREF(val);
    }
    table_cols_out_free(c);
    return d;
}

/* ---- calls ---------------------------------------------------------------------------- */


PyDoc_STRVAR(t_append_doc,
"append(record) -> int\n--\n\n"
"Append one record (a dict: field -> value) or a batch (a dict: field -> array with a\n"
"leading batch dimension, the same length for every field) and return the index of\n"
"the first. Once the table is full the oldest records are overwritten. Arrays must have\n"
"their field's dtype (LayoutError otherwise); scalars and lists are converted. A record\n"
"that lacks a field or has a wrong shape raises and writes nothing. Never blocks on a\n"
"reader.");

static PyObject *t_append(PyObject *self, PyObject *rec)
{
    TableObject *h = TSELF;
    struct cols_in c;
    if (table_ready(h) < 0 || cols_in_get(h, rec, 0, &c) < 0)
        return NULL;
    uint64_t first = 0;
    int r;
    TABLE_CALL(h, c.bytes, r, shmstore_table_append(t_, c.ptr, c.n, &first));
    cols_in_free(&c);
    if (r < 0)
        return table_raise(h, r);
    return PyLong_FromUnsignedLongLong(first);
}

static int table_total(TableObject *h, uint64_t *total, uint64_t *count)
{
    int r = shmstore_table_count(h->t, total, count);
    return r < 0 ? shm_raise(h->st, r) : 0;
}

/* A Python index (negative: from t.total) as a table index. */
int table_index_of(TableObject *h, PyObject *key, uint64_t *out)
{
    long long i = PyLong_AsLongLong(key);
    uint64_t total;
    if ((i == -1 && PyErr_Occurred()) || table_total(h, &total, NULL) < 0)
        return -1;
    if (i < 0 && (uint64_t)(-i) > total) {
        PyErr_Format(PyExc_IndexError, "table '%U': index %lld (%llu records appended)", h->name,
                     i, (unsigned long long)total);
        return -1;
    }
    *out = i < 0 ? total - (uint64_t)(-i) : (uint64_t)i;
    return 0;
}

static PyObject *gather_list(TableObject *h, const uint64_t *idx, size_t n, int with_index);

static PyObject *t_getitem(PyObject *self, PyObject *key)
{
    TableObject *h = TSELF;
    if (table_ready(h) < 0)
        return NULL;
    if (PySlice_Check(key)) {
        uint64_t total, count;
        Py_ssize_t start, stop, step;
        if (table_total(h, &total, &count) < 0 || PySlice_Unpack(key, &start, &stop, &step) < 0)
            return NULL;
        PyObject *s0 = ((PySliceObject *)key)->start, *s1 = ((PySliceObject *)key)->stop;
        uint64_t cap = shmstore_table_capacity(h->t), oldest = total > cap ? total - cap : 0;
        /* Defaults: the records still held. Negative bounds count from t.total. */
        int64_t a = s0 == Py_None ? (int64_t)oldest : start < 0 ? (int64_t)total + start : start;
        int64_t b = s1 == Py_None ? (int64_t)total : stop < 0 ? (int64_t)total + stop : stop;
        if (step <= 0) {
            PyErr_SetString(PyExc_ValueError, "table slices go forward (step >= 1)");
            return NULL;
        }
        if (a < 0)
            a = 0;
        size_t n = b > a ? (size_t)((b - a + step - 1) / step) : 0;
        uint64_t *idx = PyMem_New(uint64_t, n ? n : 1);
        if (!idx)
            return PyErr_NoMemory();
        for (size_t j = 0; j < n; j++)
            idx[j] = (uint64_t)a + j * (uint64_t)step;
        PyObject *out = gather_list(h, idx, n, 0);
        PyMem_Free(idx);
        return out;
    }
    uint64_t i;
    if (table_index_of(h, key, &i) < 0)
        return NULL;
    struct cols_out c;
    if (table_cols_out_new(h, 1, 0, 0, &c) < 0)
        return NULL;
    int r;
    TABLE_CALL(h, c.bytes, r, shmstore_table_get(t_, i, c.ptr));
    if (r < 0) {
        table_cols_out_free(&c);
        return table_raise(h, r);
    }
    return cols_out_dict(h, &c, 1);
}

static int t_setitem(PyObject *self, PyObject *key, PyObject *rec)
{
    TableObject *h = TSELF;
    uint64_t i;
    struct cols_in c;
    if (!rec) {
        PyErr_SetString(PyExc_TypeError, "table records cannot be deleted (they are overwritten)");
        return -1;
    }
    int is_slice = PySlice_Check(key);
    PyObject *stop = Py_None;
    if (is_slice) { /* t[i:j] = batch: consecutive records, step 1 */
        PySliceObject *sl = (PySliceObject *)key;
        if (sl->start == Py_None || (sl->step != Py_None && PyLong_AsLong(sl->step) != 1)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "t[i:j] = batch needs a start and step 1");
            return -1;
        }
        key = sl->start;
        stop = sl->stop;
    }
    if (table_ready(h) < 0 || table_index_of(h, key, &i) < 0 || cols_in_get(h, rec, !is_slice, &c) < 0)
        return -1;
    if (is_slice && stop != Py_None) {
        uint64_t j;
        if (table_index_of(h, stop, &j) < 0 || j - i != c.n) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "t[i:j] = batch: the batch has %zu records",
                             c.n);
            cols_in_free(&c);
            return -1;
        }
    }
    int r;
    TABLE_CALL(h, c.bytes, r, shmstore_table_write(t_, i, c.n, c.ptr));
    cols_in_free(&c);
    return r < 0 ? (table_raise(h, r), -1) : 0;
}

static PyObject *gather_list(TableObject *h, const uint64_t *idx, size_t n, int with_index)
{
    struct cols_out c;
    if (table_cols_out_new(h, n, with_index, 0, &c) < 0)
        return NULL;
    int r;
    uint64_t failed = 0;
    TABLE_CALL(h, c.bytes, r, shmstore_table_gather(t_, idx, n, c.ptr, &failed));
    if (r < 0) {
        table_cols_out_free(&c);
        return table_raise(h, r);
    }
    if (with_index)
        memcpy(c.buf[h->n_fields].buf, idx, n * sizeof(uint64_t));
    return cols_out_dict(h, &c, 0);
}

/* A sequence of ints (negative: from t.total) as table indices; PyMem_Free the result. */
uint64_t *table_indices_of(TableObject *h, PyObject *seq, size_t *n)
{
    PyObject *fast = PySequence_Fast(seq, "indices must be a sequence of ints");
    if (!fast)
        return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    uint64_t *idx = PyMem_New(uint64_t, k ? k : 1);
    if (!idx) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *o = PyNumber_Index(PySequence_Fast_GET_ITEM(fast, j));
        int bad = !o || table_index_of(h, o, &idx[j]) < 0;
        Py_XDECREF(o);
        if (bad) {
            PyMem_Free(idx);
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    *n = (size_t)k;
    return idx;
}

PyDoc_STRVAR(t_gather_doc,
"gather(indices) -> dict\n--\n\n"
"The records at `indices` (ints; negative count from t.total), each field as one array\n"
"with a leading dimension, plus 'index'. Raises IndexError when the table does not hold\n"
"one (not appended yet, or overwritten), LookupError when one is invalid (its writer\n"
"died writing it), BlockingIOError when one stays being written.");

static PyObject *t_gather(PyObject *self, PyObject *seq)
{
    TableObject *h = TSELF;
    size_t n;
    if (table_ready(h) < 0)
        return NULL;
    uint64_t *idx = table_indices_of(h, seq, &n);
    if (!idx)
        return NULL;
    PyObject *out = gather_list(h, idx, n, 1);
    PyMem_Free(idx);
    return out;
}

/* The PRNG state of sample(rng=...): None = the handle's own; an int seeds it; an object
 * with integers() (numpy Generator) or getrandbits() (random.Random) draws the seed. */
int table_rng_of(PyObject *rng, uint64_t *state, int *has)
{
    *has = 0;
    if (rng == Py_None)
        return 0;
    PyObject *v;
    if (PyLong_Check(rng))
        v = Py_NewRef(rng);
    else if (PyObject_HasAttrString(rng, "integers"))
        v = PyObject_CallMethod(rng, "integers", "iK", 0, (unsigned long long)(1ull << 63));
    else if (PyObject_HasAttrString(rng, "getrandbits"))
        v = PyObject_CallMethod(rng, "getrandbits", "i", 64);
    else {
        PyErr_SetString(PyExc_TypeError, "rng must be None, an int seed, a numpy Generator or "
                        "a random.Random");
        return -1;
    }
    PyObject *i = v ? PyNumber_Index(v) : NULL;
    Py_XDECREF(v);
    if (!i)
        return -1;
    *state = PyLong_AsUnsignedLongLongMask(i);
    Py_DECREF(i);
    *has = 1;
    return PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(t_sample_doc,
"sample(k, *, prioritized=False, rng=None) -> dict\n--\n\n"
"Draw k records with replacement (as random.choices: k may exceed len(t)) and return\n"
"each field as one array of k rows, plus 'index' (uint64) and, when prioritized,\n"
"'probability' (each draw's probability, for importance weights). Uniform over the\n"
"valid records, or in proportion to their priorities (a table made with\n"
"prioritized=True). Records being written or invalid are never returned. rng: None\n"
"(the handle's own generator), an int seed, a numpy Generator or a random.Random.\n"
"Raises IndexError when the table holds no record (or every priority is 0).");

static PyObject *t_sample(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"k", "prioritized", "rng", NULL};
    Py_ssize_t k;
    int prio = 0, has_rng;
    PyObject *rng = Py_None;
    uint64_t state = 0;
    TableObject *h = TSELF;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|$pO:sample", kwlist, &k, &prio, &rng) ||
        table_ready(h) < 0 || table_rng_of(rng, &state, &has_rng) < 0)
        return NULL;
    if (k < 0) {
        PyErr_SetString(PyExc_ValueError, "k must be >= 0");
        return NULL;
    }
    struct cols_out c;
    if (table_cols_out_new(h, (size_t)k, 1, prio, &c) < 0)
        return NULL;
    int r;
    uint64_t *idx = c.buf[h->n_fields].buf;
    double *pr = prio ? c.buf[h->n_fields + 1].buf : NULL;
    TABLE_CALL(h, c.bytes, r,
               shmstore_table_sample(t_, (size_t)k, prio ? SHMSTORE_SAMPLE_PRIORITIZED : 0,
                                     has_rng ? &state : NULL, c.ptr, idx, pr));
    if (r < 0) {
        table_cols_out_free(&c);
        return table_raise(h, r);
    }
    return cols_out_dict(h, &c, 0);
}

PyDoc_STRVAR(t_advance_doc,
"advance(n) -> int\n--\n\n"
"Take the next n indices without writing their records and return the first: they\n"
"read as not written yet (IndexError) and are not sampled until t[i] = record fills\n"
"them. A fixed array of records: advance(t.capacity) once, then write any index.");

static PyObject *t_advance(PyObject *self, PyObject *arg)
{
    TableObject *h = TSELF;
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    uint64_t first;
    if ((n == (unsigned long long)-1 && PyErr_Occurred()) || table_ready(h) < 0)
        return NULL;
    int r = shmstore_table_advance(h->t, n, &first);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    return PyLong_FromUnsignedLongLong(first);
}

PyDoc_STRVAR(t_set_priorities_doc,
"set_priorities(indices, values)\n--\n\n"
"Set the priorities of the records at `indices` (values >= 0, at most\n"
"t.priority_max; resolution 2**-24) in a table made with prioritized=True. Lock-free;\n"
"indices no longer held are skipped. ValueError for a bad value (nothing is set).");

static PyObject *t_set_priorities(PyObject *self, PyObject *args)
{
    PyObject *ind, *vals;
    TableObject *h = TSELF;
    size_t n;
    if (!PyArg_ParseTuple(args, "OO:set_priorities", &ind, &vals) || table_ready(h) < 0)
        return NULL;
    uint64_t *idx = table_indices_of(h, ind, &n);
    if (!idx)
        return NULL;
    PyObject *fast = PySequence_Fast(vals, "values must be a sequence of numbers");
    double *p = fast ? PyMem_New(double, n ? n : 1) : NULL;
    int ok = p && (size_t)PySequence_Fast_GET_SIZE(fast) == n;
    if (p && !ok)
        PyErr_SetString(PyExc_ValueError, "as many values as indices");
    for (size_t j = 0; ok && j < n; j++) {
        p[j] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, (Py_ssize_t)j));
        ok = !(p[j] == -1.0 && PyErr_Occurred());
    }
    int r = ok ? shmstore_table_set_priorities(h->t, idx, p, n) : 0;
    PyMem_Free(idx);
    PyMem_Free(p);
    Py_XDECREF(fast);
    if (!ok)
        return NULL;
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    Py_RETURN_NONE;
}

/* ---- properties, life cycle ------------------------------------------------------------- */

static Py_ssize_t t_len(PyObject *self)
{
    uint64_t count;
    if (table_ready(TSELF) < 0 || table_total(TSELF, NULL, &count) < 0)
        return -1;
    return (Py_ssize_t)count;
}

static PyObject *t_get_total(PyObject *self, void *c)
{
    (void)c;
    uint64_t total;
    if (table_ready(TSELF) < 0 || table_total(TSELF, &total, NULL) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(total);
}

static PyObject *t_get_capacity(PyObject *self, void *c)
{
    (void)c;
    if (table_ready(TSELF) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(shmstore_table_capacity(TSELF->t));
}

static PyObject *t_get_fields(PyObject *self, void *c)
{
    (void)c;
    PyObject *d = PyDict_New();
    for (uint32_t i = 0; d && i < TSELF->n_fields; i++) {
        PyObject *v = PyTuple_Pack(2, PyTuple_GET_ITEM(TSELF->dtypes, i),
                                   PyTuple_GET_ITEM(TSELF->shapes, i));
        if (!v || PyDict_SetItem(d, PyTuple_GET_ITEM(TSELF->fnames, i), v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *t_get_name(PyObject *self, void *c)
{
    (void)c;
    return Py_NewRef(TSELF->name);
}

static PyObject *t_get_prioritized(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(TSELF->prioritized);
}

static PyObject *t_get_priority_max(PyObject *self, void *c)
{
    (void)c;
    if (table_ready(TSELF) < 0)
        return NULL;
    return PyFloat_FromDouble(shmstore_table_priority_max(TSELF->t));
}

static PyObject *t_get_closed(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(TSELF->t == NULL);
}

static PyObject *t_info(PyObject *self, PyObject *unused)
{
    (void)unused;
    shmstore_obj_info_t info;
    if (table_ready(TSELF) < 0)
        return NULL;
    int r = shmstore_table_info(TSELF->t, &info);
    return r < 0 ? (shm_raise(TSELF->st, r), NULL) : obj_info_dict(&info);
}

static void table_close_now(TableObject *h)
{
    if (h->t) {
        shmstore_table_close(h->t);
        h->t = NULL;
    }
}

static PyObject *t_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (TSELF->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot close a Table while another thread uses it");
        return NULL;
    }
    table_close_now(TSELF);
    Py_RETURN_NONE;
}

static PyObject *t_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *t_exit(PyObject *self, PyObject *args)
{
    (void)args;
    if (!TSELF->busy)
        table_close_now(TSELF);
    Py_RETURN_FALSE;
}

static PyObject *t_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    /* Pickled as "this store's table of this name" (multiprocessing spawn). */
    PyObject *meth = PyObject_GetAttrString((PyObject *)TSELF->store, "table");
    if (!meth)
        return NULL;
    return Py_BuildValue("(N(O))", meth, TSELF->name);
}

static PyObject *t_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<shmstore.Table %R%s>", TSELF->name, TSELF->t ? "" : " closed");
}

static int t_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(TSELF->core);
    Py_VISIT(TSELF->store);
    return 0;
}

static int t_clear(PyObject *self)
{
    if (TSELF->busy)
        return 0;
    table_close_now(TSELF);
    Py_CLEAR(TSELF->store);
    Py_CLEAR(TSELF->core);
    return 0;
}

static void t_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    table_close_now(TSELF);
    Py_CLEAR(TSELF->core);
    Py_CLEAR(TSELF->store);
    Py_CLEAR(TSELF->name);
    Py_CLEAR(TSELF->fnames);
    Py_CLEAR(TSELF->dtypes);
    Py_CLEAR(TSELF->shapes);
    Py_CLEAR(TSELF->np_generic);
    Py_CLEAR(TSELF->u8);
    Py_CLEAR(TSELF->f8);
    Py_CLEAR(TSELF->items_key);
    PyMem_Free(TSELF->zeros);
    for (uint32_t i = 0; i < SHMSTORE_TABLE_FIELDS_MAX + 2; i++)
        Py_CLEAR(TSELF->pool[i]);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef t_methods[] = {
    {"append", t_append, METH_O, t_append_doc},
    {"gather", t_gather, METH_O, t_gather_doc},
    {"write_rows", METH(table_write_rows), METH_VARARGS | METH_KEYWORDS, table_write_rows_doc},
    {"read_rows", METH(table_read_rows), METH_VARARGS | METH_KEYWORDS, table_read_rows_doc},
    {"sample_rows", METH(table_sample_rows), METH_VARARGS | METH_KEYWORDS, table_sample_rows_doc},
    {"sample", METH(t_sample), METH_VARARGS | METH_KEYWORDS, t_sample_doc},
    {"set_priorities", t_set_priorities, METH_VARARGS, t_set_priorities_doc},
    {"advance", t_advance, METH_O, t_advance_doc},
    {"info", t_info, METH_NOARGS, "info() -> dict\n--\n\nThe table as shmstore.Store.info()."},
    {"close", t_close, METH_NOARGS, "close()\n--\n\nClose the handle. Idempotent."},
    {"__enter__", t_enter, METH_NOARGS, NULL},
    {"__exit__", t_exit, METH_VARARGS, NULL},
    {"__reduce__", t_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef t_getset[] = {
    {"name", t_get_name, NULL, "The table's name.", NULL},
    {"total", t_get_total, NULL, "Records ever appended (the next append's index).", NULL},
    {"capacity", t_get_capacity, NULL, "Records the table holds at most.", NULL},
    {"fields", t_get_fields, NULL, "The schema: dict name -> (numpy dtype, shape).", NULL},
    {"prioritized", t_get_prioritized, NULL, "Made with per-record priorities.", NULL},
    {"priority_max", t_get_priority_max, NULL, "The largest priority accepted.", NULL},
    {"closed", t_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(t_doc,
"Table(store, name, *, fields=None, capacity=None, prioritized=False, create=True,\n"
"      exclusive=False)\n--\n\n"
"A fixed-record replay buffer in a store, shared by every process that opens it: a ring\n"
"of `capacity` records of a fixed schema (fields: dict name -> dtype or (dtype, shape)).\n"
"Writers append concurrently (t.append(record or batch) -> first index); readers get\n"
"records by index (t[i], t[i:j], t.gather(indices)) or sample batches (t.sample(k)),\n"
"each field gathered into one array. Every record has its own seqlock: readers never\n"
"block writers and never see a torn record; a writer killed mid-record leaves that\n"
"record invalid, never a stuck table. len(t) is the number of valid records. The same\n"
"as store.table(name, ...); an existing table is opened with fields=None.");

static PyType_Slot t_slots[] = {
    {Py_tp_new, t_new},
    {Py_tp_dealloc, t_dealloc},
    {Py_tp_traverse, t_traverse},
    {Py_tp_clear, t_clear},
    {Py_tp_repr, t_repr},
    {Py_tp_methods, t_methods},
    {Py_tp_getset, t_getset},
    {Py_sq_length, t_len},
    {Py_mp_length, t_len},
    {Py_mp_subscript, t_getitem},
    {Py_mp_ass_subscript, t_setitem},
    {Py_tp_doc, (void *)t_doc},
    {0, NULL},
};

PyType_Spec Table_spec = {
    .name = "shmstore.Table",
    .basicsize = sizeof(TableObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_HAVE_GC,
    .slots = t_slots,
};
