/* buffer.c - Buffer: bytes of the store exported through the buffer protocol.
 *
 * A root Buffer owns one lease (shmstore_view_t) and a reference to the Core whose
 * mapping holds the bytes; a child Buffer describes one array inside the root's bytes
 * (a record's members) and holds a reference to the root. bf_getbuffer fills format,
 * shape and strides only when the consumer asks (arraymodule.c) and counts exports;
 * bf_releasebuffer uncounts them. The lease is dropped in tp_dealloc of the root, which
 * cannot run before every export and every child is gone, or by release() when nothing
 * is exported (mmapmodule.c's `exports` rule). numpy arrays are made with
 * numpy.asarray(buffer): numpy keeps a memoryview of the export as the array's base.
 *
 * fork(): a lease belongs to the process that took it, so a view inherited by a child
 * was protected only while the parent held it. Leased roots are kept in a list
 * (modstate.leased); right after os.fork() the child adopts each one under its own
 * attachment (buffer_adopt_inherited, shmstore_view_adopt). The bytes stay where the
 * arrays already point: the inherited mapping, which root->core keeps.
 */
#include <string.h>

#include "ext.h"

int format_of_dtype(const char *dtype, char *fmt, size_t cap)
{
    /* numpy's native PEP 3118 spellings (no byte-order prefix: this is little-endian). */
    static const struct { const char *dt, *fmt; } map[] = {
        {"|b1", "?"},  {"|i1", "b"},  {"<i1", "b"},  {"|u1", "B"}, {"<u1", "B"},
        {"<i2", "h"},  {"<u2", "H"},  {"<i4", "i"},  {"<u4", "I"}, {"<i8", "q"},
        {"<u8", "Q"},  {"<f2", "e"},  {"<f4", "f"},  {"<f8", "d"}, {"<c8", "Zf"},
        {"<c16", "Zd"}, {"<f16", "g"}, {"<c32", "Zg"},
    };
    /* This runs on every zero-copy read: no snprintf() (it cost ~90 ns a read), and the
     * kind letter is compared before the whole string. */
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].dt[1] == dtype[1] && strcmp(dtype, map[i].dt) == 0) {
            size_t n = strlen(map[i].fmt);
            /* "g" is the C long double: it spells "<f16" only where that has 16 bytes
             * (where numpy has float128); elsewhere such an array has no format. */
            if ((map[i].fmt[n - 1] == 'g' && sizeof(long double) != 16) || n >= cap)
                return -1;
            memcpy(fmt, map[i].fmt, n + 1);
            return 0;
        }
    if (dtype[0] && (dtype[1] == 'S' || dtype[1] == 'U')) {
        size_t n = strlen(dtype + 2);
        if (n + 2 > cap)
            return -1;
        memcpy(fmt, dtype + 2, n);
        fmt[n] = dtype[1] == 'S' ? 's' : 'w';
        fmt[n + 1] = '\0';
        return 0;
    }
    return -1;
}

static BufferObject *buffer_alloc(modstate *st)
{
    BufferObject *b = PyObject_New(BufferObject, st->Buffer_type);
    if (!b)
        return NULL;
    b->root = NULL;
    b->core = NULL;
    memset(&b->view, 0, sizeof(b->view));
    b->has_lease = 0;
    b->readonly = 1;
    b->released = 0;
    b->ptr = NULL;
    b->len = 0;
    b->itemsize = 1;
    b->exports = 0;
    b->ndim = 1;
    strcpy(b->format, "B");
    b->weakrefs = NULL;
    b->lease_core = NULL;
    b->lprev = b->lnext = NULL;
    b->resq = NULL;
    memset(&b->res, 0, sizeof(b->res));
    b->st = st;
    return b;
}

static void leased_link(BufferObject *b)
{
    b->lprev = NULL;
    b->lnext = b->st->leased;
    if (b->lnext)
        b->lnext->lprev = b;
    b->st->leased = b;
}

static void leased_unlink(BufferObject *b)
{
    if (b->lprev)
        b->lprev->lnext = b->lnext;
    else
        b->st->leased = b->lnext;
    if (b->lnext)
        b->lnext->lprev = b->lprev;
    b->lprev = b->lnext = NULL;
}

/* A root Buffer taking over the lease in `view` (as bytes, 'B'). */
BufferObject *buffer_root(modstate *st, CoreObject *core, const shmstore_view_t *view)
{
    BufferObject *b = buffer_alloc(st);
    if (!b)
        return NULL;
    b->core = core;
    Py_XINCREF(core);
    if (view) {
        b->view = *view;
        b->has_lease = 1;
        leased_link(b);
        b->ptr = (char *)view->data;
        b->len = (Py_ssize_t)view->len;
    }
    b->shape[0] = b->len;
    b->strides[0] = 1;
    return b;
}

void buffer_take_view(BufferObject *root, const shmstore_view_t *view)
{
    root->view = *view;
    root->has_lease = 1;
    leased_link(root);
}

int buffer_set_array(BufferObject *b, const char *dtype, int ndim, const uint64_t *shape)
{
    char fmt[24];
    int64_t item = shmstore_dtype_itemsize(dtype);
    if (item <= 0 || format_of_dtype(dtype, fmt, sizeof(fmt)) < 0 || ndim < 0 ||
        ndim > SHMSTORE_NDIM_MAX || !extents_ok(item, ndim, shape))
        return -1;
    b->itemsize = (Py_ssize_t)item;
    b->ndim = ndim;
    strcpy(b->format, fmt);
    Py_ssize_t stride = (Py_ssize_t)item;
    for (int i = ndim - 1; i >= 0; i--) {
        b->shape[i] = (Py_ssize_t)shape[i];
        b->strides[i] = stride;
        stride *= (Py_ssize_t)shape[i];
    }
    return 0;
}

/* A child describing the array at `ptr` (inside the root's bytes). */
BufferObject *buffer_child(modstate *st, BufferObject *root, char *ptr, Py_ssize_t len,
                           const char *dtype, int ndim, const uint64_t *shape, int readonly)
{
    BufferObject *b = buffer_alloc(st);
    if (!b)
        return NULL;
    if (buffer_set_array(b, dtype, ndim, shape) < 0) {
        Py_DECREF(b);
        PyErr_Format(PyExc_ValueError, "shmstore: unsupported dtype '%.8s'", dtype);
        return NULL;
    }
    b->root = root;
    Py_INCREF(root);
    root->exports++;
    b->ptr = ptr;
    b->len = len;
    b->readonly = readonly;
    return b;
}

static BufferObject *root_of(BufferObject *b)
{
    return b->root ? b->root : b;
}

/* Drop the lease now. Fails (BufferError) while anything is exported. */
int buffer_release(BufferObject *b)
{
    if (b->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "cannot release: %zd exported buffer(s) or array(s) still use it", b->exports);
        return -1;
    }
    if (b->root) {
        BufferObject *r = b->root;
        b->root = NULL;
        b->released = 1;
        b->ptr = NULL;
        r->exports--;
        Py_DECREF(r);
        return 0;
    }
    if (b->has_lease) {
        b->has_lease = 0;
        leased_unlink(b);
        shmstore_view_release(&b->view);
    }
    if (b->resq) { /* a reservation never committed: nothing points into it any more */
        shmstore_queue_abort(b->resq->q, &b->res);
        b->resq->reserving--;
        Py_CLEAR(b->resq);
    }
    b->released = 1;
    b->ptr = NULL;
    Py_CLEAR(b->lease_core);
    Py_CLEAR(b->core);
    return 0;
}

/* The attachment of this process to the store of inherited handle `old`: from `cores`
 * (this hook run's, a dict keyed by the handle's address, so views of one store share
 * one attachment) or attached now. New reference, or NULL with an exception set. The
 * Buffers that adopt through it hold it (lease_core): it goes with the last of them. A
 * Store re-attaches on its own (its name may have been re-created since). */
static CoreObject *hook_core(modstate *st, PyObject *module, PyObject *cores,
                             const shmstore_t *old)
{
    PyObject *key = PyLong_FromVoidPtr((void *)old);
    if (!key)
        return NULL;
    CoreObject *c = (CoreObject *)PyDict_GetItemWithError(cores, key);
    if (c) {
        Py_DECREF(key);
        return (CoreObject *)Py_NewRef(c);
    }
    /* NORECOVER: if the parent already died, attaching must not reclaim its slot (and
     * with it the lease we are about to adopt). */
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    c = PyErr_Occurred() ? NULL : core_open(st, module, shmstore_name(old), shmstore_dir(old),
                                            SHMSTORE_O_NORECOVER, &opt);
    if (c && PyDict_SetItem(cores, key, (PyObject *)c) < 0)
        Py_CLEAR(c);
    Py_DECREF(key);
    return c;
}

/* Lease `b`'s view again under this process's own attachment. 0, or -1 (exception set;
 * the caller turns it into a warning). */
static int adopt_one(modstate *st, PyObject *module, PyObject *cores, BufferObject *b)
{
    CoreObject *c = hook_core(st, module, cores, b->view.store);
    if (!c)
        return -1;
    shmstore_view_t mine;
    int r = shmstore_view_adopt(c->s, &b->view, &mine);
    if (r < 0) {
        Py_DECREF(c);
        return shm_raise(st, r);
    }
    shmstore_view_release(&b->view); /* in the child: drops the inherited reference */
    b->view = mine;
    Py_XSETREF(b->lease_core, c);
    return 0;
}

static void warn_not_adopted(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "shmstore: a view inherited across fork() "
                         "stays readable but could not be leased by this process (%S); its "
                         "bytes may change: take a new view", value ? value : Py_None) < 0)
        PyErr_Clear(); /* warnings are errors here: an after-fork hook must not raise */
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

void buffer_adopt_inherited(modstate *st, PyObject *module)
{
    /* A snapshot with references: attaching can run the GC, which may free a Buffer. */
    Py_ssize_t n = 0;
    for (BufferObject *b = st->leased; b; b = b->lnext)
        n++;
    BufferObject **all = n ? PyMem_New(BufferObject *, n) : NULL;
    PyObject *cores = n ? PyDict_New() : NULL;
    if (!all || !cores) {
        PyMem_Free(all);
        Py_XDECREF(cores);
        PyErr_Clear();
        return;
    }
    n = 0;
    for (BufferObject *b = st->leased; b; b = b->lnext)
        all[n++] = (BufferObject *)Py_NewRef(b);
    for (Py_ssize_t i = 0; i < n; i++) {
        BufferObject *b = all[i];
        CoreObject *holder = b->lease_core ? b->lease_core : b->core;
        if (b->has_lease && holder && holder->gen != shm_fork_gen &&
            adopt_one(st, module, cores, b) < 0)
            warn_not_adopted(); /* e.g. the parent let it go first: nothing protects it */
        Py_DECREF(b);
    }
    Py_DECREF(cores);
    PyMem_Free(all);
}

static int buf_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    BufferObject *b = (BufferObject *)self;
    if (b->released) {
        PyErr_SetString(PyExc_ValueError, "operation on a released shmstore.Buffer");
        return -1;
    }
    if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE && b->readonly) {
        PyErr_SetString(PyExc_BufferError, "shmstore views are read-only (use Store.write() to "
                                           "change a value in place)");
        return -1;
    }
    if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && b->ndim > 1) {
        PyErr_SetString(PyExc_BufferError, "shmstore buffers are C-contiguous");
        return -1;
    }
    view->obj = Py_NewRef(self);
    view->buf = b->ptr;
    view->len = b->len;
    view->readonly = b->readonly;
    view->itemsize = b->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? b->format : NULL;
    view->ndim = b->ndim;
    view->shape = (flags & PyBUF_ND) == PyBUF_ND ? b->shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? b->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    if (!view->shape) {
        /* Consumers that asked for neither shape nor format see plain bytes. */
        view->ndim = 1;
        if (!view->format)
            view->itemsize = 1;
    }
    b->exports++;
    return 0;
}

static void buf_releasebuffer(PyObject *self, Py_buffer *view)
{
    (void)view;
    ((BufferObject *)self)->exports--;
}

static void buf_dealloc(PyObject *self)
{
    BufferObject *b = (BufferObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    if (b->weakrefs)
        PyObject_ClearWeakRefs(self);
    /* Nothing can hold an export of an object being deallocated (an export holds a
     * reference), so buffer_release() cannot fail here and sets no exception. tp_dealloc
     * must not touch the error indicator either: it often runs on an error path (a
     * failed decode drops its root Buffer while the decode's exception is set), and
     * clearing it turned that exception into "returned NULL without setting an
     * exception". */
    b->exports = 0;
    buffer_release(b);
    PyObject_Free(self);
    Py_DECREF(tp);
}

PyDoc_STRVAR(buf_release_doc,
"release()\n--\n\n"
"Give the lease back now instead of when the Buffer is garbage-collected. Raises\n"
"BufferError while a memoryview or numpy array still uses the bytes.");

static PyObject *buf_release_meth(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (buffer_release((BufferObject *)self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *buf_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *buf_exit(PyObject *self, PyObject *args)
{
    (void)args;
    if (buffer_release((BufferObject *)self) < 0)
        return NULL;
    Py_RETURN_FALSE;
}

static PyObject *buf_get_version(PyObject *self, void *c)
{
    (void)c;
    BufferObject *r = root_of((BufferObject *)self);
    return PyLong_FromUnsignedLongLong(r->has_lease ? r->view.version : 0);
}

static PyObject *buf_get_mtime(PyObject *self, void *c)
{
    (void)c;
    BufferObject *r = root_of((BufferObject *)self);
    return PyLong_FromUnsignedLongLong(r->has_lease ? r->view.mtime_ns : 0);
}

static PyObject *buf_get_released(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(((BufferObject *)self)->released);
}

static PyObject *buf_get_exports(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(((BufferObject *)self)->exports);
}

static PyObject *buf_get_nbytes(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(((BufferObject *)self)->len);
}

static PyObject *buf_repr(PyObject *self)
{
    BufferObject *b = (BufferObject *)self;
    return PyUnicode_FromFormat("<shmstore.Buffer %s nbytes=%zd format='%s' exports=%zd>",
                                b->released ? "released" : (b->readonly ? "read-only" : "writable"),
                                b->len, b->format, b->exports);
}

static PyMethodDef buf_methods[] = {
    {"release", buf_release_meth, METH_NOARGS, buf_release_doc},
    {"__enter__", buf_enter, METH_NOARGS, NULL},
    {"__exit__", buf_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef buf_getset[] = {
    {"version", buf_get_version, NULL, "Version of the value these bytes belong to.", NULL},
    {"mtime_ns", buf_get_mtime, NULL, "Time that version was published (ns since the epoch).", NULL},
    {"released", buf_get_released, NULL, "True once the lease was given back.", NULL},
    {"exports", buf_get_exports, NULL, "Live buffer exports (memoryviews, arrays, children).", NULL},
    {"nbytes", buf_get_nbytes, NULL, "Bytes exported.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef buf_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(BufferObject, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(buf_doc,
"Bytes of a store exported through the buffer protocol (zero-copy).\n\n"
"A Buffer made by Store.view() holds a lease on one version of a value: the bytes stay\n"
"valid and unchanged, even after newer versions are published, the value is deleted or\n"
"the Store is closed, until the Buffer and every array or memoryview over it are gone.\n"
"It cannot be created from Python.");

static PyType_Slot buf_slots[] = {
    {Py_tp_dealloc, buf_dealloc},
    {Py_tp_repr, buf_repr},
    {Py_tp_methods, buf_methods},
    {Py_tp_getset, buf_getset},
    {Py_tp_members, buf_members},
    {Py_tp_doc, (void *)buf_doc},
    {Py_bf_getbuffer, buf_getbuffer},
    {Py_bf_releasebuffer, buf_releasebuffer},
    {0, NULL},
};

PyType_Spec Buffer_spec = {
    .name = "shmstore.Buffer",
    .basicsize = sizeof(BufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = buf_slots,
};
