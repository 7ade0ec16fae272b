/* table.h - what the two files of shmstore.Table share: the handle object, the column
 * buffers of reads, the conversion of one field's value, and the calls that run without
 * the GIL. table.c is the type (schema, dict records, sampling, life cycle); table_rows.c
 * the row API (write_rows, read_rows, sample_rows). Private to the extension. */
#ifndef SHMSTORE_PY_TABLE_H
#define SHMSTORE_PY_TABLE_H

#include "ext.h"

typedef struct TableObject {
    PyObject_HEAD
    shmstore_table_t *t; /* NULL once closed */
    CoreObject *core;    /* the Core t belongs to */
    StoreObject *store;  /* strong */
    PyObject *name;      /* str */
    int busy;            /* >0 while a GIL-released call uses t */
    modstate *st;
    uint32_t n_fields;
    int prioritized;
    PyObject *fnames; /* tuple of str */
    PyObject *dtypes; /* tuple of numpy dtypes */
    PyObject *shapes; /* tuple of tuples of int */
    uint64_t sizes[SHMSTORE_TABLE_FIELDS_MAX];
    char dt[SHMSTORE_TABLE_FIELDS_MAX][SHMSTORE_DTYPE_MAX]; /* each field's dtype string */
    /* Cached per field for the checks of every write: the buffer format numpy gives an
     * array of its dtype ("" = none: always the slow check) and its shape. */
    char fmt[SHMSTORE_TABLE_FIELDS_MAX][8];
    uint32_t ndim[SHMSTORE_TABLE_FIELDS_MAX];
    uint64_t shape[SHMSTORE_TABLE_FIELDS_MAX][SHMSTORE_FIELD_NDIM_MAX];
    PyObject *np_generic; /* numpy.generic (numpy scalars) */
    PyObject *u8, *f8;    /* the dtypes of "index" and "probability" */
    /* The last `items` of write_rows/read_rows (a tuple, by identity) and its fields. */
    PyObject *items_key;
    uint32_t items_n;
    uint32_t items_f[SHMSTORE_TABLE_FIELDS_MAX];
    void *zeros; /* PyMem: zero bytes of the largest field (write_rows' fields not given) */
    /* The arrays of the last read, per column (fields, index, probability): reused by the
     * next read when nothing but this pool refers to them any more (see out_array). */
    PyObject *pool[SHMSTORE_TABLE_FIELDS_MAX + 2];
} TableObject;

#define TSELF ((TableObject *)self)

struct cols_out {
    PyObject *arr[SHMSTORE_TABLE_FIELDS_MAX + 2]; /* fields, index, probability */
    Py_buffer buf[SHMSTORE_TABLE_FIELDS_MAX + 2];
    void *ptr[SHMSTORE_TABLE_FIELDS_MAX];
    uint32_t n_arr;
    size_t bytes;
};

/* Where one field's value of a write comes from. */
struct val_in {
    const void *ptr; /* its bytes, C-contiguous */
    size_t n;        /* records: 1, or the batch's length */
    int is_batch;    /* has a leading batch dimension */
    size_t bytes;
};

/* Run `call` on h->t without the GIL when it copies `bytes` >= GIL_COPY_MIN. */
#define TABLE_CALL(h, bytes, rc, call)                 \
    do {                                               \
        shmstore_table_t *t_ = (h)->t;                 \
        if ((bytes) >= GIL_COPY_MIN) {                 \
            (h)->busy++;                               \
            Py_BEGIN_ALLOW_THREADS                     \
            (rc) = call;                               \
            Py_END_ALLOW_THREADS                       \
            (h)->busy--;                               \
        } else {                                       \
            (rc) = call;                               \
        }                                              \
        (void)t_;                                      \
    } while (0)

/* table.c: helpers the row API uses (see their definitions). */
int table_ready(TableObject *h);
PyObject *table_raise(TableObject *h, int r);
int table_index_of(TableObject *h, PyObject *key, uint64_t *out);
uint64_t *table_indices_of(TableObject *h, PyObject *seq, size_t *n);
int table_value_in(TableObject *h, uint32_t f, PyObject *v, int allow_batch,
                   unsigned char *scratch, Py_buffer *buf, unsigned char *has_buf,
                   struct val_in *o);
PyObject *table_scalar_out(const char *dt, const void *p, int *fast);
int table_cols_out_new(TableObject *h, size_t k, int with_index, int with_prob,
                       struct cols_out *c);
void table_cols_out_free(struct cols_out *c);
int table_rng_of(PyObject *rng, uint64_t *state, int *has);

/* table_rows.c: the methods of the row API. */
extern const char table_write_rows_doc[], table_read_rows_doc[], table_sample_rows_doc[];
PyObject *table_write_rows(PyObject *self, PyObject *args, PyObject *kw);
PyObject *table_read_rows(PyObject *self, PyObject *args, PyObject *kw);
PyObject *table_sample_rows(PyObject *self, PyObject *args, PyObject *kw);

#endif
