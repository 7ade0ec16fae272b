/* table_rows.c - shmstore.Table's row API: records as tuples (namedtuples, lists).
 *
 * write_rows(indices, rows, items, flags) takes many records in one call, each a sequence
 * of items going to the fields named in `items`; `flags` maps an array field to a bool
 * field that stores "this item was None" (the zeros are written in its place). Every row
 * is converted and checked (table_value_in, the same conversions as dict records) before
 * any is written, then all are written in one GIL-released call. read_rows and
 * sample_rows gather into columns (table.c's pooled arrays) and build the rows from
 * them: scalars as Python objects, arrays as rows of the column arrays, None where the
 * flag says so, and a tuple subclass (a namedtuple) built without its Python __new__.
 * compat.replay.Memory is a thin layer over these three calls.
 */
#include <string.h>

#include "table.h"

/* How the items of a row map to fields (write_rows, read_rows, sample_rows). */
struct rowspec {
    uint32_t n;                          /* items per row */
    uint32_t f[SHMSTORE_TABLE_FIELDS_MAX]; /* the field of item i */
    int flag[SHMSTORE_TABLE_FIELDS_MAX];   /* per field: the bool field that says "None", or -1 */
    unsigned char given[SHMSTORE_TABLE_FIELDS_MAX]; /* an item, or a flag of one */
};

static int field_index(TableObject *h, PyObject *name)
{
    for (uint32_t f = 0; f < h->n_fields; f++) {
        PyObject *fn = PyTuple_GET_ITEM(h->fnames, f);
        if (fn == name)
            return (int)f;
        int eq = PyUnicode_Check(name) ? PyUnicode_Compare(fn, name) : 1;
        if (eq == -1 && PyErr_Occurred())
            return -1;
        if (eq == 0)
            return (int)f;
    }
    PyErr_Format(PyExc_ValueError, "table '%U' has no field %R (fields: %R)", h->name, name,
                 h->fnames);
    return -1;
}

/* `items` (a tuple or list of field names, None = every field not named in flags, in
 * order) and `flags` (None, or a dict: array field -> bool field that is True when the
 * row's item is None) as a rowspec. A tuple of items is remembered by identity. */
static int rowspec_of(TableObject *h, PyObject *items, PyObject *flags, struct rowspec *rs)
{
    memset(rs->given, 0, sizeof rs->given);
    for (uint32_t f = 0; f < h->n_fields; f++)
        rs->flag[f] = -1;
    if (flags != Py_None) {
        if (!PyDict_Check(flags)) {
            PyErr_SetString(PyExc_TypeError, "flags must be a dict: array field -> bool field");
            return -1;
        }
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(flags, &pos, &k, &v)) {
            int a = field_index(h, k), b = a < 0 ? -1 : field_index(h, v);
            if (b < 0)
                return -1;
            if (strcmp(h->dt[b], "|b1") || a == b || rs->given[b]) {
                PyErr_Format(PyExc_ValueError, "flags: %R must be another bool field, used once",
                             v);
                return -1;
            }
            rs->flag[a] = b;
            rs->given[b] = 2; /* a flag, not an item */
        }
    }
    if (items == Py_None) {
        rs->n = 0;
        for (uint32_t f = 0; f < h->n_fields; f++)
            if (rs->given[f] != 2) {
                rs->f[rs->n++] = f;
                rs->given[f] = 1;
            }
        return 0;
    }
    if (PyTuple_CheckExact(items) && items == h->items_key) {
        rs->n = h->items_n;
        memcpy(rs->f, h->items_f, sizeof rs->f);
    } else {
        PyObject *seq = PySequence_Fast(items, "items must be a sequence of field names");
        if (!seq)
            return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n < 1 || n > (Py_ssize_t)h->n_fields) {
            PyErr_Format(PyExc_ValueError, "items: 1..%u field names", h->n_fields);
            Py_DECREF(seq);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            int f = field_index(h, PySequence_Fast_GET_ITEM(seq, i));
            if (f < 0) {
                Py_DECREF(seq);
                return -1;
            }
            rs->f[i] = (uint32_t)f;
        }
        Py_DECREF(seq);
        rs->n = (uint32_t)n;
        if (PyTuple_CheckExact(items)) {
            Py_XSETREF(h->items_key, Py_NewRef(items));
            h->items_n = rs->n;
            memcpy(h->items_f, rs->f, sizeof rs->f);
        }
    }
    for (uint32_t i = 0; i < rs->n; i++) {
        if (rs->given[rs->f[i]]) {
            PyErr_Format(PyExc_ValueError, "items: field %R is named twice (or is a flag)",
                         PyTuple_GET_ITEM(h->fnames, rs->f[i]));
            return -1;
        }
        rs->given[rs->f[i]] = 1;
    }
    return 0;
}

/* Indices of write_rows/read_rows: an int (the first of n consecutive ones) or a sequence
 * of n ints. PyMem_Free the result. */
static uint64_t *row_indices(TableObject *h, PyObject *indices, size_t n, int *single)
{
    *single = PyLong_Check(indices);
    if (!*single) {
        size_t k;
        uint64_t *idx = table_indices_of(h, indices, &k);
        if (idx && n != (size_t)-1 && k != n) {
            PyErr_Format(PyExc_ValueError, "%zu indices for %zu rows", k, n);
            PyMem_Free(idx);
            return NULL;
        }
        return idx;
    }
    uint64_t first;
    if (table_index_of(h, indices, &first) < 0)
        return NULL;
    if (n == (size_t)-1)
        n = 1;
    uint64_t *idx = PyMem_New(uint64_t, n ? n : 1);
    if (!idx)
        return (uint64_t *)PyErr_NoMemory();
    for (size_t j = 0; j < n; j++)
        idx[j] = first + j;
    return idx;
}

/* Write row j of ptr (nf columns each) as record idx[j], every row: the first error. */
static int write_each(shmstore_table_t *t, const uint64_t *idx, size_t n, const void **ptr,
                      size_t nf)
{
    int r = 0;
    for (size_t j = 0; j < n; j++) {
        int rj = shmstore_table_write(t, idx[j], 1, ptr + j * nf);
        r = r < 0 ? r : rj;
    }
    return r;
}

const char table_write_rows_doc[] = PyDoc_STR(
"write_rows(indices, rows, items=None, flags=None)\n--\n\n"
"Write rows (a sequence of tuples, namedtuples or lists: one item per field of `items`)\n"
"in place as the records at `indices` (an int: that index and the next ones; or a\n"
"sequence of ints), like t[i] = record for each, in one call. items: the field of each\n"
"item (a tuple of names; default every field not in flags, in order). flags: a dict\n"
"array field -> bool field: a row whose item for that field is None writes zeros there\n"
"and True into the bool field (False otherwise). Fields neither an item nor a flag are\n"
"written as zeros. Every row is checked before any is written (a bad one raises and\n"
"writes nothing); IndexError when the table does not hold an index (the others are\n"
"written). The copies run without the GIL.");

PyObject *table_write_rows(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"indices", "rows", "items", "flags", NULL};
    static const unsigned char yes = 1, no = 0;
    PyObject *indices, *rows, *items = Py_None, *flags = Py_None;
    TableObject *h = TSELF;
    struct rowspec rs;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OO:write_rows", kwlist, &indices, &rows,
                                     &items, &flags) ||
        table_ready(h) < 0 || rowspec_of(h, items, flags, &rs) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(rows, "rows must be a sequence of rows");
    if (!seq)
        return NULL;
    size_t n = (size_t)PySequence_Fast_GET_SIZE(seq), nf = h->n_fields, bytes = 0;
    int single;
    uint64_t *idx = row_indices(h, indices, n, &single);
    const void **ptr = idx ? PyMem_New(const void *, n * nf + 1) : NULL;
    Py_buffer *buf = ptr ? PyMem_New(Py_buffer, n * nf + 1) : NULL;
    unsigned char *has = buf ? PyMem_Calloc(n * nf + 1, 1) : NULL;
    unsigned char(*scratch)[16] = has ? PyMem_Malloc(16 * (n * nf + 1)) : NULL;
    if (!h->zeros && scratch) {
        uint64_t big = 1;
        for (uint32_t f = 0; f < nf; f++)
            big = h->sizes[f] > big ? h->sizes[f] : big;
        h->zeros = PyMem_Calloc(1, (size_t)big);
    }
    int ok = scratch && h->zeros;
    if (idx && !ok)
        PyErr_NoMemory();
    for (size_t j = 0; ok && j < n; j++) {
        PyObject *row = PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)j);
        PyObject *rf = PyTuple_Check(row) || PyList_Check(row) ? Py_NewRef(row)
                                                               : PySequence_Fast(row, "a row is a "
                                                                                 "sequence");
        ok = rf != NULL;
        if (ok && PySequence_Fast_GET_SIZE(rf) != (Py_ssize_t)rs.n) {
            PyErr_Format(PyExc_ValueError, "row %zu has %zd items, not %u", j,
                         PySequence_Fast_GET_SIZE(rf), rs.n);
            ok = 0;
        }
        const void **p = ptr + j * nf;
        for (uint32_t f = 0; ok && f < nf; f++)
            if (!rs.given[f])
                p[f] = h->zeros;
        for (uint32_t i = 0; ok && i < rs.n; i++) {
            uint32_t f = rs.f[i];
            PyObject *v = PySequence_Fast_GET_ITEM(rf, (Py_ssize_t)i);
            int fl = rs.flag[f];
            if (v == Py_None && fl >= 0) {
                p[f] = h->zeros;
                p[fl] = &yes;
                continue;
            }
            struct val_in o;
            size_t at = j * nf + f;
            ok = table_value_in(h, f, v, 0, scratch[at], &buf[at], &has[at], &o) == 0;
            p[f] = o.ptr;
            if (fl >= 0)
                p[fl] = &no;
        }
        Py_XDECREF(rf);
    }
    for (uint32_t f = 0; f < nf; f++)
        bytes += (size_t)h->sizes[f] * n;
    int r = 0;
    if (ok)
        TABLE_CALL(h, bytes, r, write_each(t_, idx, n, ptr, nf));
    for (size_t a = 0; has && a < n * nf; a++)
        if (has[a])
            PyBuffer_Release(&buf[a]);
    PyMem_Free(scratch);
    PyMem_Free(has);
    PyMem_Free(buf);
    PyMem_Free(ptr);
    PyMem_Free(idx);
    Py_DECREF(seq);
    if (!ok)
        return NULL;
    if (r < 0)
        return table_raise(h, r);
    Py_RETURN_NONE;
}

/* A row's object: the tuple itself, a tuple subclass built from it (a namedtuple, without
 * calling its Python __new__), or row_type(*items). Steals `tup`. */
static PyObject *row_make(PyObject *row_type, PyObject *tup)
{
    if (row_type == Py_None || !tup)
        return tup;
    PyObject *r;
    if (PyType_Check(row_type) && PyType_IsSubtype((PyTypeObject *)row_type, &PyTuple_Type)) {
        PyObject *a = PyTuple_Pack(1, tup);
        r = a ? PyTuple_Type.tp_new((PyTypeObject *)row_type, a, NULL) : NULL;
        Py_XDECREF(a);
    } else {
        r = PyObject_CallObject(row_type, tup);
    }
    Py_DECREF(tup);
    return r;
}

/* The gathered columns as a list of n rows (or the one row when `single`). */
static PyObject *rows_out(TableObject *h, struct cols_out *c, size_t n, const struct rowspec *rs,
                          PyObject *row_type, int single)
{
    PyObject *list = single ? NULL : PyList_New((Py_ssize_t)n), *one = NULL;
    if (!single && !list)
        return NULL;
    for (size_t j = 0; j < n; j++) {
        PyObject *tup = PyTuple_New(rs->n);
        for (uint32_t i = 0; tup && i < rs->n; i++) {
            uint32_t f = rs->f[i];
            const char *at = (const char *)c->buf[f].buf + j * h->sizes[f];
            int fl = rs->flag[f], fast = 0;
            PyObject *v = NULL;
            if (fl >= 0 && ((const unsigned char *)c->buf[fl].buf)[j])
                v = Py_NewRef(Py_None);
            else if (h->ndim[f] == 0)
                v = table_scalar_out(h->dt[f], at, &fast);
            if (!v && !fast)
                v = PySequence_GetItem(c->arr[f], (Py_ssize_t)j);
            if (!v)
                Py_CLEAR(tup);
            else
                PyTuple_SET_ITEM(tup, i, v);
        }
        PyObject *row = row_make(row_type, tup);
        if (!row) {
            Py_XDECREF(list);
            return NULL;
        }
        if (single)
            one = row;
        else
            PyList_SET_ITEM(list, (Py_ssize_t)j, row);
    }
    return single ? one : list;
}

const char table_read_rows_doc[] = PyDoc_STR(
"read_rows(indices, items=None, flags=None, row_type=None)\n--\n\n"
"The records at `indices` as rows: a list of tuples (one item per field of `items`), or\n"
"one tuple when `indices` is an int. items and flags as in write_rows: an item whose\n"
"flag field is True reads as None. row_type: a tuple subclass (a namedtuple) or a\n"
"callable given the items. Scalars come back as Python objects, arrays as rows of one\n"
"new array per field. Errors as gather().");

PyObject *table_read_rows(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"indices", "items", "flags", "row_type", NULL};
    PyObject *indices, *items = Py_None, *flags = Py_None, *row_type = Py_None;
    TableObject *h = TSELF;
    struct rowspec rs;
    int single;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOO:read_rows", kwlist, &indices, &items,
                                     &flags, &row_type) ||
        table_ready(h) < 0 || rowspec_of(h, items, flags, &rs) < 0)
        return NULL;
    uint64_t *idx = row_indices(h, indices, (size_t)-1, &single);
    if (!idx)
        return NULL;
    size_t n = 1;
    if (!single) {
        PyObject *seq = PySequence_Fast(indices, "indices");
        n = seq ? (size_t)PySequence_Fast_GET_SIZE(seq) : 0;
        Py_XDECREF(seq);
    }
    struct cols_out c;
    PyObject *out = NULL;
    if (table_cols_out_new(h, n, 0, 0, &c) == 0) {
        int r;
        uint64_t failed = 0;
        TABLE_CALL(h, c.bytes, r, shmstore_table_gather(t_, idx, n, c.ptr, &failed));
        out = r < 0 ? table_raise(h, r) : rows_out(h, &c, n, &rs, row_type, single);
        table_cols_out_free(&c);
    }
    PyMem_Free(idx);
    return out;
}

const char table_sample_rows_doc[] = PyDoc_STR(
"sample_rows(k, items=None, flags=None, row_type=None, rng=None) -> list\n--\n\n"
"sample(k) (uniform, with replacement) as a list of k rows, as read_rows returns them.");

PyObject *table_sample_rows(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"k", "items", "flags", "row_type", "rng", NULL};
    Py_ssize_t k;
    int has_rng;
    PyObject *items = Py_None, *flags = Py_None, *row_type = Py_None, *rng = Py_None;
    uint64_t state = 0;
    TableObject *h = TSELF;
    struct rowspec rs;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|OOOO:sample_rows", kwlist, &k, &items, &flags,
                                     &row_type, &rng) ||
        table_ready(h) < 0 || rowspec_of(h, items, flags, &rs) < 0 ||
        table_rng_of(rng, &state, &has_rng) < 0)
        return NULL;
    if (k < 0) {
        PyErr_SetString(PyExc_ValueError, "k must be >= 0");
        return NULL;
    }
    struct cols_out c;
    if (table_cols_out_new(h, (size_t)k, 0, 0, &c) < 0)
        return NULL;
    int r;
    TABLE_CALL(h, c.bytes, r,
               shmstore_table_sample(t_, (size_t)k, 0, has_rng ? &state : NULL, c.ptr, NULL,
                                     NULL));
    PyObject *out = r < 0 ? table_raise(h, r) : rows_out(h, &c, (size_t)k, &rs, row_type, 0);
    table_cols_out_free(&c);
    return out;
}
