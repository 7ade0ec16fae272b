/* npapi.c - the few places where the extension makes numpy arrays through numpy's C API.
 *
 * The extension builds and imports without numpy's headers (setup.py adds them only when
 * numpy is there at build time, defining SHM_NUMPY_API) and without numpy loaded: arrays
 * are normally made by numpy.asarray() of a Buffer, in Python terms. On a few per-call
 * paths that make a view of an array that already exists (a ring's new frames, a slice
 * of its storage array), numpy's own slicing costs more than the rest of the call: an
 * index parsed from a slice object, then a view. np_rows() makes that view directly.
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

#else

PyObject *np_rows(PyObject *arr, Py_ssize_t i0, Py_ssize_t k)
{
    return PySequence_GetSlice(arr, i0, i0 + k);
}

#endif
