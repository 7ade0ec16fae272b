/* npapi.c - the few places where the extension makes numpy arrays through numpy's C API.
 *
 * The extension builds and imports without numpy's headers (setup.py adds them only when
 * numpy is there at build time, defining SHM_NUMPY_API) and without numpy loaded: arrays
 * are normally made by numpy.asarray() of a Buffer, in Python terms. On a few per-call
 * paths that make a view of an array that already exists (a ring's new frames, a slice
 * of its storage array), numpy's own slicing costs more than the rest of the call: an
 * index parsed from a slice object, then a view. np_rows() makes that view directly.
 * Likewise numpy.asarray() of a Buffer parses the buffer's format string back into a
 * dtype on every zero-copy read (a value's get, a queue entry's read or pop): about as
 * much work as the rest of the read. np_view() makes the same array from the dtype the
 * module caches, over the same memoryview numpy would take as its base (the view's
 * export, which keeps explicit release() refusing while the array lives).
 *
 * numpy's API table is loaded on first use, by which time numpy is loaded (the array
 * passed in is one). If it cannot be loaded (another numpy than the headers' at run
 * time, refused by its ABI check), or the array is not a plain ndarray, np_rows() slices
 * as Python does: the same result, slower.
 */
#include <string.h>

#include "ext.h"

#ifdef SHM_NUMPY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

/* 1: the API table is loaded; 0: use the fallback (no exception). Called with the GIL. */
static int api_ready(void)
{
    static int state; /* 0 not tried, 1 ready, -1 unavailable */
    if (state == 0) {
        state = _import_array() < 0 ? -1 : 1;
        if (state < 0)
            PyErr_Clear();
    }
    return state > 0;
}

PyObject *np_rows(PyObject *arr, Py_ssize_t i0, Py_ssize_t k)
{
    if (!api_ready() || !PyArray_CheckExact(arr))
        return PySequence_GetSlice(arr, i0, i0 + k);
    PyArrayObject *a = (PyArrayObject *)arr;
    int nd = PyArray_NDIM(a);
    npy_intp *dims = PyArray_DIMS(a), shape[NPY_MAXDIMS];
    if (nd < 1 || i0 < 0 || k < 0 || i0 + k > dims[0])
        return PySequence_GetSlice(arr, i0, i0 + k); /* says what is wrong, or clips */
    memcpy(shape, dims, sizeof(npy_intp) * (size_t)nd);
    shape[0] = k;
    PyArray_Descr *d = PyArray_DESCR(a);
    Py_INCREF(d); /* stolen by NewFromDescr, even when it fails */
    npy_intp *strides = PyArray_STRIDES(a);
    PyObject *v = PyArray_NewFromDescr(&PyArray_Type, d, nd, shape, strides,
                                       PyArray_BYTES(a) + i0 * strides[0],
                                       PyArray_FLAGS(a) & NPY_ARRAY_WRITEABLE, NULL);
    if (!v)
        return NULL;
    Py_INCREF(arr); /* stolen; numpy keeps the base that owns the bytes, as a slice does */
    if (PyArray_SetBaseObject((PyArrayObject *)v, arr) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

PyObject *np_view(modstate *st, BufferObject *b, const char *dtype, int ndim,
                  const uint64_t *shape)
{
    if (!api_ready() || ndim > NPY_MAXDIMS)
        return PyObject_CallOneArg(st->np_asarray, (PyObject *)b);
    PyObject *dt = np_dtype_of(st, dtype);
    if (!dt)
        return NULL;
    if (!PyArray_DescrCheck(dt)) {
        Py_DECREF(dt);
        return PyObject_CallOneArg(st->np_asarray, (PyObject *)b);
    }
    npy_intp dims[NPY_MAXDIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = (npy_intp)shape[i]; /* extents_ok() held when the datum was read */
    PyObject *mv = PyMemoryView_FromObject((PyObject *)b); /* the export */
    if (!mv) {
        Py_DECREF(dt);
        return NULL;
    }
    /* dt is stolen, even on failure */
    PyObject *v = PyArray_NewFromDescr(&PyArray_Type, (PyArray_Descr *)dt, ndim, dims, NULL,
                                       b->ptr, b->readonly ? 0 : NPY_ARRAY_WRITEABLE, NULL);
    if (!v || PyArray_SetBaseObject((PyArrayObject *)v, mv) < 0) { /* mv stolen */
        if (!v)
            Py_DECREF(mv);
        Py_XDECREF(v);
        return NULL;
    }
    return v;
}

#else

PyObject *np_rows(PyObject *arr, Py_ssize_t i0, Py_ssize_t k)
{
    return PySequence_GetSlice(arr, i0, i0 + k);
}

PyObject *np_view(modstate *st, BufferObject *b, const char *dtype, int ndim,
                  const uint64_t *shape)
{
    (void)dtype, (void)ndim, (void)shape;
    return PyObject_CallOneArg(st->np_asarray, (PyObject *)b);
}

#endif
