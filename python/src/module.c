/* module.c - the shmstore._shmstore module: state, error mapping, module functions.
 *
 * Multi-phase init (PEP 489): every type is a heap type created in exec_module and kept
 * in the module state, with the exception classes and the lazily imported numpy and
 * pickle callables. The only C global is the fork generation below (a process-wide
 * fact); sub-interpreters and re-imports each get their own state.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ext.h"

static struct PyModuleDef moddef;

modstate *shm_state_of(PyObject *module)
{
    return (modstate *)PyModule_GetState(module);
}

PyObject *shm_module_of_type(PyTypeObject *type)
{
    return PyType_GetModuleByDef(type, &moddef);
}

int shm_fast_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *const *names, int n, int n_pos, int n_req, PyObject **out)
{
    if (nargs > n_pos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)",
                     fname, n_pos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nk; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int i = 0;
        while (i < n && PyUnicode_CompareWithASCIIString(key, names[i]) != 0)
            i++;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (i < nargs) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < n_req; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

/* ---- fork: one place that notices it ------------------------------------------------- */

unsigned long shm_fork_gen;

/* Runs in the child of every fork(), before any other code of the child: the only
 * thread left writes, so a plain variable is enough. The library counts forks the same
 * way, but its counter is internal: reading it would cost a call on every operation,
 * and `so.modified` is ~14 ns in all. */
static void on_fork_child(void)
{
    shm_fork_gen++;
}

static int fork_hook_err;

static void fork_hook_once(void)
{
    fork_hook_err = pthread_atfork(NULL, NULL, on_fork_child);
}

/* Register on_fork_child once per process (extension modules are never unloaded, so
 * the handler stays valid). Returns 0 or -1 with MemoryError set. */
static int fork_hook_install(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fork_hook_once);
    if (fork_hook_err) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* os.register_at_fork(after_in_child=_after_fork_child): multiprocessing's fork start
 * method goes through os.fork(), which runs it in the child before anything else. */
static int fork_hook_register(PyObject *m)
{
    PyObject *os = PyImport_ImportModule("os");
    PyObject *reg = os ? PyObject_GetAttrString(os, "register_at_fork") : NULL;
    PyObject *fn = reg ? PyObject_GetAttrString(m, "_after_fork_child") : NULL;
    PyObject *args = fn ? PyTuple_New(0) : NULL;
    PyObject *kw = args ? Py_BuildValue("{s:O}", "after_in_child", fn) : NULL;
    PyObject *r = kw ? PyObject_Call(reg, args, kw) : NULL;
    Py_XDECREF(os);
    Py_XDECREF(reg);
    Py_XDECREF(fn);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* ---- errors: the one table that maps codes to exceptions ---------------------------- */

int shm_raise(modstate *st, int err)
{
    if (err == PYERR_SET) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "shmstore: error flagged but not set");
        return -1;
    }
    const char *detail = shmstore_errmsg();
    const char *msg = detail && *detail ? detail : shmstore_strerror(err);
    PyObject *type;
    int is_os = 0;
    switch (err) {
    case -ENOENT:
        type = st->NotFoundError;
        is_os = 1;
        break;
    case -EEXIST:
        type = PyExc_FileExistsError;
        is_os = 1;
        break;
    case -ETIMEDOUT:
        type = PyExc_TimeoutError;
        is_os = 1;
        break;
    case -EINVAL:
    case -ENAMETOOLONG:
    case SHMSTORE_ENAME:
    case SHMSTORE_EDTYPE:
        type = PyExc_ValueError;
        break;
    case SHMSTORE_ELAYOUT:
        type = st->LayoutError;
        break;
    case SHMSTORE_EKIND:
        type = PyExc_TypeError;
        break;
    case -ENOSPC:
    case -ENOMEM:
        type = PyExc_MemoryError;
        break;
    case -EACCES:
    case -EPERM:
    case SHMSTORE_EOWNER:
        type = PyExc_PermissionError;
        is_os = 1;
        break;
    case SHMSTORE_ESEALED:
        type = st->SealedError;
        is_os = 1;
        break;
    case -ESTALE:
        type = st->StaleError;
        break;
    case SHMSTORE_ENOVALUE:
        type = st->NoValueError;
        break;
    case SHMSTORE_ECORRUPT:
    case SHMSTORE_EVERSION:
        type = st->CorruptError;
        is_os = 1;
        break;
    case SHMSTORE_ELEASES:
    case SHMSTORE_EPROCS:
        type = st->LimitError;
        is_os = 1;
        break;
    case SHMSTORE_EFORK:
        type = PyExc_RuntimeError;
        break;
    case -EAGAIN:
        type = st->FullError;
        is_os = 1;
        break;
    case -EMSGSIZE:
        type = PyExc_ValueError;
        break;
    default:
        type = PyExc_OSError;
        is_os = 1;
        break;
    }
    if (is_os) {
        /* OSError(errno, strerror): .errno is the positive errno for real errno codes. */
        int e = err > -4000 ? -err : 0;
        PyObject *args = e ? Py_BuildValue("(is)", e, msg) : Py_BuildValue("(s)", msg);
        if (args) {
            PyObject *exc = PyObject_Call(type, args, NULL);
            Py_DECREF(args);
            if (exc) {
                PyErr_SetObject(type, exc);
                Py_DECREF(exc);
            }
        }
    } else {
        PyErr_SetString(type, msg);
    }
    return -1;
}

/* ---- lazy imports ------------------------------------------------------------------ */

int shm_numpy(modstate *st)
{
    if (st->np)
        return 0;
    PyObject *np = PyImport_ImportModule("numpy");
    if (!np)
        return -1;
    st->ndarray = PyObject_GetAttrString(np, "ndarray");
    st->np_empty = PyObject_GetAttrString(np, "empty");
    st->np_asarray = PyObject_GetAttrString(np, "asarray");
    st->np_ascontig = PyObject_GetAttrString(np, "ascontiguousarray");
    if (!st->ndarray || !st->np_empty || !st->np_asarray || !st->np_ascontig) {
        Py_CLEAR(st->ndarray);
        Py_CLEAR(st->np_empty);
        Py_CLEAR(st->np_asarray);
        Py_CLEAR(st->np_ascontig);
        Py_DECREF(np);
        return -1;
    }
    st->np = np;
    return 0;
}

int shm_pickle(modstate *st)
{
    if (st->pk_dumps)
        return 0;
    PyObject *pk = PyImport_ImportModule("pickle");
    if (!pk)
        return -1;
    st->pk_loads = PyObject_GetAttrString(pk, "loads");
    st->pk_proto = PyObject_GetAttrString(pk, "HIGHEST_PROTOCOL");
    st->pk_dumps = PyObject_GetAttrString(pk, "dumps");
    Py_DECREF(pk);
    if (!st->pk_loads || !st->pk_proto || !st->pk_dumps) {
        Py_CLEAR(st->pk_loads);
        Py_CLEAR(st->pk_proto);
        Py_CLEAR(st->pk_dumps);
        return -1;
    }
    return 0;
}

/* ---- module functions -------------------------------------------------------------- */

static int opt_dir(PyObject *dir, const char **out)
{
    *out = NULL;
    if (!dir || dir == Py_None)
        return 0;
    if (!PyUnicode_Check(dir)) {
        PyErr_SetString(PyExc_TypeError, "dir must be a str or None");
        return -1;
    }
    *out = PyUnicode_AsUTF8(dir);
    return *out ? 0 : -1;
}

PyDoc_STRVAR(unlink_doc,
"unlink(name, *, dir=None)\n--\n\n"
"Remove the store `name` from its directory (default $SHMSTORE_DIR or /dev/shm).\n"
"Processes that have it open keep using it; the memory goes when the last one\n"
"closes. Raises FileNotFoundError if there is no such store.");

static PyObject *mod_unlink(PyObject *module, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "dir", NULL};
    const char *name, *cdir;
    PyObject *dir = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$O:unlink", kwlist, &name, &dir))
        return NULL;
    if (opt_dir(dir, &cdir) < 0)
        return NULL;
    int r = shmstore_unlink(name, cdir);
    if (r < 0)
        return shm_raise(shm_state_of(module), r), NULL;
    Py_RETURN_NONE;
}

static int list_cb(const char *name, void *arg)
{
    PyObject *s = PyUnicode_DecodeFSDefault(name);
    if (!s)
        return PYERR_SET;
    int r = PyList_Append((PyObject *)arg, s);
    Py_DECREF(s);
    return r < 0 ? PYERR_SET : 0;
}

PyDoc_STRVAR(list_stores_doc,
"list_stores(*, dir=None)\n--\n\n"
"Names of the stores in `dir` (default $SHMSTORE_DIR or /dev/shm), sorted.");

static PyObject *mod_list_stores(PyObject *module, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"dir", NULL};
    PyObject *dir = Py_None;
    const char *cdir;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$O:list_stores", kwlist, &dir))
        return NULL;
    if (opt_dir(dir, &cdir) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    int r = shmstore_list_stores(cdir, list_cb, out);
    if (r < 0) {
        Py_DECREF(out);
        return shm_raise(shm_state_of(module), r), NULL;
    }
    if (PyList_Sort(out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

PyDoc_STRVAR(strerror_doc,
"strerror(code)\n--\n\nThe message of a shmstore error code (negative errno or SHMSTORE_E*).");

static PyObject *mod_strerror(PyObject *module, PyObject *arg)
{
    (void)module;
    int code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(shmstore_strerror(code));
}

PyDoc_STRVAR(decode_record_doc,
"_decode_record(data)\n--\n\nDecode RECORD payload bytes (copies). For tests: hostile input\n"
"must raise CorruptError, never crash.");

static PyObject *mod_decode_record(PyObject *module, PyObject *arg)
{
    Py_buffer pb;
    if (PyObject_GetBuffer(arg, &pb, PyBUF_SIMPLE) < 0)
        return NULL;
    void *copy = NULL;
    if (posix_memalign(&copy, 64, pb.len ? (size_t)pb.len : 1) != 0) {
        PyBuffer_Release(&pb);
        return PyErr_NoMemory();
    }
    memcpy(copy, pb.buf, (size_t)pb.len);
    shmstore_datum_t d;
    shmstore_datum_init(&d, SHMSTORE_T_RECORD);
    PyObject *o = dec_value(shm_state_of(module), &d, copy, (size_t)pb.len, NULL);
    free(copy);
    PyBuffer_Release(&pb);
    return o;
}

PyDoc_STRVAR(after_fork_doc,
"_after_fork_child()\n--\n\nInternal: run by os.fork() in the child (registered with\n"
"os.register_at_fork): views inherited from the parent are leased by the child.");

static PyObject *mod_after_fork_child(PyObject *m, PyObject *unused)
{
    (void)unused;
    buffer_adopt_inherited(shm_state_of(m), m);
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"_after_fork_child", mod_after_fork_child, METH_NOARGS, after_fork_doc},
    {"_decode_record", mod_decode_record, METH_O, decode_record_doc},
    {"unlink", METH(mod_unlink), METH_VARARGS | METH_KEYWORDS, unlink_doc},
    {"list_stores", METH(mod_list_stores), METH_VARARGS | METH_KEYWORDS, list_stores_doc},
    {"strerror", mod_strerror, METH_O, strerror_doc},
    {NULL, NULL, 0, NULL},
};

/* ---- exec: types, exceptions, constants ---------------------------------------------- */

static PyObject *new_exc(PyObject *m, const char *name, PyObject *bases, const char *doc)
{
    char full[128];
    snprintf(full, sizeof(full), "shmstore.%s", name);
    PyObject *e = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    Py_XDECREF(bases);
    if (!e)
        return NULL;
    if (PyModule_AddObjectRef(m, name, e) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    return e;
}

static PyTypeObject *add_type(PyObject *m, PyType_Spec *spec)
{
    PyTypeObject *t = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec, NULL);
    if (!t)
        return NULL;
    if (PyModule_AddType(m, t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

/* A type the module only exports (nothing in C refers to it by its modstate). */
static int add_type_ref(PyObject *m, PyType_Spec *spec)
{
    PyTypeObject *t = add_type(m, spec);
    Py_XDECREF(t); /* the module holds it */
    return t != NULL;
}

static int mod_exec(PyObject *m)
{
    modstate *st = shm_state_of(m);
    if (fork_hook_install() < 0)
        return -1;
    if (!(st->Core_type = add_type(m, &Core_spec)) || !(st->Store_type = add_type(m, &Store_spec)) ||
        !(st->Value_type = add_type(m, &Value_spec)) ||
        !(st->Buffer_type = add_type(m, &Buffer_spec)) ||
        !(st->Write_type = add_type(m, &Write_spec)) ||
        !(st->Queue_type = add_type(m, &Queue_spec)) ||
        !(st->Reserve_type = add_type(m, &Reserve_spec)) ||
        !(st->Table_type = add_type(m, &Table_spec)) ||
        !(st->Ring_type = add_type(m, &Ring_spec)) || !add_type_ref(m, &RingMirror_spec) ||
        !add_type_ref(m, &RingSinkPath_spec) ||
        !(st->Bridge_type = add_type(m, &Bridge_spec)))
        return -1;
    if (!(st->Error = new_exc(m, "Error", NULL, "Base of the exceptions that only shmstore raises.")))
        return -1;
    if (!(st->NotFoundError = new_exc(m, "NotFoundError",
                                      PyTuple_Pack(2, PyExc_FileNotFoundError, PyExc_KeyError),
                                      "No store or object of that name (a FileNotFoundError and a KeyError).")) ||
        !(st->StaleError = new_exc(m, "StaleError", PyTuple_Pack(2, st->Error, PyExc_LookupError),
                                   "The handle's object was deleted (and maybe re-created): open it again.")) ||
        !(st->NoValueError = new_exc(m, "NoValueError", PyTuple_Pack(2, st->Error, PyExc_LookupError),
                                     "The value exists but has no version yet.")) ||
        !(st->LayoutError = new_exc(m, "LayoutError", PyTuple_Pack(2, st->Error, PyExc_ValueError),
                                    "Data does not match the value's fixed type, dtype or shape.")) ||
        !(st->SealedError = new_exc(m, "SealedError", PyTuple_Pack(1, PyExc_PermissionError),
                                    "The value is sealed (immutable).")) ||
        !(st->CorruptError = new_exc(m, "CorruptError", PyTuple_Pack(1, PyExc_OSError),
                                     "The store is corrupt or of an incompatible layout version.")) ||
        !(st->LimitError = new_exc(m, "LimitError", PyTuple_Pack(1, PyExc_OSError),
                                   "A fixed table is full (leases of this process, process slots).")) ||
        !(st->FullError = new_exc(m, "FullError", PyTuple_Pack(2, st->Error, PyExc_BlockingIOError),
                                  "A full queue refused the entry (its policy is \"error\", or the push did not wait).")))
        return -1;
    if (!(st->dtype_of = PyDict_New()) || !(st->np_dtype = PyDict_New()))
        return -1;
    if (fork_hook_register(m) < 0)
        return -1;
    if (PyModule_AddStringConstant(m, "__c_version__", SHMSTORE_VERSION_STRING) < 0 ||
        PyModule_AddIntConstant(m, "NAME_MAX", SHMSTORE_NAME_MAX) < 0 ||
        PyModule_AddIntConstant(m, "NDIM_MAX", SHMSTORE_NDIM_MAX) < 0 ||
        PyModule_AddIntConstant(m, "_numpy_api", NP_API_BUILT) < 0) /* 1: built with it */
        return -1;
    return 0;
}

static int mod_traverse(PyObject *m, visitproc visit, void *arg)
{
    modstate *st = shm_state_of(m);
    if (!st)
        return 0;
    Py_VISIT(st->Core_type);
    Py_VISIT(st->Store_type);
    Py_VISIT(st->Value_type);
    Py_VISIT(st->Buffer_type);
    Py_VISIT(st->Write_type);
    Py_VISIT(st->Queue_type);
    Py_VISIT(st->Ring_type);
    Py_VISIT(st->Reserve_type);
    Py_VISIT(st->Table_type);
    Py_VISIT(st->Bridge_type);
    Py_VISIT(st->FullError);
    Py_VISIT(st->Error);
    Py_VISIT(st->NotFoundError);
    Py_VISIT(st->StaleError);
    Py_VISIT(st->NoValueError);
    Py_VISIT(st->LayoutError);
    Py_VISIT(st->SealedError);
    Py_VISIT(st->CorruptError);
    Py_VISIT(st->LimitError);
    Py_VISIT(st->np);
    Py_VISIT(st->ndarray);
    Py_VISIT(st->np_empty);
    Py_VISIT(st->np_asarray);
    Py_VISIT(st->np_ascontig);
    Py_VISIT(st->dtype_of);
    Py_VISIT(st->np_dtype);
    Py_VISIT(st->pk_dumps);
    Py_VISIT(st->pk_loads);
    Py_VISIT(st->pk_proto);
    return 0;
}

static int mod_clear(PyObject *m)
{
    modstate *st = shm_state_of(m);
    if (!st)
        return 0;
    Py_CLEAR(st->Core_type);
    Py_CLEAR(st->Store_type);
    Py_CLEAR(st->Value_type);
    Py_CLEAR(st->Buffer_type);
    Py_CLEAR(st->Write_type);
    Py_CLEAR(st->Queue_type);
    Py_CLEAR(st->Ring_type);
    Py_CLEAR(st->Reserve_type);
    Py_CLEAR(st->Table_type);
    Py_CLEAR(st->Bridge_type);
    Py_CLEAR(st->FullError);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->NotFoundError);
    Py_CLEAR(st->StaleError);
    Py_CLEAR(st->NoValueError);
    Py_CLEAR(st->LayoutError);
    Py_CLEAR(st->SealedError);
    Py_CLEAR(st->CorruptError);
    Py_CLEAR(st->LimitError);
    Py_CLEAR(st->np);
    Py_CLEAR(st->ndarray);
    Py_CLEAR(st->np_empty);
    Py_CLEAR(st->np_asarray);
    Py_CLEAR(st->np_ascontig);
    Py_CLEAR(st->dtype_of);
    Py_CLEAR(st->np_dtype);
    Py_CLEAR(st->pk_dumps);
    Py_CLEAR(st->pk_loads);
    Py_CLEAR(st->pk_proto);
    return 0;
}

static void mod_free(void *m)
{
    mod_clear((PyObject *)m);
}

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL},
};

PyDoc_STRVAR(mod_doc, "The C core of shmstore: stores, values and leased buffers in shared memory.\n"
                      "Use the `shmstore` package, which re-exports these names.");

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmstore._shmstore",
    .m_doc = mod_doc,
    .m_size = sizeof(modstate),
    .m_methods = mod_methods,
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC PyInit__shmstore(void);
PyMODINIT_FUNC PyInit__shmstore(void)
{
    return PyModuleDef_Init(&moddef);
}
